//! The results journal: NDJSON segment files, append-only, rotated by size. It is the JSON
//! results log and the write-ahead log of shipping. Each process run starts a new segment,
//! so a line torn by a crash can only be the last line of an older segment; readers skip it.

use super::disk::{DiskFaults, FaultyFile};
use super::syncer::Syncer;
use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

const PREFIX: &str = "results-";
const SUFFIX: &str = ".ndjson";

/// Name of segment `n` (zero-padded so names sort like numbers).
pub(crate) fn segment_name(n: u64) -> String {
    format!("{PREFIX}{n:012}{SUFFIX}")
}

/// Existing segments of `dir`, in order.
pub fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix(PREFIX)
            .and_then(|s| s.strip_suffix(SUFFIX))
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The writer side of the journal.
pub struct Journal {
    dir: PathBuf,
    max_bytes: u64,
    segment: u64,
    bytes: u64,
    file: BufWriter<FaultyFile>,
    lines: u64,
    faults: DiskFaults,
    /// Where its fsyncs run, in order, off the caller's thread.
    syncer: Syncer,
}

impl Journal {
    /// Opens `dir` (created if needed) and starts a new segment after the existing ones.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        Self::open_with(dir, max_bytes, DiskFaults::default())
    }

    /// [`open`](Self::open), its writes going through `faults` (tests).
    pub(crate) fn open_with(dir: &Path, max_bytes: u64, faults: DiskFaults) -> io::Result<Self> {
        fs::create_dir_all(dir).map_err(|e| annotate(e, dir))?;
        let next = segments(dir)?.last().map_or(1, |(n, _)| n + 1);
        let file = open_segment(dir, next, &faults)?;
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            segment: next,
            bytes: 0,
            file,
            lines: 0,
            faults,
            syncer: Syncer::start()?,
        })
    }

    /// Appends one line (without its newline). Rotates first when the segment is full.
    /// On an error nothing of the line is buffered, so the caller may append it again: the
    /// line and its newline go into the buffer together, after making room for both (a
    /// failed flush keeps what it could not write, in order, for the next flush).
    pub fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if self.bytes > 0 && self.bytes + line.len() as u64 + 1 > self.max_bytes {
            self.rotate()?;
        }
        let need = line.len() + 1;
        if self.file.capacity() - self.file.buffer().len() < need {
            self.file.flush()?;
        }
        if need <= self.file.capacity() {
            self.file.write_all(line)?;
            self.file.write_all(b"\n")?;
        } else {
            // Larger than the buffer (results never are): one write, which a full disk may
            // cut short; the reader then skips the torn line of an older segment.
            let mut whole = Vec::with_capacity(need);
            whole.extend_from_slice(line);
            whole.push(b'\n');
            self.file.write_all(&whole)?;
        }
        self.bytes += line.len() as u64 + 1;
        self.lines += 1;
        Ok(())
    }

    /// Closes the segment (written out, its fsync queued before any of the next one's) and
    /// opens the next.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let next = open_segment(&self.dir, self.segment + 1, &self.faults)?;
        let (closed, _) = std::mem::replace(&mut self.file, next).into_parts();
        self.syncer.sync_later(closed.file);
        self.segment += 1;
        self.bytes = 0;
        Ok(())
    }

    /// Writes buffered lines to the file (not yet durable: see [`sync`](Self::sync)).
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Queues an fsync of what was flushed so far (on the journal's fsync thread, after the
    /// ones before; not twice while one waits); returns at once, a failure is logged.
    pub(crate) fn sync_later(&self) -> io::Result<()> {
        self.syncer
            .sync_periodic(|| self.file.get_ref().file.try_clone())
    }

    /// Fsyncs what was flushed so far, after every fsync queued before (closed segments
    /// included): resolves once it is durable. The future does not borrow the journal.
    pub fn sync(&self) -> impl Future<Output = io::Result<()>> + 'static {
        let file = self.file.get_ref().file.try_clone();
        let synced = file.map(|f| self.syncer.sync(f));
        async move { synced?.await }
    }

    /// Complete lines appended but still in the buffer (not yet handed to the file system):
    /// what a process ending now would lose.
    pub(crate) fn unflushed_lines(&self) -> u64 {
        self.file.buffer().iter().filter(|b| **b == b'\n').count() as u64
    }

    /// Lines appended by this writer.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Current segment number.
    pub(crate) fn segment(&self) -> u64 {
        self.segment
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn open_segment(dir: &Path, n: u64, faults: &DiskFaults) -> io::Result<BufWriter<FaultyFile>> {
    let path = dir.join(segment_name(n));
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| annotate(e, &path))?;
    Ok(BufWriter::with_capacity(
        256 * 1024,
        FaultyFile {
            file: f,
            faults: faults.clone(),
        },
    ))
}

fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Deletes segments numbered below `before` that are older than `hours` or, oldest first,
/// beyond `max_bytes` in total (0 disables either rule). With Elasticsearch, `before` is the
/// checkpoint's segment: only shipped data goes. Journal-only (`shipped` false), the journal
/// is the only copy, so every deletion is logged as a warning naming the file.
pub(crate) fn apply_retention(
    dir: &Path,
    before: u64,
    hours: u64,
    max_bytes: u64,
    shipped: bool,
) -> u64 {
    if hours == 0 && max_bytes == 0 {
        return 0;
    }
    let Ok(segs) = segments(dir) else { return 0 };
    let old: Vec<(PathBuf, u64, std::time::SystemTime)> = segs
        .into_iter()
        .filter(|(n, _)| *n < before)
        .filter_map(|(_, p)| {
            let m = fs::metadata(&p).ok()?;
            Some((p, m.len(), m.modified().ok()?))
        })
        .collect();
    let mut total: u64 = old.iter().map(|s| s.1).sum();
    let mut deleted = 0;
    for (path, len, modified) in old {
        let too_old = hours > 0
            && modified
                .elapsed()
                .is_ok_and(|age| age > std::time::Duration::from_secs(hours * 3600));
        let too_big = max_bytes > 0 && total > max_bytes;
        if !(too_old || too_big) {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                total -= len;
                deleted += 1;
                if shipped {
                    tracing::info!(segment = %path.display(), "deleted shipped journal segment (retention)");
                } else {
                    tracing::warn!(segment = %path.display(), bytes = len, "deleted journal segment by retention; it was never shipped (no Elasticsearch configured) and is gone for good");
                }
            }
            Err(e) => {
                tracing::warn!(segment = %path.display(), error = %e, "could not delete journal segment")
            }
        }
    }
    deleted
}

/// Reads every complete line of every segment (a torn last line is skipped): for tests,
/// `ship` and tools. Large journals should be read segment by segment instead.
pub fn read_all(dir: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for (_, path) in segments(dir)? {
        let text = fs::read_to_string(&path)?;
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        out.extend(
            complete
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_every_line() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path(), 100).unwrap();
        for i in 0..20 {
            j.append(format!("{{\"n\":{i:04}}}").as_bytes()).unwrap();
        }
        j.flush().unwrap();
        assert!(segments(d.path()).unwrap().len() > 1);
        let lines = read_all(d.path()).unwrap();
        assert_eq!(lines.len(), 20);
        assert_eq!(lines[19], "{\"n\":0019}");
    }

    #[test]
    fn a_new_writer_starts_a_new_segment() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Journal::open(d.path(), 1 << 20).unwrap();
        a.append(b"{}").unwrap();
        a.flush().unwrap();
        let b = Journal::open(d.path(), 1 << 20).unwrap();
        assert_eq!(b.segment(), a.segment() + 1);
    }

    #[test]
    fn retention_deletes_only_segments_before_the_limit_and_over_size() {
        let d = tempfile::tempdir().unwrap();
        for n in 1..=4 {
            fs::write(d.path().join(segment_name(n)), vec![b'x'; 100]).unwrap();
        }
        // Size rule: keep at most 150 bytes among segments 1..3 (4 is not eligible).
        assert_eq!(apply_retention(d.path(), 4, 0, 150, true), 2);
        let left: Vec<u64> = segments(d.path())
            .unwrap()
            .into_iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(left, vec![3, 4]);
        // Nothing to do when both rules are off.
        assert_eq!(apply_retention(d.path(), 4, 0, 0, true), 0);
    }

    #[test]
    fn a_full_disk_keeps_buffered_lines_whole_and_writes_them_when_space_returns() {
        let d = tempfile::tempdir().unwrap();
        let faults = DiskFaults::default();
        let mut j = Journal::open_with(d.path(), 1 << 30, faults.clone()).unwrap();
        let line = vec![b'x'; 1000];
        faults.set_space(Some(100_000)); // less than one 256 KiB buffer
        let mut refused = 0;
        for _ in 0..400 {
            if j.append(&line).is_err() {
                refused += 1;
            }
        }
        assert!(j.flush().is_err());
        assert!(refused > 0 && j.unflushed_lines() > 0);
        let accepted = j.lines();
        assert_eq!(accepted + refused, 400);
        faults.set_space(None);
        j.flush().unwrap();
        assert_eq!(j.unflushed_lines(), 0);
        // Every accepted line is whole on disk, none torn or doubled.
        let lines = read_all(d.path()).unwrap();
        assert_eq!(lines.len() as u64, accepted);
        assert!(lines.iter().all(|l| l.len() == 1000));
    }

    #[test]
    fn torn_last_line_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(segment_name(1)), "{\"a\":1}\n{\"b\":").unwrap();
        assert_eq!(read_all(d.path()).unwrap(), vec!["{\"a\":1}".to_string()]);
    }
}
