//! Configuration: one serde tree (`deny_unknown_fields` everywhere), loaded by figment from
//! built-in defaults < TOML files < `IASO_PROBE_*` environment variables (`load`); what it
//! refers to outside itself (secrets, hosts files, TLS files, proxy variables) read once
//! (`resolve`); checked by a pure `validate`; and carried as a [`ValidConfig`] (`valid`).
//!
//! Every field's `///` comment is its user documentation; `config/example.toml` repeats it.

mod api;
pub mod load;
mod outbound;
pub mod proxy;
mod resolve;
mod secret;
pub mod tls;
mod valid;
mod validate;

pub use api::{body_strings, placeholder_names, typed_placeholder};
pub use api::{
    ApiMapping, AuthEndpoint, Body, ErrorMapping, Headers, HealthEndpoint, JobEndpoint,
    LaunchEndpoint, LivenessEndpoint, PasswordEncoding,
};
pub use load::{load, ConfigError, ConfigSource, LoadedConfig, ENV_PREFIX};
pub use outbound::{proxy_for_nodes, tls_problem, unsupported_tls};
pub use resolve::{
    es_credentials, es_password, portal_password, read_hosts_file, read_secret_file, resolve,
    secret, EsCredentials, Resolved,
};
pub use secret::Secret;
pub use tls::{TlsConfig, TlsVersion};
pub use valid::{EnvLimitsSpec, JobLimits, ValidConfig};
pub use validate::{check_url, validate, Problem};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::model::BackupLevel;
/// Defined in `model` (a job carries it); configured here.
pub use crate::model::RestoreSpec;
use crate::simulator::SimulatorConfig;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The durable results journal (NDJSON segments on disk).
    #[serde(default)]
    pub journal: JournalConfig,
    /// The human application log.
    #[serde(default)]
    pub log: LogConfig,
    /// The sink actor that receives every result.
    #[serde(default)]
    pub sink: SinkConfig,
    /// Elasticsearch output (absent or no `urls` = journal only).
    #[serde(default)]
    pub elasticsearch: ElasticsearchConfig,
    /// Kibana, used by `iaso-probe setup` to import the dashboards.
    #[serde(default)]
    pub kibana: KibanaConfig,
    /// Environments to probe, by name (`lab`, `qualif`, `prod`, …).
    #[serde(default)]
    pub environments: BTreeMap<String, EnvironmentConfig>,
    /// The opt-in HTTP listener of `/metrics`, `/healthz` and `/readyz`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Pass/fail criteria evaluated at the end of `run --once` (exit code 99 when one fails).
    #[serde(default)]
    pub thresholds: ThresholdsConfig,
    /// Where this prober runs, written into every result.
    #[serde(default)]
    pub observer: ObserverConfig,
}

/// The prober as an observer (ECS `observer.*`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObserverConfig {
    /// `observer.geo.name` of every result: the location the checks run from (Heartbeat's
    /// `run_from.geo.name`, e.g. `paris-dc1`); absent from the documents when unset.
    pub geo_name: Option<String>,
}

/// Self-observation over HTTP (off unless `listen` is set).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address and port of the listener, e.g. `"127.0.0.1:9464"` (`"0.0.0.0:9464"` in a
    /// container). Serves `/metrics` (Prometheus text format), `/healthz` and `/readyz`.
    /// Empty or absent: no listener.
    pub listen: Option<String>,
}

/// Pass/fail criteria of a `run --once` (like k6's thresholds). With at least one set, the
/// run's exit code is decided by them: 0 when every threshold holds (failed probes within
/// the limits are tolerated), 99 when one fails. Each applies per environment (and per check
/// where it says so).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdsConfig {
    /// Least share (0–1) of successful results of each check (liveness, health, response
    /// time, auth) in each environment, e.g. `0.99`.
    pub availability_min: Option<f64>,
    /// Least share (0–1) of tracked jobs that ended `success` or `warning`, among those that
    /// ended (cancelled jobs count as not successful), plus refused launches, per environment.
    pub job_success_rate_min: Option<f64>,
    /// Largest p95 of each check's response time, in ms, per environment and check.
    pub response_time_p95_max_ms: Option<u64>,
    /// Largest count of results left unshipped at the end of the run when Elasticsearch is
    /// configured, e.g. `0` (ignored without Elasticsearch).
    pub unshipped_max: Option<u64>,
}

impl ThresholdsConfig {
    /// True when at least one threshold is set.
    pub fn any(&self) -> bool {
        self.availability_min.is_some()
            || self.job_success_rate_min.is_some()
            || self.response_time_p95_max_ms.is_some()
            || self.unshipped_max.is_some()
    }
}

/// Where and how results are journaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Directory of the journal segments (`results-<n>.ndjson`) and the shipping checkpoint.
    /// Locked for the process life (`<dir>/LOCK`): one instance per directory, so each
    /// `--shard` instance needs its own.
    pub dir: PathBuf,
    /// A segment is closed and a new one opened past this size.
    pub segment_max_bytes: u64,
    /// Buffered lines are written to the file at least this often.
    pub flush_interval_ms: u64,
    /// Written data is fsynced at least this often (on a blocking thread).
    pub fsync_interval_ms: u64,
    /// Shipped segments older than this are deleted (0 = keep forever).
    pub retention_hours: u64,
    /// Shipped segments beyond this total size are deleted, oldest first (0 = no limit).
    pub retention_max_bytes: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./data/journal"),
            segment_max_bytes: 64 * 1024 * 1024,
            flush_interval_ms: 200,
            fsync_interval_ms: 1000,
            retention_hours: 168,
            retention_max_bytes: 0,
        }
    }
}

/// The application log (tracing).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter for stderr and the file (`info`, `iaso_probe=debug`, …). `RUST_LOG` overrides it.
    pub level: String,
    /// Directory of the log file (`iaso-probe.<date>.log`, rotated daily); empty = stderr only.
    pub dir: PathBuf,
    /// Daily log files kept.
    pub max_files: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info,actix_server=warn".into(),
            dir: PathBuf::from("./data/log"),
            max_files: 14,
        }
    }
}

/// The sink actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Results accepted by the sink but not yet written; producers wait beyond this (back-pressure).
    pub buffer: usize,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self { buffer: 4096 }
    }
}

/// Elasticsearch output. Nothing configured (no `urls`, no `cloud_id`, no `ELASTICSEARCH_URL`) = journal only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    /// Node URLs (round robin). The `ELASTICSEARCH_URL` environment variable is used when empty.
    pub urls: Vec<String>,
    /// Elastic Cloud id (instead of `urls`).
    pub cloud_id: Option<String>,
    /// Basic-auth user name.
    pub username: Option<String>,
    /// Basic-auth password, inline (prefer `password_env` or `password_file`).
    pub password: Option<Secret>,
    /// Name of an environment variable holding the basic-auth password.
    pub password_env: Option<String>,
    /// File holding the basic-auth password (e.g. a Docker/Kubernetes secret).
    pub password_file: Option<PathBuf>,
    /// Name of an environment variable holding an encoded API key (`base64(id:key)`).
    pub api_key_env: Option<String>,
    /// File holding an encoded API key.
    pub api_key_file: Option<PathBuf>,
    /// PEM file of the CA that signed the cluster's certificate (kept as an alias: it is
    /// added to `tls.ca_files`).
    pub ca_cert_file: Option<PathBuf>,
    /// TLS towards Elasticsearch (`[elasticsearch.tls]`: CA files, client certificate, insecure).
    pub tls: TlsConfig,
    /// Proxy for Elasticsearch (`http://[user:password@]host:port`); none by default.
    pub proxy_url: Option<String>,
    /// Nodes reached without the proxy: host names (and subdomains), IPs or CIDR ranges
    /// (loopback never goes through a proxy).
    pub no_proxy: Vec<String>,
    /// Without `proxy_url`, take HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY from the
    /// environment (false: environment proxy variables are ignored).
    pub proxy_from_env: bool,
    /// Timeout of one request to Elasticsearch.
    pub request_timeout_ms: u64,
    /// A bulk request closes at this many documents…
    pub batch_max_docs: usize,
    /// …or this many bytes of NDJSON…
    pub batch_max_bytes: usize,
    /// …or this long after its first document.
    pub batch_max_wait_ms: u64,
    /// Bulk requests in flight at once.
    pub max_in_flight: usize,
    /// First retry delay (capped exponential backoff with full jitter).
    pub retry_initial_ms: u64,
    /// Largest retry delay.
    pub retry_max_ms: u64,
    /// Install the ILM policy and templates at start when missing.
    pub setup_on_start: bool,
    /// Delete age of the ILM policy (`30d`, …), counted from rollover; on a cluster without
    /// ILM, the data streams' `data_retention`.
    pub ilm_delete_after: String,
    /// ILM rollover: a new backing index once the current one is this old (`30d`, like
    /// Elastic's built-in logs policy)…
    pub rollover_max_age: String,
    /// …or once its primary shard is this big (`50gb`). Without ILM the cluster's data stream
    /// lifecycle rolls over by its own setting (`cluster.lifecycle.default.rollover`).
    pub rollover_max_primary_shard_size: String,
    /// `index.number_of_replicas` of the data streams' indices (0 on a single node, or the
    /// cluster stays yellow).
    pub number_of_replicas: u32,
    /// `run --once` waits this long for shipping to catch up before exiting.
    pub once_ship_deadline_secs: u64,
    /// Dead-letter file for documents Elasticsearch refuses for good (default: `<journal.dir>/dead-letter.ndjson`).
    pub dead_letter_file: Option<PathBuf>,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            cloud_id: None,
            username: None,
            password: None,
            password_env: None,
            password_file: None,
            api_key_env: None,
            api_key_file: None,
            ca_cert_file: None,
            tls: TlsConfig::default(),
            proxy_url: None,
            no_proxy: Vec::new(),
            proxy_from_env: false,
            request_timeout_ms: 30_000,
            batch_max_docs: 2_000,
            batch_max_bytes: 5 * 1024 * 1024,
            batch_max_wait_ms: 1_000,
            max_in_flight: 2,
            retry_initial_ms: 500,
            retry_max_ms: 30_000,
            setup_on_start: true,
            ilm_delete_after: "30d".into(),
            rollover_max_age: "30d".into(),
            rollover_max_primary_shard_size: "50gb".into(),
            number_of_replicas: 1,
            once_ship_deadline_secs: 60,
            dead_letter_file: None,
        }
    }
}

/// Kibana (for `iaso-probe setup`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KibanaConfig {
    /// Kibana base URL; empty = no dashboard import.
    pub url: Option<String>,
    /// Kibana space (default space when empty).
    pub space: Option<String>,
    /// User name (default: the Elasticsearch user).
    pub username: Option<String>,
    /// Name of an environment variable holding the password (default: the Elasticsearch password).
    pub password_env: Option<String>,
    /// TLS towards Kibana (`[kibana.tls]`, same keys as `[elasticsearch.tls]`).
    pub tls: TlsConfig,
    /// Proxy for Kibana (`http://[user:password@]host:port`); none by default.
    pub proxy_url: Option<String>,
    /// Hosts reached without the proxy (loopback never goes through a proxy).
    pub no_proxy: Vec<String>,
    /// Without `proxy_url`, take HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY from the
    /// environment (false: environment proxy variables are ignored).
    pub proxy_from_env: bool,
    /// The alerting rules `setup` creates (`[kibana.alerts]`).
    pub alerts: AlertsConfig,
}

/// Kibana alerting rules created by `setup` (Elasticsearch query rules, no action: the
/// connector is the operator's choice, see README "Alerts").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Create or update the rules (false: leave Kibana's rules alone).
    pub enabled: bool,
    /// "Monitor down": fires when a monitor has been down for this many consecutive checks.
    pub down_consecutive_checks: u32,
    /// "Job failure rate": fires when more than this percentage of the jobs that ended…
    pub job_failure_rate_percent: f64,
    /// …in this many minutes failed (per environment).
    pub job_failure_window_minutes: u32,
    /// How often Kibana runs each rule.
    pub rule_interval_minutes: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            down_consecutive_checks: 3,
            job_failure_rate_percent: 20.0,
            job_failure_window_minutes: 60,
            rule_interval_minutes: 1,
        }
    }
}

/// One environment of the IASO portal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Probe this environment (false keeps the entry but runs nothing).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Base URL of the portal (`https://iaso-lab.example.com`); not used with `simulator`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Run an in-process simulator for this environment and probe it instead of `base_url`.
    #[serde(default)]
    pub simulator: Option<SimulatorConfig>,
    /// `data_stream.namespace` of this environment's results (default: the environment name,
    /// `-` made `_`): they go to `synthetics-iaso.checks-<namespace>` and
    /// `logs-iaso.jobs-<namespace>`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Requests per second allowed towards this environment (every request passes the limiter).
    #[serde(default = "default_rate")]
    pub rate_limit_per_sec: u32,
    /// Requests allowed at once above the steady rate.
    #[serde(default = "default_burst")]
    pub rate_limit_burst: u32,
    /// HTTP requests in flight at once towards this environment.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Total timeout of one HTTP request.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Timeout of the TCP/TLS connect.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Idle keep-alive connections are closed after this long. Keep it below the portal's
    /// own keep-alive timeout (5 s on Apache and actix-web): a connection the server is
    /// closing, when reused, fails the request with "connection closed before message
    /// completed", and a backup launch (a POST) cannot be safely retried.
    #[serde(default = "default_idle_connection_timeout")]
    pub idle_connection_timeout_ms: u64,
    /// Largest answer body read; larger answers fail with `body_too_large`.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// TLS towards the portal (`[environments.<name>.tls]`: system store and/or CA files,
    /// client certificate for mutual TLS, minimum version).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Proxy for every request to the portal (`http://[user:password@]host:port`); none by default.
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// Hosts reached without the proxy: host names (and subdomains), IPs or CIDR ranges
    /// (loopback never goes through a proxy).
    #[serde(default)]
    pub no_proxy: Vec<String>,
    /// Without `proxy_url`, take HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY from the
    /// environment (false: environment proxy variables are ignored).
    #[serde(default)]
    pub proxy_from_env: bool,
    /// Redirects followed per request, to the same origin only (scheme, host and port); a
    /// redirect elsewhere, or one past this count, is a `redirect` failure showing its
    /// `Location`. 0 (the default): no redirect is followed.
    #[serde(default = "default_max_redirects")]
    pub max_redirects: u32,
    /// Job status polls through iaso-probe's own HTTP/1.1 client (`api::h1`: keep-alive
    /// connections, this environment's TLS; about half the CPU of a poll through reqwest,
    /// BENCHMARKS.md §11). Used only where no proxy applies to the portal and
    /// `max_redirects` is 0; false sends them through reqwest like every other call.
    #[serde(default = "yes")]
    pub lean_status_polls: bool,
    /// Login of the prober's account.
    #[serde(default)]
    pub credentials: Credentials,
    /// Hosts to back up.
    #[serde(default)]
    pub hosts: Vec<HostSpec>,
    /// File of hosts, one per line: `hostname [LEVEL] [name=value ...]` (the `name=value`
    /// pairs are the host's `vars`); `#` starts a comment.
    #[serde(default)]
    pub hosts_file: Option<PathBuf>,
    /// Level used for hosts that do not name one.
    #[serde(default = "default_level")]
    pub default_backup_level: BackupLevel,
    /// File restores to launch and track.
    #[serde(default)]
    pub restores: Vec<RestoreSpec>,
    /// Periodic checks.
    #[serde(default)]
    pub checks: ChecksConfig,
    /// Backup/restore launching and job tracking.
    #[serde(default)]
    pub jobs: JobsConfig,
    /// Endpoints, field names and JSON pointers of the portal (default: the reference API).
    #[serde(default)]
    pub api: ApiMapping,
}

fn yes() -> bool {
    true
}
fn default_rate() -> u32 {
    20
}
fn default_burst() -> u32 {
    5
}
fn default_max_in_flight() -> usize {
    256
}
fn default_timeout() -> u64 {
    10_000
}
fn default_connect_timeout() -> u64 {
    3_000
}
fn default_idle_connection_timeout() -> u64 {
    4_000
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_max_redirects() -> u32 {
    0
}
fn default_level() -> BackupLevel {
    BackupLevel::Incremental
}

/// Login of the prober's account: `username` plus exactly one password source.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Credentials {
    /// Account name.
    #[serde(deserialize_with = "secret::any_scalar_opt")]
    pub username: Option<String>,
    /// Password inline (fine for the simulator; use `password_env`/`password_file` for real portals).
    pub password: Option<Secret>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
}

/// A host to back up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Host name as the portal knows it.
    pub name: String,
    /// Backup level (default: the environment's `default_backup_level`).
    #[serde(default)]
    pub level: Option<BackupLevel>,
    /// The host's own values for placeholders (`{ subclient_id = "101" }` fills
    /// `{subclient_id}` in its backups, job polls and restores).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
}

impl EnvironmentConfig {
    /// The data stream namespace of environment `name`: `namespace`, else the name with `-`
    /// made `_` (a namespace cannot hold `-`; environment names are already lowercase).
    pub(crate) fn namespace_of(&self, name: &str) -> String {
        self.namespace
            .clone()
            .unwrap_or_else(|| name.replace('-', "_"))
    }
}

/// The periodic checks of one environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksConfig {
    /// GET the liveness endpoint; up when HTTP and `statusCode` say 200.
    pub liveness: CheckSchedule,
    /// GET the health endpoint; one result per component.
    pub health: CheckSchedule,
    /// GET each of `response_time_paths`; up when a 2xx arrives within `response_time_limit_ms`.
    pub response_time: CheckSchedule,
    /// Paths timed by the response-time check.
    pub response_time_paths: Vec<String>,
    /// Limit of the response-time check.
    pub response_time_limit_ms: u64,
    /// POST the credentials; up when a token comes back.
    pub auth: CheckSchedule,
}

impl ChecksConfig {
    /// Turns every check off (a shard that is not the checks owner). Logins the jobs need
    /// still happen, and are still reported.
    pub(crate) fn disable_all(&mut self) {
        for c in [
            &mut self.liveness,
            &mut self.health,
            &mut self.response_time,
            &mut self.auth,
        ] {
            c.enabled = false;
        }
    }
}

impl Default for ChecksConfig {
    fn default() -> Self {
        Self {
            liveness: CheckSchedule::every(30),
            health: CheckSchedule::every(60),
            response_time: CheckSchedule::every(30),
            response_time_paths: vec!["/api/v1/alive".into()],
            response_time_limit_ms: 500,
            auth: CheckSchedule::every(300),
        }
    }
}

/// When and how a check runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckSchedule {
    /// Run this check.
    pub enabled: bool,
    /// Interval in service mode (each run is spread with jitter over the interval).
    pub interval_secs: u64,
    /// Attempts before the check is declared down (Heartbeat's `summary.max_attempts`).
    pub attempts: u32,
}

impl CheckSchedule {
    fn every(interval_secs: u64) -> Self {
        Self {
            enabled: true,
            interval_secs,
            attempts: 1,
        }
    }
}

impl Default for CheckSchedule {
    fn default() -> Self {
        Self::every(60)
    }
}

/// Backup/restore scenarios and job tracking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Launch backups for the selected hosts.
    pub backups_enabled: bool,
    /// Launch the configured restores.
    pub restores_enabled: bool,
    /// Service mode: each host's backup is launched this often (one interval after its last
    /// launch, kept across restarts; a new host at a stable point of its first interval).
    pub backup_interval_secs: u64,
    /// Service mode: each restore is launched this often (as `backup_interval_secs`).
    pub restore_interval_secs: u64,
    /// Launch requests in flight at once.
    pub launch_concurrency: usize,
    /// Jobs tracked at once; launching waits beyond this.
    pub max_tracked_jobs: usize,
    /// Time between two status polls of one job.
    pub poll_interval_ms: u64,
    /// Random extra delay added to each poll (0..jitter), and to the first one.
    pub poll_jitter_ms: u64,
    /// A job still not finished after this long is reported `timeout`.
    pub max_duration_secs: u64,
    /// A job whose status cannot be read this many times in a row is reported `poll_failed`.
    pub max_consecutive_poll_failures: u32,
    /// Jobs still running when the prober stops are written to
    /// `<journal.dir>/tracked-jobs.json` and tracked again by the next start; false: they
    /// end with `job.end` `cancelled`.
    pub resume_on_restart: bool,
    /// Statuses that end a job successfully.
    pub success_statuses: Vec<String>,
    /// Statuses that end a job with a warning (counted as success with `iaso.job.result: warning`).
    pub warning_statuses: Vec<String>,
    /// Statuses that end a job as failed.
    pub failure_statuses: Vec<String>,
    /// Service mode: launch backups only inside this daily window of local time
    /// (`"22:00-06:00"`, may cross midnight; in `schedule_tz`). Empty: at any time.
    pub backup_window: Option<String>,
    /// Service mode: launch restores only inside this daily window (as `backup_window`).
    pub restore_window: Option<String>,
    /// Service mode: launch every backup at each occurrence of this cron expression
    /// (`"0 2 * * *"`: 02:00 every night, in `schedule_tz`), instead of every
    /// `backup_interval_secs`; with `backup_window`, only occurrences inside the window.
    pub backup_cron: Option<String>,
    /// Service mode: launch every restore at each occurrence of this cron expression.
    pub restore_cron: Option<String>,
    /// Time zone of the windows and cron expressions (IANA name: `Europe/Paris`, `UTC`).
    pub schedule_tz: String,
    /// Launches (backups and restores) per minute at most, in every mode, however many are
    /// due (a start after a long stop finds a whole fleet overdue); 0 = no limit.
    pub max_launches_per_minute: u32,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            backups_enabled: true,
            restores_enabled: true,
            backup_interval_secs: 3600,
            restore_interval_secs: 3600,
            launch_concurrency: 32,
            max_tracked_jobs: 100_000,
            poll_interval_ms: 5_000,
            poll_jitter_ms: 1_000,
            max_duration_secs: 4 * 3600,
            max_consecutive_poll_failures: 5,
            resume_on_restart: true,
            success_statuses: vec!["Completed".into()],
            warning_statuses: vec![
                "Completed w/ one or more warnings".into(),
                "Completed w/ one or more errors".into(),
            ],
            failure_statuses: vec!["Failed".into(), "Killed".into(), "Failed to Start".into()],
            backup_window: None,
            restore_window: None,
            backup_cron: None,
            restore_cron: None,
            schedule_tz: default_schedule_tz(),
            max_launches_per_minute: 0,
        }
    }
}

fn default_schedule_tz() -> String {
    "UTC".into()
}

/// How a terminal job status is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusClass {
    Success,
    Warning,
    Failure,
    Running,
}

impl JobsConfig {
    /// Classifies a status word (case-insensitive) per the configured lists.
    pub(crate) fn classify(&self, status: &str) -> StatusClass {
        let is_in = |list: &[String]| list.iter().any(|s| s.eq_ignore_ascii_case(status));
        if is_in(&self.success_statuses) {
            StatusClass::Success
        } else if is_in(&self.warning_statuses) {
            StatusClass::Warning
        } else if is_in(&self.failure_statuses) {
            StatusClass::Failure
        } else {
            StatusClass::Running
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses_case_insensitively() {
        let j = JobsConfig::default();
        assert_eq!(j.classify("completed"), StatusClass::Success);
        assert_eq!(
            j.classify("Completed w/ one or more warnings"),
            StatusClass::Warning
        );
        assert_eq!(j.classify("Failed to Start"), StatusClass::Failure);
        assert_eq!(j.classify("Running"), StatusClass::Running);
    }
}
