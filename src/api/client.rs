//! The portal client: builds each request from the environment's [`ApiMapping`], passes it
//! through the environment's limiter, reads a capped body and interprets it with the
//! configured JSON pointers. A failed call is data ([`Call::outcome`] is `Err`), never a panic.

use super::answers::{self, HealthReport, JobState, Launched, Token};
use super::ApiError;
use crate::config::{ApiMapping, EnvironmentConfig, LaunchEndpoint, RestoreSpec, Secret};
use crate::limiter::EnvLimits;
use crate::model::{BackupLevel, JobKind};
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What was called and how it went, for the result document.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    /// Full URL, never with credentials.
    pub url: String,
    pub status: Option<u16>,
    /// From the rate permit to the end of the body (queueing is not latency).
    pub duration: Duration,
}

/// One call: the exchange and its interpreted outcome.
#[derive(Debug, Clone)]
pub struct Call<T> {
    pub exchange: Exchange,
    pub outcome: Result<T, ApiError>,
}

impl<T> Call<T> {
    /// The same call without its value (for results that only say whether it worked).
    pub fn map_unit(&self) -> Call<()> {
        Call {
            exchange: self.exchange.clone(),
            outcome: self.outcome.as_ref().map(|_| ()).map_err(Clone::clone),
        }
    }
}

/// Values substituted into paths and bodies.
#[derive(Debug, Clone, Default)]
pub struct Vars<'a> {
    pub host: Option<&'a str>,
    pub level: Option<BackupLevel>,
    pub job_id: Option<&'a str>,
    pub restore: Option<&'a RestoreSpec>,
}

impl Vars<'_> {
    fn get(&self, name: &str) -> Option<String> {
        match name {
            "host" => self.host.map(str::to_owned),
            "level" => self.level.map(|l| l.as_str().to_owned()),
            "job_id" => self.job_id.map(str::to_owned),
            "file_name" => self.restore.map(|r| r.file_name.clone()),
            "source_path" => self.restore.map(|r| r.source_path.clone()),
            "destination_path" => self.restore.map(|r| r.destination_path.clone()),
            _ => None,
        }
    }

    /// Replaces `{name}` placeholders; unknown or absent ones are left as they are.
    fn render(&self, template: &str, encode: bool) -> String {
        let mut out = String::with_capacity(template.len() + 16);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            match rest[open..].find('}') {
                Some(close) => {
                    let name = &rest[open + 1..open + close];
                    match self.get(name) {
                        Some(v) if encode => out.push_str(&encode_path_segment(&v)),
                        Some(v) => out.push_str(&v),
                        None => out.push_str(&rest[open..=open + close]),
                    }
                    rest = &rest[open + close + 1..];
                }
                None => {
                    out.push_str(&rest[open..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The client of one environment on the current thread (its own reqwest pool: a reqwest
/// client is tied to the runtime that opened its connections — one per arbiter).
#[derive(Clone)]
pub struct ApiClient {
    /// `Err` when the TLS or proxy settings cannot be used: every call then fails with it.
    http: Result<reqwest::Client, ApiError>,
    base: Arc<str>,
    cfg: Arc<EnvironmentConfig>,
    limits: Arc<EnvLimits>,
}

impl ApiClient {
    /// The client for `cfg` on this thread, created on first use.
    pub fn for_this_thread(
        base_url: &str,
        cfg: Arc<EnvironmentConfig>,
        limits: Arc<EnvLimits>,
    ) -> Self {
        // Keyed by the environment's unique id: an address could be a freed environment's,
        // whose client has other TLS or proxy settings.
        thread_local! {
            static CLIENTS: RefCell<HashMap<u64, Result<reqwest::Client, ApiError>>> = RefCell::new(HashMap::new());
        }
        let http = CLIENTS.with(|c| {
            c.borrow_mut()
                .entry(limits.id())
                .or_insert_with(|| build_http(&format!("environments.{}", limits.name()), &cfg))
                .clone()
        });
        Self {
            http,
            base: base_url.trim_end_matches('/').into(),
            cfg,
            limits,
        }
    }

    fn api(&self) -> &ApiMapping {
        &self.cfg.api
    }

    /// The environment's endpoint mapping (the token manager reads its login policy here).
    pub fn api_mapping(&self) -> &ApiMapping {
        &self.cfg.api
    }

    /// Liveness: HTTP status and the answer's status field must match.
    pub async fn liveness(&self) -> Call<()> {
        let ep = &self.api().liveness;
        let (exchange, res) = self
            .call(&ep.method, &ep.path, None, None, &Vars::default())
            .await;
        let outcome = res.and_then(|(status, body)| answers::liveness(ep, status, &body));
        Call { exchange, outcome }
    }

    /// Health: one entry per component, plus the overall status when configured.
    pub async fn health(&self) -> Call<HealthReport> {
        let ep = &self.api().health;
        let (exchange, res) = self
            .call(&ep.method, &ep.path, None, None, &Vars::default())
            .await;
        let outcome = res.and_then(|(status, body)| answers::health(ep, status, &body));
        Call { exchange, outcome }
    }

    /// True when `status` is one of the configured healthy values.
    pub fn is_healthy(&self, status: &str) -> bool {
        self.api()
            .health
            .healthy_values
            .iter()
            .any(|h| h.eq_ignore_ascii_case(status))
    }

    /// Response time: GET `path`, any 2xx; the caller compares the duration to the limit.
    pub async fn timed_get(&self, path: &str) -> Call<()> {
        let (exchange, res) = self.call("GET", path, None, None, &Vars::default()).await;
        let outcome = res.and_then(|(status, body)| answers::timed(status, &body));
        Call { exchange, outcome }
    }

    /// Authentication: credentials in, token out.
    pub async fn login(&self, username: &str, password: &Secret) -> Call<Token> {
        let ep = &self.api().auth;
        let mut body = Map::new();
        body.insert(ep.username_field.clone(), json!(username));
        body.insert(ep.password_field.clone(), json!(password.expose()));
        let (exchange, res) = self
            .call(
                &ep.method,
                &ep.path,
                Some(Value::Object(body)),
                None,
                &Vars::default(),
            )
            .await;
        let api = self.api();
        let outcome = res.and_then(|(status, body)| {
            answers::login(ep, &api.token_header, &api.token_format, status, &body)
        });
        if let Ok(Token {
            clamped_from: Some(announced),
            expires_in: Some(used),
            ..
        }) = &outcome
        {
            tracing::warn!(url = %exchange.url, announced_s = announced, used_s = used.as_secs(), "token lifetime out of range: clamped");
        }
        Call { exchange, outcome }
    }

    /// Launches a backup (`level`) or a restore (`restore`) for `host`.
    pub async fn launch(
        &self,
        kind: JobKind,
        host: &str,
        level: Option<BackupLevel>,
        restore: Option<&RestoreSpec>,
        token: &Secret,
    ) -> Call<Launched> {
        let ep: &LaunchEndpoint = match kind {
            JobKind::Backup => &self.api().backup,
            JobKind::Restore => &self.api().restore,
        };
        let vars = Vars {
            host: Some(host),
            level,
            job_id: None,
            restore,
        };
        let body = render_body(&ep.body, &vars);
        let (exchange, res) = self
            .call(&ep.method, &ep.path, body, Some(token), &vars)
            .await;
        let outcome = res.and_then(|(status, body)| answers::launch(ep, status, &body));
        Call { exchange, outcome }
    }

    /// Reads a job's status.
    pub async fn job_status(&self, job_id: &str, host: &str, token: &Secret) -> Call<JobState> {
        let ep = &self.api().job_status;
        let vars = Vars {
            host: Some(host),
            level: None,
            job_id: Some(job_id),
            restore: None,
        };
        let body = render_body(&ep.body, &vars);
        let (exchange, res) = self
            .call(&ep.method, &ep.path, body, Some(token), &vars)
            .await;
        let outcome = res.and_then(|(status, body)| answers::job_status(ep, status, &body));
        Call { exchange, outcome }
    }

    /// The token header, or a `config` failure naming the header (never the token).
    fn token_header(
        &self,
        t: &Secret,
    ) -> Result<(reqwest::header::HeaderName, reqwest::header::HeaderValue), ApiError> {
        let api = self.api();
        let name =
            reqwest::header::HeaderName::from_bytes(api.token_header.as_bytes()).map_err(|_| {
                ApiError::Config(format!("`{}` is not a header name", api.token_header))
            })?;
        let mut value = reqwest::header::HeaderValue::from_str(
            &api.token_format.replace("{token}", t.expose()),
        )
        .map_err(|_| {
            ApiError::Config(format!(
                "the token cannot be sent in header `{}` (not a valid header value)",
                api.token_header
            ))
        })?;
        value.set_sensitive(true);
        Ok((name, value))
    }

    /// The common path of every call: permit, request, capped body, classification.
    async fn call(
        &self,
        method: &str,
        path_template: &str,
        body: Option<Value>,
        token: Option<&Secret>,
        vars: &Vars<'_>,
    ) -> (Exchange, Result<(u16, bytes::Bytes), ApiError>) {
        let url = format!("{}{}", self.base, vars.render(path_template, true));
        let method_v =
            reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        // A call that fails before anything is sent: no status, no duration.
        let unsent = |url: String, e: ApiError| {
            let exchange = Exchange {
                method: method.to_owned(),
                url,
                status: None,
                duration: Duration::ZERO,
            };
            (exchange, Err(e))
        };
        let http = match &self.http {
            Ok(h) => h,
            Err(e) => return unsent(url, e.clone()),
        };
        // A token that cannot be a header value fails here, as `config`, before any permit
        // is spent (the login refuses such tokens already; this is the last guard).
        let auth_header = match token.map(|t| self.token_header(t)).transpose() {
            Ok(h) => h,
            Err(e) => return unsent(url, e),
        };
        let _permit = self.limits.acquire().await;
        let start = Instant::now();
        let mut req = http.request(method_v, &url);
        if let Some((name, value)) = auth_header {
            req = req.header(name, value);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = match req.send().await {
            // A 3xx the redirect policy did not follow (see `net::redirect_policy`).
            Ok(resp) if resp.status().is_redirection() && resp.status() != 304 => {
                let status = resp.status().as_u16();
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .map(|v| location_text(&String::from_utf8_lossy(v.as_bytes())))
                    .unwrap_or_default();
                drop(resp);
                Err((Some(status), ApiError::Redirect { status, location }))
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                match read_capped(resp, self.cfg.max_body_bytes, self.cfg.timeout_ms).await {
                    Ok(bytes) if status == 429 => {
                        drop(bytes);
                        Err((Some(status), ApiError::RateLimited { retry_after }))
                    }
                    Ok(bytes) => Ok((status, bytes)),
                    Err(e) => Err((Some(status), e)),
                }
            }
            Err(e) => Err((None, ApiError::from_reqwest(&e, self.cfg.timeout_ms))),
        };
        let duration = start.elapsed();
        let (status, outcome) = match res {
            Ok((s, b)) => (Some(s), Ok((s, b))),
            Err((s, e)) => (s, Err(e)),
        };
        let exchange = Exchange {
            method: method.to_owned(),
            url,
            status,
            duration,
        };
        (exchange, outcome)
    }
}

/// The reqwest client of an environment: its TLS and proxy settings (`net`), timeouts, pool,
/// and the redirect policy.
fn build_http(key: &str, cfg: &EnvironmentConfig) -> Result<reqwest::Client, ApiError> {
    let builder = crate::net::client_builder(key, &cfg.tls, &cfg.proxy()).map_err(|e| match e {
        crate::net::NetError::Tls(t) => ApiError::Tls(t.to_string()),
        other => ApiError::Connect(other.to_string()),
    })?;
    builder
        .redirect(crate::net::redirect_policy(cfg.max_redirects))
        .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .timeout(Duration::from_millis(cfg.timeout_ms))
        .pool_idle_timeout(Duration::from_millis(cfg.idle_connection_timeout_ms))
        .pool_max_idle_per_host(cfg.max_in_flight)
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("iaso-probe/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ApiError::Connect(format!("http client: {e}")))
}

/// The `Location` of a 3xx as shown in `error.message`: without `user:password@`, at most
/// 300 characters, on one line.
fn location_text(raw: &str) -> String {
    let shown = match url::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => raw.to_owned(),
    };
    shown
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect()
}

fn render_body(fields: &BTreeMap<String, String>, vars: &Vars<'_>) -> Option<Value> {
    if fields.is_empty() {
        return None;
    }
    Some(Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(vars.render(v, false))))
            .collect(),
    ))
}

/// Reads the body, refusing more than `max` bytes (check the declared length, then count).
async fn read_capped(
    mut r: reqwest::Response,
    max: usize,
    timeout_ms: u64,
) -> Result<bytes::Bytes, ApiError> {
    if r.content_length().is_some_and(|n| n as usize > max) {
        return Err(ApiError::BodyTooLarge(max));
    }
    let mut buf = bytes::BytesMut::new();
    loop {
        match r.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > max {
                    return Err(ApiError::BodyTooLarge(max));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => return Err(ApiError::from_reqwest(&e, timeout_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders_and_encodes_paths() {
        let v = Vars {
            host: Some("web 01/a"),
            job_id: Some("42"),
            ..Default::default()
        };
        assert_eq!(
            v.render("/rest/hosts/{host}/jobs/{job_id}", true),
            "/rest/hosts/web%2001%2Fa/jobs/42"
        );
        assert_eq!(v.render("{host}", false), "web 01/a");
        assert_eq!(v.render("{unknown}-{", false), "{unknown}-{");
    }

    fn env(extra: &str) -> Arc<EnvironmentConfig> {
        let text = format!(
            "base_url = \"http://127.0.0.1:9\"\n{extra}\n[credentials]\nusername = \"u\"\npassword = \"p\"\n"
        );
        Arc::new(toml::from_str(&text).unwrap())
    }

    fn limits() -> Arc<EnvLimits> {
        let n = |v| std::num::NonZeroU32::new(v).unwrap();
        Arc::new(EnvLimits::new("lab", n(10), n(10), 4))
    }

    #[test]
    fn two_successive_differently_configured_environments_never_share_a_cached_client() {
        // The first environment's TLS settings cannot be used: its client is an error.
        let unusable = env("[tls]\nca_files = [\"/nonexistent/ca.pem\"]");
        let first = limits();
        let at = Arc::as_ptr(&first) as usize;
        let c = ApiClient::for_this_thread("http://127.0.0.1:9", unusable, first);
        assert!(c.http.is_err());
        drop(c);
        // The next one lands at the freed address: the allocator reuses it (within a few
        // tries: the inner allocations may take it first), so the test covers a reused one.
        let mut tries = 0;
        let second = loop {
            let l = limits();
            if Arc::as_ptr(&l) as usize == at {
                break l;
            }
            tries += 1;
            assert!(tries < 64, "no allocation landed at the freed address");
        };
        let c = ApiClient::for_this_thread("http://127.0.0.1:9", env(""), second);
        assert!(
            c.http.is_ok(),
            "the second environment got the first one's client: {:?}",
            c.http.err()
        );
    }

    #[test]
    fn a_location_is_shown_without_credentials() {
        assert_eq!(location_text("http://u:pw@other:81/x"), "http://other:81/x");
        assert_eq!(location_text("/login\r\n"), "/login");
    }
}
