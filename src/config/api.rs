//! The portal's shape: methods, paths, request fields and JSON pointers, per environment.
//! Defaults are the reference API (design.md §2); a differently shaped portal is configured,
//! not coded. Placeholders `{host}`, `{level}`, `{job_id}`, `{file_name}`, `{source_path}`,
//! `{destination_path}` are replaced in paths (percent-encoded) and body values.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every endpoint the prober calls, and where the token goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiMapping {
    /// Header that carries the token.
    pub token_header: String,
    /// Value of that header; `{token}` is replaced by the token.
    pub token_format: String,
    /// Liveness check.
    pub liveness: LivenessEndpoint,
    /// Health check.
    pub health: HealthEndpoint,
    /// Authentication.
    pub auth: AuthEndpoint,
    /// Backup launch. Only the keys that differ need be given: the others keep the
    /// defaults of a backup (`body` is one value: a table given replaces the whole body).
    #[serde(deserialize_with = "backup_over_defaults")]
    pub backup: LaunchEndpoint,
    /// Restore launch; keys not given keep the defaults of a restore, as for `backup`.
    #[serde(deserialize_with = "restore_over_defaults")]
    pub restore: LaunchEndpoint,
    /// Job status.
    pub job_status: JobEndpoint,
}

impl Default for ApiMapping {
    fn default() -> Self {
        Self {
            token_header: "Authorization".into(),
            token_format: "Bearer {token}".into(),
            liveness: LivenessEndpoint::default(),
            health: HealthEndpoint::default(),
            auth: AuthEndpoint::default(),
            backup: default_backup(),
            restore: default_restore(),
            job_status: JobEndpoint::default(),
        }
    }
}

fn default_backup() -> LaunchEndpoint {
    LaunchEndpoint {
        method: "POST".into(),
        path: "/api/v1/backups".into(),
        body: fields(&[("hostname", "{host}"), ("backupLevel", "{level}")]),
        job_id_pointer: "/jobId".into(),
        status_pointer: "/status".into(),
    }
}

fn default_restore() -> LaunchEndpoint {
    LaunchEndpoint {
        method: "POST".into(),
        path: "/api/v1/restores".into(),
        body: fields(&[
            ("hostname", "{host}"),
            ("fileName", "{file_name}"),
            ("sourcePath", "{source_path}"),
            ("destinationPath", "{destination_path}"),
        ]),
        job_id_pointer: "/jobId".into(),
        status_pointer: "/status".into(),
    }
}

/// A launch table as written: every key optional, laid over the defaults of its kind
/// (backup and restore defaults differ, so serde's struct `default` cannot do it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LaunchEndpointKeys {
    method: Option<String>,
    path: Option<String>,
    body: Option<BTreeMap<String, String>>,
    job_id_pointer: Option<String>,
    status_pointer: Option<String>,
}

impl LaunchEndpointKeys {
    fn over(self, d: LaunchEndpoint) -> LaunchEndpoint {
        LaunchEndpoint {
            method: self.method.unwrap_or(d.method),
            path: self.path.unwrap_or(d.path),
            body: self.body.unwrap_or(d.body),
            job_id_pointer: self.job_id_pointer.unwrap_or(d.job_id_pointer),
            status_pointer: self.status_pointer.unwrap_or(d.status_pointer),
        }
    }
}

fn backup_over_defaults<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<LaunchEndpoint, D::Error> {
    Ok(LaunchEndpointKeys::deserialize(d)?.over(default_backup()))
}

fn restore_over_defaults<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<LaunchEndpoint, D::Error> {
    Ok(LaunchEndpointKeys::deserialize(d)?.over(default_restore()))
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Liveness: up when the HTTP status is `expect_http_status` and the value at `status_pointer` equals `expect_status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LivenessEndpoint {
    /// HTTP method.
    pub method: String,
    /// Path below the base URL, with placeholders.
    pub path: String,
    /// Expected HTTP status.
    pub expect_http_status: u16,
    /// JSON pointer to the status in the answer; empty = only the HTTP status is checked.
    pub status_pointer: String,
    /// Expected value there (number or string compared as text).
    pub expect_status: String,
}

impl Default for LivenessEndpoint {
    fn default() -> Self {
        Self {
            method: "GET".into(),
            path: "/api/v1/alive".into(),
            expect_http_status: 200,
            status_pointer: "/statusCode".into(),
            expect_status: "200".into(),
        }
    }
}

/// Health: a list of components with a status each.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthEndpoint {
    /// HTTP method.
    pub method: String,
    /// Path below the base URL, with placeholders.
    pub path: String,
    /// JSON pointer to the overall status (reported as component `_overall`); empty = none.
    pub overall_pointer: String,
    /// JSON pointer to the array of components.
    pub components_pointer: String,
    /// Field of a component holding its name.
    pub name_field: String,
    /// Field of a component holding its status.
    pub status_field: String,
    /// Status values meaning healthy (case-insensitive).
    pub healthy_values: Vec<String>,
    /// Components reported one result each, in the portal's order; any further ones are
    /// summarised in one result for component `_more` (how many, how many unhealthy).
    #[serde(default = "default_max_components")]
    pub max_components: usize,
}

fn default_max_components() -> usize {
    100
}

impl Default for HealthEndpoint {
    fn default() -> Self {
        Self {
            method: "GET".into(),
            path: "/api/v1/health".into(),
            overall_pointer: "/status".into(),
            components_pointer: "/services".into(),
            name_field: "name".into(),
            status_field: "status".into(),
            healthy_values: vec!["healthy".into()],
            max_components: default_max_components(),
        }
    }
}

/// Authentication: credentials in, token out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthEndpoint {
    /// HTTP method.
    pub method: String,
    /// Path below the base URL, with placeholders.
    pub path: String,
    /// Request field carrying the user name.
    pub username_field: String,
    /// Request field carrying the password.
    pub password_field: String,
    /// JSON pointer to the token in the answer.
    pub token_pointer: String,
    /// JSON pointer to the token lifetime in seconds; empty = unknown (re-login on 401 only).
    /// The token is renewed at 80 % of that lifetime (a lifetime over a day counts as a day).
    pub expires_in_pointer: String,
    /// Never more than one login request per this many seconds, whatever the portal says
    /// (a short `expiresIn`, 401s, the auth check): a later login waits for the interval.
    #[serde(default = "default_min_login_interval_secs")]
    pub min_login_interval_secs: u64,
}

fn default_min_login_interval_secs() -> u64 {
    10
}

impl Default for AuthEndpoint {
    fn default() -> Self {
        Self {
            method: "POST".into(),
            path: "/api/v1/auth/token".into(),
            username_field: "username".into(),
            password_field: "password".into(),
            token_pointer: "/token".into(),
            expires_in_pointer: "/expiresIn".into(),
            min_login_interval_secs: default_min_login_interval_secs(),
        }
    }
}

/// A launch (backup or restore): request fields in, job id out. Read through
/// [`LaunchEndpointKeys`], so every key is optional in a file.
#[derive(Debug, Clone, Serialize)]
pub struct LaunchEndpoint {
    /// HTTP method.
    pub method: String,
    /// Path below the base URL, with placeholders.
    pub path: String,
    /// JSON body: field name → value template (with placeholders). Empty = no body.
    pub body: BTreeMap<String, String>,
    /// JSON pointer to the job id (a string, or an integer that JSON reads exactly).
    pub job_id_pointer: String,
    /// JSON pointer to the launch status; empty = none.
    pub status_pointer: String,
}

/// Job status: polled until a terminal status.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobEndpoint {
    /// HTTP method.
    pub method: String,
    /// Path below the base URL, with placeholders.
    pub path: String,
    /// JSON body: field name → value template. Empty = no body (e.g. `GET /jobs/{job_id}`).
    pub body: BTreeMap<String, String>,
    /// JSON pointer to the status word.
    pub status_pointer: String,
    /// JSON pointer to the percent complete; empty = none.
    pub percent_pointer: String,
    /// JSON pointer to the elapsed seconds; empty = none.
    pub elapsed_pointer: String,
    /// JSON pointer to the phase; empty = none.
    pub phase_pointer: String,
    /// JSON pointer to the failure reason; empty = none.
    pub failure_reason_pointer: String,
}

impl Default for JobEndpoint {
    fn default() -> Self {
        Self {
            method: "POST".into(),
            path: "/api/v1/jobs/status".into(),
            body: fields(&[("jobId", "{job_id}"), ("hostname", "{host}")]),
            status_pointer: "/status".into(),
            percent_pointer: "/percentComplete".into(),
            elapsed_pointer: "/elapsedSeconds".into(),
            phase_pointer: "/phase".into(),
            failure_reason_pointer: "/failureReason".into(),
        }
    }
}
