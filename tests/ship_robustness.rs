//! Shipping when the disk or Elasticsearch misbehave (the emulator and injected disk
//! faults): a checkpoint the disk refuses is retried with backoff, never by re-sending;
//! dead letters the disk refuses hold shipping until written, once; a full disk during a
//! run loses nothing that reached the journal and counts what did not; `ship --dead-letter`'s
//! re-send stores each document once, with its id, and keeps those still refused.

mod harness;
mod support;

use harness::*;
use iaso_probe::config::Config;
use iaso_probe::sink::disk::DiskFaults;
use iaso_probe::sink::shipper::{self, Shipper};
use iaso_probe::RunOptions;
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;
use support::es_emulator::EsEmulator;

const SIM: Sim = Sim::new(11, 1, (30, 200)).failure(0.2).unhealthy(0.3);

fn journal_ids(dir: &Path) -> BTreeSet<String> {
    journal(dir).into_iter().map(|r| r.event.id).collect()
}

/// Ids in Elasticsearch, asserting none is there twice.
fn stored_once(emu: &EsEmulator) -> BTreeSet<String> {
    let ids = emu.ids("*-iaso.*");
    let unique: HashSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "duplicates in Elasticsearch");
    unique.into_iter().collect()
}

/// A journal written by a pass without Elasticsearch; its configuration.
fn journal_of_a_pass(dir: &Path, hosts_n: usize) -> Config {
    let sim = SIM.start();
    let cfg = one_env(dir, "lab", &sim.base_url(), "", &hosts("lab", hosts_n));
    run_once(cfg.clone());
    cfg
}

fn shipper_for(cfg: &Config, emu: &EsEmulator, faults: &DiskFaults) -> Shipper {
    let mut es = cfg.elasticsearch.clone();
    es.urls = vec![emu.url()];
    es.batch_max_docs = 25;
    es.retry_initial_ms = 5;
    es.retry_max_ms = 50;
    let (client, _) = iaso_probe::sink::es_client::build(&es).unwrap().unwrap();
    let mut s = Shipper::new(client, es, cfg.journal.clone()).unwrap();
    s.require_setup(iaso_probe::setup::elasticsearch_plan(None));
    s.set_disk_faults(faults.clone());
    s
}

#[test]
fn a_checkpoint_the_disk_refuses_is_retried_with_backoff_never_by_resending_batches() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = journal_of_a_pass(dir.path(), 30);
    let lines = journal(dir.path()).len();
    let emu = EsEmulator::start();
    let faults = DiskFaults::default();
    faults.set_space(Some(0));
    actix::System::new().block_on(async {
        let mut s = shipper_for(&cfg, &emu, &faults);
        // What `follow` does on its ticks while the disk stays full.
        for _ in 0..5 {
            s.ship_available().await.unwrap();
        }
        let stats = emu.bulk_stats();
        assert_eq!(stats.conflicts_409, 0, "a batch was sent again: {stats:?}");
        assert_eq!(stats.created_201, lines);
        assert_eq!(stats.requests, lines.div_ceil(25));
        assert!(s.caught_up());
        let c = s.counters().lock().unwrap().clone();
        assert!(c.checkpoint_errors >= 1, "{c:?}");
        assert!(
            c.checkpoint_errors < 5,
            "retried with backoff, not on every tick: {c:?}"
        );
        // Nothing saved yet: by the file, everything is unshipped; by the shipper, nothing.
        assert_eq!(shipper::unshipped(&cfg.journal.dir).unwrap(), lines as u64);
        assert_eq!(
            shipper::unshipped_from(&cfg.journal.dir, s.position()).unwrap(),
            0
        );
        // Space is back: the next save goes through.
        faults.set_space(None);
        s.save_checkpoint(true);
        assert_eq!(shipper::unshipped(&cfg.journal.dir).unwrap(), 0);
    });
    assert_eq!(stored_once(&emu), journal_ids(dir.path()));
}

#[test]
fn dead_letters_the_disk_refuses_hold_shipping_until_written_then_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = journal_of_a_pass(dir.path(), 20);
    let docs = journal(dir.path());
    let rejected = ids_where(&docs, |r| r.iaso.limit_ms.is_some());
    assert!(!rejected.is_empty());
    let emu = EsEmulator::start();
    emu.set_reject_field(Some("iaso.limit_ms".into()));
    let faults = DiskFaults::default();
    faults.set_space(Some(0));
    let dead_file = cfg.journal.dir.join("dead-letter.ndjson");
    actix::System::new().block_on(async {
        let mut s = shipper_for(&cfg, &emu, &faults);
        assert!(s.ship_available().await.is_err());
        let requests = emu.bulk_stats().requests;
        // Still full: the retry writes nothing and sends nothing.
        assert!(s.ship_available().await.is_err());
        assert_eq!(emu.bulk_stats().requests, requests);
        assert!(!s.caught_up());
        faults.set_space(None);
        s.ship_available().await.unwrap();
        while !s.caught_up() {
            s.ship_available().await.unwrap();
        }
    });
    let dead = dead_letters(&dead_file);
    let dead_ids: Vec<String> = dead
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        dead_ids.len(),
        rejected.len(),
        "each dead letter written once"
    );
    assert_eq!(dead_ids.into_iter().collect::<BTreeSet<_>>(), rejected);
    let expected: BTreeSet<String> = journal_ids(dir.path())
        .into_iter()
        .filter(|i| !rejected.contains(i))
        .collect();
    assert_eq!(stored_once(&emu), expected);
    assert_eq!(shipper::unshipped(&cfg.journal.dir).unwrap(), 0);
}

#[test]
fn dead_letters_are_sent_again_once_with_their_ids_and_those_still_refused_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = journal_of_a_pass(dir.path(), 20);
    let emu = EsEmulator::start();
    emu.set_reject_field(Some("iaso.limit_ms".into()));
    let faults = DiskFaults::default();
    let dead_file = cfg.journal.dir.join("dead-letter.ndjson");
    let rejected: BTreeSet<String> = journal(dir.path())
        .into_iter()
        .filter(|r| r.iaso.limit_ms.is_some())
        .map(|r| r.event.id)
        .collect();
    let n = rejected.len() as u64;
    actix::System::new().block_on(async {
        let mut s = shipper_for(&cfg, &emu, &faults);
        while !s.caught_up() {
            s.ship_available().await.unwrap();
        }
        assert_eq!(s.counters().lock().unwrap().dead_lettered, n);
        // A line that is no document survives every re-send as it is.
        let mut text = std::fs::read_to_string(&dead_file).unwrap();
        text.push_str("{\"error\":{\"type\":\"journal_line\"},\"document\":\"{torn\"}\n");
        std::fs::write(&dead_file, &text).unwrap();

        // Still refused: kept, with the same ids.
        let r = s.resend_dead_letters().await.unwrap();
        assert_eq!((r.sent, r.stored, r.refused, r.kept), (n, 0, n, 1), "{r:?}");
        let kept = std::fs::read_to_string(&dead_file).unwrap();
        let kept_ids: BTreeSet<String> = kept
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["_id"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(kept_ids, rejected);
        assert!(kept.contains("{torn"));

        // The mapping is fixed: every one stored, with its id; only the odd line stays.
        emu.set_reject_field(None);
        let before = std::fs::read_to_string(&dead_file).unwrap();
        let r = s.resend_dead_letters().await.unwrap();
        assert_eq!((r.sent, r.stored, r.refused, r.kept), (n, n, 0, 1), "{r:?}");
        assert_eq!(
            std::fs::read_to_string(&dead_file).unwrap().lines().count(),
            1
        );
        // A crash before the rewrite leaves the old file: sending it again stores nothing twice.
        std::fs::write(&dead_file, before).unwrap();
        let r = s.resend_dead_letters().await.unwrap();
        assert_eq!((r.stored, r.duplicates, r.refused), (0, n, 0), "{r:?}");
    });
    assert_eq!(stored_once(&emu), journal_ids(dir.path()));
}

/// Service mode with Elasticsearch and injected disk faults: fills the disk once results
/// flow, keeps it full ~1.5 s, frees it after that when `recover`, then stops.
fn run_through_a_full_disk(dir: &Path, emu: &EsEmulator, recover: bool) -> iaso_probe::RunReport {
    let sim = SIM.start();
    let mut cfg = one_env(
        dir,
        "lab",
        &sim.base_url(),
        "",
        &format!("backup_interval_secs = 1\n{}", hosts("lab", 20)),
    );
    let es = &mut cfg.elasticsearch;
    es.urls = vec![emu.url()];
    es.retry_initial_ms = 5;
    es.retry_max_ms = 50;
    es.batch_max_docs = 40;
    es.batch_max_wait_ms = 20;
    let faults = DiskFaults::default();
    let opts = RunOptions {
        once: false,
        seed: Some(3),
        disk_faults: faults.clone(),
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runner = std::thread::spawn(move || {
        actix::System::new().block_on(iaso_probe::run(cfg, opts, async move {
            let _ = rx.await;
        }))
    });
    wait_until("documents shipped", Duration::from_secs(60), || {
        emu.count("*-iaso.*") >= 50
    });
    faults.set_space(Some(0));
    // Let results pile up against the full disk (time passing, not synchronisation).
    std::thread::sleep(Duration::from_millis(1500));
    if recover {
        faults.set_space(None);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let _ = tx.send(());
    runner.join().unwrap().expect("the run ends with a report")
}

#[test]
fn a_full_disk_during_a_run_loses_nothing_written_and_counts_what_was_not() {
    let dir = tempfile::tempdir().unwrap();
    let emu = EsEmulator::start();
    let report = run_through_a_full_disk(dir.path(), &emu, false);
    let on_disk = journal(dir.path()).len() as u64;
    assert!(report.sink.lost > 0, "{:?}", report.sink);
    assert!(report.sink.write_errors > 0);
    assert_eq!(report.sink.written, on_disk);
    assert_eq!(
        on_disk + report.sink.lost,
        report.tally.results,
        "every result is on disk or counted as lost: {:?}",
        report.sink
    );
    // No resend loop while the checkpoint could not be saved.
    assert_eq!(emu.bulk_stats().conflicts_409, 0, "{:?}", emu.bulk_stats());
    // Everything that reached the journal reached Elasticsearch, once.
    assert_eq!(stored_once(&emu), journal_ids(dir.path()));
    assert_eq!(report.shipping.unwrap().unshipped, 0);
}

#[test]
fn the_prober_recovers_by_itself_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let emu = EsEmulator::start();
    let report = run_through_a_full_disk(dir.path(), &emu, true);
    assert!(report.sink.write_errors > 0, "the disk was full a while");
    assert_eq!(report.sink.lost, 0, "{:?}", report.sink);
    assert_eq!(journal(dir.path()).len() as u64, report.tally.results);
    assert_eq!(emu.bulk_stats().conflicts_409, 0);
    assert_eq!(stored_once(&emu), journal_ids(dir.path()));
    let dir_j = dir.path().join("journal");
    assert_eq!(
        shipper::unshipped(&dir_j).unwrap(),
        0,
        "checkpoint saved again"
    );
}
