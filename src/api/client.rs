//! The portal client: builds each request from the environment's [`ApiMapping`], passes it
//! through the environment's limiter, reads a capped body and interprets it with the
//! configured JSON pointers. A failed call is data ([`Call::outcome`] is `Err`), never a panic.

use super::answers::{self, HealthReport, JobState, Launched, Token};
use super::h1::{self, LeanClient};
use super::ApiError;
use crate::config::{
    ApiMapping, EnvironmentConfig, Headers, LaunchEndpoint, PasswordEncoding, RestoreSpec, Secret,
};
use crate::limiter::{EnvLimits, RequestPermit};
use crate::model::{BackupLevel, JobKind};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
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

/// Values substituted into paths, headers and bodies.
#[derive(Debug, Clone, Default)]
pub struct Vars<'a> {
    pub host: Option<&'a str>,
    pub level: Option<BackupLevel>,
    pub job_id: Option<&'a str>,
    pub restore: Option<&'a RestoreSpec>,
    /// The host's (or restore's) own `vars`.
    pub extra: Option<&'a BTreeMap<String, String>>,
    /// The token, for `{token}` in header values only.
    pub token: Option<&'a Secret>,
    /// `api.value_maps`: a placeholder's value → the value sent.
    pub maps: Option<&'a BTreeMap<String, BTreeMap<String, String>>>,
}

impl<'v> Vars<'v> {
    /// A placeholder's value, borrowed where it can be (a poll renders its path, headers
    /// and body tens of thousands of times a second).
    fn get(&self, name: &str) -> Option<Cow<'v, str>> {
        let raw: Cow<'v, str> = match name {
            "host" => Cow::Borrowed(self.host?),
            "level" => Cow::Borrowed(self.level?.as_str()),
            "job_id" => Cow::Borrowed(self.job_id?),
            "file_name" => Cow::Borrowed(self.restore?.file_name.as_str()),
            "source_path" => Cow::Borrowed(self.restore?.source_path.as_str()),
            "destination_path" => Cow::Borrowed(self.restore?.destination_path.as_str()),
            "token" => Cow::Borrowed(self.token?.expose()),
            _ => Cow::Borrowed(self.extra?.get(name)?.as_str()),
        };
        match self
            .maps
            .and_then(|m| m.get(name))
            .and_then(|m| m.get(raw.as_ref()))
        {
            Some(mapped) => Some(Cow::Borrowed(mapped.as_str())),
            None => Some(raw),
        }
    }

    /// Like [`render`](Self::render), but a placeholder without a value is a `config`
    /// failure naming it (a host from `--hosts` without the variable a path needs).
    fn render_strict(&self, template: &str, encode: bool) -> Result<String, ApiError> {
        self.render_with(template, encode, true)
    }

    fn missing(&self, name: &str) -> ApiError {
        match self.host {
            Some(h) => ApiError::Config(format!(
                "no value for `{{{name}}}`: host `{h}` has no such variable (give it in `vars`)"
            )),
            None => ApiError::Config(format!("no value for `{{{name}}}` in this request")),
        }
    }

    /// A body as the JSON bytes sent: strings rendered (`{name:number}` / `{name:bool}`
    /// alone in a string become a number / boolean), arrays and tables walked, other values
    /// as they are. Written straight out (the same bytes as serialising the rendered
    /// `Value`, without building it: a poll's body is rendered at every poll).
    fn render_json(&self, body: &crate::config::Body) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::with_capacity(128);
        self.write_object(body, &mut out)?;
        Ok(out)
    }

    fn write_object(
        &self,
        fields: &crate::config::Body,
        out: &mut Vec<u8>,
    ) -> Result<(), ApiError> {
        out.push(b'{');
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json(out, k);
            out.push(b':');
            self.write_value(v, out)?;
        }
        out.push(b'}');
        Ok(())
    }

    fn write_value(&self, v: &Value, out: &mut Vec<u8>) -> Result<(), ApiError> {
        match v {
            Value::String(s) => match crate::config::typed_placeholder(s) {
                Some((name, kind)) => {
                    let raw = self.get(name).ok_or_else(|| self.missing(name))?;
                    write_json(out, &typed_value(name, kind, &raw)?);
                }
                None => write_json(out, &self.render_strict(s, false)?),
            },
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write_value(item, out)?;
                }
                out.push(b']');
            }
            Value::Object(fields) => self.write_object(fields, out)?,
            other => write_json(out, other),
        }
        Ok(())
    }

    /// Replaces `{name}` placeholders; unknown or absent ones are left as they are.
    fn render(&self, template: &str, encode: bool) -> String {
        self.render_with(template, encode, false)
            .unwrap_or_else(|_| template.to_owned())
    }

    /// One pass over `template`; with `strict`, the first placeholder without a value is
    /// an error instead of being left as it is.
    fn render_with(&self, template: &str, encode: bool, strict: bool) -> Result<String, ApiError> {
        let mut out = String::with_capacity(template.len() + 16);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            match rest[open..].find('}') {
                Some(close) => {
                    let name = &rest[open + 1..open + close];
                    match self.get(name) {
                        Some(v) if encode => push_path_segment(&mut out, &v),
                        Some(v) => out.push_str(&v),
                        None if strict => return Err(self.missing(name)),
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
        Ok(out)
    }
}

/// Appends `v` as JSON (serialising into a `Vec` cannot fail).
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(&mut *out, v);
}

/// `raw` as the JSON number or boolean `{name:kind}` asks for.
fn typed_value(name: &str, kind: &str, raw: &str) -> Result<Value, ApiError> {
    let bad = |what: &str| {
        ApiError::Config(format!(
            "`{{{name}:{kind}}}`: `{}` is not {what}",
            raw.chars().take(50).collect::<String>()
        ))
    };
    let t = raw.trim();
    match kind {
        "number" => {
            if let Ok(i) = t.parse::<i64>() {
                Ok(Value::from(i))
            } else if let Ok(u) = t.parse::<u64>() {
                Ok(Value::from(u))
            } else {
                t.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| bad("a number"))
            }
        }
        _ => {
            if t.eq_ignore_ascii_case("true") {
                Ok(Value::Bool(true))
            } else if t.eq_ignore_ascii_case("false") {
                Ok(Value::Bool(false))
            } else {
                Err(bad("true or false"))
            }
        }
    }
}

/// The header that carries the token: its name and its (sensitive) value.
type TokenHeader = (reqwest::header::HeaderName, reqwest::header::HeaderValue);

/// What came back, before it is interpreted.
struct Answer {
    status: u16,
    body: bytes::Bytes,
    content_type: Option<String>,
}

impl Answer {
    /// Interprets the answer with `f`; a body that is not JSON says its content type.
    fn read<T>(self, f: impl FnOnce(u16, &[u8]) -> Result<T, ApiError>) -> Result<T, ApiError> {
        f(self.status, &self.body)
            .map_err(|e| answers::with_content_type(e, self.content_type.as_deref()))
    }
}

/// Appends `s` percent-encoded as one path segment (unreserved characters kept).
fn push_path_segment(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Which client sends a call: reqwest, or the status poll's own ([`h1`]) where it applies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Reqwest,
    LeanIfPossible,
}

/// The clients of one environment on one thread.
#[derive(Clone)]
struct Clients {
    /// `Err` when the TLS or proxy settings cannot be used: every call then fails with it.
    http: Result<reqwest::Client, ApiError>,
    /// The status poll's client; `None` where it does not apply (proxy, redirects followed,
    /// `lean_status_polls = false`, a base URL it cannot reach).
    lean: Option<Arc<LeanClient>>,
}

/// The client of one environment on the current thread (its own connection pools: a
/// connection is tied to the runtime that opened it — one per arbiter).
#[derive(Clone)]
pub struct ApiClient {
    /// `Err` when the TLS or proxy settings cannot be used: every call then fails with it.
    http: Result<reqwest::Client, ApiError>,
    lean: Option<Arc<LeanClient>>,
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
            static CLIENTS: RefCell<HashMap<u64, Clients>> = RefCell::new(HashMap::new());
        }
        let Clients { http, lean } = CLIENTS.with(|c| {
            c.borrow_mut()
                .entry(limits.id())
                .or_insert_with(|| {
                    let key = format!("environments.{}", limits.name());
                    // The TLS files are read once, for both clients.
                    match cfg.tls.load(&format!("{key}.tls")) {
                        Err(t) => Clients {
                            http: Err(ApiError::Tls(t.to_string())),
                            lean: None,
                        },
                        Ok(tls) => {
                            let http = build_http(&key, &tls, &cfg);
                            let lean = match &http {
                                Ok(_) => build_lean(&key, base_url, &tls, &cfg).map(Arc::new),
                                Err(_) => None,
                            };
                            Clients { http, lean }
                        }
                    }
                })
                .clone()
        });
        Self {
            http,
            lean,
            base: base_url.trim_end_matches('/').into(),
            cfg,
            limits,
        }
    }

    fn api(&self) -> &ApiMapping {
        &self.cfg.api
    }

    /// The environment's endpoint mapping (the token manager reads its login policy here).
    pub(crate) fn api_mapping(&self) -> &ApiMapping {
        &self.cfg.api
    }

    /// Liveness: HTTP status and the answer's status field must match.
    pub async fn liveness(&self) -> Call<()> {
        self.liveness_with(None).await
    }

    /// Liveness, with the token when `api.liveness.send_token` asks for it.
    pub(crate) async fn liveness_with(&self, token: Option<&Secret>) -> Call<()> {
        let ep = &self.api().liveness;
        let (exchange, res) = self
            .call(
                &ep.method,
                &ep.path,
                None,
                &ep.headers,
                token,
                &self.vars(),
                None,
                Via::Reqwest,
            )
            .await;
        let outcome = res.and_then(|a| a.read(|s, b| answers::liveness(ep, s, b)));
        Call { exchange, outcome }
    }

    /// Health: one entry per component, plus the overall status when configured.
    pub async fn health(&self) -> Call<HealthReport> {
        self.health_with(None).await
    }

    /// Health, with the token when `api.health.send_token` asks for it.
    pub(crate) async fn health_with(&self, token: Option<&Secret>) -> Call<HealthReport> {
        let ep = &self.api().health;
        let (exchange, res) = self
            .call(
                &ep.method,
                &ep.path,
                None,
                &ep.headers,
                token,
                &self.vars(),
                None,
                Via::Reqwest,
            )
            .await;
        let outcome = res.and_then(|a| a.read(|s, b| answers::health(ep, s, b)));
        Call { exchange, outcome }
    }

    /// A call to `method path` that failed before anything was sent (no token for a check
    /// that needs one): the result still names the URL it was for.
    pub(crate) fn unsent<T>(&self, method: &str, path: &str, e: ApiError) -> Call<T> {
        Call {
            exchange: unsent_exchange(method, format!("{}{path}", self.base)),
            outcome: Err(e),
        }
    }

    /// Empty placeholder values, with the environment's value maps.
    fn vars(&self) -> Vars<'_> {
        Vars {
            maps: Some(&self.api().value_maps),
            ..Default::default()
        }
    }

    /// True when `status` is one of the configured healthy values.
    pub(crate) fn is_healthy(&self, status: &str) -> bool {
        self.api()
            .health
            .healthy_values
            .iter()
            .any(|h| h.eq_ignore_ascii_case(status))
    }

    /// Response time: GET `path`, any 2xx; the caller compares the duration to the limit.
    pub(crate) async fn timed_get(&self, path: &str) -> Call<()> {
        let (exchange, res) = self
            .call(
                "GET",
                path,
                None,
                &Headers::new(),
                None,
                &self.vars(),
                None,
                Via::Reqwest,
            )
            .await;
        let outcome = res.and_then(|a| a.read(answers::timed));
        Call { exchange, outcome }
    }

    /// Authentication: credentials in, token out.
    pub async fn login(&self, username: &str, password: &Secret) -> Call<Token> {
        let ep = &self.api().auth;
        let mut body: Map<String, Value> = ep.body.clone();
        body.insert(ep.username_field.clone(), json!(username));
        let password = match ep.password_encoding {
            PasswordEncoding::Plain => json!(password.expose()),
            PasswordEncoding::Base64 => {
                use base64::Engine as _;
                json!(base64::engine::general_purpose::STANDARD.encode(password.expose()))
            }
        };
        body.insert(ep.password_field.clone(), password);
        let (exchange, res) = self
            .call(
                &ep.method,
                &ep.path,
                Some(serde_json::to_vec(&body).unwrap_or_default()),
                &ep.headers,
                None,
                &self.vars(),
                None,
                Via::Reqwest,
            )
            .await;
        let api = self.api();
        let outcome = res.and_then(|a| {
            a.read(|s, b| answers::login(ep, &api.token_header, &api.token_format, s, b))
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
        let none = BTreeMap::new();
        self.launch_with_vars(kind, host, level, restore, &none, token)
            .await
    }

    /// [`launch`](Self::launch) with the host's (or restore's) own placeholder values.
    pub(crate) async fn launch_with_vars(
        &self,
        kind: JobKind,
        host: &str,
        level: Option<BackupLevel>,
        restore: Option<&RestoreSpec>,
        extra: &BTreeMap<String, String>,
        token: &Secret,
    ) -> Call<Launched> {
        let ep: &LaunchEndpoint = match kind {
            JobKind::Backup => &self.api().backup,
            JobKind::Restore => &self.api().restore,
        };
        let vars = Vars {
            host: Some(host),
            level,
            restore,
            extra: Some(extra),
            ..self.vars()
        };
        let (exchange, res) = self
            .call_with_body(
                &ep.method,
                &ep.path,
                &ep.body,
                &ep.headers,
                token,
                &vars,
                None,
                Via::Reqwest,
            )
            .await;
        let outcome = res.and_then(|a| a.read(|s, b| answers::launch(ep, s, b)));
        Call { exchange, outcome }
    }

    /// Reads a job's status.
    pub async fn job_status(&self, job_id: &str, host: &str, token: &Secret) -> Call<JobState> {
        let none = BTreeMap::new();
        self.job_status_with_vars(job_id, host, &none, token, None)
            .await
    }

    /// [`job_status`](Self::job_status) with the job's own placeholder values, sent on
    /// `permit` if the caller already holds one.
    pub(crate) async fn job_status_with_vars(
        &self,
        job_id: &str,
        host: &str,
        extra: &BTreeMap<String, String>,
        token: &Secret,
        permit: Option<RequestPermit>,
    ) -> Call<JobState> {
        let ep = &self.api().job_status;
        let vars = Vars {
            host: Some(host),
            job_id: Some(job_id),
            extra: Some(extra),
            ..self.vars()
        };
        let (exchange, res) = self
            .call_with_body(
                &ep.method,
                &ep.path,
                &ep.body,
                &ep.headers,
                token,
                &vars,
                permit,
                Via::LeanIfPossible,
            )
            .await;
        let outcome = res.and_then(|a| a.read(|s, b| answers::job_status(ep, s, b)));
        Call { exchange, outcome }
    }

    /// A call whose body is rendered first: a body that cannot be (a placeholder without
    /// a value, `{x:number}` of a non-number) fails as `config` before anything is sent.
    #[allow(clippy::too_many_arguments)]
    async fn call_with_body(
        &self,
        method: &str,
        path: &str,
        body: &crate::config::Body,
        headers: &Headers,
        token: &Secret,
        vars: &Vars<'_>,
        permit: Option<RequestPermit>,
        via: Via,
    ) -> (Exchange, Result<Answer, ApiError>) {
        let rendered = if body.is_empty() {
            Ok(None)
        } else {
            vars.render_json(body).map(Some)
        };
        match rendered {
            Ok(b) => {
                self.call(method, path, b, headers, Some(token), vars, permit, via)
                    .await
            }
            Err(e) => {
                let url = format!("{}{}", self.base, vars.render(path, true));
                (unsent_exchange(method, url), Err(e))
            }
        }
    }

    /// The request headers: the environment's, then the endpoint's (same name, any case,
    /// replaced), rendered; a value holding the token is marked sensitive.
    fn headers(
        &self,
        endpoint: &Headers,
        vars: &Vars<'_>,
        token: Option<&Secret>,
    ) -> Result<reqwest::header::HeaderMap, ApiError> {
        let mut out = reqwest::header::HeaderMap::new();
        self.each_header(endpoint, vars, token, |n, v| {
            out.insert(n, v);
        })?;
        Ok(out)
    }

    /// [`headers`](Self::headers) rendered and checked, nothing kept (before the permit).
    fn check_headers(
        &self,
        endpoint: &Headers,
        vars: &Vars<'_>,
        token: Option<&Secret>,
    ) -> Result<(), ApiError> {
        self.each_header(endpoint, vars, token, |_, _| {})
    }

    fn each_header(
        &self,
        endpoint: &Headers,
        vars: &Vars<'_>,
        token: Option<&Secret>,
        mut f: impl FnMut(reqwest::header::HeaderName, reqwest::header::HeaderValue),
    ) -> Result<(), ApiError> {
        let vars = Vars {
            token,
            ..vars.clone()
        };
        for (name, template) in self.api().headers.iter().chain(endpoint) {
            let n = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ApiError::Config(format!("`{name}` is not a header name")))?;
            let value = vars.render_strict(template, false)?;
            let mut v = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                ApiError::Config(format!(
                    "header `{name}` cannot be sent (not a valid header value)"
                ))
            })?;
            if template.contains("{token}") {
                v.set_sensitive(true);
            }
            f(n, v);
        }
        Ok(())
    }

    /// The token header, or a `config` failure naming the header (never the token). The
    /// last one built for this environment on this thread is reused while the token is the
    /// same (every status poll sends it).
    fn token_header(&self, t: &Secret) -> Result<TokenHeader, ApiError> {
        thread_local! {
            static LAST: RefCell<HashMap<u64, (Secret, TokenHeader)>> = RefCell::new(HashMap::new());
        }
        let key = self.limits.id();
        let cached = LAST.with(|c| {
            c.borrow()
                .get(&key)
                .filter(|(token, _)| token.expose() == t.expose())
                .map(|(_, h)| h.clone())
        });
        if let Some(h) = cached {
            return Ok(h);
        }
        let h = self.build_token_header(t)?;
        LAST.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= 256 {
                c.clear(); // many short-lived environments (tests): stay small
            }
            c.insert(key, (t.clone(), h.clone()));
        });
        Ok(h)
    }

    fn build_token_header(&self, t: &Secret) -> Result<TokenHeader, ApiError> {
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
    /// `body`: the JSON bytes to send, if any; `permit`: the limiter's permit, if the caller
    /// already holds it (a call that fails before anything is sent then drops it).
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        method: &str,
        path_template: &str,
        body: Option<Vec<u8>>,
        headers: &Headers,
        token: Option<&Secret>,
        vars: &Vars<'_>,
        permit: Option<RequestPermit>,
        via: Via,
    ) -> (Exchange, Result<Answer, ApiError>) {
        let url = match self.sendable(path_template, headers, token, vars) {
            Ok(url) => url,
            // A call that fails before anything is sent: no status, no duration.
            Err((url, e)) => return (unsent_exchange(method, url), Err(e)),
        };
        let _permit = match permit {
            Some(p) => p,
            None => self.limits.acquire().await,
        };
        let start = Instant::now();
        // Built once the permit is held, and boxed: reqwest's request and its future are
        // large, and a call waiting at the limiter (a million tracked jobs can queue there)
        // would otherwise hold them the whole time.
        let res = Box::pin(async {
            if let Some((lean, target)) = self.lean_target(via, path_template, &url) {
                let request = self
                    .lean_request(method, &target, body, headers, token, vars)
                    .map_err(|e| (None, e))?;
                return match lean.send(&request, method == "HEAD").await {
                    Ok(a) => lean_answer(a),
                    Err(e) => Err((None, e)),
                };
            }
            let req = self
                .request(method, &url, path_template, body, headers, token, vars)
                .map_err(|e| (None, e))?;
            match req.send().await {
                Ok(resp) => self.answer(resp).await,
                Err(e) => Err((None, ApiError::from_reqwest(&e, self.cfg.timeout_ms))),
            }
        })
        .await;
        let duration = start.elapsed();
        let (status, outcome) = match res {
            Ok(a) => (Some(a.status), Ok(a)),
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

    /// The URL to call, or the URL and why nothing can be sent: a path whose placeholder
    /// has no value (a host without the variable), a client that could not be built, a
    /// header or a token that cannot be a header value. Checked before any permit is spent,
    /// so [`request`](Self::request) then builds what was checked.
    fn sendable(
        &self,
        path_template: &str,
        headers: &Headers,
        token: Option<&Secret>,
        vars: &Vars<'_>,
    ) -> Result<String, (String, ApiError)> {
        let url = match vars.render_strict(path_template, true) {
            Ok(path) => format!("{}{path}", self.base),
            Err(e) => {
                let url = format!("{}{}", self.base, vars.render(path_template, true));
                return Err((url, e));
            }
        };
        let checked = self
            .http
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|_| self.check_headers(headers, vars, token))
            // A token that cannot be a header value fails here, as `config` (the login
            // refuses such tokens already; this is the last guard).
            .and_then(|_| token.map(|t| self.token_header(t)).transpose());
        match checked {
            Ok(_) => Ok(url),
            Err(e) => Err((url, e)),
        }
    }

    /// The request to send to `url` (checked by [`sendable`](Self::sendable)).
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        method: &str,
        url: &str,
        path_template: &str,
        body: Option<Vec<u8>>,
        headers: &Headers,
        token: Option<&Secret>,
        vars: &Vars<'_>,
    ) -> Result<reqwest::RequestBuilder, ApiError> {
        let method_v =
            reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let http = self.http.as_ref().map_err(Clone::clone)?;
        let header_map = self.headers(headers, vars, token)?;
        let auth_header = token.map(|t| self.token_header(t)).transpose()?;
        let mut req = match static_url(path_template, url) {
            Some(parsed) => http.request(method_v, parsed),
            None => http.request(method_v, url),
        };
        if let Some(b) = body {
            req = req
                .header(
                    reqwest::header::CONTENT_TYPE,
                    reqwest::header::HeaderValue::from_static("application/json"),
                )
                .body(b);
        }
        // After the body: its Content-Type is replaced by a configured one.
        req = req.headers(header_map);
        if let Some((name, value)) = auth_header {
            req = req.header(name, value);
        }
        Ok(req)
    }

    /// The lean client and the parsed URL, when `via` asks for it and it can send to `url`
    /// (the environment's origin, no credentials in the URL); else reqwest sends the call.
    fn lean_target<'c>(
        &'c self,
        via: Via,
        path_template: &str,
        url: &str,
    ) -> Option<(&'c LeanClient, reqwest::Url)> {
        let lean = self
            .lean
            .as_deref()
            .filter(|_| via == Via::LeanIfPossible)?;
        let parsed = match static_url(path_template, url) {
            Some(u) => u,
            None => reqwest::Url::parse(url).ok()?,
        };
        let same_origin = lean.serves(&parsed);
        (same_origin && parsed.username().is_empty() && parsed.password().is_none())
            .then_some((lean, parsed))
    }

    /// The whole HTTP/1.1 request for the lean client: what reqwest would send (its
    /// default `user-agent` and `accept`, the JSON `content-type`, the configured headers,
    /// then the token header), framed by `content-length`.
    fn lean_request(
        &self,
        method: &str,
        url: &reqwest::Url,
        body: Option<Vec<u8>>,
        headers: &Headers,
        token: Option<&Secret>,
        vars: &Vars<'_>,
    ) -> Result<Vec<u8>, ApiError> {
        use reqwest::header;
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let map = self.headers(headers, vars, token)?;
        let auth = token.map(|t| self.token_header(t)).transpose()?;
        let body = body.unwrap_or_default();
        let mut out = Vec::with_capacity(256 + body.len());
        let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
        out.extend_from_slice(method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut line = |name: &[u8], value: &[u8]| {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        if !map.contains_key(header::HOST) {
            line(b"host", host.as_bytes());
        }
        if !map.contains_key(header::USER_AGENT) {
            line(b"user-agent", USER_AGENT.as_bytes());
        }
        if !map.contains_key(header::ACCEPT) {
            line(b"accept", b"*/*");
        }
        if !body.is_empty() && !map.contains_key(header::CONTENT_TYPE) {
            line(b"content-type", b"application/json");
        }
        for (name, value) in &map {
            // The framing is this client's.
            if name != header::CONTENT_LENGTH
                && name != header::TRANSFER_ENCODING
                && name != header::CONNECTION
            {
                line(name.as_str().as_bytes(), value.as_bytes());
            }
        }
        if let Some((name, value)) = &auth {
            line(name.as_str().as_bytes(), value.as_bytes());
        }
        let needs_length = !body.is_empty()
            || matches!(
                method,
                reqwest::Method::POST | reqwest::Method::PUT | reqwest::Method::PATCH
            );
        if needs_length {
            line(b"content-length", body.len().to_string().as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The answer, its body read (capped), or what was wrong with it (and its status).
    async fn answer(&self, resp: reqwest::Response) -> Result<Answer, (Option<u16>, ApiError)> {
        let status = resp.status().as_u16();
        // A 3xx the redirect policy did not follow (see `net::redirect_policy`).
        if resp.status().is_redirection() && status != 304 {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            drop(resp);
            return Err(not_followed(status, location.as_deref()));
        }
        // Copied: keeping the header value instead (a slice of hyper's read buffer)
        // measured no faster (BENCHMARKS.md §8).
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_capped(resp, self.cfg.max_body_bytes, self.cfg.timeout_ms).await;
        settle(status, content_type, retry_after, body)
    }
}

const USER_AGENT: &str = concat!("iaso-probe/", env!("CARGO_PKG_VERSION"));

/// A 3xx that was not followed, with its `Location` as shown.
fn not_followed(status: u16, location: Option<&str>) -> (Option<u16>, ApiError) {
    let location = location.map(location_text).unwrap_or_default();
    (Some(status), ApiError::Redirect { status, location })
}

/// An answer whose body was read (or failed to be): a 429 is `rate_limited`, whatever its body.
fn settle(
    status: u16,
    content_type: Option<String>,
    retry_after: Option<Duration>,
    body: Result<bytes::Bytes, ApiError>,
) -> Result<Answer, (Option<u16>, ApiError)> {
    match body {
        Ok(_) if status == 429 => Err((Some(status), ApiError::RateLimited { retry_after })),
        Ok(body) => Ok(Answer {
            status,
            body,
            content_type,
        }),
        Err(e) => Err((Some(status), e)),
    }
}

/// The lean client's answer, judged as [`ApiClient::answer`] judges reqwest's.
fn lean_answer(a: h1::LeanAnswer) -> Result<Answer, (Option<u16>, ApiError)> {
    if (300..400).contains(&a.status) && a.status != 304 {
        return Err(not_followed(a.status, a.location.as_deref()));
    }
    settle(a.status, a.content_type, a.retry_after, a.body)
}

/// The parsed URL of a path without placeholders (a status poll's, every poll), from this
/// thread's cache: parsing it (IDNA and all) at every poll cost ≈ 2 % of the prober's CPU.
/// None for a rendered path, which reqwest parses as usual.
fn static_url(path_template: &str, url: &str) -> Option<reqwest::Url> {
    thread_local! {
        static URLS: RefCell<HashMap<String, reqwest::Url>> = RefCell::new(HashMap::new());
    }
    if path_template.contains('{') {
        return None;
    }
    URLS.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(u) = c.get(url) {
            return Some(u.clone());
        }
        let parsed = reqwest::Url::parse(url).ok()?;
        if c.len() >= 256 {
            c.clear(); // many short-lived environments (tests): stay small
        }
        c.insert(url.to_owned(), parsed.clone());
        Some(parsed)
    })
}

/// The reqwest client of an environment: its TLS and proxy settings (`net`), timeouts, pool,
/// and the redirect policy.
fn build_http(
    key: &str,
    tls: &crate::net::LoadedTls,
    cfg: &EnvironmentConfig,
) -> Result<reqwest::Client, ApiError> {
    let builder =
        crate::net::client_builder_loaded(key, tls, &cfg.proxy()).map_err(|e| match e {
            crate::net::NetError::Tls(t) => ApiError::Tls(t.to_string()),
            other => ApiError::Connect(other.to_string()),
        })?;
    builder
        .redirect(crate::net::redirect_policy(cfg.max_redirects))
        // Retries are `api::retry`'s; reqwest's own policy would also copy every request
        // (headers, extensions, body) in case it retries a protocol NACK (seen in `perf` at
        // every status poll, BENCHMARKS.md §8).
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .timeout(Duration::from_millis(cfg.timeout_ms))
        .pool_idle_timeout(Duration::from_millis(cfg.idle_connection_timeout_ms))
        .pool_max_idle_per_host(cfg.max_in_flight)
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| ApiError::Connect(format!("http client: {e}")))
}

/// The status poll's lean client for this environment, where it applies: asked for
/// (`lean_status_polls`), no redirect to follow, an `http`/`https` base reached without a
/// proxy. `None` sends the polls through reqwest.
fn build_lean(
    key: &str,
    base_url: &str,
    tls: &crate::net::LoadedTls,
    cfg: &EnvironmentConfig,
) -> Option<LeanClient> {
    if !cfg.lean_status_polls || cfg.max_redirects > 0 {
        return None;
    }
    let base = reqwest::Url::parse(base_url).ok()?;
    if let Some(proxy) = cfg.proxy().resolve_from_process(key).ok()? {
        if proxy.for_target(&base).is_some() {
            return None;
        }
    }
    let tls = match base.scheme() {
        "http" => None,
        "https" => Some(tls.client_config()),
        _ => return None,
    };
    let host = match base.host()? {
        url::Host::Domain(d) => d.to_owned(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    let target = h1::Target {
        host,
        port: base.port_or_known_default()?,
        origin: base.origin(),
        tls,
    };
    let limits = h1::Limits {
        connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
        timeout_ms: cfg.timeout_ms,
        idle_timeout: Duration::from_millis(cfg.idle_connection_timeout_ms),
        max_idle: cfg.max_in_flight,
        max_body: cfg.max_body_bytes,
    };
    LeanClient::new(target, limits).ok()
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

/// The exchange of a call that failed before anything was sent: no status, no duration.
fn unsent_exchange(method: &str, url: String) -> Exchange {
    Exchange {
        method: method.to_owned(),
        url,
        status: None,
        duration: Duration::ZERO,
    }
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
    // A body of one chunk (a status answer) is kept as it came, without a copy.
    let mut first: Option<bytes::Bytes> = None;
    let mut buf = bytes::BytesMut::new();
    loop {
        match r.chunk().await {
            Ok(Some(chunk)) => {
                let held = first.as_ref().map_or(0, |f| f.len());
                if held + buf.len() + chunk.len() > max {
                    return Err(ApiError::BodyTooLarge(max));
                }
                if first.is_none() && buf.is_empty() {
                    first = Some(chunk);
                } else {
                    if let Some(f) = first.take() {
                        buf.extend_from_slice(&f);
                    }
                    buf.extend_from_slice(&chunk);
                }
            }
            Ok(None) => return Ok(first.unwrap_or_else(|| buf.freeze())),
            Err(e) => return Err(ApiError::from_reqwest(&e, timeout_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_renders_to_the_json_of_its_rendered_value() {
        let body: crate::config::Body = serde_json::from_str(
            r#"{"z":"{host}","a":{"id":"{job_id:number}","on":"{flag:bool}","list":["x {job_id}",1,null,true]},"q":"say \"{host}\""}"#,
        )
        .unwrap();
        let extra = BTreeMap::from([("flag".to_owned(), "TRUE".to_owned())]);
        let v = Vars {
            host: Some("web \"01\""),
            job_id: Some("42"),
            extra: Some(&extra),
            ..Default::default()
        };
        let bytes = v.render_json(&body).unwrap();
        let got: Value = serde_json::from_slice(&bytes).unwrap();
        let want = json!({"z": "web \"01\"", "a": {"id": 42, "on": true, "list": ["x 42", 1, null, true]}, "q": "say \"web \"01\"\""});
        assert_eq!(got, want);
        // The same bytes as serialising the rendered value (keys in map order).
        assert_eq!(bytes, serde_json::to_vec(&want).unwrap());
        let missing = Vars::default().render_json(&body).unwrap_err();
        assert!(
            missing.to_string().contains("no value for `{job_id}`"),
            "{missing}"
        );
    }

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
        Arc::new(EnvLimits::new(
            "lab",
            n(10),
            n(10),
            std::num::NonZeroUsize::new(4).unwrap(),
        ))
    }

    #[test]
    fn status_polls_take_the_lean_client_only_without_proxy_and_redirects() {
        let key = "environments.lab";
        let build = |base: &str, extra: &str| {
            let cfg = env(extra);
            let tls = cfg.tls.load("tls").unwrap();
            build_lean(key, base, &tls, &cfg)
        };
        let lean = |base: &str, extra: &str| build(base, extra).is_some();
        assert!(lean("http://127.0.0.1:9", ""));
        assert!(lean("https://portal.example.com/iaso", ""));
        assert!(lean("http://[::1]:8080", ""));
        assert!(!lean("http://127.0.0.1:9", "lean_status_polls = false"));
        assert!(!lean("http://127.0.0.1:9", "max_redirects = 2"));
        assert!(!lean(
            "http://portal.example.com",
            "proxy_url = \"http://proxy.example.com:3128\""
        ));
        // A host the proxy does not apply to keeps it.
        assert!(lean(
            "http://portal.example.com",
            "proxy_url = \"http://proxy.example.com:3128\"\nno_proxy = [\"portal.example.com\"]"
        ));
        assert!(!lean("ftp://portal.example.com", ""));
        // It sends to its own origin only.
        let c = build("http://127.0.0.1:9/iaso", "").unwrap();
        assert!(c.serves(
            &"http://127.0.0.1:9/iaso/api/v1/jobs/status"
                .parse()
                .unwrap()
        ));
        assert!(!c.serves(
            &"http://127.0.0.1:10/iaso/api/v1/jobs/status"
                .parse()
                .unwrap()
        ));
        assert!(!c.serves(
            &"https://127.0.0.1:9/iaso/api/v1/jobs/status"
                .parse()
                .unwrap()
        ));
    }

    #[test]
    fn two_successive_differently_configured_environments_never_share_a_cached_client() {
        // The first environment's TLS settings cannot be used: its client is an error.
        let unusable = env("[tls]\nca_files = [\"/nonexistent/ca.pem\"]");
        let first = limits();
        let first_id = first.id();
        let c = ApiClient::for_this_thread("http://127.0.0.1:9", unusable, first);
        assert!(c.http.is_err());
        drop(c);
        // The cache is keyed by the environment's id, never by its address: a later
        // environment may land at the freed one's address (the allocator decides), and its
        // id is still new, so it can never be handed the freed environment's client.
        let second = limits();
        assert_ne!(second.id(), first_id, "ids are unique in the process");
        let c = ApiClient::for_this_thread("http://127.0.0.1:9", env(""), second);
        assert!(
            c.http.is_ok(),
            "the second environment got the first one's client: {:?}",
            c.http.err()
        );
    }

    #[test]
    fn the_token_header_follows_a_new_token_and_each_environments_format() {
        let bearer = ApiClient::for_this_thread("http://127.0.0.1:9", env(""), limits());
        let custom = ApiClient::for_this_thread(
            "http://127.0.0.1:9",
            env("[api]\ntoken_header = \"X-Auth\"\ntoken_format = \"T {token}\""),
            limits(),
        );
        let header = |c: &ApiClient, t: &str| {
            let (name, value) = c.token_header(&Secret::new(t)).unwrap();
            assert!(value.is_sensitive());
            format!("{name}: {}", value.to_str().unwrap())
        };
        assert_eq!(header(&bearer, "one"), "authorization: Bearer one");
        assert_eq!(header(&custom, "one"), "x-auth: T one");
        // Cached per environment, and rebuilt when the token changes (a new login).
        assert_eq!(header(&bearer, "one"), "authorization: Bearer one");
        assert_eq!(header(&bearer, "two"), "authorization: Bearer two");
        assert_eq!(header(&custom, "two"), "x-auth: T two");
    }

    #[test]
    fn a_location_is_shown_without_credentials() {
        assert_eq!(location_text("http://u:pw@other:81/x"), "http://other:81/x");
        assert_eq!(location_text("/login\r\n"), "/login");
    }
}
