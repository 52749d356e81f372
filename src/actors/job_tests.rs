//! The job actor in paused tokio time, against a simulator on the test's thread and a
//! recording sink: polled until its end, paced by the interval (never by the answers),
//! ended by `max_duration_secs`, and what a stop does while a poll waits for its answer.

use super::super::handoff::Handoff;
use super::super::tracker::JobTracker;
use super::*;
use crate::model::{Action, ErrorType, JobKind, JobSpec};
use crate::simulator::local::LocalSimulator;
use crate::simulator::{FaultConfig, RangeMs, SimulatorConfig};
use crate::test_support::{env_runtime, quiet_simulator, RecordingSink};
use tokio::time::Instant;

struct Fixture {
    sim: LocalSimulator,
    sink: RecordingSink,
    rt: Arc<EnvRuntime>,
    tracker: Arc<JobTracker>,
    handoff: Arc<Handoff>,
    _dir: tempfile::TempDir,
}

/// A simulator with jobs of `duration_ms` (wall clock), and `status_latency_ms` on each
/// status answer; `jobs` goes into `[jobs]`.
async fn fixture(duration_ms: u64, status_latency_ms: u64, jobs: &str) -> Fixture {
    fixture_env(duration_ms, status_latency_ms, "", jobs).await
}

/// [`fixture`] with `env` at the top of the environment's table (its limits).
async fn fixture_env(duration_ms: u64, status_latency_ms: u64, env: &str, jobs: &str) -> Fixture {
    let mut cfg: SimulatorConfig = quiet_simulator();
    cfg.job_duration_ms = RangeMs::new(duration_ms, duration_ms);
    if status_latency_ms > 0 {
        cfg.endpoint_faults.insert(
            "job_status".into(),
            FaultConfig {
                latency_ms: Some(RangeMs::new(status_latency_ms, status_latency_ms)),
                ..Default::default()
            },
        );
    }
    let sim = LocalSimulator::start(cfg).await;
    let sink = RecordingSink::start();
    let rt = env_runtime(
        &sim.base_url(),
        &format!("timeout_ms = 600000\n{env}\n[jobs]\npoll_jitter_ms = 0\n{jobs}"),
        &sink,
    );
    let dir = tempfile::tempdir().unwrap();
    let handoff = Arc::new(Handoff::new(dir.path()));
    let tracker = JobTracker::new(
        std::num::NonZeroUsize::new(10).unwrap(),
        Some(handoff.clone()),
    );
    Fixture {
        sim,
        sink,
        rt,
        tracker,
        handoff,
        _dir: dir,
    }
}

impl Fixture {
    /// Launches a backup of `web01` on the simulator.
    async fn launch(&self) -> probes::LaunchedJob {
        let spec = JobSpec {
            kind: JobKind::Backup,
            host: "web01".into(),
            level: Some(crate::model::BackupLevel::Full),
            restore: None,
            vars: Default::default(),
        };
        probes::launch(&self.rt, spec).await.expect("launched")
    }

    /// Launches a backup of `web01` on the simulator and starts its job actor here.
    async fn spawn_job(&self) {
        let job = self.launch().await;
        let guard = self.tracker.reserve(None).await;
        Job::spawn(
            &actix::Arbiter::current(),
            self.rt.clone(),
            JobProgress::new(job),
            guard,
        );
    }

    fn status_requests(&self) -> u64 {
        self.sim.counters().endpoint("job_status").requests
    }

    async fn job_end(&self) -> Vec<crate::model::ProbeResult> {
        self.sink.of(Action::JobEnd).await
    }
}

fn result_of(r: &crate::model::ProbeResult) -> Option<JobResult> {
    r.iaso.job.as_ref().and_then(|j| j.result)
}

#[actix_rt::test]
async fn a_job_is_polled_until_its_terminal_status_and_ends_once() {
    tokio::time::pause();
    let f = fixture(0, 0, "poll_interval_ms = 1000").await;
    f.spawn_job().await;
    f.tracker.wait_idle().await;
    let ends = f.job_end().await;
    assert_eq!(ends.len(), 1);
    assert_eq!(result_of(&ends[0]), Some(JobResult::Success));
    assert_eq!(ends[0].iaso.job.as_ref().unwrap().polls, Some(1));
    assert_eq!(
        f.sink.of(Action::JobStatus).await.len(),
        1,
        "one status change"
    );
    assert_eq!(f.status_requests(), 1);
}

#[actix_rt::test]
async fn a_running_job_is_polled_once_per_interval() {
    tokio::time::pause();
    let f = fixture(3_600_000, 0, "poll_interval_ms = 1000").await;
    f.spawn_job().await;
    // The first poll at once, then one a second.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    assert_eq!(f.status_requests(), 11);
    assert_eq!(f.tracker.active(), 1);
    assert!(f.job_end().await.is_empty());
}

#[actix_rt::test]
async fn slow_status_answers_space_the_polls_out_instead_of_piling_them_up() {
    tokio::time::pause();
    let f = fixture(3_600_000, 5_000, "poll_interval_ms = 1000").await;
    f.spawn_job().await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    // One poll every 5 s answer + 1 s interval, not one a second.
    let n = f.status_requests();
    assert!((10..=11).contains(&n), "{n} status requests in 60 s");
}

#[actix_rt::test]
async fn a_job_still_running_after_max_duration_ends_with_a_timeout() {
    tokio::time::pause();
    let f = fixture(
        3_600_000,
        0,
        "poll_interval_ms = 5000\nmax_duration_secs = 30",
    )
    .await;
    let t0 = Instant::now();
    f.spawn_job().await;
    f.tracker.wait_idle().await;
    assert!(
        t0.elapsed() >= Duration::from_secs(30),
        "{:?}",
        t0.elapsed()
    );
    assert!(t0.elapsed() < Duration::from_secs(36), "{:?}", t0.elapsed());
    let ends = f.job_end().await;
    assert_eq!(ends.len(), 1);
    assert_eq!(result_of(&ends[0]), Some(JobResult::Timeout));
    assert_eq!(ends[0].error.as_ref().unwrap().kind, ErrorType::JobTimeout);
}

#[actix_rt::test]
async fn a_stop_abandons_the_status_request_in_flight_and_hands_the_job_over_at_once() {
    tokio::time::pause();
    let f = fixture(3_600_000, 120_000, "poll_interval_ms = 1000").await;
    f.spawn_job().await;
    while f.status_requests() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t0 = Instant::now();
    f.tracker.cancel_all();
    f.tracker.wait_idle().await;
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(f.handoff.len(), 1);
    assert!(f.job_end().await.is_empty());
}

#[actix_rt::test]
async fn a_stop_between_polls_hands_the_job_over_with_its_poll_count() {
    tokio::time::pause();
    let f = fixture(3_600_000, 0, "poll_interval_ms = 1000").await;
    f.spawn_job().await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    f.tracker.cancel_all();
    f.tracker.wait_idle().await;
    f.handoff.save().unwrap();
    let saved = f.handoff.load().unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!((saved[0].host.as_str(), saved[0].polls), ("web01", 3));
}

/// A poll waiting at the limiter holds its whole future: with a million tracked jobs, many
/// wait there at once. The login, the result emits and reqwest's request are boxed only
/// when they happen, and the request is built once the permit is held, so that future
/// stays small (debug build: 6,416 bytes before, 1,256 after). A job now waits for its
/// permit in a smaller future still (below), and this one exists only once the permit is
/// held, so at most `max_in_flight` of them at once: 1,488 bytes with the permit passed
/// down.
#[actix_rt::test]
async fn a_waiting_status_poll_holds_a_small_future() {
    let f = fixture(3_600_000, 0, "poll_interval_ms = 1000").await;
    let mut p = JobProgress::new(f.launch().await);
    let client = f.rt.client();
    let stop = StopSignal::default();
    let poll = probes::poll_guarded(&f.rt, &mut p, &client, stop.raised(), None);
    let size = std::mem::size_of_val(&poll);
    assert!(size <= 1_600, "a status poll's future is {size} bytes");
}

/// When the limiter is the bottleneck most jobs wait for their permit, each holding the
/// future of its next poll: that future holds the job's progress and the permit's wait
/// only (the poll itself is built once the permit is held). It held the whole poll before,
/// 1,256 bytes more (debug build).
#[actix_rt::test]
async fn a_job_waiting_for_its_permit_holds_a_small_future() {
    let f = fixture(3_600_000, 0, "poll_interval_ms = 1000").await;
    let p = JobProgress::new(f.launch().await);
    let progress = std::mem::size_of_val(&p);
    let poll = poll_once(f.rt.clone(), p, f.rt.client(), StopSignal::default());
    let size = std::mem::size_of_val(&poll);
    assert!(
        size <= progress + 400,
        "a waiting job's future is {size} bytes (its progress: {progress})"
    );
}

/// Two requests a second, no burst: the login and the launch take the first two cells, so
/// the job's first poll waits for the third. These tests run in real time: the limiter
/// reads the monotonic clock, which paused tokio time does not move.
const TWO_A_SECOND: &str = "rate_limit_per_sec = 2\nrate_limit_burst = 1";

#[actix_rt::test]
async fn a_stop_while_the_job_waits_for_its_permit_hands_it_over_without_a_poll() {
    let f = fixture_env(3_600_000, 0, TWO_A_SECOND, "poll_interval_ms = 1000").await;
    f.spawn_job().await;
    while f.rt.limits.queued() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t0 = Instant::now();
    f.tracker.cancel_all();
    f.tracker.wait_idle().await;
    // Without waiting for the cell (due within 500 ms).
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(f.status_requests(), 0);
    f.handoff.save().unwrap();
    let saved = f.handoff.load().unwrap();
    assert_eq!((saved.len(), saved[0].polls), (1, 0));
}

/// A permit taken before the poll is spent on its request when the token is at hand; when
/// the lease has to log in first, the permit is dropped and the request takes a new one
/// after the login: kept, it would go out in the login's half-second, over the quota.
#[actix_rt::test]
async fn a_permit_taken_before_a_login_is_not_spent_after_it() {
    // No floor between logins: the second login waits for its cell only.
    let env = format!("{TWO_A_SECOND}\n[api.auth]\nmin_login_interval_secs = 0");
    let f = fixture_env(3_600_000, 0, &env, "poll_interval_ms = 1000").await;
    let mut p = JobProgress::new(f.launch().await);
    let client = f.rt.client();
    // Token at hand: the request goes out on the permit, without waiting for another.
    let permit = f.rt.limits.acquire().await;
    let t0 = Instant::now();
    let v = probes::poll(&f.rt, &mut p, &client, std::future::pending(), Some(permit)).await;
    assert!(matches!(v, PollVerdict::Continue(_)));
    assert!(
        t0.elapsed() < Duration::from_millis(450),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(f.status_requests(), 1);
    // No token: the login waits for the next cell and the status request for the one after.
    f.rt.tokens.forget();
    let permit = f.rt.limits.acquire().await;
    let t0 = Instant::now();
    let v = probes::poll(&f.rt, &mut p, &client, std::future::pending(), Some(permit)).await;
    assert!(matches!(v, PollVerdict::Continue(_)));
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!((f.status_requests(), f.rt.tokens.logins()), (2, 2));
}

/// One request in flight at a time: a poll holding the only slot whose lease has to log in
/// gives the slot up, or the login would wait for it for ever.
#[actix_rt::test]
async fn a_permit_held_through_a_login_never_blocks_the_login() {
    tokio::time::pause();
    let env = "max_in_flight = 1\n[api.auth]\nmin_login_interval_secs = 0";
    let f = fixture_env(3_600_000, 0, env, "poll_interval_ms = 1000").await;
    let mut p = JobProgress::new(f.launch().await);
    let client = f.rt.client();
    f.rt.tokens.forget();
    let permit = f.rt.limits.acquire().await;
    let poll = probes::poll(&f.rt, &mut p, &client, std::future::pending(), Some(permit));
    let v = tokio::time::timeout(Duration::from_secs(60), poll)
        .await
        .expect("the login got the slot");
    assert!(matches!(v, PollVerdict::Continue(_)));
    assert_eq!((f.status_requests(), f.rt.tokens.logins()), (1, 2));
}
