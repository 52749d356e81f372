//! Operations scenarios of issue 10, measured on a given binary (before/after figures for
//! the lead's note): two instances on one journal directory, `timeout`'s double SIGTERM, and
//! a full disk (a small tmpfs: needs root; skipped with a message otherwise). A simulator
//! and the Elasticsearch emulator run in this process.
//!
//!   cargo bench --profile dev --bench ops_scenarios -- --bin PATH [two|timeout|disk]...
//!
//! Prints counts only; nothing here is asserted (the tests in tests/ops.rs and
//! tests/ship_robustness.rs assert the behaviour).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::es_emulator::EsEmulator;

fn simulator(job_ms: (u64, u64)) -> iaso_probe::simulator::SimulatorHandle {
    let text = format!(
        "seed = 9\nlatency_ms = {{ min = 0, max = 2 }}\njob_duration_ms = {{ min = {}, max = {} }}\n",
        job_ms.0, job_ms.1
    );
    let cfg: iaso_probe::simulator::SimulatorConfig = toml::from_str(&text).unwrap();
    iaso_probe::simulator::spawn(cfg, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// A busy configuration: checks every second, 20 hosts backed up every 2 s.
fn write_config(dir: &Path, journal: &Path, sim: &str, es: Option<&str>) -> PathBuf {
    let mut t = format!(
        r#"
[journal]
dir = "{}"
[log]
dir = ""
"#,
        journal.display()
    );
    if let Some(es) = es {
        t.push_str(&format!(
            "[elasticsearch]\nurls = [\"{es}\"]\nretry_initial_ms = 200\nretry_max_ms = 5000\n"
        ));
    }
    t.push_str(&format!(
        r#"
[environments.lab]
base_url = "{sim}"
rate_limit_per_sec = 1000
rate_limit_burst = 50
[environments.lab.credentials]
username = "probe"
password = "probe-secret"
[environments.lab.checks]
liveness = {{ enabled = true, interval_secs = 1, attempts = 1 }}
health = {{ enabled = true, interval_secs = 1, attempts = 1 }}
response_time = {{ enabled = true, interval_secs = 1, attempts = 1 }}
[environments.lab.jobs]
backup_interval_secs = 2
poll_interval_ms = 100
poll_jitter_ms = 10
max_duration_secs = 120
"#
    ));
    for i in 0..20 {
        t.push_str(&format!(
            "[[environments.lab.hosts]]\nname = \"host-{i:03}\"\nlevel = \"FULL\"\n"
        ));
    }
    let p = dir.join("probe.toml");
    std::fs::write(&p, t).unwrap();
    p
}

/// A child whose stderr lines are collected.
struct Proc {
    child: Child,
    err: Arc<Mutex<Vec<(Instant, String)>>>,
    out: std::thread::JoinHandle<String>,
}

fn spawn(mut c: Command) -> Proc {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = Arc::new(Mutex::new(Vec::new()));
    let e2 = err.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            e2.lock().unwrap().push((Instant::now(), l));
        }
    });
    let mut stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    Proc { child, err, out }
}

impl Proc {
    fn term(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
    fn wait(mut self) -> (Option<i32>, String, Vec<(Instant, String)>) {
        let st = self.child.wait().unwrap();
        let out = self.out.join().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let err = self.err.lock().unwrap().clone();
        (st.code(), out, err)
    }
}

fn journal_lines(dir: &Path) -> (usize, usize, HashSet<String>) {
    let mut ok = 0;
    let mut bad = 0;
    let mut ids = HashSet::new();
    for (_, p) in iaso_probe::sink::journal::segments(dir).unwrap_or_default() {
        let text = std::fs::read(&p).unwrap();
        for l in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<serde_json::Value>(l) {
                Ok(v) => {
                    ok += 1;
                    if let Some(id) = v["event"]["id"].as_str() {
                        ids.insert(id.to_owned());
                    }
                }
                Err(_) => bad += 1,
            }
        }
    }
    (ok, bad, ids)
}

fn two_instances(bin: &Path) {
    let sim = simulator((300, 1500));
    let emu = EsEmulator::start();
    let d = tempfile::tempdir().unwrap();
    let journal = d.path().join("journal");
    let cfg = write_config(d.path(), &journal, &sim.base_url(), Some(&emu.url()));
    let run = || {
        let mut c = Command::new(bin);
        c.args(["--config", cfg.to_str().unwrap(), "run", "--no-progress"]);
        spawn(c)
    };
    let a = run();
    let b = run();
    std::thread::sleep(Duration::from_secs(20));
    a.term();
    b.term();
    let (ca, oa, _) = a.wait();
    let (cb, ob, eb) = b.wait();
    let mut ship = Command::new(bin);
    ship.args(["--config", cfg.to_str().unwrap(), "ship"]);
    let (cs, os, _) = spawn(ship).wait();
    let (ok, bad, ids) = journal_lines(&journal);
    let stored: HashSet<String> = emu.ids("iaso-*").into_iter().collect();
    let missing = ids.difference(&stored).count();
    let grep = |s: &str| {
        s.lines()
            .filter(|l| l.contains("unshipped"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("two instances, one journal directory, 20 s, SIGTERM both, then `ship`:");
    println!("  exit codes: first {ca:?}, second {cb:?}, ship {cs:?}");
    if cb == Some(2) {
        let msg = eb
            .iter()
            .find(|(_, l)| l.contains("in use"))
            .map(|x| x.1.clone());
        println!("  second instance: {}", msg.unwrap_or_default());
    }
    println!(
        "  journal: {ok} documents ({} distinct ids), {bad} unreadable lines; Elasticsearch: {} documents; journal documents missing from Elasticsearch: {missing} ({:.0} %)",
        ids.len(),
        stored.len(),
        100.0 * missing as f64 / ids.len().max(1) as f64
    );
    println!("  first said: {}", grep(&oa));
    println!("  second said: {}", grep(&ob));
    println!("  ship said: {}", grep(&os));
}

fn timeout_runs(bin: &Path, n: usize) {
    let sim = simulator((20_000, 30_000));
    let mut drained = 0;
    let mut second = 0;
    let mut handoff = 0;
    let mut summary = 0;
    for _ in 0..n {
        let d = tempfile::tempdir().unwrap();
        let journal = d.path().join("journal");
        let cfg = write_config(d.path(), &journal, &sim.base_url(), None);
        let mut c = Command::new("timeout");
        c.args(["-s", "TERM", "6"]).arg(bin).args([
            "--config",
            cfg.to_str().unwrap(),
            "run",
            "--no-progress",
        ]);
        let (_code, out, err) = spawn(c).wait();
        let text: Vec<&str> = err.iter().map(|x| x.1.as_str()).collect();
        if text.iter().any(|l| l.contains("second signal")) {
            second += 1;
        }
        if text.iter().any(|l| l.contains("journal flushed")) {
            drained += 1;
        }
        if journal.join("tracked-jobs.json").exists() {
            handoff += 1;
        }
        if out.contains("journal has") {
            summary += 1;
        }
    }
    println!("`timeout -s TERM 6 iaso-probe run`, {n} runs (jobs of 20–30 s in flight):");
    println!("  taken as a second signal: {second}; drained (\"journal flushed\"): {drained}; summary printed: {summary}; tracked-jobs.json written: {handoff}");
}

fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let mut small = [0u8; 512];
    small.fill(1);
    while f.write_all(&small[..64]).is_ok() {}
}

fn disk_full(bin: &Path, recover: bool) {
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("disk full: cannot mount a tmpfs here (needs root), skipped");
        return;
    }
    let sim = simulator((300, 1500));
    let emu = EsEmulator::start();
    let journal = mnt.join("journal");
    let cfg = write_config(base.path(), &journal, &sim.base_url(), Some(&emu.url()));
    let mut c = Command::new(bin);
    c.args(["--config", cfg.to_str().unwrap(), "run", "--no-progress"]);
    let p = spawn(c);
    std::thread::sleep(Duration::from_secs(8));
    let filler = mnt.join("filler");
    fill(&filler);
    let full_at = Instant::now();
    let before = emu.bulk_stats();
    std::thread::sleep(Duration::from_secs(40));
    let during = emu.bulk_stats();
    if recover {
        std::fs::remove_file(&filler).unwrap();
        std::thread::sleep(Duration::from_secs(15));
    }
    let stop_at = Instant::now();
    p.term();
    let (code, out, err) = p.wait();
    let errors_full = err
        .iter()
        .filter(|(t, l)| *t >= full_at && *t < stop_at && l.contains("ERROR"))
        .count();
    let warns_full = err
        .iter()
        .filter(|(t, l)| *t >= full_at && *t < stop_at && l.contains(" WARN "))
        .count();
    let (lines, bad, ids) = journal_lines(&journal);
    let stored: HashSet<String> = emu.ids("iaso-*").into_iter().collect();
    println!(
        "disk full (16 MB tmpfs filled after 8 s, 40 s full{}, then SIGTERM{}):",
        if recover { ", then freed for 15 s" } else { "" },
        if recover { "" } else { " while still full" }
    );
    println!(
        "  while full: {} bulk requests, {} 409s, {} created; {} ERROR and {} WARN log lines ({:.1} per second)",
        during.requests - before.requests,
        during.conflicts_409 - before.conflicts_409,
        during.created_201 - before.created_201,
        errors_full,
        warns_full,
        (errors_full + warns_full) as f64 / stop_at.duration_since(full_at).as_secs_f64()
    );
    println!(
        "  exit code {code:?}; journal {lines} complete documents ({bad} unreadable), Elasticsearch {} documents, journal documents missing from Elasticsearch: {}",
        stored.len(),
        ids.difference(&stored).count()
    );
    let said: Vec<&str> = out
        .lines()
        .chain(err.iter().map(|x| x.1.as_str()))
        .filter(|l| l.contains("lost") || l.contains("journal has") || l.contains("journal flush"))
        .collect();
    for l in said.iter().take(6) {
        println!("  said: {}", &l[..l.len().min(300)]);
    }
    let _ = Command::new("umount").arg(&mnt).status();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bin = args
        .iter()
        .position(|a| a == "--bin")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .expect("--bin PATH");
    let wanted: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["two", "timeout", "disk", "disk-recover"].contains(a))
        .collect();
    println!("binary: {}", bin.display());
    for s in wanted {
        match s {
            "two" => two_instances(&bin),
            "timeout" => timeout_runs(&bin, 10),
            "disk" => disk_full(&bin, false),
            "disk-recover" => disk_full(&bin, true),
            _ => unreachable!(),
        }
    }
}
