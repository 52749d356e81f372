//! Validation: one pure pass over the whole tree and what [`resolve`](super::resolve()) read
//! for it (secrets, hosts files, TLS files, proxy variables), every problem reported with
//! its key. It reads nothing itself. `check-config` and every other command call the same
//! function, through [`ValidConfig::new`](super::ValidConfig::new).

use super::resolve::Resolved;
use super::{Config, EnvironmentConfig, HostSpec};
use crate::model::BackupLevel;
use std::fmt;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key (`environments.lab.rate_limit_per_sec`).
    pub key: String,
    /// What is wrong, never the value of a secret.
    pub message: String,
    /// File or variable that set the key, when known.
    pub source: Option<String>,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            source: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(s) => write!(f, "{s}: key `{}`: {}", self.key, self.message),
            None => write!(f, "key `{}`: {}", self.key, self.message),
        }
    }
}

/// Checks everything; an empty list means valid.
pub fn validate(c: &Config, r: &Resolved) -> Vec<Problem> {
    let mut p = Vec::new();
    if c.journal.segment_max_bytes < 4096 {
        p.push(Problem::new(
            "journal.segment_max_bytes",
            "must be at least 4096",
        ));
    }
    if c.journal.dir.as_os_str().is_empty() {
        p.push(Problem::new("journal.dir", "must not be empty"));
    }
    if c.sink.buffer == 0 {
        p.push(Problem::new("sink.buffer", "must be greater than 0"));
    }
    validate_elasticsearch(c, r, &mut p);
    validate_global_bounds(c, &mut p);
    validate_metrics_and_thresholds(c, &mut p);
    if c.environments.is_empty() {
        p.push(Problem::new("environments", "no environment is configured"));
    } else if !c.environments.values().any(|e| e.enabled) {
        p.push(Problem::new(
            "environments",
            "every environment is disabled",
        ));
    }
    for (name, env) in &c.environments {
        validate_environment(name, env, r, &mut p);
    }
    // Outbound TLS files and proxies (portal, Kibana, Elasticsearch).
    p.extend(r.outbound.iter().cloned());
    p
}

fn validate_elasticsearch(c: &Config, r: &Resolved, p: &mut Vec<Problem>) {
    let es = &c.elasticsearch;
    for (i, u) in es.urls.iter().enumerate() {
        if let Err(m) = check_url(u) {
            p.push(Problem::new(format!("elasticsearch.urls[{i}]"), m));
        }
    }
    let sources = [
        es.password.is_some(),
        es.password_env.is_some(),
        es.password_file.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if sources > 1 {
        p.push(Problem::new(
            "elasticsearch.password",
            "set only one of password, password_env, password_file",
        ));
    }
    if sources == 1 && es.username.is_none() {
        p.push(Problem::new(
            "elasticsearch.username",
            "a password is set but no username",
        ));
    }
    // Unset variables and missing files, as the resolver found them.
    p.extend(r.elasticsearch.iter().cloned());
    for (key, v) in [
        ("elasticsearch.batch_max_docs", es.batch_max_docs as u64),
        ("elasticsearch.batch_max_bytes", es.batch_max_bytes as u64),
        ("elasticsearch.max_in_flight", es.max_in_flight as u64),
        ("elasticsearch.request_timeout_ms", es.request_timeout_ms),
        ("elasticsearch.retry_initial_ms", es.retry_initial_ms),
    ] {
        if v == 0 {
            p.push(Problem::new(key, "must be greater than 0"));
        }
    }
    if es.batch_max_bytes > 90 * 1024 * 1024 {
        p.push(Problem::new(
            "elasticsearch.batch_max_bytes",
            "must stay well under Elasticsearch's 100 MB request limit (at most 90 MiB)",
        ));
    }
    if es.retry_max_ms < es.retry_initial_ms {
        p.push(Problem::new(
            "elasticsearch.retry_max_ms",
            "must not be smaller than retry_initial_ms",
        ));
    }
    validate_lifecycle(es, p);
    validate_kibana_and_observer(c, p);
}

/// ILM and rollover values Elasticsearch would refuse, and the replicas.
fn validate_lifecycle(es: &super::ElasticsearchConfig, p: &mut Vec<Problem>) {
    if !is_duration(&es.ilm_delete_after) {
        p.push(Problem::new(
            "elasticsearch.ilm_delete_after",
            format!(
                "`{}` is not an Elasticsearch duration like 30d or 12h",
                es.ilm_delete_after
            ),
        ));
    }
    if !is_duration(&es.rollover_max_age) {
        p.push(Problem::new(
            "elasticsearch.rollover_max_age",
            format!(
                "`{}` is not an Elasticsearch duration like 30d or 12h",
                es.rollover_max_age
            ),
        ));
    }
    if !is_byte_size(&es.rollover_max_primary_shard_size) {
        p.push(Problem::new(
            "elasticsearch.rollover_max_primary_shard_size",
            format!(
                "`{}` is not an Elasticsearch byte size like 50gb or 500mb",
                es.rollover_max_primary_shard_size
            ),
        ));
    }
    if es.number_of_replicas > 32 {
        p.push(Problem::new(
            "elasticsearch.number_of_replicas",
            "must be at most 32 (0 on a single node)",
        ));
    }
}

/// `[kibana]` (its URL and alert rules) and `[observer]`.
fn validate_kibana_and_observer(c: &Config, p: &mut Vec<Problem>) {
    if let Some(u) = &c.kibana.url {
        if let Err(m) = check_url(u) {
            p.push(Problem::new("kibana.url", m));
        }
    }
    let a = &c.kibana.alerts;
    if a.down_consecutive_checks == 0 {
        p.push(Problem::new(
            "kibana.alerts.down_consecutive_checks",
            "must be at least 1",
        ));
    }
    if !(a.job_failure_rate_percent > 0.0 && a.job_failure_rate_percent < 100.0) {
        p.push(Problem::new(
            "kibana.alerts.job_failure_rate_percent",
            "must be above 0 and below 100",
        ));
    }
    for (key, v) in [
        (
            "kibana.alerts.job_failure_window_minutes",
            a.job_failure_window_minutes,
        ),
        (
            "kibana.alerts.rule_interval_minutes",
            a.rule_interval_minutes,
        ),
    ] {
        if v == 0 || v > 7 * 24 * 60 {
            p.push(Problem::new(key, "must be between 1 and 10080 (a week)"));
        }
    }
    if let Some(g) = &c.observer.geo_name {
        if g.trim().is_empty() || g.len() > 1024 {
            p.push(Problem::new(
                "observer.geo_name",
                "must not be empty and at most 1024 bytes",
            ));
        }
    }
}

/// An Elasticsearch byte size: digits and one of b, kb, mb, gb, tb, pb.
fn is_byte_size(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && ["b", "kb", "mb", "gb", "tb", "pb"].contains(&unit)
}

/// Why `ns` cannot be a data stream namespace (Elastic's naming scheme: lowercase, no `-`,
/// none of `\ / * ? " < > | , # :` or spaces, at most 100 bytes), or `None`.
pub(crate) fn namespace_problem(ns: &str) -> Option<String> {
    if ns.is_empty() {
        return Some("a data stream namespace cannot be empty".into());
    }
    if ns.len() > 100 {
        return Some("a data stream namespace is at most 100 bytes".into());
    }
    if ns.chars().any(|c| c.is_uppercase()) {
        return Some(format!("`{ns}`: a data stream namespace is lowercase"));
    }
    if let Some(c) = ns
        .chars()
        .find(|c| "-\\/*?\"<>|,#: ".contains(*c) || c.is_control())
    {
        return Some(format!(
            "`{ns}`: a data stream namespace cannot contain {c:?}"
        ));
    }
    None
}

/// Upper bounds of the global durations and counts, as `validate_answers_rules` has for the
/// environments: far above any sane setting, low enough that no timer, buffer or addition
/// misbehaves. Zero is checked apart (where it means something, e.g. `retention_hours`, it stays).
fn validate_global_bounds(c: &Config, p: &mut Vec<Problem>) {
    const GIB: u64 = 1024 * 1024 * 1024;
    const HOUR_MS: u64 = 3_600_000;
    let (j, es) = (&c.journal, &c.elasticsearch);
    let bounds: [(&str, u64, u64); 14] = [
        ("journal.segment_max_bytes", j.segment_max_bytes, 4 * GIB),
        ("journal.flush_interval_ms", j.flush_interval_ms, HOUR_MS),
        ("journal.fsync_interval_ms", j.fsync_interval_ms, HOUR_MS),
        ("journal.retention_hours", j.retention_hours, 10 * 365 * 24),
        (
            "journal.retention_max_bytes",
            j.retention_max_bytes,
            1 << 50,
        ),
        ("log.max_files", c.log.max_files as u64, 10_000),
        ("sink.buffer", c.sink.buffer as u64, 1_000_000),
        (
            "elasticsearch.request_timeout_ms",
            es.request_timeout_ms,
            600_000,
        ),
        (
            "elasticsearch.batch_max_docs",
            es.batch_max_docs as u64,
            100_000,
        ),
        (
            "elasticsearch.batch_max_wait_ms",
            es.batch_max_wait_ms,
            HOUR_MS,
        ),
        (
            "elasticsearch.max_in_flight",
            es.max_in_flight as u64,
            1_000,
        ),
        (
            "elasticsearch.retry_initial_ms",
            es.retry_initial_ms,
            HOUR_MS,
        ),
        ("elasticsearch.retry_max_ms", es.retry_max_ms, HOUR_MS),
        (
            "elasticsearch.once_ship_deadline_secs",
            es.once_ship_deadline_secs,
            DAY_SECS,
        ),
    ];
    for (key, v, max) in bounds {
        if v > max {
            p.push(Problem::new(key, format!("{v} is over the limit of {max}")));
        }
    }
}

fn is_duration(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && ["d", "h", "m", "s", "ms"].contains(&unit)
}

/// An absolute http(s) URL with a host.
pub fn check_url(u: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("`{u}` is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{u}` must use http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{u}` has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("credentials must not be written in the URL (use the credentials keys)".into());
    }
    Ok(parsed)
}

fn validate_environment(name: &str, e: &EnvironmentConfig, r: &Resolved, p: &mut Vec<Problem>) {
    let k = |s: &str| format!("environments.{name}.{s}");
    validate_target(name, &k, e, p);
    validate_limits_and_checks(&k, e, p);
    validate_account_and_hosts(name, &k, e, r, p);
    validate_api(&k, e, p);
    validate_answers_rules(&k, e, r.file_hosts(name), p);
    validate_schedule(&k, e, p);
}

/// The environment's name, namespace and what it probes (a portal URL or a simulator).
fn validate_target(
    name: &str,
    k: &dyn Fn(&str) -> String,
    e: &EnvironmentConfig,
    p: &mut Vec<Problem>,
) {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        p.push(Problem::new(
            format!("environments.{name}"),
            "environment names use lowercase letters, digits, - and _ (they name data streams)",
        ));
    }
    // The default (the name, `-` made `_`) is valid whenever the name is.
    if let Some(m) = e.namespace.as_deref().and_then(namespace_problem) {
        p.push(Problem::new(k("namespace"), m));
    }
    match (&e.base_url, &e.simulator) {
        (None, None) => p.push(Problem::new(
            k("base_url"),
            "missing: set base_url (or a [simulator] table for an in-process simulator)",
        )),
        (Some(_), Some(_)) => p.push(Problem::new(
            k("base_url"),
            "set either base_url or simulator, not both",
        )),
        (Some(u), None) => {
            if let Err(m) = check_url(u) {
                p.push(Problem::new(k("base_url"), m));
            }
        }
        (None, Some(sim)) => {
            if let Err(m) = sim.validate() {
                p.push(Problem::new(k("simulator"), m));
            }
        }
    }
}

/// Counts and durations that must not be zero, the burst the pacer needs, the checks.
fn validate_limits_and_checks(
    k: &dyn Fn(&str) -> String,
    e: &EnvironmentConfig,
    p: &mut Vec<Problem>,
) {
    for (key, v) in [
        ("rate_limit_per_sec", e.rate_limit_per_sec as u64),
        ("rate_limit_burst", e.rate_limit_burst as u64),
        ("max_in_flight", e.max_in_flight as u64),
        ("timeout_ms", e.timeout_ms),
        ("connect_timeout_ms", e.connect_timeout_ms),
        ("idle_connection_timeout_ms", e.idle_connection_timeout_ms),
        ("max_body_bytes", e.max_body_bytes as u64),
        ("jobs.poll_interval_ms", e.jobs.poll_interval_ms),
        ("jobs.launch_concurrency", e.jobs.launch_concurrency as u64),
        ("jobs.max_tracked_jobs", e.jobs.max_tracked_jobs as u64),
        ("jobs.max_duration_secs", e.jobs.max_duration_secs),
        (
            "jobs.max_consecutive_poll_failures",
            e.jobs.max_consecutive_poll_failures as u64,
        ),
        ("jobs.backup_interval_secs", e.jobs.backup_interval_secs),
        ("jobs.restore_interval_secs", e.jobs.restore_interval_secs),
        (
            "checks.response_time_limit_ms",
            e.checks.response_time_limit_ms,
        ),
    ] {
        if v == 0 {
            p.push(Problem::new(k(key), "must be greater than 0"));
        }
    }
    let min_burst = super::EnvLimitsSpec::min_burst_for(e.rate_limit_per_sec);
    if e.rate_limit_burst > 0 && e.rate_limit_burst < min_burst {
        p.push(Problem::new(
            k("rate_limit_burst"),
            format!(
                "{} cannot sustain rate_limit_per_sec = {}: the pacer wakes at most once per \
                 millisecond, so the burst must be at least {min_burst} (rate / 1000)",
                e.rate_limit_burst, e.rate_limit_per_sec
            ),
        ));
    }
    for (key, s) in [
        ("checks.liveness", &e.checks.liveness),
        ("checks.health", &e.checks.health),
        ("checks.response_time", &e.checks.response_time),
        ("checks.auth", &e.checks.auth),
    ] {
        if s.interval_secs == 0 {
            p.push(Problem::new(
                k(&format!("{key}.interval_secs")),
                "must be greater than 0",
            ));
        }
        if s.attempts == 0 {
            p.push(Problem::new(
                k(&format!("{key}.attempts")),
                "must be at least 1",
            ));
        }
    }
    for (i, path) in e.checks.response_time_paths.iter().enumerate() {
        if !path.starts_with('/') {
            p.push(Problem::new(
                k(&format!("checks.response_time_paths[{i}]")),
                format!("`{path}` must start with /"),
            ));
        }
    }
}

/// The account (as the resolver found its password), the hosts and the restores.
fn validate_account_and_hosts(
    name: &str,
    k: &dyn Fn(&str) -> String,
    e: &EnvironmentConfig,
    r: &Resolved,
    p: &mut Vec<Problem>,
) {
    if e.credentials.username.as_deref().is_none_or(str::is_empty) {
        p.push(Problem::new(k("credentials.username"), "missing"));
    }
    if let Some(Err(m)) = r.passwords.get(name) {
        p.push(Problem::new(k("credentials"), m.clone()));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, h) in e.hosts.iter().enumerate() {
        if let Err(m) = check_host_name(&h.name) {
            p.push(Problem::new(k(&format!("hosts[{i}].name")), m));
        } else if !seen.insert(h.name.as_str()) {
            p.push(Problem::new(
                k(&format!("hosts[{i}].name")),
                format!("host `{}` is listed twice", h.name),
            ));
        }
    }
    if let Some(Err(m)) = r.hosts_files.get(name) {
        p.push(Problem::new(k("hosts_file"), m.clone()));
    }
    for (i, r) in e.restores.iter().enumerate() {
        for (field, v) in [
            ("host", &r.host),
            ("file_name", &r.file_name),
            ("source_path", &r.source_path),
            ("destination_path", &r.destination_path),
        ] {
            if v.trim().is_empty() {
                p.push(Problem::new(
                    k(&format!("restores[{i}].{field}")),
                    "must not be empty",
                ));
            }
        }
    }
}

// ---- Configs that cannot misbehave: placeholders, base URL shape, hosts given twice,
// ---- upper bounds (issue 9, item 6). Self-contained: one call from validate_environment.

/// Largest value of each environment duration and count: far above any sane setting, low
/// enough that no timer, sleep or addition can overflow (`poll_jitter_ms =
/// 9223372036854775807` made `run --once` never end).
const DAY_SECS: u64 = 24 * 3600;
const YEAR_SECS: u64 = 365 * DAY_SECS;

fn validate_answers_rules(
    k: &dyn Fn(&str) -> String,
    e: &EnvironmentConfig,
    file_hosts: Option<&[HostSpec]>,
    p: &mut Vec<Problem>,
) {
    if let Some(u) = &e.base_url {
        if let Ok(parsed) = url::Url::parse(u) {
            if parsed.query().is_some() || parsed.fragment().is_some() {
                p.push(Problem::new(
                    k("base_url"),
                    format!(
                        "`{u}` must not have a query (?…) or a fragment (#…): every API path is \
                         appended to it"
                    ),
                ));
            }
        }
    }
    check_placeholders(k, e, file_hosts, p);
    check_hosts_listed_twice(k, e, file_hosts, p);
    check_environment_bounds(k, e, p);
}

/// A host listed inline and in the hosts file.
fn check_hosts_listed_twice(
    k: &dyn Fn(&str) -> String,
    e: &EnvironmentConfig,
    file_hosts: Option<&[HostSpec]>,
    p: &mut Vec<Problem>,
) {
    if let (Some(f), Some(from_file)) = (&e.hosts_file, file_hosts) {
        {
            let in_file: std::collections::HashSet<&str> =
                from_file.iter().map(|h| h.name.as_str()).collect();
            for (i, h) in e.hosts.iter().enumerate() {
                if in_file.contains(h.name.as_str()) {
                    p.push(Problem::new(
                        k(&format!("hosts[{i}].name")),
                        format!(
                            "host `{}` is listed inline and in hosts_file {}: list it once",
                            h.name,
                            f.display()
                        ),
                    ));
                }
            }
        }
    }
}

/// The upper bound of every environment duration and count.
// Long on purpose: one flat table of (key, value, limit), a row per setting.
fn check_environment_bounds(
    k: &dyn Fn(&str) -> String,
    e: &EnvironmentConfig,
    p: &mut Vec<Problem>,
) {
    let c = &e.checks;
    let j = &e.jobs;
    let a = &e.api;
    let bounds: [(&str, u64, u64); 24] = [
        ("rate_limit_per_sec", e.rate_limit_per_sec.into(), 1_000_000),
        ("rate_limit_burst", e.rate_limit_burst.into(), 1_000_000),
        ("max_in_flight", e.max_in_flight as u64, 100_000),
        ("timeout_ms", e.timeout_ms, 600_000),
        ("connect_timeout_ms", e.connect_timeout_ms, 600_000),
        (
            "idle_connection_timeout_ms",
            e.idle_connection_timeout_ms,
            3_600_000,
        ),
        ("max_body_bytes", e.max_body_bytes as u64, 256 * 1024 * 1024),
        (
            "checks.liveness.interval_secs",
            c.liveness.interval_secs,
            YEAR_SECS,
        ),
        (
            "checks.health.interval_secs",
            c.health.interval_secs,
            YEAR_SECS,
        ),
        (
            "checks.response_time.interval_secs",
            c.response_time.interval_secs,
            YEAR_SECS,
        ),
        ("checks.auth.interval_secs", c.auth.interval_secs, YEAR_SECS),
        ("checks.liveness.attempts", c.liveness.attempts.into(), 100),
        ("checks.health.attempts", c.health.attempts.into(), 100),
        (
            "checks.response_time.attempts",
            c.response_time.attempts.into(),
            100,
        ),
        ("checks.auth.attempts", c.auth.attempts.into(), 100),
        (
            "checks.response_time_limit_ms",
            c.response_time_limit_ms,
            600_000,
        ),
        (
            "jobs.backup_interval_secs",
            j.backup_interval_secs,
            YEAR_SECS,
        ),
        (
            "jobs.restore_interval_secs",
            j.restore_interval_secs,
            YEAR_SECS,
        ),
        (
            "jobs.launch_concurrency",
            j.launch_concurrency as u64,
            100_000,
        ),
        (
            "jobs.max_tracked_jobs",
            j.max_tracked_jobs as u64,
            10_000_000,
        ),
        ("jobs.poll_interval_ms", j.poll_interval_ms, 3_600_000),
        ("jobs.poll_jitter_ms", j.poll_jitter_ms, 3_600_000),
        ("jobs.max_duration_secs", j.max_duration_secs, 30 * DAY_SECS),
        (
            "jobs.max_consecutive_poll_failures",
            j.max_consecutive_poll_failures.into(),
            1_000_000,
        ),
    ];
    let api_bounds: [(&str, u64, u64); 4] = [
        (
            "jobs.max_launches_per_minute",
            j.max_launches_per_minute.into(),
            600_000,
        ),
        ("max_redirects", e.max_redirects.into(), 20),
        (
            "api.auth.min_login_interval_secs",
            a.auth.min_login_interval_secs,
            3600,
        ),
        (
            "api.health.max_components",
            a.health.max_components as u64,
            100_000,
        ),
    ];
    for (key, v, max) in bounds.into_iter().chain(api_bounds) {
        if v > max {
            p.push(Problem::new(
                k(key),
                format!("{v} is over the limit of {max}"),
            ));
        }
    }
    if a.health.max_components == 0 {
        p.push(Problem::new(
            k("api.health.max_components"),
            "must be at least 1",
        ));
    }
}

/// Built-in placeholders of each kind of request.
const PH_NONE: &[&str] = &[];
const PH_BACKUP: &[&str] = &["host", "level"];
const PH_RESTORE: &[&str] = &["host", "file_name", "source_path", "destination_path"];
const PH_JOB: &[&str] = &["host", "job_id"];

type VarMap = std::collections::BTreeMap<String, String>;
/// Who defines variables (`host \`web01\``, `restores[0]`), and their variables.
type Providers<'a> = [(String, &'a VarMap)];
type Vars<'a> = Option<&'a Providers<'a>>;

/// One template: which built-in names it may use, whose variables, whether the token.
struct Use<'a> {
    key: String,
    template: &'a str,
    known: &'a [&'a str],
    vars: Vars<'a>,
    token: bool,
    whole_string: bool,
}

/// Whose variables fill in the placeholders of backups, restores and job polls.
struct VarProviders<'a> {
    host: Vec<(String, &'a VarMap)>,
    restore: Vec<(String, &'a VarMap)>,
    job: Vec<(String, &'a VarMap)>,
}

impl<'a> VarProviders<'a> {
    fn new(hosts: &'a [HostSpec], restores: &'a [VarMap]) -> Self {
        let host: Vec<(String, &VarMap)> = hosts
            .iter()
            .map(|h| (format!("host `{}`", h.name), &h.vars))
            .collect();
        let restore: Vec<(String, &VarMap)> = if restores.is_empty() {
            host.clone()
        } else {
            restores
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("restores[{i}]"), v))
                .collect()
        };
        let job = host
            .iter()
            .chain(if restores.is_empty() {
                &[][..]
            } else {
                &restore[..]
            })
            .cloned()
            .collect();
        Self { host, restore, job }
    }

    /// The built-in names and variables of endpoint `ep` (`backup`, `restore`, …).
    fn of(&self, ep: &str) -> (&'static [&'static str], Vars<'_>) {
        match ep {
            "backup" => (PH_BACKUP, Some(&self.host[..])),
            "restore" => (PH_RESTORE, Some(&self.restore[..])),
            "job_status" => (PH_JOB, Some(&self.job[..])),
            _ => (PH_NONE, None),
        }
    }
}

/// Every `{name}` in a path, header, body string or token format must be one that endpoint
/// fills in (an unknown one, `{hostt}`, would be sent literally): a built-in one, or a
/// variable every host (restore) it is used for defines.
fn check_placeholders(
    k: &dyn Fn(&str) -> String,
    e: &EnvironmentConfig,
    file_hosts: Option<&[HostSpec]>,
    p: &mut Vec<Problem>,
) {
    let hosts = all_hosts(e, file_hosts);
    let restores = restore_vars(e, &hosts);
    let providers = VarProviders::new(&hosts, &restores);
    let bodies = request_bodies(&e.api);
    let mut strings: Vec<(String, &str)> = Vec::new();
    for (prefix, v) in &bodies {
        super::api::body_strings(prefix, v, &mut strings);
    }
    for u in placeholder_uses(e, &providers, &strings) {
        check_use(k, &u, p);
    }
    check_value_maps(k, e, &hosts, &restores, p);
}

/// The request bodies, as JSON, under their keys (`api.backup.body`).
fn request_bodies(a: &super::ApiMapping) -> Vec<(String, serde_json::Value)> {
    [
        ("auth", &a.auth.body),
        ("backup", &a.backup.body),
        ("restore", &a.restore.body),
        ("job_status", &a.job_status.body),
    ]
    .into_iter()
    .map(|(ep, b)| {
        (
            format!("api.{ep}.body"),
            serde_json::Value::Object(b.clone()),
        )
    })
    .collect()
}

/// Every template of the environment, in the order problems are reported: the token
/// format, each endpoint's path and headers, the body strings, the global headers, the
/// response-time paths.
fn placeholder_uses<'a>(
    e: &'a EnvironmentConfig,
    providers: &'a VarProviders<'a>,
    body_strings: &'a [(String, &'a str)],
) -> Vec<Use<'a>> {
    let a = &e.api;
    let plain = |key: String, template: &'a str| Use {
        key,
        template,
        known: PH_NONE,
        vars: None,
        token: false,
        whole_string: false,
    };
    let mut uses = vec![Use {
        known: &["token"],
        ..plain("api.token_format".into(), a.token_format.as_str())
    }];
    let endpoints: [(&str, &str, &crate::config::Headers, bool); 6] = [
        (
            "liveness",
            &a.liveness.path,
            &a.liveness.headers,
            a.liveness.send_token,
        ),
        (
            "health",
            &a.health.path,
            &a.health.headers,
            a.health.send_token,
        ),
        ("auth", &a.auth.path, &a.auth.headers, false),
        ("backup", &a.backup.path, &a.backup.headers, true),
        ("restore", &a.restore.path, &a.restore.headers, true),
        (
            "job_status",
            &a.job_status.path,
            &a.job_status.headers,
            true,
        ),
    ];
    for (ep, path, headers, token) in endpoints {
        let (known, vars) = providers.of(ep);
        uses.push(Use {
            known,
            vars,
            ..plain(format!("api.{ep}.path"), path)
        });
        for (name, v) in headers {
            uses.push(Use {
                known,
                vars,
                token,
                ..plain(format!("api.{ep}.headers.{name}"), v)
            });
        }
    }
    for (key, template) in body_strings {
        let (known, vars) = providers.of(key.split('.').nth(1).unwrap_or_default());
        uses.push(Use {
            known,
            vars,
            whole_string: true,
            ..plain(key.clone(), template)
        });
    }
    for (name, v) in &a.headers {
        uses.push(plain(format!("api.headers.{name}"), v));
    }
    for (i, path) in e.checks.response_time_paths.iter().enumerate() {
        uses.push(plain(format!("checks.response_time_paths[{i}]"), path));
    }
    uses
}

/// The problems of one template's placeholders.
fn check_use(k: &dyn Fn(&str) -> String, u: &Use<'_>, p: &mut Vec<Problem>) {
    use super::api::{placeholder_names, typed_placeholder};
    for raw in placeholder_names(u.template) {
        let name = match raw.split_once(':') {
            Some((n, _)) if u.whole_string && typed_placeholder(u.template).is_some() => n,
            Some(_) => {
                p.push(Problem::new(
                    k(&u.key),
                    format!(
                        "`{{{raw}}}`: a typed placeholder (`{{name:number}}`, `{{name:bool}}`) must be the whole string of a body value"
                    ),
                ));
                continue;
            }
            None => raw,
        };
        if u.known.contains(&name) || (u.token && name == "token") {
            continue;
        }
        let providers = u.vars.unwrap_or(&[]);
        let lacking: Vec<&str> = providers
            .iter()
            .filter(|(_, v)| !v.contains_key(name))
            .map(|(who, _)| who.as_str())
            .collect();
        if !providers.is_empty() && lacking.len() < providers.len() {
            let shown = lacking
                .iter()
                .take(5)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            let more = if lacking.len() > 5 {
                format!(" and {} more", lacking.len() - 5)
            } else {
                String::new()
            };
            if !lacking.is_empty() {
                p.push(Problem::new(
                    k(&u.key),
                    format!("`{{{name}}}` is a host variable that {shown}{more} does not define (give it in their `vars`)"),
                ));
            }
            continue;
        }
        let mut names: Vec<String> = u.known.iter().map(|n| format!("{{{n}}}")).collect();
        if u.token {
            names.push("{token}".into());
        }
        let known = if names.is_empty() {
            "none is filled in here".to_owned()
        } else if u.vars.is_some() {
            format!(
                "known here: {}, or a variable every host defines in `vars`",
                names.join(", ")
            )
        } else {
            format!("known here: {}", names.join(", "))
        };
        p.push(Problem::new(
            k(&u.key),
            format!("unknown placeholder `{{{name}}}` ({known})"),
        ));
    }
}

/// Every `api.value_maps` entry must map a placeholder that exists.
fn check_value_maps(
    k: &dyn Fn(&str) -> String,
    e: &EnvironmentConfig,
    hosts: &[HostSpec],
    restores: &[VarMap],
    p: &mut Vec<Problem>,
) {
    let a = &e.api;
    let mut all_names: std::collections::BTreeSet<&str> = PH_BACKUP
        .iter()
        .chain(PH_RESTORE)
        .chain(PH_JOB)
        .copied()
        .collect();
    for h in hosts {
        all_names.extend(h.vars.keys().map(String::as_str));
    }
    for r in restores {
        all_names.extend(r.keys().map(String::as_str));
    }
    for name in a.value_maps.keys() {
        if !all_names.contains(name.as_str()) {
            p.push(Problem::new(
                k(&format!("api.value_maps.{name}")),
                format!(
                    "no placeholder `{{{name}}}` to map (neither built in nor a host variable)"
                ),
            ));
        }
    }
}

/// The hosts of the configuration: inline, then the hosts file (when it could be read).
fn all_hosts(e: &EnvironmentConfig, file_hosts: Option<&[HostSpec]>) -> Vec<HostSpec> {
    let mut hosts = e.hosts.clone();
    hosts.extend(file_hosts.unwrap_or_default().iter().cloned());
    hosts
}

/// Each restore's placeholder values: its own `vars` over its host's.
fn restore_vars(
    e: &EnvironmentConfig,
    hosts: &[HostSpec],
) -> Vec<std::collections::BTreeMap<String, String>> {
    e.restores
        .iter()
        .map(|r| {
            let mut v = hosts
                .iter()
                .find(|h| h.name == r.host)
                .map(|h| h.vars.clone())
                .unwrap_or_default();
            v.extend(r.vars.clone());
            v
        })
        .collect()
}

/// The service-mode schedule of the job scenarios: windows and their time zone.
fn validate_schedule(k: &dyn Fn(&str) -> String, e: &EnvironmentConfig, p: &mut Vec<Problem>) {
    use crate::schedule::window::{parse_tz, Window};
    use crate::schedule::Calendar;
    let tz = match parse_tz(&e.jobs.schedule_tz) {
        Ok(tz) => tz,
        Err(m) => {
            p.push(Problem::new(k("jobs.schedule_tz"), m));
            return;
        }
    };
    for (key, w) in [
        ("jobs.backup_window", &e.jobs.backup_window),
        ("jobs.restore_window", &e.jobs.restore_window),
    ] {
        if let Some(w) = w {
            if let Err(m) = Window::parse(w, tz) {
                p.push(Problem::new(k(key), m));
            }
        }
    }
    for (key, c) in [
        ("jobs.backup_cron", &e.jobs.backup_cron),
        ("jobs.restore_cron", &e.jobs.restore_cron),
    ] {
        if let Some(c) = c {
            if let Err(m) = Calendar::parse(c, tz) {
                p.push(Problem::new(k(key), m));
            }
        }
    }
}

fn validate_api(k: &dyn Fn(&str) -> String, e: &EnvironmentConfig, p: &mut Vec<Problem>) {
    let a = &e.api;
    if !a.token_format.contains("{token}") {
        p.push(Problem::new(k("api.token_format"), "must contain {token}"));
    }
    if reqwest::header::HeaderName::from_bytes(a.token_header.as_bytes()).is_err() {
        p.push(Problem::new(
            k("api.token_header"),
            format!("`{}` is not a valid header name", a.token_header),
        ));
    }
    let endpoints = [
        ("liveness", &a.liveness.method, &a.liveness.path),
        ("health", &a.health.method, &a.health.path),
        ("auth", &a.auth.method, &a.auth.path),
        ("backup", &a.backup.method, &a.backup.path),
        ("restore", &a.restore.method, &a.restore.path),
        ("job_status", &a.job_status.method, &a.job_status.path),
    ];
    for (name, method, path) in endpoints {
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            p.push(Problem::new(
                k(&format!("api.{name}.method")),
                format!("`{method}` is not one of GET, POST, PUT, PATCH, DELETE"),
            ));
        }
        if !path.starts_with('/') {
            p.push(Problem::new(
                k(&format!("api.{name}.path")),
                format!("`{path}` must start with /"),
            ));
        }
    }
    check_pointers(k, a, p);
    check_header_names(k, a, p);
    check_variables_and_job_id(k, e, p);
}

/// Every JSON pointer of the answers (required ones not empty) and of the error mappings.
fn check_pointers(k: &dyn Fn(&str) -> String, a: &super::ApiMapping, p: &mut Vec<Problem>) {
    let pointers = [
        ("liveness.status_pointer", &a.liveness.status_pointer, false),
        ("health.overall_pointer", &a.health.overall_pointer, false),
        (
            "health.components_pointer",
            &a.health.components_pointer,
            false,
        ),
        ("auth.token_pointer", &a.auth.token_pointer, true),
        ("auth.expires_in_pointer", &a.auth.expires_in_pointer, false),
        ("backup.job_id_pointer", &a.backup.job_id_pointer, true),
        ("backup.status_pointer", &a.backup.status_pointer, false),
        ("restore.job_id_pointer", &a.restore.job_id_pointer, true),
        ("restore.status_pointer", &a.restore.status_pointer, false),
        (
            "job_status.status_pointer",
            &a.job_status.status_pointer,
            true,
        ),
        (
            "job_status.percent_pointer",
            &a.job_status.percent_pointer,
            false,
        ),
        (
            "job_status.elapsed_pointer",
            &a.job_status.elapsed_pointer,
            false,
        ),
        (
            "job_status.phase_pointer",
            &a.job_status.phase_pointer,
            false,
        ),
        (
            "job_status.failure_reason_pointer",
            &a.job_status.failure_reason_pointer,
            false,
        ),
    ];
    for (name, ptr, required) in pointers {
        if ptr.is_empty() && required {
            p.push(Problem::new(k(&format!("api.{name}")), "must not be empty"));
        } else if !ptr.is_empty() && !ptr.starts_with('/') {
            p.push(Problem::new(
                k(&format!("api.{name}")),
                format!("`{ptr}` is not a JSON pointer (must start with /)"),
            ));
        }
    }
    for (name, errors) in [
        ("liveness", &a.liveness.errors),
        ("health", &a.health.errors),
        ("auth", &a.auth.errors),
        ("backup", &a.backup.errors),
        ("restore", &a.restore.errors),
        ("job_status", &a.job_status.errors),
    ] {
        for (field, ptr) in [
            ("code_pointer", &errors.code_pointer),
            ("message_pointer", &errors.message_pointer),
        ] {
            if !ptr.is_empty() && !ptr.starts_with('/') {
                p.push(Problem::new(
                    k(&format!("api.{name}.errors.{field}")),
                    format!("`{ptr}` is not a JSON pointer (must start with /)"),
                ));
            }
        }
    }
}

/// Every header name, global and per endpoint.
fn check_header_names(k: &dyn Fn(&str) -> String, a: &super::ApiMapping, p: &mut Vec<Problem>) {
    let header_tables = [
        ("api.headers".to_owned(), &a.headers),
        ("api.liveness.headers".to_owned(), &a.liveness.headers),
        ("api.health.headers".to_owned(), &a.health.headers),
        ("api.auth.headers".to_owned(), &a.auth.headers),
        ("api.backup.headers".to_owned(), &a.backup.headers),
        ("api.restore.headers".to_owned(), &a.restore.headers),
        ("api.job_status.headers".to_owned(), &a.job_status.headers),
    ];
    for (key, headers) in header_tables {
        for name in headers.keys() {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                p.push(Problem::new(
                    k(&format!("{key}.{name}")),
                    format!("`{name}` is not a valid header name"),
                ));
            }
        }
    }
}

/// The credentials fields left to the prober, host and restore variable names, and a job
/// status request that names its job.
fn check_variables_and_job_id(
    k: &dyn Fn(&str) -> String,
    e: &EnvironmentConfig,
    p: &mut Vec<Problem>,
) {
    let a = &e.api;
    for field in [&a.auth.username_field, &a.auth.password_field] {
        if a.auth.body.contains_key(field) {
            p.push(Problem::new(
                k(&format!("api.auth.body.{field}")),
                format!("`{field}` is the credentials field (api.auth.username_field / password_field): it is filled in by the prober"),
            ));
        }
    }
    for (i, h) in e.hosts.iter().enumerate() {
        for name in h.vars.keys() {
            if let Err(m) = check_var_name(name) {
                p.push(Problem::new(k(&format!("hosts[{i}].vars.{name}")), m));
            }
        }
    }
    for (i, r) in e.restores.iter().enumerate() {
        for name in r.vars.keys() {
            if let Err(m) = check_var_name(name) {
                p.push(Problem::new(k(&format!("restores[{i}].vars.{name}")), m));
            }
        }
    }
    let job_body = serde_json::Value::Object(a.job_status.body.clone());
    let mut job_strings = Vec::new();
    super::api::body_strings("body", &job_body, &mut job_strings);
    let mentions_job = a.job_status.path.contains("{job_id}")
        || job_strings
            .iter()
            .any(|(_, v)| v.contains("{job_id}") || v.contains("{job_id:"));
    if !mentions_job {
        p.push(Problem::new(
            k("api.job_status"),
            "neither the path nor the body uses {job_id}",
        ));
    }
}

/// Names filled in by the prober itself: a host variable cannot take one of them.
const BUILT_IN_PLACEHOLDERS: [&str; 7] = [
    "host",
    "level",
    "job_id",
    "file_name",
    "source_path",
    "destination_path",
    "token",
];

/// A host or restore variable name: letters, digits and `_`, not a built-in placeholder.
fn check_var_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "`{name}` is not a variable name (letters, digits and _)"
        ));
    }
    if BUILT_IN_PLACEHOLDERS.contains(&name) {
        return Err(format!(
            "`{name}` is a built-in placeholder: a variable cannot replace it"
        ));
    }
    Ok(())
}

fn check_host_name(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("host name is empty".into());
    }
    if h.len() > 255 || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{h}` is not a valid host name"));
    }
    Ok(())
}

/// Parses the text of a hosts file (read by [`read_hosts_file`](super::read_hosts_file)).
/// Errors give the line.
pub(super) fn parse_hosts(
    text: &str,
    default: BackupLevel,
) -> Result<Vec<HostSpec>, (usize, String)> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace().peekable();
        let name = parts.next().unwrap_or_default();
        let level = match parts.peek() {
            Some(l) if !l.contains('=') => {
                let l = parts.next().unwrap_or_default();
                l.parse::<BackupLevel>().map_err(|m| (i + 1, m))?
            }
            _ => default,
        };
        let mut vars = std::collections::BTreeMap::new();
        for extra in parts {
            let Some((k, v)) = extra.split_once('=') else {
                return Err((
                    i + 1,
                    format!("unexpected `{extra}` (expected `hostname [LEVEL] [name=value ...]`)"),
                ));
            };
            check_var_name(k).map_err(|m| (i + 1, m))?;
            if vars.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err((i + 1, format!("variable `{k}` is given twice")));
            }
        }
        check_host_name(name).map_err(|m| (i + 1, m))?;
        if !seen.insert(name.to_owned()) {
            return Err((i + 1, format!("host `{name}` is listed twice")));
        }
        out.push(HostSpec {
            name: name.to_owned(),
            level: Some(level),
            vars,
        });
    }
    if out.is_empty() {
        return Err((0, "no host in the file".into()));
    }
    Ok(out)
}

/// `[metrics]` and `[thresholds]`.
fn validate_metrics_and_thresholds(c: &Config, p: &mut Vec<Problem>) {
    if let Some(listen) = c.metrics.listen.as_deref().filter(|l| !l.is_empty()) {
        if listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(Problem::new(
                "metrics.listen",
                format!("`{listen}` is not an IP address and port (e.g. \"127.0.0.1:9464\")"),
            ));
        }
    }
    let t = &c.thresholds;
    for (key, v) in [
        ("thresholds.availability_min", t.availability_min),
        ("thresholds.job_success_rate_min", t.job_success_rate_min),
    ] {
        if let Some(v) = v {
            if !(0.0..=1.0).contains(&v) {
                p.push(Problem::new(
                    key,
                    format!("{v} is not a share between 0 and 1"),
                ));
            }
        }
    }
    if t.response_time_p95_max_ms.is_some_and(|v| v > 600_000) {
        p.push(Problem::new(
            "thresholds.response_time_p95_max_ms",
            "must be at most 600000",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::{load_with, ConfigSource, EMBEDDED_DEFAULT};

    fn env_toml(extra: &str) -> String {
        format!(
            "[environments.lab]\nbase_url = \"http://lab.example\"\n{extra}\n[environments.lab.credentials]\nusername = \"u\"\npassword = \"p\"\n"
        )
    }

    fn problems(toml: &str) -> String {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("t.toml");
        std::fs::write(&f, toml).unwrap();
        match load_with(&ConfigSource::Files(vec![f]), false) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepts_a_minimal_environment() {
        assert_eq!(problems(&env_toml("")), "");
    }

    #[test]
    fn rejects_a_metrics_listen_that_is_no_address() {
        let e = problems(&format!(
            "[metrics]\nlisten = \"localhost\"\n{}",
            env_toml("")
        ));
        assert!(
            e.contains("metrics.listen") && e.contains("localhost"),
            "{e}"
        );
        assert_eq!(
            problems(&format!(
                "[metrics]\nlisten = \"127.0.0.1:9464\"\n{}",
                env_toml("")
            )),
            ""
        );
    }

    #[test]
    fn rejects_threshold_shares_outside_zero_to_one() {
        let e = problems(&format!(
            "[thresholds]\navailability_min = 99\njob_success_rate_min = 0.9\n{}",
            env_toml("")
        ));
        assert!(e.contains("thresholds.availability_min"), "{e}");
        assert!(!e.contains("job_success_rate_min"), "{e}");
    }

    #[test]
    fn rejects_missing_base_url() {
        let e = problems("[environments.lab.credentials]\nusername = \"u\"\npassword = \"p\"\n");
        assert!(
            e.contains("environments.lab.base_url") && e.contains("missing"),
            "{e}"
        );
        assert!(e.contains("t.toml"), "{e}");
    }

    #[test]
    fn rejects_bad_url() {
        let e = problems(&env_toml("").replace("http://lab.example", "lab.example"));
        assert!(
            e.contains("environments.lab.base_url") && e.contains("not a valid URL"),
            "{e}"
        );
    }

    #[test]
    fn rejects_a_namespace_data_streams_cannot_have() {
        let e = problems(&env_toml("namespace = \"Lab-1\""));
        assert!(
            e.contains("environments.lab.namespace") && e.contains("lowercase"),
            "{e}"
        );
        let e = problems(&env_toml("namespace = \"lab-1\""));
        assert!(e.contains("cannot contain '-'"), "{e}");
        assert_eq!(problems(&env_toml("namespace = \"lab_1\"")), "");
        // The default namespace is the environment name, a dash made an underscore.
        let dashed = env_toml("").replace("environments.lab", "environments.lab-2");
        assert_eq!(problems(&dashed), "");
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("t.toml");
        std::fs::write(&f, &dashed).unwrap();
        let cfg = load_with(&ConfigSource::Files(vec![f]), false)
            .unwrap()
            .config;
        assert_eq!(cfg.environments["lab-2"].namespace_of("lab-2"), "lab_2");
    }

    #[test]
    fn rejects_rollover_values_elasticsearch_would_refuse_and_too_many_replicas() {
        let e = problems(&format!(
            "[elasticsearch]\nrollover_max_age = \"monthly\"\nrollover_max_primary_shard_size = \"50 GB\"\nnumber_of_replicas = 40\n{}",
            env_toml("")
        ));
        for key in [
            "elasticsearch.rollover_max_age",
            "elasticsearch.rollover_max_primary_shard_size",
            "elasticsearch.number_of_replicas",
        ] {
            assert!(e.contains(key), "{key}: {e}");
        }
        assert_eq!(
            problems(&format!(
                "[elasticsearch]\nrollover_max_age = \"7d\"\nrollover_max_primary_shard_size = \"10gb\"\nnumber_of_replicas = 0\n{}",
                env_toml("")
            )),
            ""
        );
    }

    #[test]
    fn rejects_alert_thresholds_that_can_never_fire() {
        let e = problems(&format!(
            "[kibana.alerts]\ndown_consecutive_checks = 0\njob_failure_rate_percent = 100\njob_failure_window_minutes = 0\n{}",
            env_toml("")
        ));
        for key in [
            "kibana.alerts.down_consecutive_checks",
            "kibana.alerts.job_failure_rate_percent",
            "kibana.alerts.job_failure_window_minutes",
        ] {
            assert!(e.contains(key), "{key}: {e}");
        }
        assert!(!e.contains("rule_interval_minutes"), "{e}");
    }

    #[test]
    fn rejects_zero_rate() {
        let e = problems(&env_toml("rate_limit_per_sec = 0"));
        assert!(e.contains("environments.lab.rate_limit_per_sec"), "{e}");
        assert!(e.contains("t.toml"), "{e}");
    }

    #[test]
    fn rejects_burst_too_small_for_rate() {
        let e = problems(&env_toml("rate_limit_per_sec = 5000\nrate_limit_burst = 4"));
        assert!(
            e.contains("environments.lab.rate_limit_burst") && e.contains("at least 5"),
            "{e}"
        );
        let ok = problems(&env_toml("rate_limit_per_sec = 5000\nrate_limit_burst = 5"));
        assert!(!ok.contains("rate_limit_burst"), "{ok}");
    }

    #[test]
    fn rejects_missing_password_source() {
        let e = problems(&env_toml("").replace("password = \"p\"\n", ""));
        assert!(
            e.contains("environments.lab.credentials") && e.contains("missing password source"),
            "{e}"
        );
    }

    #[test]
    fn rejects_malformed_hosts_file() {
        let d = tempfile::tempdir().unwrap();
        let hosts = d.path().join("hosts.txt");
        std::fs::write(&hosts, "web-01 FULL\nweb-02 WEEKLY\n").unwrap();
        let e = problems(&env_toml(&format!(
            "hosts_file = {:?}",
            hosts.display().to_string()
        )));
        assert!(e.contains("environments.lab.hosts_file"), "{e}");
        assert!(e.contains("hosts.txt:2") && e.contains("WEEKLY"), "{e}");
    }

    #[test]
    fn rejects_a_token_format_without_placeholder() {
        let e = problems(&env_toml(
            "[environments.lab.api]\ntoken_format = \"Bearer\"",
        ));
        assert!(e.contains("environments.lab.api.token_format"), "{e}");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let e = problems(&env_toml("rate_limit_per_sec = 0\ntimeout_ms = 0"));
        assert!(e.starts_with("2 configuration problem(s)"), "{e}");
    }

    #[test]
    fn parses_hosts_with_levels_and_comments() {
        let h = parse_hosts(
            "# fleet\nweb-01\n\ndb-01 FULL # nightly\n",
            BackupLevel::Incremental,
        )
        .unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].level, Some(BackupLevel::Incremental));
        assert_eq!(h[1].level, Some(BackupLevel::Full));
    }

    #[test]
    fn parses_host_variables_in_a_hosts_file_and_rejects_bad_ones() {
        let h = parse_hosts(
            "web01 FULL subclient_id=101 # c\ndb01 subclient_id=102 app=fs\n",
            BackupLevel::Incremental,
        )
        .unwrap();
        assert_eq!(h[0].level, Some(BackupLevel::Full));
        assert_eq!(h[0].vars["subclient_id"], "101");
        assert_eq!(h[1].level, Some(BackupLevel::Incremental));
        assert_eq!(
            (
                h[1].vars["subclient_id"].as_str(),
                h[1].vars["app"].as_str()
            ),
            ("102", "fs")
        );
        for (bad, why) in [
            ("web01 FULL extra", "unexpected `extra`"),
            ("web01 a=1 a=2", "`a` is given twice"),
            ("web01 host=x", "built-in placeholder"),
            ("web01 a-b=1", "not a variable name"),
        ] {
            let (line, m) = parse_hosts(bad, BackupLevel::Full).unwrap_err();
            assert!(line == 1 && m.contains(why), "{bad}: {m}");
        }
    }

    const CV_HOSTS: &str = "[[environments.lab.hosts]]\nname = \"web01\"\nvars = { subclient_id = \"101\" }\n[[environments.lab.hosts]]\nname = \"db01\"\nvars = { subclient_id = \"102\" }\n";

    #[test]
    fn accepts_host_variables_every_host_defines() {
        let e = problems(&env_toml(&format!(
            "{CV_HOSTS}[environments.lab.api.backup]\npath = \"/Subclient/{{subclient_id}}/action/backup?backupLevel={{level}}\"\nbody = {{}}\nheaders = {{ X-Sub = \"{{subclient_id}}\", Authtoken = \"{{token}}\" }}"
        )));
        assert_eq!(e, "");
    }

    #[test]
    fn rejects_a_host_variable_some_host_lacks_naming_the_host() {
        let e = problems(&env_toml(&format!(
            "{CV_HOSTS}[[environments.lab.hosts]]\nname = \"fail01\"\n[environments.lab.api.backup]\npath = \"/Subclient/{{subclient_id}}/action/backup\""
        )));
        assert!(
            e.contains("environments.lab.api.backup.path")
                && e.contains(
                    "`{subclient_id}` is a host variable that host `fail01` does not define"
                ),
            "{e}"
        );
    }

    #[test]
    fn rejects_a_placeholder_no_host_defines_and_token_outside_token_headers() {
        let e = problems(&env_toml(&format!(
            "{CV_HOSTS}[environments.lab.api.backup.body]\nid = \"{{client_id}}\"\n[environments.lab.api.auth]\nheaders = {{ Authtoken = \"{{token}}\" }}\n[environments.lab.api]\nheaders = {{ X-T = \"{{token}}\" }}"
        )));
        assert!(
            e.contains("api.backup.body.id") && e.contains("unknown placeholder `{client_id}`"),
            "{e}"
        );
        assert!(
            e.contains("api.auth.headers.Authtoken") && e.contains("`{token}`"),
            "{e}"
        );
        assert!(
            e.contains("api.headers.X-T") && e.contains("`{token}`"),
            "{e}"
        );
    }

    #[test]
    fn rejects_a_typed_placeholder_that_is_not_a_whole_body_string() {
        let e = problems(&env_toml(
            "[environments.lab.api.backup]\npath = \"/b/{host:number}\"\nbody = { n = \"x{level:bool}\", ok = \"{host:number}\" }",
        ));
        assert!(
            e.contains("api.backup.path") && e.contains("must be the whole string"),
            "{e}"
        );
        assert!(
            e.contains("api.backup.body.n") && e.contains("must be the whole string"),
            "{e}"
        );
        assert!(!e.contains("api.backup.body.ok"), "{e}");
    }

    #[test]
    fn rejects_bad_error_pointers_header_names_value_maps_and_credentials_in_the_login_body() {
        let e = problems(&env_toml(
            "[environments.lab.api]\nheaders = { \"Bad Header\" = \"x\" }\nvalue_maps = { lvl = { FULL = \"Full\" } }\n[environments.lab.api.backup]\nerrors = { code_pointer = \"errorCode\" }\n[environments.lab.api.auth]\nbody = { password = \"x\" }",
        ));
        for want in [
            "api.headers.Bad Header",
            "api.value_maps.lvl",
            "api.backup.errors.code_pointer",
            "api.auth.body.password",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn accepts_a_health_check_without_components() {
        let e = problems(&env_toml(
            "[environments.lab.api.health]\ncomponents_pointer = \"\"\noverall_pointer = \"\"\nsend_token = true",
        ));
        assert_eq!(e, "");
    }

    #[test]
    fn rejects_duplicate_hosts_in_a_file() {
        let e = parse_hosts("a\nb\na\n", BackupLevel::Full).unwrap_err();
        assert_eq!(e.0, 3);
    }

    #[test]
    fn rejects_unknown_placeholders_naming_the_key_and_the_placeholder() {
        let e = problems(&env_toml(
            "[environments.lab.api.backup]\npath = \"/api/v1/hosts/{hostt}/backups\"",
        ));
        assert!(
            e.contains("environments.lab.api.backup.path")
                && e.contains("unknown placeholder `{hostt}`")
                && e.contains("{host}, {level}"),
            "{e}"
        );
        let e = problems(&env_toml(
            "[environments.lab.api.job_status.body]\njobId = \"{job}\"\nhost = \"{host}\"",
        ));
        assert!(
            e.contains("environments.lab.api.job_status.body.jobId") && e.contains("`{job}`"),
            "{e}"
        );
        let e = problems(&env_toml(
            "[environments.lab.api.health]\npath = \"/h/{host}\"",
        ));
        assert!(
            e.contains("api.health.path") && e.contains("none is filled in here"),
            "{e}"
        );
    }

    #[test]
    fn rejects_a_base_url_with_a_query_or_a_fragment() {
        for u in ["http://lab.example/?tenant=1", "http://lab.example/#top"] {
            let e = problems(&env_toml("").replace("http://lab.example", u));
            assert!(
                e.contains("environments.lab.base_url") && e.contains("must not have a query"),
                "{u}: {e}"
            );
            assert!(
                e.contains("or a fragment (#…): every API path is appended to it"),
                "the message reads as one sentence: {e}"
            );
        }
        assert_eq!(
            problems(&env_toml("").replace("http://lab.example", "http://lab.example/iaso")),
            ""
        );
    }

    #[test]
    fn rejects_a_host_listed_inline_and_in_the_hosts_file() {
        let d = tempfile::tempdir().unwrap();
        let hosts = d.path().join("hosts.txt");
        std::fs::write(&hosts, "web-01\nweb-02 FULL\n").unwrap();
        let e = problems(&env_toml(&format!(
            "hosts_file = {:?}\n[[environments.lab.hosts]]\nname = \"web-02\"\n[[environments.lab.hosts]]\nname = \"db-01\"",
            hosts.display().to_string()
        )));
        assert!(
            e.contains("environments.lab.hosts[0].name")
                && e.contains("`web-02` is listed inline and in hosts_file"),
            "{e}"
        );
        assert!(e.starts_with("1 configuration problem"), "{e}");
    }

    #[test]
    fn rejects_durations_and_counts_over_their_upper_bound() {
        let e = problems(&env_toml(
            "[environments.lab.jobs]\npoll_jitter_ms = 9223372036854775807",
        ));
        assert!(
            e.contains("environments.lab.jobs.poll_jitter_ms") && e.contains("over the limit"),
            "{e}"
        );
        for (table, key) in [
            ("", "timeout_ms"),
            ("", "max_body_bytes"),
            ("jobs", "poll_interval_ms"),
            ("jobs", "max_duration_secs"),
            ("jobs", "backup_interval_secs"),
            ("checks.liveness", "interval_secs"),
            ("checks.auth", "attempts"),
            ("api.auth", "min_login_interval_secs"),
            ("api.health", "max_components"),
        ] {
            let (header, dotted) = if table.is_empty() {
                (String::new(), key.to_owned())
            } else {
                (
                    format!("[environments.lab.{table}]\n"),
                    format!("{table}.{key}"),
                )
            };
            let e = problems(&env_toml(&format!("{header}{key} = 4294967295")));
            assert!(
                e.contains(&format!("environments.lab.{dotted}")) && e.contains("over the limit"),
                "{dotted}: {e}"
            );
        }
    }

    #[test]
    fn rejects_global_durations_and_counts_over_their_upper_bound() {
        for (table, key) in [
            ("journal", "segment_max_bytes"),
            ("journal", "flush_interval_ms"),
            ("journal", "fsync_interval_ms"),
            ("journal", "retention_hours"),
            ("journal", "retention_max_bytes"),
            ("log", "max_files"),
            ("sink", "buffer"),
            ("elasticsearch", "request_timeout_ms"),
            ("elasticsearch", "batch_max_docs"),
            ("elasticsearch", "batch_max_wait_ms"),
            ("elasticsearch", "max_in_flight"),
            ("elasticsearch", "retry_initial_ms"),
            ("elasticsearch", "retry_max_ms"),
            ("elasticsearch", "once_ship_deadline_secs"),
            ("environments.lab.jobs", "max_launches_per_minute"),
            ("environments.lab", "max_redirects"),
        ] {
            // The largest value each key's type accepts: u32 for these two, u64 (as i64) else.
            let max = if key == "max_launches_per_minute" || key == "max_redirects" {
                u64::from(u32::MAX)
            } else {
                i64::MAX as u64
            };
            let line = format!("{key} = {max}\n");
            let toml = if table == "environments.lab" {
                env_toml(&line)
            } else {
                format!("{}[{table}]\n{line}", env_toml(""))
            };
            let e = problems(&toml);
            assert!(
                e.contains(&format!("key `{table}.{key}`")) && e.contains("over the limit"),
                "{table}.{key}: {e}"
            );
        }
    }

    #[test]
    fn rejects_zero_max_components() {
        let e = problems(&env_toml(
            "[environments.lab.api.health]\nmax_components = 0",
        ));
        assert!(
            e.contains("environments.lab.api.health.max_components") && e.contains("at least 1"),
            "{e}"
        );
    }

    #[test]
    fn rejects_a_malformed_backup_window() {
        let e = problems(&env_toml(
            "[environments.lab.jobs]\nbackup_window = \"22h-6h\"",
        ));
        assert!(
            e.contains("environments.lab.jobs.backup_window") && e.contains("HH:MM-HH:MM"),
            "{e}"
        );
        let e = problems(&env_toml(
            "[environments.lab.jobs]\nrestore_window = \"06:00-06:00\"",
        ));
        assert!(
            e.contains("environments.lab.jobs.restore_window") && e.contains("empty"),
            "{e}"
        );
        let ok = problems(&env_toml(
            "[environments.lab.jobs]\nbackup_window = \"22:00-06:00\"\nschedule_tz = \"Europe/Paris\"",
        ));
        assert_eq!(ok, "");
    }

    #[test]
    fn rejects_a_malformed_backup_cron() {
        let e = problems(&env_toml(
            "[environments.lab.jobs]\nbackup_cron = \"at two\"",
        ));
        assert!(
            e.contains("environments.lab.jobs.backup_cron") && e.contains("not a cron expression"),
            "{e}"
        );
        let ok = problems(&env_toml(
            "[environments.lab.jobs]\nrestore_cron = \"0 2 * * *\"",
        ));
        assert_eq!(ok, "");
    }

    #[test]
    fn rejects_an_unknown_schedule_tz() {
        let e = problems(&env_toml(
            "[environments.lab.jobs]\nschedule_tz = \"Europe/Atlantis\"",
        ));
        assert!(
            e.contains("environments.lab.jobs.schedule_tz") && e.contains("Europe/Atlantis"),
            "{e}"
        );
    }

    #[test]
    fn a_launch_table_with_only_a_path_keeps_the_other_defaults() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("t.toml");
        std::fs::write(
            &f,
            env_toml("[environments.lab.api.backup]\npath = \"/v2/backups\"\n[environments.lab.api.restore]\njob_id_pointer = \"/id\""),
        )
        .unwrap();
        let c = load_with(&ConfigSource::Files(vec![f]), false)
            .unwrap_or_else(|e| panic!("{e}"))
            .config;
        let api = &c.environments["lab"].api;
        let d = crate::config::ApiMapping::default();
        assert_eq!(api.backup.path, "/v2/backups");
        assert_eq!(
            (
                &api.backup.method,
                &api.backup.body,
                &api.backup.job_id_pointer
            ),
            (&d.backup.method, &d.backup.body, &d.backup.job_id_pointer)
        );
        assert_eq!(api.restore.job_id_pointer, "/id");
        assert_eq!(
            (&api.restore.path, &api.restore.body),
            (&d.restore.path, &d.restore.body)
        );
    }

    #[test]
    fn a_launch_table_still_rejects_unknown_keys() {
        let e = problems(&env_toml("[environments.lab.api.backup]\npth = \"/x\""));
        assert!(e.contains("pth"), "{e}");
    }

    #[test]
    fn embedded_default_loads_and_validates() {
        assert!(EMBEDDED_DEFAULT.contains("[environments.lab]"));
        let loaded = load_with(&ConfigSource::Embedded, false).expect("embedded default loads");
        assert!(loaded.config.environments.contains_key("lab"));
        let problems = crate::config::valid::problems(&loaded.config);
        assert!(problems.is_empty(), "{problems:?}");
    }
}
