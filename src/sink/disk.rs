//! The journal directory's disk, as the sink sees it: the files it writes (journal segments,
//! the checkpoint, the dead-letter file) go through [`DiskFaults`], a test hook that can make
//! the disk "full" (writes take what space is left, then fail with `StorageFull`, as on a real
//! full file system), [`RetryBackoff`], the capped backoff of retries after write errors, and
//! [`write_atomic`], the one way a small state file in that directory is replaced.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Replaces `path` with `bytes` ([`crate::fsutil::write_atomic`]: temporary file, fsync,
/// rename, fsync of the folder), after `faults` had their say (tests); every error names the
/// file it was about. The checkpoint and the dead-letter rewrite use it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], faults: &DiskFaults) -> io::Result<()> {
    let tmp = crate::fsutil::tmp_path(path);
    faults
        .check(bytes.len())
        .map_err(crate::fsutil::named(&tmp))?;
    crate::fsutil::write_atomic(path, bytes)
}

/// Injected disk space for tests: unlimited unless [`set_space`](Self::set_space) says
/// otherwise. Clones share the same space.
#[derive(Debug, Clone)]
pub struct DiskFaults(Arc<AtomicI64>);

impl Default for DiskFaults {
    fn default() -> Self {
        Self(Arc::new(AtomicI64::new(-1)))
    }
}

impl DiskFaults {
    /// Leaves `bytes` of free space (0: full); `None`: unlimited again.
    pub fn set_space(&self, bytes: Option<u64>) {
        self.0.store(
            bytes.map_or(-1, |b| b.min(i64::MAX as u64) as i64),
            Ordering::SeqCst,
        );
    }

    /// Takes up to `want` bytes of the space left: how many may be written.
    fn take(&self, want: usize) -> io::Result<usize> {
        loop {
            let space = self.0.load(Ordering::SeqCst);
            if space < 0 {
                return Ok(want);
            }
            let n = (space as u64).min(want as u64) as i64;
            if want > 0 && n == 0 {
                return Err(full());
            }
            if self
                .0
                .compare_exchange(space, space - n, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Ok(n as usize);
            }
        }
    }

    /// Fails when fewer than `len` bytes are free (small files replaced whole, like the
    /// checkpoint: their space is given back by the rename, so none is taken).
    pub fn check(&self, len: usize) -> io::Result<()> {
        let space = self.0.load(Ordering::SeqCst);
        if space >= 0 && (space as u64) < len as u64 {
            return Err(full());
        }
        Ok(())
    }
}

fn full() -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        "No space left on device (injected)",
    )
}

/// A file written through the fault hook.
#[derive(Debug)]
pub(crate) struct FaultyFile {
    pub file: File,
    pub faults: DiskFaults,
}

impl Write for FaultyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.faults.take(buf.len())?;
        self.file.write(&buf[..n])
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Capped exponential backoff of retries after disk errors, with "is a retry due now".
/// No jitter: a single writer retries, there is no herd to spread.
#[derive(Debug, Clone)]
pub(crate) struct RetryBackoff {
    initial: Duration,
    max: Duration,
    failures: u32,
    next_try: Option<Instant>,
}

impl RetryBackoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            failures: 0,
            next_try: None,
        }
    }

    /// True unless a failure asked to wait and the wait is not over.
    pub fn due(&self, now: Instant) -> bool {
        self.next_try.is_none_or(|t| now >= t)
    }

    /// Records a failure; returns the wait before the next try.
    pub fn failed(&mut self, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = super::retry::backoff_cap(self.failures, self.initial, self.max);
        self.next_try = Some(now + wait);
        wait
    }

    /// Records a success; returns the failures it ends (0: there were none).
    pub(crate) fn succeeded(&mut self) -> u32 {
        self.next_try = None;
        std::mem::take(&mut self.failures)
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_takes_what_space_is_left_then_refuses() {
        let d = tempfile::tempdir().unwrap();
        let faults = DiskFaults::default();
        let mut f = FaultyFile {
            file: File::create(d.path().join("f")).unwrap(),
            faults: faults.clone(),
        };
        faults.set_space(Some(5));
        assert_eq!(f.write(b"0123456789").unwrap(), 5);
        let e = f.write(b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert!(faults.check(1).is_err());
        faults.set_space(None);
        f.write_all(b"56789").unwrap();
        assert_eq!(
            std::fs::read(d.path().join("f")).unwrap(),
            b"0123456789".to_vec()
        );
    }

    #[test]
    fn retry_backoff_doubles_to_its_cap_and_a_success_resets_it() {
        let mut b = RetryBackoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let now = Instant::now();
        assert!(b.due(now));
        let waits: Vec<u64> = (0..8).map(|_| b.failed(now).as_millis() as u64).collect();
        assert_eq!(waits, vec![200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert!(!b.due(now + Duration::from_secs(9)));
        assert!(b.due(now + Duration::from_secs(10)));
        assert_eq!(b.succeeded(), 8);
        assert!(b.due(now));
        assert_eq!(b.failed(now), Duration::from_millis(200));
    }
}
