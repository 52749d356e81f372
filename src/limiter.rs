//! Per-environment request pacing: every request of an environment passes one governor
//! limiter. Thousands of job actors must not each wait on the limiter (measured: herd, CPU
//! burn, no FIFO — rust-stack.md §2), so one pacer task per (environment, arbiter thread)
//! alone waits on the shared limiter and hands out permits in arrival order. A request that
//! finds nobody queued on its thread and a cell ready takes it without the pacer.
//! A job's status poll waits for its permit before its request exists, so the many jobs
//! queued at a saturated limiter each hold a small future (`actors::job::poll_once`).
//!
//! The pacer sleeps on tokio's timer, not governor's `until_ready` (whose futures-timer
//! thread cost ≈20 % of a core at 2,000 requests/s, see BENCHMARKS.md). Tokio's timer has a
//! 1 ms resolution, so after each wake-up the pacer hands out every cell the limiter has
//! ready; validation requires `burst ≥ rate / 1000`
//! (`config::EnvLimitsSpec::min_burst_for`) so that one wake-up per millisecond can sustain
//! the configured rate.

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::cell::RefCell;
use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Ids of [`EnvLimits`], process-wide: the per-thread caches (pacers, HTTP clients) are
/// keyed by it, never by an address a freed environment's successor may land at.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The limits of one environment, shared by every thread.
pub struct EnvLimits {
    /// Unique in the process (see [`NEXT_ID`]).
    id: u64,
    name: Arc<str>,
    limiter: Arc<DefaultDirectRateLimiter>,
    in_flight: Arc<Semaphore>,
    /// Permit requests queued in pacers: the real back-pressure signal.
    queued: Arc<AtomicUsize>,
    /// Requests that went through [`acquire`](Self::acquire), and their total wait (µs),
    /// for `/metrics`.
    requests: AtomicU64,
    wait_us: AtomicU64,
}

impl EnvLimits {
    /// `rate` requests per second with bursts of `burst`, at most `max_in_flight` at once.
    pub fn new(
        name: &str,
        rate: NonZeroU32,
        burst: NonZeroU32,
        max_in_flight: NonZeroUsize,
    ) -> Self {
        let quota = Quota::per_second(rate).allow_burst(burst);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            limiter: Arc::new(RateLimiter::direct(quota)),
            in_flight: Arc::new(Semaphore::new(max_in_flight.get())),
            queued: Arc::new(AtomicUsize::new(0)),
            requests: AtomicU64::new(0),
            wait_us: AtomicU64::new(0),
        }
    }

    /// This environment's id, unique in the process: the key of per-thread caches.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The environment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for a rate permit (through this thread's pacer), then for an in-flight slot.
    /// Hold the returned guard for the duration of the request, and take it only right
    /// before sending: a permit held while something else is awaited would send its request
    /// into a later second (over the quota) and keep a slot from others.
    pub async fn acquire(&self) -> RequestPermit {
        let cell = self.rate_cell().await;
        self.slot(cell).await
    }

    /// The rate half of [`acquire`](Self::acquire): waits for a cell of the quota (through
    /// this thread's pacer).
    async fn rate_cell(&self) -> RateCell {
        let pacer = self.pacer_for_this_thread();
        if !pacer.take_free_cell() {
            let asked = std::time::Instant::now();
            self.queued.fetch_add(1, Ordering::Relaxed);
            pacer.permit().await;
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.add_wait(asked);
        }
        RateCell(())
    }

    /// The in-flight half of [`acquire`](Self::acquire), for a cell already taken.
    async fn slot(&self, _cell: RateCell) -> RequestPermit {
        let slot = match self.in_flight.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let asked = std::time::Instant::now();
                let slot = self
                    .in_flight
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                self.add_wait(asked);
                slot
            }
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        RequestPermit { _slot: slot }
    }

    fn add_wait(&self, since: std::time::Instant) {
        self.wait_us
            .fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// Requests currently waiting for a rate permit.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn pacer_for_this_thread(&self) -> Pacer {
        thread_local! {
            // One pacer per environment per thread (arbiter): the pacer task lives on the
            // runtime of that thread.
            static PACERS: RefCell<HashMap<u64, Pacer>> = RefCell::new(HashMap::new());
        }
        let key = self.id;
        PACERS.with(|p| {
            let mut map = p.borrow_mut();
            if let Some(pacer) = map.get(&key) {
                if !pacer.queue.is_closed() {
                    return pacer.clone();
                }
            }
            let pacer = Pacer::spawn(self.limiter.clone(), self.name.clone());
            map.insert(key, pacer.clone());
            pacer
        })
    }
}

impl crate::metrics::LimiterStats for EnvLimits {
    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    fn wait_us(&self) -> u64 {
        self.wait_us.load(Ordering::Relaxed)
    }
    fn queued(&self) -> usize {
        EnvLimits::queued(self)
    }
}

/// A cell of an environment's quota, taken by [`EnvLimits::rate_cell`] and spent by
/// [`EnvLimits::slot`].
struct RateCell(());

/// Held while a request is in flight.
pub struct RequestPermit {
    _slot: OwnedSemaphorePermit,
}

/// Takes one cell of the limiter, sleeping on tokio's timer until one is ready.
async fn wait_for_cell(limiter: &DefaultDirectRateLimiter) {
    let clock = limiter.clock();
    loop {
        match limiter.check() {
            Ok(()) => return,
            Err(not_until) => tokio::time::sleep(not_until.wait_time_from(clock.now())).await,
        }
    }
}

/// A FIFO queue in front of a limiter, served by one task.
#[derive(Clone)]
struct Pacer {
    queue: mpsc::UnboundedSender<oneshot::Sender<()>>,
    limiter: Arc<DefaultDirectRateLimiter>,
    /// Requests in `queue` not yet granted. While there are any, a newcomer queues behind
    /// them (arrival order); when there are none, it may take a ready cell itself.
    waiting: Arc<AtomicUsize>,
}

impl Pacer {
    fn spawn(limiter: Arc<DefaultDirectRateLimiter>, env: Arc<str>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let (lim, left) = (limiter.clone(), waiting.clone());
        tokio::spawn(async move {
            while let Some(waiter) = rx.recv().await {
                if !waiter.is_closed() {
                    wait_for_cell(&lim).await;
                    let _ = waiter.send(());
                } // else the caller gave up: keep the cell for the next one
                left.fetch_sub(1, Ordering::Relaxed);
            }
            tracing::trace!(env = %env, "pacer stopped");
        });
        Pacer {
            queue: tx,
            limiter,
            waiting,
        }
    }

    /// Takes a cell at once when nobody on this thread is queued and the limiter has one
    /// ready. Requests below the quota go this way: no channel, no hop through the pacer
    /// task and back. (Its CPU effect alone was not measured: BENCHMARKS.md §9.)
    fn take_free_cell(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) == 0 && self.limiter.check().is_ok()
    }

    async fn permit(&self) {
        let (t, r) = oneshot::channel();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if self.queue.send(t).is_ok() {
            let _ = r.await;
        } else {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    fn nzu(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn the_least_burst_is_what_one_wake_up_a_millisecond_must_hand_out() {
        let table: Vec<u32> = [1, 999, 1000, 1001, 2500, 10_000]
            .map(crate::config::EnvLimitsSpec::min_burst_for)
            .to_vec();
        assert_eq!(table, [1, 1, 1, 2, 3, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_max_in_flight_requests_hold_a_permit() {
        let limits = EnvLimits::new("t", nz(1000), nz(1000), nzu(2));
        let a = limits.acquire().await;
        let _b = limits.acquire().await;
        let third = tokio::time::timeout(Duration::from_secs(60), limits.acquire());
        assert!(third.await.is_err(), "a third request waits for a slot");
        drop(a);
        let third = tokio::time::timeout(Duration::from_secs(60), limits.acquire());
        assert!(third.await.is_ok(), "and gets the freed one");
    }

    #[tokio::test]
    async fn the_pacer_holds_requests_to_the_rate_after_the_burst() {
        // Governor's clock is the wall clock (paused tokio time cannot drive it): 200/s with a
        // burst of 1 means 20 more requests take at least 100 ms.
        let limits = EnvLimits::new("t", nz(200), nz(1), nzu(10));
        let _first = limits.acquire().await;
        let t0 = std::time::Instant::now();
        for _ in 0..20 {
            drop(limits.acquire().await);
        }
        assert!(
            t0.elapsed() >= Duration::from_millis(95),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(crate::metrics::LimiterStats::requests(&limits), 21);
    }

    #[tokio::test]
    async fn a_ready_cell_is_taken_without_the_pacer_when_nobody_waits() {
        use futures_util::FutureExt as _;
        let limits = EnvLimits::new("t", nz(1000), nz(3), nzu(10));
        // The pacer task never runs here (nothing yields to it): a permit in one poll can
        // only have come from the limiter directly.
        for i in 0..3 {
            assert!(limits.acquire().now_or_never().is_some(), "permit {i}");
        }
        assert!(
            limits.acquire().now_or_never().is_none(),
            "the burst is spent: the next one waits in the pacer"
        );
        assert_eq!(crate::metrics::LimiterStats::requests(&limits), 3);
    }

    #[tokio::test]
    async fn a_newcomer_never_overtakes_a_queued_request() {
        use futures_util::FutureExt as _;
        let limits = EnvLimits::new("t", nz(1000), nz(1), nzu(10));
        drop(limits.acquire().await); // the burst of one is spent
        let mut queued = Box::pin(limits.acquire());
        assert!((&mut queued).now_or_never().is_none());
        assert_eq!(limits.queued(), 1);
        // Governor runs on the wall clock: after 2 ms a cell is ready again, and the pacer
        // task has not run (nothing yielded), so the first request still waits for it.
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            limits.acquire().now_or_never().is_none(),
            "a newcomer took the cell the queued request waits for"
        );
        drop(queued.await);
    }

    #[tokio::test]
    async fn pacer_grants_in_arrival_order() {
        let limits = Arc::new(EnvLimits::new("t", nz(1000), nz(1), nzu(10)));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..50 {
            let (l, o) = (limits.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = l.acquire().await;
                o.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        let got = order.lock().unwrap().clone();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
    }
}
