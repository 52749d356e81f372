//! The environment actor: owns one environment's runtime (client per thread, limiter,
//! token), runs its checks, launches backups and restores with bounded concurrency and
//! hands each launched job to a job actor on a worker arbiter. When each check, scenario and
//! spec last ran is kept in the [`ScheduleStore`], so a start resumes the schedule.

use super::handoff::{HandedOffJob, Handoff};
use super::job::Job;
use super::tracker::JobTracker;
use super::Workers;
use crate::config::RestoreSpec;
use crate::model::JobSpec;
use crate::probes;
use crate::runtime::EnvRuntime;
use crate::schedule::{
    spec_key, Calendar, Clock, LaunchPacer, Rule, ScheduleStore, SpecQueue, Window,
};
use actix::prelude::*;
use futures_util::stream::{self, StreamExt};
use futures_util::FutureExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The kinds of periodic work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Task {
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

/// What the environment needs of the schedule state.
pub(crate) struct EnvSchedule {
    pub store: Arc<ScheduleStore>,
    pub clock: Clock,
    /// Drop the state of specs no longer configured (false when `--host`, `--hosts` or
    /// `--shard` narrow the run: the other specs are only out of this run's selection).
    pub prune: bool,
}

/// Records attempts in the schedule state, and paces launches.
struct Hooks {
    env: Arc<str>,
    store: Arc<ScheduleStore>,
    clock: Clock,
    pacer: Option<LaunchPacer>,
}

/// A spec of a service-mode queue: its queue and index there.
type Slot = (Arc<Mutex<SpecQueue>>, usize);

impl Hooks {
    fn task_ran(&self, t: Task) {
        self.store
            .record_task(&self.env, t.name(), self.clock.now());
    }

    /// A launch of `spec` is attempted now (or skipped): remembered, and due again per its
    /// rule. Called before the launch request is sent, so that a launch that reached the
    /// portal is never forgotten, even by a crash during the request.
    fn attempted(&self, spec: &JobSpec, slot: Option<&Slot>) {
        let now = self.clock.now();
        self.store.record_spec(&self.env, &spec_key(spec), now);
        if let Some((q, i)) = slot {
            q.lock().unwrap().attempted(*i, now);
        }
    }
}

/// How often service mode looks for due specs.
const TICK: Duration = Duration::from_secs(1);

pub(crate) struct Environment {
    rt: Arc<EnvRuntime>,
    workers: Workers,
    tracker: Arc<JobTracker>,
    restores: Arc<Vec<RestoreSpec>>,
    service_mode: bool,
    stopping: bool,
    running: HashSet<Task>,
    counters: EnvCounters,
    rng: SmallRng,
    hooks: Arc<Hooks>,
    /// Service mode: the due queues of the backup and restore scenarios…
    queues: Vec<(Task, Arc<Mutex<SpecQueue>>)>,
    /// …and the launcher they feed.
    launcher: Option<tokio::sync::mpsc::UnboundedSender<(JobSpec, Slot)>>,
}

impl Environment {
    pub fn new(
        rt: Arc<EnvRuntime>,
        workers: Workers,
        restores: Vec<RestoreSpec>,
        service_mode: bool,
        seed: u64,
        handoff: Arc<Handoff>,
        schedule: EnvSchedule,
    ) -> Self {
        // An in-process simulator dies with the process: its jobs cannot be polled again.
        let resumable = rt.cfg.jobs.resume_on_restart && rt.cfg.simulator.is_none();
        let handoff = resumable.then_some(handoff);
        let tracker = JobTracker::new(rt.jobs.max_tracked_jobs, handoff);
        let t = Arc::downgrade(&tracker);
        rt.sink
            .metrics()
            .track_jobs(&rt.name, move || t.upgrade().map_or(0, |t| t.active()));
        if schedule.prune {
            let keys: HashSet<String> = rt
                .hosts
                .iter()
                .map(|h| spec_key(&probes::backup_spec(&rt, h)))
                .chain(restores.iter().map(|r| spec_key(&probes::restore_spec(r))))
                .collect();
            let dropped = schedule.store.retain_specs(&rt.name, |k| keys.contains(k));
            if dropped > 0 {
                tracing::info!(env = %rt.name, specs = dropped, "schedule state of hosts and restores no longer configured dropped");
            }
        }
        let hooks = Arc::new(Hooks {
            env: rt.name.clone(),
            store: schedule.store,
            clock: schedule.clock,
            pacer: LaunchPacer::new(rt.cfg.jobs.max_launches_per_minute),
        });
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
            hooks,
            queues: Vec::new(),
            launcher: None,
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

    /// Service mode, checks: each first fires one interval after its last run (kept in the
    /// schedule state), or, never run or overdue, at a random point of its first
    /// min(interval, 60 s) (so that environments and checks never fire in one burst); then
    /// every interval.
    fn schedule(&mut self, t: Task, first: bool, ctx: &mut Context<Self>) {
        let interval = self.interval(t);
        let delay = if first {
            let now = self.hooks.clock.now();
            let resumed = self
                .hooks
                .store
                .last_task(&self.rt.name, t.name())
                .and_then(|l| (l + interval - now).to_std().ok())
                .filter(|d| !d.is_zero());
            resumed.unwrap_or_else(|| {
                let spread = interval.as_millis().min(60_000) as u64;
                Duration::from_millis(self.rng.gen_range(0..=spread))
            })
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
                let fut = run_task(t, act.rt.clone(), act.workers.clone(), act.tracker.clone(), act.restores.clone(), act.hooks.clone());
                ctx.spawn(fut.into_actor(act).map(move |_, act, _| {
                    act.running.remove(&t);
                }));
            }
            act.schedule(t, false, ctx);
        });
    }

    /// Service mode, job scenarios: one due queue per scenario, looked at every [`TICK`];
    /// due specs go to one launcher (`launch_concurrency` at a time, paced).
    fn start_queues(&mut self, ctx: &mut Context<Self>) {
        let now = self.hooks.clock.now();
        let tz = crate::schedule::window::parse_tz(&self.rt.cfg.jobs.schedule_tz).ok();
        // Validated at start: a value that does not parse cannot get here.
        let window = |w: &Option<String>| {
            w.as_deref()
                .zip(tz)
                .and_then(|(w, tz)| Window::parse(w, tz).ok())
        };
        let calendar = |c: &Option<String>| {
            c.as_deref()
                .zip(tz)
                .and_then(|(c, tz)| Calendar::parse(c, tz).ok())
        };
        for t in [Task::Backups, Task::Restores] {
            if !self.enabled(t) {
                continue;
            }
            let jobs = &self.rt.cfg.jobs;
            let (specs, w, cron): (Vec<JobSpec>, _, _) = match t {
                Task::Backups => (
                    self.rt
                        .hosts
                        .iter()
                        .map(|h| probes::backup_spec(&self.rt, h))
                        .collect(),
                    window(&jobs.backup_window),
                    calendar(&jobs.backup_cron),
                ),
                _ => (
                    self.restores.iter().map(probes::restore_spec).collect(),
                    window(&jobs.restore_window),
                    calendar(&jobs.restore_cron),
                ),
            };
            let rule = Rule {
                interval: self.interval(t),
                window: w,
                cron,
            };
            let (store, env) = (&self.hooks.store, &self.rt.name);
            let q = SpecQueue::new(env, rule, specs, |k| store.last_spec(env, k), now);
            if let Some(next) = q.next_due() {
                tracing::info!(env = %self.rt.name, scenario = t.name(), specs = q.len(), next_due = %next, "scenario scheduled");
            }
            self.queues.push((t, Arc::new(Mutex::new(q))));
        }
        if self.queues.is_empty() {
            return;
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(JobSpec, Slot)>();
        self.launcher = Some(tx);
        let (rt, workers, tracker, hooks) = (
            self.rt.clone(),
            self.workers.clone(),
            self.tracker.clone(),
            self.hooks.clone(),
        );
        let concurrency = rt.jobs.launch_concurrency.get();
        let launcher = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
            .map(move |(spec, slot)| {
                let (rt, workers, tracker, hooks) =
                    (rt.clone(), workers.clone(), tracker.clone(), hooks.clone());
                async move { launch_one(&rt, &workers, &tracker, &hooks, spec, Some(slot)).await }
            })
            .buffer_unordered(concurrency)
            .for_each(|_| async {});
        ctx.spawn(launcher.into_actor(self));
        self.dispatch_due();
        ctx.run_interval(TICK, |act, _| act.dispatch_due());
    }

    /// Hands every due spec to the launcher.
    fn dispatch_due(&mut self) {
        let Some(tx) = &self.launcher else { return };
        if self.stopping {
            return;
        }
        let now = self.hooks.clock.now();
        for (t, q) in &self.queues {
            let taken = q.lock().unwrap().take_due(now);
            if taken.is_empty() {
                continue;
            }
            self.counters.runs += 1;
            self.hooks.task_ran(*t);
            for (i, spec) in taken {
                let _ = tx.send((spec, (q.clone(), i)));
            }
        }
    }
}

/// One run of a task.
async fn run_task(
    t: Task,
    rt: Arc<EnvRuntime>,
    workers: Workers,
    tracker: Arc<JobTracker>,
    restores: Arc<Vec<RestoreSpec>>,
    hooks: Arc<Hooks>,
) {
    // A panic in the task is reported as an `internal` result, not a lost actor.
    let action = t.action();
    probes::guarded(
        &rt.clone(),
        action,
        run_task_unguarded(t, rt, workers, tracker, restores, hooks),
    )
    .await
}

async fn run_task_unguarded(
    t: Task,
    rt: Arc<EnvRuntime>,
    workers: Workers,
    tracker: Arc<JobTracker>,
    restores: Arc<Vec<RestoreSpec>>,
    hooks: Arc<Hooks>,
) {
    hooks.task_ran(t);
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
            launch_all(&rt, &workers, &tracker, &hooks, specs).await
        }
        Task::Restores => {
            let specs = restores.iter().map(probes::restore_spec).collect();
            launch_all(&rt, &workers, &tracker, &hooks, specs).await
        }
    }
}

/// `run --once`: launches every spec now, `launch_concurrency` at a time (each attempt
/// recorded in the schedule state, so that a following service-mode start does not launch
/// it again before it is due). Without a token, every launch is reported `skipped`.
async fn launch_all(
    rt: &Arc<EnvRuntime>,
    workers: &Workers,
    tracker: &Arc<JobTracker>,
    hooks: &Arc<Hooks>,
    specs: Vec<JobSpec>,
) {
    let client = rt.client();
    if let Err(e) = probes::lease(rt, &client).await {
        for spec in &specs {
            hooks.attempted(spec, None);
            rt.emit(probes::skipped(rt, spec, &e)).await;
        }
        return;
    }
    stream::iter(specs)
        .map(|spec| launch_one(rt, workers, tracker, hooks, spec, None))
        .buffer_unordered(rt.jobs.launch_concurrency.get())
        .for_each(|_| async {})
        .await;
}

/// Launches one spec (after `max_launches_per_minute`'s pacer) and starts a job actor for
/// the launched job, waiting for a tracking slot when `max_tracked_jobs` are already
/// tracked. A spec whose previous job still runs is reported `skipped`.
///
/// Guarded on its own (in `run --once` and in service mode's launcher): a panic in one
/// launch is that launch's `internal` result, and the other launches still happen.
async fn launch_one(
    rt: &Arc<EnvRuntime>,
    workers: &Workers,
    tracker: &Arc<JobTracker>,
    hooks: &Hooks,
    spec: JobSpec,
    slot: Option<Slot>,
) {
    let (action, host) = (spec.kind.launch_action(), spec.host.clone());
    let launch = launch_one_unguarded(rt, workers, tracker, hooks, spec, slot);
    if let Err(panic) = AssertUnwindSafe(launch).catch_unwind().await {
        let message = probes::panic_message(panic.as_ref());
        rt.emit(probes::internal_result(rt, action, &message).with_host(&host))
            .await;
    }
}

async fn launch_one_unguarded(
    rt: &Arc<EnvRuntime>,
    workers: &Workers,
    tracker: &Arc<JobTracker>,
    hooks: &Hooks,
    spec: JobSpec,
    slot: Option<Slot>,
) {
    // Reserve before launching: never launch a job we could not track. The guard also
    // makes a shutdown wait for launches in flight. Not attempted after a stop: the
    // schedule state keeps the spec due for the next start.
    if tracker.is_closed() {
        return;
    }
    let Some(claim) = tracker.claim(&spec) else {
        hooks.attempted(&spec, slot.as_ref());
        rt.emit(probes::still_running(rt, &spec)).await;
        return;
    };
    if let Some(p) = &hooks.pacer {
        p.wait().await;
    }
    let guard = tracker.reserve(Some(claim)).await;
    if tracker.is_closed() {
        return;
    }
    hooks.attempted(&spec, slot.as_ref());
    if let Some(job) = probes::launch(rt, spec).await {
        Job::spawn(
            workers.pick(),
            rt.clone(),
            probes::JobProgress::new(job),
            guard,
        );
    }
}

impl Actor for Environment {
    type Context = Context<Self>;
}

/// Service mode: start every task's schedule. Sent by the supervisor after [`Resume`], so
/// that resumed jobs hold their hosts before the first launch can fire.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StartSchedules;

impl Handler<StartSchedules> for Environment {
    type Result = ();

    fn handle(&mut self, _: StartSchedules, ctx: &mut Self::Context) {
        if self.service_mode {
            for t in [Task::Liveness, Task::Health, Task::ResponseTime, Task::Auth] {
                if self.enabled(t) {
                    self.schedule(t, true, ctx);
                }
            }
            self.start_queues(ctx);
        }
    }
}

/// `run --once`: checks, authentication, launches, then every job tracked to its end.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RunPass;

impl Handler<RunPass> for Environment {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: RunPass, _: &mut Self::Context) -> Self::Result {
        let enabled: Vec<Task> = Task::ALL.into_iter().filter(|t| self.enabled(*t)).collect();
        let (rt, workers, tracker, restores, hooks) = (
            self.rt.clone(),
            self.workers.clone(),
            self.tracker.clone(),
            self.restores.clone(),
            self.hooks.clone(),
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
                    hooks.clone(),
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
                    hooks.clone(),
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
                        hooks.clone(),
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
pub(crate) struct Resume(pub Vec<HandedOffJob>);

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
pub(crate) struct GetCounters;

impl Handler<GetCounters> for Environment {
    type Result = MessageResult<GetCounters>;
    fn handle(&mut self, _: GetCounters, _: &mut Self::Context) -> Self::Result {
        let mut c = self.counters.clone();
        c.active_jobs = self.tracker.active();
        c.logins = self.rt.tokens.logins();
        MessageResult(c)
    }
}

#[cfg(test)]
#[path = "environment_tests.rs"]
mod tests_paused;
