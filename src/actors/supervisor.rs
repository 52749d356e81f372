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
use crate::config::{Config, ConfigError, HostSpec, ValidConfig};
use crate::exit::ExitCode;
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
    pub fn exit_code(&self) -> ExitCode {
        let thresholds = self
            .thresholds_set
            .then(|| self.thresholds.iter().all(|v| v.passed));
        self.tally.pass_exit_code(thresholds)
    }

    /// Shipping as the summaries show it.
    pub(crate) fn shipping_summary(&self) -> Option<crate::summary::ShippingSummary> {
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
    pub(crate) fn summary_json(&self, exit_code: ExitCode) -> serde_json::Value {
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
    /// The configuration does not validate (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
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
pub(crate) struct Supervisor {
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
pub(crate) fn observer_hostname() -> String {
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
/// `cfg` is validated first (secrets and hosts files read once): the actors only ever see a
/// [`ValidConfig`].
// Long on purpose: the start order (sink, shipping, arbiters, environments) and the stop
// order (environments, schedule and handover, sink, shipping) read top to bottom, one named
// step per line.
pub async fn run(
    cfg: Config,
    mut opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let valid = ValidConfig::new(cfg).map_err(ConfigError::Invalid)?;
    let cfg = valid.config();
    let plan = select(cfg, &opts.selection).map_err(RunError::Selection)?;
    let seed = opts.seed.unwrap_or_else(rand::random);
    let run_id = run_id();
    tracing::info!(run_id = %run_id, environments = plan.len(), once = opts.once, "run starting");

    let (_lock, journal, schedule) = open_journal_dir(cfg, &opts.disk_faults)?;
    // Downstream first: the sink.
    let (metrics, metrics_server) = start_metrics(cfg, opts.metrics_bound.take())?;
    let journal_only = !cfg.elasticsearch.is_configured();
    let sink_addr = Sink::new(journal, cfg.journal.clone(), journal_only)
        .with_metrics(metrics.clone())
        .start();
    let sink = SinkHandle::with_metrics(sink_addr, valid.sink_buffer(), metrics.clone());

    // The sink's second half: shipping the journal to Elasticsearch, when configured.
    let (stop_ship, stop_ship_rx) = tokio::sync::watch::channel(false);
    let shipping = start_shipping(cfg, stop_ship_rx, &opts.disk_faults, &metrics).await?;

    // Worker arbiters for job actors, one per core.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arbiters: Vec<Arbiter> = (0..cores).map(|_| Arbiter::new()).collect();

    // Jobs the last stop handed over; tracked again below.
    let handoff = Arc::new(Handoff::new(&cfg.journal.dir));
    let handed_over = load_handoff(&handoff);

    let start = EnvStart {
        valid: &valid,
        opts: &opts,
        run_id: &run_id,
        observer: observer_hostname(),
        seed,
        sink: &sink,
        metrics: &metrics,
        workers: Workers::new(arbiters.iter().map(|a| a.handle()).collect()),
        handoff: &handoff,
        schedule: &schedule,
        clock: opts.clock.clone().unwrap_or_default(),
    };
    let started = start_environments(&start, plan)?;
    resume_handed_over(&started, &handoff, handed_over).await;
    if !opts.once {
        // Only now: a first tick before the resume could launch a resumed host again.
        for addr in started.envs.values() {
            let _ = addr.send(StartSchedules).await;
        }
    }
    let simulators = started.simulators;
    let supervisor = Supervisor { envs: started.envs }.start();
    let saver = actix_rt::spawn(schedule.clone().save_periodically());

    let progress = actix_rt::spawn(crate::progress::report(sink.clone(), opts.live_progress));
    metrics.set_started();
    let deadline = opts.shutdown_deadline.unwrap_or(Duration::from_secs(10));
    tokio::pin!(shutdown);
    let interrupted = wait_for_the_end(&supervisor, opts.once, shutdown.as_mut()).await;
    // Not ready from here on: a load balancer or orchestrator stops sending us work.
    metrics.set_stopping();
    let environments = supervisor.send(StopAll(deadline)).await.unwrap_or_default();
    saver.abort();
    schedule.save_logged();
    save_handoff(&handoff);
    progress.abort();
    crate::progress::clear();
    let (tally, counters) = flush_and_stop(&sink, arbiters, simulators, &run_id).await?;

    // Then let shipping catch up, within its deadline. A completed pass waits for shipping
    // up to once_ship_deadline_secs; a stop (service mode, or a pass cut short) only up to
    // the shutdown deadline.
    let _ = stop_ship.send(true);
    let shipping = match shipping {
        None => None,
        Some(task) => {
            let completed = opts.once && !interrupted;
            let ship_deadline = match completed {
                true => Duration::from_secs(cfg.elasticsearch.once_ship_deadline_secs),
                false => deadline,
            };
            let wait = (!interrupted).then_some(shutdown.as_mut());
            Some(finish_shipping(task, ship_deadline, wait, &cfg.journal.dir).await)
        }
    };
    if let Some(server) = metrics_server {
        server.stop().await;
    }
    let thresholds = evaluate_thresholds(cfg, &tally, shipping.as_ref());
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

/// The journal directory, ours alone for the whole run (journal, checkpoint, handover,
/// schedule state): a second instance there fails here, before it writes anything. Then
/// the journal, and the schedule state (when each check, scenario and spec last ran: a
/// start resumes the schedule).
fn open_journal_dir(
    cfg: &Config,
    faults: &crate::sink::disk::DiskFaults,
) -> Result<(crate::sink::lock::JournalLock, Journal, Arc<ScheduleStore>), RunError> {
    let dir = &cfg.journal.dir;
    let lock = crate::sink::lock::JournalLock::acquire(dir)?;
    let journal =
        Journal::open_with(dir, cfg.journal.segment_max_bytes, faults.clone()).map_err(|e| {
            RunError::Journal {
                dir: dir.display().to_string(),
                source: e,
            }
        })?;
    let schedule =
        Arc::new(ScheduleStore::open(dir).map_err(|e| RunError::Schedule(e.to_string()))?);
    Ok((lock, journal, schedule))
}

/// Producers are stopped: flush the sink and take its report, then stop the arbiters and
/// the simulators.
async fn flush_and_stop(
    sink: &SinkHandle,
    arbiters: Vec<Arbiter>,
    simulators: Vec<SimulatorHandle>,
    run_id: &str,
) -> Result<(Tally, SinkCounters), RunError> {
    let flushed = sink.flush().await;
    let report = sink.report().await.unwrap_or_default();
    for a in &arbiters {
        a.stop();
    }
    drop(simulators);
    let written = flushed.map_err(RunError::Flush)?;
    tracing::info!(run_id = %run_id, results = written, "run finished, journal flushed");
    Ok(report)
}

/// `[thresholds]` against the run's tallies, each failed one logged.
fn evaluate_thresholds(
    cfg: &Config,
    tally: &Tally,
    shipping: Option<&ShippingReport>,
) -> Vec<crate::summary::Verdict> {
    let thresholds =
        crate::summary::evaluate(&cfg.thresholds, tally, shipping.map(|s| s.unshipped));
    for v in thresholds.iter().filter(|v| !v.passed) {
        tracing::warn!(threshold = v.threshold, environment = ?v.environment, check = ?v.check, limit = v.limit, value = ?v.value, "threshold failed");
    }
    thresholds
}

/// One registry for the run; the `/metrics` listener (opt-in) binds first, so a taken
/// address fails the start before anything is probed.
fn start_metrics(
    cfg: &Config,
    bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> Result<
    (
        Arc<crate::metrics::Metrics>,
        Option<crate::metrics::server::MetricsServer>,
    ),
    RunError,
> {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    metrics.track_journal(cfg.journal.dir.clone());
    let server = match cfg.metrics.listen.as_deref().filter(|l| !l.is_empty()) {
        Some(listen) => {
            let server = crate::metrics::server::MetricsServer::start(listen, metrics.clone())?;
            if let Some(tx) = bound {
                let _ = tx.send(server.addr());
            }
            Some(server)
        }
        None => None,
    };
    Ok((metrics, server))
}

/// What every environment actor of the run is started with.
struct EnvStart<'a> {
    valid: &'a ValidConfig,
    opts: &'a RunOptions,
    run_id: &'a str,
    observer: String,
    seed: u64,
    sink: &'a SinkHandle,
    metrics: &'a Arc<crate::metrics::Metrics>,
    workers: Workers,
    handoff: &'a Arc<Handoff>,
    schedule: &'a Arc<ScheduleStore>,
    clock: Clock,
}

impl EnvStart<'_> {
    /// `--host`, `--hosts` or `--shard` narrow the run: keep the state of the other specs.
    fn narrowed(&self) -> bool {
        let sel = &self.opts.selection;
        !sel.hosts.is_empty() || sel.hosts_file.is_some() || sel.shard.is_some()
    }
}

/// The environment actors, and the in-process simulators they probe (kept alive for the
/// whole run).
struct Started {
    envs: BTreeMap<String, Addr<Environment>>,
    simulators: Vec<SimulatorHandle>,
    simulated: std::collections::BTreeSet<String>,
}

/// Starts the simulators, then one actor per selected environment.
fn start_environments(
    start: &EnvStart<'_>,
    plan: Vec<(String, crate::config::EnvironmentConfig, Vec<HostSpec>)>,
) -> Result<Started, RunError> {
    let mut started = Started {
        envs: BTreeMap::new(),
        simulators: Vec::new(),
        simulated: std::collections::BTreeSet::new(),
    };
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
                started.simulators.push(h);
                started.simulated.insert(name.clone());
                url
            }
            (None, Some(u)) => u.clone(),
            (None, None) => unreachable!("validated: base_url or simulator"),
        };
        let env = start_environment(start, i, &name, env_cfg, hosts, base_url)?;
        started.envs.insert(name, env);
    }
    Ok(started)
}

/// One environment: its limits, token manager, restores (narrowed by the selection and the
/// shard) and actor.
fn start_environment(
    start: &EnvStart<'_>,
    index: usize,
    name: &str,
    mut env_cfg: crate::config::EnvironmentConfig,
    hosts: Vec<HostSpec>,
    base_url: String,
) -> Result<Addr<Environment>, RunError> {
    let (opts, sel) = (start.opts, &start.opts.selection);
    crate::net::log_outbound(
        &format!("environments.{name}"),
        &env_cfg.tls,
        &env_cfg.proxy(),
    );
    let checked = start
        .valid
        .environment(name)
        .ok_or_else(|| RunError::Environment {
            env: name.to_owned(),
            message: "not in the validated configuration".into(),
        })?;
    let l = checked.limits;
    let limits = Arc::new(EnvLimits::new(
        name,
        l.rate_per_sec,
        l.burst,
        l.max_in_flight,
    ));
    start.metrics.track_limiter(name, limits.clone());
    let mut restores = selected_restores(&env_cfg, &hosts, sel);
    let namespace = env_cfg.namespace_of(name);
    let geo_name = start.valid.config().observer.geo_name.clone();
    if let Some(shard) = sel.shard {
        // A restore belongs to the shard of its host (the same hash), and only the
        // checks owner runs the checks: N shards write one copy of each.
        restores.retain(|r| shard.owns(&r.host));
        if !shard.runs_checks(sel.checks_owner) {
            env_cfg.checks.disable_all();
        }
    }
    let rt = Arc::new(EnvRuntime {
        name: name.into(),
        tokens: TokenManager::new(
            env_cfg.credentials.username.clone().unwrap_or_default(),
            checked.password.clone(),
        ),
        cfg: Arc::new(env_cfg),
        base_url,
        limits,
        jobs: checked.jobs,
        ctx: ResultContext::new(start.run_id, name, &start.observer)
            .with_shard(sel.shard.map(|s| s.to_string()))
            .with_namespace(&namespace)
            .with_geo_name(geo_name.as_deref()),
        sink: start.sink.clone(),
        hosts,
    });
    Ok(Environment::new(
        rt,
        start.workers.clone(),
        restores,
        !opts.once,
        start.seed.wrapping_add(index as u64),
        start.handoff.clone(),
        EnvSchedule {
            store: start.schedule.clone(),
            clock: start.clock.clone(),
            prune: !start.narrowed(),
        },
    )
    .start())
}

/// The environment's restores a host selection keeps (all of them without one).
fn selected_restores(
    env_cfg: &crate::config::EnvironmentConfig,
    hosts: &[HostSpec],
    sel: &crate::selection::Selection,
) -> Vec<crate::config::RestoreSpec> {
    if sel.hosts.is_empty() && sel.hosts_file.is_none() {
        return env_cfg.restores.clone();
    }
    env_cfg
        .restores
        .iter()
        .filter(|r| hosts.iter().any(|h| h.name == r.host))
        .cloned()
        .collect()
}

/// Hands the jobs the last stop handed over to their environment's actor.
async fn resume_handed_over(started: &Started, handoff: &Handoff, jobs: Vec<HandedOffJob>) {
    for (env, jobs) in group_by_env(jobs) {
        match started.envs.get(&env) {
            Some(_) if started.simulated.contains(&env) => {
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
}

/// Waits for the pass (`once`) or the shutdown; true when the shutdown ended the run.
async fn wait_for_the_end(
    supervisor: &Addr<Supervisor>,
    once: bool,
    shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> bool {
    if once {
        tokio::select! {
            r = supervisor.send(RunOnce) => { let _ = r; false }
            _ = shutdown => {
                tracing::warn!("shutdown requested: stopping the pass");
                true
            }
        }
    } else {
        shutdown.await;
        tracing::info!("shutdown requested: stopping");
        true
    }
}

/// Writes the jobs still running for the next start.
fn save_handoff(handoff: &Handoff) {
    match handoff.save() {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(jobs = n, file = %handoff.path().display(), "jobs still running handed over: the next start tracks them to their end")
        }
        Err(e) => {
            tracing::error!(jobs = handoff.len(), file = %handoff.path().display(), error = %e, "cannot write the handed-over jobs: they will not be tracked again")
        }
    }
}

/// Lets shipping (already told to stop following) catch up within `deadline`; `shutdown`,
/// when given, ends the wait early (Ctrl-C while a completed pass waits for shipping).
async fn finish_shipping<F: Future<Output = ()>>(
    (task, counters): ShippingTask,
    deadline: Duration,
    shutdown: Option<std::pin::Pin<&mut F>>,
    journal_dir: &std::path::Path,
) -> ShippingReport {
    let mut wait_interrupted = false;
    let interruptible = shutdown.is_some();
    let shutdown = async move {
        match shutdown {
            Some(s) => s.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = tokio::time::timeout(deadline, task) => if r.is_err() {
            tracing::warn!(deadline_s = deadline.as_secs(), "shipping did not catch up before the deadline; the next run or `iaso-probe ship` sends the rest");
        },
        _ = shutdown, if interruptible => {
            wait_interrupted = true;
            tracing::warn!("shutdown requested while waiting for shipping: the rest stays in the journal (the next run or `iaso-probe ship` sends it)");
        }
    }
    let counters = counters.lock().unwrap().clone();
    // From the shipper's own position: a checkpoint a full disk kept from being saved does
    // not make stored results look unshipped.
    let unshipped = shipper::unshipped_from(journal_dir, counters.position).unwrap_or(u64::MAX);
    tracing::info!(
        stored = counters.stored,
        duplicates = counters.duplicates,
        dead_lettered = counters.dead_lettered,
        unshipped,
        "shipping finished"
    );
    ShippingReport {
        counters,
        unshipped,
        interrupted: wait_interrupted,
    }
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
    use super::{run, run_id, RunError, RunOptions};

    #[test]
    fn a_config_that_does_not_validate_is_refused_before_anything_starts() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::load::load_with(&crate::config::ConfigSource::Embedded, false)
            .unwrap()
            .config;
        cfg.journal.dir = d.path().join("journal");
        cfg.environments.get_mut("lab").unwrap().rate_limit_burst = 0;
        let r =
            actix::System::new().block_on(run(cfg, RunOptions::default(), std::future::pending()));
        match r {
            Err(RunError::Config(e)) => {
                assert!(
                    e.to_string().contains("environments.lab.rate_limit_burst"),
                    "{e}"
                )
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
        // Refused before the journal directory was locked or created.
        assert!(!d.path().join("journal").exists());
    }

    #[test]
    fn run_ids_are_distinct_even_within_one_millisecond() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| run_id()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
