//! Jobs still running when the prober stops are handed to its next start instead of being
//! abandoned: a redeployment must not turn every backup in flight into a `cancelled` result
//! on the dashboards, nor leave those backups' real outcome unrecorded.
//!
//! On a graceful stop each job actor of an environment with `jobs.resume_on_restart` adds
//! itself to the [`Handoff`]; the supervisor then writes `<journal.dir>/tracked-jobs.json`
//! (atomically). The next start loads it, resumes tracking the jobs of the environments it
//! runs (polling the same job ids, `max_duration_secs` counted from the original launch) and
//! carries the others over to the file it writes at its own stop. A crash writes nothing: the
//! jobs in flight then have no `job.end` (documented in docs/architecture.md).

use crate::config::RestoreSpec;
use crate::model::{BackupLevel, JobKind, JobSpec};
use crate::probes::{JobProgress, LaunchedJob};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The file's name in the journal directory.
pub(crate) const FILE_NAME: &str = "tracked-jobs.json";

/// One job handed over: everything needed to poll it again and label its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HandedOffJob {
    pub env: String,
    pub kind: JobKind,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<BackupLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Box<RestoreSpec>>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub vars: std::collections::BTreeMap<String, String>,
    pub job_id: String,
    pub trace_id: String,
    pub launched_at: DateTime<Utc>,
    pub polls: u64,
}

impl HandedOffJob {
    /// Takes the job's state (moved, not copied: a stop hands over up to a million jobs).
    pub(crate) fn from_progress(env: &str, p: JobProgress) -> Self {
        let polls = p.polls;
        let LaunchedJob {
            spec,
            job_id,
            trace_id,
            launched_at,
        } = p.job;
        Self {
            env: env.to_owned(),
            kind: spec.kind,
            host: spec.host,
            level: spec.level,
            restore: spec.restore,
            vars: spec.vars,
            job_id,
            trace_id,
            launched_at,
            polls,
        }
    }

    /// The progress to resume from: the job's age (for `max_duration_secs` and the
    /// `job.end` duration) counts from its original launch.
    pub(crate) fn into_progress(self) -> JobProgress {
        let age = (Utc::now() - self.launched_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        let now = tokio::time::Instant::now();
        let job = LaunchedJob {
            spec: JobSpec {
                kind: self.kind,
                host: self.host,
                level: self.level,
                restore: self.restore,
                vars: self.vars,
            },
            job_id: self.job_id,
            trace_id: self.trace_id,
            launched_at: self.launched_at,
        };
        let mut p = JobProgress::new(job);
        p.started = now.checked_sub(age).unwrap_or(now);
        p.polls = self.polls;
        p
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HandoffFile {
    /// Bumped on an incompatible change of the entries.
    version: u32,
    jobs: Vec<HandedOffJob>,
}

/// [`HandoffFile`] borrowed, to write without copying the jobs.
#[derive(Serialize)]
struct HandoffFileRef<'a> {
    version: u32,
    jobs: &'a [HandedOffJob],
}

const VERSION: u32 = 1;

/// The jobs handed over at this stop (and those carried over from the last one).
pub(crate) struct Handoff {
    path: PathBuf,
    jobs: Mutex<Vec<HandedOffJob>>,
}

impl Handoff {
    pub fn new(journal_dir: &Path) -> Self {
        Self {
            path: journal_dir.join(FILE_NAME),
            jobs: Mutex::new(Vec::new()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn push(&self, job: HandedOffJob) {
        self.jobs.lock().unwrap().push(job);
    }

    /// Makes room for `n` more jobs at once, before a stop hands them over: growing a
    /// vector of a million entries one doubling at a time, under the lock every job actor
    /// waits on, was an eighth of a 100,000-job stop.
    pub fn reserve(&self, n: usize) {
        self.jobs.lock().unwrap().reserve(n);
    }

    pub fn len(&self) -> usize {
        self.jobs.lock().unwrap().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the jobs the last stop handed over (none when there is no file). An unreadable
    /// file is an error naming it and what is wrong; the caller decides what to do with it.
    pub fn load(&self) -> Result<Vec<HandedOffJob>, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        let file: HandoffFile = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a tracked-jobs file: {e}", self.path.display()))?;
        if file.version != VERSION {
            return Err(format!(
                "{}: version {} (this prober reads version {VERSION})",
                self.path.display(),
                file.version
            ));
        }
        Ok(file.jobs)
    }

    /// Moves an unreadable file aside (never deleted: it names jobs someone may want), and
    /// returns where it went.
    pub(crate) fn quarantine(&self) -> std::io::Result<PathBuf> {
        let aside = self.path.with_extension(format!(
            "json.unreadable-{}",
            Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        std::fs::rename(&self.path, &aside)?;
        Ok(aside)
    }

    /// Writes the handed-over jobs atomically ([`write_atomic_with`](crate::fsutil::write_atomic_with)); no job → no file.
    pub fn save(&self) -> std::io::Result<usize> {
        let jobs = self.jobs.lock().unwrap();
        if jobs.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(0),
            };
        }
        // Compact, and streamed to the file: at a million jobs the pretty form grown by
        // doubling was most of the stop, and the whole text (200 MB) raised the stop's
        // peak memory by as much (BENCHMARKS.md §10).
        let file = HandoffFileRef {
            version: VERSION,
            jobs: &jobs,
        };
        crate::fsutil::write_atomic_with(&self.path, |w| {
            serde_json::to_writer(w, &file).map_err(std::io::Error::other)
        })?;
        Ok(jobs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(env: &str, id: &str) -> HandedOffJob {
        HandedOffJob {
            env: env.into(),
            kind: JobKind::Backup,
            host: "h1".into(),
            level: Some(BackupLevel::Full),
            restore: None,
            vars: Default::default(),
            job_id: id.into(),
            trace_id: "t".into(),
            launched_at: Utc::now() - chrono::Duration::seconds(90),
            polls: 7,
        }
    }

    #[test]
    fn save_then_load_round_trips_and_no_job_means_no_file() {
        let d = tempfile::tempdir().unwrap();
        let h = Handoff::new(d.path());
        assert_eq!(h.load().unwrap(), vec![]);
        h.push(job("lab", "1"));
        h.push(job("prod", "2"));
        assert_eq!(h.save().unwrap(), 2);
        let again = Handoff::new(d.path());
        let loaded = again.load().unwrap();
        assert_eq!(loaded, *h.jobs.lock().unwrap());
        assert_eq!(again.save().unwrap(), 0);
        assert!(!d.path().join(FILE_NAME).exists());
    }

    #[tokio::test]
    async fn resumed_progress_counts_age_from_the_original_launch() {
        let p = job("lab", "1").into_progress();
        let age = p.started.elapsed();
        assert!(age >= Duration::from_secs(89), "{age:?}");
        assert_eq!(p.polls, 7);
        assert_eq!(p.job.job_id, "1");
        assert!(
            p.last.is_none(),
            "the first poll reports the current status"
        );
    }

    #[test]
    fn an_unreadable_file_is_named_and_moved_aside() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(FILE_NAME), "{not json").unwrap();
        let h = Handoff::new(d.path());
        let e = h.load().unwrap_err();
        assert!(
            e.contains(FILE_NAME) && e.contains("not a tracked-jobs file"),
            "{e}"
        );
        let aside = h.quarantine().unwrap();
        assert!(aside.exists() && !d.path().join(FILE_NAME).exists());
    }
}
