//! Schedule state that survives restarts, and where each launch falls in time.
//!
//! - [`store`]: when each check, scenario and job spec of each environment last ran, kept in
//!   `<journal.dir>/schedule-state.json` (versioned, written atomically).
//! - [`placement`]: the stable point of a spec never seen before in its interval.
//! - [`window`]: backup windows (`"22:00-06:00"` in a time zone).
//! - [`calendar`]: cron expressions per scenario.
//! - [`plan`]: the due queue of one scenario's specs, driven by a [`Clock`].
//! - [`pacer`]: the `max_launches_per_minute` limit.
//!
//! Everything here takes the time as an argument or from a [`Clock`], so the rules are
//! tested with fake clocks and paused tokio time.

pub mod calendar;
pub mod pacer;
pub mod placement;
pub mod plan;
pub mod store;
pub mod window;

pub use calendar::Calendar;
pub use pacer::LaunchPacer;
pub use plan::{Rule, SpecQueue};
pub use store::{ScheduleStore, StoreError};
pub use window::Window;

use crate::model::{JobKind, JobSpec};
use chrono::{DateTime, Utc};

/// The scheduler's wall clock. `system()` reads the system clock; `starting_at(t)` starts
/// at `t` and advances with tokio's clock (paused in tests), so a test can start a run at
/// any date (a DST night, one hour after the last run) without waiting.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    start: Option<(DateTime<Utc>, tokio::time::Instant)>,
}

impl Clock {
    pub fn system() -> Self {
        Self { start: None }
    }

    /// A clock reading `wall` now and advancing with tokio's time.
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        Self {
            start: Some((wall, tokio::time::Instant::now())),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self.start {
            None => Utc::now(),
            Some((wall, at)) => {
                wall + chrono::Duration::from_std(at.elapsed()).unwrap_or(chrono::TimeDelta::MAX)
            }
        }
    }
}

/// The key of a spec in the state file: the kind and host of a backup (its level is not
/// part of it: changing a host's level keeps its schedule), the whole spec of a restore.
pub(crate) fn spec_key(spec: &JobSpec) -> String {
    match (spec.kind, &spec.restore) {
        (JobKind::Restore, Some(r)) => format!(
            "restore {} {}/{} -> {}",
            r.host, r.source_path, r.file_name, r.destination_path
        ),
        (kind, _) => format!("{} {}", kind.as_str(), spec.host),
    }
}
