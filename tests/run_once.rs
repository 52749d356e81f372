//! `run --once` and service mode against the in-process simulator: the journal holds exactly
//! what the simulator served, authentication failures skip what needs a token, token expiry
//! costs one re-login, the limiter holds the quota, and shutdown flushes everything. One job
//! per host at a time, and a stop without resume ending jobs `cancelled`, are paused-time
//! unit tests of the environment actor (src/actors/environment_tests.rs).

mod harness;

use harness::*;
use iaso_probe::model::{Action, ErrorType, JobResult, Outcome};
use std::collections::HashSet;
use std::time::Duration;

const SIM: Sim = Sim::new(11, 2, (50, 400)).failure(0.2).warning(0.1);

const RESTORES: &str = r#"
[[environments.lab.restores]]
host = "host-00000"
file_name = "a.txt"
source_path = "/data"
destination_path = "/restore"
[[environments.lab.restores]]
host = "host-00001"
file_name = "b.txt"
source_path = "/etc"
destination_path = "/restore"
"#;

#[test]
fn seeded_run_journal_holds_exactly_what_the_simulator_served() {
    let sim = SIM.start();
    let dir = tempfile::tempdir().unwrap();
    let tail = format!("{}{}", hosts("lab", 20), RESTORES);
    let cfg = one_env(dir.path(), "lab", &sim.base_url(), "", &tail);
    let report = run_once(cfg);
    let c = sim.counters();
    let docs = journal(dir.path());

    // Every line is a strict ProbeResult with a unique id.
    let ids: HashSet<_> = docs.iter().map(|r| r.event.id.clone()).collect();
    assert_eq!(ids.len(), docs.len());
    assert_eq!(report.sink.written, docs.len() as u64);

    let ep = |n: &str| c.endpoints.get(n).map_or(0, |e| e.requests);
    // liveness + the response-time check (default path /api/v1/alive)
    assert_eq!(
        count(&docs, Action::Liveness) + count(&docs, Action::ResponseTime),
        ep("alive")
    );
    // one result per component plus _overall, per health answer
    let components = 5 + 1;
    assert_eq!(count(&docs, Action::Health), ep("health") * components);
    assert_eq!(count(&docs, Action::Auth), c.logins_ok + c.logins_failed);
    assert_eq!(count(&docs, Action::BackupLaunch), c.backups_launched);
    assert_eq!(c.backups_launched, 20);
    assert_eq!(count(&docs, Action::RestoreLaunch), c.restores_launched);
    assert_eq!(c.restores_launched, 2);
    assert_eq!(count(&docs, Action::JobStatus), c.status_changes_served);
    assert_eq!(count(&docs, Action::JobEnd), 22);
    assert_eq!(c.jobs_terminal_served, 22);

    // Job flows: one trace id from launch to end, results classified.
    let ends: Vec<_> = docs
        .iter()
        .filter(|r| r.event.action == Action::JobEnd)
        .collect();
    for e in &ends {
        let trace = &e.trace.as_ref().unwrap().id;
        let launch = docs.iter().find(|r| {
            matches!(r.event.action, Action::BackupLaunch | Action::RestoreLaunch)
                && r.trace.as_ref().map(|t| &t.id) == Some(trace)
        });
        assert!(launch.is_some(), "job.end without its launch");
        let res = e.iaso.job.as_ref().unwrap().result.unwrap();
        assert!(matches!(
            res,
            JobResult::Success | JobResult::Warning | JobResult::Failure
        ));
        assert_eq!(
            e.event.outcome == Outcome::Failure,
            res == JobResult::Failure
        );
    }
    // A seeded failure ratio of 20% over 22 jobs fails some and not all.
    let failed = ends
        .iter()
        .filter(|e| e.iaso.job.as_ref().unwrap().result == Some(JobResult::Failure))
        .count();
    assert!(failed > 0 && failed < 22, "{failed}");
    assert_eq!(report.exit_code(), 1, "failed jobs make exit code 1");

    // Heartbeat fields on checks, none on jobs.
    for r in &docs {
        let is_check = matches!(
            r.event.action,
            Action::Liveness | Action::Health | Action::ResponseTime | Action::Auth
        );
        assert_eq!(r.monitor.is_some(), is_check, "{:?}", r.event.action);
        assert_eq!(r.labels.run_id, report.run_id);
        assert_eq!(r.service.environment, "lab");
    }
    let lines = iaso_probe::sink::journal::read_all(&dir.path().join("journal")).unwrap();
    assert!(
        lines.iter().all(|l| !l.contains("probe-secret")),
        "password leaked into the journal"
    );
}

#[test]
fn wrong_password_fails_auth_and_skips_every_step_that_needs_the_token() {
    let sim = SIM.start();
    let dir = tempfile::tempdir().unwrap();
    let tail = format!("{}{}", hosts("lab", 10), RESTORES);
    let mut cfg = one_env(dir.path(), "lab", &sim.base_url(), "", &tail);
    cfg.environments
        .get_mut("lab")
        .unwrap()
        .credentials
        .password = Some(iaso_probe::config::Secret::new("wrong"));
    let report = run_once(cfg);
    let docs = journal(dir.path());
    let c = sim.counters();

    let auth: Vec<_> = docs
        .iter()
        .filter(|r| r.event.action == Action::Auth)
        .collect();
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0].event.outcome, Outcome::Failure);
    assert_eq!(auth[0].error.as_ref().unwrap().kind, ErrorType::Auth);
    assert_eq!(c.logins_failed, 1, "one failed login, not one per host");

    let skipped: Vec<_> = docs
        .iter()
        .filter(|r| {
            r.error
                .as_ref()
                .is_some_and(|e| e.kind == ErrorType::Skipped)
        })
        .collect();
    assert_eq!(
        skipped.len(),
        12,
        "10 backups + 2 restores reported skipped"
    );
    assert!(skipped
        .iter()
        .all(|r| r.event.outcome == Outcome::Unknown && r.host.is_some()));
    assert_eq!(count(&docs, Action::BackupLaunch), 10);
    assert_eq!(count(&docs, Action::RestoreLaunch), 2);
    assert_eq!(
        count(&docs, Action::JobStatus) + count(&docs, Action::JobEnd),
        0
    );
    assert_eq!(c.backups_launched, 0);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.tally.environments["lab"].skipped, 12);
}

#[test]
fn token_expiry_mid_run_costs_one_relogin_and_no_job() {
    let sim = SIM.jobs(1500, 2500).start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_env(
        dir.path(),
        "lab",
        &sim.base_url(),
        "",
        &format!("poll_interval_ms = 100\n{}", hosts("lab", 40)),
    );
    let sim_for_thread = std::sync::Arc::new(sim);
    let s2 = sim_for_thread.clone();
    // Expire every token once all jobs are launched and being polled.
    let expirer = std::thread::spawn(move || {
        wait_until("jobs launched and polled", Duration::from_secs(20), || {
            let c = s2.counters();
            c.backups_launched >= 40 && c.endpoint("job_status").ok_2xx >= 40
        });
        s2.expire_tokens();
    });
    let report = run_once(cfg);
    expirer.join().unwrap();
    let c = sim_for_thread.counters();
    let docs = journal(dir.path());
    assert_eq!(c.logins_ok, 2, "initial login + exactly one re-login");
    assert!(
        c.endpoints["job_status"].unauthorized_401 > 0,
        "expiry was seen by polls"
    );
    assert_eq!(count(&docs, Action::JobEnd), 40, "no job lost");
    assert!(docs
        .iter()
        .filter(|r| r.event.action == Action::JobEnd)
        .all(|r| r.iaso.job.as_ref().unwrap().result != Some(JobResult::PollFailed)));
    assert_eq!(count(&docs, Action::Auth), 2);
    assert_eq!(report.environments.len(), 1);
}

#[test]
fn limiter_keeps_every_second_at_or_under_quota_plus_burst() {
    let sim = SIM.jobs(300, 900).start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = one_env(
        dir.path(),
        "lab",
        &sim.base_url(),
        "",
        &format!("poll_interval_ms = 5\n{}", hosts("lab", 30)),
    );
    let env = cfg.environments.get_mut("lab").unwrap();
    env.rate_limit_per_sec = 20;
    env.rate_limit_burst = 5;
    run_once(cfg);
    let c = sim.counters();
    let total: u64 = c.endpoints.values().map(|e| e.requests).sum();
    assert!(
        total > 60,
        "enough demand to press the limiter ({total} requests)"
    );
    let worst = c.max_requests_in_window(1000);
    assert!(
        worst <= 25,
        "a one-second window saw {worst} requests (quota 20 + burst 5)"
    );
}

/// Service mode against `sim` (jobs of 5–9 s), stopped once 25 backups are launched.
fn service_run_stopped_after_launches(
    sim: &std::sync::Arc<iaso_probe::simulator::SimulatorHandle>,
    dir: &std::path::Path,
    jobs_extra: &str,
) -> iaso_probe::RunReport {
    let tail = format!(
        "backup_interval_secs = 2\n{jobs_extra}\n{}",
        hosts("lab", 25)
    );
    let cfg = one_env(dir, "lab", &sim.base_url(), "", &tail);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let s2 = sim.clone();
    let trigger = std::thread::spawn(move || {
        // Service mode spreads first runs over the interval (2 s here); wait for the launches.
        wait_until("jobs launched", Duration::from_secs(90), || {
            s2.counters().backups_launched >= 25
        });
        let _ = tx.send(());
    });
    let report = run_with(cfg, false, async move {
        let _ = rx.await;
    });
    trigger.join().unwrap();
    report
}

fn job_ids(docs: &[iaso_probe::model::ProbeResult], action: Action) -> Vec<String> {
    let mut ids: Vec<String> = docs
        .iter()
        .filter(|r| r.event.action == action && r.event.outcome == Outcome::Success)
        .map(|r| r.iaso.job.as_ref().unwrap().id.clone().unwrap())
        .collect();
    ids.sort();
    ids
}

#[test]
fn shutdown_hands_running_jobs_to_the_next_start_which_tracks_them_to_their_end() {
    let sim = std::sync::Arc::new(SIM.jobs(5000, 9000).start());
    let dir = tempfile::tempdir().unwrap();
    let report = service_run_stopped_after_launches(&sim, dir.path(), "");
    let docs = journal(dir.path());
    assert!(report.interrupted);
    assert_eq!(
        report.sink.written,
        docs.len() as u64,
        "every result reached the disk"
    );
    let launched = job_ids(&docs, Action::BackupLaunch);
    assert_eq!(launched.len() as u64, sim.counters().backups_launched);
    assert_eq!(
        count(&docs, Action::JobEnd),
        0,
        "no job was still running long enough to end, none may be reported cancelled"
    );
    let file = dir.path().join("journal").join("tracked-jobs.json");
    let handed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("tracked-jobs.json")).unwrap();
    let mut handed_ids: Vec<String> = handed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_owned())
        .collect();
    handed_ids.sort();
    assert_eq!(handed_ids, launched, "every running job was handed over");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains("probe-secret"),
        "no secret in the handoff file"
    );

    // The next start tracks them to their real end, and launches no second backup of a
    // host whose handed-over backup still runs.
    let tail = hosts("lab", 25);
    let cfg = one_env(dir.path(), "lab", &sim.base_url(), "", &tail);
    let second = run_once(cfg);
    assert_eq!(
        sim.counters().backups_launched,
        launched.len() as u64,
        "no host launched again"
    );
    let docs = journal(dir.path());
    let skipped: Vec<_> = docs
        .iter()
        .filter(|r| r.event.action == Action::BackupLaunch && r.labels.run_id == second.run_id)
        .collect();
    assert_eq!(skipped.len(), 25);
    assert!(skipped.iter().all(|r| r.event.outcome == Outcome::Unknown
        && r.error.as_ref().unwrap().message.contains("still running")));
    let ends: Vec<_> = docs
        .iter()
        .filter(|r| r.event.action == Action::JobEnd)
        .collect();
    let mut ended: Vec<String> = ends
        .iter()
        .map(|r| r.iaso.job.as_ref().unwrap().id.clone().unwrap())
        .collect();
    ended.sort();
    assert_eq!(ended, launched, "one job.end per handed-over job");
    assert!(ends.iter().all(|r| {
        let j = r.iaso.job.as_ref().unwrap();
        j.result != Some(JobResult::Cancelled) && r.event.duration.unwrap_or(0) >= 5_000_000_000
    }));
    // Launch and end share the trace id; the end's run is the second one.
    for end in &ends {
        let id = end.iaso.job.as_ref().unwrap().id.clone();
        let launch = docs
            .iter()
            .find(|r| {
                r.event.action == Action::BackupLaunch && r.iaso.job.as_ref().unwrap().id == id
            })
            .unwrap();
        assert_eq!(end.trace, launch.trace);
        assert_ne!(end.labels.run_id, launch.labels.run_id);
        assert_eq!(end.labels.run_id, second.run_id);
    }
    assert!(!file.exists(), "nothing left to hand over");
}

#[test]
fn the_portals_own_429s_delay_the_prober_but_fail_nothing() {
    let sim = simulator(&format!(
        "{}\nrate_limit_per_sec = 15\nrate_limit_burst = 3\n",
        SIM.toml()
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = one_env(dir.path(), "lab", &sim.base_url(), "", &hosts("lab", 12));
    // Misconfigured: the prober may send 50/s, the portal takes 15/s.
    cfg.environments.get_mut("lab").unwrap().rate_limit_per_sec = 50;
    run_once(cfg);
    let c = sim.counters();
    let limited: u64 = c.endpoints.values().map(|e| e.rate_limited_429).sum();
    assert!(limited > 0, "the prober's 50/s must hit the portal's 15/s");
    let docs = journal(dir.path());
    let launches: Vec<_> = docs
        .iter()
        .filter(|r| r.event.action == Action::BackupLaunch)
        .collect();
    assert_eq!(launches.len(), 12);
    assert!(
        launches.iter().all(|r| r.event.outcome == Outcome::Success),
        "launches answered 429 are retried after Retry-After: {:?}",
        launches.iter().map(|r| r.error.clone()).collect::<Vec<_>>()
    );
    let ends: Vec<_> = docs
        .iter()
        .filter(|r| r.event.action == Action::JobEnd)
        .collect();
    assert_eq!(ends.len(), 12);
    assert!(ends
        .iter()
        .all(|r| r.iaso.job.as_ref().unwrap().result != Some(JobResult::PollFailed)));
}

#[test]
fn jobs_of_an_in_process_simulator_are_cancelled_at_a_stop_not_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            r#"
{head}[environments.lab]
rate_limit_per_sec = 1000
rate_limit_burst = 50
[environments.lab.credentials]
username = "probe"
password = "probe-secret"
[environments.lab.checks]
liveness = {{ enabled = false }}
health = {{ enabled = false }}
response_time = {{ enabled = false }}
auth = {{ enabled = false }}
[environments.lab.jobs]
backup_interval_secs = 1
poll_interval_ms = 20
[environments.lab.simulator]
job_duration_ms = {{ min = 60000, max = 90000 }}
{hosts}"#,
            head = journal_and_log(dir.path()),
            hosts = hosts("lab", 5)
        ),
    );
    let journal_dir = dir.path().join("journal");
    let d = dir.path().to_owned();
    // Stop once the five launches are in the journal.
    let stop = until(Duration::from_secs(60), move || {
        journal_lines_with(&d, "\"action\":\"backup.launch\"") >= 5
    });
    run_with(cfg, false, stop);
    let docs = journal(dir.path());
    let ends: Vec<_> = docs
        .iter()
        .filter(|r| r.event.action == Action::JobEnd)
        .collect();
    assert_eq!(ends.len(), job_ids(&docs, Action::BackupLaunch).len());
    assert!(ends.len() >= 5);
    assert!(ends
        .iter()
        .all(|r| r.iaso.job.as_ref().unwrap().result == Some(JobResult::Cancelled)));
    assert!(!journal_dir.join("tracked-jobs.json").exists());
}

#[test]
fn in_service_mode_a_resumed_host_is_launched_again_only_after_its_job_ended() {
    let sim = std::sync::Arc::new(SIM.jobs(5000, 6000).start());
    let dir = tempfile::tempdir().unwrap();
    service_run_stopped_after_launches(&sim, dir.path(), "");
    let handed = job_ids(&journal(dir.path()), Action::BackupLaunch);
    assert_eq!(handed.len(), 25);

    // The next start, in service mode with a 1 s backup interval, runs until every
    // handed-over job has ended (or 60 s: the asserts below then say what went wrong).
    let tail = format!("backup_interval_secs = 1\n{}", hosts("lab", 25));
    let cfg = one_env(dir.path(), "lab", &sim.base_url(), "", &tail);
    let d = dir.path().to_owned();
    let ids = handed.clone();
    let stop = until(Duration::from_secs(60), move || {
        let ended: HashSet<String> = journal(&d)
            .iter()
            .filter(|r| r.event.action == Action::JobEnd)
            .filter_map(|r| r.iaso.job.as_ref().unwrap().id.clone())
            .collect();
        ids.iter().all(|id| ended.contains(id))
    });
    let second = run_with(cfg, false, stop);
    let docs = journal(dir.path());
    let in_second = |r: &&iaso_probe::model::ProbeResult| r.labels.run_id == second.run_id;
    let skipped = docs
        .iter()
        .filter(in_second)
        .filter(|r| r.event.action == Action::BackupLaunch && r.event.outcome != Outcome::Success)
        .count();
    assert!(
        skipped >= 25,
        "the first tick found every resumed host busy ({skipped} skipped)"
    );
    for id in &handed {
        let host_of = |r: &iaso_probe::model::ProbeResult| r.host.as_ref().unwrap().name.clone();
        let end = docs
            .iter()
            .find(|r| {
                r.event.action == Action::JobEnd
                    && r.iaso.job.as_ref().unwrap().id.as_ref() == Some(id)
            })
            .unwrap_or_else(|| panic!("job {id} has no job.end"));
        let host = host_of(end);
        for launch in docs.iter().filter(in_second).filter(|r| {
            r.event.action == Action::BackupLaunch
                && r.event.outcome == Outcome::Success
                && host_of(r) == host
        }) {
            assert!(
                launch.timestamp >= end.timestamp,
                "{host} launched again at {} while its resumed job {id} ran until {}",
                launch.timestamp,
                end.timestamp
            );
        }
    }
}
