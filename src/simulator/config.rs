//! Configuration of the simulator: what it accepts, how it misbehaves, how its jobs run.
//!
//! The same tree appears in the prober's configuration as `[environments.<name>.simulator]`
//! and in the file given to `iaso-probe simulate --config FILE`, so every field's doc comment
//! is user documentation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The endpoint names used as keys of `endpoint_faults` and of the counters.
pub const ENDPOINT_NAMES: [&str; 6] = [
    "alive",
    "health",
    "auth",
    "backups",
    "job_status",
    "restores",
];

/// The simulator's configuration (all keys optional; defaults below).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    /// Seed of every random choice (latency, faults, tokens, job outcomes and durations).
    /// The same seed and the same requests give the same answers.
    pub seed: u64,
    /// Accepted logins. Default: one user `probe` with password `probe-secret`.
    pub credentials: Vec<SimCredential>,
    /// Lifetime of an issued token, in milliseconds; a request with an older token gets 401.
    /// The login answers it as `expiresIn`, in whole seconds rounded down.
    pub token_ttl_ms: u64,
    /// Latency added to every answer, drawn uniformly in `min..=max` milliseconds.
    /// Overridden by `faults.latency_ms` and `endpoint_faults.<name>.latency_ms`.
    pub latency_ms: RangeMs,
    /// Faults injected on every endpoint, unless `endpoint_faults` has an entry for it.
    pub faults: FaultConfig,
    /// Faults per endpoint name (`alive`, `health`, `auth`, `backups`, `job_status`,
    /// `restores`); an entry replaces `faults` entirely for that endpoint.
    pub endpoint_faults: BTreeMap<String, FaultConfig>,
    /// The portal's own rate limit, in requests per second over all endpoints (a token
    /// bucket); excess requests get 429 with a `Retry-After` header. None: no limit.
    pub rate_limit_per_sec: Option<u32>,
    /// Size of the rate limit's bucket: how many requests may arrive at once after a pause.
    pub rate_limit_burst: u32,
    /// Duration of a job from launch to its terminal status, drawn in `min..=max`
    /// milliseconds: `Pending` for the first tenth, then `Running`, then terminal (a failed
    /// job stops between 10 and 90 %; a job that fails to start is terminal at once).
    pub job_duration_ms: RangeMs,
    /// Share of jobs that end `Failed` (with a `failureReason`), between 0 and 1.
    pub job_failure_ratio: f64,
    /// Share of jobs that end `Completed w/ one or more warnings`, between 0 and 1.
    pub job_warning_ratio: f64,
    /// Share of jobs that are `Failed to Start` right at launch, between 0 and 1.
    pub job_fail_to_start_ratio: f64,
    /// Components listed by the health endpoint.
    pub components: Vec<String>,
    /// Chance that a component is reported unhealthy on a health request, between 0 and 1.
    pub unhealthy_ratio: f64,
    /// Shape of the API: `reference` (the IASO portal, `/api/v1/...`), `alt` (a
    /// differently shaped portal, `/rest/...`, to test configurable endpoint mappings) or
    /// `commvault` (Commvault's own REST API under `/commandcenter/api`, see
    /// `config/commvault.toml`).
    pub dialect: Dialect,
    /// `commvault` dialect: the subclients it knows, by id; a backup of another id answers
    /// `Subclient not found` (inside an HTTP 200, as Commvault does). Default: 101 `web01`,
    /// 102 `db01`, 103 `fail01` (whose jobs always fail).
    pub subclients: Vec<SimSubclient>,
    /// Number of HTTP worker threads (one serves tens of thousands of jobs).
    pub workers: usize,
}

/// One accepted login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimCredential {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A subclient of the `commvault` dialect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSubclient {
    /// Subclient id (the `{id}` of `/Subclient/{id}/action/backup`).
    pub id: u64,
    /// Client (host) the subclient belongs to.
    pub client: String,
    /// Every job of this subclient ends `Failed` (with a failure reason), whatever
    /// `job_failure_ratio` says.
    #[serde(default)]
    pub always_fails: bool,
}

/// An inclusive range of milliseconds, written `{ min = 1, max = 5 }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeMs {
    /// Smallest value, in milliseconds.
    pub min: u64,
    /// Largest value, in milliseconds (at least `min`).
    pub max: u64,
}

impl RangeMs {
    /// A range from `min` to `max` milliseconds.
    pub const fn new(min: u64, max: u64) -> Self {
        Self { min, max }
    }
}

/// Faults injected into answers. The three ratios are shares of requests (one draw per
/// request, so they must add up to at most 1). A faulty answer replaces the real one: the
/// request has no effect (no token, no job).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Share of requests answered with a 5xx (500, 502 or 503), between 0 and 1.
    pub error_5xx_ratio: f64,
    /// Share of requests that hang for `hang_ms` and then get 504, between 0 and 1.
    pub timeout_ratio: f64,
    /// How long a timed-out request hangs before its 504, in milliseconds.
    pub hang_ms: u64,
    /// Share of requests answered 200 with a body that is not valid JSON, between 0 and 1.
    pub malformed_ratio: f64,
    /// Latency for these requests instead of the simulator's `latency_ms`.
    pub latency_ms: Option<RangeMs>,
}

/// Shape of the simulated API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// The IASO portal as documented (`/api/v1/...`, `Authorization: Bearer`, string job ids).
    #[default]
    Reference,
    /// A differently shaped portal (`/rest/...`, `X-Auth-Token`, numeric job ids).
    Alt,
    /// Commvault's own REST API (`/commandcenter/api/...`): XML unless `Accept:
    /// application/json`, Base64 password, `Authtoken: QSDK …`, errors inside HTTP 200.
    Commvault,
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reference" => Ok(Self::Reference),
            "alt" => Ok(Self::Alt),
            "commvault" => Ok(Self::Commvault),
            _ => Err(format!(
                "unknown dialect `{s}` (expected reference, alt or commvault)"
            )),
        }
    }
}

fn default_seed() -> u64 {
    42
}

fn default_credentials() -> Vec<SimCredential> {
    vec![SimCredential {
        username: "probe".to_owned(),
        password: "probe-secret".to_owned(),
    }]
}

fn default_token_ttl_ms() -> u64 {
    3_600_000
}

fn default_latency_ms() -> RangeMs {
    RangeMs::new(1, 5)
}

fn default_rate_limit_burst() -> u32 {
    10
}

fn default_job_duration_ms() -> RangeMs {
    RangeMs::new(2_000, 8_000)
}

fn default_job_failure_ratio() -> f64 {
    0.1
}

fn default_job_warning_ratio() -> f64 {
    0.05
}

fn default_components() -> Vec<String> {
    [
        "commserve",
        "media-agent",
        "index-server",
        "web-console",
        "database",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

fn default_subclients() -> Vec<SimSubclient> {
    [
        (101, "web01", false),
        (102, "db01", false),
        (103, "fail01", true),
    ]
    .into_iter()
    .map(|(id, client, always_fails)| SimSubclient {
        id,
        client: client.to_owned(),
        always_fails,
    })
    .collect()
}

fn default_workers() -> usize {
    1
}

fn default_hang_ms() -> u64 {
    30_000
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            seed: default_seed(),
            credentials: default_credentials(),
            token_ttl_ms: default_token_ttl_ms(),
            latency_ms: default_latency_ms(),
            faults: FaultConfig::default(),
            endpoint_faults: BTreeMap::new(),
            rate_limit_per_sec: None,
            rate_limit_burst: default_rate_limit_burst(),
            job_duration_ms: default_job_duration_ms(),
            job_failure_ratio: default_job_failure_ratio(),
            job_warning_ratio: default_job_warning_ratio(),
            job_fail_to_start_ratio: 0.0,
            components: default_components(),
            unhealthy_ratio: 0.0,
            dialect: Dialect::default(),
            subclients: default_subclients(),
            workers: default_workers(),
        }
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            error_5xx_ratio: 0.0,
            timeout_ratio: 0.0,
            hang_ms: default_hang_ms(),
            malformed_ratio: 0.0,
            latency_ms: None,
        }
    }
}

impl SimulatorConfig {
    /// Checks every rule and returns all broken ones, each naming its key, joined by "; ".
    pub fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        if self.credentials.is_empty() {
            errors.push("credentials must list at least one login".to_owned());
        }
        for (i, c) in self.credentials.iter().enumerate() {
            if c.username.is_empty() {
                errors.push(format!("credentials[{i}].username must not be empty"));
            }
        }
        if self.token_ttl_ms == 0 {
            errors.push("token_ttl_ms must be at least 1".to_owned());
        }
        check_range("latency_ms", self.latency_ms, &mut errors);
        self.faults.check("faults", &mut errors);
        for (name, faults) in &self.endpoint_faults {
            if !ENDPOINT_NAMES.contains(&name.as_str()) {
                errors.push(format!(
                    "endpoint_faults.{name} is not an endpoint name; expected one of {}",
                    ENDPOINT_NAMES.join(", ")
                ));
            }
            faults.check(&format!("endpoint_faults.{name}"), &mut errors);
        }
        if self.rate_limit_per_sec == Some(0) {
            errors.push(
                "rate_limit_per_sec must be at least 1 (leave it out for no limit)".to_owned(),
            );
        }
        if self.rate_limit_burst == 0 {
            errors.push("rate_limit_burst must be at least 1".to_owned());
        }
        check_range("job_duration_ms", self.job_duration_ms, &mut errors);
        let job_ratios = [
            ("job_failure_ratio", self.job_failure_ratio),
            ("job_warning_ratio", self.job_warning_ratio),
            ("job_fail_to_start_ratio", self.job_fail_to_start_ratio),
        ];
        check_ratios("", &job_ratios, &mut errors);
        check_ratio("unhealthy_ratio", self.unhealthy_ratio, &mut errors);
        if self.workers == 0 {
            errors.push("workers must be at least 1".to_owned());
        }
        let mut ids = std::collections::HashSet::new();
        for (i, s) in self.subclients.iter().enumerate() {
            if s.client.is_empty() {
                errors.push(format!("subclients[{i}].client must not be empty"));
            }
            if !ids.insert(s.id) {
                errors.push(format!("subclients[{i}].id {} is listed twice", s.id));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// The faults that apply to the endpoint named `name`.
    pub(crate) fn faults_for(&self, name: &str) -> &FaultConfig {
        self.endpoint_faults.get(name).unwrap_or(&self.faults)
    }

    /// The latency range that applies to the endpoint named `name`.
    pub(crate) fn latency_for(&self, name: &str) -> RangeMs {
        self.endpoint_faults
            .get(name)
            .and_then(|f| f.latency_ms)
            .or(self.faults.latency_ms)
            .unwrap_or(self.latency_ms)
    }
}

impl FaultConfig {
    fn check(&self, prefix: &str, errors: &mut Vec<String>) {
        let ratios = [
            ("error_5xx_ratio", self.error_5xx_ratio),
            ("timeout_ratio", self.timeout_ratio),
            ("malformed_ratio", self.malformed_ratio),
        ];
        check_ratios(&format!("{prefix}."), &ratios, errors);
        if let Some(latency) = self.latency_ms {
            check_range(&format!("{prefix}.latency_ms"), latency, errors);
        }
    }
}

fn check_ratio(key: &str, value: f64, errors: &mut Vec<String>) {
    // `contains` is false for NaN, so NaN is rejected too.
    if !(0.0..=1.0).contains(&value) {
        errors.push(format!("{key} must be between 0 and 1, got {value}"));
    }
}

/// Checks each ratio, then that ratios drawn from one roll add up to at most 1.
fn check_ratios(prefix: &str, ratios: &[(&str, f64)], errors: &mut Vec<String>) {
    let before = errors.len();
    for (key, value) in ratios {
        check_ratio(&format!("{prefix}{key}"), *value, errors);
    }
    let sum: f64 = ratios.iter().map(|(_, v)| v).sum();
    // A small tolerance, so that 0.7 + 0.2 + 0.1 is accepted despite rounding.
    if errors.len() == before && sum > 1.0 + 1e-9 {
        let keys: Vec<String> = ratios.iter().map(|(k, _)| format!("{prefix}{k}")).collect();
        errors.push(format!(
            "{} must add up to at most 1, got {sum}",
            keys.join(" + ")
        ));
    }
}

fn check_range(key: &str, range: RangeMs, errors: &mut Vec<String>) {
    if range.min > range.max {
        errors.push(format!(
            "{key}.min must be at most {key}.max, got min {} and max {}",
            range.min, range.max
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(cfg: &SimulatorConfig) -> String {
        cfg.validate().expect_err("config should be rejected")
    }

    #[test]
    fn default_config_is_valid() {
        assert_eq!(SimulatorConfig::default().validate(), Ok(()));
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let cfg = SimulatorConfig::default();
        assert_eq!(cfg.seed, 42);
        assert_eq!(cfg.credentials[0].username, "probe");
        assert_eq!(cfg.credentials[0].password, "probe-secret");
        assert_eq!(cfg.token_ttl_ms, 3_600_000);
        assert_eq!(cfg.latency_ms, RangeMs::new(1, 5));
        assert_eq!(cfg.job_duration_ms, RangeMs::new(2_000, 8_000));
        assert_eq!(cfg.components.len(), 5);
        assert_eq!(cfg.dialect, Dialect::Reference);
        assert_eq!(cfg.faults.error_5xx_ratio, 0.0);
    }

    #[test]
    fn empty_toml_gives_the_defaults() {
        let cfg: SimulatorConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, SimulatorConfig::default());
    }

    #[test]
    fn toml_with_every_kind_of_key_parses() {
        let cfg: SimulatorConfig = toml::from_str(
            r#"
            seed = 7
            dialect = "alt"
            rate_limit_per_sec = 20
            latency_ms = { min = 0, max = 0 }
            credentials = [{ username = "u", password = "p" }]
            [faults]
            error_5xx_ratio = 0.1
            [endpoint_faults.backups]
            timeout_ratio = 0.5
            hang_ms = 100
            latency_ms = { min = 10, max = 20 }
            "#,
        )
        .unwrap();
        assert_eq!(cfg.seed, 7);
        assert_eq!(cfg.dialect, Dialect::Alt);
        assert_eq!(cfg.rate_limit_per_sec, Some(20));
        assert_eq!(cfg.faults_for("backups").timeout_ratio, 0.5);
        assert_eq!(cfg.faults_for("alive").error_5xx_ratio, 0.1);
        assert_eq!(cfg.latency_for("backups"), RangeMs::new(10, 20));
        assert_eq!(cfg.latency_for("alive"), RangeMs::new(0, 0));
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn rejects_unknown_keys() {
        let err = toml::from_str::<SimulatorConfig>("sead = 1").unwrap_err();
        assert!(err.to_string().contains("unknown field `sead`"), "{err}");
        let err = toml::from_str::<SimulatorConfig>("[faults]\nerror_ratio = 0.1").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `error_ratio`"),
            "{err}"
        );
    }

    #[test]
    fn rejects_ratio_above_one() {
        let mut cfg = SimulatorConfig::default();
        cfg.faults.error_5xx_ratio = 1.5;
        assert_eq!(
            error_of(&cfg),
            "faults.error_5xx_ratio must be between 0 and 1, got 1.5"
        );
    }

    #[test]
    fn rejects_negative_and_nan_ratios() {
        let cfg = SimulatorConfig {
            unhealthy_ratio: -0.1,
            job_failure_ratio: f64::NAN,
            ..SimulatorConfig::default()
        };
        let err = error_of(&cfg);
        assert!(
            err.contains("unhealthy_ratio must be between 0 and 1, got -0.1"),
            "{err}"
        );
        assert!(
            err.contains("job_failure_ratio must be between 0 and 1, got NaN"),
            "{err}"
        );
    }

    #[test]
    fn rejects_fault_ratios_adding_up_to_more_than_one() {
        let mut cfg = SimulatorConfig::default();
        cfg.endpoint_faults.insert(
            "auth".to_owned(),
            FaultConfig {
                error_5xx_ratio: 0.6,
                timeout_ratio: 0.6,
                ..FaultConfig::default()
            },
        );
        let err = error_of(&cfg);
        assert!(
            err.starts_with("endpoint_faults.auth.error_5xx_ratio + "),
            "{err}"
        );
        assert!(err.contains("must add up to at most 1"), "{err}");
    }

    #[test]
    fn rejects_job_ratios_adding_up_to_more_than_one() {
        let cfg = SimulatorConfig {
            job_failure_ratio: 0.5,
            job_warning_ratio: 0.3,
            job_fail_to_start_ratio: 0.3,
            ..SimulatorConfig::default()
        };
        assert!(error_of(&cfg).contains("job_failure_ratio + job_warning_ratio"));
    }

    #[test]
    fn accepts_ratios_adding_up_to_exactly_one() {
        let cfg = SimulatorConfig {
            job_failure_ratio: 0.7,
            job_warning_ratio: 0.2,
            job_fail_to_start_ratio: 0.1,
            ..SimulatorConfig::default()
        };
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn rejects_range_with_min_above_max() {
        let cfg = SimulatorConfig {
            job_duration_ms: RangeMs::new(10, 5),
            ..SimulatorConfig::default()
        };
        assert_eq!(
            error_of(&cfg),
            "job_duration_ms.min must be at most job_duration_ms.max, got min 10 and max 5"
        );
        let mut cfg = SimulatorConfig::default();
        cfg.faults.latency_ms = Some(RangeMs::new(3, 2));
        assert!(error_of(&cfg).starts_with("faults.latency_ms.min must be at most"));
    }

    #[test]
    fn rejects_empty_credentials() {
        let cfg = SimulatorConfig {
            credentials: vec![],
            ..SimulatorConfig::default()
        };
        assert_eq!(error_of(&cfg), "credentials must list at least one login");
    }

    #[test]
    fn rejects_empty_username() {
        let cfg = SimulatorConfig {
            credentials: vec![SimCredential {
                username: String::new(),
                password: "p".to_owned(),
            }],
            ..SimulatorConfig::default()
        };
        assert_eq!(error_of(&cfg), "credentials[0].username must not be empty");
    }

    #[test]
    fn rejects_unknown_endpoint_name_in_endpoint_faults() {
        let mut cfg = SimulatorConfig::default();
        cfg.endpoint_faults
            .insert("backup".to_owned(), FaultConfig::default());
        assert!(error_of(&cfg).starts_with("endpoint_faults.backup is not an endpoint name"));
    }

    #[test]
    fn rejects_zero_rate_limit_zero_burst_zero_ttl_and_zero_workers() {
        let cfg = SimulatorConfig {
            rate_limit_per_sec: Some(0),
            rate_limit_burst: 0,
            token_ttl_ms: 0,
            workers: 0,
            ..SimulatorConfig::default()
        };
        let err = error_of(&cfg);
        for key in [
            "rate_limit_per_sec",
            "rate_limit_burst",
            "token_ttl_ms",
            "workers",
        ] {
            assert!(
                err.contains(&format!("{key} must be at least 1")),
                "{key}: {err}"
            );
        }
    }
}
