//! What the actors and the probes share at run time: an environment's [`EnvRuntime`], and
//! the [`SinkHandle`] through which every producer reaches the sink actor (its messages and
//! counters are here, next to the handle, so that `probes` and `progress` need not know the
//! actor tree).

use crate::api::{ApiClient, TokenManager};
use crate::config::{EnvironmentConfig, HostSpec, JobLimits};
use crate::limiter::EnvLimits;
use crate::metrics::Metrics;
use crate::model::{BackupLevel, ProbeResult, ResultContext};
use crate::summary::Tally;
use actix::prelude::*;
use std::num::NonZeroUsize;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Everything the probes of one environment share, across threads.
pub struct EnvRuntime {
    pub name: Arc<str>,
    pub cfg: Arc<EnvironmentConfig>,
    pub base_url: String,
    pub limits: Arc<EnvLimits>,
    /// `cfg.jobs`' launch concurrency and tracking cap, as validated.
    pub jobs: JobLimits,
    pub tokens: TokenManager,
    pub ctx: ResultContext,
    pub sink: SinkHandle,
    /// Hosts selected for this run (configuration, `--host`, `--hosts`, `--shard`).
    pub hosts: Vec<HostSpec>,
}

impl EnvRuntime {
    /// This thread's client for the environment.
    pub fn client(&self) -> ApiClient {
        ApiClient::for_this_thread(&self.base_url, self.cfg.clone(), self.limits.clone())
    }

    pub(crate) fn level_of(&self, h: &HostSpec) -> BackupLevel {
        h.level.unwrap_or(self.cfg.default_backup_level)
    }

    /// Publishes a result, waiting for the sink (back-pressure).
    pub(crate) async fn emit(&self, r: ProbeResult) {
        self.sink.publish(r).await;
    }
}

/// Where the sink stands, for tests, the summary and the progress line.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SinkCounters {
    /// Results appended to the journal (while the disk refuses, some may still wait in its
    /// buffer; after the stop's flush, exactly those that reached the file system).
    pub written: u64,
    /// Results the journal refused so far, kept in memory and retried.
    pub pending_writes: usize,
    /// Failed write attempts.
    pub write_errors: u64,
    pub segment: u64,
    /// Results that never reached the journal (memory cap reached, or still unwritten at
    /// the stop): counted, logged and printed at exit.
    pub lost: u64,
    /// The last journal write error.
    pub last_error: Option<String>,
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

/// What a sink actor answers: the three messages of a [`SinkHandle`] (the journaling
/// sink actor of `actors::sink`, or a test's recording actor).
pub trait SinkActor:
    Actor<Context = Context<Self>> + Handler<Publish> + Handler<Flush> + Handler<Report>
{
}

impl<A> SinkActor for A where
    A: Actor<Context = Context<A>> + Handler<Publish> + Handler<Flush> + Handler<Report>
{
}

/// How producers reach the sink: bounded, waiting.
/// It also carries the run's metrics, so that code holding a handle (every producer) can
/// register what it counts without another argument.
#[derive(Clone)]
pub struct SinkHandle {
    publish: Recipient<Publish>,
    flush: Recipient<Flush>,
    report: Recipient<Report>,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl SinkHandle {
    /// A handle on `addr`: the sink actor, or a test's recording one.
    pub fn new<A: SinkActor>(addr: Addr<A>, buffer: NonZeroUsize) -> Self {
        Self::with_metrics(addr, buffer, Arc::new(Metrics::new()))
    }

    /// A handle whose buffer use is exposed in `metrics`.
    pub(crate) fn with_metrics<A: SinkActor>(
        addr: Addr<A>,
        buffer: NonZeroUsize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cap = buffer.get();
        let slots = Arc::new(Semaphore::new(cap));
        let s = slots.clone();
        metrics.track_sink_buffer(cap, move || cap - s.available_permits().min(cap));
        Self {
            publish: addr.clone().recipient(),
            flush: addr.clone().recipient(),
            report: addr.recipient(),
            slots,
            metrics,
        }
    }

    /// The run's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Hands a result to the sink, waiting while `buffer` results are already in flight.
    /// Returns false only when the sink is gone (then the result is logged, not lost silently).
    pub(crate) async fn publish(&self, r: ProbeResult) -> bool {
        let _slot = self.slots.acquire().await.expect("never closed");
        let id = r.event.id.clone();
        match self.publish.send(Publish(r)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(event_id = %id, error = %e, "sink unavailable: result not journaled");
                false
            }
        }
    }

    pub async fn flush(&self) -> Result<u64, String> {
        self.flush.send(Flush).await.map_err(|e| e.to_string())?
    }

    pub async fn report(&self) -> Option<(Tally, SinkCounters)> {
        self.report.send(Report).await.ok()
    }
}
