//! `iaso-probe setup` end to end, in process: `install_elasticsearch` against the Elasticsearch
//! emulator (`tests/support/es_emulator.rs`: it records the requests and injects refusals) and
//! `import_kibana` / `wait_kibana_available` against a small Kibana API stub written here
//! (actix-web on 127.0.0.1:0, on its own thread).
//! Asserts the exact requests, and that refusals (HTTP errors, `"success": false`) are errors.

mod support;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use elasticsearch::auth::Credentials;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::Elasticsearch;
use iaso_probe::setup::{
    dry_run_lines, elasticsearch_plan, import_kibana, install_elasticsearch, kibana_files,
    wait_kibana_available, KibanaTarget, SetupError,
};
use serde_json::{json, Value};
use support::es_emulator::{EmulatorOptions, EsEmulator, Fault};

const USER: &str = "elastic";
const PASSWORD: &str = "flow-test-password";

fn es_client(url: &str) -> Elasticsearch {
    let pool = SingleNodeConnectionPool::new(url.parse().unwrap());
    let transport = TransportBuilder::new(pool)
        .auth(Credentials::Basic(USER.into(), PASSWORD.into()))
        .build()
        .unwrap();
    Elasticsearch::new(transport)
}

fn secured_emulator() -> EsEmulator {
    EsEmulator::start_with(EmulatorOptions {
        basic_auth: Some((USER.into(), PASSWORD.into())),
    })
}

// ----------------------------------------------------------------------------- Elasticsearch

/// The requests after the ILM detection (`GET /_ilm/status`, always the first one).
fn installed(es: &EsEmulator) -> Vec<support::es_emulator::RecordedRequest> {
    let mut requests = es.requests();
    let first = requests.remove(0);
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("GET", "/_ilm/status")
    );
    requests
}

#[tokio::test]
async fn installs_policy_then_component_then_index_templates_as_sent() {
    let es = secured_emulator();
    let client = es_client(&es.url());
    let plan = elasticsearch_plan(Some("7d"));

    assert_eq!(install_elasticsearch(&client, &plan).await.unwrap(), 5);

    let sent: Vec<(String, String)> = installed(&es)
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    let expected: Vec<(String, String)> = plan
        .iter()
        .map(|r| (r.method.to_owned(), r.path.clone()))
        .collect();
    assert_eq!(sent, expected, "one PUT per resource, in dependency order");
    for (request, recorded) in plan.iter().zip(installed(&es)) {
        let body: Value = serde_json::from_slice(&recorded.body).unwrap();
        assert_eq!(body, request.body, "{} sent as planned", request.path);
        assert!(recorded
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")));
    }

    let policies = es.ilm_policies();
    let policy = &policies["iaso-probe"];
    let delete_age = policy
        .pointer("/policy/phases/delete/min_age")
        .or_else(|| policy.pointer("/phases/delete/min_age"));
    assert_eq!(delete_age, Some(&json!("7d")), "{policy}");
    let components = es.component_templates();
    assert!(components.contains_key("iaso-mappings") && components.contains_key("iaso-settings"));
    let templates = es.index_templates();
    for (name, pattern) in [
        ("iaso-checks", "iaso-checks-*"),
        ("iaso-jobs", "iaso-jobs-*"),
    ] {
        let t = &templates[name];
        let t = t.get("index_template").unwrap_or(t);
        assert_eq!(t["index_patterns"], json!([pattern]));
        assert_eq!(t["composed_of"], json!(["iaso-mappings", "iaso-settings"]));
    }
}

#[tokio::test]
async fn installing_twice_overwrites_in_place() {
    let es = secured_emulator();
    let client = es_client(&es.url());
    let plan = elasticsearch_plan(None);
    install_elasticsearch(&client, &plan).await.unwrap();
    assert_eq!(install_elasticsearch(&client, &plan).await.unwrap(), 5);
    assert_eq!(es.index_templates().len(), 2);
    assert_eq!(
        es.requests().len(),
        12,
        "one ILM detection and five PUTs per run"
    );
}

#[tokio::test]
async fn an_elasticsearch_refusal_stops_the_install_naming_type_and_reason() {
    let es = secured_emulator();
    let client = es_client(&es.url());
    // The refusal a cluster gives when the component templates are missing (tests/real_es.rs
    // gets it from a real node).
    es.fail_path(
        "/_index_template/iaso-checks",
        Fault::Error {
            status: 400,
            error_type: "invalid_index_template_exception".into(),
            reason: "index_template [iaso-checks] invalid, cause [index template [iaso-checks] specifies component templates [iaso-mappings] that do not exist]".into(),
        },
    );
    let err = install_elasticsearch(&client, &elasticsearch_plan(None))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SetupError::ElasticsearchStatus { status: 400, error_type, .. } if error_type == "invalid_index_template_exception"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.starts_with("elasticsearch answered 400 to PUT /_index_template/iaso-checks: invalid_index_template_exception: "), "{message}");
    assert!(message.contains("iaso-mappings"), "{message}");
    let sent: Vec<String> = installed(&es).into_iter().map(|r| r.path).collect();
    assert_eq!(
        sent.last().map(String::as_str),
        Some("/_index_template/iaso-checks"),
        "stops at the first failure: {sent:?}"
    );
    assert!(es.index_templates().is_empty());
}

#[tokio::test]
async fn unavailable_or_unauthorized_elasticsearch_is_an_error_without_the_password() {
    let es = secured_emulator();
    es.fail_any_requests(503, 1);
    let err = install_elasticsearch(&es_client(&es.url()), &elasticsearch_plan(None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "elasticsearch answered 503 to GET /_ilm/status: cannot tell whether the cluster has ILM: cluster_block_exception"
        ),
        "{err}"
    );

    let wrong = {
        let pool = SingleNodeConnectionPool::new(es.url().parse().unwrap());
        let t = TransportBuilder::new(pool)
            .auth(Credentials::Basic(USER.into(), "wrong-password".into()))
            .build()
            .unwrap();
        Elasticsearch::new(t)
    };
    let err = install_elasticsearch(&wrong, &elasticsearch_plan(None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("401") && err.contains("security_exception"),
        "{err}"
    );
    assert!(!err.contains("wrong-password"));

    drop(es); // nothing listens any more
    let err = install_elasticsearch(&wrong, &elasticsearch_plan(None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SetupError::ElasticsearchTransport { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_dry_run_prints_exactly_what_install_sends() {
    let es = secured_emulator();
    let plan = elasticsearch_plan(None);
    install_elasticsearch(&es_client(&es.url()), &plan)
        .await
        .unwrap();
    let printed = dry_run_lines(&plan, None);
    let sent: Vec<String> = installed(&es)
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            format!("{} {} {}", r.method, r.path, body)
        })
        .collect();
    assert_eq!(printed, sent);
}

// ----------------------------------------------------------------------------- Kibana stub

#[derive(Clone, Debug)]
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

#[derive(Clone, Debug)]
struct KibanaRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    parts: Vec<Part>,
}

impl KibanaRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct StubState {
    requests: Vec<KibanaRequest>,
    /// Answers to the next imports; when empty, a success counting the file's objects.
    import_answers: VecDeque<(u16, Value)>,
    /// Answers to the next `GET /api/status`; when empty, 200 available.
    status_answers: VecDeque<(u16, Value)>,
}

/// A Kibana that records every request and answers the import and status APIs.
struct KibanaStub {
    addr: SocketAddr,
    state: Arc<Mutex<StubState>>,
    server: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KibanaStub {
    fn start() -> KibanaStub {
        let state = Arc::new(Mutex::new(StubState::default()));
        let shared = Arc::clone(&state);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(web::Data::new(Arc::clone(&shared)))
                        .default_service(web::to(answer))
                })
                .workers(1)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .expect("bind the kibana stub");
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).unwrap();
                server.await.unwrap();
            });
        });
        let (addr, server) = rx.recv().unwrap();
        KibanaStub {
            addr,
            state,
            server,
            thread: Some(thread),
        }
    }

    fn url(&self) -> url::Url {
        format!("http://{}", self.addr).parse().unwrap()
    }

    fn target(&self) -> KibanaTarget {
        KibanaTarget {
            url: self.url(),
            username: Some(USER.into()),
            password: Some(PASSWORD.into()),
            api_key: None,
            space: None,
        }
    }

    fn requests(&self) -> Vec<KibanaRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    fn answer_imports(&self, answers: Vec<(u16, Value)>) {
        self.state.lock().unwrap().import_answers.extend(answers);
    }

    fn answer_status(&self, answers: Vec<(u16, Value)>) {
        self.state.lock().unwrap().status_answers.extend(answers);
    }
}

impl Drop for KibanaStub {
    fn drop(&mut self) {
        // `stop` sends the command when called; its future only waits for completion.
        drop(self.server.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn multipart_parts(content_type: &str, body: &[u8]) -> Vec<Part> {
    let Some(boundary) = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
    else {
        return Vec::new();
    };
    let delimiter = format!("--{}", boundary.trim_matches('"'));
    let text = body;
    let mut parts = Vec::new();
    let positions: Vec<usize> = text
        .windows(delimiter.len())
        .enumerate()
        .filter(|(_, w)| *w == delimiter.as_bytes())
        .map(|(i, _)| i)
        .collect();
    for pair in positions.windows(2) {
        let chunk = &text[pair[0] + delimiter.len()..pair[1]];
        let chunk = chunk.strip_prefix(b"\r\n").unwrap_or(chunk);
        let chunk = chunk.strip_suffix(b"\r\n").unwrap_or(chunk);
        let Some(split) = chunk.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let headers = String::from_utf8_lossy(&chunk[..split]).into_owned();
        let data = chunk[split + 4..].to_vec();
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data,
        };
        for line in headers.lines() {
            let (key, value) = line.split_once(':').unwrap_or((line, ""));
            match key.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for attr in value.split(';').map(str::trim) {
                        if let Some(v) = attr.strip_prefix("name=") {
                            part.name = v.trim_matches('"').to_owned();
                        }
                        if let Some(v) = attr.strip_prefix("filename=") {
                            part.filename = Some(v.trim_matches('"').to_owned());
                        }
                    }
                }
                "content-type" => part.content_type = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        parts.push(part);
    }
    parts
}

async fn answer(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<StubState>>>,
) -> HttpResponse {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let recorded = KibanaRequest {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        query: req.query_string().to_owned(),
        headers,
        parts: multipart_parts(content_type, &body),
    };
    let mut st = state.lock().unwrap();
    st.requests.push(recorded.clone());
    let (status, body) = if recorded.path.ends_with("/api/saved_objects/_import") {
        if recorded.header("kbn-xsrf").is_none() {
            (
                400,
                json!({"statusCode": 400, "error": "Bad Request",
                       "message": "Request must contain a kbn-xsrf header."}),
            )
        } else if let Some(answer) = st.import_answers.pop_front() {
            answer
        } else {
            let objects = recorded
                .parts
                .iter()
                .find(|p| p.name == "file")
                .map(|p| {
                    String::from_utf8_lossy(&p.data)
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .count()
                })
                .unwrap_or(0);
            (
                200,
                json!({"success": true, "successCount": objects, "successResults": []}),
            )
        }
    } else if recorded.path == "/api/status" {
        st.status_answers
            .pop_front()
            .unwrap_or((200, json!({"status": {"overall": {"level": "available"}}})))
    } else {
        (
            404,
            json!({"statusCode": 404, "error": "Not Found", "message": "Not Found"}),
        )
    };
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(body.to_string())
}

fn lines(content: &[u8]) -> usize {
    String::from_utf8_lossy(content)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

// ----------------------------------------------------------------------------- Kibana

#[tokio::test]
async fn imports_every_file_as_multipart_with_xsrf_overwrite_and_credentials() {
    let kibana = KibanaStub::start();
    let files = kibana_files();
    let http = reqwest::Client::new();

    let imported = import_kibana(&http, &kibana.target(), &files)
        .await
        .unwrap();

    let total: usize = files.iter().map(|(_, c)| lines(c)).sum();
    assert_eq!(imported, total, "the successCounts added up");
    let requests = kibana.requests();
    assert_eq!(requests.len(), files.len(), "one import per file");
    let basic = format!(
        "Basic {}",
        base64_encode(format!("{USER}:{PASSWORD}").as_bytes())
    );
    for ((name, content), r) in files.iter().zip(&requests) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/saved_objects/_import");
        assert_eq!(r.query, "overwrite=true");
        assert!(r.header("kbn-xsrf").is_some(), "kbn-xsrf header");
        assert_eq!(r.header("authorization"), Some(basic.as_str()));
        assert!(r
            .header("content-type")
            .is_some_and(|c| c.starts_with("multipart/form-data; boundary=")));
        assert_eq!(r.parts.len(), 1, "a single multipart field");
        let part = &r.parts[0];
        assert_eq!(part.name, "file");
        assert_eq!(part.filename.as_deref(), Some(*name));
        assert!(name.ends_with(".ndjson"), "Kibana refuses other extensions");
        assert_eq!(part.content_type.as_deref(), Some("application/ndjson"));
        assert_eq!(part.data, *content, "{name} sent byte for byte");
    }
    // Import order: the data views first, so later files' references resolve.
    assert_eq!(
        requests[0].parts[0].filename.as_deref(),
        Some("iaso-data-views.ndjson")
    );

    // The dry run announces the same calls.
    let printed = dry_run_lines(&[], Some(&kibana.target()));
    assert_eq!(printed.len(), files.len());
    for (line, (name, _)) in printed.iter().zip(&files) {
        assert!(line.starts_with(&format!(
            "POST {}api/saved_objects/_import?overwrite=true kbn-xsrf: ",
            kibana.url()
        )));
        assert!(line.ends_with(&format!("file={name}")));
        assert!(!line.contains(PASSWORD));
    }
}

#[tokio::test]
async fn imports_into_a_space_with_an_api_key() {
    let kibana = KibanaStub::start();
    let mut target = kibana.target();
    target.space = Some("ops".into());
    target.api_key = Some("aWQ6a2V5".into());
    let files = kibana_files();
    import_kibana(&reqwest::Client::new(), &target, &files[..1])
        .await
        .unwrap();
    let r = &kibana.requests()[0];
    assert_eq!(r.path, "/s/ops/api/saved_objects/_import");
    assert_eq!(r.query, "overwrite=true");
    assert_eq!(r.header("authorization"), Some("ApiKey aWQ6a2V5"));
}

#[tokio::test]
async fn success_false_is_an_error_listing_the_failed_objects_and_stops() {
    let kibana = KibanaStub::start();
    kibana.answer_imports(vec![(
        200,
        json!({"success": false, "successCount": 0, "errors": [
            {"id": "iaso-probe-checks", "type": "index-pattern", "title": "IASO checks", "meta": {},
             "error": {"type": "conflict"}},
            {"id": "iaso-availability-overall", "type": "lens", "title": "Availability", "meta": {},
             "error": {"type": "missing_references",
                       "references": [{"type": "index-pattern", "id": "iaso-probe-checks"}]}}
        ]}),
    )]);
    let err = import_kibana(&reqwest::Client::new(), &kibana.target(), &kibana_files())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SetupError::KibanaImport { error_count: 2, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "kibana import of iaso-data-views.ndjson failed (0 objects imported, 2 errors): \
         index-pattern/iaso-probe-checks: conflict; \
         lens/iaso-availability-overall: missing_references (index-pattern/iaso-probe-checks)"
    );
    assert_eq!(
        kibana.requests().len(),
        1,
        "no further file after a failure"
    );
}

#[tokio::test]
async fn an_http_error_from_kibana_is_an_error_without_secrets() {
    let kibana = KibanaStub::start();
    kibana.answer_imports(vec![(
        401,
        json!({"statusCode": 401, "error": "Unauthorized", "message": "[security_exception]: unable to authenticate user"}),
    )]);
    let err = import_kibana(&reqwest::Client::new(), &kibana.target(), &kibana_files())
        .await
        .unwrap_err();
    assert!(
        matches!(err, SetupError::KibanaStatus { status: 401, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert_eq!(
        message,
        "kibana answered 401 to POST /api/saved_objects/_import?overwrite=true: iaso-data-views.ndjson: [security_exception]: unable to authenticate user"
    );
    assert!(!message.contains(PASSWORD));
}

#[tokio::test]
async fn a_file_kibana_would_refuse_is_not_sent() {
    let kibana = KibanaStub::start();
    let err = import_kibana(
        &reqwest::Client::new(),
        &kibana.target(),
        &[("objects.json", b"{}\n".as_slice())],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SetupError::KibanaFile { .. }), "{err:?}");
    assert!(kibana.requests().is_empty());
}

#[tokio::test]
async fn an_unreachable_kibana_is_a_transport_error() {
    let target = {
        let kibana = KibanaStub::start();
        kibana.target()
    }; // stopped: the port no longer listens
    let err = import_kibana(&reqwest::Client::new(), &target, &kibana_files())
        .await
        .unwrap_err();
    assert!(matches!(err, SetupError::KibanaTransport { .. }), "{err:?}");
    assert!(!err.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn waits_for_kibana_to_become_available() {
    let kibana = KibanaStub::start();
    kibana.answer_status(vec![
        (
            503,
            json!({"status": {"overall": {"level": "unavailable"}}}),
        ),
        (200, json!({"status": {"overall": {"level": "degraded"}}})),
    ]);
    wait_kibana_available(
        &reqwest::Client::new(),
        &kibana.target(),
        Duration::from_secs(10),
        Duration::from_millis(20),
    )
    .await
    .unwrap();
    let status_calls: Vec<_> = kibana
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/status")
        .collect();
    assert_eq!(status_calls.len(), 3, "503, degraded, then available");
    assert!(status_calls.iter().all(|r| r.method == "GET"));
}

#[tokio::test]
async fn gives_up_waiting_for_kibana_after_the_deadline() {
    let kibana = KibanaStub::start();
    kibana.answer_status(
        (0..100)
            .map(|_| {
                (
                    503,
                    json!({"status": {"overall": {"level": "unavailable"}}}),
                )
            })
            .collect(),
    );
    let err = wait_kibana_available(
        &reqwest::Client::new(),
        &kibana.target(),
        Duration::from_millis(300),
        Duration::from_millis(50),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SetupError::KibanaUnavailable { last, .. } if last == "HTTP 503, overall level unavailable"),
        "{err:?}"
    );
}

/// Standard base64 (the crate does not depend on a base64 library).
fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
