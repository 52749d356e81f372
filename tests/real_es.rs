//! Shipping, setup and faults against a real Elasticsearch (`tests/elasticsearch/start.sh`):
//! one shared node for the tests that need nothing special, a node of its own for each fault
//! that needs special settings or kills the node. Each test uses its own environment name, so
//! its own data streams (`synthetics-iaso.checks-<env>`, `logs-iaso.jobs-<env>`, matched by
//! `*-iaso.*-<env>`). The journal is the truth:
//! every journal document's `event.id` must be in Elasticsearch exactly once.
//!
//! Runs when `IASO_PROBE_TEST_ES_URL` names a cluster or `java` is available; otherwise each
//! test prints one line saying it did not run, and fails under `IASO_PROBE_REQUIRE_REAL_ES=1`.

#[path = "static/files.rs"]
mod files;
mod harness;
mod real_node;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use iaso_probe::config::Config;
use iaso_probe::sink::shipper::{Shipper, ShipperCounters};
use real_node::{not_run, Es, Node};
use serde_json::{json, Value};

const SIM: Sim = SIM_MIXED;

/// Prints a figure for the report on the real stderr (not captured).
fn figure(test: &str, text: &str) {
    let _ = writeln!(std::io::stderr(), "real-es {test}: {text}");
}

/// The shared node's URL, or `None` after saying why the test did not run.
fn shared(test: &str) -> Option<String> {
    match real_node::shared() {
        Ok(url) => Some(url.to_owned()),
        Err(why) => {
            not_run(test, &why);
            None
        }
    }
}

/// A node of its own, or `None` after saying why the test did not run.
fn own(test: &str, nodes: usize, settings: &[&str]) -> Option<Node> {
    match real_node::own(nodes, settings) {
        Ok(n) => {
            figure(
                test,
                &format!(
                    "{nodes} node(s) with {settings:?} started in {:.1}s",
                    n.start_time.as_secs_f64()
                ),
            );
            Some(n)
        }
        Err(why) => {
            not_run(test, &why);
            None
        }
    }
}

/// Writes `dir/test.toml` for environment `env` (portal `sim_url`, `hosts_n` hosts) shipping to
/// `urls` (none: no Elasticsearch), loads it through the real loader, and returns it.
fn write_config(
    dir: &Path,
    env: &str,
    sim_url: &str,
    hosts_n: usize,
    urls: &[String],
    es_extra: &str,
) -> Config {
    let es = if urls.is_empty() {
        String::new()
    } else {
        format!(
            "[elasticsearch]\nurls = {urls:?}\nretry_initial_ms = 20\nretry_max_ms = 500\nbatch_max_wait_ms = 20\nonce_ship_deadline_secs = 240\n{es_extra}\n"
        )
    };
    let text = format!(
        r#"
{head}[environments.{env}]
base_url = "{sim_url}"
rate_limit_per_sec = 1000
rate_limit_burst = 50
[environments.{env}.credentials]
username = "probe"
password = "probe-secret"
[environments.{env}.jobs]
poll_interval_ms = 50
poll_jitter_ms = 10
max_duration_secs = 60
{hosts}
{es}"#,
        head = journal_and_log(dir),
        hosts = hosts(env, hosts_n),
    );
    config(dir, &text)
}

fn bin(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_iaso-probe"));
    c.current_dir(dir)
        .env_remove("ELASTICSEARCH_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("IASO_PROBE_") {
            c.env_remove(k);
        }
    }
    c.args(["--config", "test.toml"]);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The journal's documents: `event.id` → data stream it belongs in.
fn journal_docs(dir: &Path) -> BTreeMap<String, String> {
    iaso_probe::sink::journal::read_all(&dir.join("journal"))
        .unwrap()
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let ds = &v["data_stream"];
            assert_eq!(ds["dataset"], v["event"]["dataset"], "{v}");
            assert_eq!(ds["namespace"], v["service"]["environment"], "{v}");
            let stream = format!(
                "{}-{}-{}",
                ds["type"].as_str().unwrap(),
                ds["dataset"].as_str().unwrap(),
                ds["namespace"].as_str().unwrap()
            );
            (v["event"]["id"].as_str().unwrap().to_owned(), stream)
        })
        .collect()
}

/// The data streams of environment `env`, as one index pattern.
fn streams(env: &str) -> String {
    format!("*-iaso.*-{env}")
}

/// Every journal document except `except` is in Elasticsearch exactly once (by `_id`, through
/// `_search`), nothing else is, and `_count` of each data stream matches. Returns the count.
fn assert_exactly_once(es: &Es, env: &str, dir: &Path, except: &BTreeSet<String>) -> usize {
    let docs: BTreeMap<String, String> = journal_docs(dir)
        .into_iter()
        .filter(|(id, stream)| !except.contains(id) && stream.ends_with(&format!("-{env}")))
        .collect();
    let stored = es.ids(&streams(env));
    let unique: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(unique.len(), stored.len(), "duplicates in Elasticsearch");
    let expected: BTreeSet<String> = docs.keys().cloned().collect();
    let lost: Vec<_> = expected.difference(&unique).collect();
    let extra: Vec<_> = unique.difference(&expected).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "{} lost, {} not in the journal: {lost:?} {extra:?}",
        lost.len(),
        extra.len()
    );
    for stream in docs.values().collect::<BTreeSet<_>>() {
        let want = docs.values().filter(|s| *s == stream).count() as u64;
        assert_eq!(es.count(stream), want, "_count of {stream}");
    }
    docs.len()
}

/// A journal of `hosts_n` hosts written by `run --once` without Elasticsearch.
fn journal_without_es(dir: &Path, env: &str, hosts_n: usize) -> (Config, usize) {
    let sim = SIM.start();
    let cfg = write_config(dir, env, &sim.base_url(), hosts_n, &[], "");
    run_once(cfg.clone());
    let n = journal_docs(dir).len();
    assert!(n > hosts_n, "journal written: {n} documents");
    (cfg, n)
}

/// An in-process shipper over `cfg`'s journal to `urls`, setup included.
fn shipper(cfg: &Config, urls: &[String], tune: impl Fn(&mut Config)) -> Shipper {
    let mut cfg = cfg.clone();
    cfg.elasticsearch.urls = urls.to_vec();
    cfg.elasticsearch.retry_initial_ms = 20;
    cfg.elasticsearch.retry_max_ms = 500;
    tune(&mut cfg);
    let (client, _) = iaso_probe::sink::es_client::build(&cfg.elasticsearch)
        .unwrap()
        .unwrap();
    let mut s = Shipper::new(client, cfg.elasticsearch.clone(), cfg.journal.clone()).unwrap();
    s.require_setup(iaso_probe::setup::elasticsearch_plan_with(
        &iaso_probe::setup::PlanOptions::from_config(&cfg.elasticsearch),
    ));
    s
}

fn ship_all(mut s: Shipper) -> ShipperCounters {
    actix::System::new().block_on(async {
        tokio::time::timeout(Duration::from_secs(240), s.ship_available())
            .await
            .expect("shipping finished in time")
            .expect("journal readable");
    });
    let c = s.counters().lock().unwrap().clone();
    c
}

/// Waits (bounded) until `f` holds, polling a real server.
fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Parses `shipped: S stored, D already there, X dead-lettered; U results still unshipped`.
fn ship_line(out: &str) -> (u64, u64, u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with("shipped: "))
        .unwrap_or_else(|| panic!("no shipped line in {out}"));
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (n[0], n[1], n[2], n[3])
}

/// Whether the target cluster has ILM, asked the way setup asks.
fn has_ilm(es: &Es) -> bool {
    let (status, body) = es.call("GET", "/_ilm/status", None);
    matches!(
        iaso_probe::setup::elasticsearch::classify_ilm_status(status, &body.to_string()),
        Ok(iaso_probe::setup::Retention::Ilm)
    )
}

// ------------------------------------------------------------------------------- shared node

#[test]
fn setup_twice_then_run_once_stores_every_journal_document_exactly_once_in_our_data_streams() {
    const T: &str = "setup";
    let Some(url) = shared(T) else { return };
    let es = Es::new(&url);
    let sim = SIM.start();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        T,
        &sim.base_url(),
        30,
        std::slice::from_ref(&url),
        "",
    );
    let ilm = has_ilm(&es);
    for round in 1..=2 {
        let o = bin(dir.path()).arg("setup").output().unwrap();
        let out = text(&o);
        assert_eq!(o.status.code(), Some(0), "setup round {round}: {out}");
        if ilm {
            assert!(out.contains("the cluster has ILM"), "{out}");
        } else {
            // The real node answers 405 here ("Incorrect HTTP method … allowed: [POST]") once
            // it has indices (another route's pattern matches the path), 400 before.
            assert!(
                out.contains("the cluster has no ILM (GET /_ilm/status answered 40"),
                "{out}"
            );
            assert!(
                out.contains("so data streams use the data stream lifecycle, data_retention 30d"),
                "{out}"
            );
        }
    }
    let o = bin(dir.path()).arg("setup").output().unwrap();
    let out = text(&o);
    for said in [
        "created or updated: _ilm/policy/iaso-probe, ",
        "_index_template/synthetics-iaso.checks, _index_template/logs-iaso.jobs",
        "results go to the data streams synthetics-iaso.checks-<namespace> and logs-iaso.jobs-<namespace>",
        "the legacy templates iaso-checks and iaso-jobs are kept",
    ] {
        let said = if ilm {
            said.to_owned()
        } else {
            said.replace("_ilm/policy/iaso-probe, ", "")
        };
        assert!(out.contains(&said), "setup says {said:?}: {out}");
    }
    let xpack = es.call("GET", "/_xpack", None).0 == 200;
    if !xpack {
        assert!(
            out.contains("field types this cluster lacks are mapped with stand-ins: wildcard as keyword, constant_keyword as keyword"),
            "{out}"
        );
    }
    // The test node loads no mapper-extras module: setup learns it from the refusal.
    let message_type = if out.contains("match_only_text as text") {
        "text"
    } else {
        "match_only_text"
    };
    figure(T, &format!("setup said: {out}"));
    for name in [
        "synthetics-iaso.checks",
        "logs-iaso.jobs",
        "iaso-checks",
        "iaso-jobs",
    ] {
        let t = es.ok("GET", &format!("/_index_template/{name}"), None);
        let t = &t["index_templates"][0]["index_template"];
        assert_eq!(t["composed_of"], json!(["iaso-mappings", "iaso-settings"]));
        if !ilm {
            assert_eq!(t["template"]["lifecycle"]["data_retention"], "30d", "{t}");
        }
    }

    let o = bin(dir.path())
        .args(["run", "--once", "--no-progress"])
        .output()
        .unwrap();
    let out = text(&o);
    assert!(matches!(o.status.code(), Some(0 | 1)), "run --once: {out}");
    let n = assert_exactly_once(&es, T, dir.path(), &BTreeSet::new());

    for stream in [
        format!("synthetics-iaso.checks-{T}"),
        format!("logs-iaso.jobs-{T}"),
    ] {
        // A data stream (not an index) created from our template, with our field types.
        let (status, ds) = es.call("GET", &format!("/_data_stream/{stream}"), None);
        if status == 200 {
            let ds = &ds["data_streams"][0];
            assert_eq!(
                ds["template"],
                if stream.starts_with("synthetics-") {
                    "synthetics-iaso.checks"
                } else {
                    "logs-iaso.jobs"
                }
            );
        } else {
            // The test node has no data-streams module (its REST API): resolve it instead.
            let r = es.ok("GET", &format!("/_resolve/index/{stream}"), None);
            assert_eq!(r["data_streams"][0]["name"], stream.as_str(), "{r}");
            assert_eq!(r["data_streams"][0]["timestamp_field"], "@timestamp");
        }
        let m = es.ok("GET", &format!("/{stream}/_mapping"), None);
        let (backing, m) = m.as_object().unwrap().iter().next().unwrap();
        assert!(backing.starts_with(&format!(".ds-{stream}-")), "{backing}");
        let m = &m["mappings"];
        assert_eq!(m["dynamic"], "strict");
        assert_eq!(
            m.pointer("/properties/@timestamp/type"),
            Some(&json!("date"))
        );
        assert_eq!(
            m.pointer("/properties/event/properties/duration/type"),
            Some(&json!("long"))
        );
        assert_eq!(
            m.pointer("/properties/error/properties/message/type"),
            Some(&json!(message_type)),
            "ECS type, or its stand-in"
        );
        assert_eq!(
            m.pointer("/properties/error/properties/message/fields/keyword/type"),
            Some(&json!("keyword"))
        );
        let (full, ds_type) = if xpack {
            ("wildcard", "constant_keyword")
        } else {
            ("keyword", "keyword")
        };
        assert_eq!(
            m.pointer("/properties/url/properties/full/type"),
            Some(&json!(full))
        );
        assert_eq!(
            m.pointer("/properties/data_stream/properties/namespace/type"),
            Some(&json!(ds_type))
        );
        assert_eq!(
            m.pointer("/properties/monitor/properties/timespan/type"),
            Some(&json!("date_range"))
        );
        assert_eq!(
            m.pointer("/properties/iaso/properties/job/properties/percent/type"),
            Some(&json!("float"))
        );
    }
    // `dynamic: strict`: a field the templates do not map is refused, by Elasticsearch itself.
    let first =
        iaso_probe::sink::journal::read_all(&dir.path().join("journal")).unwrap()[0].clone();
    let mut unknown: Value = serde_json::from_str(&first).unwrap();
    unknown["event"]["id"] = json!("setup-unknown-field");
    unknown["event"]["severity"] = json!(3);
    let stream = format!("synthetics-iaso.checks-{T}");
    let (status, answer) = es.call(
        "PUT",
        &format!("/{stream}/_create/setup-unknown-field"),
        Some(&unknown),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["type"], "strict_dynamic_mapping_exception",
        "{answer}"
    );
    let reason = answer["error"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.ends_with(
            "mapping set to strict, dynamic introduction of [severity] within [event] is not allowed"
        ),
        "{answer}"
    );
    figure(T, &format!("{n} documents, each stored once"));
}

#[test]
fn a_prober_killed_mid_shipping_and_restarted_loses_and_duplicates_nothing() {
    const T: &str = "crash";
    let Some(url) = shared(T) else { return };
    let es = Es::new(&url);
    let dir = tempfile::tempdir().unwrap();
    let (_, lines) = journal_without_es(dir.path(), T, 120);
    // Small batches, one at a time: shipping takes long enough to be killed in the middle.
    let sim = SIM.start();
    write_config(
        dir.path(),
        T,
        &sim.base_url(),
        120,
        std::slice::from_ref(&url),
        "batch_max_docs = 3\nmax_in_flight = 1\n",
    );
    let stream = streams(T);
    let mut child = bin(dir.path())
        .arg("ship")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("first documents stored", Duration::from_secs(120), || {
        es.try_call("GET", &format!("/{stream}/_count"), None)
            .is_ok_and(|(s, v)| s == 200 && v["count"].as_u64().unwrap_or(0) > 0)
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The count settles once a bulk in flight at the kill is applied (or not).
    let mut stored = es.count(&stream);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let again = es.count(&stream);
        if again == stored {
            break;
        }
        stored = again;
    }
    let unshipped = iaso_probe::sink::shipper::unshipped(&dir.path().join("journal")).unwrap();
    let checkpointed = lines as u64 - unshipped;
    assert!(
        stored > 0 && stored < lines as u64,
        "killed mid-way: {stored} of {lines} stored"
    );
    assert!(
        stored >= checkpointed,
        "{stored} stored, {checkpointed} checkpointed"
    );

    let o = bin(dir.path()).arg("ship").output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let (new, dup, dead, left) = ship_line(&out);
    assert_eq!((dead, left), (0, 0), "{out}");
    assert_eq!(
        new + dup,
        unshipped,
        "every line after the checkpoint sent once: {out}"
    );
    assert_eq!(
        dup,
        stored - checkpointed,
        "the 409s are exactly the documents stored after the last checkpoint"
    );
    assert_exactly_once(&es, T, dir.path(), &BTreeSet::new());

    // Replaying the whole journal (checkpoint lost): every document answers 409, none is
    // stored twice.
    std::fs::remove_file(dir.path().join("journal/shipping.checkpoint.json")).unwrap();
    let o = bin(dir.path()).arg("ship").output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(ship_line(&out), (0, lines as u64, 0, 0), "{out}");
    assert_exactly_once(&es, T, dir.path(), &BTreeSet::new());
    figure(
        T,
        &format!("{lines} documents; killed with {stored} stored ({checkpointed} checkpointed); restart: {new} stored, {dup} 409s; full replay: {lines} 409s, 0 duplicates"),
    );
}

#[test]
fn a_mapping_conflict_is_dead_lettered_with_elasticsearchs_reason_and_the_rest_delivered() {
    const T: &str = "conflict";
    let Some(url) = shared(T) else { return };
    let es = Es::new(&url);
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = journal_without_es(dir.path(), T, 8);
    // A document whose event.duration (long) is a string, as a test writes it.
    let first =
        iaso_probe::sink::journal::read_all(&dir.path().join("journal")).unwrap()[0].clone();
    let mut bad: Value = serde_json::from_str(&first).unwrap();
    bad["event"]["id"] = json!("conflict-wrong-type");
    bad["event"]["duration"] = json!("slow");
    let mut journal =
        iaso_probe::sink::journal::Journal::open(&dir.path().join("journal"), 1 << 30).unwrap();
    journal.append(bad.to_string().as_bytes()).unwrap();
    journal.flush().unwrap();
    drop(journal);

    let c = ship_all(shipper(&cfg, &[url], |_| {}));
    assert_eq!(c.dead_lettered, 1, "{c:?}");
    let dead = dead_letters(&dir.path().join("journal/dead-letter.ndjson"));
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d["_id"], "conflict-wrong-type");
    assert_eq!(d["error"]["status"], 400);
    assert_eq!(d["error"]["type"], "document_parsing_exception", "{d}");
    let reason = d["error"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("failed to parse field [event.duration] of type [long] in document with id 'conflict-wrong-type'"),
        "Elasticsearch's own reason: {reason}"
    );
    assert_eq!(d["document"]["event"]["duration"], "slow");
    let except: BTreeSet<String> = ["conflict-wrong-type".to_owned()].into();
    let n = assert_exactly_once(&es, T, dir.path(), &except);
    figure(T, &format!("{n} delivered, 1 dead-lettered: {reason}"));
}

/// Elasticsearch's own refusal of a template (the emulator only replays this shape, in
/// `tests/setup_flow.rs`): setup stops there and names the type and reason.
#[test]
fn a_real_template_refusal_stops_setup_naming_elasticsearchs_type_and_reason() {
    const T: &str = "refusal";
    let Some(url) = shared(T) else { return };
    let es = Es::new(&url);
    let client = elasticsearch::Elasticsearch::new(
        elasticsearch::http::transport::Transport::single_node(&url).unwrap(),
    );
    // An index template whose component template does not exist; names of this test only.
    let plan = vec![
        iaso_probe::setup::SetupRequest {
            method: "PUT",
            path: "/_index_template/iaso-refusal".into(),
            body: json!({
                "index_patterns": ["iaso-refusal-*"],
                "composed_of": ["iaso-refusal-missing"],
                "priority": 7,
            }),
        },
        iaso_probe::setup::SetupRequest {
            method: "PUT",
            path: "/_index_template/iaso-refusal-never-sent".into(),
            body: json!({"index_patterns": ["iaso-refusal-never-*"], "priority": 7}),
        },
    ];
    let err = actix::System::new()
        .block_on(iaso_probe::setup::install_elasticsearch(&client, &plan))
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(
            "elasticsearch answered 400 to PUT /_index_template/iaso-refusal: invalid_index_template_exception: "
        ),
        "{message}"
    );
    assert!(message.contains("iaso-refusal-missing"), "{message}");
    for name in ["iaso-refusal", "iaso-refusal-never-sent"] {
        let (status, _) = es.call("GET", &format!("/_index_template/{name}"), None);
        assert_eq!(status, 404, "{name} was not installed");
    }
    figure(T, &message);
}

#[test]
fn every_field_kibana_uses_is_in_field_caps_with_the_type_its_panel_needs() {
    const T: &str = "fields";
    let Some(url) = shared(T) else { return };
    let es = Es::new(&url);
    let sim = SIM.start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = write_config(
        dir.path(),
        T,
        &sim.base_url(),
        12,
        std::slice::from_ref(&url),
        "",
    );
    cfg.environments
        .get_mut(T)
        .unwrap()
        .checks
        .response_time_limit_ms = 1;
    let report = run_once(cfg);
    assert_eq!(report.shipping.unwrap().unshipped, 0);
    assert_exactly_once(&es, T, dir.path(), &BTreeSet::new());

    let problems = kibana_fields::check(
        &es,
        &format!("synthetics-iaso.checks-{T}"),
        &format!("logs-iaso.jobs-{T}"),
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// A seeded run over three environments, liveness down in one of them: the aggregations the
/// panels and the down rule make, run with `_search` on what was shipped, give what the
/// journal predicts (availability per monitor 0 % for that liveness and 100 % for the others,
/// per check run, latest status per job flow, down since, the rule's hits).
#[test]
fn panel_and_rule_queries_on_a_seeded_run_return_what_the_journal_predicts() {
    const T: &str = "panels";
    let Some(url) = shared(T) else { return };
    let es = Es::new(&url);
    let dir = tempfile::tempdir().unwrap();
    let healthy = "seed = 11\nlatency_ms = { min = 0, max = 1 }\njob_duration_ms = { min = 30, max = 120 }\njob_failure_ratio = 0.3\nunhealthy_ratio = 0.0\n";
    let envs = ["panels_a", "panels_b", "panels_c"];
    let sims: Vec<_> = envs
        .iter()
        .map(|e| {
            simulator(&if *e == "panels_a" {
                format!("{healthy}[endpoint_faults.alive]\nerror_5xx_ratio = 1.0\n")
            } else {
                healthy.to_owned()
            })
        })
        .collect();
    let mut text = format!(
        "[journal]\ndir = \"{}\"\nflush_interval_ms = 20\n[log]\ndir = \"\"\n[elasticsearch]\nurls = [\"{url}\"]\nretry_initial_ms = 20\nbatch_max_wait_ms = 20\nonce_ship_deadline_secs = 240\nnumber_of_replicas = 0\n",
        dir.path().join("journal").display()
    );
    for (e, sim) in envs.iter().zip(&sims) {
        text.push_str(&format!(
            "[environments.{e}]\nbase_url = \"{}\"\nrate_limit_per_sec = 1000\nrate_limit_burst = 50\n[environments.{e}.credentials]\nusername = \"probe\"\npassword = \"probe-secret\"\n[environments.{e}.checks]\nresponse_time_paths = [\"/api/v1/health\"]\nresponse_time_limit_ms = 5000\n[environments.{e}.jobs]\npoll_interval_ms = 50\npoll_jitter_ms = 10\nmax_duration_secs = 60\n{}",
            sim.base_url(),
            hosts(e, 4)
        ));
    }
    let cfg = config(dir.path(), &text);
    let report = run_once(cfg);
    assert_eq!(report.shipping.unwrap().unshipped, 0);
    for e in envs {
        assert_exactly_once(&es, e, dir.path(), &BTreeSet::new());
    }
    let journal: Vec<Value> = iaso_probe::sink::journal::read_all(&dir.path().join("journal"))
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let checks = "synthetics-iaso.checks-panels_*";
    let jobs = "logs-iaso.jobs-panels_*";
    let search = |index: &str, body: Value| {
        let answer = es.ok("POST", &format!("/{index}/_search"), Some(&body));
        figure(
            T,
            &format!(
                "POST /{index}/_search {body}\n  → {}",
                answer["aggregations"]
            ),
        );
        answer
    };
    let docs_of = |dataset: &'static str| {
        journal
            .iter()
            .filter(move |d| d["event"]["dataset"] == dataset)
    };

    // Availability per monitor (the panel: terms monitor.id, average summary.up, final
    // attempts only).
    let answer = search(
        checks,
        json!({"size": 0, "query": {"term": {"summary.final_attempt": true}},
               "aggs": {"monitor": {"terms": {"field": "monitor.id", "size": 100},
                                    "aggs": {"availability": {"avg": {"field": "summary.up"}}}}}}),
    );
    let got: BTreeMap<String, f64> = answer["aggregations"]["monitor"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["key"].as_str().unwrap().to_owned(),
                b["availability"]["value"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut predicted: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for d in docs_of("iaso.checks").filter(|d| d["summary"]["final_attempt"] == true) {
        let e = predicted
            .entry(d["monitor"]["id"].as_str().unwrap().to_owned())
            .or_default();
        e.0 += d["summary"]["up"].as_f64().unwrap();
        e.1 += 1.0;
    }
    let predicted: BTreeMap<String, f64> = predicted
        .into_iter()
        .map(|(k, (up, n))| (k, up / n))
        .collect();
    assert_eq!(got, predicted);
    assert_eq!(got["panels_a-liveness"], 0.0, "{got:?}");
    assert_eq!(got["panels_b-liveness"], 1.0);
    assert_eq!(got["panels_c-liveness"], 1.0);
    for (monitor, a) in &got {
        if monitor != "panels_a-liveness" {
            assert_eq!(
                *a, 1.0,
                "{monitor}: only liveness of panels_a is down: {got:?}"
            );
        }
    }
    // What the old panel showed: summary.up averaged over every document (a health pass
    // weighing one per component).
    let all: Vec<f64> = docs_of("iaso.checks")
        .map(|d| d["summary"]["up"].as_f64().unwrap())
        .collect();
    let per_doc = all.iter().sum::<f64>() / all.len() as f64;

    // Availability per check run (the formula: 1 - runs with a down document / runs).
    let answer = search(
        checks,
        json!({"size": 0, "aggs": {"check": {"terms": {"field": "event.action"},
            "aggs": {"runs": {"cardinality": {"field": "monitor.check_group"}},
                     "down": {"filter": {"term": {"monitor.status": "down"}},
                              "aggs": {"runs": {"cardinality": {"field": "monitor.check_group"}}}}}}}}),
    );
    for b in answer["aggregations"]["check"]["buckets"]
        .as_array()
        .unwrap()
    {
        let action = b["key"].as_str().unwrap();
        let runs = b["runs"]["value"].as_f64().unwrap();
        let down = b["down"]["runs"]["value"].as_f64().unwrap();
        let groups: BTreeSet<&str> = docs_of("iaso.checks")
            .filter(|d| d["event"]["action"] == action)
            .map(|d| d["monitor"]["check_group"].as_str().unwrap())
            .collect();
        let down_groups: BTreeSet<&str> = docs_of("iaso.checks")
            .filter(|d| d["event"]["action"] == action && d["monitor"]["status"] == "down")
            .map(|d| d["monitor"]["check_group"].as_str().unwrap())
            .collect();
        assert_eq!(
            (runs, down),
            (groups.len() as f64, down_groups.len() as f64),
            "{action}"
        );
        let availability = 1.0 - down / runs;
        if action == "liveness" {
            assert!((availability - 2.0 / 3.0).abs() < 1e-9, "{availability}");
        } else {
            assert_eq!(availability, 1.0, "{action}");
        }
        if action == "health" {
            assert_eq!(
                runs, 3.0,
                "one health run per environment, whatever its components"
            );
            assert!(
                docs_of("iaso.checks")
                    .filter(|d| d["event"]["action"] == "health")
                    .count()
                    > 3,
                "several documents per health run"
            );
        }
    }

    // Current status per monitor, down since: the latest document of each monitor.
    let answer = search(
        checks,
        json!({"size": 0, "aggs": {"monitor": {"terms": {"field": "monitor.id", "size": 100},
            "aggs": {"latest": {"top_hits": {"size": 1, "sort": [{"@timestamp": "desc"}, {"event.sequence": "desc"}],
                                             "_source": ["state", "monitor.status"]}}}}}}),
    );
    for b in answer["aggregations"]["monitor"]["buckets"]
        .as_array()
        .unwrap()
    {
        let monitor = b["key"].as_str().unwrap();
        let state = &b["latest"]["hits"]["hits"][0]["_source"]["state"];
        let own: Vec<&Value> = docs_of("iaso.checks")
            .filter(|d| d["monitor"]["id"] == monitor)
            .collect();
        let last = own.last().unwrap();
        assert_eq!(state, &last["state"], "{monitor}");
        if monitor == "panels_a-liveness" {
            assert_eq!(state["status"], "down");
            let first_down = own
                .iter()
                .find(|d| d["monitor"]["status"] == "down")
                .unwrap();
            assert_eq!(
                state["started_at"], first_down["@timestamp"],
                "down since its first down check"
            );
        } else {
            assert_eq!(state["status"], "up", "{monitor}");
        }
    }

    // Latest status per job: one row per job flow (trace.id); job ids the portals reuse
    // (J1… in each environment) would merge rows.
    let answer = search(
        jobs,
        json!({"size": 0, "aggs": {
            "flows": {"terms": {"field": "trace.id", "size": 1000},
                      "aggs": {"latest": {"top_hits": {"size": 1, "sort": [{"@timestamp": "desc"}, {"event.sequence": "desc"}],
                                                        "_source": ["iaso.job.status", "iaso.job.id", "service.environment"]}}}},
            "job_ids": {"cardinality": {"field": "iaso.job.id"}}}}),
    );
    let flows = answer["aggregations"]["flows"]["buckets"]
        .as_array()
        .unwrap();
    let traces: BTreeSet<&str> = docs_of("iaso.jobs")
        .filter_map(|d| d["trace"]["id"].as_str())
        .collect();
    assert_eq!(flows.len(), traces.len());
    let job_ids: BTreeSet<&str> = docs_of("iaso.jobs")
        .filter_map(|d| d["iaso"]["job"]["id"].as_str())
        .collect();
    assert!(
        job_ids.len() < traces.len(),
        "the portals reuse job ids: {} ids for {} jobs",
        job_ids.len(),
        traces.len()
    );
    for b in flows {
        let trace = b["key"].as_str().unwrap();
        let latest = &b["latest"]["hits"]["hits"][0]["_source"];
        let last = docs_of("iaso.jobs")
            .rev()
            .find(|d| d["trace"]["id"] == trace && d["iaso"]["job"]["status"].is_string())
            .unwrap();
        assert_eq!(
            latest["iaso"]["job"]["status"], last["iaso"]["job"]["status"],
            "{trace}"
        );
        assert_eq!(
            latest["service"]["environment"],
            last["service"]["environment"]
        );
    }

    // The "monitor down" rule's query (with N = 1: a one-pass run has one check per monitor),
    // over the rule's window, grouped like the rule (termField monitor.id).
    let alerts = iaso_probe::config::AlertsConfig {
        down_consecutive_checks: 1,
        ..Default::default()
    };
    let rule = &iaso_probe::setup::alert_rules(&alerts)[0];
    let mut query: Value =
        serde_json::from_str(rule.create["params"]["esQuery"].as_str().unwrap()).unwrap();
    query["query"]["bool"]["filter"]
        .as_array_mut()
        .unwrap()
        .push(json!({"range": {"@timestamp": {"gte": "now-5m"}}}));
    query["size"] = json!(0);
    query["aggs"] = json!({"monitor": {"terms": {"field": "monitor.id", "size": 100}}});
    let answer = search(checks, query);
    let firing: Vec<&str> = answer["aggregations"]["monitor"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["key"].as_str().unwrap())
        .collect();
    assert_eq!(firing, ["panels_a-liveness"]);
    figure(
        T,
        &format!(
            "availability per monitor {got:?}; averaged over documents (the old panel) {per_doc:.3}; {} job flows, {} distinct job ids",
            traces.len(),
            job_ids.len()
        ),
    );
}

// ------------------------------------------------------------------------ nodes of their own

#[test]
fn elasticsearch_killed_mid_run_and_restarted_30s_later_loses_and_duplicates_nothing() {
    const T: &str = "restart";
    let Some(mut node) = own(T, 1, &[]) else {
        return;
    };
    let es = Es::new(&node.url());
    // Jobs that end 15–50 s after their start: the run is still journaling job ends while
    // Elasticsearch is down (it is killed at the first stored document, for 30 s).
    let sim = SIM.jobs(15000, 50000).start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        T,
        &sim.base_url(),
        40,
        &[node.url()],
        "batch_max_docs = 5\n",
    );
    let journal_dir = dir.path().join("journal");
    let lines_now = || journal_docs(dir.path()).len();
    let controller = std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            wait_for("first documents stored", Duration::from_secs(120), || {
                es.try_call("GET", &format!("/{}/_count", streams(T)), None)
                    .is_ok_and(|(s, v)| s == 200 && v["count"].as_u64().unwrap_or(0) > 0)
            });
            node.kill(1);
            let at_kill = lines_now();
            std::thread::sleep(Duration::from_secs(30));
            let during = lines_now() - at_kill;
            node.start_again().expect("the node restarts on its data");
            let restarted = Instant::now();
            wait_for("caught up", Duration::from_secs(240), || {
                iaso_probe::sink::shipper::unshipped(&journal_dir).unwrap_or(1) == 0
            });
            (at_kill, during, restarted.elapsed())
        });
        let report = run_once(cfg);
        (report, handle.join().unwrap())
    });
    let (report, (at_kill, during, catch_up)) = controller;
    let s = report.shipping.unwrap();
    assert_eq!(s.unshipped, 0, "{:?}", s.counters);
    assert!(
        during > 0,
        "the prober kept journaling while Elasticsearch was down"
    );
    let n = assert_exactly_once(&es, T, dir.path(), &BTreeSet::new());
    figure(
        T,
        &format!("{n} documents; {at_kill} journaled at the kill, {during} more during the 30 s outage; node restart {:.1}s; caught up {:.1}s after the restart; {} retries, {} 409s",
            node.start_time.as_secs_f64(), catch_up.as_secs_f64(), s.counters.retried, s.counters.duplicates),
    );
}

#[test]
fn real_429s_from_a_tiny_write_pool_are_retried_until_every_document_is_stored_once() {
    const T: &str = "reject";
    let Some(node) = own(
        T,
        1,
        &["thread_pool.write.size=1", "thread_pool.write.queue_size=1"],
    ) else {
        return;
    };
    let es = Es::new(&node.url());
    let dir = tempfile::tempdir().unwrap();
    let (cfg, lines) = journal_without_es(dir.path(), T, 150);
    let c = ship_all(shipper(&cfg, &[node.url()], |c| {
        c.elasticsearch.batch_max_docs = 4;
        c.elasticsearch.max_in_flight = 16;
        c.elasticsearch.retry_initial_ms = 5;
        c.elasticsearch.retry_max_ms = 100;
    }));
    let rejected = es.write_rejections();
    assert!(rejected > 0, "the write pool rejected something: {c:?}");
    assert!(c.retried > 0, "{c:?}");
    assert_eq!(c.dead_lettered, 0);
    assert_eq!(c.stored + c.duplicates, lines as u64, "{c:?}");
    assert_exactly_once(&es, T, dir.path(), &BTreeSet::new());
    figure(
        T,
        &format!("{lines} documents; {rejected} write-pool rejections (es_rejected_execution_exception); {} retries; {} requests; {} 409s", c.retried, c.requests, c.duplicates),
    );
}

#[test]
fn a_real_413_splits_the_batch_until_everything_fits() {
    const T: &str = "toolarge";
    // Large enough for the biggest setup request (the mappings), smaller than a batch.
    let Some(node) = own(T, 1, &["http.max_content_length=8kb"]) else {
        return;
    };
    let es = Es::new(&node.url());
    let dir = tempfile::tempdir().unwrap();
    let (cfg, lines) = journal_without_es(dir.path(), T, 20);
    let c = ship_all(shipper(&cfg, &[node.url()], |c| {
        c.elasticsearch.batch_max_docs = 100;
        c.elasticsearch.max_in_flight = 2;
    }));
    assert!(c.splits > 0, "{c:?}");
    assert_eq!(c.dead_lettered, 0, "{c:?}");
    assert_eq!(c.stored, lines as u64, "{c:?}");
    assert_exactly_once(&es, T, dir.path(), &BTreeSet::new());
    figure(
        T,
        &format!(
            "{lines} documents; {} 413 splits; {} requests; {} retries",
            c.splits, c.requests, c.retried
        ),
    );
}

#[test]
fn three_nodes_with_one_stopped_mid_run_keep_shipping() {
    const T: &str = "cluster";
    let Some(node) = own(T, 3, &[]) else { return };
    let es = Es::new(&node.url_of(1));
    let dir = tempfile::tempdir().unwrap();
    // One document a request, one request at a time, over ~1,000 documents: shipping must
    // still be going on when the indices are green and node 2 is stopped (with the
    // checkpoint's fsyncs off the shipping path, 385 documents in batches of 3 were all
    // stored before the replicas were assigned).
    let (cfg, lines) = journal_without_es(dir.path(), T, 320);
    let shipper = shipper(&cfg, &node.urls(), |c| {
        c.elasticsearch.batch_max_docs = 1;
        c.elasticsearch.max_in_flight = 1;
    });
    let (c, stored_at_stop) = std::thread::scope(|scope| {
        let stopper = scope.spawn(|| {
            wait_for("first documents stored", Duration::from_secs(120), || {
                es.try_call("GET", &format!("/{}/_count", streams(T)), None)
                    .is_ok_and(|(s, v)| s == 200 && v["count"].as_u64().unwrap_or(0) > 0)
            });
            // Only once every shard copy is assigned: killing the node that holds the only
            // in-sync copy of a new backing index (its replica still initialising) loses
            // acknowledged documents in Elasticsearch itself, which is not what this tests.
            wait_for("our indices green", Duration::from_secs(120), || {
                es.try_call(
                    "GET",
                    &format!(
                        "/_cluster/health/{}?wait_for_status=green&timeout=5s",
                        streams(T)
                    ),
                    None,
                )
                .is_ok_and(|(s, v)| s == 200 && v["status"] == "green")
            });
            node.kill(2);
            es.count(&streams(T))
        });
        let c = ship_all(shipper);
        (c, stopper.join().unwrap())
    });
    // Shipping is done; before reading back, let the two nodes left settle (a master elected
    // again, node 2 removed, no shard initialising): a refresh sent while node 2 was still in
    // the cluster state waited past the reader's 60 s timeout.
    wait_for(
        "the cluster settled after node 2 left",
        Duration::from_secs(180),
        || {
            es.try_call(
                "GET",
                "/_cluster/health?wait_for_nodes=2&wait_for_no_initializing_shards=true&timeout=10s",
                None,
            )
            .is_ok_and(|(s, v)| s == 200 && v["status"] != "red" && v["timed_out"] == false)
        },
    );
    assert!(
        stored_at_stop < lines as u64,
        "node 2 stopped mid-run ({stored_at_stop} of {lines})"
    );
    assert_eq!(c.dead_lettered, 0, "{c:?}");
    assert_eq!(c.stored + c.duplicates, lines as u64, "{c:?}");
    assert_exactly_once(&es, T, dir.path(), &BTreeSet::new());
    figure(
        T,
        &format!("{lines} documents; node 2 of 3 killed with {stored_at_stop} stored; {} retries, {} 409s, {} requests", c.retried, c.duplicates, c.requests),
    );
}

/// The fields `kibana/` uses, checked against `_field_caps` of shipped data streams.
mod kibana_fields {
    use super::files;
    use super::Es;
    use serde_json::Value;

    const NUMERIC: &[&str] = &[
        "long",
        "integer",
        "short",
        "byte",
        "double",
        "float",
        "half_float",
        "scaled_float",
    ];

    /// Problems found (empty: every field exists, with one type that fits its use).
    pub fn check(es: &Es, checks: &str, jobs: &str) -> Vec<String> {
        let caps = es.ok(
            "GET",
            &format!("/{checks},{jobs}/_field_caps?fields=*"),
            None,
        );
        let fields = &caps["fields"];
        let mut problems = Vec::new();
        let mut used = 0;
        let mut need = |field: &str, at: &str, want: &dyn Fn(&str, &Value) -> bool, what: &str| {
            used += 1;
            match fields.get(field).and_then(Value::as_object) {
                None => problems.push(format!("{at}: {field} is not in _field_caps")),
                Some(types) if types.len() != 1 => problems.push(format!(
                    "{at}: {field} has several types {:?}",
                    types.keys()
                )),
                Some(types) => {
                    let (ty, cap) = types.iter().next().unwrap();
                    if !want(ty, cap) {
                        problems.push(format!(
                            "{at}: {field} is {ty} {cap}, the panel needs {what}"
                        ));
                    }
                }
            }
        };
        let aggregatable = |_: &str, c: &Value| c["aggregatable"] == true;
        let searchable = |_: &str, c: &Value| c["searchable"] == true;
        let date = |t: &str, c: &Value| t == "date" && c["aggregatable"] == true;
        let numeric = |t: &str, c: &Value| NUMERIC.contains(&t) && c["aggregatable"] == true;
        let keyword = |t: &str, c: &Value| t == "keyword" && c["aggregatable"] == true;

        for o in files::saved_objects() {
            let at = o.at();
            match o.type_() {
                "index-pattern" => {
                    if let Some(f) = o.attributes()["timeFieldName"].as_str() {
                        need(f, &at, &date, "a date");
                    }
                }
                "lens" => {
                    let layers =
                        &o.attributes()["state"]["datasourceStates"]["formBased"]["layers"];
                    for layer in layers.as_object().into_iter().flatten().map(|(_, l)| l) {
                        for (id, col) in layer["columns"].as_object().into_iter().flatten() {
                            let op = col["operationType"].as_str().unwrap_or("");
                            let at = format!("{at} column {id} ({op})");
                            if let Some(f) = col["sourceField"].as_str() {
                                if f == "___records___" {
                                    continue;
                                }
                                match op {
                                    "date_histogram" => need(f, &at, &date, "a date"),
                                    "average" | "sum" | "median" | "percentile"
                                    | "percentile_rank" | "min" | "max" | "standard_deviation"
                                    | "range" => need(f, &at, &numeric, "an aggregatable number"),
                                    _ => need(f, &at, &aggregatable, "an aggregatable field"),
                                }
                            }
                            if let Some(f) =
                                col.pointer("/params/sortField").and_then(Value::as_str)
                            {
                                need(f, &at, &aggregatable, "a sortable field");
                            }
                        }
                    }
                }
                "search" => {
                    for c in o.attributes()["columns"].as_array().into_iter().flatten() {
                        need(
                            c.as_str().unwrap_or(""),
                            &at,
                            &searchable,
                            "a searchable field",
                        );
                    }
                    for s in o.attributes()["sort"].as_array().into_iter().flatten() {
                        need(
                            s[0].as_str().unwrap_or(""),
                            &at,
                            &aggregatable,
                            "a sortable field",
                        );
                    }
                }
                "dashboard" => {
                    if let Some(input) = o.attributes().get("controlGroupInput") {
                        let panels =
                            files::decode(&input["panelsJSON"], "controlGroupInput.panelsJSON");
                        for (id, c) in panels.as_object().into_iter().flatten() {
                            if let Some(f) = c["explicitInput"]["fieldName"].as_str() {
                                need(
                                    f,
                                    &format!("{at} control {id}"),
                                    &keyword,
                                    "an aggregatable keyword",
                                );
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if used < 10 {
            problems.push(format!(
                "only {used} field uses found in kibana/: the extractor is broken"
            ));
        }
        problems
    }
}
