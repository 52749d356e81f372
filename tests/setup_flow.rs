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
    alert_rules, dry_run_lines, elasticsearch_plan, import_kibana, install_elasticsearch,
    install_rules, kibana_files, sync_kibana, wait_kibana_available, FileSync, KibanaTarget,
    RuleSync, SetupError,
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

/// The requests after the feature detection (`GET /_ilm/status`, then `GET /_xpack`, always
/// the first two).
fn installed(es: &EsEmulator) -> Vec<support::es_emulator::RecordedRequest> {
    let mut requests = es.requests();
    let detection: Vec<_> = requests
        .drain(..2)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(detection, ["GET /_ilm/status", "GET /_xpack"]);
    requests
}

#[tokio::test]
async fn installs_policy_then_component_then_index_templates_as_sent() {
    let es = secured_emulator();
    let client = es_client(&es.url());
    let plan = elasticsearch_plan(Some("7d"));

    assert_eq!(install_elasticsearch(&client, &plan).await.unwrap(), 7);

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
        ("synthetics-iaso.checks", "synthetics-iaso.checks-*"),
        ("logs-iaso.jobs", "logs-iaso.jobs-*"),
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
    assert_eq!(install_elasticsearch(&client, &plan).await.unwrap(), 7);
    assert_eq!(es.index_templates().len(), 4);
    assert_eq!(
        es.requests().len(),
        18,
        "two detections (ILM, x-pack) and seven PUTs per run"
    );
}

#[tokio::test]
async fn an_elasticsearch_refusal_stops_the_install_naming_type_and_reason() {
    let es = secured_emulator();
    let client = es_client(&es.url());
    // The refusal a cluster gives when the component templates are missing (tests/real_es.rs
    // gets it from a real node).
    es.fail_path(
        "/_index_template/synthetics-iaso.checks",
        Fault::Error {
            status: 400,
            error_type: "invalid_index_template_exception".into(),
            reason: "index_template [synthetics-iaso.checks] invalid, cause [index template [synthetics-iaso.checks] specifies component templates [iaso-mappings] that do not exist]".into(),
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
    assert!(message.starts_with("elasticsearch answered 400 to PUT /_index_template/synthetics-iaso.checks: invalid_index_template_exception: "), "{message}");
    assert!(message.contains("iaso-mappings"), "{message}");
    let sent: Vec<String> = installed(&es).into_iter().map(|r| r.path).collect();
    assert_eq!(
        sent.last().map(String::as_str),
        Some("/_index_template/synthetics-iaso.checks"),
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
    body: Vec<u8>,
}

impl KibanaRequest {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

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
    /// Saved objects imported so far, by (type, id), as the file had them.
    saved: std::collections::BTreeMap<(String, String), Value>,
    /// Alerting rules, by id (the body of their creation, then updates merged in).
    rules: std::collections::BTreeMap<String, Value>,
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

    /// Changes a stored saved object as a user editing it in Kibana would.
    fn edit(&self, kind: &str, id: &str, edit: impl FnOnce(&mut Value)) {
        let mut st = self.state.lock().unwrap();
        edit(st.saved.get_mut(&(kind.to_owned(), id.to_owned())).unwrap());
    }

    fn saved(&self, kind: &str, id: &str) -> Option<Value> {
        let st = self.state.lock().unwrap();
        st.saved.get(&(kind.to_owned(), id.to_owned())).cloned()
    }

    fn rules(&self) -> std::collections::BTreeMap<String, Value> {
        self.state.lock().unwrap().rules.clone()
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
        body: body.to_vec(),
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
            let mut objects = 0;
            for part in recorded.parts.iter().filter(|p| p.name == "file") {
                for line in String::from_utf8_lossy(&part.data).lines() {
                    if let Ok(o) = serde_json::from_str::<Value>(line) {
                        let key = (
                            o["type"].as_str().unwrap_or("").to_owned(),
                            o["id"].as_str().unwrap_or("").to_owned(),
                        );
                        st.saved.insert(key, o);
                        objects += 1;
                    }
                }
            }
            (
                200,
                json!({"success": true, "successCount": objects, "successResults": []}),
            )
        }
    } else if let Some(rest) = recorded.path.strip_prefix("/api/saved_objects/") {
        let (kind, id) = rest.split_once('/').unwrap_or((rest, ""));
        match st.saved.get(&(kind.to_owned(), id.to_owned())) {
            Some(o) if recorded.method == "GET" => (200, o.clone()),
            _ => (
                404,
                json!({"statusCode": 404, "error": "Not Found",
                       "message": format!("Saved object [{kind}/{id}] not found")}),
            ),
        }
    } else if let Some(id) = recorded.path.strip_prefix("/api/alerting/rule/") {
        let id = id.to_owned();
        let body = recorded.json();
        match recorded.method.as_str() {
            m if m != "GET" && recorded.header("kbn-xsrf").is_none() => (
                400,
                json!({"statusCode": 400, "message": "Request must contain a kbn-xsrf header."}),
            ),
            "GET" => match st.rules.get(&id) {
                Some(rule) => {
                    // Kibana's answer adds keys the update schema refuses.
                    let mut rule = rule.clone();
                    rule["id"] = json!(id);
                    for a in rule["actions"].as_array_mut().into_iter().flatten() {
                        a["connector_type_id"] = json!(".slack");
                        a["uuid"] = json!("6f0c…");
                    }
                    (200, rule)
                }
                None => (404, json!({"statusCode": 404, "message": "Not Found"})),
            },
            "POST" if st.rules.contains_key(&id) => (
                409,
                json!({"statusCode": 409, "error": "Conflict",
                       "message": format!("Saved object [alert/{id}] conflict")}),
            ),
            "POST" => {
                st.rules.insert(id.clone(), body.clone());
                (200, json!({"id": id, "rule_type_id": body["rule_type_id"]}))
            }
            "PUT" if st.rules.contains_key(&id) => {
                let refused =
                    body.get("rule_type_id").is_some()
                        || body.get("consumer").is_some()
                        || body["actions"].as_array().into_iter().flatten().any(|a| {
                            a.get("connector_type_id").is_some() || a.get("uuid").is_some()
                        });
                if refused {
                    (
                        400,
                        json!({"statusCode": 400,
                               "message": "[request body.rule_type_id]: definition for this key is missing"}),
                    )
                } else {
                    let rule = st.rules.get_mut(&id).unwrap();
                    for (k, v) in body.as_object().unwrap() {
                        rule[k] = v.clone();
                    }
                    (200, json!({"id": id}))
                }
            }
            _ => (404, json!({"statusCode": 404, "message": "Not Found"})),
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

// ----------------------------------------------------------------------------- Kibana sync

fn imports(kibana: &KibanaStub) -> usize {
    kibana
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/_import"))
        .count()
}

#[tokio::test]
async fn dashboards_are_imported_once_and_again_only_when_their_version_changes() {
    let kibana = KibanaStub::start();
    let http = reqwest::Client::new();
    let files = kibana_files();
    let first = sync_kibana(&http, &kibana.target(), &files, false)
        .await
        .unwrap();
    assert!(
        first
            .iter()
            .all(|(_, s)| matches!(s, FileSync::Created { objects } if *objects > 0)),
        "{first:?}"
    );
    assert_eq!(imports(&kibana), files.len());

    // A user edits the dashboard in Kibana: a second setup leaves it alone.
    kibana.edit("dashboard", "iaso-service-availability", |d| {
        d["attributes"]["title"] = json!("IASO — my edited availability");
    });
    let second = sync_kibana(&http, &kibana.target(), &files, false)
        .await
        .unwrap();
    assert!(
        second.iter().all(|(_, s)| *s == FileSync::Unchanged),
        "{second:?}"
    );
    assert_eq!(imports(&kibana), files.len(), "nothing imported again");
    let edited = kibana
        .saved("dashboard", "iaso-service-availability")
        .unwrap();
    assert_eq!(
        edited["attributes"]["title"],
        "IASO — my edited availability"
    );

    // Kibana holds an older version of one file (the prober was upgraded): that file only.
    kibana.edit("dashboard", "iaso-backup-restore-jobs", |d| {
        let text = d["attributes"]["description"].as_str().unwrap();
        let old =
            text[..text.rfind('[').unwrap()].to_owned() + "[iaso-probe dashboards 000000000000]";
        d["attributes"]["description"] = json!(old);
    });
    let third = sync_kibana(&http, &kibana.target(), &files, false)
        .await
        .unwrap();
    let updated: Vec<_> = third
        .iter()
        .filter(|(_, s)| !matches!(s, FileSync::Unchanged))
        .collect();
    assert_eq!(updated.len(), 1, "{third:?}");
    assert_eq!(updated[0].0, "iaso-backup-restore-jobs.ndjson");
    assert!(matches!(
        &updated[0].1,
        FileSync::Updated { from: Some(v), .. } if v == "000000000000"
    ));
    assert!(updated[0]
        .1
        .describe(&updated[0].0)
        .contains("updated from version 000000000000"));
    assert_eq!(imports(&kibana), files.len() + 1);

    // Moved data views (another title) are imported again.
    kibana.edit("index-pattern", "iaso-probe-checks", |d| {
        d["attributes"]["title"] = json!("iaso-checks-*");
    });
    let fourth = sync_kibana(&http, &kibana.target(), &files, false)
        .await
        .unwrap();
    assert!(
        matches!(fourth[0].1, FileSync::Updated { from: None, .. }),
        "{fourth:?}"
    );

    let forced = sync_kibana(&http, &kibana.target(), &files, true)
        .await
        .unwrap();
    assert!(forced
        .iter()
        .all(|(_, s)| matches!(s, FileSync::Forced { .. })));
    assert_eq!(
        kibana
            .saved("dashboard", "iaso-service-availability")
            .unwrap()["attributes"]["title"],
        "IASO — service availability",
        "forced: our version replaces the edit"
    );
}

#[tokio::test]
async fn rules_are_created_then_updated_in_place_with_fixed_ids() {
    let kibana = KibanaStub::start();
    let http = reqwest::Client::new();
    let mut alerts = iaso_probe::config::AlertsConfig::default();
    let rules = alert_rules(&alerts);
    let done = install_rules(&http, &kibana.target(), &rules)
        .await
        .unwrap();
    assert_eq!(
        done,
        [
            ("iaso-monitor-down", RuleSync::Created),
            ("iaso-job-failure-rate", RuleSync::Created)
        ]
    );
    let stored = kibana.rules();
    assert_eq!(stored["iaso-monitor-down"]["rule_type_id"], ".es-query");
    assert_eq!(stored["iaso-monitor-down"]["actions"], json!([]));
    let down_query: Value = serde_json::from_str(
        stored["iaso-monitor-down"]["params"]["esQuery"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        down_query.pointer("/query/bool/filter/1/range/state.checks/gte"),
        Some(&json!(3))
    );

    // The operator attaches a connector in Kibana.
    let action = json!({"group": "query matched", "id": "my-slack", "params": {"message": "{{context.message}}"}});
    kibana
        .state
        .lock()
        .unwrap()
        .rules
        .get_mut("iaso-monitor-down")
        .unwrap()["actions"] = json!([action]);
    // A second setup with other thresholds: 409 on POST, then PUT, same ids, no duplicates.
    alerts.down_consecutive_checks = 5;
    alerts.job_failure_rate_percent = 50.0;
    let rules = alert_rules(&alerts);
    let done = install_rules(&http, &kibana.target(), &rules)
        .await
        .unwrap();
    assert!(
        done.iter().all(|(_, s)| *s == RuleSync::Updated),
        "{done:?}"
    );
    let stored = kibana.rules();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored["iaso-monitor-down"]["actions"],
        json!([action]),
        "the operator's connector is kept"
    );
    assert!(stored["iaso-monitor-down"]["name"]
        .as_str()
        .unwrap()
        .contains("5 consecutive"));
    assert!(
        stored["iaso-job-failure-rate"]["params"]["esqlQuery"]["esql"]
            .as_str()
            .unwrap()
            .ends_with("WHERE failure_rate > 50.0")
    );
    let calls: Vec<String> = kibana
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        calls,
        [
            "POST /api/alerting/rule/iaso-monitor-down",
            "POST /api/alerting/rule/iaso-job-failure-rate",
            "POST /api/alerting/rule/iaso-monitor-down",
            "GET /api/alerting/rule/iaso-monitor-down",
            "PUT /api/alerting/rule/iaso-monitor-down",
            "POST /api/alerting/rule/iaso-job-failure-rate",
            "GET /api/alerting/rule/iaso-job-failure-rate",
            "PUT /api/alerting/rule/iaso-job-failure-rate",
        ]
    );
    assert!(kibana
        .requests()
        .iter()
        .all(|r| (r.method == "GET" || r.header("kbn-xsrf").is_some())
            && r.header("authorization").is_some()));
}

#[tokio::test]
async fn a_refused_rule_is_an_error_naming_kibana_message() {
    let kibana = KibanaStub::start();
    let mut target = kibana.target();
    target.space = Some("ops".into());
    let err = install_rules(
        &reqwest::Client::new(),
        &target,
        &alert_rules(&Default::default()),
    )
    .await
    .unwrap_err()
    .to_string();
    // The stub serves no space: Kibana's 404 is reported, with the path.
    assert!(
        err.starts_with("kibana answered 404 to POST /s/ops/api/alerting/rule/iaso-monitor-down"),
        "{err}"
    );
}
