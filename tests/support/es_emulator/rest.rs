//! REST layer: request size limit, authentication, injected faults, routing, the handlers other
//! than `_bulk`, `filter_path`, response headers, and the request log.

use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value};

use super::bulk;
use super::http::{HttpRequest, HttpResponse};
use super::json::{cause, error_envelope, filter_path, glob, J};
use super::mapping;
use super::store::{now_iso, patterns_of, IlmPolicy, State};
use super::{Fault, RecordedRequest};

pub const VERSION: &str = "8.14.3";
const CLUSTER_NAME: &str = "es-emulator";

/// Decoded query parameters.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: &str) -> Params {
        Params(
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    /// A boolean flag: present and empty, or `true`.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("" | "true"))
    }
}

pub fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

/// A response before headers and `filter_path`.
struct Reply {
    status: u16,
    body: Option<J>,
    headers: Vec<(String, String)>,
    /// No Elasticsearch headers at all (the 413 comes from Netty, before the REST layer).
    bare: bool,
    /// An error body: Elasticsearch builds those with filtering off, so `filter_path` is ignored.
    error: bool,
}

impl Reply {
    fn json(status: u16, body: J) -> Reply {
        Reply {
            status,
            body: Some(body),
            headers: Vec::new(),
            bare: false,
            error: false,
        }
    }

    fn ok(body: J) -> Reply {
        Reply::json(200, body)
    }

    fn ack() -> Reply {
        Reply::ok(J::obj().set("acknowledged", true))
    }

    fn error(status: u16, error: J) -> Reply {
        let mut reply = Reply::json(status, error_envelope(error, status));
        reply.error = true;
        reply
    }

    fn too_large() -> Reply {
        Reply {
            status: 413,
            body: None,
            headers: Vec::new(),
            bare: true,
            error: true,
        }
    }
}

/// Entry point from the HTTP server.
pub fn handle(state: &Mutex<State>, req: HttpRequest) -> HttpResponse {
    let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
    let params = Params::parse(&req.query);
    let segs: Vec<String> = req
        .raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let is_bulk = segs.last().is_some_and(|s| s == "_bulk") && segs.len() <= 2;
    let reply = respond(&mut st, &req, &params, &segs, is_bulk);
    if is_bulk {
        st.bulk_stats.requests += 1;
        if !(200..300).contains(&reply.status) {
            *st.bulk_stats
                .whole_request_errors
                .entry(reply.status)
                .or_default() += 1;
        }
    }
    let mut headers = Vec::new();
    let mut body = Vec::new();
    if !reply.bare {
        headers.push(("X-elastic-product".to_owned(), "Elasticsearch".to_owned()));
        let content_type = match req.header("accept") {
            Some(a) if a.starts_with("application/vnd.elasticsearch+json") => a.to_owned(),
            _ => "application/json".to_owned(),
        };
        headers.push(("content-type".to_owned(), content_type));
    }
    if !reply.bare {
        if let Some(id) = req.header("x-opaque-id") {
            headers.push(("X-Opaque-Id".to_owned(), id.to_owned()));
        }
    }
    headers.extend(reply.headers);
    if let Some(j) = reply.body {
        let j = match params.get("filter_path") {
            Some(spec) if !spec.is_empty() && !reply.error => filter_path(j, spec),
            _ => j,
        };
        body = j.to_bytes();
    }
    st.requests.push(RecordedRequest {
        method: req.method.clone(),
        path: percent_decode(&req.raw_path),
        query: req.query.clone(),
        headers: req.headers.clone(),
        body: req.body.clone(),
        status: reply.status,
    });
    HttpResponse {
        status: reply.status,
        headers,
        body,
        delay: st.slow,
    }
}

fn respond(
    st: &mut State,
    req: &HttpRequest,
    params: &Params,
    segs: &[String],
    is_bulk: bool,
) -> Reply {
    if is_bulk {
        if let Some(max) = st.max_request_bytes {
            if req.body.len() > max {
                return Reply::too_large();
            }
        }
    }
    // Elasticsearch routes first (400 no handler, 405), then checks the content type (406),
    // then the security interceptor authenticates (401), then the handler runs.
    let (route, method) = match find_route(req, segs) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    if !req.body.is_empty() {
        if let Err(reply) = check_content_type(req) {
            return reply;
        }
    }
    if let Err(reply) = authenticate(st, req) {
        return reply;
    }
    let fault = match st.any_faults.pop_front() {
        Some(f) => Some(f),
        None if is_bulk => st.bulk_faults.pop_front(),
        None => None,
    };
    if let Some(fault) = fault {
        return fault_reply(&fault, req);
    }
    dispatch(st, req, params, route, method)
}

/// `{"error":…,"status":N}`, Elasticsearch's simple error response.
fn simple_error(status: u16, message: String) -> Reply {
    let mut reply = Reply::json(status, J::obj().set("error", message).set("status", status));
    reply.error = true;
    reply
}

/// JSON and NDJSON (plain or the versioned `vnd.elasticsearch` forms) are the media types the
/// emulator parses; browser-safelisted types are refused as Elasticsearch does (CSRF guard).
fn check_content_type(req: &HttpRequest) -> Result<(), Reply> {
    let values: Vec<&str> = req
        .headers
        .iter()
        .filter(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str())
        .collect();
    let Some(first) = values.first() else {
        return Err(simple_error(
            406,
            "Content-Type header is missing".to_owned(),
        ));
    };
    let media = first
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let supported = matches!(
        media.as_str(),
        "application/json"
            | "application/x-ndjson"
            | "application/vnd.elasticsearch+json"
            | "application/vnd.elasticsearch+x-ndjson"
    );
    if supported {
        Ok(())
    } else {
        Err(simple_error(
            406,
            format!(
                "Content-Type header [{}] is not supported",
                values.join(",")
            ),
        ))
    }
}

const WWW_AUTHENTICATE: [&str; 3] = [
    "Basic realm=\"security\" charset=\"UTF-8\"",
    "Bearer realm=\"security\"",
    "ApiKey",
];

fn unauthorized(reason: String) -> Reply {
    let header = J::obj().set(
        "WWW-Authenticate",
        J::Arr(WWW_AUTHENTICATE.iter().map(|h| J::from(*h)).collect()),
    );
    let mut reply = Reply::error(
        401,
        cause("security_exception", reason).set("header", header),
    );
    reply.headers = WWW_AUTHENTICATE
        .iter()
        .map(|h| ("WWW-Authenticate".to_owned(), (*h).to_owned()))
        .collect();
    reply
}

/// The 401 a request gets, depending on the credentials it carried.
fn auth_failure(req: &HttpRequest) -> Reply {
    let uri = req.uri();
    match req.header("authorization") {
        Some(h) if h.starts_with("Basic ") => {
            let decoded = base64_decode(&h[6..]).unwrap_or_default();
            let text = String::from_utf8_lossy(&decoded);
            let user = text.split(':').next().unwrap_or_default();
            unauthorized(format!(
                "unable to authenticate user [{user}] for REST request [{uri}]"
            ))
        }
        Some(h) if h.starts_with("ApiKey ") || h.starts_with("Bearer ") => unauthorized(
            "unable to authenticate with provided credentials and anonymous access is not allowed for this request".to_owned(),
        ),
        _ => unauthorized(format!(
            "missing authentication credentials for REST request [{uri}]"
        )),
    }
}

fn authenticate(st: &State, req: &HttpRequest) -> Result<(), Reply> {
    let opts = &st.options;
    if opts.basic_auth.is_none() && opts.api_key.is_none() {
        return Ok(());
    }
    let ok = match req.header("authorization") {
        Some(h) if h.starts_with("Basic ") => {
            let decoded = base64_decode(&h[6..]).unwrap_or_default();
            let text = String::from_utf8_lossy(&decoded);
            opts.basic_auth
                .as_ref()
                .is_some_and(|(u, p)| text == format!("{u}:{p}"))
        }
        Some(h) if h.starts_with("ApiKey ") => {
            let token = h[7..].trim();
            let decoded = base64_decode(token).map(|d| String::from_utf8_lossy(&d).into_owned());
            opts.api_key
                .as_ref()
                .is_some_and(|k| k == token || decoded.as_deref() == Some(k.as_str()))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(auth_failure(req))
    }
}

fn fault_reply(fault: &Fault, req: &HttpRequest) -> Reply {
    match fault {
        Fault::Rejected429 => Reply::error(
            429,
            cause(
                "es_rejected_execution_exception",
                "rejected execution of coordinating operation [coordinating_and_primary_bytes=95396333, replica_bytes=0, all_bytes=95396333, coordinating_operation_bytes=22949230, max_coordinating_and_primary_bytes=107374182]",
            ),
        ),
        Fault::CircuitBreaker429 { permanent } => Reply::error(
            429,
            cause(
                "circuit_breaking_exception",
                "[parent] Data too large, data for [<http_request>] would be [1017560880/970.4mb], which is larger than the limit of [986061209/940.3mb], real usage: [1017560880/970.4mb], new bytes reserved: [0/0b], usages [request=0/0b, fielddata=0/0b, in_flight_requests=0/0b, accounting=88331753/84.2mb]",
            )
            .set("bytes_wanted", 1_017_560_880u64)
            .set("bytes_limit", 986_061_209u64)
            .set("durability", if *permanent { "PERMANENT" } else { "TRANSIENT" }),
        ),
        Fault::NoMaster503 => Reply::error(
            503,
            cause(
                "cluster_block_exception",
                "blocked by: [SERVICE_UNAVAILABLE/2/no master];",
            ),
        ),
        Fault::Unauthorized401 => auth_failure(req),
        Fault::TooLarge413 => Reply::too_large(),
        Fault::Status(status) => Reply::error(
            *status,
            cause(
                "exception",
                format!("emulated failure with status [{status}]"),
            ),
        ),
    }
}

enum Route {
    Root,
    Health,
    Bulk(Option<String>),
    IlmStatus,
    Ilm(String),
    Component(String),
    Template(String),
}

fn parse_route(segs: &[String]) -> Option<Route> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    Some(match s.as_slice() {
        [] => Route::Root,
        ["_bulk"] => Route::Bulk(None),
        [i, "_bulk"] => Route::Bulk(Some((*i).to_owned())),
        ["_cluster", "health"] | ["_cluster", "health", _] => Route::Health,
        ["_ilm", "status"] => Route::IlmStatus,
        ["_ilm", "policy", n] => Route::Ilm((*n).to_owned()),
        ["_component_template", n] => Route::Component((*n).to_owned()),
        ["_index_template", n] => Route::Template((*n).to_owned()),
        _ => return None,
    })
}

/// Methods registered for a route, in Elasticsearch's `RestRequest.Method` order.
fn allowed(route: &Route) -> &'static [&'static str] {
    match route {
        Route::Root => &["GET", "HEAD"],
        Route::Health | Route::IlmStatus => &["GET"],
        Route::Bulk(_) => &["POST", "PUT"],
        Route::Ilm(_) | Route::Component(_) => &["PUT"],
        Route::Template(_) => &["GET", "PUT", "HEAD"],
    }
}

/// The route and the method its handler answers (HEAD runs the GET handler, body stripped).
fn find_route(req: &HttpRequest, segs: &[String]) -> Result<(Route, &'static str), Reply> {
    let Some(route) = parse_route(segs) else {
        // Elasticsearch's handleBadRequest: only an `error` field, no `status`.
        let mut reply = Reply::json(
            400,
            J::obj().set(
                "error",
                format!(
                    "no handler found for uri [{}] and method [{}]",
                    req.uri(),
                    req.method
                ),
            ),
        );
        reply.error = true;
        return Err(reply);
    };
    let methods = allowed(&route);
    let wanted = if req.method == "HEAD" && methods.contains(&"GET") {
        "GET"
    } else {
        req.method.as_str()
    };
    match methods.iter().find(|m| **m == wanted) {
        Some(method) => Ok((route, method)),
        None => {
            let mut reply = simple_error(
                405,
                format!(
                    "Incorrect HTTP method for uri [{}] and method [{}], allowed: [{}]",
                    req.uri(),
                    req.method,
                    methods.join(", ")
                ),
            );
            reply.headers.push(("Allow".to_owned(), methods.join(",")));
            Err(reply)
        }
    }
}

fn dispatch(
    st: &mut State,
    req: &HttpRequest,
    params: &Params,
    route: Route,
    method: &str,
) -> Reply {
    let path = percent_decode(&req.raw_path);
    match (route, method) {
        (Route::Root, _) => Reply::ok(root_info()),
        (Route::Health, _) => Reply::ok(health(st)),
        (Route::Bulk(index), _) => match bulk::bulk(st, &path, index.as_deref(), params, &req.body)
        {
            Ok(j) => Reply::ok(j),
            Err((status, error)) => Reply::error(status, error),
        },
        (Route::IlmStatus, _) => Reply::ok(J::obj().set("operation_mode", "RUNNING")),
        (Route::Ilm(name), _) => put_ilm(st, &name, &req.body),
        (Route::Component(name), _) => put_component(st, &name, params, &req.body),
        (Route::Template(name), "GET") => get_template(st, &name),
        (Route::Template(name), _) => put_template(st, &name, params, &req.body),
    }
}

fn root_info() -> J {
    J::obj()
        .set("name", "es-emulator-node")
        .set("cluster_name", CLUSTER_NAME)
        .set("cluster_uuid", "zk-HjQtYQGyL3NFSSu7InA")
        .set(
            "version",
            J::obj()
                .set("number", VERSION)
                .set("build_flavor", "default")
                .set("build_type", "docker")
                .set("build_hash", "f19d7a8ec2a8e6b3c2a4c7b1c0e1c3b9a6f1e2d4")
                .set("build_date", "2024-10-08T22:56:13.147395911Z")
                .set("build_snapshot", false)
                .set("lucene_version", "9.11.1")
                .set("minimum_wire_compatibility_version", "7.17.0")
                .set("minimum_index_compatibility_version", "7.0.0"),
        )
        .set("tagline", "You Know, for Search")
}

fn health(st: &State) -> J {
    let shards = st.indices.len() as u64;
    J::obj()
        .set("cluster_name", CLUSTER_NAME)
        .set("status", "green")
        .set("timed_out", false)
        .set("number_of_nodes", 1u64)
        .set("number_of_data_nodes", 1u64)
        .set("active_primary_shards", shards)
        .set("active_shards", shards)
        .set("relocating_shards", 0u64)
        .set("initializing_shards", 0u64)
        .set("unassigned_shards", 0u64)
        .set("unassigned_primary_shards", 0u64)
        .set("delayed_unassigned_shards", 0u64)
        .set("number_of_pending_tasks", 0u64)
        .set("number_of_in_flight_fetch", 0u64)
        .set("task_max_waiting_in_queue_millis", 0u64)
        .set("active_shards_percent_as_number", 100.0)
}

/// Parses a JSON object body, or the 400 Elasticsearch gives.
fn object_body(body: &[u8], what: &str) -> Result<Map<String, Value>, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Reply::error(
            400,
            cause("parse_exception", "request body is required"),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(Reply::error(
            400,
            cause(
                "x_content_parse_exception",
                format!("[1:1] [{what}] Expected START_OBJECT"),
            ),
        )),
        Err(e) => Err(Reply::error(
            400,
            cause(
                "x_content_parse_exception",
                format!("[{}:{}] {e}", e.line(), e.column()),
            ),
        )),
    }
}

fn unknown_field(obj: &Map<String, Value>, known: &[&str], what: &str) -> Result<(), Reply> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(Reply::error(
            400,
            cause(
                "x_content_parse_exception",
                format!("[1:2] [{what}] unknown field [{k}]"),
            ),
        )),
        None => Ok(()),
    }
}

fn names_matching<'a>(keys: impl Iterator<Item = &'a String>, expr: &str) -> Vec<String> {
    let parts: Vec<&str> = expr.split(',').map(str::trim).collect();
    keys.filter(|k| parts.iter().any(|p| *p == "_all" || glob(p, k)))
        .cloned()
        .collect()
}

// ---- ILM ----

const PHASE_ACTIONS: &[(&str, &[&str])] = &[
    (
        "hot",
        &[
            "set_priority",
            "unfollow",
            "rollover",
            "readonly",
            "downsample",
            "shrink",
            "forcemerge",
            "searchable_snapshot",
        ],
    ),
    (
        "warm",
        &[
            "set_priority",
            "unfollow",
            "readonly",
            "downsample",
            "allocate",
            "migrate",
            "shrink",
            "forcemerge",
        ],
    ),
    (
        "cold",
        &[
            "set_priority",
            "unfollow",
            "readonly",
            "downsample",
            "searchable_snapshot",
            "allocate",
            "migrate",
            "freeze",
        ],
    ),
    ("frozen", &["unfollow", "searchable_snapshot"]),
    ("delete", &["wait_for_snapshot", "delete"]),
];

fn put_ilm(st: &mut State, name: &str, body: &[u8]) -> Reply {
    let obj = match object_body(body, "put_lifecycle_request") {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Err(r) = unknown_field(&obj, &["policy"], "put_lifecycle_request") {
        return r;
    }
    let Some(policy) = obj.get("policy").filter(|p| p.is_object()) else {
        return Reply::error(
            400,
            cause("illegal_argument_exception", "Required [policy]"),
        );
    };
    if let Some(phases) = policy.get("phases").and_then(Value::as_object) {
        for (phase, def) in phases {
            let Some((_, actions)) = PHASE_ACTIONS.iter().find(|(p, _)| p == phase) else {
                return Reply::error(
                    400,
                    cause(
                        "illegal_argument_exception",
                        format!("Timeseries lifecycle does not support phase [{phase}]"),
                    ),
                );
            };
            for action in def
                .get("actions")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|a| a.keys())
            {
                if !actions.contains(&action.as_str()) {
                    return Reply::error(
                        400,
                        cause(
                            "illegal_argument_exception",
                            format!("invalid action [{action}] defined in phase [{phase}]"),
                        ),
                    );
                }
            }
        }
    }
    let version = st.ilm.get(name).map_or(1, |p| p.version + 1);
    st.ilm.insert(
        name.to_owned(),
        IlmPolicy {
            version,
            modified_date: now_iso(),
            policy: policy.clone(),
        },
    );
    Reply::ack()
}

// ---- templates ----

const FIELD_TYPES: &[&str] = &[
    "text",
    "keyword",
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
    "date",
    "date_nanos",
    "boolean",
    "binary",
    "object",
    "nested",
    "flattened",
    "ip",
    "version",
    "geo_point",
    "geo_shape",
    "point",
    "shape",
    "alias",
    "completion",
    "search_as_you_type",
    "token_count",
    "dense_vector",
    "sparse_vector",
    "rank_feature",
    "rank_features",
    "histogram",
    "aggregate_metric_double",
    "constant_keyword",
    "wildcard",
    "match_only_text",
    "semantic_text",
    "integer_range",
    "float_range",
    "long_range",
    "double_range",
    "date_range",
    "ip_range",
    "join",
    "percolator",
    "passthrough",
    "annotated_text",
    "murmur3",
    "counted_keyword",
];

/// Rejects unknown field types like the mapper service does.
fn check_mapping_types(node: &Value, path: &str) -> Result<(), Reply> {
    let Some(props) = node.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, field) in props {
        let full = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        if let Some(ty) = field.get("type").and_then(Value::as_str) {
            if !FIELD_TYPES.contains(&ty) {
                return Err(Reply::error(
                    400,
                    cause(
                        "mapper_parsing_exception",
                        format!("No handler for type [{ty}] declared on field [{name}]"),
                    ),
                ));
            }
        }
        if let Some(dynamic) = field.get("dynamic") {
            check_dynamic(dynamic)?;
        }
        check_mapping_types(field, &full)?;
    }
    Ok(())
}

fn check_dynamic(v: &Value) -> Result<(), Reply> {
    match v {
        Value::Bool(_) => Ok(()),
        Value::String(s) if matches!(s.as_str(), "true" | "false" | "strict" | "runtime") => Ok(()),
        other => Err(Reply::error(
            400,
            cause(
                "mapper_parsing_exception",
                format!(
                    "Failed to parse mapping: Could not convert [dynamic] to boolean: [{}]",
                    other
                        .as_str()
                        .map_or_else(|| other.to_string(), str::to_owned)
                ),
            ),
        )),
    }
}

fn check_template_block(template: Option<&Value>) -> Result<(), Reply> {
    if let Some(mappings) = template.and_then(|t| t.get("mappings")) {
        if let Some(d) = mappings.get("dynamic") {
            check_dynamic(d)?;
        }
        check_mapping_types(&mapping::normalize(mappings), "")?;
    }
    Ok(())
}

fn put_component(st: &mut State, name: &str, params: &Params, body: &[u8]) -> Reply {
    let obj = match object_body(body, "component_template") {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Err(r) = unknown_field(
        &obj,
        &["template", "version", "_meta", "deprecated"],
        "component_template",
    ) {
        return r;
    }
    if !obj.get("template").is_some_and(Value::is_object) {
        return Reply::error(
            400,
            cause("illegal_argument_exception", "Required [template]"),
        );
    }
    if let Err(r) = check_template_block(obj.get("template")) {
        return r;
    }
    if params.flag("create") && st.component_templates.contains_key(name) {
        return Reply::error(
            400,
            cause(
                "illegal_argument_exception",
                format!("component template [{name}] already exists"),
            ),
        );
    }
    st.component_templates
        .insert(name.to_owned(), Value::Object(obj));
    Reply::ack()
}

fn put_template(st: &mut State, name: &str, params: &Params, body: &[u8]) -> Reply {
    let obj = match object_body(body, "index_template") {
        Ok(o) => o,
        Err(r) => return r,
    };
    let known = [
        "index_patterns",
        "composed_of",
        "template",
        "data_stream",
        "priority",
        "version",
        "_meta",
        "allow_auto_create",
        "ignore_missing_component_templates",
        "deprecated",
    ];
    if let Err(r) = unknown_field(&obj, &known, "index_template") {
        return r;
    }
    let patterns = obj
        .get("index_patterns")
        .map(patterns_of)
        .unwrap_or_default();
    if patterns.is_empty() {
        return Reply::error(
            400,
            cause("illegal_argument_exception", "Required [index_patterns]"),
        );
    }
    if params.flag("create") && st.index_templates.contains_key(name) {
        return Reply::error(
            400,
            cause(
                "illegal_argument_exception",
                format!("index template [{name}] already exists"),
            ),
        );
    }
    if let Err(r) = check_template_block(obj.get("template")) {
        return r;
    }
    let ignored: Vec<&str> = obj
        .get("ignore_missing_component_templates")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let missing: Vec<&str> = obj
        .get("composed_of")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !st.component_templates.contains_key(*c) && !ignored.contains(c))
        .collect();
    if !missing.is_empty() {
        return Reply::error(
            400,
            cause(
                "invalid_index_template_exception",
                format!(
                    "index_template [{name}] invalid, cause [index template [{name}] specifies component templates [{}] that do not exist]",
                    missing.join(", ")
                ),
            ),
        );
    }
    let priority = obj.get("priority").and_then(Value::as_i64).unwrap_or(0);
    for (other, t) in &st.index_templates {
        if other == name || t.get("priority").and_then(Value::as_i64).unwrap_or(0) != priority {
            continue;
        }
        let theirs = t.get("index_patterns").map(patterns_of).unwrap_or_default();
        let overlap = patterns
            .iter()
            .any(|p| theirs.iter().any(|q| glob(p, q) || glob(q, p)));
        if overlap {
            return Reply::error(
                400,
                cause(
                    "illegal_argument_exception",
                    format!(
                        "index template [{name}] has index patterns [{}] matching patterns from existing templates [{other}] with patterns ({other} => [{}]) that have the same priority [{priority}], multiple index templates may not match during index creation, please use a different priority",
                        patterns.join(", "),
                        theirs.join(", ")
                    ),
                ),
            );
        }
    }
    let previous = st
        .index_templates
        .insert(name.to_owned(), Value::Object(obj.clone()));
    if obj.get("data_stream").is_some() {
        let resolved = st.resolve_template(name);
        if let Some((ts, _)) = mapping::lookup(&resolved.mappings, "@timestamp") {
            let ty = ts.get("type").and_then(Value::as_str).unwrap_or("object");
            if ty != "date" && ty != "date_nanos" {
                match previous {
                    Some(p) => st.index_templates.insert(name.to_owned(), p),
                    None => st.index_templates.remove(name),
                };
                return Reply::error(
                    400,
                    cause(
                        "illegal_argument_exception",
                        format!("data stream timestamp field [@timestamp] is of type [{ty}], but [date,date_nanos] is expected"),
                    ),
                );
            }
        }
    }
    Reply::ack()
}

/// An index template as GET shows it: the stored body with Elasticsearch's defaults filled in.
fn template_view(t: &Value) -> J {
    let mut out = J::obj().set(
        "index_patterns",
        J::from(t.get("index_patterns").cloned().unwrap_or(Value::Null)),
    );
    if let Some(v) = t.get("template") {
        out.push("template", v);
    }
    out.push(
        "composed_of",
        J::from(
            t.get("composed_of")
                .cloned()
                .unwrap_or_else(|| Value::Array(Vec::new())),
        ),
    );
    for key in ["priority", "version", "_meta"] {
        if let Some(v) = t.get(key) {
            out.push(key, v);
        }
    }
    if let Some(ds) = t.get("data_stream") {
        out.push(
            "data_stream",
            J::obj()
                .set(
                    "hidden",
                    ds.get("hidden").and_then(Value::as_bool).unwrap_or(false),
                )
                .set(
                    "allow_custom_routing",
                    ds.get("allow_custom_routing")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                ),
        );
    }
    for key in [
        "allow_auto_create",
        "ignore_missing_component_templates",
        "deprecated",
    ] {
        if let Some(v) = t.get(key) {
            out.push(key, v);
        }
    }
    out
}

fn get_template(st: &State, expr: &str) -> Reply {
    let names = names_matching(st.index_templates.keys(), expr);
    if names.is_empty() && !expr.contains('*') {
        return Reply::error(
            404,
            cause(
                "resource_not_found_exception",
                format!("index template matching [{expr}] not found"),
            ),
        );
    }
    let list = names
        .iter()
        .map(|n| {
            J::obj()
                .set("name", n.as_str())
                .set("index_template", template_view(&st.index_templates[n]))
        })
        .collect();
    Reply::ok(J::obj().set("index_templates", J::Arr(list)))
}

// ---- data streams ----

// ---- reads ----
