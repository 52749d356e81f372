//! Simulated backup and restore jobs: their fate, decided at launch, and their status at any
//! instant, computed on each poll.
//!
//! A job holds no task and no timer, only ~40 bytes: its launch offset and its plan. Its
//! status is a pure function of the time since launch, so 100,000 jobs cost a few MB and no
//! CPU between polls. The plan comes from a hash of (seed, kind, host, n-th launch of that
//! kind for that host), not from a shared random stream, so the same host gets the same
//! jobs however the prober interleaves its requests.

use sha2::{Digest, Sha256};

use super::config::SimulatorConfig;

/// Backup or restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    Backup,
    Restore,
}

/// How a job ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    Completed,
    Warning,
    Failed,
    FailedToStart,
}

/// A job status, in Commvault's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Running,
    Completed,
    CompletedWithWarnings,
    Failed,
    FailedToStart,
}

impl JobStatus {
    /// The word the API answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::CompletedWithWarnings => "Completed w/ one or more warnings",
            Self::Failed => "Failed",
            Self::FailedToStart => "Failed to Start",
        }
    }

    /// Whether the job is over (the status will not change any more).
    pub(crate) fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

/// Why failed jobs fail (Commvault-like reasons).
pub(crate) const FAILURE_REASONS: [&str; 5] = [
    "Media agent unreachable",
    "Insufficient storage",
    "Client services not responding",
    "Index server unavailable",
    "Storage policy copy is not available",
];

/// The reason given to jobs that fail to start.
pub(crate) const FAIL_TO_START_REASON: &str = "Job could not be started: no resources available";

/// Everything about a job's future, decided at launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct JobPlan {
    pub fate: Fate,
    /// Time from launch to the terminal status.
    pub duration_ms: u64,
    /// The percentage reached at the end: 100, or where a failed job stopped.
    pub stop_percent: u8,
    /// Index into `FAILURE_REASONS` (used by failed jobs only).
    pub reason: u8,
}

impl JobPlan {
    /// The plan of the `nth` (0-based) job of `kind` launched for `host`.
    pub fn derive(cfg: &SimulatorConfig, kind: JobKind, host: &str, nth: u32) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(cfg.seed.to_le_bytes());
        hasher.update([kind as u8]);
        // Length first, so that no two (host, nth) pairs hash the same bytes.
        hasher.update((host.len() as u64).to_le_bytes());
        hasher.update(host.as_bytes());
        hasher.update(nth.to_le_bytes());
        let digest = hasher.finalize();
        let word =
            |i: usize| u64::from_le_bytes(digest[i * 8..i * 8 + 8].try_into().expect("8 bytes"));

        let roll = unit(word(0));
        let fate = if roll < cfg.job_fail_to_start_ratio {
            Fate::FailedToStart
        } else if roll < cfg.job_fail_to_start_ratio + cfg.job_failure_ratio {
            Fate::Failed
        } else if roll < cfg.job_fail_to_start_ratio + cfg.job_failure_ratio + cfg.job_warning_ratio
        {
            Fate::Warning
        } else {
            Fate::Completed
        };
        let range = cfg.job_duration_ms;
        let span = range.max.saturating_sub(range.min);
        let duration_ms = match span.checked_add(1) {
            Some(n) => range.min + word(1) % n,
            None => word(1),
        };
        let stop_percent = match fate {
            // A failed job stops somewhere between 10 % and 90 %.
            Fate::Failed => 10 + (word(2) % 81) as u8,
            Fate::FailedToStart => 0,
            Fate::Completed | Fate::Warning => 100,
        };
        let reason = (word(3) % FAILURE_REASONS.len() as u64) as u8;
        Self {
            fate,
            duration_ms,
            stop_percent,
            reason,
        }
    }

    /// The same plan ending `Failed` (a subclient that always fails): it stops between 10
    /// and 90 % with one of the failure reasons.
    pub fn failed(self) -> Self {
        let stop_percent = match self.fate {
            Fate::Failed => self.stop_percent,
            _ => 10 + (self.duration_ms % 81) as u8,
        };
        Self {
            fate: Fate::Failed,
            stop_percent,
            ..self
        }
    }

    /// The job's status `elapsed_ms` after its launch.
    pub(crate) fn status_at(&self, kind: JobKind, elapsed_ms: u64) -> JobView {
        let d = self.duration_ms;
        if self.fate == Fate::FailedToStart {
            return JobView {
                status: JobStatus::FailedToStart,
                percent: 0,
                elapsed_s: 0,
                phase: phase(kind, 0),
                failure_reason: Some(FAIL_TO_START_REASON),
            };
        }
        if elapsed_ms >= d {
            let (status, failure_reason) = match self.fate {
                Fate::Completed => (JobStatus::Completed, None),
                Fate::Warning => (JobStatus::CompletedWithWarnings, None),
                _ => (
                    JobStatus::Failed,
                    Some(FAILURE_REASONS[usize::from(self.reason)]),
                ),
            };
            return JobView {
                status,
                percent: self.stop_percent,
                elapsed_s: d / 1000,
                phase: phase(kind, self.stop_percent),
                failure_reason,
            };
        }
        let pending_ms = d / 10;
        let elapsed_s = elapsed_ms / 1000;
        if elapsed_ms < pending_ms {
            return JobView {
                status: JobStatus::Pending,
                percent: 0,
                elapsed_s,
                phase: phase(kind, 0),
                failure_reason: None,
            };
        }
        // Running: the percentage rises linearly from 0 to stop_percent (not reached before the end).
        let running_ms = d - pending_ms;
        let percent = (u128::from(elapsed_ms - pending_ms) * u128::from(self.stop_percent)
            / u128::from(running_ms)) as u8;
        JobView {
            status: JobStatus::Running,
            percent,
            elapsed_s,
            phase: phase(kind, percent),
            failure_reason: None,
        }
    }
}

/// What a status poll answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct JobView {
    pub status: JobStatus,
    pub percent: u8,
    pub elapsed_s: u64,
    pub phase: &'static str,
    pub failure_reason: Option<&'static str>,
}

/// The phase a job is in at `percent`.
fn phase(kind: JobKind, percent: u8) -> &'static str {
    match kind {
        JobKind::Restore => "Restore",
        JobKind::Backup if percent < 10 => "Scan",
        JobKind::Backup if percent < 90 => "Backup",
        JobKind::Backup => "Archive Index",
    }
}

/// A uniform number in [0, 1) from 53 bits of `x`.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A launched job, as the simulator keeps it.
#[derive(Clone, Debug)]
pub struct Job {
    /// Milliseconds from the simulator's start to the launch.
    pub launched_ms: u64,
    pub plan: JobPlan,
    pub kind: JobKind,
    /// Index of the host in the simulator's host table.
    pub host: u32,
    /// The status last answered for this job, for `status_changes_served`.
    pub last_served: Option<JobStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::config::RangeMs;

    fn plan(fate: Fate, duration_ms: u64, stop_percent: u8) -> JobPlan {
        JobPlan {
            fate,
            duration_ms,
            stop_percent,
            reason: 1,
        }
    }

    #[test]
    fn job_is_pending_for_its_first_tenth_then_running_then_completed() {
        let p = plan(Fate::Completed, 10_000, 100);
        let v = p.status_at(JobKind::Backup, 0);
        assert_eq!(
            (v.status, v.percent, v.phase),
            (JobStatus::Pending, 0, "Scan")
        );
        assert_eq!(p.status_at(JobKind::Backup, 999).status, JobStatus::Pending);
        let v = p.status_at(JobKind::Backup, 1_000);
        assert_eq!(
            (v.status, v.percent, v.phase),
            (JobStatus::Running, 0, "Scan")
        );
        let v = p.status_at(JobKind::Backup, 5_500);
        assert_eq!(
            (v.status, v.percent, v.elapsed_s, v.phase),
            (JobStatus::Running, 50, 5, "Backup")
        );
        let v = p.status_at(JobKind::Backup, 9_999);
        assert_eq!(
            (v.status, v.percent, v.phase),
            (JobStatus::Running, 99, "Archive Index")
        );
        let v = p.status_at(JobKind::Backup, 10_000);
        assert_eq!(
            (v.status, v.percent, v.elapsed_s, v.failure_reason),
            (JobStatus::Completed, 100, 10, None)
        );
    }

    #[test]
    fn terminal_status_is_sticky_and_elapsed_is_capped_at_the_duration() {
        let p = plan(Fate::Warning, 3_500, 100);
        let later = p.status_at(JobKind::Restore, 1_000_000);
        assert_eq!(later, p.status_at(JobKind::Restore, 3_500));
        assert_eq!(later.status, JobStatus::CompletedWithWarnings);
        assert_eq!((later.elapsed_s, later.phase), (3, "Restore"));
    }

    #[test]
    fn failed_job_stops_at_its_stop_percent_with_a_reason() {
        let p = plan(Fate::Failed, 1_000, 40);
        let v = p.status_at(JobKind::Backup, 900);
        assert_eq!((v.status, v.failure_reason), (JobStatus::Running, None));
        assert!(v.percent < 40);
        let v = p.status_at(JobKind::Backup, 1_000);
        assert_eq!(
            (v.status, v.percent, v.phase),
            (JobStatus::Failed, 40, "Backup")
        );
        assert_eq!(v.failure_reason, Some(FAILURE_REASONS[1]));
    }

    #[test]
    fn job_that_fails_to_start_is_terminal_at_once() {
        let p = plan(Fate::FailedToStart, 5_000, 0);
        let v = p.status_at(JobKind::Backup, 0);
        assert_eq!(
            (v.status, v.percent, v.elapsed_s),
            (JobStatus::FailedToStart, 0, 0)
        );
        assert!(v.status.is_terminal());
        assert!(v.failure_reason.is_some());
    }

    #[test]
    fn percent_never_decreases() {
        let p = plan(Fate::Completed, 777, 100);
        let mut last = 0;
        for t in 0..=800 {
            let v = p.status_at(JobKind::Backup, t);
            assert!(v.percent >= last, "at {t} ms");
            last = v.percent;
        }
        assert_eq!(last, 100);
    }

    #[test]
    fn zero_duration_job_is_terminal_at_launch() {
        let v = plan(Fate::Completed, 0, 100).status_at(JobKind::Backup, 0);
        assert_eq!(v.status, JobStatus::Completed);
    }

    #[test]
    fn plan_depends_on_seed_kind_host_and_launch_number_only() {
        let cfg = SimulatorConfig::default();
        let a = JobPlan::derive(&cfg, JobKind::Backup, "web-01", 3);
        assert_eq!(a, JobPlan::derive(&cfg, JobKind::Backup, "web-01", 3));
        let others = [
            JobPlan::derive(&cfg, JobKind::Backup, "web-01", 4),
            JobPlan::derive(&cfg, JobKind::Backup, "web-02", 3),
            JobPlan::derive(&cfg, JobKind::Restore, "web-01", 3),
            JobPlan::derive(
                &SimulatorConfig {
                    seed: 43,
                    ..cfg.clone()
                },
                JobKind::Backup,
                "web-01",
                3,
            ),
        ];
        for other in others {
            assert_ne!(a.duration_ms, other.duration_ms, "{other:?}");
        }
    }

    #[test]
    fn plan_durations_stay_within_the_configured_range() {
        let cfg = SimulatorConfig {
            job_duration_ms: RangeMs::new(20, 25),
            ..SimulatorConfig::default()
        };
        let durations: Vec<u64> = (0..200)
            .map(|n| JobPlan::derive(&cfg, JobKind::Backup, "h", n).duration_ms)
            .collect();
        assert!(durations.iter().all(|d| (20..=25).contains(d)));
        assert_eq!(*durations.iter().min().unwrap(), 20);
        assert_eq!(*durations.iter().max().unwrap(), 25);
        let full = SimulatorConfig {
            job_duration_ms: RangeMs::new(0, u64::MAX),
            ..SimulatorConfig::default()
        };
        JobPlan::derive(&full, JobKind::Backup, "h", 0);
    }

    #[test]
    fn plan_fates_follow_the_configured_ratios() {
        let cfg = SimulatorConfig {
            job_failure_ratio: 0.2,
            job_warning_ratio: 0.1,
            job_fail_to_start_ratio: 0.05,
            ..SimulatorConfig::default()
        };
        let n = 20_000;
        let mut counts = [0u32; 4];
        for i in 0..n {
            let fate =
                JobPlan::derive(&cfg, JobKind::Backup, &format!("host-{}", i % 100), i / 100).fate;
            counts[fate as usize] += 1;
        }
        let share = |i: usize| f64::from(counts[i]) / f64::from(n);
        assert!(
            (share(Fate::Failed as usize) - 0.2).abs() < 0.02,
            "{counts:?}"
        );
        assert!(
            (share(Fate::Warning as usize) - 0.1).abs() < 0.02,
            "{counts:?}"
        );
        assert!(
            (share(Fate::FailedToStart as usize) - 0.05).abs() < 0.01,
            "{counts:?}"
        );
    }

    #[test]
    fn ratio_of_one_makes_every_job_fail() {
        let cfg = SimulatorConfig {
            job_failure_ratio: 1.0,
            job_warning_ratio: 0.0,
            ..SimulatorConfig::default()
        };
        assert!(
            (0..100).all(|n| JobPlan::derive(&cfg, JobKind::Restore, "h", n).fate == Fate::Failed)
        );
    }

    #[test]
    fn job_record_stays_small() {
        assert!(
            std::mem::size_of::<Job>() <= 48,
            "{}",
            std::mem::size_of::<Job>()
        );
    }
}
