//! The job actor: tracks one launched backup or restore by polling its status (through the
//! environment's limiter, with jitter) until it ends. It reschedules itself only after a poll
//! completes, so slow answers never pile up polls.

use super::handoff::HandedOffJob;
use super::tracker::JobGuard;
use crate::api::ApiClient;
use crate::model::JobResult;
use crate::probes::{self, JobProgress, PollVerdict};
use crate::runtime::EnvRuntime;
use actix::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

/// Stop tracking: hand the job over to the next start (or report `job.end` with
/// `cancelled`) and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Cancel;

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
        let (tracker, id) = (guard.tracker().clone(), guard.id());
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
        tracker.register(id, &addr);
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
        let handoff = self.guard.as_ref().and_then(|g| g.tracker().handoff());
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
        let first = tokio::time::sleep(self.next_delay(true));
        ctx.spawn(PollLoop {
            next: first,
            polling: None,
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.guard.take();
    }
}

pin_project_lite::pin_project! {
    /// The job's polls, one after the other for its whole life: wait until the next one is
    /// due, poll (permit, then request), and again, until the job ends or is stopped. One
    /// future in the actor's context, its timer reset at each poll: a poll as a delayed message
    /// cost a timer item, the handler's reply future and its spawn (three boxes) and two more
    /// checks of the mailbox at each wake of the job (BENCHMARKS.md §13).
    struct PollLoop {
        #[pin]
        next: tokio::time::Sleep,
        // The poll under way, if any (the job's progress is in it).
        polling: Option<PollUnderWay>,
    }
}

type PollUnderWay = Pin<Box<dyn Future<Output = (JobProgress, PollVerdict)>>>;

impl ActorFuture<Job> for PollLoop {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Job,
        ctx: &mut Context<Job>,
        task: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use std::task::Poll::{Pending, Ready};
        let mut this = self.project();
        loop {
            if let Some(poll) = this.polling.as_mut() {
                let Ready((p, verdict)) = poll.as_mut().poll(task) else {
                    return Pending;
                };
                *this.polling = None;
                match verdict {
                    PollVerdict::Ended(_) => ctx.stop(),
                    PollVerdict::Stopped => act.finish_cancelled(p, ctx),
                    PollVerdict::Continue(_) if act.cancelled => act.finish_cancelled(p, ctx),
                    PollVerdict::Continue(at_least) => {
                        act.progress = Some(p);
                        let d = act.next_delay(false).max(at_least.unwrap_or_default());
                        let due = tokio::time::Instant::now() + d;
                        this.next.as_mut().reset(due);
                        continue;
                    }
                }
                return Ready(());
            }
            if this.next.as_mut().poll(task).is_pending() {
                return Pending;
            }
            // None: stopped while waiting (`Cancel` took it).
            let Some(p) = act.progress.take() else {
                return Ready(());
            };
            let poll = poll_once(act.rt.clone(), p, act.client.clone(), act.stop.clone());
            *this.polling = Some(Box::pin(poll));
        }
    }
}

/// One poll of a job. The limiter's permit (rate cell, then in-flight slot) is taken first,
/// in a small future, and the poll (its lease, request, answer and results: over a
/// kilobyte of state) is built and boxed only once the permit is held. When the limiter or
/// `max_in_flight` is the bottleneck most jobs wait for a permit, so this is what each of
/// them holds (`a_job_waiting_for_its_permit_holds_a_small_future`), and at most
/// `max_in_flight` polls exist whole. A stop while waiting hands the job over without a
/// poll.
// Not an `async fn`: its arguments would be stored twice in the future (rustc keeps an
// `async fn`'s parameters beside the locals they move into: 816 bytes against 472).
#[allow(clippy::manual_async_fn)]
fn poll_once(
    rt: Arc<EnvRuntime>,
    mut p: JobProgress,
    client: ApiClient,
    stop: StopSignal,
) -> impl std::future::Future<Output = (JobProgress, PollVerdict)> {
    async move {
        let permit = tokio::select! {
            biased;
            () = stop.clone().raised() => return (p, PollVerdict::Stopped),
            permit = rt.limits.acquire() => permit,
        };
        let poll = probes::poll_guarded(&rt, &mut p, &client, stop.raised(), Some(permit));
        let verdict = Box::pin(poll).await;
        (p, verdict)
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

    #[test]
    fn seeds_are_stable_and_distinct() {
        assert_eq!(seed_of("J1", "lab"), seed_of("J1", "lab"));
        assert_ne!(seed_of("J1", "lab"), seed_of("J2", "lab"));
        assert_ne!(seed_of("J1", "lab"), seed_of("J1", "prod"));
    }
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests_paused;
