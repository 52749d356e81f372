//! The portal's shape: methods, paths, headers, request bodies and JSON pointers, per
//! environment. Defaults are the reference API (design.md §2); a differently shaped portal
//! (Commvault's own REST API: `config/commvault.toml`) is configured, not coded.
//!
//! Placeholders `{host}`, `{level}`, `{job_id}`, `{file_name}`, `{source_path}`,
//! `{destination_path}`, `{token}` (headers) and the hosts' and restores' own `vars` are
//! replaced in paths (percent-encoded), header values and body strings (as they are). A body
//! string that is exactly `{name:number}` or `{name:bool}` becomes a JSON number or boolean.
//! `value_maps` translate a placeholder's value on the way out (`FULL` → `Full`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Request headers: name → value template.
pub type Headers = BTreeMap<String, String>;

/// A JSON request body: any TOML value per key (tables, arrays, numbers, booleans, strings
/// with placeholders). Empty = no body.
pub type Body = serde_json::Map<String, Value>;

/// Every endpoint the prober calls, and where the token goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiMapping {
    /// Header that carries the token.
    pub token_header: String,
    /// Value of that header; `{token}` is replaced by the token.
    pub token_format: String,
    /// Headers sent with every request of the environment (`Accept = "application/json"`).
    /// No placeholder is filled in here; an endpoint's own `headers` win over these.
    pub headers: Headers,
    /// Value maps per placeholder: `{ level = { FULL = "Full" } }` sends `Full` wherever
    /// `{level}` would be `FULL`. Values without an entry are sent unchanged.
    pub value_maps: BTreeMap<String, BTreeMap<String, String>>,
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
            headers: Headers::new(),
            value_maps: BTreeMap::new(),
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
        headers: Headers::new(),
        errors: ErrorMapping::default(),
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
        headers: Headers::new(),
        errors: ErrorMapping::default(),
    }
}

/// A launch table as written: every key optional, laid over the defaults of its kind
/// (backup and restore defaults differ, so serde's struct `default` cannot do it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LaunchEndpointKeys {
    method: Option<String>,
    path: Option<String>,
    body: Option<Body>,
    job_id_pointer: Option<String>,
    status_pointer: Option<String>,
    headers: Option<Headers>,
    errors: Option<ErrorMapping>,
}

impl LaunchEndpointKeys {
    fn over(self, d: LaunchEndpoint) -> LaunchEndpoint {
        LaunchEndpoint {
            method: self.method.unwrap_or(d.method),
            path: self.path.unwrap_or(d.path),
            body: self.body.unwrap_or(d.body),
            job_id_pointer: self.job_id_pointer.unwrap_or(d.job_id_pointer),
            status_pointer: self.status_pointer.unwrap_or(d.status_pointer),
            headers: self.headers.unwrap_or(d.headers),
            errors: self.errors.unwrap_or(d.errors),
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

fn fields(pairs: &[(&str, &str)]) -> Body {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

/// Errors the portal reports inside a 2xx answer (Commvault answers HTTP 200 with
/// `errorCode`/`errorMessage`, or `errList[0]` on a login). The answer is a failure when
/// the value at `code_pointer` is present and not one of `success_codes`, or, with no code
/// there, when the value at `message_pointer` is a non-empty string; the portal's message
/// is the result's `error.message` (`error.type` `api_error`; `auth` on the login).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorMapping {
    /// JSON pointer to the error code; empty = none.
    pub code_pointer: String,
    /// JSON pointer to the error message; empty = none.
    pub message_pointer: String,
    /// Codes meaning success, compared as text (a number `0` matches `"0"`).
    pub success_codes: Vec<String>,
}

impl Default for ErrorMapping {
    fn default() -> Self {
        Self {
            code_pointer: String::new(),
            message_pointer: String::new(),
            success_codes: vec!["0".into()],
        }
    }
}

impl ErrorMapping {
    /// True when nothing is configured (no answer is read for errors).
    pub(crate) fn is_off(&self) -> bool {
        self.code_pointer.is_empty() && self.message_pointer.is_empty()
    }
}

/// How the password is written into the login body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordEncoding {
    /// As stored.
    #[default]
    Plain,
    /// Base64 of its UTF-8 bytes (Commvault's `/Login`); the stored secret stays the real
    /// password.
    Base64,
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
    /// Send the token (logging in first when needed), for a liveness endpoint that wants one.
    pub send_token: bool,
    /// Headers of this request (over `api.headers`); `{token}` only with `send_token`.
    pub headers: Headers,
    /// Errors inside a 2xx answer.
    pub errors: ErrorMapping,
}

impl Default for LivenessEndpoint {
    fn default() -> Self {
        Self {
            method: "GET".into(),
            path: "/api/v1/alive".into(),
            expect_http_status: 200,
            status_pointer: "/statusCode".into(),
            expect_status: "200".into(),
            send_token: false,
            headers: Headers::new(),
            errors: ErrorMapping::default(),
        }
    }
}

/// Health: an overall status and/or a list of components with a status each. With
/// neither pointer, the health is the call itself: healthy when a 2xx comes back without
/// an error (`errors`), reported as component `_overall`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthEndpoint {
    /// HTTP method.
    pub method: String,
    /// Path below the base URL, with placeholders.
    pub path: String,
    /// JSON pointer to the overall status (reported as component `_overall`); empty = none.
    pub overall_pointer: String,
    /// JSON pointer to the array of components (anywhere in the answer); empty = none
    /// (only the overall status is reported).
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
    /// Send the token (logging in first when needed): an authenticated endpoint can serve
    /// as the health check.
    pub send_token: bool,
    /// Headers of this request (over `api.headers`); `{token}` only with `send_token`.
    pub headers: Headers,
    /// Errors inside a 2xx answer.
    pub errors: ErrorMapping,
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
            send_token: false,
            headers: Headers::new(),
            errors: ErrorMapping::default(),
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
    /// How the password is written into the body: `plain` or `base64`.
    pub password_encoding: PasswordEncoding,
    /// Further body fields sent with the credentials (`{ mode = 4, deviceId = "probe" }`);
    /// any TOML value, no placeholder.
    pub body: Body,
    /// Headers of the login (over `api.headers`); no placeholder.
    pub headers: Headers,
    /// Errors inside a 2xx answer: a refused login reported `auth` with the portal's message.
    pub errors: ErrorMapping,
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
            password_encoding: PasswordEncoding::Plain,
            body: Body::new(),
            headers: Headers::new(),
            errors: ErrorMapping::default(),
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
    /// JSON body: any TOML value per field, placeholders in its strings. Empty = no body.
    pub body: Body,
    /// JSON pointer to the job id (a string, or an integer that JSON reads exactly).
    pub job_id_pointer: String,
    /// JSON pointer to the launch status; empty = none.
    pub status_pointer: String,
    /// Headers of this request (over `api.headers`), with placeholders.
    pub headers: Headers,
    /// Errors inside a 2xx answer (`errorCode`/`errorMessage`).
    pub errors: ErrorMapping,
}

/// Job status: polled until a terminal status.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobEndpoint {
    /// HTTP method.
    pub method: String,
    /// Path below the base URL, with placeholders.
    pub path: String,
    /// JSON body, as for a launch. Empty = no body (e.g. `GET /jobs/{job_id}`).
    pub body: Body,
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
    /// Headers of this request (over `api.headers`), with placeholders.
    pub headers: Headers,
    /// Errors inside a 2xx answer.
    pub errors: ErrorMapping,
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
            headers: Headers::new(),
            errors: ErrorMapping::default(),
        }
    }
}

/// The names between `{` and `}` in `template`, in order (as the client's renderer reads
/// them; `{job_id:number}` gives `job_id:number`).
pub fn placeholder_names(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        match rest[open..].find('}') {
            Some(close) => {
                out.push(&rest[open + 1..open + close]);
                rest = &rest[open + close + 1..];
            }
            None => break,
        }
    }
    out
}

/// `{name:number}` or `{name:bool}` as the whole string: `(name, kind)`.
pub fn typed_placeholder(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix('{')?.strip_suffix('}')?;
    let (name, kind) = inner.split_once(':')?;
    (!name.is_empty() && !name.contains(['{', '}']) && matches!(kind, "number" | "bool"))
        .then_some((name, kind))
}

/// Every string of a body with its key path (`taskInfo.associations[0].clientName`), for
/// the placeholder checks.
pub fn body_strings<'a>(prefix: &str, v: &'a Value, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) => out.push((prefix.to_owned(), s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                body_strings(&format!("{prefix}[{i}]"), item, out);
            }
        }
        Value::Object(fields) => {
            for (k, item) in fields {
                body_strings(&format!("{prefix}.{k}"), item, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_placeholders_are_whole_strings_of_a_known_kind() {
        assert_eq!(
            typed_placeholder("{job_id:number}"),
            Some(("job_id", "number"))
        );
        assert_eq!(
            typed_placeholder("{in_place:bool}"),
            Some(("in_place", "bool"))
        );
        for no in ["{job_id}", "x{job_id:number}", "{job_id:text}", "{:number}"] {
            assert_eq!(typed_placeholder(no), None, "{no}");
        }
    }

    #[test]
    fn bodies_take_any_toml_value_and_every_string_is_found() {
        let ep: LaunchEndpointKeys = toml::from_str(
            "body = { taskInfo = { associations = [{ clientName = \"{host}\", subclientId = \"{subclient_id:number}\", _type_ = 7 }], flag = true } }",
        )
        .unwrap();
        let body = Value::Object(ep.body.unwrap());
        assert_eq!(body["taskInfo"]["associations"][0]["_type_"], 7);
        assert_eq!(body["taskInfo"]["flag"], true);
        let mut strings = Vec::new();
        body_strings("body", &body, &mut strings);
        assert_eq!(
            strings,
            [
                (
                    "body.taskInfo.associations[0].clientName".to_owned(),
                    "{host}"
                ),
                (
                    "body.taskInfo.associations[0].subclientId".to_owned(),
                    "{subclient_id:number}"
                )
            ]
        );
    }
}
