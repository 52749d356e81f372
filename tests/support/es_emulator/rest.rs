//! REST layer: the `_bulk` size limit, authentication, injected faults, the few routes the
//! prober uses, response headers, and the request log.

use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use serde_json::{json, Value};

use super::http::{HttpRequest, HttpResponse};
use super::{bulk, Fault, RecordedRequest, State};

/// A response before the common headers.
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub headers: Vec<(String, String)>,
    /// No Elasticsearch headers at all (the 413 comes from Netty, before the REST layer).
    pub bare: bool,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            headers: Vec::new(),
            bare: false,
        }
    }

    /// Elasticsearch's error envelope for an error `type` and `reason`.
    pub fn error(status: u16, error_type: &str, reason: &str) -> Reply {
        Reply::json(
            status,
            json!({"error": cause(error_type, reason), "status": status}),
        )
    }

    fn too_large() -> Reply {
        Reply {
            status: 413,
            body: None,
            headers: Vec::new(),
            bare: true,
        }
    }
}

/// `{"root_cause":[{type, reason}], "type", "reason"}`.
pub fn cause(error_type: &str, reason: &str) -> Value {
    json!({
        "root_cause": [{"type": error_type, "reason": reason}],
        "type": error_type,
        "reason": reason,
    })
}

/// Entry point from the HTTP server.
pub fn handle(state: &Mutex<State>, req: HttpRequest) -> HttpResponse {
    let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
    let path = percent_decode(&req.raw_path);
    let is_bulk = path == "/_bulk";
    let reply = respond(&mut st, &req, &path, is_bulk);
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
    if !reply.bare {
        headers.push(("X-elastic-product".to_owned(), "Elasticsearch".to_owned()));
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    headers.extend(reply.headers);
    let body = reply
        .body
        .map(|b| serde_json::to_vec(&b).unwrap_or_default())
        .unwrap_or_default();
    st.requests.push(RecordedRequest {
        method: req.method.clone(),
        path,
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

fn respond(st: &mut State, req: &HttpRequest, path: &str, is_bulk: bool) -> Reply {
    if is_bulk && st.max_request_bytes.is_some_and(|max| req.body.len() > max) {
        return Reply::too_large();
    }
    if let Err(reply) = authenticate(st, req) {
        return reply;
    }
    let fault = match st.path_faults.iter().position(|(p, _)| p == path) {
        Some(at) => Some(st.path_faults.remove(at).1),
        None => match st.any_faults.pop_front() {
            Some(f) => Some(f),
            None if is_bulk => st.bulk_faults.pop_front(),
            None => None,
        },
    };
    if let Some(fault) = fault {
        return fault_reply(&fault, req);
    }
    route(st, req, path)
}

fn percent_decode(s: &str) -> String {
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

fn unauthorized(req: &HttpRequest) -> Reply {
    let uri = req.uri();
    let reason = match req.header("authorization") {
        Some(_) => format!("unable to authenticate with the credentials of REST request [{uri}]"),
        None => format!("missing authentication credentials for REST request [{uri}]"),
    };
    let mut reply = Reply::error(401, "security_exception", &reason);
    reply.headers.push((
        "WWW-Authenticate".to_owned(),
        "Basic realm=\"security\" charset=\"UTF-8\"".to_owned(),
    ));
    reply
}

fn authenticate(st: &State, req: &HttpRequest) -> Result<(), Reply> {
    let Some((user, password)) = &st.options.basic_auth else {
        return Ok(());
    };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    if req.header("authorization") == Some(expected.as_str()) {
        Ok(())
    } else {
        Err(unauthorized(req))
    }
}

fn fault_reply(fault: &Fault, req: &HttpRequest) -> Reply {
    match fault {
        Fault::Rejected429 => Reply::error(
            429,
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation [coordinating_and_primary_bytes=95396333, replica_bytes=0, all_bytes=95396333, coordinating_operation_bytes=22949230, max_coordinating_and_primary_bytes=107374182]",
        ),
        Fault::NoMaster503 => Reply::error(
            503,
            "cluster_block_exception",
            "blocked by: [SERVICE_UNAVAILABLE/2/no master];",
        ),
        Fault::Unauthorized401 => unauthorized(req),
        Fault::TooLarge413 => Reply::too_large(),
        Fault::Status(status) => Reply::error(
            *status,
            "exception",
            &format!("emulated failure with status [{status}]"),
        ),
        Fault::Error {
            status,
            error_type,
            reason,
        } => Reply::error(*status, error_type, reason),
    }
}

/// The JSON object of a `PUT` body, or Elasticsearch's 400 for anything else.
fn object_body(req: &HttpRequest) -> Result<Value, Reply> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(Reply::error(
            400,
            "x_content_parse_exception",
            "request body is not a JSON object",
        )),
    }
}

fn route(st: &mut State, req: &HttpRequest, path: &str) -> Reply {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let ack = || Reply::json(200, json!({"acknowledged": true}));
    match (req.method.as_str(), segs.as_slice()) {
        ("POST" | "PUT", ["_bulk"]) => bulk::bulk(st, &req.body),
        ("GET", ["_ilm", "status"]) => Reply::json(200, json!({"operation_mode": "RUNNING"})),
        // The default distribution: x-pack is there (the real test node is the OSS build).
        ("GET", ["_xpack"]) => Reply::json(200, json!({"features": {}})),
        ("PUT", ["_ilm", "policy", name]) => match object_body(req) {
            Ok(body) => {
                let policy = body.get("policy").cloned().unwrap_or(Value::Null);
                st.ilm_policies.insert((*name).to_owned(), policy);
                ack()
            }
            Err(r) => r,
        },
        ("PUT", ["_component_template", name]) => match object_body(req) {
            Ok(body) => {
                st.component_templates.insert((*name).to_owned(), body);
                ack()
            }
            Err(r) => r,
        },
        ("PUT", ["_index_template", name]) => match object_body(req) {
            Ok(body) => {
                st.index_templates.insert((*name).to_owned(), body);
                ack()
            }
            Err(r) => r,
        },
        ("GET" | "HEAD", ["_index_template", name]) => match st.index_templates.get(*name) {
            Some(t) => Reply::json(
                200,
                json!({"index_templates": [{"name": name, "index_template": t}]}),
            ),
            None => Reply::error(
                404,
                "resource_not_found_exception",
                &format!("index template matching [{name}] not found"),
            ),
        },
        // What Elasticsearch answers for a path no handler serves.
        _ => Reply::json(
            400,
            json!({"error": format!(
                "no handler found for uri [{}] and method [{}]",
                req.uri(),
                req.method
            )}),
        ),
    }
}
