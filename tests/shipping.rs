//! Shipping the journal to Elasticsearch (the emulator's faults): every journal document stored
//! exactly once through item 429s, an outage, a crash and replay, 413 splits; refused
//! documents in the dead-letter file with their reason; every written field mapped.

mod harness;
mod support;

use harness::*;
use iaso_probe::config::Config;
use iaso_probe::sink::shipper::Shipper;
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;
use support::es_emulator::EsEmulator;

const SIM: Sim = SIM_MIXED;

/// A run configuration shipping to `es_url` with fast retries.
fn shipping_config(dir: &Path, sim_url: &str, es_url: &str, hosts_n: usize) -> Config {
    let mut cfg = one_env(dir, "lab", sim_url, "", &hosts("lab", hosts_n));
    let es = &mut cfg.elasticsearch;
    es.urls = vec![es_url.to_owned()];
    es.retry_initial_ms = 5;
    es.retry_max_ms = 50;
    es.batch_max_docs = 40;
    es.batch_max_wait_ms = 20;
    es.once_ship_deadline_secs = 60;
    cfg
}

fn journal_ids(dir: &Path) -> BTreeSet<String> {
    journal(dir).into_iter().map(|r| r.event.id).collect()
}

/// Every id of the journal is in Elasticsearch once, and nothing else is.
fn assert_stored_exactly_once(emu: &EsEmulator, dir: &Path) {
    let expected = journal_ids(dir);
    let stored = emu.ids("*-iaso.*");
    let unique: HashSet<_> = stored.iter().cloned().collect();
    assert_eq!(unique.len(), stored.len(), "duplicates in Elasticsearch");
    assert_eq!(
        unique.into_iter().collect::<BTreeSet<_>>(),
        expected,
        "Elasticsearch and the journal differ"
    );
}

#[test]
fn item_429s_are_retried_until_every_document_is_stored_once() {
    let sim = SIM.start();
    let emu = EsEmulator::start();
    emu.set_item_429_ratio(0.3, 42);
    let dir = tempfile::tempdir().unwrap();
    let report = run_once(shipping_config(dir.path(), &sim.base_url(), &emu.url(), 30));
    let s = report.shipping.expect("shipping configured");
    assert_eq!(s.unshipped, 0);
    assert!(s.counters.retried > 0, "the 429s were retried");
    assert_eq!(s.counters.dead_lettered, 0);
    assert!(emu.bulk_stats().rejected_429 > 0);
    assert_stored_exactly_once(&emu, dir.path());
    // The templates were installed before the first document (so a real cluster creates data
    // streams from them, which tests/real_es.rs checks).
    assert!(emu.index_templates().contains_key("iaso-checks"));
    let requests = emu.requests();
    let position = |what: &str| {
        requests
            .iter()
            .position(|r| format!("{} {}", r.method, r.path) == what)
            .unwrap_or_else(|| panic!("no {what}"))
    };
    assert!(position("PUT /_index_template/iaso-jobs") < position("POST /_bulk"));
}

#[test]
fn an_outage_at_start_delays_shipping_but_loses_nothing() {
    let sim = SIM.start();
    let emu = std::sync::Arc::new(EsEmulator::start());
    emu.set_down(true);
    let e2 = emu.clone();
    let dir = tempfile::tempdir().unwrap();
    // Back once the run has journaled a good part of its results, which shipping (retrying
    // every 5 to 50 ms) could not send meanwhile.
    let d = dir.path().to_owned();
    let back = std::thread::spawn(move || {
        wait_until("results journaled", Duration::from_secs(30), || {
            journal_lines_with(&d, "\"action\":\"job.end\"") >= 5
        });
        e2.set_down(false);
    });
    let report = run_once(shipping_config(dir.path(), &sim.base_url(), &emu.url(), 20));
    back.join().unwrap();
    let s = report.shipping.unwrap();
    assert_eq!(s.unshipped, 0, "{:?}", s.counters);
    assert_stored_exactly_once(&emu, dir.path());
}

#[test]
fn a_new_shipper_after_a_crash_loses_and_duplicates_nothing() {
    // A journal from a run without Elasticsearch.
    let sim = SIM.start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_env(dir.path(), "lab", &sim.base_url(), "", &hosts("lab", 40));
    run_once(cfg.clone());
    let lines = journal(dir.path()).len() as u64;
    assert!(lines > 100);

    let emu = EsEmulator::start();
    let mut es = cfg.elasticsearch.clone();
    es.urls = vec![emu.url()];
    es.batch_max_docs = 10;
    es.max_in_flight = 1;
    emu.set_slow(Some(Duration::from_millis(30)));
    let shipper_of = || {
        let (client, _) = iaso_probe::sink::es_client::build(&es).unwrap().unwrap();
        let mut s = Shipper::new(client, es.clone(), cfg.journal.clone()).unwrap();
        s.require_setup(iaso_probe::setup::elasticsearch_plan(None));
        s
    };
    actix::System::new().block_on(async {
        // First instance: killed mid-way (its future dropped between two batches or in one).
        let mut first = shipper_of();
        let first_batch_stored = async {
            while emu.count("*-iaso.*") == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::select! {
            _ = first.ship_available() => panic!("the first shipper should not finish"),
            _ = first_batch_stored => {} // crash: the future is dropped here
        }
        let partial = emu.count("*-iaso.*") as u64;
        assert!(
            partial > 0 && partial < lines,
            "crash mid-way ({partial} of {lines})"
        );
        // Second instance over the same journal and checkpoint: it sends every line after
        // the checkpoint, and stores what the first did not (a batch in flight at the crash
        // may have been stored after `partial` was counted: a 409 now).
        emu.set_slow(None);
        let after_checkpoint = iaso_probe::sink::shipper::unshipped(&cfg.journal.dir).unwrap();
        let mut second = shipper_of();
        second.ship_available().await.unwrap();
        let c = second.counters().lock().unwrap().clone();
        assert!(c.stored > 0);
        assert!(c.stored <= lines - partial, "{c:?}");
        assert_eq!(c.stored + c.duplicates, after_checkpoint, "{c:?}");
    });
    assert_stored_exactly_once(&emu, dir.path());

    // A crash after Elasticsearch stored a batch but before the checkpoint moved: replaying
    // the whole journal gives 409s, counted, never duplicates.
    std::fs::remove_file(dir.path().join("journal/shipping.checkpoint.json")).unwrap();
    actix::System::new().block_on(async {
        let mut replay = shipper_of();
        replay.ship_available().await.unwrap();
        let c = replay.counters().lock().unwrap().clone();
        assert_eq!(c.stored, 0);
        assert_eq!(c.duplicates, lines);
    });
    assert_stored_exactly_once(&emu, dir.path());
}

#[test]
fn a_mapping_error_dead_letters_that_document_and_stores_the_others() {
    let sim = SIM.start();
    let emu = EsEmulator::start();
    emu.set_reject_field(Some("iaso.limit_ms".into()));
    let dir = tempfile::tempdir().unwrap();
    let report = run_once(shipping_config(dir.path(), &sim.base_url(), &emu.url(), 10));
    let s = report.shipping.unwrap();
    assert_eq!(s.unshipped, 0);
    let docs = journal(dir.path());
    let rejected = ids_where(&docs, |r| r.iaso.limit_ms.is_some());
    assert!(!rejected.is_empty());
    assert_eq!(s.counters.dead_lettered, rejected.len() as u64);
    let dead = dead_letters(&dir.path().join("journal/dead-letter.ndjson"));
    let dead_ids: BTreeSet<String> = dead
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dead_ids, rejected);
    for d in &dead {
        assert_eq!(d["error"]["status"], 400);
        assert_eq!(d["error"]["type"], "document_parsing_exception");
        assert!(
            d["error"]["reason"].as_str().unwrap().contains("limit_ms"),
            "{d}"
        );
        assert_eq!(d["document"]["event"]["action"], "response_time");
    }
    let stored: BTreeSet<String> = emu.ids("*-iaso.*").into_iter().collect();
    let expected: BTreeSet<String> = docs
        .iter()
        .map(|r| r.event.id.clone())
        .filter(|i| !rejected.contains(i))
        .collect();
    assert_eq!(stored, expected);
}

#[test]
fn a_413_splits_the_batch_until_everything_fits() {
    let sim = SIM.start();
    let emu = EsEmulator::start();
    emu.set_max_request_bytes(Some(6_000));
    let dir = tempfile::tempdir().unwrap();
    let report = run_once(shipping_config(dir.path(), &sim.base_url(), &emu.url(), 15));
    let s = report.shipping.unwrap();
    assert_eq!(s.unshipped, 0);
    assert!(s.counters.splits > 0);
    assert_eq!(s.counters.dead_lettered, 0);
    assert!(
        emu.bulk_stats()
            .whole_request_errors
            .get(&413)
            .copied()
            .unwrap_or(0)
            > 0
    );
    assert_stored_exactly_once(&emu, dir.path());
}

#[test]
fn unauthorized_pauses_shipping_and_keeps_the_journal() {
    let sim = SIM.start();
    let emu = EsEmulator::start_with(support::es_emulator::EmulatorOptions {
        basic_auth: Some(("elastic".into(), "right".into())),
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = shipping_config(dir.path(), &sim.base_url(), &emu.url(), 5);
    cfg.elasticsearch.username = Some("elastic".into());
    cfg.elasticsearch.password = Some(iaso_probe::config::Secret::new("wrong"));
    cfg.elasticsearch.once_ship_deadline_secs = 1;
    cfg.elasticsearch.setup_on_start = false;
    let report = run_once(cfg);
    let s = report.shipping.unwrap();
    assert!(
        s.counters.paused.as_deref().unwrap_or("").contains("401"),
        "{:?}",
        s.counters
    );
    assert_eq!(s.unshipped, journal(dir.path()).len() as u64);
    assert_eq!(emu.count("*-iaso.*"), 0);
}

/// Every field path of every document the program writes (a full pass with failures,
/// skips, unhealthy components and jobs of every kind) is mapped in config/elasticsearch.
#[test]
fn every_written_field_is_mapped_in_the_templates() {
    let sim = SIM.start();
    let dir = tempfile::tempdir().unwrap();
    let restores = r#"
[[environments.lab.restores]]
host = "host-00000"
file_name = "a.txt"
source_path = "/data"
destination_path = "/restore"
"#;
    let tail = format!("{}{}", hosts("lab", 12), restores);
    let mut cfg = one_env(dir.path(), "lab", &sim.base_url(), "", &tail);
    cfg.environments
        .get_mut("lab")
        .unwrap()
        .checks
        .response_time_limit_ms = 1;
    run_once(cfg.clone());
    // And a run whose login fails, for the skipped shape.
    cfg.environments
        .get_mut("lab")
        .unwrap()
        .credentials
        .password = Some(iaso_probe::config::Secret::new("wrong"));
    run_once(cfg);

    let mapping: Value = serde_json::from_str(include_str!(
        "../config/elasticsearch/component_templates/iaso-mappings.json"
    ))
    .unwrap();
    let mut mapped = BTreeSet::new();
    flatten_mapping(
        &mapping["template"]["mappings"]["properties"],
        "",
        &mut mapped,
    );
    let lines = iaso_probe::sink::journal::read_all(&dir.path().join("journal")).unwrap();
    let mut written = BTreeSet::new();
    for l in &lines {
        flatten_doc(&serde_json::from_str(l).unwrap(), "", &mut written);
    }
    // A range value (`monitor.timespan`, date_range) is an object of bounds.
    let unmapped: Vec<_> = written
        .difference(&mapped)
        .filter(|f| {
            !f.rsplit_once('.').is_some_and(|(parent, bound)| {
                mapped.contains(parent) && ["gte", "gt", "lte", "lt"].contains(&bound)
            })
        })
        .collect();
    assert!(
        unmapped.is_empty(),
        "fields written but not mapped: {unmapped:?}"
    );
    for f in [
        "error.type",
        "iaso.job.result",
        "iaso.health.component",
        "summary.down",
        "trace.id",
    ] {
        assert!(written.contains(f), "the runs did not exercise {f}");
    }
}

fn flatten_mapping(props: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    for (k, v) in props.as_object().expect("properties object") {
        let path = format!("{prefix}{k}");
        if let Some(p) = v.get("properties") {
            flatten_mapping(p, &format!("{path}."), out);
        } else {
            out.insert(path);
        }
    }
}

fn flatten_doc(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten_doc(v, &format!("{prefix}{k}."), out);
            }
        }
        _ => {
            out.insert(prefix.trim_end_matches('.').to_owned());
        }
    }
}
