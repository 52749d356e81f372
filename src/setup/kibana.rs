//! Kibana side of `setup`: imports the saved objects of `kibana/*.ndjson` (data views, Lens
//! panels, saved search, dashboards) through the saved-objects import API, and creates the
//! alerting rules through the rules API.
//!
//! Imports do not wipe edits made in Kibana: each dashboard carries the version of its file
//! (`[iaso-probe dashboards <hash>]` at the end of its description), and [`sync_kibana`]
//! imports a file (with `overwrite=true`, ids are fixed) only when Kibana's copy is missing or
//! carries another version, that is when the prober brings new dashboards; otherwise the
//! objects are left as they are. `setup --force-dashboards` imports everything.
//!
//! Rules ([`alert_rules`]) have fixed ids: `POST /api/alerting/rule/<id>` creates one, and
//! when it exists (409) `PUT` updates it in place. They carry no action: which connector
//! (mail, Slack, PagerDuty…) is the operator's choice, added in Kibana.
//!
//! The import answers HTTP 200 even when nothing was imported: only `"success": true` counts.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::Value;
use url::Url;

use super::{redact_url, truncate, SetupError};

/// Value of the `kbn-xsrf` header Kibana requires on every non-GET API call (any value works).
pub(crate) const KBN_XSRF: &str = "true";

/// Saved-object files, in import order: the data views first, so the dashboards' references
/// resolve even when Kibana checks each file on its own.
const FILES: &[(&str, &[u8])] = &[
    (
        "iaso-data-views.ndjson",
        include_bytes!("../../kibana/iaso-data-views.ndjson"),
    ),
    (
        "iaso-service-availability.ndjson",
        include_bytes!("../../kibana/iaso-service-availability.ndjson"),
    ),
    (
        "iaso-backup-restore-jobs.ndjson",
        include_bytes!("../../kibana/iaso-backup-restore-jobs.ndjson"),
    ),
];

/// The embedded `kibana/*.ndjson` files: (file name, content), in import order.
pub fn kibana_files() -> Vec<(&'static str, &'static [u8])> {
    FILES.to_vec()
}

/// Where and as whom to import. `Debug` prints neither the password nor the API key.
#[derive(Clone)]
pub struct KibanaTarget {
    /// Kibana base URL, e.g. `http://kibana:5601` (a path prefix such as `/kibana` is kept).
    pub url: Url,
    /// Basic-auth user, used when no API key is set.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Elasticsearch/Kibana API key (the base64 `id:key` form), sent as `ApiKey …`; wins over
    /// basic auth.
    pub api_key: Option<String>,
    /// Kibana space id; `None` or `default` means the default space.
    pub space: Option<String>,
}

impl fmt::Debug for KibanaTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("KibanaTarget")
            .field("url", &redact_url(self.url.as_str()))
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("api_key", &redacted(&self.api_key))
            .field("space", &self.space)
            .finish()
    }
}

impl KibanaTarget {
    /// `{url}[/s/{space}]/api/saved_objects/_import?overwrite=true`.
    pub(crate) fn import_url(&self) -> Result<Url, SetupError> {
        // Kibana space ids are lowercase letters, digits, `_` and `-`.
        let mut url = self.space_url("/api/saved_objects/_import")?;
        url.set_query(Some("overwrite=true"));
        Ok(url)
    }

    /// `{url}[/s/{space}]{suffix}` for a space-scoped API.
    pub(crate) fn space_url(&self, suffix: &str) -> Result<Url, SetupError> {
        let space = self.space_prefix()?;
        self.api_url(&format!("{space}{suffix}"))
    }

    fn space_prefix(&self) -> Result<String, SetupError> {
        Ok(match self.space.as_deref() {
            None | Some("") | Some("default") => String::new(),
            Some(space) => {
                let valid = space
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
                if !valid {
                    return Err(self.invalid(format!(
                        "space id {space:?} may only hold a-z, 0-9, _ and -"
                    )));
                }
                format!("/s/{space}")
            }
        })
    }

    /// `{url}/api/status` (status is not space-scoped).
    pub(crate) fn status_url(&self) -> Result<Url, SetupError> {
        self.api_url("/api/status")
    }

    fn api_url(&self, suffix: &str) -> Result<Url, SetupError> {
        if self.url.cannot_be_a_base() || !matches!(self.url.scheme(), "http" | "https") {
            return Err(self.invalid("expected an http or https URL".into()));
        }
        let mut url = self.url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{suffix}"));
        url.set_query(None);
        url.set_fragment(None);
        Ok(url)
    }

    fn invalid(&self, reason: String) -> SetupError {
        SetupError::KibanaTarget {
            url: redact_url(self.url.as_str()),
            reason,
        }
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(key) = &self.api_key {
            match HeaderValue::from_str(&format!("ApiKey {key}")) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    request.header(AUTHORIZATION, value)
                }
                // A key with control characters cannot be sent; Kibana answers 401, which names
                // the problem without quoting the key.
                Err(_) => request,
            }
        } else if let Some(user) = &self.username {
            request.basic_auth(user, self.password.as_deref())
        } else {
            request
        }
    }

    /// The URL path as quoted in errors (no credentials, no host).
    fn path_of(url: &Url) -> String {
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }
}

/// Same-origin redirects Kibana may send (`/` to its base path, …) before setup gives up.
const KIBANA_MAX_REDIRECTS: u32 = 10;

/// The Kibana client: the `[kibana]` TLS and proxy settings (`net`), a timeout generous
/// enough for the imports, and redirects followed to Kibana's own origin only (the password
/// never goes elsewhere: a 3xx to another origin is the answer). Logs how it connects.
pub fn kibana_http_client(k: &crate::config::KibanaConfig) -> Result<reqwest::Client, String> {
    crate::net::log_outbound("kibana", &k.tls, &k.proxy());
    crate::net::client_builder("kibana", &k.tls, &k.proxy())
        .map_err(|e| e.to_string())?
        .redirect(crate::net::redirect_policy(KIBANA_MAX_REDIRECTS))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("kibana client: {e}"))
}

/// Imports each file with `POST …/api/saved_objects/_import?overwrite=true` (multipart field
/// `file`, header `kbn-xsrf`), in order, stopping at the first failure. Returns the number of
/// objects Kibana reported as imported.
pub async fn import_kibana(
    http: &reqwest::Client,
    target: &KibanaTarget,
    files: &[(&str, &[u8])],
) -> Result<usize, SetupError> {
    let url = target.import_url()?;
    let path = KibanaTarget::path_of(&url);
    let mut imported = 0usize;
    for (name, content) in files {
        if !name.to_ascii_lowercase().ends_with(".ndjson") {
            return Err(SetupError::KibanaFile {
                file: (*name).to_owned(),
                reason: "the import API only accepts file names ending in .ndjson".into(),
            });
        }
        let part = reqwest::multipart::Part::bytes(content.to_vec())
            .file_name((*name).to_owned())
            .mime_str("application/ndjson")
            .expect("static mime type is valid");
        let form = reqwest::multipart::Form::new().part("file", part);
        let request = target
            .authorize(http.post(url.clone()))
            .header("kbn-xsrf", KBN_XSRF)
            .multipart(form);
        let transport = transport_failed("POST", &path);
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(transport)?;
        let count = parse_import_response(name, &path, status, &body)?;
        tracing::info!(file = %name, objects = count, "kibana saved objects imported");
        imported += count as usize;
    }
    Ok(imported)
}

/// Judges an import answer: HTTP 200 with `"success": true` gives `successCount`; anything else
/// is an error listing what Kibana said (each failed object as `type/id: error.type`).
pub(crate) fn parse_import_response(
    file: &str,
    path: &str,
    status: u16,
    body: &str,
) -> Result<u64, SetupError> {
    let json: Option<Value> = serde_json::from_str(body).ok();
    if status != 200 {
        let message = json
            .as_ref()
            .and_then(|j| j.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| truncate(body, 300));
        return Err(SetupError::KibanaStatus {
            method: "POST",
            path: path.to_owned(),
            status,
            message: format!("{file}: {message}"),
        });
    }
    let json = json.unwrap_or(Value::Null);
    let success_count = json
        .get("successCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if json.get("success").and_then(Value::as_bool) == Some(true) {
        return Ok(success_count);
    }
    let errors: Vec<String> = json
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| errors.iter().map(describe_import_error).collect())
        .unwrap_or_default();
    let described = if errors.is_empty() {
        format!("answer without \"success\": true: {}", truncate(body, 300))
    } else {
        errors.join("; ")
    };
    Err(SetupError::KibanaImport {
        file: file.to_owned(),
        success_count,
        error_count: errors.len(),
        errors: described,
    })
}

/// `lens/iaso-x: missing_references (index-pattern/iaso-probe-checks)`.
fn describe_import_error(error: &Value) -> String {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("?").to_owned();
    let detail = error.get("error");
    let mut text = format!(
        "{}/{}: {}",
        s(error.get("type")),
        s(error.get("id")),
        s(detail.and_then(|d| d.get("type")))
    );
    let missing: Vec<String> = detail
        .and_then(|d| d.get("references"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .map(|r| format!("{}/{}", s(r.get("type")), s(r.get("id"))))
                .collect()
        })
        .unwrap_or_default();
    if !missing.is_empty() {
        text.push_str(&format!(" ({})", missing.join(", ")));
    }
    if let Some(message) = detail
        .and_then(|d| d.get("message"))
        .and_then(Value::as_str)
    {
        text.push_str(&format!(" ({message})"));
    }
    text
}

/// The dashboards of a saved-object file and the version each carries (the marker at the end
/// of its description, written by `tools/kibana_objects.py`).
pub fn file_versions(content: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(content)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|o| o["type"] == "dashboard")
        .filter_map(|o| {
            let version = version_in(o.pointer("/attributes/description")?.as_str()?)?;
            Some((o["id"].as_str()?.to_owned(), version))
        })
        .collect()
}

/// The version in a dashboard description (`… [iaso-probe dashboards 0123abcd4567]`).
fn version_in(description: &str) -> Option<String> {
    let start = description.rfind("[iaso-probe dashboards ")? + "[iaso-probe dashboards ".len();
    let rest = &description[start..];
    Some(rest[..rest.find(']')?].to_owned())
}

/// The data views (id, title) of a saved-object file.
fn file_data_views(content: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(content)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|o| o["type"] == "index-pattern")
        .filter_map(|o| {
            Some((
                o["id"].as_str()?.to_owned(),
                o.pointer("/attributes/title")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// What [`sync_kibana`] did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSync {
    /// Not in Kibana yet: imported.
    Created { objects: u64 },
    /// Kibana had another version (`from`, `None` when it carried no marker): imported over it.
    Updated { from: Option<String>, objects: u64 },
    /// Kibana has this very version: left alone (edits made in Kibana kept).
    Unchanged,
    /// `--force-dashboards`: imported whatever Kibana had.
    Forced { objects: u64 },
}

impl FileSync {
    /// One line for people.
    pub fn describe(&self, file: &str) -> String {
        match self {
            FileSync::Created { objects } => format!("{file}: created ({objects} objects)"),
            FileSync::Updated { from, objects } => format!(
                "{file}: updated from version {} ({objects} objects; edits made in Kibana to these objects are replaced: keep yours under another name)",
                from.as_deref().unwrap_or("unknown")
            ),
            FileSync::Unchanged => {
                format!("{file}: unchanged, left as it is in Kibana (edits kept)")
            }
            FileSync::Forced { objects } => {
                format!("{file}: imported over Kibana's copy (--force-dashboards, {objects} objects)")
            }
        }
    }
}

/// `GET {space}/api/saved_objects/<type>/<id>`: the object, or `None` when Kibana has none.
async fn get_saved_object(
    http: &reqwest::Client,
    target: &KibanaTarget,
    kind: &str,
    id: &str,
) -> Result<Option<Value>, SetupError> {
    let url = target.space_url(&format!("/api/saved_objects/{kind}/{id}"))?;
    let path = KibanaTarget::path_of(&url);
    let response = send_get(http, target, &url, &path).await?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(transport_failed("GET", &path))?;
    match status {
        200 => Ok(Some(serde_json::from_str(&body).unwrap_or(Value::Null))),
        404 => Ok(None),
        _ => Err(SetupError::KibanaStatus {
            method: "GET",
            path,
            status,
            message: truncate(&body, 300),
        }),
    }
}

/// Imports each file whose objects Kibana lacks or has in another version (all of them with
/// `force`), leaving the others alone; see the module documentation. Returns what happened to
/// each file, in order.
pub async fn sync_kibana(
    http: &reqwest::Client,
    target: &KibanaTarget,
    files: &[(&str, &[u8])],
    force: bool,
) -> Result<Vec<(String, FileSync)>, SetupError> {
    let mut out = Vec::new();
    for (name, content) in files {
        let decision = if force {
            None
        } else {
            Some(compare_with_kibana(http, target, content).await?)
        };
        let sync = match decision {
            Some(FileSync::Unchanged) => FileSync::Unchanged,
            other => {
                let objects = import_kibana(http, target, &[(name, content)]).await? as u64;
                match other {
                    None => FileSync::Forced { objects },
                    Some(FileSync::Updated { from, .. }) => FileSync::Updated { from, objects },
                    _ => FileSync::Created { objects },
                }
            }
        };
        tracing::info!(file = %name, outcome = %sync.describe(name), "kibana saved objects");
        out.push(((*name).to_owned(), sync));
    }
    Ok(out)
}

/// Unchanged, Updated (objects 0: not imported yet) or Created (objects 0), for one file.
async fn compare_with_kibana(
    http: &reqwest::Client,
    target: &KibanaTarget,
    content: &[u8],
) -> Result<FileSync, SetupError> {
    let versions = file_versions(content);
    if !versions.is_empty() {
        let mut missing = true;
        for (id, ours) in &versions {
            match get_saved_object(http, target, "dashboard", id).await? {
                None => {}
                Some(theirs) => {
                    missing = false;
                    let from = theirs
                        .pointer("/attributes/description")
                        .and_then(Value::as_str)
                        .and_then(version_in);
                    if from.as_deref() != Some(ours.as_str()) {
                        return Ok(FileSync::Updated { from, objects: 0 });
                    }
                }
            }
        }
        return Ok(if missing {
            FileSync::Created { objects: 0 }
        } else {
            FileSync::Unchanged
        });
    }
    // Data views: imported again when one is missing or covers other patterns.
    let mut all_missing = true;
    for (id, title) in file_data_views(content) {
        match get_saved_object(http, target, "index-pattern", &id).await? {
            None => return Ok(FileSync::Created { objects: 0 }),
            Some(theirs) => {
                all_missing = false;
                if theirs.pointer("/attributes/title").and_then(Value::as_str) != Some(&title) {
                    return Ok(FileSync::Updated {
                        from: None,
                        objects: 0,
                    });
                }
            }
        }
    }
    Ok(if all_missing {
        FileSync::Created { objects: 0 }
    } else {
        FileSync::Unchanged
    })
}

/// One alerting rule `setup` keeps in Kibana.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// Fixed id: what makes `setup` idempotent.
    pub id: &'static str,
    /// `POST /api/alerting/rule/<id>` body (creation).
    pub create: Value,
}

impl AlertRule {
    /// `PUT /api/alerting/rule/<id>` body: what an update may change (not the rule type,
    /// consumer or enabled state; a rule the operator disabled stays disabled). Its
    /// `actions` are replaced by the existing rule's in [`install_rules`].
    pub fn update(&self) -> Value {
        let mut body = serde_json::Map::new();
        for key in [
            "name",
            "tags",
            "schedule",
            "params",
            "actions",
            "notify_when",
        ] {
            if let Some(v) = self.create.get(key) {
                body.insert(key.to_owned(), v.clone());
            }
        }
        Value::Object(body)
    }

    /// The fields the rule's query reads: the DSL query's term/range keys, the grouping and
    /// time fields, and the dotted names of an ES|QL query. Tests check each is mapped.
    pub fn query_fields(&self) -> Vec<String> {
        let params = &self.create["params"];
        let mut out: Vec<String> = Vec::new();
        for key in ["timeField", "termField"] {
            out.extend(params[key].as_str().map(str::to_owned));
        }
        if let Some(q) = params["esQuery"].as_str() {
            fn walk(v: &Value, out: &mut Vec<String>) {
                match v {
                    Value::Object(m) => {
                        for (k, v) in m {
                            if matches!(k.as_str(), "term" | "terms" | "range" | "match" | "exists")
                            {
                                if let Some(inner) = v.as_object() {
                                    out.extend(
                                        inner.keys().filter(|k| k.as_str() != "field").cloned(),
                                    );
                                    out.extend(
                                        inner
                                            .get("field")
                                            .and_then(Value::as_str)
                                            .map(str::to_owned),
                                    );
                                }
                            }
                            walk(v, out);
                        }
                    }
                    Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
                    _ => {}
                }
            }
            walk(&serde_json::from_str(q).unwrap_or(Value::Null), &mut out);
        }
        if let Some(esql) = params.pointer("/esqlQuery/esql").and_then(Value::as_str) {
            // Identifiers with a dot outside string literals (index patterns come after FROM).
            let mut in_string = false;
            let mut word = String::new();
            let mut after_from = false;
            for c in esql.chars().chain(std::iter::once(' ')) {
                if c == '"' {
                    in_string = !in_string;
                    word.clear();
                    continue;
                }
                if in_string {
                    continue;
                }
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-' | '*') {
                    word.push(c);
                    continue;
                }
                if !word.is_empty() {
                    if after_from {
                        after_from = false;
                    } else if word.contains('.')
                        && !word.chars().all(|c| c.is_ascii_digit() || c == '.')
                    {
                        out.push(word.clone());
                    }
                    if word.eq_ignore_ascii_case("from") {
                        after_from = true;
                    }
                    word.clear();
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// The data stream patterns the rules read.
pub(crate) const CHECKS_STREAMS: &str = "synthetics-iaso.checks-*";
pub(crate) const JOBS_STREAMS: &str = "logs-iaso.jobs-*";

/// The rules `setup` creates, from `[kibana.alerts]`:
/// - `iaso-monitor-down`: an Elasticsearch query rule, one alert per monitor whose latest
///   checks say `state.status: down` with `state.checks` ≥ N (N consecutive down checks, the
///   state tracker's count), looked up over the last 5 minutes;
/// - `iaso-job-failure-rate`: an ES|QL rule, one row per environment whose jobs ended in the
///   last Y minutes failed more than X % of the time.
pub fn alert_rules(a: &crate::config::AlertsConfig) -> Vec<AlertRule> {
    let interval = format!("{}m", a.rule_interval_minutes);
    let n = a.down_consecutive_checks;
    let down_query = serde_json::json!({
        "query": {"bool": {"filter": [
            {"term": {"state.status": "down"}},
            {"range": {"state.checks": {"gte": n}}}
        ]}}
    });
    let rate = a.job_failure_rate_percent;
    let esql = format!(
        "FROM {JOBS_STREAMS} | WHERE event.action == \"job.end\" | EVAL failed = CASE(event.outcome == \"failure\", 1, 0) | STATS ended = COUNT(*), failed = SUM(failed) BY service.environment | EVAL failure_rate = 100.0 * failed / ended | WHERE failure_rate > {rate:.1}"
    );
    vec![
        AlertRule {
            id: "iaso-monitor-down",
            create: serde_json::json!({
                "name": format!("IASO — monitor down for {n} consecutive checks"),
                "rule_type_id": ".es-query",
                "consumer": "alerts",
                "enabled": true,
                "tags": ["iaso-probe"],
                "schedule": {"interval": interval},
                "actions": [],
                "params": {
                    "searchType": "esQuery",
                    "index": [CHECKS_STREAMS],
                    "timeField": "@timestamp",
                    "esQuery": down_query.to_string(),
                    "size": 100,
                    "aggType": "count",
                    "groupBy": "top",
                    "termField": "monitor.id",
                    "termSize": 100,
                    "threshold": [0],
                    "thresholdComparator": ">",
                    "timeWindowSize": 5,
                    "timeWindowUnit": "m",
                    "excludeHitsFromPreviousRun": false
                }
            }),
        },
        AlertRule {
            id: "iaso-job-failure-rate",
            create: serde_json::json!({
                "name": format!("IASO — job failure rate above {rate} % in {} minutes", a.job_failure_window_minutes),
                "rule_type_id": ".es-query",
                "consumer": "alerts",
                "enabled": true,
                "tags": ["iaso-probe"],
                "schedule": {"interval": interval},
                "actions": [],
                "params": {
                    "searchType": "esqlQuery",
                    "esqlQuery": {"esql": esql},
                    "timeField": "@timestamp",
                    "size": 100,
                    "threshold": [0],
                    "thresholdComparator": ">",
                    "timeWindowSize": a.job_failure_window_minutes,
                    "timeWindowUnit": "m"
                }
            }),
        },
    ]
}

/// What [`install_rules`] did with one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSync {
    Created,
    Updated,
}

/// Creates each rule (`POST {space}/api/alerting/rule/<id>`), or updates it in place
/// (`PUT`, same path) when Kibana answers 409 because it exists, keeping the actions the
/// operator attached to it (read with `GET` first).
pub async fn install_rules(
    http: &reqwest::Client,
    target: &KibanaTarget,
    rules: &[AlertRule],
) -> Result<Vec<(&'static str, RuleSync)>, SetupError> {
    let mut out = Vec::new();
    for rule in rules {
        let url = target.space_url(&format!("/api/alerting/rule/{}", rule.id))?;
        let path = KibanaTarget::path_of(&url);
        let (status, body) = send_json(http, target, "POST", &url, &rule.create).await?;
        let sync = match status {
            200 => RuleSync::Created,
            409 => {
                // Keep the actions the operator attached (the update replaces them).
                let mut update = rule.update();
                if let Some(existing) = get_json(http, target, &url).await? {
                    update["actions"] = kept_actions(&existing);
                }
                let (status, body) = send_json(http, target, "PUT", &url, &update).await?;
                if status != 200 {
                    return Err(rule_error("PUT", &path, status, &body));
                }
                RuleSync::Updated
            }
            _ => return Err(rule_error("POST", &path, status, &body)),
        };
        tracing::info!(rule = rule.id, outcome = ?sync, "kibana alerting rule");
        out.push((rule.id, sync));
    }
    Ok(out)
}

/// The actions of an existing rule, in the form the update accepts (Kibana's answer adds
/// keys such as `connector_type_id` and `uuid` that the update schema refuses).
fn kept_actions(rule: &Value) -> Value {
    let actions = rule["actions"].as_array().cloned().unwrap_or_default();
    Value::Array(
        actions
            .iter()
            .map(|a| {
                let mut kept = serde_json::Map::new();
                for key in ["group", "id", "params", "frequency", "alerts_filter"] {
                    if let Some(v) = a.get(key) {
                        kept.insert(key.to_owned(), v.clone());
                    }
                }
                Value::Object(kept)
            })
            .collect(),
    )
}

/// `GET url`: the JSON answer on 200, `None` otherwise (the caller goes on without it).
async fn get_json(
    http: &reqwest::Client,
    target: &KibanaTarget,
    url: &Url,
) -> Result<Option<Value>, SetupError> {
    let path = KibanaTarget::path_of(url);
    let response = send_get(http, target, url, &path).await?;
    if response.status().as_u16() != 200 {
        return Ok(None);
    }
    let text = response
        .text()
        .await
        .map_err(transport_failed("GET", &path))?;
    Ok(serde_json::from_str(&text).ok())
}

/// An authorized `GET url` (`path`: how errors name it), any status.
async fn send_get(
    http: &reqwest::Client,
    target: &KibanaTarget,
    url: &Url,
    path: &str,
) -> Result<reqwest::Response, SetupError> {
    target
        .authorize(http.get(url.clone()))
        .send()
        .await
        .map_err(transport_failed("GET", path))
}

/// A request that failed in transport, its URL redacted.
fn transport_failed<'a>(
    method: &'static str,
    path: &'a str,
) -> impl Fn(reqwest::Error) -> SetupError + Copy + 'a {
    move |e| SetupError::KibanaTransport {
        method,
        path: path.to_owned(),
        message: redact_url(&e.without_url().to_string()),
    }
}

fn rule_error(method: &'static str, path: &str, status: u16, body: &str) -> SetupError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|j| j.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| truncate(body, 300));
    SetupError::KibanaStatus {
        method,
        path: path.to_owned(),
        status,
        message,
    }
}

async fn send_json(
    http: &reqwest::Client,
    target: &KibanaTarget,
    method: &'static str,
    url: &Url,
    body: &Value,
) -> Result<(u16, String), SetupError> {
    let path = KibanaTarget::path_of(url);
    let transport = transport_failed(method, &path);
    let request = match method {
        "PUT" => http.put(url.clone()),
        _ => http.post(url.clone()),
    };
    let response = target
        .authorize(request)
        .header("kbn-xsrf", KBN_XSRF)
        .json(body)
        .send()
        .await
        .map_err(transport)?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(transport)?;
    Ok((status, text))
}

/// Polls `GET /api/status` until Kibana's overall level is `available` (HTTP 200), or fails
/// after `timeout` with the last thing it saw. Kibana answers 503 while it is starting.
pub async fn wait_kibana_available(
    http: &reqwest::Client,
    target: &KibanaTarget,
    timeout: Duration,
    interval: Duration,
) -> Result<(), SetupError> {
    let url = target.status_url()?;
    let start = tokio::time::Instant::now();
    loop {
        let remaining = timeout.saturating_sub(start.elapsed());
        let attempt = target
            .authorize(http.get(url.clone()))
            .timeout(remaining.clamp(Duration::from_millis(100), Duration::from_secs(10)))
            .send()
            .await;
        let last = match attempt {
            Err(e) => redact_url(&e.without_url().to_string()),
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                match status_level(status, &body) {
                    Ok(()) => return Ok(()),
                    Err(seen) => seen,
                }
            }
        };
        tracing::debug!(url = %redact_url(url.as_str()), last = %last, "kibana not available yet");
        if start.elapsed() + interval > timeout {
            return Err(SetupError::KibanaUnavailable {
                url: redact_url(target.url.as_str()),
                waited_secs: start.elapsed().as_secs(),
                last,
            });
        }
        tokio::time::sleep(interval).await;
    }
}

/// `Ok` when a status answer says available (8.x `status.overall.level`, or 7.x `state: green`),
/// else a short description of what it said.
pub(crate) fn status_level(status: u16, body: &str) -> Result<(), String> {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let overall = json.pointer("/status/overall");
    let level = overall
        .and_then(|o| o.get("level").or_else(|| o.get("state")))
        .and_then(Value::as_str);
    match (status, level) {
        (200, Some("available" | "green")) => Ok(()),
        (_, Some(level)) => Err(format!("HTTP {status}, overall level {level}")),
        (_, None) => Err(format!("HTTP {status}, no overall level in the answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> KibanaTarget {
        KibanaTarget {
            url: url.parse().unwrap(),
            username: Some("elastic".into()),
            password: Some("hunter2-password".into()),
            api_key: Some("c2VjcmV0LWFwaS1rZXk=".into()),
            space: None,
        }
    }

    const PATH: &str = "/api/saved_objects/_import?overwrite=true";

    #[test]
    fn debug_never_prints_secrets() {
        let mut t = target("http://user:url-secret@kibana:5601");
        t.space = Some("ops".into());
        let printed = format!("{t:?}");
        for secret in ["hunter2-password", "c2VjcmV0LWFwaS1rZXk=", "url-secret"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("elastic") && printed.contains("<redacted>"));
        assert!(printed.contains("ops"));
    }

    #[test]
    fn import_url_keeps_a_path_prefix_and_adds_the_space() {
        let url = |base: &str, space: Option<&str>| {
            let mut t = target(base);
            t.space = space.map(str::to_owned);
            t.import_url().map(|u| u.to_string())
        };
        assert_eq!(
            url("http://kibana:5601", None).unwrap(),
            "http://kibana:5601/api/saved_objects/_import?overwrite=true"
        );
        assert_eq!(
            url("https://ops.example/kibana/", Some("iaso")).unwrap(),
            "https://ops.example/kibana/s/iaso/api/saved_objects/_import?overwrite=true"
        );
        assert_eq!(
            url("http://kibana:5601", Some("default")).unwrap(),
            "http://kibana:5601/api/saved_objects/_import?overwrite=true"
        );
        assert!(url("http://kibana:5601", Some("../x")).is_err());
        assert!(url("mailto:ops@example.com", None).is_err());
    }

    #[test]
    fn a_successful_import_returns_its_count() {
        let body = r#"{"success":true,"successCount":12,"successResults":[]}"#;
        assert_eq!(
            parse_import_response("a.ndjson", PATH, 200, body).unwrap(),
            12
        );
    }

    #[test]
    fn success_false_is_an_error_listing_each_failed_object() {
        let body = r#"{"success":false,"successCount":1,"errors":[
            {"id":"iaso-availability-by-check","type":"lens","title":"Availability","meta":{},
             "error":{"type":"missing_references","references":[{"type":"index-pattern","id":"iaso-probe-checks"}]}},
            {"id":"iaso-service-availability","type":"dashboard","title":"IASO","meta":{},
             "error":{"type":"conflict"}},
            {"id":"x","type":"lens","error":{"type":"unknown","message":"Document \"x\" belongs to a more recent version of Kibana","statusCode":400}}]}"#;
        let err = parse_import_response("dash.ndjson", PATH, 200, body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kibana import of dash.ndjson failed (1 objects imported, 3 errors): \
             lens/iaso-availability-by-check: missing_references (index-pattern/iaso-probe-checks); \
             dashboard/iaso-service-availability: conflict; \
             lens/x: unknown (Document \"x\" belongs to a more recent version of Kibana)"
        );
    }

    #[test]
    fn a_200_without_success_is_an_error() {
        let err = parse_import_response("a.ndjson", PATH, 200, "{}").unwrap_err();
        assert!(matches!(
            err,
            SetupError::KibanaImport { error_count: 0, .. }
        ));
        assert!(err.to_string().contains("without \"success\": true"));
    }

    #[test]
    fn a_non_200_answer_quotes_kibana_message() {
        let body = r#"{"statusCode":400,"error":"Bad Request","message":"Request must contain a kbn-xsrf header."}"#;
        let err = parse_import_response("a.ndjson", PATH, 400, body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kibana answered 400 to POST /api/saved_objects/_import?overwrite=true: a.ndjson: Request must contain a kbn-xsrf header."
        );
        let err = parse_import_response("a.ndjson", PATH, 502, "Bad Gateway").unwrap_err();
        assert!(matches!(err, SetupError::KibanaStatus { status: 502, .. }));
    }

    #[test]
    fn status_is_available_only_on_200_with_level_available() {
        assert!(status_level(200, r#"{"status":{"overall":{"level":"available"}}}"#).is_ok());
        assert!(status_level(200, r#"{"status":{"overall":{"state":"green"}}}"#).is_ok());
        assert_eq!(
            status_level(503, r#"{"status":{"overall":{"level":"unavailable"}}}"#).unwrap_err(),
            "HTTP 503, overall level unavailable"
        );
        assert_eq!(
            status_level(200, r#"{"status":{"overall":{"level":"degraded"}}}"#).unwrap_err(),
            "HTTP 200, overall level degraded"
        );
        assert!(status_level(200, "Kibana server is not ready yet").is_err());
    }

    #[test]
    fn every_ndjson_file_under_kibana_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kibana");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".ndjson"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = kibana_files().iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
        for (name, content) in kibana_files() {
            assert_eq!(std::fs::read(dir.join(name)).unwrap(), content, "{name}");
        }
    }
}
