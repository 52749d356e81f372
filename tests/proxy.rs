//! Outbound proxies, with a tiny recording proxy on loopback (it answers plain-HTTP proxy
//! requests itself, so the targets need not exist): environment variables are followed only
//! with `proxy_from_env`, loopback is never proxied, and `proxy_url` is used by the portal,
//! Elasticsearch and Kibana clients.

mod support;

use iaso_probe::api::ApiClient;
use iaso_probe::config::{ElasticsearchConfig, EnvironmentConfig, KibanaConfig};
use iaso_probe::limiter::EnvLimits;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use support::net::{Response, TestServer};

const ALIVE: &str = r#"{"statusCode":200}"#;

fn env_cfg(base_url: &str, extra: &str) -> Arc<EnvironmentConfig> {
    let text = format!(
        "base_url = \"{base_url}\"\n{extra}\n[credentials]\nusername = \"probe\"\npassword = \"p\"\n"
    );
    Arc::new(toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}")))
}

fn client(base: &str, cfg: Arc<EnvironmentConfig>) -> ApiClient {
    let n = |v| NonZeroU32::new(v).unwrap();
    let limits = Arc::new(EnvLimits::new(
        "lab",
        n(100),
        n(10),
        NonZeroUsize::new(8).unwrap(),
    ));
    ApiClient::for_this_thread(base, cfg, limits)
}

fn proxy() -> TestServer {
    TestServer::http(|_| Response {
        status: 200,
        headers: vec![("X-elastic-product".into(), "Elasticsearch".into())],
        body: ALIVE.into(),
    })
}

fn targets(p: &TestServer) -> Vec<String> {
    p.requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.target.clone())
        .collect()
}

/// The only test of this binary that sets proxy variables (the others pin `proxy_url`).
#[tokio::test]
async fn proxy_variables_are_followed_only_with_proxy_from_env_and_never_for_loopback() {
    let recorder = proxy();
    let portal = TestServer::http(|_| Response::json(ALIVE));
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY"] {
        std::env::set_var(var, recorder.url("http"));
    }
    // Off by default: the variables are ignored, for loopback and for any other host.
    let direct = client(&portal.url("http"), env_cfg(&portal.url("http"), ""))
        .liveness()
        .await;
    let remote_default = client(
        "http://portal.invalid",
        env_cfg("http://portal.invalid", "connect_timeout_ms = 2000"),
    )
    .liveness()
    .await;
    assert_eq!(
        targets(&recorder),
        Vec::<String>::new(),
        "HTTP_PROXY was followed silently"
    );
    assert!(direct.outcome.is_ok(), "{:?}", direct.outcome);
    assert!(remote_default.outcome.is_err());
    assert_eq!(portal.request_count(), 1);

    // With proxy_from_env: used for other hosts, still not for loopback.
    let on = "proxy_from_env = true";
    let remote = client(
        "http://portal.invalid",
        env_cfg("http://portal.invalid", on),
    )
    .liveness()
    .await;
    assert!(remote.outcome.is_ok(), "{:?}", remote.outcome);
    let local = client(&portal.url("http"), env_cfg(&portal.url("http"), on))
        .liveness()
        .await;
    assert!(local.outcome.is_ok(), "{:?}", local.outcome);
    assert_eq!(
        targets(&recorder),
        vec!["http://portal.invalid/api/v1/alive"]
    );
    assert_eq!(portal.request_count(), 2);
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY"] {
        std::env::remove_var(var);
    }
}

#[tokio::test]
async fn the_portal_goes_through_proxy_url_with_the_proxy_login() {
    let recorder = proxy();
    let addr = recorder.addr;
    let cfg = env_cfg(
        "http://portal.invalid",
        &format!("proxy_url = \"http://probe-proxy:pr0xy-pw@{addr}\""),
    );
    let call = client("http://portal.invalid", cfg).liveness().await;
    assert!(call.outcome.is_ok(), "{:?}", call.outcome);
    let head = recorder.requests.lock().unwrap()[0].head.clone();
    assert!(
        head.starts_with("GET http://portal.invalid/api/v1/alive "),
        "{head}"
    );
    // base64("probe-proxy:pr0xy-pw")
    assert!(
        head.to_ascii_lowercase()
            .contains("proxy-authorization: basic chjvymutchjvehk6chiwehktchc="),
        "{head}"
    );
}

#[tokio::test]
async fn elasticsearch_goes_through_its_proxy_url() {
    let recorder = proxy();
    let text = format!(
        "urls = [\"http://es.invalid:9200\"]\nproxy_url = \"{}\"\n",
        recorder.url("http")
    );
    let cfg: ElasticsearchConfig = toml::from_str(&text).unwrap();
    let (es, _) = iaso_probe::sink::es_client::build(&cfg).unwrap().unwrap();
    let status = es.ping().send().await.unwrap().status_code();
    assert_eq!(status.as_u16(), 200);
    assert_eq!(targets(&recorder), vec!["http://es.invalid:9200/"]);
}

#[tokio::test]
async fn elasticsearch_nodes_in_no_proxy_are_reached_directly() {
    let recorder = proxy();
    let es_node = proxy();
    let text = format!(
        "urls = [\"{}\"]\nproxy_url = \"{}\"\nno_proxy = [\"es.invalid\"]\n",
        es_node.url("http"),
        recorder.url("http")
    );
    let cfg: ElasticsearchConfig = toml::from_str(&text).unwrap();
    let (es, _) = iaso_probe::sink::es_client::build(&cfg).unwrap().unwrap();
    assert_eq!(es.ping().send().await.unwrap().status_code().as_u16(), 200);
    assert_eq!(targets(&recorder), Vec::<String>::new());
    assert_eq!(es_node.request_count(), 1);
}

#[tokio::test]
async fn kibana_goes_through_its_proxy_url() {
    let recorder = proxy();
    let text = format!(
        "url = \"http://kibana.invalid:5601\"\nproxy_url = \"{}\"\n",
        recorder.url("http")
    );
    let cfg: KibanaConfig = toml::from_str(&text).unwrap();
    let http = iaso_probe::setup::kibana_http_client(&cfg).unwrap();
    let r = http
        .get("http://kibana.invalid:5601/api/status")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        targets(&recorder),
        vec!["http://kibana.invalid:5601/api/status"]
    );
}
