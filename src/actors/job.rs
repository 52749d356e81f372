//! The job actor: tracks one launched backup or restore by polling its status (through the
//! environment's limiter, with jitter) until it ends. It reschedules itself only after a poll
//! completes, so slow answers never pile up polls.

use super::handoff::{HandedOffJob, Handoff};
use crate::api::ApiClient;
use crate::model::{JobResult, JobSpec};
use crate::probes::{self, EnvRuntime, JobProgress, PollVerdict};
use actix::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Counts the jobs of one environment, bounds them, and can cancel them all.
pub struct JobTracker {
    active: AtomicUsize,
    idle: Notify,
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
    registry: Mutex<HashMap<u64, Recipient<Cancel>>>,
    /// Set by `cancel_all`: jobs started afterwards are cancelled at once.
    closed: std::sync::atomic::AtomicBool,
    /// Where stopped jobs go to be resumed by the next start; None: they end `cancelled`.
    handoff: Option<Arc<Handoff>>,
    /// What the tracked jobs (and the launches in flight) are for: a spec is launched again
    /// only once its previous job ended. A second backup of a host whose last one still
    /// runs (a slow job past its interval, or one resumed from the last stop) would only
    /// queue behind it in Commvault. Held as 64-bit hashes: 16 bytes a job instead of a
    /// copy of the spec, at 100,000 jobs.
    specs: Mutex<HashSet<u64>>,
}

impl JobTracker {
    pub fn new(max_jobs: usize, handoff: Option<Arc<Handoff>>) -> Arc<Self> {
        Arc::new(Self {
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            slots: Arc::new(Semaphore::new(max_jobs.max(1))),
            next_id: AtomicU64::new(0),
            registry: Mutex::new(HashMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            handoff,
            specs: Mutex::new(HashSet::new()),
        })
    }

    /// Claims `spec` for one job; None while another job (or launch) holds it.
    pub fn claim(self: &Arc<Self>, spec: &JobSpec) -> Option<SpecClaim> {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        spec.hash(&mut h);
        let key = h.finish();
        self.specs.lock().unwrap().insert(key).then(|| SpecClaim {
            tracker: self.clone(),
            key,
        })
    }

    /// Waits for room for one more job (the bound on tracked jobs); the guard keeps
    /// `claim` for as long as the job is tracked.
    pub async fn reserve(self: &Arc<Self>, claim: Option<SpecClaim>) -> JobGuard {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        self.active.fetch_add(1, Ordering::SeqCst);
        JobGuard {
            tracker: self.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            _slot: slot,
            _claim: claim,
        }
    }

    /// True once `cancel_all` ran: start nothing new.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Resolves once no job is tracked.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Asks every job to stop: each is handed over to the next start, or, without a
    /// handoff, reports `job.end` with `cancelled`.
    pub fn cancel_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let all: Vec<_> = self.registry.lock().unwrap().values().cloned().collect();
        if let Some(h) = &self.handoff {
            h.reserve(all.len());
        }
        for r in all {
            // Control message, not data: the job may already be gone, which is fine.
            r.do_send(Cancel);
        }
    }
}

/// A spec being launched or tracked; dropping it lets the spec be launched again.
pub struct SpecClaim {
    tracker: Arc<JobTracker>,
    key: u64,
}

impl Drop for SpecClaim {
    fn drop(&mut self) {
        self.tracker.specs.lock().unwrap().remove(&self.key);
    }
}

/// Held by a job actor for its whole life; dropping it frees the slot (and the spec).
pub struct JobGuard {
    tracker: Arc<JobTracker>,
    id: u64,
    _slot: OwnedSemaphorePermit,
    _claim: Option<SpecClaim>,
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        self.tracker.registry.lock().unwrap().remove(&self.id);
        if self.tracker.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.tracker.idle.notify_waiters();
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Poll;

/// Stop tracking: hand the job over to the next start (or report `job.end` with
/// `cancelled`) and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Cancel;

/// Raised by `Cancel` while a poll is in flight: the poll abandons its status request so
/// the job is handed over at once (see `probes::poll`). Job actors live on one arbiter
/// thread, so a `Cell` and the waker of the one poll that waits are enough.
#[derive(Clone, Default)]
struct StopSignal(Rc<StopState>);

#[derive(Default)]
struct StopState {
    raised: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl StopSignal {
    fn raise(&self) {
        self.0.raised.set(true);
        if let Some(w) = self.0.waker.take() {
            w.wake();
        }
    }

    /// Resolves once raised.
    fn raised(self) -> impl std::future::Future<Output = ()> {
        std::future::poll_fn(move |cx| {
            if self.0.raised.get() {
                return std::task::Poll::Ready(());
            }
            self.0.waker.set(Some(cx.waker().clone()));
            std::task::Poll::Pending
        })
    }
}

pub struct Job {
    rt: Arc<EnvRuntime>,
    client: ApiClient,
    /// None while a poll is in flight.
    progress: Option<JobProgress>,
    cancelled: bool,
    stop: StopSignal,
    rng: SmallRng,
    guard: Option<JobGuard>,
}

impl Job {
    /// Starts the job actor on `arbiter` (for a new job, `JobProgress::new`; for a resumed
    /// one, the progress handed over); it registers itself with the tracker.
    pub fn spawn(
        arbiter: &ArbiterHandle,
        rt: Arc<EnvRuntime>,
        progress: JobProgress,
        guard: JobGuard,
    ) {
        let tracker = guard.tracker.clone();
        let id = guard.id;
        let seed = seed_of(&progress.job.job_id, &rt.name);
        let addr = Job::start_in_arbiter(arbiter, move |_| Job {
            client: rt.client(), // built on the job's own arbiter thread
            rt,
            progress: Some(progress),
            cancelled: false,
            stop: StopSignal::default(),
            rng: SmallRng::seed_from_u64(seed),
            guard: Some(guard),
        });
        let recipient = addr.recipient();
        tracker
            .registry
            .lock()
            .unwrap()
            .insert(id, recipient.clone());
        if tracker.closed.load(Ordering::SeqCst) {
            recipient.do_send(Cancel);
        }
    }

    fn next_delay(&mut self, first: bool) -> Duration {
        let jobs = &self.rt.cfg.jobs;
        let jitter = if jobs.poll_jitter_ms > 0 {
            self.rng.gen_range(0..=jobs.poll_jitter_ms)
        } else {
            0
        };
        let base = if first { 0 } else { jobs.poll_interval_ms };
        Duration::from_millis(base + jitter)
    }

    fn finish_cancelled(&mut self, p: JobProgress, ctx: &mut Context<Self>) {
        let handoff = self.guard.as_ref().and_then(|g| g.tracker.handoff.clone());
        if let Some(handoff) = handoff {
            handoff.push(HandedOffJob::from_progress(&self.rt.name, p));
            ctx.stop();
            return;
        }
        let rt = self.rt.clone();
        ctx.wait(
            async move {
                probes::end(
                    &rt,
                    &p,
                    JobResult::Cancelled,
                    Some((crate::model::ErrorType::Cancelled, "prober stopping".into())),
                )
                .await;
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        );
    }
}

fn seed_of(job_id: &str, env: &str) -> u64 {
    // A stable seed per job for reproducible jitter.
    crate::hash::fnv1a(env.bytes().chain([0]).chain(job_id.bytes()))
}

impl Actor for Job {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let d = self.next_delay(true);
        ctx.notify_later(Poll, d);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.guard.take();
    }
}

impl Handler<Poll> for Job {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Poll, _: &mut Self::Context) -> Self::Result {
        let Some(mut p) = self.progress.take() else {
            return Box::pin(actix::fut::ready(()));
        };
        let (rt, client, stop) = (self.rt.clone(), self.client.clone(), self.stop.clone());
        Box::pin(
            async move {
                let v = probes::poll_guarded(&rt, &mut p, &client, stop.raised()).await;
                (p, v)
            }
            .into_actor(self)
            .map(|(p, verdict), act, ctx| match verdict {
                PollVerdict::Ended(_) => ctx.stop(),
                PollVerdict::Stopped => act.finish_cancelled(p, ctx),
                PollVerdict::Continue(_) if act.cancelled => act.finish_cancelled(p, ctx),
                PollVerdict::Continue(at_least) => {
                    act.progress = Some(p);
                    let d = act.next_delay(false).max(at_least.unwrap_or_default());
                    ctx.notify_later(Poll, d);
                }
            }),
        )
    }
}

impl Handler<Cancel> for Job {
    type Result = ();

    fn handle(&mut self, _: Cancel, ctx: &mut Self::Context) {
        self.cancelled = true;
        if let Some(p) = self.progress.take() {
            self.finish_cancelled(p, ctx);
        } else {
            // A poll is in flight: it abandons its status request, or, past it (emitting
            // a result), completes and sees `cancelled`.
            self.stop.raise();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(host: &str, level: crate::model::BackupLevel) -> JobSpec {
        JobSpec {
            kind: crate::model::JobKind::Backup,
            host: host.into(),
            level: Some(level),
            restore: None,
            vars: Default::default(),
        }
    }

    #[test]
    fn a_spec_is_claimed_once_until_its_claim_is_dropped() {
        use crate::model::BackupLevel::{Full, Incremental};
        let t = JobTracker::new(10, None);
        let first = t.claim(&backup("h1", Full)).expect("free");
        assert!(t.claim(&backup("h1", Full)).is_none(), "held");
        let other = t.claim(&backup("h2", Full)).expect("another host");
        let level = t.claim(&backup("h1", Incremental)).expect("another level");
        drop(first);
        assert!(t.claim(&backup("h1", Full)).is_some(), "free again");
        drop((other, level));
        assert!(t.specs.lock().unwrap().is_empty());
    }

    #[test]
    fn seeds_are_stable_and_distinct() {
        assert_eq!(seed_of("J1", "lab"), seed_of("J1", "lab"));
        assert_ne!(seed_of("J1", "lab"), seed_of("J2", "lab"));
        assert_ne!(seed_of("J1", "lab"), seed_of("J1", "prod"));
    }

    #[actix_rt::test]
    async fn tracker_is_idle_once_every_guard_is_dropped() {
        let t = JobTracker::new(2, None);
        let a = t.reserve(None).await;
        let b = t.reserve(None).await;
        assert_eq!(t.active(), 2);
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move { t.wait_idle().await })
        };
        drop(a);
        assert!(!waiter.is_finished());
        drop(b);
        waiter.await.unwrap();
        assert_eq!(t.active(), 0);
    }
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests_paused;
