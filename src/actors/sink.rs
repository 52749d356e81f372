//! The sink actor: receives every result, appends it to the journal, keeps the tallies.
//! Producers go through [`SinkHandle::publish`], which waits for a slot (a semaphore sized
//! `sink.buffer`) before sending: actix mailboxes are not back-pressure by themselves.

use crate::config::JournalConfig;
use crate::model::ProbeResult;
use crate::sink::journal::Journal;
use crate::summary::Tally;
use actix::prelude::*;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Where the sink stands, for tests, the summary and the progress line.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SinkCounters {
    pub written: u64,
    pub pending_writes: usize,
    pub write_errors: u64,
    pub segment: u64,
}

/// One result to record.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub ProbeResult);

/// Write and fsync everything received so far.
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
pub struct Flush;

/// Tallies and counters so far.
#[derive(Message)]
#[rtype(result = "(Tally, SinkCounters)")]
pub struct Report;

pub struct Sink {
    journal: Journal,
    cfg: JournalConfig,
    tally: Tally,
    counters: SinkCounters,
    /// Lines a failed write left behind, retried at each flush tick: never dropped.
    pending: VecDeque<Vec<u8>>,
    dirty: bool,
    /// Journal only (no Elasticsearch): the sink applies the retention itself.
    journal_only: bool,
}

impl Sink {
    pub fn new(journal: Journal, cfg: JournalConfig, journal_only: bool) -> Self {
        Self {
            counters: SinkCounters {
                segment: journal.segment(),
                ..Default::default()
            },
            journal,
            cfg,
            tally: Tally::default(),
            pending: VecDeque::new(),
            dirty: false,
            journal_only,
        }
    }

    fn write_line(&mut self, line: Vec<u8>) {
        if !self.pending.is_empty() {
            self.pending.push_back(line);
            return;
        }
        if let Err(e) = self.journal.append(&line) {
            self.counters.write_errors += 1;
            tracing::error!(error = %e, dir = %self.journal.dir().display(), "journal write failed; keeping the result in memory and retrying");
            self.pending.push_back(line);
        } else {
            self.counters.written += 1;
            self.dirty = true;
        }
        self.counters.pending_writes = self.pending.len();
    }

    fn retry_pending(&mut self) {
        while let Some(line) = self.pending.front() {
            match self.journal.append(line) {
                Ok(()) => {
                    self.pending.pop_front();
                    self.counters.written += 1;
                    self.dirty = true;
                }
                Err(e) => {
                    self.counters.write_errors += 1;
                    tracing::error!(error = %e, pending = self.pending.len(), "journal write still failing");
                    break;
                }
            }
        }
        self.counters.pending_writes = self.pending.len();
    }

    fn flush_buffer(&mut self) -> std::io::Result<()> {
        self.retry_pending();
        if self.dirty {
            self.journal.flush()?;
            self.dirty = false;
            self.counters.segment = self.journal.segment();
        }
        Ok(())
    }
}

impl Actor for Sink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        ctx.run_interval(
            Duration::from_millis(self.cfg.flush_interval_ms.max(10)),
            |act, _| {
                if let Err(e) = act.flush_buffer() {
                    tracing::error!(error = %e, "journal flush failed");
                }
            },
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
        // fsync on a blocking thread: never block the arbiter on the disk.
        ctx.run_interval(
            Duration::from_millis(self.cfg.fsync_interval_ms.max(10)),
            |act, _| {
                if let Ok(f) = act.journal.sync_handle() {
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = f.sync_data() {
                            tracing::error!(error = %e, "journal fsync failed");
                        }
                    });
                }
            },
        );
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if let Err(e) = self.flush_buffer() {
            tracing::error!(error = %e, "journal flush at stop failed");
        }
        Running::Stop
    }
}

impl Handler<Publish> for Sink {
    type Result = ();
    fn handle(&mut self, msg: Publish, _: &mut Self::Context) {
        match serde_json::to_vec(&msg.0) {
            Ok(line) => {
                self.tally.add(&msg.0);
                self.write_line(line);
            }
            // Cannot happen for our own types; say so loudly rather than drop silently.
            Err(e) => tracing::error!(error = %e, "result could not be encoded"),
        }
    }
}

impl Handler<Flush> for Sink {
    type Result = Result<u64, String>;
    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        self.flush_buffer().map_err(|e| e.to_string())?;
        if !self.pending.is_empty() {
            return Err(format!(
                "{} results could not be written to the journal",
                self.pending.len()
            ));
        }
        // The final flush fsyncs inline: nothing else should run meanwhile.
        self.journal
            .sync_handle()
            .and_then(|f| f.sync_data())
            .map_err(|e| e.to_string())?;
        Ok(self.counters.written)
    }
}

impl Handler<Report> for Sink {
    type Result = MessageResult<Report>;
    fn handle(&mut self, _: Report, _: &mut Self::Context) -> Self::Result {
        MessageResult((self.tally.clone(), self.counters.clone()))
    }
}

/// How producers reach the sink: bounded, waiting.
#[derive(Clone)]
pub struct SinkHandle {
    addr: Addr<Sink>,
    slots: Arc<Semaphore>,
}

impl SinkHandle {
    pub fn new(addr: Addr<Sink>, buffer: usize) -> Self {
        Self {
            addr,
            slots: Arc::new(Semaphore::new(buffer.max(1))),
        }
    }

    /// Hands a result to the sink, waiting while `buffer` results are already in flight.
    /// Returns false only when the sink is gone (then the result is logged, not lost silently).
    pub async fn publish(&self, r: ProbeResult) -> bool {
        let _slot = self.slots.acquire().await.expect("never closed");
        let id = r.event.id.clone();
        match self.addr.send(Publish(r)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(event_id = %id, error = %e, "sink unavailable: result not journaled");
                false
            }
        }
    }

    pub async fn flush(&self) -> Result<u64, String> {
        self.addr.send(Flush).await.map_err(|e| e.to_string())?
    }

    pub async fn report(&self) -> Option<(Tally, SinkCounters)> {
        self.addr.send(Report).await.ok()
    }

    pub fn addr(&self) -> &Addr<Sink> {
        &self.addr
    }
}
