//! Per-environment tallies of results (kept by the sink), the end-of-run summary table and
//! the exit code it implies; the process's exit code table.

use crate::model::{Action, ErrorType, JobResult, Outcome, ProbeResult};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Every probe passed (`run --once`); a requested stop (service mode); all shipped (`ship`).
pub const EXIT_OK: i32 = 0;
/// Some probe failed or was skipped (`run --once`); results left unshipped (`ship`).
pub const EXIT_PROBE_FAILED: i32 = 1;
/// Configuration, setup or internal error; journal directory locked by another instance;
/// results lost because the journal could not be written.
pub const EXIT_SETUP: i32 = 2;
// Interrupted by a signal: 128 + its number (`signals::StopSignal::exit_code`).

/// The exit code table, printed by `--help` (the README carries the same table).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    run --once: every probe passed · run (service mode): stopped by SIGINT/SIGTERM ·
       ship: everything shipped · check-config: valid
  1    run --once: some probe failed or was skipped · ship: results still unshipped at the
       deadline (the reason is printed)
  2    configuration or setup error, internal error, journal directory in use by another
       instance, or results lost because the journal could not be written (count printed)
  129  stopped by SIGHUP (graceful stop, every mode; the configuration is not reloaded)
  130  run --once or ship interrupted by SIGINT (Ctrl-C): results so far are in the journal
  143  run --once or ship interrupted by SIGTERM: results so far are in the journal
Signals within 1 s of the first count as one; a later one exits at once (same 128+n code).";

/// Counts for one environment.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EnvTally {
    /// action → (success, failure, unknown)
    pub actions: BTreeMap<&'static str, [u64; 3]>,
    pub skipped: u64,
    /// `iaso.job.result` of `job.end` results.
    pub job_results: BTreeMap<&'static str, u64>,
}

impl EnvTally {
    pub fn count(&self, action: Action, outcome: Outcome) -> u64 {
        self.actions
            .get(action.as_str())
            .map_or(0, |c| c[outcome_index(outcome)])
    }

    pub fn total(&self, action: Action) -> u64 {
        self.actions
            .get(action.as_str())
            .map_or(0, |c| c.iter().sum())
    }

    pub fn failures(&self) -> u64 {
        self.actions.values().map(|c| c[1]).sum()
    }
}

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Success => 0,
        Outcome::Failure => 1,
        Outcome::Unknown => 2,
    }
}

/// Tallies of every environment.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    pub environments: BTreeMap<String, EnvTally>,
    pub results: u64,
    /// Results recording a bug (`error.type: internal`, a caught panic): exit code 2.
    pub internal_errors: u64,
}

impl Tally {
    pub fn add(&mut self, r: &ProbeResult) {
        self.results += 1;
        let env = match self.environments.get_mut(&r.service.environment) {
            Some(e) => e,
            None => self
                .environments
                .entry(r.service.environment.clone())
                .or_default(),
        };
        env.actions.entry(r.event.action.as_str()).or_default()[outcome_index(r.event.outcome)] +=
            1;
        if r.error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorType::Internal)
        {
            self.internal_errors += 1;
        }
        if r.error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorType::Skipped)
        {
            env.skipped += 1;
        }
        if let Some(res) = r.iaso.job.as_ref().and_then(|j| j.result) {
            *env.job_results.entry(res.as_str()).or_default() += 1;
        }
    }

    /// 0 when every probe passed, 1 when some failed or was skipped, 2 when the prober
    /// itself failed (an internal error: a caught panic).
    pub fn exit_code(&self) -> i32 {
        if self.internal_errors > 0 {
            return 2;
        }
        let bad = self
            .environments
            .values()
            .any(|e| e.failures() > 0 || e.skipped > 0);
        i32::from(bad)
    }

    /// The human summary table.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<12} {:>10} {:>10} {:>10} {:>6} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "environment",
            "liveness",
            "health",
            "resp.time",
            "auth",
            "backups",
            "restores",
            "jobs ok",
            "warning",
            "failed",
            "timeout",
            "skipped"
        );
        for (name, e) in &self.environments {
            let ratio = |a: Action| format!("{}/{}", e.count(a, Outcome::Success), e.total(a));
            let jr = |r: JobResult| e.job_results.get(r.as_str()).copied().unwrap_or(0);
            let _ = writeln!(
                s,
                "{:<12} {:>10} {:>10} {:>10} {:>6} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
                name,
                ratio(Action::Liveness),
                ratio(Action::Health),
                ratio(Action::ResponseTime),
                ratio(Action::Auth),
                ratio(Action::BackupLaunch),
                ratio(Action::RestoreLaunch),
                jr(JobResult::Success),
                jr(JobResult::Warning),
                jr(JobResult::Failure),
                jr(JobResult::Timeout) + jr(JobResult::PollFailed),
                e.skipped
            );
        }
        let _ = write!(
            s,
            "(checks and launches: passed/total; jobs: how tracked jobs ended; {} results)",
            self.results
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResultContext;

    #[test]
    fn failures_and_skips_make_exit_code_one() {
        let ctx = ResultContext::new("r", "lab", "o");
        let mut t = Tally::default();
        t.add(&ctx.result(Action::Liveness, Outcome::Success));
        assert_eq!(t.exit_code(), 0);
        t.add(
            &ctx.result(Action::BackupLaunch, Outcome::Unknown)
                .with_error(ErrorType::Skipped, "no token"),
        );
        assert_eq!(t.exit_code(), 1);
        assert_eq!(t.environments["lab"].skipped, 1);
    }

    #[test]
    fn an_internal_error_makes_exit_code_two() {
        let ctx = ResultContext::new("r", "lab", "o");
        let mut t = Tally::default();
        t.add(
            &ctx.result(Action::Liveness, Outcome::Failure)
                .with_error(ErrorType::Assertion, "x"),
        );
        assert_eq!(t.exit_code(), 1);
        t.add(
            &ctx.result(Action::Health, Outcome::Failure)
                .with_error(ErrorType::Internal, "internal error: boom"),
        );
        assert_eq!((t.exit_code(), t.internal_errors), (2, 1));
    }

    #[test]
    fn renders_one_row_per_environment() {
        let mut t = Tally::default();
        for env in ["lab", "prod"] {
            t.add(&ResultContext::new("r", env, "o").result(Action::Auth, Outcome::Success));
        }
        let s = t.render();
        assert!(s.contains("\nlab ") && s.contains("\nprod "), "{s}");
    }
}
