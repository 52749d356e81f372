//! The environment actor in paused tokio time, against a simulator on the test's thread and
//! a recording sink: what a `run --once` pass emits and in which order, the service-mode
//! schedule of checks, missed deadlines, one job per host at a time, and what a stop does
//! with running jobs.

use super::*;
use crate::model::{Action, ErrorType, JobResult, Outcome, ProbeResult};
use crate::simulator::local::LocalSimulator;
use crate::simulator::SimulatorConfig;
use crate::test_support::{env_runtime, quiet_simulator, RecordingSink};

/// Only the named checks are enabled (`interval_secs` 30), no job scenario unless hosts
/// are given in `extra`.
fn checks(enabled: &[&str], extra: &str) -> String {
    let mut t = String::from("[checks]\n");
    for c in ["liveness", "health", "response_time", "auth"] {
        t += &format!(
            "{c} = {{ enabled = {}, interval_secs = 30 }}\n",
            enabled.contains(&c)
        );
    }
    format!("{extra}\n{t}")
}

fn hosts(n: usize) -> String {
    (0..n)
        .map(|i| format!("[[hosts]]\nname = \"web{i:02}\"\n"))
        .collect()
}

struct Fixture {
    sim: LocalSimulator,
    sink: RecordingSink,
    handoff: Arc<Handoff>,
    env: Addr<Environment>,
    _dir: tempfile::TempDir,
}

/// An environment actor on a fresh simulator (jobs on the test's own arbiter). `toml` is
/// put before the `[jobs]` table, `jobs` inside it (no jitter; polls every 5 s by default).
async fn start(sim: SimulatorConfig, toml: &str, jobs: &str, service: bool) -> Fixture {
    let sim = LocalSimulator::start(sim).await;
    let sink = RecordingSink::start();
    let rt = env_runtime(
        &sim.base_url(),
        &format!("{toml}\n[jobs]\npoll_jitter_ms = 0\n{jobs}"),
        &sink,
    );
    let dir = tempfile::tempdir().unwrap();
    let handoff = Arc::new(Handoff::new(dir.path()));
    let schedule = EnvSchedule {
        store: Arc::new(ScheduleStore::open(dir.path()).unwrap()),
        clock: Clock::starting_at(chrono::Utc::now()),
        prune: true,
    };
    let restores = rt.cfg.restores.clone();
    let workers = Workers::new(vec![actix::Arbiter::current()]);
    let env =
        Environment::new(rt, workers, restores, service, 7, handoff.clone(), schedule).start();
    Fixture {
        sim,
        sink,
        handoff,
        env,
        _dir: dir,
    }
}

fn host(r: &ProbeResult) -> &str {
    r.host.as_ref().map_or("", |h| h.name.as_str())
}

fn long_jobs() -> SimulatorConfig {
    let mut s = quiet_simulator();
    // The simulator's jobs run on the wall clock: these outlast any test.
    s.job_duration_ms = crate::simulator::RangeMs::new(3_600_000, 3_600_000);
    s
}

#[actix_rt::test]
async fn a_pass_runs_the_checks_then_the_launches_and_ends_once_every_job_ended() {
    tokio::time::pause();
    let f = start(
        quiet_simulator(),
        &checks(&["liveness", "health", "auth"], &hosts(3)),
        "",
        false,
    )
    .await;
    f.env.send(RunPass).await.unwrap();
    let all = f.sink.results().await;
    let actions: Vec<Action> = all.iter().map(|r| r.event.action).collect();
    let first_launch = actions.iter().position(|a| *a == Action::BackupLaunch);
    let last_check = actions
        .iter()
        .rposition(|a| matches!(a, Action::Liveness | Action::Health));
    assert!(last_check < first_launch, "checks first: {actions:?}");
    let count = |a| actions.iter().filter(|x| **x == a).count();
    assert_eq!(count(Action::Liveness), 1);
    assert_eq!(count(Action::Health), 6, "`_overall` and one per component");
    assert_eq!((count(Action::BackupLaunch), count(Action::JobEnd)), (3, 3));
    for end in all.iter().filter(|r| r.event.action == Action::JobEnd) {
        assert_eq!(
            end.iaso.job.as_ref().unwrap().result,
            Some(JobResult::Success)
        );
    }
    let c = f.env.send(GetCounters).await.unwrap();
    assert_eq!((c.runs, c.active_jobs), (1, 0));
    assert_eq!(f.sim.counters().endpoint("backups").requests, 3);
}

#[actix_rt::test]
async fn without_a_token_every_launch_is_reported_skipped_after_one_login() {
    tokio::time::pause();
    let toml =
        checks(&[], &hosts(4)).replace("[checks]", "[credentials]\npassword = \"wrong\"\n[checks]");
    let f = start(quiet_simulator(), &toml, "", false).await;
    f.env.send(RunPass).await.unwrap();
    let launches = f.sink.of(Action::BackupLaunch).await;
    assert_eq!(launches.len(), 4);
    for r in &launches {
        assert_eq!(r.event.outcome, Outcome::Unknown);
        assert_eq!(r.error.as_ref().unwrap().kind, ErrorType::Skipped);
    }
    assert_eq!(f.sink.of(Action::Auth).await.len(), 1, "the refused login");
    assert_eq!(f.sim.counters().endpoint("auth").requests, 1);
    assert_eq!(f.sim.counters().endpoint("backups").requests, 0);
}

#[actix_rt::test]
async fn service_mode_runs_a_check_within_its_first_interval_then_every_interval() {
    tokio::time::pause();
    let f = start(quiet_simulator(), &checks(&["liveness"], ""), "", true).await;
    f.env.send(StartSchedules).await.unwrap();
    // Counted by the actor (no I/O): reading the journal back waits on its fsync thread,
    // and paused time jumps to the next run while the runtime waits.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let c = f.env.send(GetCounters).await.unwrap();
    assert_eq!(c.runs, 1, "within 30 s");
    tokio::time::sleep(Duration::from_secs(300)).await;
    let c = f.env.send(GetCounters).await.unwrap();
    assert_eq!((c.runs, c.missed_deadlines), (11, 0), "then every 30 s");
    // One liveness result a run (the read itself may let one more run happen).
    let results = f.sink.of(Action::Liveness).await.len() as u64;
    let runs = f.env.send(GetCounters).await.unwrap().runs;
    assert!(
        (11..=runs + 1).contains(&results),
        "{results} results, {runs} runs"
    );
}

#[actix_rt::test]
async fn a_check_slower_than_its_interval_misses_deadlines_instead_of_piling_up() {
    tokio::time::pause();
    let mut sim = quiet_simulator();
    sim.endpoint_faults.insert(
        "alive".into(),
        crate::simulator::FaultConfig {
            latency_ms: Some(crate::simulator::RangeMs::new(45_000, 45_000)),
            ..Default::default()
        },
    );
    let toml = format!("timeout_ms = 60000\n{}", checks(&["liveness"], ""));
    let f = start(sim, &toml, "", true).await;
    f.env.send(StartSchedules).await.unwrap();
    tokio::time::sleep(Duration::from_secs(330)).await;
    let c = f.env.send(GetCounters).await.unwrap();
    // Each run takes 45 s, ticks come every 30 s: every other tick finds it still running.
    assert!(c.missed_deadlines >= 4, "{c:?}");
    assert!(c.runs <= 7, "{c:?}");
    assert!(f.sim.counters().endpoint("alive").requests <= 7);
}

#[actix_rt::test]
async fn a_host_whose_job_still_runs_is_not_launched_again() {
    tokio::time::pause();
    let f = start(
        long_jobs(),
        &checks(&[], &hosts(2)),
        "backup_interval_secs = 60\npoll_interval_ms = 30000",
        true,
    )
    .await;
    f.env.send(StartSchedules).await.unwrap();
    tokio::time::sleep(Duration::from_secs(300)).await;
    let launches = f.sink.of(Action::BackupLaunch).await;
    for h in ["web00", "web01"] {
        let mine: Vec<_> = launches.iter().filter(|r| host(r) == h).collect();
        assert!(mine.len() >= 4, "{h}: one attempt a minute: {}", mine.len());
        assert_eq!(mine[0].event.outcome, Outcome::Success);
        for r in &mine[1..] {
            let e = r.error.as_ref().unwrap();
            assert_eq!(e.kind, ErrorType::Skipped, "{h}");
            assert!(e
                .message
                .contains("previous backup of this host is still running"));
        }
    }
    assert_eq!(f.sim.counters().endpoint("backups").requests, 2);
}

/// Starts a pass whose jobs never end and waits until both are tracked.
async fn pass_with_running_jobs(jobs: &str) -> Fixture {
    let f = start(long_jobs(), &checks(&[], &hosts(2)), jobs, false).await;
    let env = f.env.clone();
    actix::spawn(async move {
        let _ = env.send(RunPass).await;
    });
    while f.env.send(GetCounters).await.unwrap().active_jobs < 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f
}

#[actix_rt::test]
async fn a_stop_hands_every_running_job_over_to_the_next_start() {
    tokio::time::pause();
    let f = pass_with_running_jobs("").await;
    let t0 = tokio::time::Instant::now();
    f.env
        .send(Shutdown {
            deadline: Duration::from_secs(60),
        })
        .await
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "at once: {:?}",
        t0.elapsed()
    );
    assert_eq!(f.handoff.len(), 2);
    assert!(f.sink.of(Action::JobEnd).await.is_empty());
}

#[actix_rt::test]
async fn without_resume_a_stop_ends_every_running_job_cancelled() {
    tokio::time::pause();
    let f = pass_with_running_jobs("resume_on_restart = false").await;
    f.env
        .send(Shutdown {
            deadline: Duration::from_secs(60),
        })
        .await
        .unwrap();
    assert!(f.handoff.is_empty());
    let ends = f.sink.of(Action::JobEnd).await;
    assert_eq!(ends.len(), 2);
    for e in &ends {
        assert_eq!(
            e.iaso.job.as_ref().unwrap().result,
            Some(JobResult::Cancelled)
        );
        assert_eq!(e.error.as_ref().unwrap().kind, ErrorType::Cancelled);
    }
}
