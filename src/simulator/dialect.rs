//! The shapes of the API: paths, request fields, where the token goes, answer bodies.
//!
//! Everything dialect-specific lives here; the simulator's state only sees `Call`s and
//! produces `Answer`s, so every dialect shares one behaviour and one set of counters.
//!
//! The `commvault` dialect follows the facts of Commvault's REST API (the shared research
//! note on it; cvpysdk, the PowerShell SDK, the Postman collection): base
//! `/commandcenter/api`, XML unless `Accept: application/json`, `POST /Login` with a
//! Base64 password answering a `QSDK …` token that comes back in `Authtoken`, errors inside
//! HTTP 200 (`errList[].errLogMessage` on the login, `errorCode`/`errorMessage` elsewhere),
//! `POST /Subclient/{id}/action/backup?backupLevel=Full`, `POST /CreateTask` with a
//! `taskInfo` document, `jobIds` as strings, `GET /Job/{id}` → `jobs[0].jobSummary`,
//! a 401 `{"errorMessage":"Access denied","errorCode":5}` for a bad token. Error codes
//! other than 5, the liveness body and the XML element names are made up.

use actix_web::http::{header::HeaderMap, Method};
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::Dialect;
use super::jobs::{JobKind, JobView};

/// The backup levels the portal accepts.
pub const BACKUP_LEVELS: [&str; 4] = ["FULL", "INCREMENTAL", "DIFFERENTIAL", "SYNTHETIC_FULL"];

/// A body that is not valid JSON, answered for the `malformed_ratio` fault.
pub(crate) const MALFORMED_BODY: &str = r#"{"status":"OK","data":{"id":"#;

/// The API's endpoints, by the names used in the configuration and the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Alive,
    Health,
    Auth,
    Backups,
    JobStatus,
    Restores,
}

impl Endpoint {
    /// The endpoint's name (a key of `endpoint_faults` and of the counters).
    pub fn name(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Health => "health",
            Self::Auth => "auth",
            Self::Backups => "backups",
            Self::JobStatus => "job_status",
            Self::Restores => "restores",
        }
    }

    /// Whether the endpoint needs a valid token.
    pub(crate) fn needs_token(self) -> bool {
        matches!(self, Self::Backups | Self::JobStatus | Self::Restores)
    }

    /// Whether the endpoint needs a valid token in `dialect` (Commvault's `GET /CommServ`,
    /// its health, does).
    pub(crate) fn needs_token_in(self, dialect: Dialect) -> bool {
        self.needs_token() || (dialect == Dialect::Commvault && self == Self::Health)
    }
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// A known endpoint; `method_ok` is false for a known path with the wrong method, and
    /// `param` is the path's `{host}` or `{job_id}`, percent-decoded.
    Endpoint {
        endpoint: Endpoint,
        method_ok: bool,
        param: Option<String>,
    },
    /// No endpoint has this path.
    NotFound,
}

impl Route {
    /// The endpoint's name, or `other`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Endpoint { endpoint, .. } => endpoint.name(),
            Self::NotFound => super::counters::OTHER_ENDPOINT,
        }
    }
}

/// What a request asks for, once parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Alive,
    Health,
    Login {
        username: String,
        password: String,
    },
    Launch {
        kind: JobKind,
        host: String,
    },
    /// A `commvault` launch: by subclient id and/or client name (neither: unknown subclient).
    LaunchSubclient {
        kind: JobKind,
        subclient_id: Option<u64>,
        client: Option<String>,
    },
    /// `job_id` is None when the id has no shape of ours (then the job is unknown).
    Status {
        job_id: Option<u64>,
        host: Option<String>,
    },
}

/// What the simulator answers, before it is given a dialect's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Alive,
    Health {
        services: Vec<(String, bool)>,
    },
    Token {
        token: String,
        expires_in_secs: u64,
        username: String,
    },
    Launched {
        job_id: u64,
    },
    JobStatus {
        job_id: u64,
        view: JobView,
    },
    Error {
        status: u16,
        message: String,
    },
    RateLimited {
        retry_after_secs: u64,
    },
    Malformed,
}

impl Answer {
    /// An error answer.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::Error {
            status,
            message: message.into(),
        }
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            Self::Error { status, .. } => *status,
            Self::RateLimited { .. } => 429,
            _ => 200,
        }
    }
}

/// Finds the endpoint of `method` and `path`.
pub fn route(dialect: Dialect, method: &Method, path: &str) -> Route {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let found = match dialect {
        Dialect::Reference => match segments.as_slice() {
            ["api", "v1", "alive"] => Some((Endpoint::Alive, Method::GET, None)),
            ["api", "v1", "health"] => Some((Endpoint::Health, Method::GET, None)),
            ["api", "v1", "auth", "token"] => Some((Endpoint::Auth, Method::POST, None)),
            ["api", "v1", "backups"] => Some((Endpoint::Backups, Method::POST, None)),
            ["api", "v1", "jobs", "status"] => Some((Endpoint::JobStatus, Method::POST, None)),
            ["api", "v1", "restores"] => Some((Endpoint::Restores, Method::POST, None)),
            _ => None,
        },
        Dialect::Commvault => {
            let rest = path
                .strip_prefix("/commandcenter/api")
                .or_else(|| path.strip_prefix("/webconsole/api"));
            let segments: Vec<&str> = match rest {
                None => vec!["-"],
                Some("") | Some("/") => Vec::new(),
                Some(r) => r.strip_prefix('/').unwrap_or(r).split('/').collect(),
            };
            match segments.as_slice() {
                [] => Some((Endpoint::Alive, Method::GET, None)),
                ["CommServ"] => Some((Endpoint::Health, Method::GET, None)),
                ["Login"] => Some((Endpoint::Auth, Method::POST, None)),
                ["Subclient", id, "action", "backup"] if !id.is_empty() => {
                    Some((Endpoint::Backups, Method::POST, Some(*id)))
                }
                ["CreateTask"] => Some((Endpoint::Restores, Method::POST, None)),
                ["Job", id] if !id.is_empty() => {
                    Some((Endpoint::JobStatus, Method::GET, Some(*id)))
                }
                _ => None,
            }
        }
        Dialect::Alt => match segments.as_slice() {
            ["rest", "ping"] => Some((Endpoint::Alive, Method::GET, None)),
            ["rest", "status"] => Some((Endpoint::Health, Method::GET, None)),
            ["rest", "login"] => Some((Endpoint::Auth, Method::POST, None)),
            ["rest", "hosts", host, "backup"] if !host.is_empty() => {
                Some((Endpoint::Backups, Method::POST, Some(*host)))
            }
            ["rest", "hosts", host, "restore"] if !host.is_empty() => {
                Some((Endpoint::Restores, Method::POST, Some(*host)))
            }
            ["rest", "jobs", id] if !id.is_empty() => {
                Some((Endpoint::JobStatus, Method::GET, Some(*id)))
            }
            _ => None,
        },
    };
    match found {
        Some((endpoint, expected, param)) => Route::Endpoint {
            endpoint,
            method_ok: method == expected,
            param: param.map(percent_decode),
        },
        None => Route::NotFound,
    }
}

/// The token a request carries, if any.
pub fn token(dialect: Dialect, headers: &HeaderMap) -> Option<String> {
    match dialect {
        Dialect::Reference => {
            let value = headers.get("authorization")?.to_str().ok()?;
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        }
        Dialect::Alt => Some(
            headers
                .get("x-auth-token")?
                .to_str()
                .ok()?
                .trim()
                .to_owned(),
        ),
        // The `QSDK ` prefix is part of the value, as the login answered it.
        Dialect::Commvault => headers
            .get("authtoken")?
            .to_str()
            .ok()?
            .trim()
            .strip_prefix("QSDK ")
            .map(|t| t.trim().to_owned()),
    }
}

/// Whether the request asks for JSON (`commvault` answers XML otherwise).
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all("accept")
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("application/json"))
}

#[derive(Deserialize)]
struct RefLogin {
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefBackup {
    hostname: Option<String>,
    backup_level: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefStatus {
    job_id: Option<Value>,
    hostname: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefRestore {
    hostname: Option<String>,
    file_name: Option<String>,
    source_path: Option<String>,
    destination_path: Option<String>,
}

#[derive(Deserialize)]
struct AltLogin {
    user: Option<String>,
    pass: Option<String>,
}

#[derive(Deserialize)]
struct AltBackup {
    level: Option<String>,
}

#[derive(Deserialize)]
struct AltRestore {
    file: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// Parses the request for `endpoint` (no query string); an error is the message of a 400.
#[cfg(test)]
pub(crate) fn parse_call(
    dialect: Dialect,
    endpoint: Endpoint,
    param: Option<&str>,
    body: &[u8],
) -> Result<Call, String> {
    parse_request(dialect, endpoint, param, "", body)
}

/// The backup levels of the `commvault` dialect (`?backupLevel=`), spelt as Commvault's
/// PowerShell SDK does; another spelling is refused (the real server may be laxer).
pub(crate) const COMMVAULT_LEVELS: [&str; 4] =
    ["Full", "Incremental", "Differential", "Synthetic_Full"];

/// `jobIds` of the `commvault` dialect are this plus the simulator's job number (Commvault
/// ids are six-digit numbers).
pub(crate) const COMMVAULT_JOB_BASE: u64 = 149_800;

/// Parses the request for `endpoint`, with its query string; an error is the message of a
/// 400 answer.
pub(crate) fn parse_request(
    dialect: Dialect,
    endpoint: Endpoint,
    param: Option<&str>,
    query: &str,
    body: &[u8],
) -> Result<Call, String> {
    match dialect {
        Dialect::Reference => parse_reference(endpoint, body),
        Dialect::Alt => parse_alt(endpoint, param, body),
        Dialect::Commvault => parse_commvault(endpoint, param, query, body),
    }
}

/// The reference dialect: every value in a JSON body.
fn parse_reference(endpoint: Endpoint, body: &[u8]) -> Result<Call, String> {
    match endpoint {
        Endpoint::Alive => Ok(Call::Alive),
        Endpoint::Health => Ok(Call::Health),
        Endpoint::Auth => {
            let b: RefLogin = body_json(body)?;
            Ok(Call::Login {
                username: required("username", b.username)?,
                password: present("password", b.password)?,
            })
        }
        Endpoint::Backups => {
            let b: RefBackup = body_json(body)?;
            let host = required("hostname", b.hostname)?;
            check_level("backupLevel", b.backup_level)?;
            Ok(Call::Launch {
                kind: JobKind::Backup,
                host,
            })
        }
        Endpoint::Restores => {
            let b: RefRestore = body_json(body)?;
            let host = required("hostname", b.hostname)?;
            required("fileName", b.file_name)?;
            required("sourcePath", b.source_path)?;
            required("destinationPath", b.destination_path)?;
            Ok(Call::Launch {
                kind: JobKind::Restore,
                host,
            })
        }
        Endpoint::JobStatus => {
            let b: RefStatus = body_json(body)?;
            let job_id = match b.job_id {
                Some(Value::String(id)) => id.strip_prefix('J').and_then(|n| n.parse().ok()),
                Some(_) => return Err("jobId must be a string".to_owned()),
                None => return Err("jobId is required".to_owned()),
            };
            Ok(Call::Status {
                job_id,
                host: Some(required("hostname", b.hostname)?),
            })
        }
    }
}

/// The alternative dialect: the host (or job id) in the path, the rest in the body.
fn parse_alt(endpoint: Endpoint, param: Option<&str>, body: &[u8]) -> Result<Call, String> {
    match endpoint {
        Endpoint::Alive => Ok(Call::Alive),
        Endpoint::Health => Ok(Call::Health),
        Endpoint::Auth => {
            let b: AltLogin = body_json(body)?;
            Ok(Call::Login {
                username: required("user", b.user)?,
                password: present("pass", b.pass)?,
            })
        }
        Endpoint::Backups => {
            let b: AltBackup = body_json(body)?;
            check_level("level", b.level)?;
            Ok(Call::Launch {
                kind: JobKind::Backup,
                host: param.unwrap_or_default().to_owned(),
            })
        }
        Endpoint::Restores => {
            let b: AltRestore = body_json(body)?;
            required("file", b.file)?;
            required("from", b.from)?;
            required("to", b.to)?;
            Ok(Call::Launch {
                kind: JobKind::Restore,
                host: param.unwrap_or_default().to_owned(),
            })
        }
        Endpoint::JobStatus => Ok(Call::Status {
            job_id: param.and_then(|id| id.parse().ok()),
            host: None,
        }),
    }
}

/// Commvault's: a Base64 password, the subclient in the path and the level in the query,
/// restores as a `CreateTask` body.
fn parse_commvault(
    endpoint: Endpoint,
    param: Option<&str>,
    query: &str,
    body: &[u8],
) -> Result<Call, String> {
    match endpoint {
        Endpoint::Alive => Ok(Call::Alive),
        Endpoint::Health => Ok(Call::Health),
        Endpoint::Auth => {
            let b: RefLogin = body_json(body)?;
            let username = required("username", b.username)?;
            let encoded = present("password", b.password)?;
            use base64::Engine as _;
            let password = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                // A password that is not Base64 matches no login (NUL is in no password).
                .unwrap_or_else(|| "\0not base64".to_owned());
            Ok(Call::Login { username, password })
        }
        Endpoint::Backups => {
            if let Some(level) = query_param(query, "backupLevel") {
                if !COMMVAULT_LEVELS.contains(&level.as_str()) {
                    return Err(format!(
                        "backupLevel must be one of {}, got {level:?}",
                        COMMVAULT_LEVELS.join(", ")
                    ));
                }
            }
            Ok(Call::LaunchSubclient {
                kind: JobKind::Backup,
                subclient_id: param.and_then(|id| id.parse().ok()),
                client: None,
            })
        }
        Endpoint::Restores => parse_create_task(body),
        Endpoint::JobStatus => Ok(Call::Status {
            job_id: param
                .and_then(|id| id.parse::<u64>().ok())
                .and_then(|n| n.checked_sub(COMMVAULT_JOB_BASE)),
            host: None,
        }),
    }
}

/// The value of `name` in a query string (`a=1&b=2`), percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(&v.replace('+', " ")))
}

/// `POST /CreateTask`: a restore (`subTaskType` 3, `operationType` 1001, files in
/// `fileOption.sourceItem`) or a backup (2, 2) of `associations[0]` (its `subclientId`
/// and/or `clientName`). Numbers must be JSON numbers, as Commvault's own SDK sends them.
fn parse_create_task(body: &[u8]) -> Result<Call, String> {
    let v: Value = body_json(body)?;
    let task = v.get("taskInfo").ok_or("taskInfo is required")?;
    let assoc = task
        .pointer("/associations/0")
        .ok_or("taskInfo.associations[0] is required")?;
    let client = assoc
        .get("clientName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let subclient_id = match assoc.get("subclientId") {
        None => None,
        Some(x) => Some(
            x.as_u64()
                .ok_or("taskInfo.associations[0].subclientId must be a number")?,
        ),
    };
    if client.is_none() && subclient_id.is_none() {
        return Err("taskInfo.associations[0] needs a clientName or a subclientId".into());
    }
    let number = |p: &str| {
        task.pointer(p)
            .map(|x| {
                x.as_u64()
                    .ok_or(format!("taskInfo{} must be a number", p.replace('/', ".")))
            })
            .transpose()
    };
    let sub_type = number("/subTasks/0/subTask/subTaskType")?;
    let operation = number("/subTasks/0/subTask/operationType")?;
    let kind = match (sub_type, operation) {
        (Some(3), Some(1001)) => {
            let options = "/subTasks/0/options/restoreOptions";
            let files = task
                .pointer(&format!("{options}/fileOption/sourceItem"))
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty() && a.iter().all(|f| f.as_str().is_some_and(|s| !s.is_empty())))
                .ok_or("restoreOptions.fileOption.sourceItem must list the files to restore")?;
            let _ = files;
            task.pointer(&format!("{options}/destination/destClient/clientName"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or("restoreOptions.destination.destClient.clientName is required")?;
            JobKind::Restore
        }
        (Some(2), Some(2)) => JobKind::Backup,
        (t, o) => {
            return Err(format!(
                "unsupported task: subTaskType {} and operationType {} (3 and 1001: restore; 2 and 2: backup)",
                t.map_or("missing".into(), |t| t.to_string()),
                o.map_or("missing".into(), |o| o.to_string())
            ))
        }
    };
    Ok(Call::LaunchSubclient {
        kind,
        subclient_id,
        client,
    })
}

fn body_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))
}

/// A field that must be there and not empty.
fn required(field: &str, value: Option<String>) -> Result<String, String> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(format!("{field} is required")),
    }
}

/// A field that must be there (it may be empty).
fn present(field: &str, value: Option<String>) -> Result<String, String> {
    value.ok_or_else(|| format!("{field} is required"))
}

fn check_level(field: &str, level: Option<String>) -> Result<(), String> {
    let level = required(field, level)?;
    if BACKUP_LEVELS.contains(&level.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "{field} must be one of {}, got {level:?}",
            BACKUP_LEVELS.join(", ")
        ))
    }
}

/// The answer's body in `dialect`'s shape (JSON, but for `Answer::Malformed`).
pub(crate) fn render_body(dialect: Dialect, answer: &Answer) -> String {
    let value = match (dialect, answer) {
        (_, Answer::Malformed) => return MALFORMED_BODY.to_owned(),
        (Dialect::Reference, Answer::Alive) => json!({"statusCode": 200, "message": "alive"}),
        (Dialect::Alt, Answer::Alive) => json!({"code": 200}),
        (Dialect::Reference, Answer::Health { services }) => {
            let healthy = services.iter().all(|(_, up)| *up);
            let services: Vec<Value> = services
                .iter()
                .map(|(name, up)| json!({"name": name, "status": health_word(*up)}))
                .collect();
            json!({"status": health_word(healthy), "services": services})
        }
        (Dialect::Alt, Answer::Health { services }) => {
            let healthy = services.iter().all(|(_, up)| *up);
            let components: Vec<Value> = services
                .iter()
                .map(|(name, up)| json!({"id": name, "state": if *up { "UP" } else { "DOWN" }}))
                .collect();
            json!({"overall": if healthy { "OK" } else { "DEGRADED" }, "components": components})
        }
        (
            Dialect::Reference,
            Answer::Token {
                token,
                expires_in_secs,
                ..
            },
        ) => {
            json!({"status": "OK", "token": token, "expiresIn": expires_in_secs})
        }
        (Dialect::Commvault, _) => return commvault_shape(None, answer).2.to_string(),
        (Dialect::Alt, Answer::Token { token, .. }) => json!({"access": {"token": token}}),
        (Dialect::Reference, Answer::Launched { job_id }) => {
            json!({"status": "started", "jobId": reference_job_id(*job_id)})
        }
        (Dialect::Alt, Answer::Launched { job_id }) => json!({"result": {"id": job_id}}),
        (Dialect::Reference, Answer::JobStatus { job_id, view }) => json!({
            "jobId": reference_job_id(*job_id),
            "status": view.status.as_str(),
            "percentComplete": view.percent,
            "elapsedSeconds": view.elapsed_s,
            "phase": view.phase,
            "failureReason": view.failure_reason,
        }),
        (Dialect::Alt, Answer::JobStatus { view, .. }) => json!({"job": {
            "state": view.status.as_str(),
            "progress": view.percent,
            "elapsed": view.elapsed_s,
            "stage": view.phase,
            "reason": view.failure_reason,
        }}),
        (Dialect::Reference, Answer::Error { message, .. }) => {
            json!({"status": "KO", "message": message})
        }
        (Dialect::Alt, Answer::Error { status, message }) => {
            json!({"error": {"code": status, "message": message}})
        }
        (Dialect::Reference, Answer::RateLimited { .. }) => {
            json!({"status": "KO", "message": "rate limited"})
        }
        (Dialect::Alt, Answer::RateLimited { .. }) => {
            json!({"error": {"code": 429, "message": "rate limited"}})
        }
    };
    value.to_string()
}

/// The HTTP status of `answer` in `dialect` (Commvault answers most errors with 200).
pub(crate) fn http_status(dialect: Dialect, route: &Route, answer: &Answer) -> u16 {
    match dialect {
        Dialect::Commvault => commvault_shape(Some(route), answer).0,
        _ => answer.status(),
    }
}

/// A `commvault` answer: HTTP status, content type and body (JSON when `json`, else XML).
pub(crate) fn commvault_answer(
    route: &Route,
    answer: &Answer,
    json: bool,
) -> (u16, &'static str, String) {
    if *answer == Answer::Malformed {
        let ct = if json {
            "application/json"
        } else {
            "application/xml"
        };
        return (200, ct, MALFORMED_BODY.to_owned());
    }
    let (status, root, value) = commvault_shape(Some(route), answer);
    if json {
        (status, "application/json", value.to_string())
    } else {
        (
            status,
            "application/xml; charset=utf-8",
            to_xml(root, &value),
        )
    }
}

/// Status, XML root element and JSON body of a `commvault` answer. `route` None: the
/// endpoint is unknown (only the body is wanted).
fn commvault_shape(route: Option<&Route>, answer: &Answer) -> (u16, &'static str, Value) {
    let endpoint = match route {
        Some(Route::Endpoint { endpoint, .. }) => Some(*endpoint),
        _ => None,
    };
    match answer {
        Answer::Malformed => (200, "App_GenericResp", Value::Null),
        Answer::Alive => (200, "App_ServiceStatus", json!({"status": "running"})),
        Answer::Health { .. } => (
            200,
            "App_GetCommServDetailsResponse",
            json!({
                "commcell": {"commCellName": "cs01", "commCellId": 2,
                             "csGUID": "6a9d3c52-0d1e-4e5b-9a61-0c9f3f2f8e11"},
                "hostName": "cs01.example.com",
                "currentSPVersion": 32,
                "releaseName": "11.32",
                "csTimeZone": {"TimeZoneName": "(UTC) Coordinated Universal Time"},
            }),
        ),
        Answer::Token {
            token, username, ..
        } => (
            200,
            "DM2ContentIndexing_CheckCredentialResp",
            json!({
                "aliasName": "1", "userGUID": "0d5e4c1a-7c3e-4f2b-8d1a-5b2f9e6c3a47",
                "loginAttempts": 0, "remainingLockTime": 0, "userName": username,
                "providerType": 1, "ccn": 0, "token": format!("QSDK {token}"),
                "capability": 4328650366975u64, "forcePasswordChange": false,
                "isAccountLocked": false, "errList": [],
            }),
        ),
        Answer::Launched { job_id } => (
            200,
            "TMMsg_CreateTaskResp",
            json!({"taskId": 30_000 + job_id, "jobIds": [(COMMVAULT_JOB_BASE + job_id).to_string()]}),
        ),
        Answer::JobStatus { job_id, view } => (
            200,
            "JobManager_JobListResponse",
            json!({"totalRecordsWithoutPaging": 1, "jobs": [{"jobSummary": {
                "jobId": COMMVAULT_JOB_BASE + job_id,
                "status": view.status.as_str(),
                "localizedStatus": view.status.as_str(),
                "jobType": if view.phase == "Restore" { "Restore" } else { "Backup" },
                "percentComplete": view.percent,
                "jobElapsedTime": view.elapsed_s,
                "currentPhaseName": view.phase,
                "pendingReason": view.failure_reason.unwrap_or(""),
            }}]}),
        ),
        Answer::RateLimited { .. } => commvault_generic(429, 429, "rate limited"),
        Answer::Error { status, message } => commvault_error(endpoint, *status, message),
    }
}

/// Commvault's generic answer: an error code and its message.
fn commvault_generic(status: u16, code: u64, message: &str) -> (u16, &'static str, Value) {
    (
        status,
        "App_GenericResp",
        json!({"errorCode": code, "errorMessage": message}),
    )
}

/// A portal error in Commvault's shape: most are HTTP 200 with an error code inside.
fn commvault_error(
    endpoint: Option<Endpoint>,
    status: u16,
    message: &str,
) -> (u16, &'static str, Value) {
    match (endpoint, status) {
        // A login refused (or malformed): HTTP 200, the reason in errList.
        (Some(Endpoint::Auth), 400 | 401) => (
            200,
            "DM2ContentIndexing_CheckCredentialResp",
            json!({
                "loginAttempts": 1, "remainingLockTime": 0, "isAccountLocked": false,
                "errList": [{"errorCode": 1116, "errLogMessage": if status == 401 {
                    "Invalid Username or Password"
                } else {
                    message
                }}],
            }),
        ),
        (Some(_), 401) => commvault_generic(401, 5, "Access denied"),
        // An unknown job: an empty list, as a job not yet visible is too.
        (Some(Endpoint::JobStatus), 404) => (
            200,
            "JobManager_JobListResponse",
            json!({"totalRecordsWithoutPaging": 0, "jobs": []}),
        ),
        (Some(_), 404) => commvault_generic(200, 2, message),
        (Some(_), 400) => commvault_generic(200, 1, message),
        (_, s) => commvault_generic(s, u64::from(s), message),
    }
}

/// `value` as XML: scalars become attributes, tables and arrays child elements (an array
/// of scalars repeats an element holding the text), as Commvault's XML answers read.
fn to_xml(root: &str, value: &Value) -> String {
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    xml_element(root, value, &mut out);
    out
}

fn xml_element(name: &str, value: &Value, out: &mut String) {
    match value {
        Value::Object(fields) => {
            out.push('<');
            out.push_str(name);
            for (k, v) in fields {
                if let Some(text) = xml_scalar(v) {
                    out.push_str(&format!(" {k}=\"{}\"", xml_escape(&text)));
                }
            }
            let children: Vec<_> = fields
                .iter()
                .filter(|(_, v)| v.is_object() || v.is_array())
                .collect();
            if children.is_empty() {
                out.push_str("/>");
                return;
            }
            out.push('>');
            for (k, v) in children {
                xml_element(k, v, out);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Array(items) => {
            for item in items {
                xml_element(name, item, out);
            }
        }
        scalar => {
            let text = xml_scalar(scalar).unwrap_or_default();
            out.push_str(&format!("<{name}>{}</{name}>", xml_escape(&text)));
        }
    }
}

fn xml_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The string job id of the reference dialect.
pub(crate) fn reference_job_id(job_id: u64) -> String {
    format!("J{job_id}")
}

fn health_word(healthy: bool) -> &'static str {
    if healthy {
        "healthy"
    } else {
        "unhealthy"
    }
}

/// Decodes `%XX` escapes of a path segment (invalid escapes are kept as they are).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::jobs::JobStatus;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn endpoint(endpoint: Endpoint, param: Option<&str>) -> Route {
        Route::Endpoint {
            endpoint,
            method_ok: true,
            param: param.map(str::to_owned),
        }
    }

    #[test]
    fn reference_paths_route_to_their_endpoints() {
        let r = |m: Method, p: &str| route(Dialect::Reference, &m, p);
        assert_eq!(
            r(Method::GET, "/api/v1/alive"),
            endpoint(Endpoint::Alive, None)
        );
        assert_eq!(
            r(Method::GET, "/api/v1/health"),
            endpoint(Endpoint::Health, None)
        );
        assert_eq!(
            r(Method::POST, "/api/v1/auth/token"),
            endpoint(Endpoint::Auth, None)
        );
        assert_eq!(
            r(Method::POST, "/api/v1/backups"),
            endpoint(Endpoint::Backups, None)
        );
        assert_eq!(
            r(Method::POST, "/api/v1/jobs/status"),
            endpoint(Endpoint::JobStatus, None)
        );
        assert_eq!(
            r(Method::POST, "/api/v1/restores"),
            endpoint(Endpoint::Restores, None)
        );
        assert_eq!(r(Method::GET, "/api/v1/alive/"), Route::NotFound);
        assert_eq!(r(Method::GET, "/rest/ping"), Route::NotFound);
        assert_eq!(
            r(Method::GET, "/api/v1/backups"),
            Route::Endpoint {
                endpoint: Endpoint::Backups,
                method_ok: false,
                param: None
            }
        );
    }

    #[test]
    fn alt_paths_route_to_their_endpoints_with_decoded_parameters() {
        let r = |m: Method, p: &str| route(Dialect::Alt, &m, p);
        assert_eq!(
            r(Method::GET, "/rest/ping"),
            endpoint(Endpoint::Alive, None)
        );
        assert_eq!(
            r(Method::GET, "/rest/status"),
            endpoint(Endpoint::Health, None)
        );
        assert_eq!(
            r(Method::POST, "/rest/login"),
            endpoint(Endpoint::Auth, None)
        );
        assert_eq!(
            r(Method::POST, "/rest/hosts/web%2D01/backup"),
            endpoint(Endpoint::Backups, Some("web-01"))
        );
        assert_eq!(
            r(Method::POST, "/rest/hosts/db%201/restore"),
            endpoint(Endpoint::Restores, Some("db 1"))
        );
        assert_eq!(
            r(Method::GET, "/rest/jobs/17"),
            endpoint(Endpoint::JobStatus, Some("17"))
        );
        assert_eq!(r(Method::POST, "/rest/hosts//backup"), Route::NotFound);
        assert_eq!(r(Method::GET, "/api/v1/alive"), Route::NotFound);
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("a%zzb%4"), "a%zzb%4");
        assert_eq!(percent_decode("%41%42c"), "ABc");
    }

    #[test]
    fn tokens_are_read_from_each_dialects_header() {
        let headers = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
            h
        };
        assert_eq!(
            token(Dialect::Reference, &headers("authorization", "Bearer abc")),
            Some("abc".to_owned())
        );
        assert_eq!(
            token(Dialect::Reference, &headers("authorization", "bearer abc")),
            Some("abc".to_owned())
        );
        assert_eq!(
            token(Dialect::Reference, &headers("authorization", "Basic abc")),
            None
        );
        assert_eq!(
            token(Dialect::Reference, &headers("x-auth-token", "abc")),
            None
        );
        assert_eq!(
            token(Dialect::Alt, &headers("x-auth-token", "abc")),
            Some("abc".to_owned())
        );
        assert_eq!(token(Dialect::Alt, &HeaderMap::new()), None);
    }

    #[test]
    fn backup_level_must_be_a_known_level() {
        let parse =
            |body: &str| parse_call(Dialect::Reference, Endpoint::Backups, None, body.as_bytes());
        assert_eq!(
            parse(r#"{"hostname":"h","backupLevel":"FULL"}"#),
            Ok(Call::Launch {
                kind: JobKind::Backup,
                host: "h".to_owned()
            })
        );
        assert_eq!(
            parse(r#"{"hostname":"h","backupLevel":"full"}"#),
            Err(r#"backupLevel must be one of FULL, INCREMENTAL, DIFFERENTIAL, SYNTHETIC_FULL, got "full""#.to_owned())
        );
        assert_eq!(
            parse(r#"{"backupLevel":"FULL"}"#),
            Err("hostname is required".to_owned())
        );
        assert!(parse("{")
            .unwrap_err()
            .starts_with("invalid request body: "));
    }

    #[test]
    fn reference_job_ids_are_strings_starting_with_j() {
        let parse = |body: &str| {
            parse_call(
                Dialect::Reference,
                Endpoint::JobStatus,
                None,
                body.as_bytes(),
            )
        };
        assert_eq!(
            parse(r#"{"jobId":"J12","hostname":"h"}"#),
            Ok(Call::Status {
                job_id: Some(12),
                host: Some("h".to_owned())
            })
        );
        assert_eq!(
            parse(r#"{"jobId":"12","hostname":"h"}"#),
            Ok(Call::Status {
                job_id: None,
                host: Some("h".to_owned())
            })
        );
        assert_eq!(
            parse(r#"{"jobId":12,"hostname":"h"}"#),
            Err("jobId must be a string".to_owned())
        );
        assert_eq!(
            parse(r#"{"hostname":"h"}"#),
            Err("jobId is required".to_owned())
        );
    }

    #[test]
    fn alt_requests_take_their_own_field_names() {
        assert_eq!(
            parse_call(
                Dialect::Alt,
                Endpoint::Auth,
                None,
                br#"{"user":"u","pass":"p"}"#
            ),
            Ok(Call::Login {
                username: "u".to_owned(),
                password: "p".to_owned()
            })
        );
        assert_eq!(
            parse_call(
                Dialect::Alt,
                Endpoint::Restores,
                Some("h"),
                br#"{"file":"f","from":"/a","to":"/b"}"#
            ),
            Ok(Call::Launch {
                kind: JobKind::Restore,
                host: "h".to_owned()
            })
        );
        assert_eq!(
            parse_call(
                Dialect::Alt,
                Endpoint::Restores,
                Some("h"),
                br#"{"file":"f","to":"/b"}"#
            ),
            Err("from is required".to_owned())
        );
        assert_eq!(
            parse_call(Dialect::Alt, Endpoint::JobStatus, Some("x7"), b""),
            Ok(Call::Status {
                job_id: None,
                host: None
            })
        );
    }

    #[test]
    fn job_status_renders_in_both_dialects() {
        let view = JobView {
            status: JobStatus::Failed,
            percent: 40,
            elapsed_s: 3,
            phase: "Backup",
            failure_reason: Some("Insufficient storage"),
        };
        let answer = Answer::JobStatus { job_id: 7, view };
        let reference: Value =
            serde_json::from_str(&render_body(Dialect::Reference, &answer)).unwrap();
        assert_eq!(
            reference,
            json!({"jobId": "J7", "status": "Failed", "percentComplete": 40, "elapsedSeconds": 3,
                   "phase": "Backup", "failureReason": "Insufficient storage"})
        );
        let alt: Value = serde_json::from_str(&render_body(Dialect::Alt, &answer)).unwrap();
        assert_eq!(
            alt,
            json!({"job": {"state": "Failed", "progress": 40, "elapsed": 3, "stage": "Backup",
                           "reason": "Insufficient storage"}})
        );
    }

    #[test]
    fn commvault_paths_route_under_the_web_service_root() {
        let r = |m: Method, p: &str| route(Dialect::Commvault, &m, p);
        assert_eq!(
            r(Method::GET, "/commandcenter/api/"),
            endpoint(Endpoint::Alive, None)
        );
        assert_eq!(
            r(Method::GET, "/commandcenter/api"),
            endpoint(Endpoint::Alive, None)
        );
        assert_eq!(
            r(Method::POST, "/commandcenter/api/Login"),
            endpoint(Endpoint::Auth, None)
        );
        assert_eq!(
            r(Method::GET, "/webconsole/api/CommServ"),
            endpoint(Endpoint::Health, None)
        );
        assert_eq!(
            r(
                Method::POST,
                "/commandcenter/api/Subclient/101/action/backup"
            ),
            endpoint(Endpoint::Backups, Some("101"))
        );
        assert_eq!(
            r(Method::GET, "/commandcenter/api/Job/149801"),
            endpoint(Endpoint::JobStatus, Some("149801"))
        );
        assert_eq!(
            r(Method::POST, "/commandcenter/api/CreateTask"),
            endpoint(Endpoint::Restores, None)
        );
        assert_eq!(r(Method::GET, "/api/v1/alive"), Route::NotFound);
        assert!(Endpoint::Health.needs_token_in(Dialect::Commvault));
        assert!(!Endpoint::Health.needs_token_in(Dialect::Reference));
    }

    #[test]
    fn commvault_takes_a_qsdk_authtoken_and_a_base64_password() {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static("authtoken"),
            HeaderValue::from_static("QSDK abc"),
        );
        assert_eq!(token(Dialect::Commvault, &h), Some("abc".to_owned()));
        h.insert(
            HeaderName::from_static("authtoken"),
            HeaderValue::from_static("abc"),
        );
        assert_eq!(token(Dialect::Commvault, &h), None);
        let login =
            |b: &str| parse_request(Dialect::Commvault, Endpoint::Auth, None, "", b.as_bytes());
        assert_eq!(
            login(r#"{"username":"u","password":"cHJvYmUtc2VjcmV0","mode":4}"#),
            Ok(Call::Login {
                username: "u".into(),
                password: "probe-secret".into()
            })
        );
        let Ok(Call::Login { password, .. }) =
            login(r#"{"username":"u","password":"probe-secret"}"#)
        else {
            panic!("not a login");
        };
        assert_ne!(password, "probe-secret", "a plain password must not match");
    }

    #[test]
    fn commvault_backup_levels_come_in_the_query_spelt_as_commvault_does() {
        let b = |q: &str| parse_request(Dialect::Commvault, Endpoint::Backups, Some("101"), q, b"");
        assert_eq!(
            b("backupLevel=Full"),
            Ok(Call::LaunchSubclient {
                kind: JobKind::Backup,
                subclient_id: Some(101),
                client: None
            })
        );
        assert!(b("backupLevel=FULL")
            .unwrap_err()
            .contains("Full, Incremental"));
        assert!(b("").is_ok(), "no level: the server's default");
    }

    #[test]
    fn commvault_create_task_wants_numbers_and_the_files() {
        let t = |b: &str| {
            parse_request(
                Dialect::Commvault,
                Endpoint::Restores,
                None,
                "",
                b.as_bytes(),
            )
        };
        let ok = r#"{"taskInfo":{"associations":[{"clientName":"web01","subclientId":101}],
            "subTasks":[{"subTask":{"subTaskType":3,"operationType":1001},
            "options":{"restoreOptions":{"destination":{"destClient":{"clientName":"web01"}},
            "fileOption":{"sourceItem":["/var/www/index.html"]}}}}]}}"#;
        assert_eq!(
            t(ok),
            Ok(Call::LaunchSubclient {
                kind: JobKind::Restore,
                subclient_id: Some(101),
                client: Some("web01".into())
            })
        );
        let as_text = ok.replace("\"subclientId\":101", "\"subclientId\":\"101\"");
        assert!(t(&as_text)
            .unwrap_err()
            .contains("subclientId must be a number"));
        let no_files = ok.replace("[\"/var/www/index.html\"]", "[]");
        assert!(t(&no_files).unwrap_err().contains("sourceItem"));
    }

    #[test]
    fn commvault_answers_errors_inside_200_and_xml_unless_json_is_asked() {
        let auth = endpoint(Endpoint::Auth, None);
        let refused = Answer::error(401, "invalid credentials");
        let (status, ct, body) = commvault_answer(&auth, &refused, true);
        assert_eq!((status, ct), (200, "application/json"));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["errList"][0]["errLogMessage"],
            "Invalid Username or Password"
        );
        let backup = endpoint(Endpoint::Backups, Some("9"));
        let (status, _, body) =
            commvault_answer(&backup, &Answer::error(404, "Subclient not found"), true);
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"errorCode": 2, "errorMessage": "Subclient not found"})
        );
        let (status, _, body) = commvault_answer(
            &backup,
            &Answer::error(401, "invalid or expired token"),
            true,
        );
        assert_eq!(
            (status, body.as_str()),
            (401, r#"{"errorCode":5,"errorMessage":"Access denied"}"#)
        );
        let (_, _, body) = commvault_answer(&backup, &Answer::Launched { job_id: 1 }, true);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"taskId": 30001, "jobIds": ["149801"]})
        );
        let (status, ct, xml) = commvault_answer(&backup, &Answer::Launched { job_id: 1 }, false);
        assert_eq!((status, ct), (200, "application/xml; charset=utf-8"));
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><TMMsg_CreateTaskResp taskId="30001"><jobIds>149801</jobIds></TMMsg_CreateTaskResp>"#
        );
        assert_eq!(http_status(Dialect::Commvault, &auth, &refused), 200);
        assert_eq!(http_status(Dialect::Reference, &auth, &refused), 401);
    }

    #[test]
    fn malformed_body_is_not_json() {
        assert!(serde_json::from_str::<Value>(MALFORMED_BODY).is_err());
    }
}
