//! The sink actor: receives every result, appends it to the journal, keeps the tallies.
//! Producers go through [`SinkHandle::publish`](crate::runtime::SinkHandle::publish), which
//! waits for a slot (a semaphore sized `sink.buffer`) before sending: actix mailboxes are
//! not back-pressure by themselves. Its messages and counters live in [`crate::runtime`].
//!
//! Disk trouble (full, read-only, I/O errors): results the journal refuses wait in memory, in
//! order, up to [`MAX_PENDING_RESULTS`]; writing is retried with a capped backoff (from
//! `flush_interval_ms` to [`MAX_RETRY_WAIT`]), logged once per retry, never every tick; the
//! sink recovers by itself when space returns. Results beyond the cap, and those still
//! unwritten at the stop, are counted as lost (`SinkCounters::lost`), logged and printed.

use crate::config::JournalConfig;
use crate::metrics::Metrics;
use crate::model::result::MonitorStateDoc;
use crate::model::ProbeResult;
use crate::oplog::OpLog;
use crate::runtime::{Flush, Publish, Report, SinkCounters};
use crate::sink::disk::RetryBackoff;
use crate::sink::journal::Journal;
use crate::summary::Tally;
use actix::prelude::*;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Results kept in memory while the journal cannot take them (≈1 KB each).
pub(crate) const MAX_PENDING_RESULTS: usize = 100_000;

/// Longest wait between two attempts to write to a failing journal.
pub(crate) const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Sink {
    journal: Journal,
    cfg: JournalConfig,
    tally: Tally,
    counters: SinkCounters,
    /// Lines a failed write left behind, retried at each flush tick: never dropped.
    pending: VecDeque<Vec<u8>>,
    dirty: bool,
    /// Journal only (no Elasticsearch): the sink applies the retention itself.
    journal_only: bool,
    /// When to try the failing journal again.
    backoff: RetryBackoff,
    /// Buffered lines already counted as lost by a final flush (a second one, at the
    /// actor's stop, must not count them again).
    buffered_lost: u64,
    /// [`MAX_PENDING_RESULTS`] (smaller in tests).
    max_pending: usize,
    /// The run's metrics: every journaled result is counted there.
    metrics: Arc<Metrics>,
    /// WARN/ERROR lines for the operator, derived from the results.
    oplog: OpLog,
}

impl Sink {
    pub fn new(journal: Journal, cfg: JournalConfig, journal_only: bool) -> Self {
        Self {
            counters: SinkCounters {
                segment: journal.segment(),
                ..Default::default()
            },
            journal,
            tally: Tally::default(),
            pending: VecDeque::new(),
            dirty: false,
            journal_only,
            backoff: RetryBackoff::new(
                Duration::from_millis(cfg.flush_interval_ms.max(10)),
                MAX_RETRY_WAIT,
            ),
            cfg,
            buffered_lost: 0,
            max_pending: MAX_PENDING_RESULTS,
            metrics: Arc::new(Metrics::new()),
            oplog: OpLog::default(),
        }
    }

    /// Records into `metrics` (the run's registry) instead of a private one.
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// True while the journal is failing (results wait in memory or in its buffer).
    fn failing(&self) -> bool {
        self.backoff.failures() > 0
    }

    fn write_line(&mut self, line: Vec<u8>) {
        if !self.pending.is_empty() || self.failing() {
            // Keep the order; the retry writes them.
            if self.pending.len() >= self.max_pending {
                self.lose(1, "the journal cannot be written and the results waiting for it fill the memory cap");
            } else {
                self.pending.push_back(line);
            }
        } else if let Err(e) = self.journal.append(&line) {
            self.pending.push_back(line);
            self.write_failed(&e);
        } else {
            self.counters.written += 1;
            self.dirty = true;
        }
        self.counters.pending_writes = self.pending.len();
    }

    fn lose(&mut self, n: u64, why: &str) {
        // Log the first loss and then every thousandth: a count, not a flood.
        let before = self.counters.lost;
        self.counters.lost += n;
        if before == 0 || before / 1000 != self.counters.lost / 1000 {
            tracing::error!(lost = self.counters.lost, error = ?self.counters.last_error, reason = why, dir = %self.journal.dir().display(), "results lost: not written to the journal");
        }
    }

    fn write_failed(&mut self, e: &std::io::Error) {
        self.counters.write_errors += 1;
        self.counters.last_error = Some(e.to_string());
        let first = !self.failing();
        let wait = self.backoff.failed(tokio::time::Instant::now());
        self.metrics.set_journal_failing(true);
        let (pending, buffered) = (self.pending.len(), self.journal.unflushed_lines());
        if first {
            tracing::error!(error = %e, dir = %self.journal.dir().display(), pending, buffered, retry_in_ms = wait.as_millis() as u64, "journal write failed; results wait in memory, retried with backoff");
        } else {
            tracing::warn!(error = %e, pending, buffered, failures = self.backoff.failures(), retry_in_ms = wait.as_millis() as u64, "journal write still failing");
        }
    }

    /// Writes what waits in memory, then flushes the buffer. Returns the first error.
    fn try_write(&mut self) -> std::io::Result<()> {
        while let Some(line) = self.pending.front() {
            self.journal.append(line)?;
            self.pending.pop_front();
            self.counters.written += 1;
            self.dirty = true;
        }
        if self.dirty || self.failing() {
            self.journal.flush()?;
            self.dirty = false;
            self.counters.segment = self.journal.segment();
        }
        Ok(())
    }

    /// The flush tick: writes and flushes, or, while the journal fails, retries only when
    /// the backoff says so.
    fn flush_buffer(&mut self) {
        if !self.backoff.due(tokio::time::Instant::now()) {
            return;
        }
        match self.try_write() {
            Ok(()) => {
                let failures = self.backoff.succeeded();
                if failures > 0 {
                    self.metrics.set_journal_failing(false);
                    tracing::info!(
                        failures,
                        lost = self.counters.lost,
                        "journal writable again; every waiting result written"
                    );
                }
            }
            Err(e) => self.write_failed(&e),
        }
        self.counters.pending_writes = self.pending.len();
    }

    /// The last flush at the stop: one more try; what still cannot be written is lost,
    /// counted and said.
    fn final_flush(&mut self) {
        match self.try_write() {
            Ok(()) => {
                self.backoff.succeeded();
            }
            Err(e) => {
                self.counters.write_errors += 1;
                self.counters.last_error = Some(e.to_string());
                let buffered = self.journal.unflushed_lines();
                let newly = buffered.saturating_sub(self.buffered_lost);
                let n = self.pending.len() as u64 + newly;
                self.buffered_lost = buffered;
                // `written` says what reached the file system: not these.
                self.counters.written = self.counters.written.saturating_sub(newly);
                self.pending.clear();
                self.counters.lost += n;
                if n > 0 {
                    tracing::error!(error = %e, dir = %self.journal.dir().display(), lost_now = n, lost = self.counters.lost, "journal cannot be written at the stop: results lost");
                }
            }
        }
        self.counters.pending_writes = self.pending.len();
    }
}

impl Actor for Sink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        // Ends the rate-limit windows of the operator's job failure lines.
        ctx.run_interval(Duration::from_secs(1), |act, _| {
            act.oplog.tick(std::time::Instant::now(), |line| line.log())
        });
        ctx.run_interval(
            Duration::from_millis(self.cfg.flush_interval_ms.max(10)),
            |act, _| act.flush_buffer(),
        );
        if self.journal_only {
            // With Elasticsearch the shipper deletes shipped segments; without, the sink
            // applies the retention to closed segments, hourly, off the arbiter.
            ctx.run_interval(Duration::from_secs(3600), |act, _| {
                let (dir, current) = (act.journal.dir().to_owned(), act.journal.segment());
                let (hours, max) = (act.cfg.retention_hours, act.cfg.retention_max_bytes);
                tokio::task::spawn_blocking(move || {
                    crate::sink::journal::apply_retention(&dir, current, hours, max, false)
                });
            });
        }
        // fsync on the journal's fsync thread: never block the arbiter on the disk.
        ctx.run_interval(
            Duration::from_millis(self.cfg.fsync_interval_ms.max(10)),
            |act, _| {
                if act.failing() {
                    return; // the flush retry reports the trouble; fsync adds nothing
                }
                if let Err(e) = act.journal.sync_later() {
                    tracing::error!(error = %e, "journal fsync failed");
                }
            },
        );
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.oplog.tick(
            std::time::Instant::now() + crate::oplog::JOB_LOG_INTERVAL,
            |l| l.log(),
        );
        self.final_flush();
        Running::Stop
    }
}

impl Handler<Publish> for Sink {
    type Result = ();
    fn handle(&mut self, msg: Publish, _: &mut Self::Context) {
        let mut r = msg.0;
        self.oplog
            .observe(&r, std::time::Instant::now(), |l| l.log());
        stamp_state(&self.oplog, &mut r);
        match serde_json::to_vec(&r) {
            Ok(line) => {
                self.tally.add(&r);
                self.metrics.record(&r);
                self.write_line(line);
            }
            // Cannot happen for our own types; say so loudly rather than drop silently.
            Err(e) => tracing::error!(error = %e, "result could not be encoded"),
        }
    }
}

/// Writes the monitor's state (Heartbeat's `state.*`, tracked by the oplog from the results
/// in the order the sink receives them) into a check result.
fn stamp_state(oplog: &OpLog, r: &mut ProbeResult) {
    let Some(m) = &r.monitor else {
        return;
    };
    r.state = oplog
        .check_state(&m.id, r.timestamp)
        .map(|v| MonitorStateDoc {
            id: v.id,
            status: v.status.heartbeat_word().to_owned(),
            started_at: v.started_at,
            duration_ms: v.duration_ms,
            checks: v.checks as u64,
            up: v.up as u64,
            down: v.down as u64,
        });
}

impl Handler<Flush> for Sink {
    type Result = AtomicResponse<Self, Result<u64, String>>;
    /// The stop's flush: never an error for the disk (what could not be written is
    /// counted in `lost`); `written` minus `lost` is on disk, fsynced when it answers.
    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        // The stop: say what the rate limit held back.
        self.oplog.tick(
            std::time::Instant::now() + crate::oplog::JOB_LOG_INTERVAL,
            |l| l.log(),
        );
        self.final_flush();
        // The sink handles nothing else until the fsync is done (an atomic response), but
        // its thread is free: the fsync runs on the journal's fsync thread, after every
        // one queued before.
        let (synced, written) = (self.journal.sync(), self.counters.written);
        let dir = self.journal.dir().to_owned();
        AtomicResponse::new(Box::pin(
            async move {
                if let Err(e) = synced.await {
                    tracing::error!(error = %e, dir = %dir.display(), "journal fsync at the stop failed: the last results may not survive a power loss");
                }
                Ok(written)
            }
            .into_actor(self),
        ))
    }
}

impl Handler<Report> for Sink {
    type Result = MessageResult<Report>;
    fn handle(&mut self, _: Report, _: &mut Self::Context) -> Self::Result {
        MessageResult((self.tally.clone(), self.counters.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Outcome, ResultContext};
    use crate::runtime::SinkHandle;
    use crate::sink::disk::DiskFaults;

    fn sink_on(dir: &std::path::Path, faults: &DiskFaults, max_pending: usize) -> SinkHandle {
        let cfg = JournalConfig {
            dir: dir.to_owned(),
            flush_interval_ms: 10,
            ..Default::default()
        };
        let journal = Journal::open_with(dir, 1 << 30, faults.clone()).unwrap();
        let mut sink = Sink::new(journal, cfg, true);
        sink.max_pending = max_pending;
        SinkHandle::new(sink.start(), std::num::NonZeroUsize::new(16).unwrap())
    }

    #[actix_rt::test]
    async fn results_the_full_disk_refuses_wait_in_memory_and_are_written_when_space_returns() {
        tokio::time::pause();
        let d = tempfile::tempdir().unwrap();
        let faults = DiskFaults::default();
        let sink = sink_on(d.path(), &faults, 1000);
        let ctx = ResultContext::new("r", "lab", "o");
        faults.set_space(Some(0));
        for _ in 0..50 {
            sink.publish(ctx.result(Action::Liveness, Outcome::Success))
                .await;
        }
        // A flush tick fails: the results wait (no I/O until the backoff allows it).
        tokio::time::sleep(Duration::from_millis(30)).await;
        let (_, c) = sink.report().await.unwrap();
        assert!(c.write_errors > 0 && c.lost == 0, "{c:?}");
        faults.set_space(None);
        sink.flush().await.unwrap();
        let (tally, c) = sink.report().await.unwrap();
        assert_eq!(c.lost, 0);
        assert_eq!(tally.results, 50);
        assert_eq!(crate::sink::journal::read_all(d.path()).unwrap().len(), 50);
    }

    #[actix_rt::test]
    async fn beyond_the_memory_cap_and_at_a_stop_on_a_full_disk_results_are_counted_as_lost() {
        let d = tempfile::tempdir().unwrap();
        let faults = DiskFaults::default();
        let sink = sink_on(d.path(), &faults, 10);
        let ctx = ResultContext::new("r", "lab", "o");
        sink.publish(ctx.result(Action::Auth, Outcome::Success))
            .await;
        sink.flush().await.unwrap(); // one result on disk
        faults.set_space(Some(0));
        for _ in 0..40 {
            sink.publish(ctx.result(Action::Liveness, Outcome::Success))
                .await;
        }
        sink.flush().await.unwrap(); // the stop's flush, disk still full
        let (tally, c) = sink.report().await.unwrap();
        let on_disk = crate::sink::journal::read_all(d.path()).unwrap().len() as u64;
        assert_eq!(on_disk, 1);
        assert_eq!(c.written, 1);
        assert_eq!(tally.results, 41);
        assert_eq!(c.lost, 40, "{c:?}");
        assert!(c.last_error.as_deref().unwrap().contains("No space left"));
    }
}
