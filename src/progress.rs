//! Progress of a run: a live line on a terminal (indicatif; log lines scroll above it), a
//! plain `progress` log line every 10 s otherwise (log files, pipes, containers).

use crate::model::{Action, JobResult};
use crate::runtime::SinkHandle;
use crate::summary::Tally;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::sync::RwLock;
use std::time::Duration;

/// The live line, while one is shown. Log lines written to stderr hide it for the time of
/// their write ([`StderrBelowProgress`]).
static BAR: RwLock<Option<ProgressBar>> = RwLock::new(None);

/// Runs `f` with the live line hidden (so that what `f` prints does not mix with it).
pub(crate) fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = BAR.read().ok().and_then(|b| b.clone());
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// Stderr for the log: each write hides the live line, then draws it again.
pub(crate) struct StderrBelowProgress;

impl Write for StderrBelowProgress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        suspend(|| std::io::stderr().write(buf))
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        suspend(|| std::io::stderr().write_all(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Results so far, and per environment: jobs launched, jobs ended, failures.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub results: u64,
    pub launched: u64,
    pub ended: u64,
    pub environments: Vec<EnvSnapshot>,
}

/// Counted by the same [`EnvTally`](crate::summary::EnvTally) methods as the summary
/// table's columns, so the progress and the summary never disagree.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct EnvSnapshot {
    pub env: String,
    pub launched: u64,
    pub ended: u64,
    /// Jobs ended `failure` (the summary's `failed`).
    pub jobs_failed: u64,
    /// Jobs ended `timeout` or `poll_failed` (the summary's `timeout`).
    pub jobs_timed_out: u64,
    /// Jobs ended `cancelled` (the summary's `cancelled`).
    pub jobs_cancelled: u64,
    /// Launches the portal refused.
    pub launches_failed: u64,
    /// Failed check results.
    pub checks_failed: u64,
}

impl Snapshot {
    pub fn of(tally: &Tally) -> Self {
        let mut s = Snapshot {
            results: tally.results,
            ..Snapshot::default()
        };
        for (env, t) in &tally.environments {
            let e = EnvSnapshot {
                env: env.clone(),
                launched: t.launched(),
                ended: t.total(Action::JobEnd),
                jobs_failed: t.jobs_failed(),
                jobs_timed_out: t.jobs_timed_out(),
                jobs_cancelled: t.jobs(JobResult::Cancelled),
                launches_failed: t.launches_failed(),
                checks_failed: t.checks_failed(),
            };
            s.launched += e.launched;
            s.ended += e.ended;
            s.environments.push(e);
        }
        s
    }

    /// The live line's text after the bar. Jobs resumed from the last stop end without a
    /// launch in this run, so `ended` can exceed `launched`.
    pub fn message(&self) -> String {
        let envs: Vec<String> = self
            .environments
            .iter()
            .map(|e| {
                let mut m = format!(
                    "{} {}/{} jobs, {} failed",
                    e.env, e.ended, e.launched, e.jobs_failed
                );
                for (n, what) in [
                    (e.jobs_timed_out, "timeout"),
                    (e.jobs_cancelled, "cancelled"),
                    (e.launches_failed, "launches refused"),
                    (e.checks_failed, "checks failed"),
                ] {
                    if n > 0 {
                        m.push_str(&format!(", {n} {what}"));
                    }
                }
                m
            })
            .collect();
        format!("{} results · {}", self.results, envs.join(" · "))
    }
}

/// Reports progress until aborted: a live line when `live`, log lines otherwise.
pub async fn report(sink: SinkHandle, live: bool) {
    if live {
        live_line(sink).await
    } else {
        log_lines(sink).await
    }
}

/// Removes the live line (before the summary is printed).
pub fn clear() {
    if let Ok(mut b) = BAR.write() {
        if let Some(bar) = b.take() {
            bar.finish_and_clear();
        }
    }
}

async fn live_line(sink: SinkHandle) {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(4));
    // Checks first (no job yet: no bar, which indicatif would draw full at 0/0), then jobs.
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
            .expect("static template"),
    );
    let with_jobs = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{bar:24}] {pos}/{len} jobs ended · {wide_msg}",
    )
    .expect("static template")
    .progress_chars("=> ");
    let mut showing_jobs = false;
    if let Ok(mut b) = BAR.write() {
        *b = Some(bar.clone());
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let Some((tally, _)) = sink.report().await else {
            return;
        };
        let s = Snapshot::of(&tally);
        if !showing_jobs && s.launched.max(s.ended) > 0 {
            bar.set_style(with_jobs.clone());
            showing_jobs = true;
        }
        bar.set_length(s.launched.max(s.ended));
        bar.set_position(s.ended);
        bar.set_message(s.message());
        bar.tick();
    }
}

async fn log_lines(sink: SinkHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some((tally, _)) = sink.report().await else {
            return;
        };
        for e in Snapshot::of(&tally).environments {
            tracing::info!(env = %e.env, launched = e.launched, ended = e.ended, tracking = e.launched.saturating_sub(e.ended), jobs_failed = e.jobs_failed, jobs_timed_out = e.jobs_timed_out, jobs_cancelled = e.jobs_cancelled, launches_failed = e.launches_failed, checks_failed = e.checks_failed, "progress");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_counts_accepted_launches_ends_and_failures_per_environment() {
        let mut tally = Tally {
            results: 6,
            ..Tally::default()
        };
        for (env, action, outcome) in [
            ("lab", Action::BackupLaunch, 0),
            ("lab", Action::BackupLaunch, 0),
            ("lab", Action::BackupLaunch, 1),
            ("lab", Action::RestoreLaunch, 0),
            ("lab", Action::JobEnd, 0),
            ("prod", Action::Liveness, 0),
        ] {
            let e = tally.environments.entry(env.into()).or_default();
            e.actions.entry(action.as_str()).or_default()[outcome] += 1;
        }
        let s = Snapshot::of(&tally);
        assert_eq!((s.launched, s.ended, s.results), (3, 1, 6));
        // The refused launch is a launch failure, not a failed job (as in the summary).
        assert_eq!(s.environments[0].launches_failed, 1);
        assert_eq!(s.environments[0].jobs_failed, 0);
        assert_eq!(
            s.message(),
            "6 results · lab 1/3 jobs, 0 failed, 1 launches refused · prod 0/0 jobs, 0 failed"
        );
    }

    #[test]
    fn without_a_live_line_suspend_just_runs() {
        assert_eq!(suspend(|| 7), 7);
    }
}
