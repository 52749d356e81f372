//! The environment actor: owns one environment's runtime (client per thread, limiter,
//! token), runs its checks, launches backups and restores with bounded concurrency and
//! hands each launched job to a job actor on a worker arbiter.

use super::handoff::{HandedOffJob, Handoff};
use super::job::{Job, JobTracker};
use super::Workers;
use crate::config::RestoreSpec;
use crate::probes::{self, EnvRuntime};
use actix::prelude::*;
use futures_util::stream::{self, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The kinds of periodic work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    Liveness,
    Health,
    ResponseTime,
    Auth,
    Backups,
    Restores,
}

impl Task {
    const ALL: [Task; 6] = [
        Task::Liveness,
        Task::Health,
        Task::ResponseTime,
        Task::Auth,
        Task::Backups,
        Task::Restores,
    ];

    /// The action its results carry (an internal error is reported under it).
    fn action(self) -> crate::model::Action {
        use crate::model::Action;
        match self {
            Task::Liveness => Action::Liveness,
            Task::Health => Action::Health,
            Task::ResponseTime => Action::ResponseTime,
            Task::Auth => Action::Auth,
            Task::Backups => Action::BackupLaunch,
            Task::Restores => Action::RestoreLaunch,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Task::Liveness => "liveness",
            Task::Health => "health",
            Task::ResponseTime => "response_time",
            Task::Auth => "auth",
            Task::Backups => "backups",
            Task::Restores => "restores",
        }
    }
}

/// Observable state, for tests and logs.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EnvCounters {
    pub runs: u64,
    pub missed_deadlines: u64,
    pub active_jobs: usize,
    pub logins: u64,
}

pub struct Environment {
    rt: Arc<EnvRuntime>,
    workers: Workers,
    tracker: Arc<JobTracker>,
    restores: Arc<Vec<RestoreSpec>>,
    service_mode: bool,
    stopping: bool,
    running: HashSet<Task>,
    counters: EnvCounters,
    rng: SmallRng,
}

impl Environment {
    pub fn new(
        rt: Arc<EnvRuntime>,
        workers: Workers,
        restores: Vec<RestoreSpec>,
        service_mode: bool,
        seed: u64,
        handoff: Arc<Handoff>,
    ) -> Self {
        // An in-process simulator dies with the process: its jobs cannot be polled again.
        let resumable = rt.cfg.jobs.resume_on_restart && rt.cfg.simulator.is_none();
        let handoff = resumable.then_some(handoff);
        let tracker = JobTracker::new(rt.cfg.jobs.max_tracked_jobs, handoff);
        Self {
            rt,
            workers,
            tracker,
            restores: Arc::new(restores),
            service_mode,
            stopping: false,
            running: HashSet::new(),
            counters: EnvCounters::default(),
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    fn enabled(&self, t: Task) -> bool {
        let c = &self.rt.cfg;
        match t {
            Task::Liveness => c.checks.liveness.enabled,
            Task::Health => c.checks.health.enabled,
            Task::ResponseTime => {
                c.checks.response_time.enabled && !c.checks.response_time_paths.is_empty()
            }
            Task::Auth => c.checks.auth.enabled,
            Task::Backups => c.jobs.backups_enabled && !self.rt.hosts.is_empty(),
            Task::Restores => c.jobs.restores_enabled && !self.restores.is_empty(),
        }
    }

    fn interval(&self, t: Task) -> Duration {
        let c = &self.rt.cfg;
        Duration::from_secs(match t {
            Task::Liveness => c.checks.liveness.interval_secs,
            Task::Health => c.checks.health.interval_secs,
            Task::ResponseTime => c.checks.response_time.interval_secs,
            Task::Auth => c.checks.auth.interval_secs,
            Task::Backups => c.jobs.backup_interval_secs,
            Task::Restores => c.jobs.restore_interval_secs,
        })
    }

    /// Service mode: each task first fires at a random point of its interval (so that
    /// environments and checks never fire in one burst), then every interval.
    fn schedule(&mut self, t: Task, first: bool, ctx: &mut Context<Self>) {
        let interval = self.interval(t);
        let delay = if first {
            let spread = interval.as_millis().min(60_000) as u64;
            Duration::from_millis(self.rng.gen_range(0..=spread))
        } else {
            interval
        };
        ctx.run_later(delay, move |act, ctx| {
            if act.stopping {
                return;
            }
            if act.running.contains(&t) {
                // The previous run still goes on: this tick's deadline is missed.
                act.counters.missed_deadlines += 1;
                tracing::warn!(env = %act.rt.name, task = t.name(), interval_s = interval.as_secs(), "previous run still in progress, skipping this one (missed deadline)");
            } else {
                act.running.insert(t);
                act.counters.runs += 1;
                let fut = run_task(t, act.rt.clone(), act.workers.clone(), act.tracker.clone(), act.restores.clone());
                ctx.spawn(fut.into_actor(act).map(move |_, act, _| {
                    act.running.remove(&t);
                }));
            }
            act.schedule(t, false, ctx);
        });
    }
}

/// One run of a task.
async fn run_task(
    t: Task,
    rt: Arc<EnvRuntime>,
    workers: Workers,
    tracker: Arc<JobTracker>,
    restores: Arc<Vec<RestoreSpec>>,
) {
    // A panic in the task is reported as an `internal` result, not a lost actor.
    let action = t.action();
    probes::guarded(
        &rt.clone(),
        action,
        run_task_unguarded(t, rt, workers, tracker, restores),
    )
    .await
}

async fn run_task_unguarded(
    t: Task,
    rt: Arc<EnvRuntime>,
    workers: Workers,
    tracker: Arc<JobTracker>,
    restores: Arc<Vec<RestoreSpec>>,
) {
    match t {
        Task::Liveness => rt.emit(probes::liveness(&rt).await).await,
        Task::Health => {
            for r in probes::health(&rt).await {
                rt.emit(r).await;
            }
        }
        Task::ResponseTime => {
            for path in rt.cfg.checks.response_time_paths.clone() {
                let r = probes::response_time(&rt, &path).await;
                rt.emit(r).await;
            }
        }
        Task::Auth => {
            let _ = probes::auth(&rt).await;
        }
        Task::Backups => {
            let specs = rt
                .hosts
                .iter()
                .map(|h| probes::backup_spec(&rt, h))
                .collect();
            launch_all(&rt, &workers, &tracker, specs).await
        }
        Task::Restores => {
            let specs = restores.iter().map(probes::restore_spec).collect();
            launch_all(&rt, &workers, &tracker, specs).await
        }
    }
}

/// Launches every spec, `launch_concurrency` at a time, and starts a job actor per launched
/// job (waiting for a tracking slot when `max_tracked_jobs` are already tracked). Without a
/// token, every launch is reported `skipped`.
async fn launch_all(
    rt: &Arc<EnvRuntime>,
    workers: &Workers,
    tracker: &Arc<JobTracker>,
    specs: Vec<crate::model::JobSpec>,
) {
    let client = rt.client();
    if let Err(e) = rt.lease(&client).await {
        for spec in &specs {
            rt.emit(probes::skipped(rt, spec, &e)).await;
        }
        return;
    }
    stream::iter(specs)
        .map(|spec| {
            let rt = rt.clone();
            async move {
                // Reserve before launching: never launch a job we could not track. The guard
                // also makes a shutdown wait for launches in flight.
                if tracker.is_closed() {
                    return;
                }
                let Some(claim) = tracker.claim(&spec) else {
                    rt.emit(probes::still_running(&rt, &spec)).await;
                    return;
                };
                let guard = tracker.reserve(Some(claim)).await;
                if tracker.is_closed() {
                    return;
                }
                if let Some(job) = probes::launch(&rt, spec).await {
                    Job::spawn(workers.pick(), rt, probes::JobProgress::new(job), guard);
                }
            }
        })
        .buffer_unordered(rt.cfg.jobs.launch_concurrency.max(1))
        .for_each(|_| async {})
        .await;
}

impl Actor for Environment {
    type Context = Context<Self>;
}

/// Service mode: start every task's schedule. Sent by the supervisor after [`Resume`], so
/// that resumed jobs hold their hosts before the first launch can fire.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StartSchedules;

impl Handler<StartSchedules> for Environment {
    type Result = ();

    fn handle(&mut self, _: StartSchedules, ctx: &mut Self::Context) {
        if self.service_mode {
            for t in Task::ALL {
                if self.enabled(t) {
                    self.schedule(t, true, ctx);
                }
            }
        }
    }
}

/// `run --once`: checks, authentication, launches, then every job tracked to its end.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunPass;

impl Handler<RunPass> for Environment {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: RunPass, _: &mut Self::Context) -> Self::Result {
        let enabled: Vec<Task> = Task::ALL.into_iter().filter(|t| self.enabled(*t)).collect();
        let (rt, workers, tracker, restores) = (
            self.rt.clone(),
            self.workers.clone(),
            self.tracker.clone(),
            self.restores.clone(),
        );
        let fut = async move {
            let checks = [Task::Liveness, Task::Health, Task::ResponseTime];
            let runs = enabled.iter().filter(|t| checks.contains(t)).map(|t| {
                run_task(
                    *t,
                    rt.clone(),
                    workers.clone(),
                    tracker.clone(),
                    restores.clone(),
                )
            });
            futures_util::future::join_all(runs).await;
            if enabled.contains(&Task::Auth) {
                run_task(
                    Task::Auth,
                    rt.clone(),
                    workers.clone(),
                    tracker.clone(),
                    restores.clone(),
                )
                .await;
            }
            let jobs = enabled
                .iter()
                .filter(|t| matches!(t, Task::Backups | Task::Restores))
                .map(|t| {
                    run_task(
                        *t,
                        rt.clone(),
                        workers.clone(),
                        tracker.clone(),
                        restores.clone(),
                    )
                });
            futures_util::future::join_all(jobs).await;
            tracker.wait_idle().await;
            tracing::info!(env = %rt.name, logins = rt.tokens.logins(), "pass complete");
        };
        Box::pin(fut.into_actor(self).map(|_, act, _| {
            act.counters.runs += 1;
        }))
    }
}

/// Resume tracking jobs the last stop handed over (before any pass or schedule runs).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume(pub Vec<HandedOffJob>);

impl Handler<Resume> for Environment {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Resume, _: &mut Self::Context) -> Self::Result {
        let (rt, workers, tracker) = (self.rt.clone(), self.workers.clone(), self.tracker.clone());
        Box::pin(async move {
            let n = msg.0.len();
            for job in msg.0 {
                let progress = job.into_progress();
                // Claimed so that no pass launches the same host again while it runs.
                let claim = tracker.claim(&progress.job.spec);
                let guard = tracker.reserve(claim).await;
                Job::spawn(workers.pick(), rt.clone(), progress, guard);
            }
            tracing::info!(env = %rt.name, jobs = n, "tracking again the jobs the last stop handed over");
        })
    }
}

/// Stop producing: no new task runs, every job is handed over to the next start (or
/// reports `cancelled`); resolves when all jobs are gone or `deadline` passed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub deadline: Duration,
}

impl Handler<Shutdown> for Environment {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Shutdown, _: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        self.tracker.cancel_all();
        let (tracker, name) = (self.tracker.clone(), self.rt.name.clone());
        Box::pin(
            async move {
                if tokio::time::timeout(msg.deadline, tracker.wait_idle())
                    .await
                    .is_err()
                {
                    tracing::warn!(env = %name, jobs = tracker.active(), "jobs still active at the shutdown deadline");
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}

/// Observable counters.
#[derive(Message)]
#[rtype(result = "EnvCounters")]
pub struct GetCounters;

impl Handler<GetCounters> for Environment {
    type Result = MessageResult<GetCounters>;
    fn handle(&mut self, _: GetCounters, _: &mut Self::Context) -> Self::Result {
        let mut c = self.counters.clone();
        c.active_jobs = self.tracker.active();
        c.logins = self.rt.tokens.logins();
        MessageResult(c)
    }
}
