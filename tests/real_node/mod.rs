//! A real Elasticsearch for integration tests: `tests/elasticsearch/start.sh` starts one JVM per
//! node, [`Node`] stops them by pid when dropped (also when a test panics), and every JVM also
//! watches this test process (`ES_WATCH_PID`) and exits once it is gone, so a node kept in a
//! `static` (never dropped) does not outlive `cargo test` either.
//!
//! Whether the suite runs: `IASO_PROBE_TEST_ES_URL` names a running cluster (used for the
//! tests that need no special node), else a node is started when `java` is on the PATH. When
//! neither is possible the test prints one line saying so and passes, unless
//! `IASO_PROBE_REQUIRE_REAL_ES=1` (CI), where it fails.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const URL_VAR: &str = "IASO_PROBE_TEST_ES_URL";
pub const REQUIRE_VAR: &str = "IASO_PROBE_REQUIRE_REAL_ES";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/elasticsearch")
        .join(name)
}

/// Why a real node cannot be had here, if it cannot.
pub fn java_missing() -> Option<String> {
    match Command::new("java").arg("-version").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("`java -version` failed ({})", o.status)),
        Err(e) => Some(format!("java is not on the PATH ({e})")),
    }
}

/// Reports that a test could not run: one line on the real stderr (not captured by the test
/// harness), or a failure under `IASO_PROBE_REQUIRE_REAL_ES=1`.
pub fn not_run(test: &str, why: &str) {
    let required = std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1");
    assert!(
        !required,
        "real-es {test}: could not run ({why}) and {REQUIRE_VAR}=1"
    );
    let _ = writeln!(
        std::io::stderr(),
        "real-es {test}: DID NOT RUN: {why} (set {URL_VAR} or install Java 17+; {REQUIRE_VAR}=1 makes this a failure)"
    );
}

/// `n` consecutive free loopback ports (best effort: free when probed).
pub fn free_ports(n: u16) -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = first.local_addr().unwrap().port();
        if base > 65_000 - n {
            continue;
        }
        let rest: Vec<_> = (1..n)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if rest.len() == usize::from(n - 1) {
            return base;
        }
    }
}

/// Nodes started by `start.sh` on their own data directory.
pub struct Node {
    dir: PathBuf,
    /// Removes the data directory on drop (nodes of a single test).
    _tmp: Option<tempfile::TempDir>,
    pub port: u16,
    transport_port: u16,
    pub nodes: usize,
    settings: Vec<String>,
    pids: Mutex<Vec<u32>>,
    /// Wall time of the last start.
    pub start_time: Duration,
    /// This test's turn among the nodes of their own (see [`own`]).
    _turn: Option<Turn>,
}

/// A turn among the tests that start nodes of their own: one at a time.
struct Turn;

static TURN_TAKEN: Mutex<bool> = Mutex::new(false);
static TURN_FREED: std::sync::Condvar = std::sync::Condvar::new();

impl Turn {
    fn take() -> Turn {
        let mut taken = TURN_TAKEN.lock().unwrap_or_else(|p| p.into_inner());
        while *taken {
            taken = TURN_FREED.wait(taken).unwrap_or_else(|p| p.into_inner());
        }
        *taken = true;
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *TURN_TAKEN.lock().unwrap_or_else(|p| p.into_inner()) = false;
        TURN_FREED.notify_one();
    }
}

impl Node {
    /// Starts `nodes` nodes with `settings` (`key=value` node settings) and waits for yellow.
    pub fn start(nodes: usize, settings: &[&str]) -> Result<Node, String> {
        let tmp = tempfile::Builder::new()
            .prefix("iaso-real-es-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        Node::start_in(tmp.path().to_owned(), Some(tmp), nodes, settings)
    }

    /// Starts in `dir` (kept after the test: the shared node, which is never dropped, lives
    /// under the target directory and is wiped by the next run).
    pub fn start_in(
        dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        nodes: usize,
        settings: &[&str],
    ) -> Result<Node, String> {
        let mut node = Node {
            dir,
            _tmp: tmp,
            port: free_ports(nodes as u16),
            transport_port: free_ports(nodes as u16),
            nodes,
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
            pids: Mutex::new(Vec::new()),
            start_time: Duration::ZERO,
            _turn: None,
        };
        node.start_again()?;
        Ok(node)
    }

    /// Runs `start.sh` again on the same ports and data directory (after [`Node::kill`]).
    pub fn start_again(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        let mut cmd = Command::new(script("start.sh"));
        cmd.arg(self.port.to_string())
            .arg(&self.dir)
            .arg(self.nodes.to_string())
            .env("ES_TRANSPORT_PORT", self.transport_port.to_string())
            .env("ES_WATCH_PID", std::process::id().to_string());
        for s in &self.settings {
            cmd.arg("-E").arg(s);
        }
        let out = cmd.output().map_err(|e| format!("start.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "start.sh failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        assert_eq!(pids.len(), self.nodes, "start.sh prints one pid per node");
        *self.pids.lock().unwrap() = pids;
        self.start_time = t0.elapsed();
        Ok(())
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// HTTP URL of node `n` (from 1).
    pub fn url_of(&self, n: usize) -> String {
        format!("http://127.0.0.1:{}", self.port + n as u16 - 1)
    }

    pub fn url(&self) -> String {
        self.url_of(1)
    }

    pub fn urls(&self) -> Vec<String> {
        (1..=self.nodes).map(|n| self.url_of(n)).collect()
    }

    /// `kill -9` of node `n`'s JVM (by its pid), waiting until it is gone.
    pub fn kill(&self, n: usize) {
        let pid = self.pids.lock().unwrap()[n - 1];
        kill_pid(pid);
    }
}

fn kill_pid(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let t0 = Instant::now();
    // `kill -0` fails once the process is gone (the JVM is not our child: start.sh forked it).
    while Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && t0.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for pid in self.pids.lock().unwrap().iter() {
            kill_pid(*pid);
        }
    }
}

/// The node the tests without special settings share: `IASO_PROBE_TEST_ES_URL`, or one node
/// started once for this test binary.
pub fn shared() -> Result<&'static str, String> {
    static SHARED: OnceLock<Result<(String, Option<Node>), String>> = OnceLock::new();
    let r = SHARED.get_or_init(|| {
        if let Ok(url) = std::env::var(URL_VAR) {
            return Ok((url.trim_end_matches('/').to_owned(), None));
        }
        if let Some(why) = java_missing() {
            return Err(why);
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "real-es-shared-{}",
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_default()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let node = Node::start_in(dir, None, 1, &[])?;
        let _ = writeln!(
            std::io::stderr(),
            "real-es: shared node at {} started in {:.1}s",
            node.url(),
            node.start_time.as_secs_f64()
        );
        Ok((node.url(), Some(node)))
    });
    r.as_ref().map(|(u, _)| u.as_str()).map_err(Clone::clone)
}

/// A node of its own with `settings`, for fault tests: needs Java.
pub fn own(nodes: usize, settings: &[&str]) -> Result<Node, String> {
    if let Some(why) = java_missing() {
        return Err(why);
    }
    // One node of its own at a time: up to four JVMs starting together (a 3-node cluster next
    // to a fault node) on 2 cores made the slowest test miss its waits. The turn is held for
    // the node's life (dropped after the JVMs are killed).
    let turn = Turn::take();
    let mut node = Node::start(nodes, settings)?;
    node._turn = Some(turn);
    Ok(node)
}

/// Blocking JSON requests to a node (each on a small runtime of its own, so they can be made
/// from any thread outside the prober's actix system).
pub struct Es {
    pub url: String,
}

impl Es {
    pub fn new(url: &str) -> Es {
        Es {
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    /// `method path` with an optional JSON body: (status, parsed body).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// [`Es::call`], with a transport failure as an error.
    pub fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap();
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut req = http.request(m, format!("{}{}", self.url, path));
            if let Some(b) = body {
                req = req.json(b);
            }
            let res = req.send().await.map_err(|e| e.to_string())?;
            let status = res.status().as_u16();
            let text = res.text().await.unwrap_or_default();
            Ok((
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            ))
        })
    }

    /// Like [`Es::call`], but the answer must be 2xx.
    pub fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, v) = self.call(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {v}"
        );
        v
    }

    /// Documents of `index` (after a refresh).
    pub fn count(&self, index: &str) -> u64 {
        self.ok("POST", &format!("/{index}/_refresh"), None);
        self.ok("GET", &format!("/{index}/_count"), None)["count"]
            .as_u64()
            .unwrap()
    }

    /// Every `_id` of `index` (after a refresh), duplicates kept.
    pub fn ids(&self, index: &str) -> Vec<String> {
        self.ok("POST", &format!("/{index}/_refresh"), None);
        let body =
            serde_json::json!({"size": 10_000, "_source": false, "query": {"match_all": {}}});
        let v = self.ok("POST", &format!("/{index}/_search"), Some(&body));
        assert_eq!(
            v["hits"]["total"]["relation"], "eq",
            "more hits than one page: {}",
            v["hits"]["total"]
        );
        v["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Write thread-pool rejections on every node so far.
    pub fn write_rejections(&self) -> u64 {
        let v = self.ok("GET", "/_nodes/stats/thread_pool", None);
        v["nodes"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n["thread_pool"]["write"]["rejected"].as_u64().unwrap_or(0))
            .sum()
    }
}
