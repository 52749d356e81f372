//! The supervisor: starts the tree downstream first (sink, worker arbiters, environments)
//! and stops it in reverse (environments stop producing and cancel their jobs, then the sink
//! flushes, then the arbiters stop). [`run`] is the library's entry point for `run`.

use super::environment::{
    EnvCounters, EnvSchedule, Environment, GetCounters, Resume, RunPass, Shutdown, StartSchedules,
};
use super::handoff::{HandedOffJob, Handoff};
use super::sink::Sink;
use super::Workers;
use crate::api::TokenManager;
use crate::config::{resolve_password, Config, HostSpec};
use crate::limiter::EnvLimits;
use crate::model::ResultContext;
use crate::runtime::{EnvRuntime, SinkCounters, SinkHandle};
use crate::schedule::{Clock, ScheduleStore};
use crate::selection::{select, Selection};
use crate::simulator::{self, SimulatorHandle};
use crate::sink::es_client;
use crate::sink::journal::Journal;
use crate::sink::shipper::{self, Shipper, ShipperCounters};
use crate::summary::Tally;
use actix::prelude::*;
use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// How to run.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// One pass, every job tracked to its end; otherwise service mode until shutdown.
    pub once: bool,
    pub selection: Selection,
    /// Seed of the scheduling jitter (tests); random otherwise.
    pub seed: Option<u64>,
    /// Jobs still running this long after the shutdown signal are abandoned.
    pub shutdown_deadline: Option<Duration>,
    /// A live progress line (on a terminal) instead of a `progress` log line every 10 s.
    pub live_progress: bool,
    /// The schedule's clock (tests start runs at any date); the system clock otherwise.
    pub clock: Option<Clock>,
    /// Test hook: the journal directory's writes (journal, checkpoint, dead letters) go
    /// through these injected faults; unlimited space by default.
    pub disk_faults: crate::sink::disk::DiskFaults,
    /// Test hook: told the address `/metrics` listens on once it is bound.
    pub metrics_bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub tally: Tally,
    pub sink: SinkCounters,
    pub environments: BTreeMap<String, EnvCounters>,
    /// True when the run ended because of the shutdown future.
    pub interrupted: bool,
    /// Shipping to Elasticsearch, when configured.
    pub shipping: Option<ShippingReport>,
    /// `[thresholds]` evaluated at the end (empty when none is set).
    pub thresholds: Vec<crate::summary::Verdict>,
    /// True when `[thresholds]` sets at least one threshold: they decide the exit code.
    pub thresholds_set: bool,
    /// The run's metrics (what `/metrics` served), as they stood at the end.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Where shipping stood when the run ended.
#[derive(Debug, Clone)]
pub struct ShippingReport {
    pub counters: ShipperCounters,
    /// Journal lines not yet in Elasticsearch (the next run or `iaso-probe ship` sends them).
    pub unshipped: u64,
    /// True when the shutdown future ended the wait for shipping after a completed pass.
    pub interrupted: bool,
}

impl RunReport {
    /// 2 on an internal error; with `[thresholds]`: 0 when every threshold held, 99 when
    /// one failed; without: 0 all passed, 1 some probe failed (or was skipped).
    pub fn exit_code(&self) -> i32 {
        let code = self.tally.exit_code();
        if code == crate::summary::EXIT_SETUP || !self.thresholds_set {
            return code;
        }
        if self.thresholds.iter().all(|v| v.passed) {
            crate::summary::EXIT_OK
        } else {
            crate::summary::EXIT_THRESHOLDS
        }
    }

    /// Shipping as the summaries show it.
    pub fn shipping_summary(&self) -> Option<crate::summary::ShippingSummary> {
        self.shipping
            .as_ref()
            .map(|s| crate::summary::ShippingSummary {
                stored: s.counters.stored,
                duplicates: s.counters.duplicates,
                dead_lettered: s.counters.dead_lettered,
                unshipped: s.unshipped,
                interrupted: s.interrupted,
            })
    }

    /// The `--summary-json` document, with the exit code the process ends with.
    pub fn summary_json(&self, exit_code: i32) -> serde_json::Value {
        crate::summary::summary_json(
            &self.run_id,
            &self.tally,
            self.shipping_summary().as_ref(),
            &self.thresholds,
            self.thresholds_set,
            self.interrupted,
            exit_code,
        )
    }
}

/// Why a run could not start or finish cleanly (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Selection(String),
    #[error("journal {dir}: {source}")]
    Journal { dir: String, source: std::io::Error },
    #[error("simulator for environment {env}: {source}")]
    Simulator { env: String, source: std::io::Error },
    #[error("environment {env}: {message}")]
    Environment { env: String, message: String },
    #[error("journal flush failed: {0}")]
    Flush(String),
    #[error("{0}")]
    Elasticsearch(String),
    #[error("{0}")]
    Schedule(String),
    /// Another process holds the journal directory (exit code 2).
    #[error(transparent)]
    Locked(#[from] crate::sink::lock::LockError),
    /// `[metrics] listen` cannot be bound (exit code 2).
    #[error(transparent)]
    Metrics(#[from] crate::metrics::server::ListenError),
}

/// The supervisor actor: knows every environment actor.
pub struct Supervisor {
    envs: BTreeMap<String, Addr<Environment>>,
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
struct RunOnce;

impl Handler<RunOnce> for Supervisor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: RunOnce, _: &mut Self::Context) -> Self::Result {
        let envs: Vec<_> = self.envs.values().cloned().collect();
        Box::pin(async move {
            let passes = envs.iter().map(|e| e.send(RunPass));
            for r in futures_util::future::join_all(passes).await {
                if let Err(e) = r {
                    tracing::error!(error = %e, "environment actor lost during the pass");
                }
            }
        })
    }
}

#[derive(Message)]
#[rtype(result = "BTreeMap<String, EnvCounters>")]
struct StopAll(Duration);

impl Handler<StopAll> for Supervisor {
    type Result = ResponseFuture<BTreeMap<String, EnvCounters>>;
    fn handle(&mut self, msg: StopAll, _: &mut Self::Context) -> Self::Result {
        let envs = self.envs.clone();
        Box::pin(async move {
            let mut out = BTreeMap::new();
            for (name, addr) in &envs {
                if let Ok(c) = addr.send(GetCounters).await {
                    out.insert(name.clone(), c);
                }
            }
            let stops = envs.values().map(|a| a.send(Shutdown { deadline: msg.0 }));
            futures_util::future::join_all(stops).await;
            out
        })
    }
}

/// One id per run. Never derived from the seed: result ids hash the run id, so two runs
/// sharing a seed (tests, `--seed` reruns) must still get distinct ids or Elasticsearch
/// would take the second run's results for replays of the first.
fn run_id() -> String {
    format!(
        "{}-{:08x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        rand::random::<u32>()
    )
}

/// This machine's name: `observer.hostname`, and the pod name `--shard-from-hostname` reads.
pub fn observer_hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Runs the prober until the pass ends (`once`) or `shutdown` resolves. Must be called
/// inside an actix System. Results go to the journal; the sink is flushed before returning.
pub async fn run(
    cfg: Config,
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let plan = select(&cfg, &opts.selection).map_err(RunError::Selection)?;
    let seed = opts.seed.unwrap_or_else(rand::random);
    let run_id = run_id();
    let observer = observer_hostname();
    tracing::info!(run_id = %run_id, environments = plan.len(), once = opts.once, "run starting");

    // The journal directory is ours alone for the whole run (journal, checkpoint, handover,
    // schedule state): a second instance there fails here, before it writes anything.
    let _lock = crate::sink::lock::JournalLock::acquire(&cfg.journal.dir)?;

    // Downstream first: the sink.
    let journal = Journal::open_with(
        &cfg.journal.dir,
        cfg.journal.segment_max_bytes,
        opts.disk_faults.clone(),
    )
    .map_err(|e| RunError::Journal {
        dir: cfg.journal.dir.display().to_string(),
        source: e,
    })?;
    // When each check, scenario and spec last ran: a start resumes the schedule.
    let schedule = Arc::new(
        ScheduleStore::open(&cfg.journal.dir).map_err(|e| RunError::Schedule(e.to_string()))?,
    );
    let clock = opts.clock.clone().unwrap_or_default();
    let narrowed = !opts.selection.hosts.is_empty()
        || opts.selection.hosts_file.is_some()
        || opts.selection.shard.is_some();
    let journal_only = !es_client::is_configured(&cfg.elasticsearch);
    // Self-observation: one registry for the run; the listener (opt-in) binds first, so a
    // taken address fails the start before anything is probed.
    let metrics = Arc::new(crate::metrics::Metrics::new());
    metrics.track_journal(cfg.journal.dir.clone());
    let mut metrics_bound = opts.metrics_bound;
    let metrics_server = match cfg.metrics.listen.as_deref().filter(|l| !l.is_empty()) {
        Some(listen) => {
            let server = crate::metrics::server::MetricsServer::start(listen, metrics.clone())?;
            if let Some(tx) = metrics_bound.take() {
                let _ = tx.send(server.addr());
            }
            Some(server)
        }
        None => None,
    };
    let sink_addr = Sink::new(journal, cfg.journal.clone(), journal_only)
        .with_metrics(metrics.clone())
        .start();
    let sink = SinkHandle::with_metrics(sink_addr, cfg.sink.buffer, metrics.clone());

    // The sink's second half: shipping the journal to Elasticsearch, when configured.
    let (stop_ship, stop_ship_rx) = tokio::sync::watch::channel(false);
    let shipping = start_shipping(&cfg, stop_ship_rx, &opts.disk_faults, &metrics).await?;

    // Worker arbiters for job actors, one per core.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arbiters: Vec<Arbiter> = (0..cores).map(|_| Arbiter::new()).collect();
    let workers = Workers::new(arbiters.iter().map(|a| a.handle()).collect());

    // Jobs the last stop handed over; tracked again below.
    let handoff = Arc::new(Handoff::new(&cfg.journal.dir));
    let handed_over = load_handoff(&handoff);

    // Simulators (kept alive for the whole run), then the environments.
    let mut simulators: Vec<SimulatorHandle> = Vec::new();
    let mut simulated = std::collections::BTreeSet::new();
    let mut envs = BTreeMap::new();
    for (i, (name, env_cfg, hosts)) in plan.into_iter().enumerate() {
        let base_url = match (&env_cfg.simulator, &env_cfg.base_url) {
            (Some(sim), _) => {
                let h =
                    simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).map_err(|e| {
                        RunError::Simulator {
                            env: name.clone(),
                            source: e,
                        }
                    })?;
                let url = h.base_url();
                tracing::info!(env = %name, url = %url, "in-process simulator started");
                simulators.push(h);
                simulated.insert(name.clone());
                url
            }
            (None, Some(u)) => u.clone(),
            (None, None) => unreachable!("validated: base_url or simulator"),
        };
        crate::net::log_outbound(
            &format!("environments.{name}"),
            &env_cfg.tls,
            &env_cfg.proxy(),
        );
        let password =
            resolve_password(&env_cfg.credentials).map_err(|m| RunError::Environment {
                env: name.clone(),
                message: m,
            })?;
        let rate = NonZeroU32::new(env_cfg.rate_limit_per_sec).expect("validated > 0");
        let burst = NonZeroU32::new(env_cfg.rate_limit_burst).expect("validated > 0");
        let limits = Arc::new(EnvLimits::new(&name, rate, burst, env_cfg.max_in_flight));
        metrics.track_limiter(&name, limits.clone());
        let mut restores = if opts.selection.hosts.is_empty() && opts.selection.hosts_file.is_none()
        {
            env_cfg.restores.clone()
        } else {
            // A host selection narrows restores to the selected hosts too.
            env_cfg
                .restores
                .iter()
                .filter(|r| hosts.iter().any(|h: &HostSpec| h.name == r.host))
                .cloned()
                .collect()
        };
        let namespace = env_cfg.namespace_of(&name);
        let geo_name = cfg.observer.geo_name.clone();
        let mut env_cfg = env_cfg;
        if let Some(shard) = opts.selection.shard {
            // A restore belongs to the shard of its host (the same hash), and only the
            // checks owner runs the checks: N shards write one copy of each.
            restores.retain(|r| shard.owns(&r.host));
            if !shard.runs_checks(opts.selection.checks_owner) {
                env_cfg.checks.disable_all();
            }
        }
        let rt = Arc::new(EnvRuntime {
            name: name.as_str().into(),
            tokens: TokenManager::new(
                env_cfg.credentials.username.clone().unwrap_or_default(),
                password,
            ),
            cfg: Arc::new(env_cfg),
            base_url,
            limits,
            ctx: ResultContext::new(&run_id, &name, &observer)
                .with_shard(opts.selection.shard.map(|s| s.to_string()))
                .with_namespace(&namespace)
                .with_geo_name(geo_name.as_deref()),
            sink: sink.clone(),
            hosts,
        });
        let env = Environment::new(
            rt,
            workers.clone(),
            restores,
            !opts.once,
            seed.wrapping_add(i as u64),
            handoff.clone(),
            EnvSchedule {
                store: schedule.clone(),
                clock: clock.clone(),
                prune: !narrowed,
            },
        )
        .start();
        envs.insert(name, env);
    }
    for (env, jobs) in group_by_env(handed_over) {
        match envs.get(&env) {
            Some(_) if simulated.contains(&env) => {
                // Jobs of a simulator that died with the last process cannot be polled.
                tracing::warn!(env = %env, jobs = jobs.len(), "handed-over jobs of an environment now served by an in-process simulator: dropped");
            }
            Some(addr) => {
                let _ = addr.send(Resume(jobs)).await;
            }
            None => {
                // Not probed by this run (--env, or gone from the configuration): keep them
                // for a run that probes that environment.
                tracing::warn!(env = %env, jobs = jobs.len(), file = %handoff.path().display(), "handed-over jobs of an environment this run does not probe: kept for a later run");
                for j in jobs {
                    handoff.push(j);
                }
            }
        }
    }
    if !opts.once {
        // Only now: a first tick before the resume could launch a resumed host again.
        for addr in envs.values() {
            let _ = addr.send(StartSchedules).await;
        }
    }
    let supervisor = Supervisor { envs }.start();
    let saver = actix_rt::spawn(schedule.clone().save_periodically());

    let progress = actix_rt::spawn(crate::progress::report(sink.clone(), opts.live_progress));
    metrics.set_started();
    let deadline = opts.shutdown_deadline.unwrap_or(Duration::from_secs(10));
    let mut interrupted = false;
    tokio::pin!(shutdown);
    if opts.once {
        tokio::select! {
            r = supervisor.send(RunOnce) => { let _ = r; }
            _ = &mut shutdown => {
                interrupted = true;
                tracing::warn!("shutdown requested: stopping the pass");
            }
        }
    } else {
        (&mut shutdown).await;
        interrupted = true;
        tracing::info!("shutdown requested: stopping");
    }
    // Not ready from here on: a load balancer or orchestrator stops sending us work.
    metrics.set_stopping();
    let environments = supervisor.send(StopAll(deadline)).await.unwrap_or_default();
    saver.abort();
    schedule.save_logged();
    match handoff.save() {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(jobs = n, file = %handoff.path().display(), "jobs still running handed over: the next start tracks them to their end")
        }
        Err(e) => {
            tracing::error!(jobs = handoff.len(), file = %handoff.path().display(), error = %e, "cannot write the handed-over jobs: they will not be tracked again")
        }
    }

    progress.abort();
    crate::progress::clear();
    // Producers are stopped: flush the sink, then stop the arbiters.
    let flushed = sink.flush().await;
    let (tally, counters) = sink.report().await.unwrap_or_default();
    for a in &arbiters {
        a.stop();
    }
    drop(simulators);
    let written = flushed.map_err(RunError::Flush)?;
    tracing::info!(run_id = %run_id, results = written, "run finished, journal flushed");

    // Then let shipping catch up, within its deadline.
    let shipping = match shipping {
        None => None,
        Some((task, counters)) => {
            let _ = stop_ship.send(true);
            // A completed pass waits for shipping up to once_ship_deadline_secs; a stop
            // (service mode, or a pass cut short) only up to the shutdown deadline.
            let deadline = if opts.once && !interrupted {
                Duration::from_secs(cfg.elasticsearch.once_ship_deadline_secs)
            } else {
                deadline
            };
            let mut wait_interrupted = false;
            tokio::select! {
                r = tokio::time::timeout(deadline, task) => if r.is_err() {
                    tracing::warn!(deadline_s = deadline.as_secs(), "shipping did not catch up before the deadline; the next run or `iaso-probe ship` sends the rest");
                },
                // Ctrl-C while a completed pass waits for shipping ends the wait.
                _ = &mut shutdown, if !interrupted => {
                    wait_interrupted = true;
                    tracing::warn!("shutdown requested while waiting for shipping: the rest stays in the journal (the next run or `iaso-probe ship` sends it)");
                }
            }
            let counters = counters.lock().unwrap().clone();
            // From the shipper's own position: a checkpoint a full disk kept from being
            // saved does not make stored results look unshipped.
            let unshipped =
                shipper::unshipped_from(&cfg.journal.dir, counters.position).unwrap_or(u64::MAX);
            tracing::info!(
                stored = counters.stored,
                duplicates = counters.duplicates,
                dead_lettered = counters.dead_lettered,
                unshipped,
                "shipping finished"
            );
            Some(ShippingReport {
                counters,
                unshipped,
                interrupted: wait_interrupted,
            })
        }
    };
    if let Some(server) = metrics_server {
        server.stop().await;
    }
    let thresholds = crate::summary::evaluate(
        &cfg.thresholds,
        &tally,
        shipping.as_ref().map(|s| s.unshipped),
    );
    for v in thresholds.iter().filter(|v| !v.passed) {
        tracing::warn!(threshold = v.threshold, environment = ?v.environment, check = ?v.check, limit = v.limit, value = ?v.value, "threshold failed");
    }
    Ok(RunReport {
        run_id,
        tally,
        sink: counters,
        environments,
        interrupted,
        shipping,
        thresholds,
        thresholds_set: cfg.thresholds.any(),
        metrics,
    })
}

/// The jobs the last stop handed over. An unreadable file is moved aside (never deleted)
/// with an error naming it: the run goes on without those jobs.
fn load_handoff(handoff: &Handoff) -> Vec<HandedOffJob> {
    match handoff.load() {
        Ok(jobs) => jobs,
        Err(e) => {
            match handoff.quarantine() {
                Ok(aside) => {
                    tracing::error!(error = %e, moved_to = %aside.display(), "cannot read the jobs handed over by the last stop; they are not tracked")
                }
                Err(io) => {
                    tracing::error!(error = %e, move_error = %io, "cannot read the jobs handed over by the last stop, nor move the file aside")
                }
            }
            Vec::new()
        }
    }
}

/// Groups handed-over jobs by environment.
fn group_by_env(jobs: Vec<HandedOffJob>) -> BTreeMap<String, Vec<HandedOffJob>> {
    let mut out: BTreeMap<String, Vec<HandedOffJob>> = BTreeMap::new();
    for j in jobs {
        out.entry(j.env.clone()).or_default().push(j);
    }
    out
}

type ShippingTask = (
    actix_rt::task::JoinHandle<()>,
    Arc<std::sync::Mutex<ShipperCounters>>,
);

/// Builds the client, installs templates when asked, and starts following the journal.
async fn start_shipping(
    cfg: &Config,
    stop: tokio::sync::watch::Receiver<bool>,
    faults: &crate::sink::disk::DiskFaults,
    metrics: &Arc<crate::metrics::Metrics>,
) -> Result<Option<ShippingTask>, RunError> {
    let Some((client, target)) =
        es_client::build(&cfg.elasticsearch).map_err(RunError::Elasticsearch)?
    else {
        tracing::info!("no Elasticsearch configured (elasticsearch.urls, cloud_id or ELASTICSEARCH_URL): results go to the journal only");
        return Ok(None);
    };
    tracing::info!(target = %target.description, "shipping results to Elasticsearch");
    let mut shipper = Shipper::new(client, cfg.elasticsearch.clone(), cfg.journal.clone())
        .map_err(|e| RunError::Journal {
            dir: cfg.journal.dir.display().to_string(),
            source: e,
        })?;
    shipper.set_disk_faults(faults.clone());
    shipper.set_metrics(metrics.clone());
    if cfg.elasticsearch.setup_on_start {
        shipper.require_setup(crate::setup::elasticsearch_plan_with(
            &crate::setup::PlanOptions::from_config(&cfg.elasticsearch),
        ));
    }
    let counters = shipper.counters();
    let task = actix_rt::spawn(shipper.follow(stop));
    Ok(Some((task, counters)))
}

#[cfg(test)]
mod tests {
    use super::run_id;

    #[test]
    fn run_ids_are_distinct_even_within_one_millisecond() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| run_id()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
