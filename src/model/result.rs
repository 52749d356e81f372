//! The result document (docs/result-schema.md): ECS names, Heartbeat names for checks,
//! serialized as nested JSON; absent fields are omitted, never `null`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{BackupLevel, JobKind, JobResult};

/// `event.dataset`: which data stream family the result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dataset {
    #[serde(rename = "iaso.checks")]
    Checks,
    #[serde(rename = "iaso.jobs")]
    Jobs,
}

impl Dataset {
    /// The legacy data stream family (`iaso-checks`, `iaso-jobs`): where documents without
    /// `data_stream.*` (journal lines written before it existed) still go.
    pub(crate) fn stream_prefix(self) -> &'static str {
        match self {
            Dataset::Checks => "iaso-checks",
            Dataset::Jobs => "iaso-jobs",
        }
    }

    /// `data_stream.type`: checks are synthetic monitoring (`synthetics`, like Heartbeat's
    /// streams under Fleet), jobs are event logs (`logs`).
    pub(crate) fn stream_type(self) -> &'static str {
        match self {
            Dataset::Checks => "synthetics",
            Dataset::Jobs => "logs",
        }
    }

    /// `data_stream.dataset` (= `event.dataset`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dataset::Checks => "iaso.checks",
            Dataset::Jobs => "iaso.jobs",
        }
    }
}

/// The ECS version the documents follow (`ecs.version`).
pub(crate) const ECS_VERSION: &str = "8.11.0";

/// `event.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "liveness")]
    Liveness,
    #[serde(rename = "health")]
    Health,
    #[serde(rename = "response_time")]
    ResponseTime,
    #[serde(rename = "auth")]
    Auth,
    #[serde(rename = "backup.launch")]
    BackupLaunch,
    #[serde(rename = "restore.launch")]
    RestoreLaunch,
    #[serde(rename = "job.status")]
    JobStatus,
    #[serde(rename = "job.end")]
    JobEnd,
}

impl Action {
    pub(crate) const ALL: [Action; 8] = [
        Action::Liveness,
        Action::Health,
        Action::ResponseTime,
        Action::Auth,
        Action::BackupLaunch,
        Action::RestoreLaunch,
        Action::JobStatus,
        Action::JobEnd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Liveness => "liveness",
            Action::Health => "health",
            Action::ResponseTime => "response_time",
            Action::Auth => "auth",
            Action::BackupLaunch => "backup.launch",
            Action::RestoreLaunch => "restore.launch",
            Action::JobStatus => "job.status",
            Action::JobEnd => "job.end",
        }
    }

    pub fn dataset(self) -> Dataset {
        match self {
            Action::Liveness | Action::Health | Action::ResponseTime | Action::Auth => {
                Dataset::Checks
            }
            _ => Dataset::Jobs,
        }
    }
}

/// `event.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Unknown,
}

/// `error.type`: a closed list, so dashboards can group on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    Timeout,
    Connect,
    HttpStatus,
    Decode,
    Assertion,
    Auth,
    RateLimited,
    Skipped,
    BodyTooLarge,
    JobFailed,
    JobTimeout,
    PollFailed,
    Cancelled,
    /// The transport failed after the connection was made (reset, early EOF mid-body).
    Network,
    /// The configuration (or a value it must be combined with, like a token that cannot be
    /// a header value) makes the request impossible to send.
    Config,
    /// A bug in the prober (a panic caught in an actor); the run exits 2.
    Internal,
    /// A TLS handshake or certificate failure.
    Tls,
    /// A 3xx not followed (or too many redirects).
    Redirect,
    /// The portal reported an error inside a 2xx answer (its own code and message).
    ApiError,
}

impl ErrorType {
    /// Every type, in declaration order (`ALL[t as usize] == t`): tables indexed by type
    /// (the metrics' counters) are sized by it. Adding a variant without listing it here
    /// fails `all_lists_every_error_type_in_order`.
    pub(crate) const ALL: [ErrorType; 19] = [
        ErrorType::Timeout,
        ErrorType::Connect,
        ErrorType::HttpStatus,
        ErrorType::Decode,
        ErrorType::Assertion,
        ErrorType::Auth,
        ErrorType::RateLimited,
        ErrorType::Skipped,
        ErrorType::BodyTooLarge,
        ErrorType::JobFailed,
        ErrorType::JobTimeout,
        ErrorType::PollFailed,
        ErrorType::Cancelled,
        ErrorType::Network,
        ErrorType::Config,
        ErrorType::Internal,
        ErrorType::Tls,
        ErrorType::Redirect,
        ErrorType::ApiError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Timeout => "timeout",
            ErrorType::Connect => "connect",
            ErrorType::HttpStatus => "http_status",
            ErrorType::Decode => "decode",
            ErrorType::Assertion => "assertion",
            ErrorType::Auth => "auth",
            ErrorType::RateLimited => "rate_limited",
            ErrorType::Skipped => "skipped",
            ErrorType::BodyTooLarge => "body_too_large",
            ErrorType::JobFailed => "job_failed",
            ErrorType::JobTimeout => "job_timeout",
            ErrorType::PollFailed => "poll_failed",
            ErrorType::Cancelled => "cancelled",
            ErrorType::Network => "network",
            ErrorType::Config => "config",
            ErrorType::Internal => "internal",
            ErrorType::Tls => "tls",
            ErrorType::Redirect => "redirect",
            ErrorType::ApiError => "api_error",
        }
    }
}

/// One result document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeResult {
    #[serde(rename = "@timestamp", with = "millis")]
    pub timestamp: DateTime<Utc>,
    pub event: Event,
    pub service: Service,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Http>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Host>,
    #[serde(default, skip_serializing_if = "Iaso::is_empty")]
    pub iaso: Iaso,
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
    pub observer: Observer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Monitor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// Heartbeat's `state.*` of the monitor, as of this check (written by the sink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<MonitorStateDoc>,
    /// `data_stream.*`: which stream the document goes to (absent on legacy journal lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_stream: Option<DataStream>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs: Option<Ecs>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataStream {
    #[serde(rename = "type")]
    pub kind: String,
    pub dataset: String,
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ecs {
    pub version: String,
}

/// Heartbeat's `state`: the monitor's current state (up / down / flap), since when, for how
/// many checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorStateDoc {
    pub id: String,
    pub status: String,
    #[serde(with = "millis")]
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub checks: u64,
    pub up: u64,
    pub down: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub id: String,
    pub dataset: Dataset,
    pub action: Action,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    pub sequence: u64,
    /// ECS `event.kind`: always `event` (absent on legacy journal lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub environment: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Url {
    pub full: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    pub request: HttpRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    pub method: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpResponse {
    pub status_code: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorInfo {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Iaso {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<IasoJob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<IasoBackup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<IasoRestore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<IasoHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_ms: Option<u64>,
}

impl Iaso {
    fn is_empty(&self) -> bool {
        *self == Iaso::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IasoJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub kind: JobKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polls: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IasoBackup {
    pub level: BackupLevel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IasoRestore {
    pub file_name: String,
    pub source_path: String,
    pub destination_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IasoHealth {
    pub component: String,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    pub run_id: String,
    /// `I/N` when the run is shard I of N (`--shard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observer {
    pub hostname: String,
    pub version: String,
    /// `observer.geo.name`: where the prober runs (Heartbeat's `run_from.geo.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<Geo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geo {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitor {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub duration: MonitorDuration,
    /// Human name: `<check> (<environment>)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Shared by every document of one check run (a health pass: one per component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_group: Option<String>,
    /// From the run's start until the next scheduled run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timespan: Option<Timespan>,
}

/// A `date_range` value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timespan {
    #[serde(with = "millis")]
    pub gte: DateTime<Utc>,
    #[serde(with = "millis")]
    pub lt: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorDuration {
    pub us: u64,
}

/// Heartbeat's `summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub up: u64,
    pub down: u64,
    pub attempt: u32,
    pub max_attempts: u32,
    /// `up` / `down`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// True on the attempt that decides (up, or the last allowed): only such documents
    /// count for availability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_attempt: Option<bool>,
    /// Shared by the attempts of one check run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_group: Option<String>,
}

/// One run of a check: what its documents share (`monitor.check_group`, the timespan until
/// the next scheduled run).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckRun {
    pub group: String,
    pub started: DateTime<Utc>,
    pub interval: Duration,
}

mod millis {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// What every result of one environment in one run shares; hands out sequence numbers
/// and deterministic ids. Cheap to clone (shared counter).
#[derive(Debug, Clone)]
pub struct ResultContext {
    pub run_id: Arc<str>,
    pub environment: Arc<str>,
    pub observer_hostname: Arc<str>,
    /// `labels.shard` of every result (`I/N`), when sharded.
    pub shard: Option<Arc<str>>,
    /// `data_stream.namespace` (the environment name unless configured).
    pub namespace: Arc<str>,
    /// `observer.geo.name`, when configured.
    pub geo_name: Option<Arc<str>>,
    sequence: Arc<AtomicU64>,
    traces: Arc<AtomicU64>,
    check_runs: Arc<AtomicU64>,
}

impl ResultContext {
    pub fn new(run_id: &str, environment: &str, observer_hostname: &str) -> Self {
        Self {
            run_id: run_id.into(),
            environment: environment.into(),
            observer_hostname: observer_hostname.into(),
            shard: None,
            namespace: environment.into(),
            geo_name: None,
            sequence: Arc::new(AtomicU64::new(0)),
            traces: Arc::new(AtomicU64::new(0)),
            check_runs: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Results written to the data streams of `namespace`.
    pub(crate) fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Results carrying `observer.geo.name`.
    pub(crate) fn with_geo_name(mut self, name: Option<&str>) -> Self {
        self.geo_name = name.map(Into::into);
        self
    }

    /// A new run of check `check`, scheduled every `interval`: its `monitor.check_group` is
    /// unique per run (a hash of run, environment, check and a counter) and its documents
    /// cover until the next scheduled run.
    pub(crate) fn check_run(&self, check: &str, interval: Duration) -> CheckRun {
        let n = self.check_runs.fetch_add(1, Ordering::Relaxed) + 1;
        let mut h = Sha256::new();
        // "check_group" keeps the hash apart from the event ids' (same other parts).
        for part in [
            b"check_group".as_slice(),
            self.run_id.as_bytes(),
            self.environment.as_bytes(),
            check.as_bytes(),
            &n.to_be_bytes(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        CheckRun {
            group: hex::encode(&h.finalize()[..16]),
            started: DateTime::from_timestamp_millis(Utc::now().timestamp_millis())
                .unwrap_or_default(),
            interval,
        }
    }

    /// Results labelled with the shard (`I/N`) of this instance.
    pub(crate) fn with_shard(mut self, shard: Option<String>) -> Self {
        self.shard = shard.map(Into::into);
        self
    }

    /// A new number for a job flow (`trace.id` is derived from it).
    pub(crate) fn next_trace(&self) -> u64 {
        self.traces.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A new result with the common fields filled in. The id hashes run, environment,
    /// action and sequence: unique per result, identical when the journal line is re-sent.
    pub fn result(&self, action: Action, outcome: Outcome) -> ProbeResult {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let mut h = Sha256::new();
        for part in [
            self.run_id.as_bytes(),
            self.environment.as_bytes(),
            action.as_str().as_bytes(),
            &sequence.to_be_bytes(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let id = hex::encode(&h.finalize()[..16]);
        ProbeResult {
            // Millisecond precision: what the document carries, so a journal line reads back equal.
            timestamp: DateTime::from_timestamp_millis(Utc::now().timestamp_millis())
                .unwrap_or_default(),
            event: Event {
                id,
                dataset: action.dataset(),
                action,
                outcome,
                duration: None,
                sequence,
                kind: Some("event".into()),
            },
            service: Service {
                environment: self.environment.to_string(),
            },
            url: None,
            http: None,
            error: None,
            host: None,
            iaso: Iaso::default(),
            labels: Labels {
                run_id: self.run_id.to_string(),
                shard: self.shard.as_deref().map(str::to_owned),
            },
            trace: None,
            observer: Observer {
                hostname: self.observer_hostname.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                geo: self.geo_name.as_deref().map(|name| Geo {
                    name: name.to_owned(),
                }),
            },
            monitor: None,
            summary: None,
            state: None,
            data_stream: Some(DataStream {
                kind: action.dataset().stream_type().to_owned(),
                dataset: action.dataset().as_str().to_owned(),
                namespace: self.namespace.to_string(),
            }),
            ecs: Some(Ecs {
                version: ECS_VERSION.to_owned(),
            }),
        }
    }
}

impl ProbeResult {
    pub fn with_duration(mut self, d: Duration) -> Self {
        self.event.duration = Some(d.as_nanos().min(u64::MAX as u128) as u64);
        self
    }

    pub fn with_error(mut self, kind: ErrorType, message: impl Into<String>) -> Self {
        self.error = Some(ErrorInfo {
            kind,
            message: message.into(),
        });
        self
    }

    pub fn with_http(mut self, method: &str, url: &str, status: Option<u16>) -> Self {
        self.url = Some(Url {
            full: url.to_owned(),
        });
        self.http = Some(Http {
            request: HttpRequest {
                method: method.to_owned(),
            },
            response: status.map(|status_code| HttpResponse { status_code }),
        });
        self
    }

    pub fn with_host(mut self, host: &str) -> Self {
        self.host = Some(Host {
            name: host.to_owned(),
        });
        self
    }

    pub(crate) fn with_trace(mut self, trace_id: &str) -> Self {
        self.trace = Some(Trace {
            id: trace_id.to_owned(),
        });
        self
    }

    /// Heartbeat fields of a check: `monitor_id` is `<env>-<check>`, `run` the check run the
    /// document belongs to.
    pub(crate) fn with_monitor(
        mut self,
        run: &CheckRun,
        monitor_id: String,
        attempt: u32,
        max_attempts: u32,
    ) -> Self {
        let up = self.event.outcome == Outcome::Success;
        let us = self.event.duration.unwrap_or(0) / 1000;
        let status = if up { "up" } else { "down" };
        let env = &self.service.environment;
        let check = monitor_id
            .strip_prefix(&format!("{env}-"))
            .unwrap_or(&monitor_id)
            .replace('-', " ");
        let interval = chrono::Duration::from_std(run.interval).unwrap_or(chrono::Duration::zero());
        self.monitor = Some(Monitor {
            name: Some(format!("{check} ({env})")),
            id: monitor_id,
            kind: "http".into(),
            status: status.into(),
            duration: MonitorDuration { us },
            check_group: Some(run.group.clone()),
            timespan: Some(Timespan {
                gte: run.started,
                lt: run.started + interval,
            }),
        });
        self.summary = Some(Summary {
            up: up as u64,
            down: (!up) as u64,
            attempt,
            max_attempts,
            status: Some(status.into()),
            final_attempt: Some(up || attempt >= max_attempts),
            retry_group: Some(run.group.clone()),
        });
        self
    }

    /// The data stream this result belongs to: `<type>-<dataset>-<namespace>`
    /// (`synthetics-iaso.checks-lab`, `logs-iaso.jobs-prod`), or the legacy
    /// `iaso-checks-<env>` / `iaso-jobs-<env>` for a result without `data_stream.*`.
    pub fn data_stream(&self) -> String {
        match &self.data_stream {
            Some(ds) => format!("{}-{}-{}", ds.kind, ds.dataset, ds.namespace),
            None => format!(
                "{}-{}",
                self.event.dataset.stream_prefix(),
                self.service.environment
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_per_result_and_stable_per_inputs() {
        let a = ResultContext::new("run-1", "lab", "obs");
        let b = ResultContext::new("run-1", "lab", "obs");
        let (a1, a2) = (
            a.result(Action::Liveness, Outcome::Success),
            a.result(Action::Liveness, Outcome::Success),
        );
        assert_ne!(a1.event.id, a2.event.id);
        assert_eq!(
            a1.event.id,
            b.result(Action::Liveness, Outcome::Success).event.id
        );
    }

    #[test]
    fn serializes_nested_without_nulls_and_round_trips() {
        let ctx = ResultContext::new("r", "lab", "obs");
        let r = ctx
            .result(Action::Liveness, Outcome::Success)
            .with_duration(Duration::from_millis(3))
            .with_http("GET", "http://x/api/v1/alive", Some(200));
        let run = ctx.check_run("liveness", Duration::from_secs(30));
        let r = r.with_monitor(&run, "lab-liveness".into(), 1, 1);
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains("null"), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"]["action"], "liveness");
        assert_eq!(v["monitor"]["duration"]["us"], 3000);
        assert_eq!(v["summary"]["up"], 1);
        assert_eq!(v["summary"]["status"], "up");
        assert_eq!(v["summary"]["final_attempt"], true);
        assert_eq!(v["monitor"]["check_group"], run.group.as_str());
        assert_eq!(v["monitor"]["name"], "liveness (lab)");
        assert_eq!(v["data_stream"]["type"], "synthetics");
        assert_eq!(v["data_stream"]["dataset"], "iaso.checks");
        assert_eq!(v["data_stream"]["namespace"], "lab");
        assert_eq!(v["ecs"]["version"], ECS_VERSION);
        assert_eq!(v["event"]["kind"], "event");
        let span = |k: &str| {
            DateTime::parse_from_rfc3339(v["monitor"]["timespan"][k].as_str().unwrap()).unwrap()
        };
        assert_eq!(
            (span("lt") - span("gte")).num_seconds(),
            30,
            "until the next run"
        );
        assert!(v["@timestamp"].as_str().unwrap().ends_with('Z'));
        let back: ProbeResult = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn all_lists_every_error_type_in_order() {
        for (i, t) in ErrorType::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i, "{t:?}");
        }
        // No wildcard: a new variant makes this match fail to compile until it is listed.
        fn listed(t: ErrorType) -> bool {
            match t {
                ErrorType::Timeout
                | ErrorType::Connect
                | ErrorType::HttpStatus
                | ErrorType::Decode
                | ErrorType::Assertion
                | ErrorType::Auth
                | ErrorType::RateLimited
                | ErrorType::Skipped
                | ErrorType::BodyTooLarge
                | ErrorType::JobFailed
                | ErrorType::JobTimeout
                | ErrorType::PollFailed
                | ErrorType::Cancelled
                | ErrorType::Network
                | ErrorType::Config
                | ErrorType::Internal
                | ErrorType::Tls
                | ErrorType::Redirect
                | ErrorType::ApiError => ErrorType::ALL.contains(&t),
            }
        }
        assert!(ErrorType::ALL.iter().all(|t| listed(*t)));
    }

    #[test]
    fn data_stream_is_type_dataset_namespace_and_legacy_without_data_stream_fields() {
        let ctx = ResultContext::new("r", "prod", "obs");
        assert_eq!(
            ctx.result(Action::JobEnd, Outcome::Success).data_stream(),
            "logs-iaso.jobs-prod"
        );
        assert_eq!(
            ctx.result(Action::Auth, Outcome::Failure).data_stream(),
            "synthetics-iaso.checks-prod"
        );
        let ctx = ctx.with_namespace("paris");
        assert_eq!(
            ctx.result(Action::Liveness, Outcome::Success).data_stream(),
            "synthetics-iaso.checks-paris"
        );
        let mut old = ctx.result(Action::Liveness, Outcome::Success);
        old.data_stream = None;
        assert_eq!(old.data_stream(), "iaso-checks-prod");
    }

    #[test]
    fn a_legacy_journal_line_still_reads() {
        let line = r#"{"@timestamp":"2026-11-28T10:00:00.000Z","event":{"id":"a","dataset":"iaso.checks","action":"liveness","outcome":"success","duration":1000,"sequence":1},"service":{"environment":"lab"},"labels":{"run_id":"r"},"observer":{"hostname":"o","version":"0.1.0"},"monitor":{"id":"lab-liveness","type":"http","status":"up","duration":{"us":1}},"summary":{"up":1,"down":0,"attempt":1,"max_attempts":1}}"#;
        let r: ProbeResult = serde_json::from_str(line).unwrap();
        assert_eq!(r.data_stream(), "iaso-checks-lab");
    }

    #[test]
    fn check_runs_have_distinct_groups_and_a_retry_is_final_only_when_it_decides() {
        let ctx = ResultContext::new("r", "lab", "obs");
        let (a, b) = (
            ctx.check_run("health", Duration::from_secs(60)),
            ctx.check_run("health", Duration::from_secs(60)),
        );
        assert_ne!(a.group, b.group);
        let first = ctx.result(Action::Liveness, Outcome::Success);
        assert_ne!(
            ResultContext::new("r", "lab", "obs")
                .check_run("liveness", Duration::from_secs(30))
                .group,
            first.event.id,
            "a check group never equals an event id"
        );
        let down = |attempt| {
            ctx.result(Action::Liveness, Outcome::Failure)
                .with_monitor(&a, "lab-liveness".into(), attempt, 3)
                .summary
                .unwrap()
        };
        assert_eq!(down(2).final_attempt, Some(false));
        assert_eq!(down(3).final_attempt, Some(true));
        assert_eq!(down(3).status.as_deref(), Some("down"));
    }
}
