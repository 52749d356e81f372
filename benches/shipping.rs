//! Shipping throughput: a large journal written with the prober's own types, shipped to the
//! in-process Elasticsearch emulator by the prober's shipper.
//!
//!   cargo bench --bench shipping [-- DOCS]        (default 200000 documents)
//!
//! Prints journal append throughput, shipping documents/s, and the CPU of the shipper's
//! thread per document (the emulator runs on its own thread, measured apart). Figures go to
//! BENCHMARKS.md.

#[path = "../tests/support/mod.rs"]
mod support;

use iaso_probe::config::{ElasticsearchConfig, JournalConfig};
use iaso_probe::model::result::IasoJob;
use iaso_probe::model::{Action, JobKind, Outcome, ResultContext};
use iaso_probe::sink::journal::Journal;
use iaso_probe::sink::shipper::Shipper;
use std::time::{Duration, Instant};
use support::es_emulator::EsEmulator;

/// CPU time (user + system) of the calling thread, or of the named thread of this process.
fn thread_cpu(name: Option<&str>) -> Duration {
    let stat = match name {
        None => std::fs::read_to_string("/proc/thread-self/stat").unwrap(),
        Some(n) => {
            // A listing of /proc/self/task can skip a thread when another one exits meanwhile
            // (blocking-pool threads come and go): look again.
            let find = || {
                let mut found = None;
                for t in std::fs::read_dir("/proc/self/task").unwrap() {
                    let p = t.unwrap().path();
                    let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
                    if !comm.trim().is_empty() && n.starts_with(comm.trim()) {
                        found = std::fs::read_to_string(p.join("stat")).ok();
                    }
                }
                found
            };
            (0..100).find_map(|_| find()).expect("thread found")
        }
    };
    // Fields after the command name (which is in parentheses): utime is 14th, stime 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // CLK_TCK is 100 on Linux
}

/// CPU time (user + system) of the whole process.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn main() {
    let docs: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("journal");

    // 1. The journal: realistic documents (job status results, the most common kind).
    let ctx = ResultContext::new("bench-run", "bench", "bench-observer");
    let t0 = Instant::now();
    let mut bytes = 0usize;
    {
        let mut j = Journal::open(&journal_dir, 64 << 20).unwrap();
        for i in 0..docs {
            let mut r = ctx
                .result(Action::JobStatus, Outcome::Success)
                .with_host(&format!("bench-host-{:06}", i % 10_000))
                .with_http(
                    "GET",
                    "https://iaso.example.com/api/v1/jobs/123456",
                    Some(200),
                )
                .with_duration(Duration::from_millis(12));
            r.iaso.job = Some(IasoJob {
                id: Some(format!("{}", 1_000_000 + i)),
                kind: JobKind::Backup,
                status: Some("Running".into()),
                percent: Some((i % 100) as f64),
                elapsed_s: Some(i as u64 % 3600),
                ..Default::default()
            });
            let line = serde_json::to_vec(&r).unwrap();
            bytes += line.len() + 1;
            j.append(&line).unwrap();
        }
        j.flush().unwrap();
        // Durable, as the stop's flush makes it: the rotations' fsyncs run on the journal's
        // fsync thread, and are part of the cost.
        actix::System::new().block_on(j.sync()).unwrap();
    }
    let append = t0.elapsed();
    println!(
        "journal: {docs} documents, {:.1} MB, appended and fsynced in {:.2} s = {:.0} docs/s (serialize + append)",
        bytes as f64 / 1e6,
        append.as_secs_f64(),
        docs as f64 / append.as_secs_f64()
    );

    // 2. Shipping, with the default batching (5 MB / 2000 docs, 2 requests in flight).
    let emu = EsEmulator::start();
    let es = ElasticsearchConfig {
        urls: vec![emu.url()],
        ..ElasticsearchConfig::default()
    };
    let jcfg = JournalConfig {
        dir: journal_dir.clone(),
        ..JournalConfig::default()
    };
    let (client, _) = iaso_probe::sink::es_client::build(&es).unwrap().unwrap();
    let mut shipper = Shipper::new(client, es.clone(), jcfg).unwrap();
    shipper.require_setup(iaso_probe::setup::elasticsearch_plan(None));
    let emulator_thread = format!("es-emulator-{}", emu.url().rsplit(':').next().unwrap());
    let (cpu0, emu0, proc0) = (
        thread_cpu(None),
        thread_cpu(Some(&emulator_thread)),
        process_cpu(),
    );
    let t1 = Instant::now();
    let shipped = actix::System::new().block_on(async { shipper.ship_available().await.unwrap() });
    let wall = t1.elapsed();
    let (cpu, emu_cpu, proc_cpu) = (
        thread_cpu(None) - cpu0,
        thread_cpu(Some(&emulator_thread)) - emu0,
        process_cpu() - proc0,
    );
    // The prober's share: every thread but the emulator's (file reads may run on tokio's
    // blocking pool, not on the shipper's thread).
    let prober_cpu = proc_cpu.saturating_sub(emu_cpu);
    let c = shipper.counters().lock().unwrap().clone();
    assert_eq!(
        c.stored as usize, docs,
        "every document stored once (last error: {:?})",
        c.last_error
    );
    assert_eq!(emu.count("*-iaso.*"), docs);
    let stats = emu.bulk_stats();
    println!(
        "shipping: {shipped} documents in {:.2} s = {:.0} docs/s; {} bulk requests",
        wall.as_secs_f64(),
        docs as f64 / wall.as_secs_f64(),
        stats.requests
    );
    println!(
        "CPU: prober (process minus emulator) {:.2} s = {:.1} µs/doc, of which the shipper's thread {:.2} s; emulator thread {:.2} s = {:.1} µs/doc",
        prober_cpu.as_secs_f64(),
        prober_cpu.as_secs_f64() * 1e6 / docs as f64,
        cpu.as_secs_f64(),
        emu_cpu.as_secs_f64(),
        emu_cpu.as_secs_f64() * 1e6 / docs as f64
    );
}
