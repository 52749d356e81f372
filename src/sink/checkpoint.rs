//! The shipping checkpoint: the journal position (segment, byte offset) before which every
//! document is stored in Elasticsearch or dead-lettered. Written atomically (temp file,
//! fsync, rename, fsync of the folder) so a crash leaves the old or the new one, never half.

use super::disk::DiskFaults;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A journal position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Reads and writes the checkpoint file of a journal folder.
#[derive(Clone)]
pub(crate) struct Checkpoint {
    path: PathBuf,
    faults: DiskFaults,
}

impl Checkpoint {
    pub fn new(journal_dir: &Path) -> Self {
        Self {
            path: journal_dir.join("shipping.checkpoint.json"),
            faults: DiskFaults::default(),
        }
    }

    /// Its writes go through `faults` (tests).
    pub(crate) fn with_faults(mut self, faults: DiskFaults) -> Self {
        self.faults = faults;
        self
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved position; the start of the journal when there is none yet.
    pub fn load(&self) -> io::Result<Position> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a checkpoint ({e}); fix or delete it (deleting re-ships the journal, Elasticsearch drops the duplicates)", self.path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Position::default()),
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))),
        }
    }

    /// Saves `pos` atomically.
    pub fn save(&self, pos: Position) -> io::Result<()> {
        let bytes = serde_json::to_vec(&pos).expect("plain struct");
        super::disk::write_atomic(&self.path, &bytes, &self.faults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_checkpoint_means_start_of_journal() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            Checkpoint::new(d.path()).load().unwrap(),
            Position::default()
        );
    }

    #[test]
    fn saves_and_loads_a_position() {
        let d = tempfile::tempdir().unwrap();
        let c = Checkpoint::new(d.path());
        let p = Position {
            segment: 3,
            offset: 4096,
        };
        c.save(p).unwrap();
        assert_eq!(c.load().unwrap(), p);
        assert!(!d.path().join("shipping.checkpoint.json.tmp").exists());
    }

    #[test]
    fn corrupt_checkpoint_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let c = Checkpoint::new(d.path());
        fs::write(c.path(), "garbage").unwrap();
        let e = c.load().unwrap_err().to_string();
        assert!(
            e.contains("shipping.checkpoint.json") && e.contains("not a checkpoint"),
            "{e}"
        );
    }
}
