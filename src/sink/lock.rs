//! One instance per journal directory: an OS lock (`flock`, exclusive, non-blocking) on
//! `<journal.dir>/LOCK`, taken at start and held for the process life. Everything in the
//! directory belongs to its holder: journal segments, the shipping checkpoint, the dead-letter
//! file, the tracked-jobs handover and the schedule state. Two writers there lose results
//! silently (one's checkpoint makes the other skip documents), so the second fails at once.
//!
//! The file holds the holder's pid, for the message only: the kernel lock is the truth, and
//! it goes away with the process however it ends (a crash leaves no stale lock). The file is
//! never deleted: unlinking a lock file lets a third process lock a fresh inode while the
//! second still holds the old one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the journal directory.
pub(crate) const FILE_NAME: &str = "LOCK";

/// Why the journal directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("journal directory {dir} is in use by another iaso-probe ({holder}); one instance per journal directory: stop it first, or give this instance its own journal.dir (each --shard needs its own)")]
    Held { dir: PathBuf, holder: String },
    #[error("journal directory {dir}: cannot lock {file}: {source}")]
    Io {
        dir: PathBuf,
        file: PathBuf,
        source: io::Error,
    },
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub(crate) struct JournalLock {
    _file: File,
    #[cfg(test)]
    path: PathBuf,
}

impl JournalLock {
    /// Locks `dir` (created if needed), or fails at once when another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(FILE_NAME);
        let io_err = |source: io::Error| LockError::Io {
            dir: dir.to_owned(),
            file: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match try_lock(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    // Between the other's lock and its pid write: rare, say so.
                    Err(_) => "pid not known yet".to_owned(),
                };
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    holder,
                });
            }
            Err(e) => return Err(io_err(e)),
        }
        // Ours now: record our pid for the next one's message. A failure here (full disk)
        // does not matter to the lock itself.
        let pid = std::process::id();
        let _ = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{pid}"))
            .and_then(|_| file.flush());
        Ok(Self {
            _file: file,
            #[cfg(test)]
            path,
        })
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
fn try_lock(file: &File) -> io::Result<()> {
    use rustix::fs::{flock, FlockOperation};
    flock(file, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        if e == rustix::io::Errno::WOULDBLOCK {
            io::Error::from(io::ErrorKind::WouldBlock)
        } else {
            io::Error::from(e)
        }
    })
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> io::Result<()> {
    // No advisory lock there: the prober is deployed on Linux; one instance is on the operator.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_fails_naming_it_and_the_holder_pid() {
        let d = tempfile::tempdir().unwrap();
        let first = JournalLock::acquire(d.path()).unwrap();
        // flock belongs to the open file, so a second open in this process conflicts too.
        let e = JournalLock::acquire(d.path()).unwrap_err().to_string();
        assert!(
            e.contains(&d.path().display().to_string())
                && e.contains(&format!("pid {}", std::process::id()))
                && e.contains("one instance per journal directory"),
            "{e}"
        );
        drop(first);
        let again = JournalLock::acquire(d.path()).unwrap();
        assert!(again.path().ends_with(FILE_NAME));
    }

    #[test]
    fn distinct_directories_lock_independently() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let _la = JournalLock::acquire(a.path()).unwrap();
        let _lb = JournalLock::acquire(b.path()).unwrap();
    }
}
