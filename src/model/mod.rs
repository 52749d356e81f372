//! Data that travels between actors: result documents, job descriptions, backup levels.
//! It depends on nothing else in the crate (`config` uses its types, not the reverse).

pub mod result;

pub use result::{
    Action, Dataset, ErrorType, Outcome, ProbeResult, ResultContext, Summary as CheckSummary,
};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Commvault backup levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BackupLevel {
    Full,
    Incremental,
    Differential,
    SyntheticFull,
}

impl BackupLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupLevel::Full => "FULL",
            BackupLevel::Incremental => "INCREMENTAL",
            BackupLevel::Differential => "DIFFERENTIAL",
            BackupLevel::SyntheticFull => "SYNTHETIC_FULL",
        }
    }
}

impl fmt::Display for BackupLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackupLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "FULL" => Ok(BackupLevel::Full),
            "INCREMENTAL" => Ok(BackupLevel::Incremental),
            "DIFFERENTIAL" => Ok(BackupLevel::Differential),
            "SYNTHETIC_FULL" => Ok(BackupLevel::SyntheticFull),
            _ => Err(format!(
                "unknown backup level `{s}` (expected FULL, INCREMENTAL, DIFFERENTIAL or SYNTHETIC_FULL)"
            )),
        }
    }
}

/// Backup or restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    #[default]
    Backup,
    Restore,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Restore => "restore",
        }
    }

    /// The action of this kind's launch result.
    pub(crate) fn launch_action(self) -> Action {
        match self {
            JobKind::Backup => Action::BackupLaunch,
            JobKind::Restore => Action::RestoreLaunch,
        }
    }
}

/// What a job was launched for: everything the job actor needs to poll it and label results.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobSpec {
    pub kind: JobKind,
    pub host: String,
    pub level: Option<BackupLevel>,
    /// Boxed: most jobs are backups, and every tracked job holds its spec (bytes per job
    /// count at a million jobs).
    pub restore: Option<Box<RestoreSpec>>,
    /// Placeholder values of this job: the host's `vars` (a restore's own over its host's).
    pub vars: std::collections::BTreeMap<String, String>,
}

/// A file restore to launch (configured in `[[environments.<name>.restores]]`; a job
/// carries it, which is why it lives here and not in `config`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreSpec {
    /// Host whose backup holds the file.
    pub host: String,
    /// File to restore.
    pub file_name: String,
    /// Folder of the file in the backup.
    pub source_path: String,
    /// Where to restore it.
    pub destination_path: String,
    /// Values for placeholders of this restore; the restore's host's `vars` fill in the
    /// others (a name given in both takes the restore's value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
}

/// How a tracked job ended (`iaso.job.result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobResult {
    Success,
    Warning,
    Failure,
    Timeout,
    PollFailed,
    Cancelled,
}

impl JobResult {
    /// Every result, in the order summaries and metrics list them.
    pub(crate) const ALL: [JobResult; 6] = [
        JobResult::Success,
        JobResult::Warning,
        JobResult::Failure,
        JobResult::Timeout,
        JobResult::PollFailed,
        JobResult::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobResult::Success => "success",
            JobResult::Warning => "warning",
            JobResult::Failure => "failure",
            JobResult::Timeout => "timeout",
            JobResult::PollFailed => "poll_failed",
            JobResult::Cancelled => "cancelled",
        }
    }
}
