//! Shared helpers of the prober's integration tests: a simulator per test, configurations
//! written as TOML (so the real loading and validation run), the journal read back.
#![allow(dead_code)]

use iaso_probe::config::load::load_with;
use iaso_probe::config::{Config, ConfigSource};
use iaso_probe::model::{Action, ProbeResult};
use iaso_probe::simulator::{self, SimulatorConfig, SimulatorHandle};
use iaso_probe::{RunOptions, RunReport};
use std::future::Future;
use std::path::Path;

/// A simulator with the given settings (TOML of the `[simulator]` keys) on 127.0.0.1:0.
pub fn simulator(toml: &str) -> SimulatorHandle {
    let cfg: SimulatorConfig = toml::from_str(toml).expect("simulator settings");
    cfg.validate().expect("valid simulator settings");
    simulator::spawn(cfg, "127.0.0.1:0".parse().unwrap()).expect("simulator starts")
}

/// Loads `text` as a configuration file (without the process environment).
pub fn config(dir: &Path, text: &str) -> Config {
    let f = dir.join("test.toml");
    std::fs::write(&f, text).unwrap();
    match load_with(&ConfigSource::Files(vec![f]), false) {
        Ok(l) => l.config,
        Err(e) => panic!("test configuration rejected: {e}\n{text}"),
    }
}

/// The `[journal]` (in `dir/journal`, flushed every 20 ms) and `[log]` (stderr only)
/// tables every test configuration starts with.
pub fn journal_and_log(dir: &Path) -> String {
    format!(
        "[journal]\ndir = \"{}\"\nflush_interval_ms = 20\n[log]\ndir = \"\"\n",
        dir.join("journal").display()
    )
}

/// The ids of the results that `pick` selects.
pub fn ids_where(
    results: &[ProbeResult],
    pick: impl Fn(&ProbeResult) -> bool,
) -> std::collections::BTreeSet<String> {
    results
        .iter()
        .filter(|r| pick(r))
        .map(|r| r.event.id.clone())
        .collect()
}

/// A configuration with one environment `name` pointed at `base_url`, journal in `dir`.
/// `extra` is appended inside `[environments.<name>]` (before its sub-tables).
pub fn one_env(dir: &Path, name: &str, base_url: &str, extra: &str, tail: &str) -> Config {
    let text = format!(
        r#"
{head}[environments.{name}]
base_url = "{base_url}"
rate_limit_per_sec = 1000
rate_limit_burst = 50
{extra}
[environments.{name}.credentials]
username = "probe"
password = "probe-secret"
[environments.{name}.jobs]
{poll}poll_jitter_ms = 10
max_duration_secs = 30
{tail}
"#,
        head = journal_and_log(dir),
        poll = if tail.contains("poll_interval_ms") {
            ""
        } else {
            "poll_interval_ms = 20\n"
        },
    );
    config(dir, &text)
}

/// `n` hosts as TOML entries of environment `name`.
pub fn hosts(name: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            let level = ["FULL", "INCREMENTAL", "DIFFERENTIAL", "SYNTHETIC_FULL"][i % 4];
            format!("[[environments.{name}.hosts]]\nname = \"host-{i:05}\"\nlevel = \"{level}\"\n")
        })
        .collect()
}

/// Runs `run --once` in a fresh actix System.
pub fn run_once(cfg: Config) -> RunReport {
    run_with(cfg, true, std::future::pending())
}

/// Runs in a fresh actix System with the given shutdown future.
pub fn run_with(
    cfg: Config,
    once: bool,
    shutdown: impl Future<Output = ()> + 'static,
) -> RunReport {
    let opts = RunOptions {
        once,
        seed: Some(7),
        ..Default::default()
    };
    actix::System::new()
        .block_on(iaso_probe::run(cfg, opts, shutdown))
        .expect("run succeeds")
}

/// Every result of the journal, parsed strictly (unknown fields fail).
pub fn journal(dir: &Path) -> Vec<ProbeResult> {
    iaso_probe::sink::journal::read_all(&dir.join("journal"))
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad journal line {l}: {e}")))
        .collect()
}

/// Every record of a dead-letter file (`<journal>/dead-letter.ndjson`), as JSON.
pub fn dead_letters(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad dead letter {l}: {e}")))
        .collect()
}

/// The results among `results` whose error is of type `kind`.
pub fn with_error<'a>(
    results: &[&'a ProbeResult],
    kind: iaso_probe::model::ErrorType,
) -> Vec<&'a ProbeResult> {
    results
        .iter()
        .copied()
        .filter(|r| r.error.as_ref().is_some_and(|e| e.kind == kind))
        .collect()
}

pub fn count(results: &[ProbeResult], action: Action) -> u64 {
    results.iter().filter(|r| r.event.action == action).count() as u64
}

/// Blocks until `cond` holds, looking every 10 ms; panics with `what` after `limit`.
pub fn wait_until(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Resolves once `cond` holds (looked at every 20 ms) or `limit` passed, without
/// panicking: a shutdown future for `run_with`, whose asserts then say what went wrong.
pub async fn until(limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() && t0.elapsed() < limit {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Journal lines of `dir/journal` containing `needle` (0 while there is no journal yet).
pub fn journal_lines_with(dir: &Path, needle: &str) -> usize {
    iaso_probe::sink::journal::read_all(&dir.join("journal"))
        .map(|l| l.iter().filter(|l| l.contains(needle)).count())
        .unwrap_or(0)
}

/// The simulator settings the integration tests use: latency of 0 to `latency_max_ms`,
/// jobs of `jobs_ms`, shares of failed and warning jobs and of unhealthy components (None:
/// the simulator's default).
#[derive(Clone, Copy)]
pub struct Sim {
    pub seed: u64,
    pub latency_max_ms: u64,
    pub jobs_ms: (u64, u64),
    pub failure: Option<f64>,
    pub warning: Option<f64>,
    pub unhealthy: Option<f64>,
}

/// Quick, mixed outcomes: failed and warning jobs, unhealthy components (shipping, real_es).
pub const SIM_MIXED: Sim = Sim::new(5, 1, (30, 200))
    .failure(0.2)
    .warning(0.1)
    .unhealthy(0.3);

impl Sim {
    /// `seed`, latency of 0 to `latency_max_ms`, jobs of `jobs_ms`; other shares default.
    pub const fn new(seed: u64, latency_max_ms: u64, jobs_ms: (u64, u64)) -> Sim {
        Sim {
            seed,
            latency_max_ms,
            jobs_ms,
            failure: None,
            warning: None,
            unhealthy: None,
        }
    }

    pub const fn failure(self, share: f64) -> Sim {
        Sim {
            failure: Some(share),
            ..self
        }
    }

    pub const fn warning(self, share: f64) -> Sim {
        Sim {
            warning: Some(share),
            ..self
        }
    }

    pub const fn unhealthy(self, share: f64) -> Sim {
        Sim {
            unhealthy: Some(share),
            ..self
        }
    }

    /// The same with jobs of `min..=max` ms.
    pub const fn jobs(self, min: u64, max: u64) -> Sim {
        Sim {
            jobs_ms: (min, max),
            ..self
        }
    }

    /// As the TOML of the `[simulator]` keys.
    pub fn toml(&self) -> String {
        let mut t = format!(
            "seed = {}\nlatency_ms = {{ min = 0, max = {} }}\njob_duration_ms = {{ min = {}, max = {} }}\n",
            self.seed, self.latency_max_ms, self.jobs_ms.0, self.jobs_ms.1
        );
        for (key, v) in [
            ("job_failure_ratio", self.failure),
            ("job_warning_ratio", self.warning),
            ("unhealthy_ratio", self.unhealthy),
        ] {
            if let Some(v) = v {
                t += &format!("{key} = {v:?}\n");
            }
        }
        t
    }

    /// A simulator with these settings on 127.0.0.1:0.
    pub fn start(&self) -> SimulatorHandle {
        simulator(&self.toml())
    }
}

/// One HTTP/1.1 request read from `conn` by a raw test portal: its head (up to the blank
/// line) and its body (by Content-Length; shorter if the connection ends first), taken off
/// the front of `buf`, which keeps what follows. None when the connection ends, or fails,
/// before a whole head.
pub fn read_request(conn: &mut impl std::io::Read, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 4096];
    let mut more = |buf: &mut Vec<u8>| match conn.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    };
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if !more(buf) {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len && more(buf) {}
    let end = buf.len().min(head_end + len);
    let body = buf[head_end..end].to_vec();
    buf.drain(..end);
    Some((head, body))
}
