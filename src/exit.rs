//! The process's exit code: one type for every command, its table (printed by `--help`,
//! repeated in the README) and the rule of a `run --once` pass.

use crate::signals::StopSignal;
use std::fmt;

/// How a command ended, as the process reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: every probe passed (`run --once`); a requested stop (service mode); all shipped
    /// (`ship`); a valid configuration (`check-config`).
    Ok,
    /// 1: some probe failed or was skipped (`run --once`); results left unshipped (`ship`).
    ProbeFailed,
    /// 2: configuration, setup or internal error; journal directory locked by another
    /// instance; results lost because the journal could not be written.
    Setup,
    /// 99: `run --once` with `[thresholds]`: at least one threshold failed (k6's code).
    Thresholds,
    /// 128 + the signal's number: interrupted (or stopped by SIGHUP).
    Signal(StopSignal),
}

impl ExitCode {
    /// The number the process exits with.
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::ProbeFailed => 1,
            ExitCode::Setup => 2,
            ExitCode::Thresholds => 99,
            ExitCode::Signal(s) => s.exit_code(),
        }
    }

    /// The code of a finished pass: an internal error wins; then, with thresholds set,
    /// their verdict alone (`Some(all passed)`); without, whether some probe failed.
    pub(crate) fn of_pass(
        internal_error: bool,
        probe_failed: bool,
        thresholds: Option<bool>,
    ) -> Self {
        match (internal_error, thresholds) {
            (true, _) => ExitCode::Setup,
            (false, Some(true)) => ExitCode::Ok,
            (false, Some(false)) => ExitCode::Thresholds,
            (false, None) if probe_failed => ExitCode::ProbeFailed,
            (false, None) => ExitCode::Ok,
        }
    }
}

impl From<ExitCode> for i32 {
    fn from(c: ExitCode) -> i32 {
        c.code()
    }
}

/// Lets callers and tests compare with the number (`assert_eq!(report.exit_code(), 1)`).
impl PartialEq<i32> for ExitCode {
    fn eq(&self, other: &i32) -> bool {
        self.code() == *other
    }
}

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl serde::Serialize for ExitCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(self.code())
    }
}

/// The exit code table, printed by `--help` (the README carries the same table).
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    run --once: every probe passed · run (service mode): stopped by SIGINT/SIGTERM ·
       ship: everything shipped · check-config: valid
  1    run --once without [thresholds]: some probe failed or was skipped · ship: results
       still unshipped at the deadline (the reason is printed)
  2    configuration or setup error, internal error, journal directory in use by another
       instance, or results lost because the journal could not be written (count printed)
  99   run --once with [thresholds]: at least one threshold failed (with thresholds set, 0
       means every threshold held, even if some probes failed within them)
  129  stopped by SIGHUP (graceful stop, every mode; the configuration is not reloaded)
  130  run --once or ship interrupted by SIGINT (Ctrl-C): results so far are in the journal
  143  run --once or ship interrupted by SIGTERM: results so far are in the journal
Signals within 1 s of the first count as one; a later one exits at once (same 128+n code).";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_has_its_number_and_its_row_in_the_table() {
        for (code, n) in [
            (ExitCode::Ok, 0),
            (ExitCode::ProbeFailed, 1),
            (ExitCode::Setup, 2),
            (ExitCode::Thresholds, 99),
            (ExitCode::Signal(StopSignal::Hangup), 129),
            (ExitCode::Signal(StopSignal::Interrupt), 130),
            (ExitCode::Signal(StopSignal::Terminate), 143),
        ] {
            assert_eq!(code.code(), n);
            assert_eq!(code, n);
            assert!(
                EXIT_CODES_HELP.contains(&format!("\n  {n:<4} ")),
                "{n} is missing from the table"
            );
        }
    }

    #[test]
    fn a_pass_maps_to_its_exit_code() {
        // (internal error, some probe failed, thresholds: Some(all passed)) -> code
        for (internal, failed, thresholds, want) in [
            (false, false, None, ExitCode::Ok),
            (false, true, None, ExitCode::ProbeFailed),
            (true, false, None, ExitCode::Setup),
            (true, true, Some(true), ExitCode::Setup),
            (false, true, Some(true), ExitCode::Ok),
            (false, false, Some(false), ExitCode::Thresholds),
            (false, true, Some(false), ExitCode::Thresholds),
        ] {
            assert_eq!(
                ExitCode::of_pass(internal, failed, thresholds),
                want,
                "{internal} {failed} {thresholds:?}"
            );
        }
    }
}
