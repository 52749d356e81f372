//! Schedules that survive restarts, end to end with the simulator and its counters: a
//! restart inside the interval launches nothing, each host is due again one interval after
//! its last launch, hosts added to the configuration launch at their own point, and a
//! damaged state file stops the start naming the file.
//!
//! The scheduler's clock is injected (`RunOptions::clock`): a run can start "one hour
//! later" without waiting, and the run that must launch nothing runs on paused tokio time
//! (it sends no request at all, so paused time never meets a real socket).

mod harness;

use chrono::{DateTime, Utc};
use harness::*;
use iaso_probe::model::{Action, ProbeResult};
use iaso_probe::schedule::placement::{next_point, stable_hash};
use iaso_probe::schedule::Clock;
use iaso_probe::simulator::SimulatorHandle;
use iaso_probe::{RunOptions, RunReport};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIM: Sim = Sim::new(5, 2, (20, 80)).failure(0.0);

const HOUR: u64 = 3600;

/// Backups only (checks and restores off), hourly, `n` hosts.
fn backups_every_hour(dir: &Path, sim: &SimulatorHandle, n: usize) -> iaso_probe::config::Config {
    let tail = format!(
        "backup_interval_secs = {HOUR}\n{}\n[environments.lab.checks]\nliveness = {{ enabled = false }}\nhealth = {{ enabled = false }}\nresponse_time = {{ enabled = false }}\nauth = {{ enabled = false }}\n",
        hosts("lab", n)
    );
    one_env(dir, "lab", &sim.base_url(), "", &tail)
}

/// Service mode on paused tokio time, the schedule's clock starting at `start`, for `span`.
fn service_on_paused_time(
    cfg: iaso_probe::config::Config,
    start: DateTime<Utc>,
    span: Duration,
) -> RunReport {
    actix::System::new()
        .block_on(async move {
            tokio::time::pause();
            let opts = RunOptions {
                seed: Some(7),
                clock: Some(Clock::starting_at(start)),
                ..Default::default()
            };
            iaso_probe::run(cfg, opts, tokio::time::sleep(span)).await
        })
        .expect("run succeeds")
}

/// Service mode in real time, the schedule's clock starting at `start`, stopped once the
/// simulator counted `launches` backups (or after 60 s: the asserts then say what is wrong).
fn service_until_launches(
    cfg: iaso_probe::config::Config,
    sim: &Arc<SimulatorHandle>,
    start: DateTime<Utc>,
    launches: u64,
) -> RunReport {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let s = sim.clone();
    let watcher = std::thread::spawn(move || {
        let t0 = Instant::now();
        while s.counters().backups_launched < launches && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = tx.send(());
    });
    let report = actix::System::new()
        .block_on(async move {
            let opts = RunOptions {
                seed: Some(7),
                clock: Some(Clock::starting_at(start)),
                ..Default::default()
            };
            iaso_probe::run(cfg, opts, async move {
                let _ = rx.await;
            })
            .await
        })
        .expect("run succeeds");
    watcher.join().unwrap();
    report
}

fn launched_hosts(docs: &[ProbeResult], run_id: &str) -> Vec<String> {
    let mut h: Vec<String> = docs
        .iter()
        .filter(|r| r.event.action == Action::BackupLaunch && r.labels.run_id == run_id)
        .map(|r| r.host.as_ref().unwrap().name.clone())
        .collect();
    h.sort();
    h
}

#[test]
fn a_restart_inside_the_interval_launches_nothing_and_each_host_again_once_it_is_due() {
    let sim = Arc::new(SIM.start());
    let dir = tempfile::tempdir().unwrap();

    // `run --once` launches every host now, and records it.
    run_once(backups_every_hour(dir.path(), &sim, 12));
    assert_eq!(sim.counters().backups_launched, 12);
    let state = dir.path().join("journal").join("schedule-state.json");
    assert!(state.exists(), "the launches are recorded");

    // A service-mode start right after, running for 59 minutes: nothing is due yet.
    let report = service_on_paused_time(
        backups_every_hour(dir.path(), &sim, 12),
        Utc::now(),
        Duration::from_secs(HOUR - 60),
    );
    assert_eq!(
        sim.counters().backups_launched,
        12,
        "a restart inside the interval launched backups"
    );
    assert!(launched_hosts(&journal(dir.path()), &report.run_id).is_empty());

    // A start one interval later: every host is due, each launched once.
    let later = Utc::now() + chrono::Duration::seconds(HOUR as i64 + 1);
    let report = service_until_launches(backups_every_hour(dir.path(), &sim, 12), &sim, later, 24);
    assert_eq!(sim.counters().backups_launched, 24);
    let hosts = launched_hosts(&journal(dir.path()), &report.run_id);
    let distinct: BTreeSet<_> = hosts.iter().collect();
    assert_eq!((hosts.len(), distinct.len()), (12, 12), "{hosts:?}");
}

#[test]
fn a_config_change_adding_hosts_launches_only_the_new_ones_at_their_point() {
    let sim = Arc::new(SIM.start());
    let dir = tempfile::tempdir().unwrap();
    run_once(backups_every_hour(dir.path(), &sim, 12));
    assert_eq!(sim.counters().backups_launched, 12);

    // Two hosts added: each has its own stable point in the hour. Start the clock just
    // before the earlier one.
    let now = Utc::now();
    let point = |h: &str| {
        next_point(
            stable_hash("lab", &format!("backup {h}")),
            Duration::from_secs(HOUR),
            now,
        )
    };
    let (first, p) = ["host-00012", "host-00013"]
        .into_iter()
        .map(|h| (h, point(h)))
        .min_by_key(|(_, p)| *p)
        .unwrap();
    let report = service_until_launches(
        backups_every_hour(dir.path(), &sim, 14),
        &sim,
        p - chrono::Duration::milliseconds(500),
        13,
    );
    let hosts = launched_hosts(&journal(dir.path()), &report.run_id);
    assert!(hosts.contains(&first.to_owned()), "{hosts:?}");
    assert!(
        hosts.iter().all(|h| h == "host-00012" || h == "host-00013"),
        "a host already backed up was launched again: {hosts:?}"
    );
}

#[test]
fn a_damaged_state_file_stops_the_start_naming_the_file() {
    let sim = SIM.start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = backups_every_hour(dir.path(), &sim, 2);
    std::fs::create_dir_all(dir.path().join("journal")).unwrap();
    let state = dir.path().join("journal").join("schedule-state.json");
    std::fs::write(&state, "{\"version\": 1, \"environments\": {\"lab\": 7}}").unwrap();
    let err = actix::System::new()
        .block_on(iaso_probe::run(
            cfg,
            RunOptions::default(),
            std::future::pending(),
        ))
        .expect_err("the start fails");
    let msg = err.to_string();
    assert!(msg.contains(&state.display().to_string()), "{msg}");
    assert!(msg.contains("delete this file"), "{msg}");
    assert_eq!(sim.counters().backups_launched, 0);

    // The binary: exit code 2, the path on stderr.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_iaso-probe"))
        .current_dir(dir.path())
        .env_remove("ELASTICSEARCH_URL")
        .args(["--config", "test.toml", "run", "--once", "--no-progress"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("schedule-state.json") && stderr.contains("not a schedule state file"),
        "{stderr}"
    );
}

#[test]
fn max_launches_per_minute_spaces_the_launches_of_a_pass() {
    let sim = SIM.start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = backups_every_hour(dir.path(), &sim, 12);
    // 600 a minute: one launch every 100 ms, so twelve take at least 1.1 s.
    cfg.environments
        .get_mut("lab")
        .unwrap()
        .jobs
        .max_launches_per_minute = 600;
    run_once(cfg);
    assert_eq!(sim.counters().backups_launched, 12);
    let mut at: Vec<DateTime<Utc>> = journal(dir.path())
        .iter()
        .filter(|r| r.event.action == Action::BackupLaunch)
        .map(|r| r.timestamp)
        .collect();
    at.sort();
    let span = *at.last().unwrap() - at[0];
    assert!(
        span >= chrono::Duration::milliseconds(1050),
        "twelve launches within {span}"
    );
}

#[test]
fn a_panic_in_one_service_mode_launch_is_one_internal_result_and_the_other_launches_still_happen() {
    use iaso_probe::model::ErrorType;
    // A name of its own: the fault is armed per environment, other tests here use `lab`.
    const ENV: &str = "panics-in-service-launch";
    let renamed = |mut cfg: iaso_probe::config::Config| {
        let e = cfg.environments.remove("lab").unwrap();
        cfg.environments.insert(ENV.into(), e);
        cfg
    };
    let sim = Arc::new(SIM.start());
    let dir = tempfile::tempdir().unwrap();
    // Recorded launches, so that a start one interval later finds all three hosts due.
    run_once(renamed(backups_every_hour(dir.path(), &sim, 3)));
    assert_eq!(sim.counters().backups_launched, 3);

    iaso_probe::probes::fault_injection::panic_next(ENV, "launch");
    let later = Utc::now() + chrono::Duration::seconds(HOUR as i64 + 1);
    let cfg = renamed(backups_every_hour(dir.path(), &sim, 3));
    let report = service_until_launches(cfg, &sim, later, 5);
    assert_eq!(
        sim.counters().backups_launched,
        5,
        "the two others launched"
    );
    let docs = journal(dir.path());
    let launches: Vec<_> = docs
        .iter()
        .filter(|r| r.event.action == Action::BackupLaunch && r.labels.run_id == report.run_id)
        .collect();
    assert_eq!(launches.len(), 3, "{launches:?}");
    let internal = with_error(&launches, ErrorType::Internal);
    assert_eq!(internal.len(), 1, "{launches:?}");
    assert!(internal[0].host.is_some(), "the result names the host");
}
