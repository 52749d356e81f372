//! Redirects from the portal: not followed by default (the 3xx is a `redirect` failure showing
//! its Location); with `max_redirects`, followed to the same origin only. A second loopback
//! server records every byte it receives: no credential may ever reach it.

mod support;

use iaso_probe::api::ApiClient;
use iaso_probe::config::{EnvironmentConfig, Secret};
use iaso_probe::limiter::EnvLimits;
use iaso_probe::model::{BackupLevel, JobKind};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use support::net::{Response, TestServer};

const PASSWORD: &str = "pa55-Word-never-elsewhere";
const TOKEN: &str = "tok-3f9a-never-elsewhere";

fn env_cfg(extra: &str) -> Arc<EnvironmentConfig> {
    let text = format!(
        "base_url = \"http://127.0.0.1\"\n{extra}\n[credentials]\nusername = \"probe\"\npassword = \"p\"\n"
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

fn redirect(status: u16, location: String) -> Response {
    Response {
        status,
        headers: vec![("Location".into(), location)],
        body: String::new(),
    }
}

#[tokio::test]
async fn no_byte_of_a_credential_reaches_another_server_whatever_the_redirect() {
    credentials_stay_with_the_portal("").await;
}

#[tokio::test]
async fn no_byte_of_a_credential_reaches_another_server_even_with_max_redirects() {
    credentials_stay_with_the_portal("max_redirects = 5").await;
}

/// Login (password in the body) and a launch (token in a header) against a portal that
/// redirects everything to another loopback server, for each redirect status.
async fn credentials_stay_with_the_portal(extra: &'static str) {
    // Answers like the portal would, to make following the redirect look like a success.
    let elsewhere = TestServer::http(|_| {
        Response::json(r#"{"token":"stolen","jobId":"J1","status":"Queued","statusCode":200}"#)
    });
    let elsewhere_url = elsewhere.url("http");
    let mut outcomes = Vec::new();
    for status in [301, 302, 303, 307, 308] {
        let target = elsewhere_url.clone();
        let portal =
            TestServer::http(move |req| redirect(status, format!("{target}{}", req.target)));
        {
            let c = client(&portal.url("http"), env_cfg(extra));
            let login = c.login("probe", &Secret::new(PASSWORD)).await;
            let launch = c
                .launch(
                    JobKind::Backup,
                    "web-01",
                    Some(BackupLevel::Full),
                    None,
                    &Secret::new(TOKEN),
                )
                .await;
            outcomes.push((status, extra, login.map_unit(), launch.map_unit()));
        }
        assert_eq!(portal.request_count(), 2, "HTTP {status}");
    }
    let seen = elsewhere.received_text();
    assert!(
        !seen.contains(PASSWORD),
        "the password reached another server:\n{seen}"
    );
    assert!(
        !seen.contains(TOKEN),
        "the token reached another server:\n{seen}"
    );
    assert_eq!(seen, "", "nothing at all is sent to the other origin");
    for (status, extra, login, launch) in outcomes {
        for call in [login, launch] {
            let e = call.outcome.unwrap_err();
            assert_eq!(e.error_type().as_str(), "redirect", "{status} {extra}: {e}");
            assert!(
                e.to_string()
                    .contains(&format!("HTTP {status} to {elsewhere_url}/api/v1/")),
                "{status} {extra}: {e}"
            );
            assert_eq!(call.exchange.status, Some(status));
        }
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_by_default_and_shows_its_location() {
    let portal = TestServer::http(|req| match req.target.as_str() {
        "/api/v1/alive" => redirect(302, "/api/v1/alive-here".into()),
        _ => Response::json(r#"{"statusCode":200}"#),
    });
    let call = client(&portal.url("http"), env_cfg("")).liveness().await;
    let e = call.outcome.unwrap_err();
    assert_eq!(e.error_type().as_str(), "redirect", "{e}");
    assert_eq!(
        e.to_string(),
        "redirect not followed: HTTP 302 to /api/v1/alive-here"
    );
    assert_eq!(portal.request_count(), 1);
}

#[tokio::test]
async fn same_origin_redirects_are_followed_up_to_max_redirects() {
    let portal = TestServer::http(|req| match req.target.as_str() {
        "/api/v1/alive" => redirect(307, "/api/v1/alive-here".into()),
        "/api/v1/auth/token" => redirect(308, "/api/v1/auth/token-here".into()),
        "/api/v1/auth/token-here" => Response::json(r#"{"token":"t-1"}"#),
        _ => Response::json(r#"{"statusCode":200}"#),
    });
    let c = client(&portal.url("http"), env_cfg("max_redirects = 1"));
    let call = c.liveness().await;
    assert!(call.outcome.is_ok(), "{:?}", call.outcome);
    // A 308 keeps the method and the body on the same origin.
    let login = c.login("probe", &Secret::new(PASSWORD)).await;
    assert!(login.outcome.is_ok(), "{:?}", login.map_unit().outcome);
    let reqs = portal.requests.lock().unwrap().clone();
    let last = reqs.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.target.as_str()),
        ("POST", "/api/v1/auth/token-here")
    );
    assert!(String::from_utf8_lossy(&last.body).contains(PASSWORD));
}

#[tokio::test]
async fn a_redirect_loop_stops_at_max_redirects_as_a_redirect_failure() {
    let portal = TestServer::http(|_| redirect(302, "/api/v1/alive".into()));
    let e = client(&portal.url("http"), env_cfg("max_redirects = 3"))
        .liveness()
        .await
        .outcome
        .unwrap_err();
    assert_eq!(e.error_type().as_str(), "redirect", "{e}");
    assert!(e.to_string().contains("max_redirects = 3"), "{e}");
    assert_eq!(portal.request_count(), 4);
}

// ---- Kibana (`iaso-probe setup`): no redirect to another origin is followed -------------

const KIBANA_PASSWORD: &str = "kib-Pa55-never-elsewhere";

/// `wait_kibana_available` (GET, every redirect status) and `import_kibana` (POST: 302 and
/// 303 turn it into a GET that reqwest would follow) against a Kibana that redirects
/// everything to a second loopback server: that server never receives a request, so neither
/// the password nor anything else reaches it, and setup names the 3xx it got.
#[tokio::test]
async fn the_kibana_client_follows_no_redirect_to_another_origin() {
    use base64::Engine as _;
    use iaso_probe::setup::KibanaTarget;
    use iaso_probe::setup::{import_kibana, kibana_http_client, wait_kibana_available};
    use std::time::Duration;

    let elsewhere = TestServer::http(|_| {
        Response::json(
            r#"{"status":{"overall":{"level":"available"}},"success":true,"successCount":1}"#,
        )
    });
    let elsewhere_url = elsewhere.url("http");
    let http = kibana_http_client(&Default::default()).unwrap();
    for status in [301, 302, 303, 307, 308] {
        let target_url = elsewhere_url.clone();
        let kibana =
            TestServer::http(move |req| redirect(status, format!("{target_url}{}", req.target)));
        let target = KibanaTarget {
            url: kibana.url("http").parse().unwrap(),
            username: Some("kibana-user".into()),
            password: Some(KIBANA_PASSWORD.into()),
            api_key: None,
            space: None,
        };
        // One attempt: the interval is longer than the timeout.
        let e = wait_kibana_available(
            &http,
            &target,
            Duration::from_secs(5),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string().contains(&status.to_string()),
            "HTTP {status}: {e}"
        );
        let e = import_kibana(&http, &target, &[("x.ndjson", b"{}\n".as_slice())])
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains(&status.to_string()),
            "HTTP {status}: {e}"
        );
        assert_eq!(kibana.request_count(), 2, "HTTP {status}");
    }
    let seen = elsewhere.received_text();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("kibana-user:{KIBANA_PASSWORD}"));
    assert!(
        !seen.contains(KIBANA_PASSWORD) && !seen.contains(&basic),
        "the Kibana password reached another server:\n{seen}"
    );
    assert_eq!(seen, "", "nothing at all is sent to the other origin");
}

#[tokio::test]
async fn the_kibana_client_follows_same_origin_redirects() {
    use iaso_probe::setup::{kibana_http_client, wait_kibana_available, KibanaTarget};
    use std::time::Duration;

    let kibana = TestServer::http(|req| match req.target.as_str() {
        "/api/status" => redirect(302, "/kibana/api/status".into()),
        _ => Response::json(r#"{"status":{"overall":{"level":"available"}}}"#),
    });
    let target = KibanaTarget {
        url: kibana.url("http").parse().unwrap(),
        username: Some("kibana-user".into()),
        password: Some(KIBANA_PASSWORD.into()),
        api_key: None,
        space: None,
    };
    let http = kibana_http_client(&Default::default()).unwrap();
    wait_kibana_available(
        &http,
        &target,
        Duration::from_secs(5),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(kibana.request_count(), 2);
}
