//! The built binary as an operator runs it: one instance per journal directory, stop signals
//! (two within a second are one request, a later one exits at once, SIGHUP stops gracefully,
//! Ctrl-C ends `run --once`'s wait for shipping), and `ship` waiting for Elasticsearch and
//! re-sending dead letters. Real processes and real time, with generous timeouts.

mod harness;
mod support;

use rustix::process::{kill_process, Pid, Signal};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::es_emulator::EsEmulator;

use support::bin;

/// A running binary whose stderr is read line by line.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stdout: std::thread::JoinHandle<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut s);
            s
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
            stdout,
        }
    }

    /// Waits for a stderr line containing `needle`.
    fn wait_for(&mut self, needle: &str, timeout: Duration) {
        if self.seen.iter().any(|l| l.contains(needle)) {
            return;
        }
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no `{needle}` in stderr:\n{}", self.seen.join("\n"));
                }
            }
        }
    }

    fn signal(&self, sig: Signal) {
        kill_process(Pid::from_child(&self.child), sig).unwrap();
    }

    /// Exit code, stdout and stderr, once it exits (killed after `timeout`).
    fn finish(mut self, timeout: Duration) -> (i32, String, String) {
        let end = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("still running after {timeout:?}:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        let out = self.stdout.join().unwrap();
        (
            status.code().expect("exited, not killed by a signal"),
            out,
            self.seen.join("\n"),
        )
    }
}

/// A configuration probing `sim_url` (one environment, `hosts` hosts), journal in `dir`.
fn write_config(dir: &Path, sim_url: &str, hosts: usize, extra: &str) {
    let mut text = format!(
        r#"
[journal]
dir = "journal"
flush_interval_ms = 20
[log]
dir = ""
{extra}
[environments.lab]
base_url = "{sim_url}"
rate_limit_per_sec = 1000
rate_limit_burst = 50
[environments.lab.credentials]
username = "probe"
password = "probe-secret"
[environments.lab.jobs]
backup_interval_secs = 2
poll_interval_ms = 100
poll_jitter_ms = 10
max_duration_secs = 120
"#
    );
    for i in 0..hosts {
        text.push_str(&format!(
            "[[environments.lab.hosts]]\nname = \"host-{i:03}\"\nlevel = \"FULL\"\n"
        ));
    }
    std::fs::write(dir.join("probe.toml"), text).unwrap();
}

/// A simulator whose jobs run 20–30 s: stopped runs have jobs in flight to hand over.
fn slow_jobs_simulator() -> iaso_probe::simulator::SimulatorHandle {
    harness::simulator(
        "seed = 3\nlatency_ms = { min = 0, max = 1 }\njob_duration_ms = { min = 20000, max = 30000 }\n",
    )
}

fn fast_simulator() -> iaso_probe::simulator::SimulatorHandle {
    harness::simulator(
        "seed = 3\nlatency_ms = { min = 0, max = 1 }\njob_duration_ms = { min = 20, max = 100 }\n",
    )
}

/// An address nothing listens on.
fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

fn service_run(dir: &Path) -> Running {
    let mut c = bin(dir);
    c.args(["--config", "probe.toml", "run", "--no-progress"]);
    Running::start(c)
}

/// Waits until the simulator launched `n` backups.
fn wait_launches(sim: &iaso_probe::simulator::SimulatorHandle, n: u64) {
    harness::wait_until("launches", Duration::from_secs(60), || {
        sim.counters().backups_launched >= n
    });
}

/// Job ids of successful launches in the journal, and of the handed-over jobs.
fn launched_and_handed(dir: &Path) -> (Vec<String>, Vec<String>) {
    let mut launched: Vec<String> = harness::journal(dir)
        .into_iter()
        .filter(|r| {
            r.event.action == iaso_probe::model::Action::BackupLaunch
                && r.event.outcome == iaso_probe::model::Outcome::Success
        })
        .filter_map(|r| r.iaso.job.and_then(|j| j.id))
        .collect();
    let file = dir.join("journal/tracked-jobs.json");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut handed: Vec<String> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_owned())
        .collect();
    launched.sort();
    handed.sort();
    (launched, handed)
}

#[test]
fn a_second_instance_on_the_same_journal_directory_exits_2_naming_it_and_the_holder() {
    let sim = fast_simulator();
    let d = tempfile::tempdir().unwrap();
    write_config(d.path(), &sim.base_url(), 3, "");
    let mut first = service_run(d.path());
    first.wait_for("run starting", Duration::from_secs(60));
    let pid = first.child.id();
    // The lock is taken right after "run starting"; the file then holds the pid.
    let lock = d.path().join("journal/LOCK");
    harness::wait_until("a LOCK with the pid", Duration::from_secs(30), || {
        std::fs::read_to_string(&lock).is_ok_and(|t| t.trim() == pid.to_string())
    });
    for args in [
        vec!["--config", "probe.toml", "run", "--once"],
        vec!["--config", "probe.toml", "ship"],
    ] {
        let started = Instant::now();
        let o = bin(d.path())
            .env("ELASTICSEARCH_URL", closed_port_url())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("journal directory journal is in use by another iaso-probe")
                && err.contains(&format!("pid {pid}"))
                && err.contains("--shard"),
            "{args:?}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "failed at once"
        );
    }
    first.signal(Signal::TERM);
    let (code, _, err) = first.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    assert!(harness::journal(d.path())
        .iter()
        .all(|r| !r.event.id.is_empty()));
}

#[test]
fn two_sigterms_1_ms_apart_are_one_stop_request_and_the_run_drains_fully() {
    let sim = slow_jobs_simulator();
    let d = tempfile::tempdir().unwrap();
    write_config(d.path(), &sim.base_url(), 6, "");
    let mut p = service_run(d.path());
    p.wait_for("run starting", Duration::from_secs(60));
    wait_launches(&sim, 6);
    // As `timeout` does: the child, then its process group, about a millisecond apart.
    p.signal(Signal::TERM);
    std::thread::sleep(Duration::from_millis(1));
    p.signal(Signal::TERM);
    let (code, _, err) = p.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    // The second signal is either seen and logged as part of the first stop, or merged with
    // the first before the prober sees it (the kernel does not queue a pending SIGTERM and
    // tokio's signal streams coalesce): one stop request either way, never a forced exit.
    let stops = err.matches("stop requested").count();
    assert!(err.contains("the same stop request") || stops == 1, "{err}");
    assert!(!err.contains("second signal"), "{err}");
    assert!(err.contains("journal flushed"), "{err}");
    let (launched, handed) = launched_and_handed(d.path());
    assert!(launched.len() >= 6, "{launched:?}");
    assert_eq!(handed, launched, "every job in flight handed over");
}

/// A simulator whose status answers take a minute: every poll is in flight at the stop.
fn hanging_status_simulator() -> iaso_probe::simulator::SimulatorHandle {
    harness::simulator(
        "seed = 3\nlatency_ms = { min = 0, max = 1 }\njob_duration_ms = { min = 20000, max = 30000 }\n\
         [endpoint_faults.job_status]\nlatency_ms = { min = 60000, max = 60000 }\n",
    )
}

#[test]
fn a_stop_hands_over_jobs_whose_status_poll_is_in_flight_without_waiting_for_the_answer() {
    let sim = hanging_status_simulator();
    let d = tempfile::tempdir().unwrap();
    // A request timeout longer than the shutdown deadline: waiting for the answers cannot
    // hand the jobs over in time, only abandoning the (idempotent) status reads can.
    write_config(d.path(), &sim.base_url(), 5, "");
    let file = d.path().join("probe.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replace(
        "rate_limit_burst = 50\n",
        "rate_limit_burst = 50\ntimeout_ms = 120000\n",
    );
    std::fs::write(&file, text).unwrap();
    let mut p = service_run(d.path());
    p.wait_for("run starting", Duration::from_secs(60));
    wait_launches(&sim, 5);
    harness::wait_until("polls", Duration::from_secs(60), || {
        sim.counters().endpoint("job_status").requests >= 5
    });
    p.signal(Signal::TERM);
    let (code, _, err) = p.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("still active at the shutdown deadline"),
        "{err}"
    );
    let (launched, handed) = launched_and_handed(d.path());
    assert_eq!(launched.len(), 5, "{launched:?}");
    assert_eq!(
        handed, launched,
        "every job whose poll was in flight handed over"
    );
}

#[test]
fn sighup_stops_gracefully_with_exit_code_129_and_hands_jobs_over() {
    let sim = slow_jobs_simulator();
    let d = tempfile::tempdir().unwrap();
    write_config(d.path(), &sim.base_url(), 4, "");
    let mut p = service_run(d.path());
    p.wait_for("run starting", Duration::from_secs(60));
    wait_launches(&sim, 4);
    p.signal(Signal::HUP);
    let (code, _, err) = p.finish(Duration::from_secs(60));
    assert_eq!(code, 129, "{err}");
    assert!(
        err.contains("stopped by SIGHUP") && err.contains("not reloaded"),
        "{err}"
    );
    assert!(err.contains("journal flushed"), "{err}");
    let (launched, handed) = launched_and_handed(d.path());
    assert!(launched.len() >= 4);
    assert_eq!(handed, launched);
}

#[test]
fn a_real_second_signal_later_exits_at_once() {
    let sim = fast_simulator();
    let d = tempfile::tempdir().unwrap();
    // Elasticsearch unreachable: the stop then waits 10 s for shipping.
    let es = format!(
        "[elasticsearch]\nurls = [\"{}\"]\nsetup_on_start = false\n",
        closed_port_url()
    );
    write_config(d.path(), &sim.base_url(), 2, &es);
    let mut p = service_run(d.path());
    p.wait_for("run starting", Duration::from_secs(60));
    // Results in the journal that cannot be shipped: the stop waits for them.
    harness::wait_until("results in the journal", Duration::from_secs(60), || {
        harness::journal_lines_with(d.path(), "") > 0
    });
    p.signal(Signal::TERM);
    p.wait_for("journal flushed", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1200));
    let t0 = Instant::now();
    p.signal(Signal::TERM);
    let (code, _, err) = p.finish(Duration::from_secs(30));
    assert_eq!(code, 143, "{err}");
    assert!(err.contains("second signal (SIGTERM"), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "not at once: {:?}",
        t0.elapsed()
    );
}

#[test]
fn ctrl_c_ends_the_shipping_wait_of_run_once_and_the_results_stay_in_the_journal() {
    let sim = fast_simulator();
    let d = tempfile::tempdir().unwrap();
    let es = format!(
        "[elasticsearch]\nurls = [\"{}\"]\nsetup_on_start = false\nonce_ship_deadline_secs = 120\n",
        closed_port_url()
    );
    write_config(d.path(), &sim.base_url(), 2, &es);
    let mut c = bin(d.path());
    c.args(["--config", "probe.toml", "run", "--once", "--no-progress"]);
    let mut p = Running::start(c);
    p.wait_for("journal flushed", Duration::from_secs(60));
    let t0 = Instant::now();
    p.signal(Signal::INT);
    let (code, out, err) = p.finish(Duration::from_secs(60));
    assert_eq!(code, 130, "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the 120 s wait was not cut short"
    );
    assert!(err.contains("ended the wait for shipping"), "{err}");
    let n = harness::journal(d.path()).len();
    assert!(n > 0);
    assert!(out.contains(&format!("{n} still unshipped")), "{out}");
}

/// A journal written by `run --once --env prod` (embedded simulators), in `dir/data/journal`.
fn embedded_journal(dir: &Path) -> usize {
    let o = bin(dir)
        .args(["run", "--once", "--env", "prod", "--no-progress"])
        .output()
        .unwrap();
    assert!(matches!(o.status.code(), Some(0) | Some(1)));
    iaso_probe::sink::journal::read_all(&dir.join("data/journal"))
        .unwrap()
        .len()
}

#[test]
fn ship_waits_for_elasticsearch_within_its_deadline_and_succeeds_when_it_comes_back() {
    let d = tempfile::tempdir().unwrap();
    let lines = embedded_journal(d.path());
    let emu = std::sync::Arc::new(EsEmulator::start());
    emu.set_down(true);
    let e2 = emu.clone();
    let back = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2500));
        e2.set_down(false);
    });
    let o = bin(d.path())
        .env("ELASTICSEARCH_URL", emu.url())
        .args(["ship", "--deadline", "2m"])
        .output()
        .unwrap();
    back.join().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("0 results still unshipped"), "{out}");
    assert_eq!(emu.count("*-iaso.*"), lines);
}

#[test]
fn ship_against_an_unreachable_elasticsearch_stops_at_the_deadline_saying_why() {
    let d = tempfile::tempdir().unwrap();
    let lines = embedded_journal(d.path());
    let t0 = Instant::now();
    let o = bin(d.path())
        .env("ELASTICSEARCH_URL", closed_port_url())
        .args(["ship", "--deadline", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "gave up before the deadline"
    );
    assert!(
        err.contains("stopped at the deadline (2 s)")
            && err.contains(&format!("{lines} results unshipped"))
            && err.contains("Elasticsearch unavailable or failing, last error:")
            && err.contains("transport error")
            && err.contains("Connection refused"),
        "{err}"
    );
}

#[test]
fn ship_dead_letter_sends_dead_lettered_documents_again() {
    let d = tempfile::tempdir().unwrap();
    let lines = embedded_journal(d.path());
    let emu = EsEmulator::start();
    emu.set_reject_field(Some("iaso.limit_ms".into()));
    let ship = |args: &[&str]| {
        let o = bin(d.path())
            .env("ELASTICSEARCH_URL", emu.url())
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let (code, out) = ship(&["ship"]);
    assert_eq!(code, Some(0), "{out}");
    let dead = emu.count("*-iaso.*");
    let n = lines - dead;
    assert!(n > 0, "{out}");
    emu.set_reject_field(None);
    let (code, out) = ship(&["ship", "--dead-letter"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "dead letters: {n} sent again: {n} stored, 0 already there, 0 still refused"
        )),
        "{out}"
    );
    assert_eq!(emu.count("*-iaso.*"), lines);
    assert!(!d.path().join("data/journal/dead-letter.ndjson").exists());
}

#[test]
fn help_prints_the_exit_code_table() {
    let d = tempfile::tempdir().unwrap();
    let o = bin(d.path()).arg("--help").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "Exit codes:",
        "129",
        "130",
        "143",
        "journal directory in use",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}
