//! Tests only: what the actor and client unit tests share. A recording sink (the real sink
//! actor on a temporary journal, read back after a flush) and an environment runtime
//! pointed at a simulator, built from TOML the way a configuration file is written.

pub(crate) mod loopback;

use crate::actors::sink::Sink;
use crate::api::TokenManager;
use crate::config::{EnvironmentConfig, JobLimits, JournalConfig, Secret};
use crate::limiter::EnvLimits;
use crate::model::{Action, ProbeResult, ResultContext};
use crate::runtime::EnvRuntime;
use crate::runtime::SinkHandle;
use crate::sink::journal::Journal;
use actix::Actor;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;

/// Records every result producers publish, in order (through the real sink actor and
/// journal, so back-pressure and encoding are those of a run).
pub(crate) struct RecordingSink {
    dir: tempfile::TempDir,
    pub handle: SinkHandle,
}

impl RecordingSink {
    /// Starts the sink actor (needs an actix System).
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            dir: dir.path().to_owned(),
            ..Default::default()
        };
        let journal = Journal::open(dir.path(), 1 << 30).unwrap();
        let handle = SinkHandle::new(
            Sink::new(journal, cfg, true).start(),
            NonZeroUsize::new(64).unwrap(),
        );
        Self { dir, handle }
    }

    /// Every result published so far.
    pub(crate) async fn results(&self) -> Vec<ProbeResult> {
        self.handle.flush().await.unwrap();
        crate::sink::journal::read_all(self.dir.path())
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The results of `action`, in order.
    pub(crate) async fn of(&self, action: Action) -> Vec<ProbeResult> {
        let mut all = self.results().await;
        all.retain(|r| r.event.action == action);
        all
    }
}

/// An environment `lab` at `base_url`, user `probe` with the simulator's default password
/// unless `toml` has a `[credentials]` table; `toml` holds further keys of
/// `[environments.lab]` (and its sub-tables, after the keys).
pub(crate) fn env_runtime(base_url: &str, toml: &str, sink: &RecordingSink) -> Arc<EnvRuntime> {
    // 1,000/s unless the test sets its own limits.
    let limits = if toml.contains("rate_limit_per_sec") {
        ""
    } else {
        "rate_limit_per_sec = 1000\nrate_limit_burst = 1000\n"
    };
    let mut text = format!("base_url = \"{base_url}\"\n{limits}{toml}\n");
    if !toml.contains("[credentials]") {
        text += "[credentials]\npassword = \"probe-secret\"\n";
    }
    let cfg: EnvironmentConfig =
        toml::from_str(&text).unwrap_or_else(|e| panic!("environment TOML: {e}\n{text}"));
    let limits = Arc::new(EnvLimits::new(
        "lab",
        NonZeroU32::new(cfg.rate_limit_per_sec).unwrap(),
        NonZeroU32::new(cfg.rate_limit_burst).unwrap(),
        NonZeroUsize::new(cfg.max_in_flight).unwrap(),
    ));
    let password = cfg.credentials.password.clone().unwrap_or(Secret::new(""));
    let jobs = JobLimits::new(cfg.jobs.launch_concurrency, cfg.jobs.max_tracked_jobs).unwrap();
    Arc::new(EnvRuntime {
        name: "lab".into(),
        tokens: TokenManager::new("probe".into(), password),
        hosts: cfg.hosts.clone(),
        cfg: Arc::new(cfg),
        base_url: base_url.to_owned(),
        limits,
        jobs,
        ctx: ResultContext::new("test-run", "lab", "test-host"),
        sink: sink.handle.clone(),
    })
}

/// A quiet simulator: no latency, no faults, jobs that end at once.
pub(crate) fn quiet_simulator() -> crate::simulator::SimulatorConfig {
    toml::from_str(
        "latency_ms = { min = 0, max = 0 }\njob_duration_ms = { min = 0, max = 0 }\n\
         job_failure_ratio = 0.0\njob_warning_ratio = 0.0\njob_fail_to_start_ratio = 0.0\n",
    )
    .unwrap()
}
