//! Outbound TLS against real in-process TLS servers (certificates generated per test with
//! rcgen): private CAs, mutual TLS and insecure mode, for the portal, Elasticsearch and
//! Kibana clients, and `check-config` naming unusable TLS files.

mod support;

use iaso_probe::api::ApiClient;
use iaso_probe::config::{ElasticsearchConfig, EnvironmentConfig, KibanaConfig};
use iaso_probe::limiter::EnvLimits;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use support::net::{Pki, Response, TestServer};

const ALIVE: &str = r#"{"statusCode":200}"#;

/// An environment read from TOML as a user would write it (`extra` goes at the top level).
fn env_cfg(extra: &str) -> Arc<EnvironmentConfig> {
    let text = format!(
        "base_url = \"https://127.0.0.1\"\n{extra}\n[credentials]\nusername = \"u\"\npassword = \"p\"\n"
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

fn alive_server(pki: &Pki, client_ca: Option<&Pki>) -> TestServer {
    TestServer::https(pki, client_ca.map(|p| &p.ca_der), |_| Response::json(ALIVE))
}

fn toml_path(p: &std::path::Path) -> String {
    format!("{:?}", p.display().to_string())
}

fn tls_table(lines: &[String]) -> String {
    format!("[tls]\n{}\n", lines.join("\n"))
}

#[tokio::test]
async fn a_portal_behind_a_private_ca_is_trusted_with_ca_files() {
    let pki = Pki::new("corp");
    let server = alive_server(&pki, None);
    let cfg = env_cfg(&tls_table(&[format!(
        "ca_files = [{}]",
        toml_path(&pki.ca_file)
    )]));
    let call = client(&server.url("https"), cfg).liveness().await;
    assert!(call.outcome.is_ok(), "{:?}", call.outcome);
    assert_eq!(call.exchange.status, Some(200));
}

#[tokio::test]
async fn a_portal_behind_a_private_ca_is_refused_without_ca_files_as_tls() {
    let pki = Pki::new("corp");
    let server = alive_server(&pki, None);
    let call = client(&server.url("https"), env_cfg("")).liveness().await;
    let e = call.outcome.unwrap_err();
    assert_eq!(e.error_type().as_str(), "tls", "{e}");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn mutual_tls_is_satisfied_with_the_client_certificate() {
    let pki = Pki::new("corp");
    let server = alive_server(&pki, Some(&pki));
    let cfg = env_cfg(&tls_table(&[
        format!("ca_files = [{}]", toml_path(&pki.ca_file)),
        format!("client_cert_file = {}", toml_path(&pki.client.cert_file)),
        format!("client_key_file = {}", toml_path(&pki.client.key_file)),
    ]));
    let call = client(&server.url("https"), cfg).liveness().await;
    assert!(call.outcome.is_ok(), "{:?}", call.outcome);
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn mutual_tls_without_a_client_certificate_is_refused_as_tls() {
    let pki = Pki::new("corp");
    let server = alive_server(&pki, Some(&pki));
    let cfg = env_cfg(&tls_table(&[format!(
        "ca_files = [{}]",
        toml_path(&pki.ca_file)
    )]));
    let e = client(&server.url("https"), cfg)
        .liveness()
        .await
        .outcome
        .unwrap_err();
    assert_eq!(e.error_type().as_str(), "tls", "{e}");
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused_as_tls() {
    let pki = Pki::new("corp");
    let stranger = Pki::new("stranger");
    let server = alive_server(&pki, Some(&pki));
    let cfg = env_cfg(&tls_table(&[
        format!("ca_files = [{}]", toml_path(&pki.ca_file)),
        format!(
            "client_cert_file = {}",
            toml_path(&stranger.client.cert_file)
        ),
        format!("client_key_file = {}", toml_path(&stranger.client.key_file)),
    ]));
    let e = client(&server.url("https"), cfg)
        .liveness()
        .await
        .outcome
        .unwrap_err();
    assert_eq!(e.error_type().as_str(), "tls", "{e}");
    assert_eq!(server.request_count(), 0);
    assert!(server.handshakes.lock().unwrap().1 >= 1);
}

#[tokio::test]
async fn insecure_skip_verify_accepts_an_unknown_issuer() {
    let pki = Pki::new("corp");
    let server = alive_server(&pki, None);
    let cfg = env_cfg(&tls_table(&["insecure_skip_verify = true".into()]));
    let call = client(&server.url("https"), cfg).liveness().await;
    assert!(call.outcome.is_ok(), "{:?}", call.outcome);
}

#[tokio::test]
async fn min_version_1_3_refuses_a_server_that_speaks_only_tls_1_2() {
    let pki = Pki::new("corp");
    let server = TestServer::https_with_versions(&pki, None, &[&rustls::version::TLS12], |_| {
        Response::json(ALIVE)
    });
    let ca = format!("ca_files = [{}]", toml_path(&pki.ca_file));
    let old_ok = client(
        &server.url("https"),
        env_cfg(&tls_table(std::slice::from_ref(&ca))),
    )
    .liveness()
    .await;
    assert!(old_ok.outcome.is_ok(), "{:?}", old_ok.outcome);
    let strict = env_cfg(&tls_table(&[ca, "min_version = \"1.3\"".into()]));
    let e = client(&server.url("https"), strict)
        .liveness()
        .await
        .outcome
        .unwrap_err();
    assert_eq!(e.error_type().as_str(), "tls", "{e}");
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn a_ca_given_through_ssl_cert_file_is_trusted_with_the_system_store() {
    // rustls-native-certs reads SSL_CERT_FILE in place of the system bundle. This binary's
    // other tests do not depend on the variable (they pin ca_files or expect a refusal from a
    // CA that is in no store).
    let pki = Pki::new("corp");
    let server = alive_server(&pki, None);
    std::env::set_var("SSL_CERT_FILE", &pki.ca_file);
    let call = client(&server.url("https"), env_cfg("")).liveness().await;
    std::env::remove_var("SSL_CERT_FILE");
    assert!(call.outcome.is_ok(), "{:?}", call.outcome);
}

fn es_cfg(url: &str, tls: &str) -> ElasticsearchConfig {
    let text =
        format!("urls = [\"{url}\"]\nusername = \"elastic\"\npassword = \"es-s3cret\"\n{tls}");
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

async fn es_ping(cfg: &ElasticsearchConfig) -> Result<u16, String> {
    let (client, _) = iaso_probe::sink::es_client::build(cfg)?.expect("configured");
    client
        .ping()
        .send()
        .await
        .map(|r| r.status_code().as_u16())
        .map_err(|e| format!("{e:?}"))
}

fn es_server(pki: &Pki, client_ca: Option<&Pki>) -> TestServer {
    TestServer::https(pki, client_ca.map(|p| &p.ca_der), |_| Response {
        status: 200,
        headers: vec![("X-elastic-product".into(), "Elasticsearch".into())],
        body: String::new(),
    })
}

#[tokio::test]
async fn elasticsearch_trusts_a_private_ca_with_ca_files_and_refuses_it_without() {
    let pki = Pki::new("es");
    let server = es_server(&pki, None);
    let url = server.url("https");
    let with = es_cfg(
        &url,
        &tls_table(&[format!("ca_files = [{}]", toml_path(&pki.ca_file))]),
    );
    assert_eq!(es_ping(&with).await, Ok(200));
    let without = es_cfg(&url, "");
    let e = es_ping(&without).await.unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
}

#[tokio::test]
async fn elasticsearch_ca_cert_file_still_works() {
    let pki = Pki::new("es");
    let server = es_server(&pki, None);
    let cfg = es_cfg(
        &server.url("https"),
        &format!("ca_cert_file = {}", toml_path(&pki.ca_file)),
    );
    assert_eq!(es_ping(&cfg).await, Ok(200));
}

#[tokio::test]
async fn elasticsearch_insecure_skip_verify_accepts_an_unknown_issuer() {
    let pki = Pki::new("es");
    let server = es_server(&pki, None);
    let cfg = es_cfg(
        &server.url("https"),
        &tls_table(&["insecure_skip_verify = true".into()]),
    );
    assert_eq!(es_ping(&cfg).await, Ok(200));
}

#[tokio::test]
async fn elasticsearch_sends_the_client_certificate_and_the_basic_login_together() {
    let pki = Pki::new("es");
    let server = es_server(&pki, Some(&pki));
    let cfg = es_cfg(
        &server.url("https"),
        &tls_table(&[
            format!("ca_files = [{}]", toml_path(&pki.ca_file)),
            format!("client_cert_file = {}", toml_path(&pki.client.cert_file)),
            format!("client_key_file = {}", toml_path(&pki.client.key_file)),
        ]),
    );
    assert_eq!(es_ping(&cfg).await, Ok(200));
    let head = server.requests.lock().unwrap()[0].head.clone();
    // base64("elastic:es-s3cret")
    assert!(
        head.contains("authorization: Basic ZWxhc3RpYzplcy1zM2NyZXQ="),
        "{head}"
    );
}

#[tokio::test]
async fn elasticsearch_without_the_required_client_certificate_is_refused() {
    let pki = Pki::new("es");
    let server = es_server(&pki, Some(&pki));
    let cfg = es_cfg(
        &server.url("https"),
        &tls_table(&[format!("ca_files = [{}]", toml_path(&pki.ca_file))]),
    );
    assert!(es_ping(&cfg).await.is_err());
    assert_eq!(server.request_count(), 0);
}

fn kibana_cfg(tls: &str) -> KibanaConfig {
    let text = format!("url = \"https://127.0.0.1:5601\"\n{tls}");
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[tokio::test]
async fn kibana_trusts_a_private_ca_and_presents_a_client_certificate() {
    let pki = Pki::new("kibana");
    let server = TestServer::https(&pki, Some(&pki.ca_der), |_| Response::json("{}"));
    let status = format!("{}/api/status", server.url("https"));
    let with = iaso_probe::setup::kibana_http_client(&kibana_cfg(&tls_table(&[
        format!("ca_files = [{}]", toml_path(&pki.ca_file)),
        format!("client_cert_file = {}", toml_path(&pki.client.cert_file)),
        format!("client_key_file = {}", toml_path(&pki.client.key_file)),
    ])))
    .unwrap();
    assert_eq!(with.get(&status).send().await.unwrap().status(), 200);
    let without = iaso_probe::setup::kibana_http_client(&kibana_cfg("")).unwrap();
    assert!(without.get(&status).send().await.is_err());
    assert_eq!(server.request_count(), 1);
}

fn check_config(pki: &Pki, tls_lines: &[String]) -> (i32, String) {
    let cfg = pki.path("probe.toml");
    std::fs::write(
        &cfg,
        format!(
            "[environments.lab]\nbase_url = \"https://iaso.example\"\n[environments.lab.credentials]\nusername = \"u\"\npassword = \"p\"\n[environments.lab.tls]\n{}\n",
            tls_lines.join("\n")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_iaso-probe"))
        .current_dir(pki.path(""))
        .args(["--config", cfg.to_str().unwrap(), "check-config"])
        .env_remove("ELASTICSEARCH_URL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn check_config_names_a_ca_file_that_is_not_pem_and_exits_2() {
    let pki = Pki::new("corp");
    let bad = pki.path("not-a-ca.pem");
    std::fs::write(&bad, "just text").unwrap();
    let (code, out) = check_config(&pki, &[format!("ca_files = [{}]", toml_path(&bad))]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("environments.lab.tls.ca_files[0]"), "{out}");
    assert!(
        out.contains("not-a-ca.pem") && out.contains("not PEM"),
        "{out}"
    );
}

#[test]
fn check_config_names_a_key_that_does_not_match_the_certificate_and_exits_2() {
    let pki = Pki::new("corp");
    let other = Pki::new("other");
    let (code, out) = check_config(
        &pki,
        &[
            format!("client_cert_file = {}", toml_path(&pki.client.cert_file)),
            format!("client_key_file = {}", toml_path(&other.client.key_file)),
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("environments.lab.tls.client_key_file"),
        "{out}"
    );
    assert!(out.contains("does not match the certificate"), "{out}");
}

#[test]
fn check_config_accepts_usable_tls_files() {
    let pki = Pki::new("corp");
    let (code, out) = check_config(
        &pki,
        &[
            format!("ca_files = [{}]", toml_path(&pki.ca_file)),
            format!("client_cert_file = {}", toml_path(&pki.client.cert_file)),
            format!("client_key_file = {}", toml_path(&pki.client.key_file)),
            "min_version = \"1.3\"".into(),
        ],
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn insecure_skip_verify_is_warned_at_every_start() {
    let d = tempfile::tempdir().unwrap();
    let run = || {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_iaso-probe"))
            .current_dir(d.path())
            .args(["run", "--once", "--env", "lab"])
            .env_remove("ELASTICSEARCH_URL")
            .env("RUST_LOG", "info")
            .env(
                "IASO_PROBE_ENVIRONMENTS__LAB__TLS__INSECURE_SKIP_VERIFY",
                "true",
            )
            .env(
                "IASO_PROBE_ENVIRONMENTS__LAB__JOBS__BACKUPS_ENABLED",
                "false",
            )
            .env(
                "IASO_PROBE_ENVIRONMENTS__LAB__JOBS__RESTORES_ENABLED",
                "false",
            )
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout)
    };
    for _ in 0..2 {
        let out = run();
        let warn = out
            .lines()
            .find(|l| l.contains("insecure_skip_verify is on"))
            .unwrap_or_else(|| panic!("no warning:\n{out}"));
        assert!(warn.contains("WARN"), "{warn}");
        assert!(
            warn.contains("environments.lab.tls.insecure_skip_verify"),
            "{warn}"
        );
        assert!(
            out.lines()
                .any(|l| l.contains("outbound connection settings")
                    && l.contains("environments.lab")
                    && l.contains("proxy=none")),
            "{out}"
        );
    }
}

/// A status poll (the lean client unless `lean` is false) to `server`, as status and
/// outcome text.
async fn status_poll(
    server: &TestServer,
    lean: bool,
    tls: &str,
) -> (Option<u16>, Result<String, String>) {
    let cfg = env_cfg(&format!("lean_status_polls = {lean}\n{tls}"));
    let token = iaso_probe::config::Secret::new("tok-1");
    let call = client(&server.url("https"), cfg)
        .job_status("J1", "web-01", &token)
        .await;
    let outcome = call
        .outcome
        .map(|s| format!("{s:?}"))
        .map_err(|e| format!("{}: {e}", e.error_type().as_str()));
    (call.exchange.status, outcome)
}

#[tokio::test]
async fn status_polls_over_mutual_tls_read_the_same_through_the_lean_client_and_reqwest() {
    let pki = Pki::new("corp");
    let server = TestServer::https(&pki, Some(&pki.ca_der), |_| {
        Response::json(r#"{"status":"Running"}"#)
    });
    let trusted = tls_table(&[
        format!("ca_files = [{}]", toml_path(&pki.ca_file)),
        format!("client_cert_file = {}", toml_path(&pki.client.cert_file)),
        format!("client_key_file = {}", toml_path(&pki.client.key_file)),
    ]);
    let lean = status_poll(&server, true, &trusted).await;
    assert_eq!(lean.0, Some(200), "{lean:?}");
    assert!(lean.1.is_ok(), "{lean:?}");
    assert_eq!(lean, status_poll(&server, false, &trusted).await);
    assert_eq!(server.request_count(), 2);
    // Without the CA: refused as `tls`, nothing sent, by both clients alike.
    let lean = status_poll(&server, true, "").await;
    assert!(
        lean.1.as_ref().unwrap_err().starts_with("tls: "),
        "{lean:?}"
    );
    assert!(
        lean.1.as_ref().unwrap_err().contains("UnknownIssuer"),
        "{lean:?}"
    );
    assert_eq!(lean, status_poll(&server, false, "").await);
    // With the CA but no client certificate: the server refuses the handshake.
    let ca_only = tls_table(&[format!("ca_files = [{}]", toml_path(&pki.ca_file))]);
    let lean = status_poll(&server, true, &ca_only).await;
    assert!(lean.1.is_err(), "{lean:?}");
    assert_eq!(
        lean.1.as_ref().unwrap_err().split(':').next(),
        status_poll(&server, false, &ca_only)
            .await
            .1
            .unwrap_err()
            .split(':')
            .next(),
        "same error type"
    );
    assert_eq!(server.request_count(), 2);
}
