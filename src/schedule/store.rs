//! The schedule state: when each check, scenario and job spec of each environment last ran,
//! in `<journal.dir>/schedule-state.json`, next to the shipping checkpoint and the job
//! handover. Environments own their entries; the store only keeps and persists them.
//!
//! The file is versioned and written atomically (temporary file, fsync, rename, fsync of the
//! folder): a crash leaves the old state or the new one. It is saved every few seconds while
//! it changes and at every stop, so a crash forgets at most the last few seconds of launches.
//! A damaged file stops the start (exit 2) with its path: delete it to reset the schedule
//! (every spec is then placed again as if new).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The file's name in the journal directory.
pub(crate) const FILE_NAME: &str = "schedule-state.json";

/// Bumped on an incompatible change of the file.
const VERSION: u32 = 1;

/// What one environment last did. Keys: check and scenario names (`liveness`, `backups`…)
/// in `tasks`, [`super::spec_key`] in `specs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvState {
    #[serde(default)]
    pub tasks: BTreeMap<String, DateTime<Utc>>,
    #[serde(default)]
    pub specs: BTreeMap<String, DateTime<Utc>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    #[serde(default)]
    environments: BTreeMap<String, EnvState>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("schedule state {path}: {message}; to reset the schedule, delete this file (every host is then placed in its interval as if new)")]
    Damaged { path: String, message: String },
    #[error("schedule state {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// The schedule state of one journal directory, shared by every environment of the run.
pub struct ScheduleStore {
    path: PathBuf,
    /// A std mutex: held for map updates only, never across an await.
    state: Mutex<BTreeMap<String, EnvState>>,
    dirty: AtomicBool,
}

impl ScheduleStore {
    /// Reads the state of `journal_dir` (empty when there is no file yet).
    pub fn open(journal_dir: &Path) -> Result<Self, StoreError> {
        let path = journal_dir.join(FILE_NAME);
        let shown = path.display().to_string();
        let environments = match fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(StoreError::Io {
                    path: shown,
                    source: e,
                })
            }
            Ok(bytes) => {
                let file: StateFile =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
                        path: shown.clone(),
                        message: format!("not a schedule state file ({e})"),
                    })?;
                if file.version != VERSION {
                    return Err(StoreError::Damaged {
                        path: shown,
                        message: format!(
                            "version {} (this prober reads version {VERSION})",
                            file.version
                        ),
                    });
                }
                file.environments
            }
        };
        Ok(Self {
            path,
            state: Mutex::new(environments),
            dirty: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When check or scenario `task` of `env` last ran.
    pub(crate) fn last_task(&self, env: &str, task: &str) -> Option<DateTime<Utc>> {
        self.state
            .lock()
            .unwrap()
            .get(env)?
            .tasks
            .get(task)
            .copied()
    }

    /// When the spec `key` of `env` was last attempted.
    pub(crate) fn last_spec(&self, env: &str, key: &str) -> Option<DateTime<Utc>> {
        self.state.lock().unwrap().get(env)?.specs.get(key).copied()
    }

    /// A copy of `env`'s entries.
    #[cfg(test)]
    pub(crate) fn env_state(&self, env: &str) -> EnvState {
        self.state
            .lock()
            .unwrap()
            .get(env)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn record_task(&self, env: &str, task: &str, at: DateTime<Utc>) {
        let mut s = self.state.lock().unwrap();
        s.entry(env.to_owned())
            .or_default()
            .tasks
            .insert(task.to_owned(), at);
        self.dirty.store(true, Ordering::SeqCst);
    }

    pub(crate) fn record_spec(&self, env: &str, key: &str, at: DateTime<Utc>) {
        let mut s = self.state.lock().unwrap();
        s.entry(env.to_owned())
            .or_default()
            .specs
            .insert(key.to_owned(), at);
        self.dirty.store(true, Ordering::SeqCst);
    }

    /// Drops `env`'s specs for which `keep` is false (hosts removed from the configuration);
    /// returns how many.
    pub(crate) fn retain_specs(&self, env: &str, keep: impl Fn(&str) -> bool) -> usize {
        let mut s = self.state.lock().unwrap();
        let Some(e) = s.get_mut(env) else { return 0 };
        let before = e.specs.len();
        e.specs.retain(|k, _| keep(k));
        let dropped = before - e.specs.len();
        if dropped > 0 {
            self.dirty.store(true, Ordering::SeqCst);
        }
        dropped
    }

    /// Saves when something changed since the last save; true when it wrote.
    pub(crate) fn save_if_dirty(&self) -> io::Result<bool> {
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(false);
        }
        let text = {
            let s = self.state.lock().unwrap();
            serde_json::to_vec(&StateFileRef {
                version: VERSION,
                environments: &s,
            })
            .map_err(io::Error::other)?
        };
        crate::fsutil::write_atomic(&self.path, &text).inspect_err(|_| {
            // Try again at the next save.
            self.dirty.store(true, Ordering::SeqCst);
        })?;
        Ok(true)
    }
}

/// How often changed state is saved while running.
pub(crate) const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl ScheduleStore {
    /// Saves when changed, logging (not failing) on error: the next save tries again.
    pub(crate) fn save_logged(&self) {
        if let Err(e) = self.save_if_dirty() {
            tracing::error!(file = %self.path.display(), error = %e, "cannot save the schedule state; launches since the last save may be repeated after a restart");
        }
    }

    /// Saves every [`SAVE_EVERY`] while something changed (on a blocking thread: fsync).
    pub(crate) async fn save_periodically(self: std::sync::Arc<Self>) {
        loop {
            tokio::time::sleep(SAVE_EVERY).await;
            let s = self.clone();
            let _ = tokio::task::spawn_blocking(move || s.save_logged()).await;
        }
    }
}

#[derive(Serialize)]
struct StateFileRef<'a> {
    version: u32,
    environments: &'a BTreeMap<String, EnvState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn state_round_trips_and_only_dirty_state_is_written() {
        let d = tempfile::tempdir().unwrap();
        let s = ScheduleStore::open(d.path()).unwrap();
        assert!(!s.save_if_dirty().unwrap(), "nothing to write");
        assert!(!d.path().join(FILE_NAME).exists());
        s.record_task("lab", "liveness", t("2026-01-05T10:00:00Z"));
        s.record_spec("lab", "backup web-01", t("2026-01-05T10:01:00Z"));
        s.record_spec("prod", "backup db-01", t("2026-01-05T10:02:00Z"));
        assert!(s.save_if_dirty().unwrap());
        assert!(!d.path().join("schedule-state.json.tmp").exists());
        let again = ScheduleStore::open(d.path()).unwrap();
        assert_eq!(
            again.last_task("lab", "liveness"),
            Some(t("2026-01-05T10:00:00Z"))
        );
        assert_eq!(
            again.last_spec("lab", "backup web-01"),
            Some(t("2026-01-05T10:01:00Z"))
        );
        assert_eq!(again.env_state("prod"), s.env_state("prod"));
        assert_eq!(again.last_spec("lab", "backup nope"), None);
        let text = fs::read_to_string(d.path().join(FILE_NAME)).unwrap();
        assert!(text.starts_with("{\"version\":1,"), "{text}");
    }

    #[test]
    fn retain_drops_only_the_specs_no_longer_configured() {
        let d = tempfile::tempdir().unwrap();
        let s = ScheduleStore::open(d.path()).unwrap();
        let at = t("2026-01-05T10:00:00Z");
        for h in ["a", "b", "c"] {
            s.record_spec("lab", &format!("backup {h}"), at);
        }
        s.record_spec("prod", "backup a", at);
        assert_eq!(s.retain_specs("lab", |k| k != "backup b"), 1);
        assert_eq!(s.last_spec("lab", "backup b"), None);
        assert_eq!(s.last_spec("lab", "backup c"), Some(at));
        assert_eq!(
            s.last_spec("prod", "backup a"),
            Some(at),
            "other environments untouched"
        );
    }

    #[test]
    fn a_damaged_or_foreign_version_file_is_an_error_naming_the_path_and_the_reset() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join(FILE_NAME),
            "{\"version\":1,\"environments\":{\"lab\":{\"specs\":",
        )
        .unwrap();
        let e = ScheduleStore::open(d.path()).err().unwrap().to_string();
        assert!(
            e.contains(&d.path().join(FILE_NAME).display().to_string()),
            "{e}"
        );
        assert!(
            e.contains("not a schedule state file") && e.contains("delete this file"),
            "{e}"
        );
        fs::write(
            d.path().join(FILE_NAME),
            "{\"version\":9,\"environments\":{}}",
        )
        .unwrap();
        let e = ScheduleStore::open(d.path()).err().unwrap().to_string();
        assert!(e.contains("version 9"), "{e}");
    }
}
