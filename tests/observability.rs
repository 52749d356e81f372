//! What an operator and a CI job see: `/metrics` (parsed as Prometheus text, values matching
//! the journal of a seeded run), `/healthz` and `/readyz` (flipping during the shutdown), a
//! taken listen address, `[thresholds]` and their exit codes, `--summary-json` validated
//! against docs/summary.schema.json, and the operator's WARN/ERROR lines of a run.

mod harness;
mod support;

use harness::*;
use iaso_probe::model::{Action, Outcome};
use iaso_probe::RunOptions;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const SIM: Sim = Sim::new(11, 2, (20, 120)).failure(0.3).warning(0.1);

/// One plain HTTP/1.1 GET: status and body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    // Bodies here are small: chunked encoding, if any, leaves its size lines, which the
    // Prometheus parser ignores as noise only if they are not samples; ask for the whole.
    Ok((status, ctype, body.to_owned()))
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// The families /metrics must carry (issue 11); `iaso_probe_bulk_requests` (by status)
/// appears with the first bulk request.
const FAMILIES: &[&str] = &[
    "iaso_probe_results_total",
    "iaso_probe_result_errors_total",
    "iaso_probe_check_up",
    "iaso_probe_request_duration_seconds",
    "iaso_probe_jobs_launched_total",
    "iaso_probe_jobs_ended_total",
    "iaso_probe_jobs_tracked",
    "iaso_probe_limiter_requests",
    "iaso_probe_limiter_wait_seconds",
    "iaso_probe_sink_buffer_used",
    "iaso_probe_journal_bytes",
    "iaso_probe_journal_segments",
    "iaso_probe_shipping_backlog_documents",
    "iaso_probe_shipping_oldest_unshipped_age_seconds",
    "iaso_probe_dead_letter_documents",
    "iaso_probe_process_start_time_seconds",
    "iaso_probe_build_info",
];

#[test]
fn a_seeded_run_s_metrics_parse_as_prometheus_text_and_match_its_journal() {
    let d = tempfile::tempdir().unwrap();
    let sim = SIM.start();
    let cfg = one_env(d.path(), "lab", &sim.base_url(), "", &hosts("lab", 30));
    let report = run_once(cfg);
    let text = report.metrics.render();
    for f in FAMILIES {
        assert!(
            text.contains(&format!("# TYPE {f} ")),
            "family {f} missing:\n{text}"
        );
    }
    let scrape = parse(&text);
    let results = journal(d.path());
    assert!(results.len() > 60, "{}", results.len());
    // Results by action and outcome, errors by type: exactly the journal's.
    let mut by: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut errors: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for r in &results {
        let o = match r.event.outcome {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        };
        *by.entry((r.event.action.as_str(), o)).or_default() += 1;
        if let Some(e) = &r.error {
            *errors
                .entry((r.event.action.as_str(), e.kind.as_str()))
                .or_default() += 1;
        }
    }
    for ((action, outcome), n) in &by {
        let v = sample(
            &scrape,
            "iaso_probe_results_total",
            &[
                ("environment", "lab"),
                ("action", action),
                ("outcome", outcome),
            ],
        );
        assert_eq!(v, Some(*n as f64), "{action} {outcome}");
    }
    for ((action, kind), n) in &errors {
        let v = sample(
            &scrape,
            "iaso_probe_result_errors_total",
            &[
                ("environment", "lab"),
                ("action", action),
                ("error_type", kind),
            ],
        );
        assert_eq!(v, Some(*n as f64), "{action} {kind}");
    }
    let total: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "iaso_probe_results_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => panic!("results_total is a counter: {s:?}"),
        })
        .sum();
    assert_eq!(total, results.len() as f64);
    assert_eq!(
        sample(&scrape, "iaso_probe_journal_results_written_total", &[]),
        Some(results.len() as f64)
    );
    // Jobs ended by result: the journal's job.end documents.
    let mut ended: BTreeMap<&str, u64> = BTreeMap::new();
    for r in results.iter().filter(|r| r.event.action == Action::JobEnd) {
        *ended
            .entry(r.iaso.job.as_ref().unwrap().result.unwrap().as_str())
            .or_default() += 1;
    }
    assert!(ended.get("failure").copied().unwrap_or(0) > 0, "{ended:?}");
    for (res, n) in &ended {
        let v = sample(
            &scrape,
            "iaso_probe_jobs_ended_total",
            &[("environment", "lab"), ("kind", "backup"), ("result", res)],
        );
        assert_eq!(v, Some(*n as f64), "{res}");
    }
    assert_eq!(
        sample(
            &scrape,
            "iaso_probe_jobs_launched_total",
            &[("environment", "lab"), ("kind", "backup")]
        ),
        Some(30.0)
    );
    // Every job ended: none tracked now. The last liveness result is the status.
    assert_eq!(
        sample(
            &scrape,
            "iaso_probe_jobs_tracked",
            &[("environment", "lab")]
        ),
        Some(0.0)
    );
    let last_liveness = results
        .iter()
        .rev()
        .find(|r| r.event.action == Action::Liveness)
        .unwrap();
    assert_eq!(
        sample(
            &scrape,
            "iaso_probe_check_up",
            &[("environment", "lab"), ("check", "liveness")]
        ),
        Some(f64::from(u8::from(
            last_liveness.event.outcome == Outcome::Success
        )))
    );
    // The polls' durations are a histogram with one observation per poll result.
    let polls = count(&results, Action::JobStatus);
    let hist = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "iaso_probe_request_duration_seconds"
                && s.labels.get("endpoint") == Some("job.status")
        })
        .expect("poll histogram");
    let prometheus_parse::Value::Histogram(buckets) = &hist.value else {
        panic!("{hist:?}")
    };
    let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
    assert_eq!(inf.count, polls as f64);
    assert!(
        sample(
            &scrape,
            "iaso_probe_limiter_requests",
            &[("environment", "lab")]
        )
        .unwrap()
            >= (30 + polls) as f64
    );
    let segments = std::fs::read_dir(d.path().join("journal"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("results-"))
        .count();
    assert_eq!(
        sample(&scrape, "iaso_probe_journal_segments", &[]),
        Some(segments as f64)
    );
    assert!(sample(&scrape, "iaso_probe_journal_bytes", &[]).unwrap() > 1000.0);
}

#[test]
fn healthz_readyz_and_metrics_are_served_and_readyz_flips_during_the_shutdown() {
    let d = tempfile::tempdir().unwrap();
    let sim = SIM.start();
    let mut cfg = one_env(d.path(), "lab", &sim.base_url(), "", &hosts("lab", 5));
    cfg.metrics.listen = Some("127.0.0.1:0".into());
    // Checks within a second of the start (their first run is spread over min(interval, 60 s)).
    let checks = &mut cfg.environments.get_mut("lab").unwrap().checks;
    checks.liveness.interval_secs = 1;
    checks.auth.interval_secs = 1;
    // Elasticsearch unreachable: the stop waits for shipping (up to the shutdown deadline),
    // a window in which the process is up but not ready.
    cfg.elasticsearch.urls = vec!["http://127.0.0.1:9".into()];
    cfg.elasticsearch.setup_on_start = false;
    cfg.elasticsearch.retry_initial_ms = 10;
    cfg.elasticsearch.retry_max_ms = 50;
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = std::thread::spawn(move || {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let opts = RunOptions {
            once: false,
            seed: Some(3),
            shutdown_deadline: Some(Duration::from_secs(3)),
            metrics_bound: Some(tx),
            ..Default::default()
        };
        actix::System::new().block_on(async move {
            actix_rt::spawn(async move {
                if let Ok(a) = rx.await {
                    let _ = bound_tx.send(a);
                }
            });
            iaso_probe::run(cfg, opts, async {
                let _ = stop_rx.await;
            })
            .await
            .expect("run succeeds")
        })
    });
    let addr = bound_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("listener bound");
    wait_until("/readyz 200", Duration::from_secs(20), || {
        get(addr, "/readyz").unwrap().0 == 200
    });
    assert_eq!(get(addr, "/readyz").unwrap().2, "ready\n");
    let (status, _, body) = get(addr, "/healthz").unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // Results arrive: the liveness check runs within the first minute; wait for any.
    let mut text = String::new();
    wait_until(
        "a result and a bulk request counted",
        Duration::from_secs(30),
        || {
            let (status, ctype, body) = get(addr, "/metrics").unwrap();
            assert_eq!(status, 200);
            assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
            text = body;
            text.contains("iaso_probe_results_total{")
                && text.contains("iaso_probe_bulk_requests{status=\"transport_error\"}")
        },
    );
    let scrape = parse(&text);
    assert!(sample(&scrape, "iaso_probe_process_start_time_seconds", &[]).unwrap() > 1.7e9);
    assert!(
        sample(&scrape, "iaso_probe_shipping_backlog_documents", &[]).unwrap() >= 1.0,
        "Elasticsearch is down: the results wait\n{text}"
    );
    stop_tx.send(()).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let mut saw_not_ready = false;
    while Instant::now() < until {
        match get(addr, "/readyz") {
            Ok((503, _, body)) => {
                assert_eq!(body, "not ready: shutting down\n");
                saw_not_ready = true;
                // Still alive meanwhile.
                assert_eq!(get(addr, "/healthz").unwrap().0, 200);
                break;
            }
            Ok((200, _, _)) => std::thread::sleep(Duration::from_millis(5)),
            Ok(other) => panic!("{other:?}"),
            Err(_) => break, // the listener is gone
        }
    }
    assert!(
        saw_not_ready,
        "/readyz never answered 503 during the shutdown"
    );
    let report = runner.join().unwrap();
    assert!(report.interrupted);
    // After the run, the listener is closed.
    assert!(get(addr, "/healthz").is_err());
}

#[test]
fn a_taken_metrics_address_stops_the_start_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cfg = one_env(d.path(), "lab", "http://127.0.0.1:9", "", "");
    cfg.metrics.listen = Some(addr.clone());
    let opts = RunOptions {
        once: true,
        ..Default::default()
    };
    let err = actix::System::new()
        .block_on(iaso_probe::run(cfg, opts, std::future::pending()))
        .expect_err("the address is taken");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("metrics.listen = \"{addr}\"")) && msg.contains("cannot listen"),
        "{msg}"
    );
    // Nothing was probed.
    assert!(journal(d.path()).is_empty());
}

use support::bin;

/// A configuration file with one in-process simulated environment (half its jobs fail).
fn file_config(dir: &Path, thresholds: &str, elasticsearch: &str) -> String {
    let hosts: String = (0..12)
        .map(|i| format!("[[environments.lab.hosts]]\nname = \"h{i:02}\"\nlevel = \"FULL\"\n"))
        .collect();
    format!(
        r#"
{head}{thresholds}
{elasticsearch}
[environments.lab]
rate_limit_per_sec = 1000
rate_limit_burst = 50
[environments.lab.jobs]
poll_interval_ms = 20
poll_jitter_ms = 5
max_duration_secs = 30
[environments.lab.credentials]
username = "probe"
password = "probe-secret"
[environments.lab.simulator]
seed = 4
credentials = [{{ username = "probe", password = "probe-secret" }}]
latency_ms = {{ min = 0, max = 2 }}
job_duration_ms = {{ min = 20, max = 80 }}
job_failure_ratio = 0.5
{hosts}"#,
        head = journal_and_log(dir),
    )
}

fn run_bin(dir: &Path, toml: &str) -> (i32, serde_json::Value, String) {
    std::fs::write(dir.join("probe.toml"), toml).unwrap();
    let out = bin(dir)
        .args([
            "--config",
            "probe.toml",
            "run",
            "--once",
            "--no-progress",
            "--summary-json",
            "summary.json",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("summary.json")).unwrap_or_else(|e| panic!("{e}\n{text}")),
    )
    .unwrap();
    validate_summary(&doc);
    (out.status.code().unwrap(), doc, text)
}

fn validate_summary(doc: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/summary.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
}

#[test]
fn thresholds_decide_the_exit_code_and_the_summary_json_follows_its_schema() {
    // Without thresholds, any failed job: 1.
    let d = tempfile::tempdir().unwrap();
    let (code, doc, text) = run_bin(d.path(), &file_config(d.path(), "", ""));
    assert_eq!(code, 1, "{text}");
    assert_eq!(doc["exit_code"], 1);
    assert_eq!(doc["thresholds_passed"], serde_json::Value::Null);
    let jobs = &doc["environments"]["lab"]["jobs"];
    assert_eq!(jobs["launched"], 12);
    let failed = jobs["failure"].as_u64().unwrap();
    assert!(failed > 0, "{doc:#}");
    assert_eq!(
        failed + jobs["success"].as_u64().unwrap() + jobs["warning"].as_u64().unwrap(),
        12
    );
    let liveness = &doc["environments"]["lab"]["actions"]["liveness"];
    assert!(liveness["latency_ms"]["p95"].as_f64().is_some(), "{doc:#}");
    let reasons = doc["environments"]["lab"]["actions"]["job.end"]["top_failure_reasons"]
        .as_array()
        .unwrap();
    assert!(!reasons.is_empty(), "{doc:#}");
    // The human summary: cancelled column, p95 per check, top reasons, shipping outcome.
    assert!(text.contains("cancelled"), "{text}");
    assert!(text.contains("lab: p95 latency (ms): liveness "), "{text}");
    assert!(text.contains("× job.end failed: job_failed"), "{text}");
    assert!(text.contains("elasticsearch: not configured"), "{text}");

    // Thresholds the run meets: 0 despite the failed jobs.
    let d = tempfile::tempdir().unwrap();
    let lenient = "[thresholds]\navailability_min = 0.9\njob_success_rate_min = 0.1\nresponse_time_p95_max_ms = 5000\n";
    let (code, doc, text) = run_bin(d.path(), &file_config(d.path(), lenient, ""));
    assert_eq!(code, 0, "{text}");
    assert_eq!(doc["thresholds_passed"], true);
    assert!(doc["thresholds"].as_array().unwrap().len() >= 3, "{doc:#}");
    assert!(text.contains("thresholds: "), "{text}");

    // A threshold the run misses: 99, named in the summary.
    let d = tempfile::tempdir().unwrap();
    let strict = "[thresholds]\navailability_min = 0.9\njob_success_rate_min = 0.95\n";
    let (code, doc, text) = run_bin(d.path(), &file_config(d.path(), strict, ""));
    assert_eq!(code, 99, "{text}");
    assert_eq!(doc["exit_code"], 99);
    assert_eq!(doc["thresholds_passed"], false);
    let failed: Vec<&serde_json::Value> = doc["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{doc:#}");
    assert_eq!(failed[0]["threshold"], "job_success_rate_min");
    assert!(text.contains("job_success_rate_min lab: "), "{text}");
    assert!(text.contains("FAILED"), "{text}");
}

#[test]
fn unshipped_results_fail_the_unshipped_threshold_when_elasticsearch_is_unreachable() {
    let d = tempfile::tempdir().unwrap();
    let es = "[elasticsearch]\nurls = [\"http://127.0.0.1:9\"]\nsetup_on_start = false\nonce_ship_deadline_secs = 1\nretry_initial_ms = 10\nretry_max_ms = 50\n";
    let (code, doc, text) = run_bin(
        d.path(),
        &file_config(d.path(), "[thresholds]\nunshipped_max = 0\n", es),
    );
    assert_eq!(code, 99, "{text}");
    let unshipped = doc["unshipped"].as_u64().unwrap();
    assert!(unshipped > 0, "{doc:#}");
    assert_eq!(doc["shipping"]["unshipped"], unshipped);
    assert!(text.contains("unshipped_max run: "), "{text}");
    // The operator was told once that shipping paused, with the backlog.
    assert_eq!(text.matches("shipping paused").count(), 1, "{text}");
}

#[test]
fn an_elasticsearch_outage_is_one_paused_and_one_resumed_line_with_the_backlog() {
    let emu = support::es_emulator::EsEmulator::start();
    emu.set_down(true);
    let d = tempfile::tempdir().unwrap();
    let es = format!(
        "[elasticsearch]\nurls = [\"{}\"]\nsetup_on_start = false\nonce_ship_deadline_secs = 30\nretry_initial_ms = 20\nretry_max_ms = 200\nbatch_max_wait_ms = 20\n",
        emu.url()
    );
    let toml = file_config(
        d.path(),
        "[thresholds]\nunshipped_max = 0\navailability_min = 0.5\n",
        &es,
    );
    std::fs::write(d.path().join("probe.toml"), toml).unwrap();
    let child = bin(d.path())
        .args(["--config", "probe.toml", "run", "--once", "--no-progress"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Down for the whole pass and a little more, then back.
    std::thread::sleep(Duration::from_secs(3));
    emu.set_down(false);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("0 still unshipped"), "{text}");
    let paused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("shipping paused"))
        .collect();
    let resumed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("shipping resumed"))
        .collect();
    assert_eq!((paused.len(), resumed.len()), (1, 1), "{text}");
    assert!(paused[0].contains("backlog="), "{}", paused[0]);
    let backlog: u64 = resumed[0]
        .split("backlog=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", resumed[0]));
    assert!(backlog > 0, "{}", resumed[0]);
    assert!(resumed[0].contains("paused_for_s="), "{}", resumed[0]);
    eprintln!("{}\n{}", paused[0], resumed[0]);
    // The per-retry lines stay out of the operator's way.
    assert!(!text.contains("bulk request failed, will retry"), "{text}");
}

#[test]
fn item_rejections_are_a_warn_at_most_once_per_interval() {
    let emu = support::es_emulator::EsEmulator::start();
    emu.set_item_429_ratio(0.5, 21);
    let d = tempfile::tempdir().unwrap();
    let es = format!(
        "[elasticsearch]\nurls = [\"{}\"]\nsetup_on_start = false\nonce_ship_deadline_secs = 30\nretry_initial_ms = 5\nretry_max_ms = 20\nbatch_max_docs = 10\nbatch_max_wait_ms = 20\n",
        emu.url()
    );
    let started = Instant::now();
    let (code, doc, text) = run_bin(
        d.path(),
        &file_config(d.path(), "[thresholds]\nunshipped_max = 0\n", &es),
    );
    let elapsed = started.elapsed().as_secs();
    assert_eq!(code, 0, "{text}");
    assert_eq!(doc["unshipped"], 0);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("Elasticsearch rejected documents"))
        .collect();
    assert!(!lines.is_empty(), "{text}");
    assert!(
        lines.len() as u64 <= elapsed / 10 + 1,
        "{} lines in {elapsed} s:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(lines[0].contains("rejected="), "{}", lines[0]);
    eprintln!("{}", lines[0]);
}
