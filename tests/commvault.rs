//! `config/commvault.toml` against the simulator's `commvault` dialect, in-process on port 0:
//! Commvault's own REST API probed by configuration alone. Every check passes, the three
//! backups and the restore are tracked to their end (the failing client's `job.end` says
//! Commvault's reason), a wrong password and an unknown subclient carry Commvault's own
//! messages, an XML answer says it is not JSON, and neither the password nor its Base64 form
//! is written anywhere.

mod harness;
mod support;

use base64::Engine as _;
use harness::*;
use iaso_probe::config::load::load_with;
use iaso_probe::config::{Config, ConfigSource, HostSpec, Secret};
use iaso_probe::model::{Action, ErrorType, JobResult, Outcome, ProbeResult};
use iaso_probe::simulator::SimulatorHandle;
use iaso_probe::simulator::{self, Dialect, RangeMs, SimCredential, SimulatorConfig};
use iaso_probe::{RunOptions, RunReport};
use std::path::{Path, PathBuf};
use support::es_emulator::EsEmulator;

/// The prober account's password (what `COMMVAULT_PASSWORD` holds).
const PASSWORD: &str = "Cv-Secret!42";

fn config_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/commvault.toml")
}

/// A CommServe-shaped simulator: short jobs, none failing by chance (only `fail01`'s
/// subclient 103 always fails), accepting `probe` / [`PASSWORD`].
fn commserve() -> SimulatorHandle {
    let cfg = SimulatorConfig {
        dialect: Dialect::Commvault,
        seed: 3,
        latency_ms: RangeMs::new(0, 1),
        job_duration_ms: RangeMs::new(100, 400),
        job_failure_ratio: 0.0,
        job_warning_ratio: 0.0,
        credentials: vec![SimCredential {
            username: "probe".into(),
            password: PASSWORD.into(),
        }],
        ..SimulatorConfig::default()
    };
    simulator::spawn(cfg, "127.0.0.1:0".parse().unwrap()).expect("simulator starts")
}

/// `config/commvault.toml` as shipped, loaded and validated, pointed at `sim` with its
/// journal in `dir` and quicker polls (nothing else changed).
fn commvault_config(dir: &Path, sim: &SimulatorHandle) -> Config {
    // Every test sets the same value: concurrent tests cannot disagree.
    std::env::set_var("COMMVAULT_PASSWORD", PASSWORD);
    let mut cfg = match load_with(&ConfigSource::Files(vec![config_file()]), false) {
        Ok(l) => l.config,
        Err(e) => panic!("config/commvault.toml rejected: {e}"),
    };
    cfg.journal.dir = dir.join("journal");
    cfg.journal.flush_interval_ms = 20;
    cfg.log.dir = PathBuf::new();
    let env = cfg
        .environments
        .get_mut("commvault")
        .expect("environment commvault");
    env.base_url = Some(format!("{}/commandcenter/api", sim.base_url()));
    env.jobs.poll_interval_ms = 50;
    env.jobs.poll_jitter_ms = 10;
    env.api.auth.min_login_interval_secs = 0;
    cfg
}

fn run(cfg: Config) -> RunReport {
    run_with(cfg, true, std::future::pending())
}

fn of(docs: &[ProbeResult], action: Action) -> Vec<&ProbeResult> {
    docs.iter().filter(|r| r.event.action == action).collect()
}

fn host_of(r: &ProbeResult) -> &str {
    r.host.as_ref().map_or("", |h| h.name.as_str())
}

fn error_of(r: &ProbeResult) -> (ErrorType, &str) {
    let e = r
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("no error in {r:?}"));
    (e.kind, e.message.as_str())
}

#[test]
fn check_config_accepts_the_shipped_commvault_file() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_iaso-probe"))
        .arg("--config")
        .arg(config_file())
        .arg("check-config")
        .env("COMMVAULT_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("http://127.0.0.1:8081/commandcenter/api, 3 hosts, 1 restores")
            && stdout.contains("configuration is valid"),
        "{stdout}"
    );
}

#[test]
fn a_run_passes_every_check_and_tracks_every_backup_and_the_restore_to_its_end() {
    let sim = commserve();
    let dir = tempfile::tempdir().unwrap();
    let report = run(commvault_config(dir.path(), &sim));
    let docs = journal(dir.path());
    let c = sim.counters();

    for action in [
        Action::Liveness,
        Action::ResponseTime,
        Action::Health,
        Action::Auth,
    ] {
        let results = of(&docs, action);
        assert!(!results.is_empty(), "no {action:?} result");
        for r in results {
            assert_eq!(r.event.outcome, Outcome::Success, "{r:?}");
        }
    }
    // The health is the authenticated CommServe details: `_overall` only.
    let health = of(&docs, Action::Health);
    assert_eq!(health.len(), 1);
    let h = health[0].iaso.health.as_ref().unwrap();
    assert_eq!(
        (h.component.as_str(), h.status.as_str()),
        ("_overall", "healthy")
    );
    assert!(health[0]
        .url
        .as_ref()
        .unwrap()
        .full
        .ends_with("/commandcenter/api/CommServ"));
    // The simulator only takes a Base64 password: every login it answered was accepted.
    assert!(c.logins_ok >= 1 && c.logins_failed == 0, "{c:?}");

    let launches = of(&docs, Action::BackupLaunch);
    let mut hosts: Vec<&str> = launches.iter().map(|r| host_of(r)).collect();
    hosts.sort();
    assert_eq!(hosts, ["db01", "fail01", "web01"]);
    for r in &launches {
        assert_eq!(r.event.outcome, Outcome::Success, "{r:?}");
        let url = &r.url.as_ref().unwrap().full;
        let id = match host_of(r) {
            "web01" => 101,
            "db01" => 102,
            _ => 103,
        };
        assert!(
            url.ends_with(&format!("/Subclient/{id}/action/backup?backupLevel=Full")),
            "{url}"
        );
        // `jobIds` are strings of digits.
        let job_id = r.iaso.job.as_ref().unwrap().id.as_deref().unwrap();
        assert!(job_id.parse::<u64>().is_ok(), "{job_id}");
    }
    let restores = of(&docs, Action::RestoreLaunch);
    assert_eq!(restores.len(), 1);
    assert_eq!(
        restores[0].event.outcome,
        Outcome::Success,
        "{:?}",
        restores[0]
    );
    assert!(restores[0]
        .url
        .as_ref()
        .unwrap()
        .full
        .ends_with("/CreateTask"));
    assert_eq!((c.backups_launched, c.restores_launched), (3, 1));

    let ends = of(&docs, Action::JobEnd);
    assert_eq!(ends.len(), 4, "every job tracked to its end");
    for e in &ends {
        let job = e.iaso.job.as_ref().unwrap();
        let trace = &e.trace.as_ref().unwrap().id;
        let launch = docs.iter().find(|r| {
            matches!(r.event.action, Action::BackupLaunch | Action::RestoreLaunch)
                && r.trace.as_ref().map(|t| &t.id) == Some(trace)
        });
        assert!(launch.is_some(), "job.end without its launch: {e:?}");
        if host_of(e) == "fail01" {
            assert_eq!(job.result, Some(JobResult::Failure));
            assert_eq!(job.status.as_deref(), Some("Failed"));
            let (kind, message) = error_of(e);
            let reason = job.failure_reason.as_deref().expect("Commvault's reason");
            assert_eq!(kind, ErrorType::JobFailed);
            assert_eq!(message, format!("job ended Failed: {reason}"));
        } else {
            assert_eq!(job.result, Some(JobResult::Success), "{e:?}");
            assert_eq!(job.status.as_deref(), Some("Completed"));
            assert!(
                job.failure_reason.is_none(),
                "empty pendingReason is no value"
            );
        }
    }
    let restore_end = ends
        .iter()
        .find(|e| e.iaso.job.as_ref().unwrap().kind == iaso_probe::model::JobKind::Restore)
        .expect("the restore's job.end");
    assert_eq!(host_of(restore_end), "web01");
    assert_eq!(
        restore_end.iaso.job.as_ref().unwrap().phase.as_deref(),
        Some("Restore")
    );
    assert_eq!(
        report.exit_code(),
        1,
        "fail01's failed backup makes exit code 1"
    );
}

#[test]
fn a_wrong_password_is_an_auth_failure_with_commvaults_message() {
    let sim = commserve();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = commvault_config(dir.path(), &sim);
    let creds = &mut cfg.environments.get_mut("commvault").unwrap().credentials;
    creds.password_env = None;
    creds.password = Some(Secret::new("not-the-password"));
    run(cfg);
    let docs = journal(dir.path());
    let auth = of(&docs, Action::Auth);
    assert!(!auth.is_empty());
    for r in &auth {
        assert_eq!(r.event.outcome, Outcome::Failure);
        // The login answered HTTP 200: the refusal is inside the body.
        assert_eq!(
            r.http
                .as_ref()
                .unwrap()
                .response
                .as_ref()
                .unwrap()
                .status_code,
            200
        );
        assert_eq!(
            error_of(r),
            (
                ErrorType::Auth,
                "authentication refused: Invalid Username or Password (code 1116)"
            )
        );
    }
    // Nothing that needs the token ran; the health check says why.
    let skipped = with_error(&docs.iter().collect::<Vec<_>>(), ErrorType::Skipped);
    assert_eq!(skipped.len(), 4, "3 backups and the restore skipped");
    let health = of(&docs, Action::Health);
    assert_eq!(error_of(health[0]).0, ErrorType::Auth);
    assert_eq!(sim.counters().backups_launched, 0);
}

#[test]
fn the_stored_password_is_the_real_one_sent_base64_encoded() {
    // The same password sent as is: Commvault decodes it and refuses it.
    let sim = commserve();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = commvault_config(dir.path(), &sim);
    let env = cfg.environments.get_mut("commvault").unwrap();
    env.api.auth.password_encoding = iaso_probe::config::PasswordEncoding::Plain;
    env.jobs.backups_enabled = false;
    env.jobs.restores_enabled = false;
    run(cfg);
    let docs = journal(dir.path());
    let auth = of(&docs, Action::Auth);
    assert!(auth.iter().all(|r| r.event.outcome == Outcome::Failure));
    assert!(error_of(auth[0]).1.contains("Invalid Username or Password"));
}

#[test]
fn an_unknown_subclient_is_a_launch_failure_with_commvaults_message() {
    let sim = commserve();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = commvault_config(dir.path(), &sim);
    let env = cfg.environments.get_mut("commvault").unwrap();
    env.hosts.push(HostSpec {
        name: "ghost01".into(),
        level: None,
        vars: [("subclient_id".to_owned(), "999".to_owned())].into(),
    });
    env.restores.clear();
    run(cfg);
    let docs = journal(dir.path());
    let ghost: Vec<_> = of(&docs, Action::BackupLaunch)
        .into_iter()
        .filter(|r| host_of(r) == "ghost01")
        .collect();
    assert_eq!(ghost.len(), 1);
    let r = ghost[0];
    assert_eq!(r.event.outcome, Outcome::Failure);
    assert_eq!(
        r.http
            .as_ref()
            .unwrap()
            .response
            .as_ref()
            .unwrap()
            .status_code,
        200
    );
    assert_eq!(
        error_of(r),
        (
            ErrorType::ApiError,
            "the portal answered an error: Subclient not found (code 2)"
        )
    );
    assert!(r
        .url
        .as_ref()
        .unwrap()
        .full
        .contains("/Subclient/999/action/backup"));
    // The others still ran and ended.
    assert_eq!(of(&docs, Action::JobEnd).len(), 3);
}

#[test]
fn without_accept_json_the_xml_answer_is_reported_as_not_json_with_its_content_type() {
    let sim = commserve();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = commvault_config(dir.path(), &sim);
    let env = cfg.environments.get_mut("commvault").unwrap();
    env.api.headers.remove("Accept");
    env.restores.clear();
    env.hosts.truncate(1);
    run(cfg);
    let docs = journal(dir.path());
    // Liveness reads only the HTTP status; the login reads the body.
    assert_eq!(
        of(&docs, Action::Liveness)[0].event.outcome,
        Outcome::Success
    );
    let auth = of(&docs, Action::Auth);
    let (kind, message) = error_of(auth[0]);
    assert_eq!(kind, ErrorType::Decode);
    assert!(
        message.contains(
            "not JSON (content type `application/xml; charset=utf-8`, the body starts with `<?xml version=\"1.0\""
        ),
        "{message}"
    );
}

#[test]
fn a_hosts_file_gives_each_host_its_subclient_id() {
    let sim = commserve();
    let dir = tempfile::tempdir().unwrap();
    let cfg = commvault_config(dir.path(), &sim);
    let hosts = dir.path().join("hosts.txt");
    std::fs::write(
        &hosts,
        "# client   level   variables\nweb01 INCREMENTAL subclient_id=101\ndb01 subclient_id=102\n",
    )
    .unwrap();
    let opts = RunOptions {
        once: true,
        seed: Some(7),
        selection: iaso_probe::selection::Selection {
            hosts_file: Some(hosts),
            ..Default::default()
        },
        ..Default::default()
    };
    actix::System::new()
        .block_on(iaso_probe::run(cfg, opts, std::future::pending()))
        .expect("run succeeds");
    let docs = journal(dir.path());
    let mut urls: Vec<String> = of(&docs, Action::BackupLaunch)
        .iter()
        .map(|r| {
            assert_eq!(r.event.outcome, Outcome::Success, "{r:?}");
            r.url.as_ref().unwrap().full.clone()
        })
        .collect();
    urls.sort();
    assert_eq!(urls.len(), 2);
    assert!(
        urls[0].ends_with("/Subclient/101/action/backup?backupLevel=Incremental"),
        "{urls:?}"
    );
    assert!(
        urls[1].ends_with("/Subclient/102/action/backup?backupLevel=Full"),
        "{urls:?}"
    );
    // The restore of web01 takes web01's subclient id from the file.
    assert_eq!(
        of(&docs, Action::RestoreLaunch)[0].event.outcome,
        Outcome::Success
    );
}

#[test]
fn neither_the_password_nor_its_base64_form_is_in_the_journal_the_log_or_elasticsearch() {
    let encoded = base64::engine::general_purpose::STANDARD.encode(PASSWORD);
    let sim = commserve();
    let emu = EsEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let guards = iaso_probe::logging::init(&iaso_probe::config::LogConfig {
        level: "debug".into(),
        dir: log_dir.clone(),
        max_files: 2,
    })
    .expect("log file");
    let mut cfg = commvault_config(dir.path(), &sim);
    cfg.elasticsearch.urls = vec![emu.url()];
    cfg.elasticsearch.batch_max_wait_ms = 20;
    cfg.elasticsearch.once_ship_deadline_secs = 60;
    // One run that logs in fine, one that is refused (the refusal echoes nothing).
    let report = run(cfg.clone());
    assert!(report.shipping.is_some());
    let creds = &mut cfg.environments.get_mut("commvault").unwrap().credentials;
    creds.password_env = None;
    creds.password = Some(Secret::new(format!("{PASSWORD}-wrong")));
    run(cfg);
    // Dropping the guards writes out every buffered log line.
    drop(guards);

    let mut scanned = Vec::new();
    for line in iaso_probe::sink::journal::read_all(&dir.path().join("journal")).unwrap() {
        scanned.push(("journal".to_owned(), line));
    }
    let mut log_files = 0;
    for f in std::fs::read_dir(&log_dir).unwrap() {
        let path = f.unwrap().path();
        log_files += 1;
        scanned.push((
            path.display().to_string(),
            std::fs::read_to_string(&path).unwrap(),
        ));
    }
    let stored = emu.count("*-iaso.*");
    for r in emu.requests() {
        scanned.push((
            format!("elasticsearch {} {}", r.method, r.path),
            String::from_utf8_lossy(&r.body).into_owned(),
        ));
    }
    assert!(log_files >= 1, "no log file written");
    assert!(stored > 20, "only {stored} documents reached Elasticsearch");
    let journal_lines = scanned.iter().filter(|(w, _)| w == "journal").count();
    assert!(journal_lines > 20, "{journal_lines}");
    assert!(
        scanned
            .iter()
            .any(|(w, text)| w.contains("log") && text.contains("run finished")),
        "the log file holds the run"
    );
    for (where_, text) in &scanned {
        assert!(!text.contains(PASSWORD), "password in {where_}");
        assert!(!text.contains(&encoded), "Base64 password in {where_}");
    }
}
