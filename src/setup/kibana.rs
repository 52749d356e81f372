//! Kibana side of `setup`: imports the saved objects of `kibana/*.ndjson` (data views, Lens
//! panels, saved search, dashboards) through the saved-objects import API, with
//! `overwrite=true` so a re-run replaces them in place (ids are fixed).
//!
//! The import answers HTTP 200 even when nothing was imported: only `"success": true` counts.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::Value;
use url::Url;

use super::{redact_url, SetupError};

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
        let space = match self.space.as_deref() {
            None | Some("") | Some("default") => String::new(),
            Some(space) => {
                // Kibana space ids are lowercase letters, digits, `_` and `-`.
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
        };
        let mut url = self.api_url(&format!("{space}/api/saved_objects/_import"))?;
        url.set_query(Some("overwrite=true"));
        Ok(url)
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
        let transport = |e: reqwest::Error| SetupError::KibanaTransport {
            method: "POST",
            path: path.clone(),
            message: redact_url(&e.without_url().to_string()),
        };
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

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
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
