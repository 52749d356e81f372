//! Portals that answer badly: numbers out of range, job ids that do not round-trip, short
//! token lifetimes, broken connections, huge health lists, and panics. Each failure gets
//! its own `error.type`; no answer panics the prober, and a panic that happens anyway is a
//! result and exit code 2. A raw loopback portal (`Portal`) serves canned bytes on
//! 127.0.0.1:0; the simulator serves the whole API where counting logins matters.

mod harness;

use harness::*;
use iaso_probe::api::{ApiClient, ApiError, TokenManager};
use iaso_probe::config::{EnvironmentConfig, Secret};
use iaso_probe::limiter::EnvLimits;
use iaso_probe::model::{Action, ErrorType, JobKind, Outcome, ProbeResult};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the raw portal answers one request.
enum Reply {
    /// These bytes, then the connection is closed.
    Raw(Vec<u8>),
    /// A JSON body with this status.
    Json(u16, String),
    /// The head and part of the body, then an abortive close (RST).
    ResetMidBody,
    /// The head announces 100 bytes, 10 come, then a clean close (early EOF).
    EofMidBody,
    /// Nothing for this long.
    Hang(Duration),
}

/// A minimal HTTP/1.1 portal on 127.0.0.1:0; one thread per connection, one request each.
struct Portal {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicU64>,
}

impl Portal {
    fn start(respond: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let respond = Arc::new(respond);
        let requests = Arc::new(AtomicU64::new(0));
        let count = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let respond = respond.clone();
                let count = count.clone();
                std::thread::spawn(move || serve(conn, &*respond, &count));
            }
        });
        Portal { addr, requests }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(mut conn: TcpStream, respond: &dyn Fn(&str, &str) -> Reply, count: &AtomicU64) {
    let mut buf = Vec::new();
    let Some((head, _body)) = read_request(&mut conn, &mut buf) else {
        return;
    };
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let (method, path) = (
        first.next().unwrap_or("").to_owned(),
        first.next().unwrap_or("").to_owned(),
    );
    count.fetch_add(1, Ordering::SeqCst);
    let reply = respond(&method, &path);
    match reply {
        Reply::Raw(bytes) => {
            let _ = conn.write_all(&bytes);
        }
        Reply::Json(status, body) => {
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
        Reply::EofMidBody => {
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"token\":",
            );
            let _ = conn.flush();
            std::thread::sleep(Duration::from_millis(50));
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        Reply::ResetMidBody => {
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"token\":",
            );
            let _ = conn.flush();
            std::thread::sleep(Duration::from_millis(50));
            // SO_LINGER 0: closing sends a reset instead of a clean end of stream.
            let sock = socket2::Socket::from(conn);
            let _ = sock.set_linger(Some(Duration::ZERO));
            drop(sock);
        }
        Reply::Hang(d) => std::thread::sleep(d),
    }
}

/// The reference API with `auth`, `launch` and `status` bodies of our choosing.
fn reference_portal(auth: &'static str, launch: &'static str, status: &'static str) -> Portal {
    Portal::start(move |_, path| match path {
        "/api/v1/alive" => Reply::Json(200, r#"{"statusCode":200}"#.into()),
        "/api/v1/health" => Reply::Json(
            200,
            r#"{"status":"healthy","services":[{"name":"db","status":"healthy"}]}"#.into(),
        ),
        "/api/v1/auth/token" => Reply::Json(200, auth.into()),
        "/api/v1/backups" => Reply::Json(200, launch.into()),
        "/api/v1/jobs/status" => Reply::Json(200, status.into()),
        _ => Reply::Json(404, "{}".into()),
    })
}

const ONE_HOST: &str = "[[environments.lab.hosts]]\nname = \"web-01\"\n";

fn errors_of(docs: &[ProbeResult], action: Action) -> Vec<(ErrorType, String)> {
    docs.iter()
        .filter(|r| r.event.action == action)
        .filter_map(|r| r.error.as_ref().map(|e| (e.kind, e.message.clone())))
        .collect()
}

// ---- item 3: no panic from any answer ------------------------------------------------

#[test]
fn a_login_announcing_expires_in_1e300_or_1e19_is_clamped_and_every_result_is_kept() {
    for auth in [
        r#"{"token":"t1","expiresIn":1e300}"#,
        r#"{"token":"t1","expiresIn":1e19}"#,
    ] {
        let portal = reference_portal(
            auth,
            r#"{"jobId":"J1","status":"started"}"#,
            r#"{"status":"Completed"}"#,
        );
        let dir = tempfile::tempdir().unwrap();
        let cfg = one_env(dir.path(), "lab", &portal.url(), "", ONE_HOST);
        let report = run_once(cfg);
        let docs = journal(dir.path());
        assert_eq!(
            count(&docs, Action::Auth),
            1,
            "{auth}: the login is reported"
        );
        assert_eq!(count(&docs, Action::BackupLaunch), 1, "{auth}");
        assert_eq!(count(&docs, Action::JobEnd), 1, "{auth}");
        assert_eq!(report.exit_code(), 0, "{auth}: every probe passed");
    }
}

#[test]
fn job_ids_that_do_not_round_trip_are_refused_with_a_decode_result_and_never_polled() {
    for launch in [
        r#"{"jobId":123456789012345678901234567890,"status":"started"}"#,
        r#"{"jobId":true,"status":"started"}"#,
        r#"{"jobId":1.5e300,"status":"started"}"#,
    ] {
        let polled = Arc::new(AtomicU64::new(0));
        let p2 = polled.clone();
        let portal = Portal::start(move |_, path| match path {
            "/api/v1/auth/token" => Reply::Json(200, r#"{"token":"t1","expiresIn":3600}"#.into()),
            "/api/v1/backups" => Reply::Json(200, launch.into()),
            "/api/v1/jobs/status" => {
                p2.fetch_add(1, Ordering::SeqCst);
                Reply::Json(200, r#"{"status":"Completed"}"#.into())
            }
            _ => Reply::Json(
                200,
                r#"{"statusCode":200,"status":"healthy","services":[]}"#.into(),
            ),
        });
        let dir = tempfile::tempdir().unwrap();
        let cfg = one_env(dir.path(), "lab", &portal.url(), "", ONE_HOST);
        let report = run_once(cfg);
        let docs = journal(dir.path());
        let errs = errors_of(&docs, Action::BackupLaunch);
        assert_eq!(errs.len(), 1, "{launch}: {errs:?}");
        assert_eq!(errs[0].0, ErrorType::Decode, "{launch}: {errs:?}");
        assert!(errs[0].1.contains("job id at /jobId"), "{launch}: {errs:?}");
        assert_eq!(polled.load(Ordering::SeqCst), 0, "{launch}: polled anyway");
        assert_eq!(count(&docs, Action::JobEnd), 0);
        assert_eq!(report.exit_code(), 1);
    }
}

#[test]
fn a_panic_in_a_check_is_an_internal_result_and_exit_code_2_and_the_pass_goes_on() {
    let sim = simulator("seed = 3\njob_duration_ms = { min = 10, max = 50 }\n");
    let dir = tempfile::tempdir().unwrap();
    let env = "panics-in-liveness";
    let cfg = one_env(dir.path(), env, &sim.base_url(), "", &hosts(env, 2));
    iaso_probe::probes::fault_injection::panic_next(env, "liveness");
    let report = run_once(cfg);
    let docs = journal(dir.path());
    let errs = errors_of(&docs, Action::Liveness);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, ErrorType::Internal);
    assert!(
        errs[0].1.starts_with("internal error: injected panic"),
        "{errs:?}"
    );
    // The environment was not lost: the rest of its pass is there.
    assert_eq!(count(&docs, Action::BackupLaunch), 2);
    assert_eq!(count(&docs, Action::JobEnd), 2);
    assert_eq!(report.exit_code(), 2);
}

#[test]
fn a_panic_in_one_launch_is_one_internal_result_and_the_other_launches_still_happen() {
    let sim = simulator("seed = 3\njob_duration_ms = { min = 10, max = 50 }\n");
    let dir = tempfile::tempdir().unwrap();
    let env = "panics-in-launch";
    let cfg = one_env(dir.path(), env, &sim.base_url(), "", &hosts(env, 3));
    iaso_probe::probes::fault_injection::panic_next(env, "launch");
    let report = run_once(cfg);
    let docs = journal(dir.path());
    let errs = errors_of(&docs, Action::BackupLaunch);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, ErrorType::Internal);
    assert!(
        errs[0]
            .1
            .starts_with("internal error: injected panic at launch"),
        "{errs:?}"
    );
    // The two other hosts were launched and tracked to their end.
    assert_eq!(count(&docs, Action::BackupLaunch), 3);
    assert_eq!(count(&docs, Action::JobEnd), 2);
    assert_eq!(report.exit_code(), 2);
}

#[test]
fn a_panic_in_a_job_poll_ends_that_job_as_an_internal_error_with_exit_code_2() {
    let sim = simulator("seed = 3\njob_duration_ms = { min = 10, max = 50 }\njob_failure_ratio = 0.0\njob_warning_ratio = 0.0\n");
    let dir = tempfile::tempdir().unwrap();
    let env = "panics-in-poll";
    let cfg = one_env(dir.path(), env, &sim.base_url(), "", &hosts(env, 3));
    iaso_probe::probes::fault_injection::panic_next(env, "job_poll");
    let report = run_once(cfg);
    let docs = journal(dir.path());
    let ends: Vec<_> = docs
        .iter()
        .filter(|r| r.event.action == Action::JobEnd)
        .collect();
    assert_eq!(ends.len(), 3, "every job ends, the broken one included");
    let internal = with_error(&ends, ErrorType::Internal);
    assert_eq!(internal.len(), 1);
    assert_eq!(internal[0].event.outcome, Outcome::Failure);
    assert_eq!(report.exit_code(), 2);
}

// ---- item 4: token renewal ------------------------------------------------------------

#[test]
fn a_token_lifetime_of_20_s_costs_one_login_for_the_whole_pass() {
    let sim = simulator(
        // Jobs long enough for several polls each even on a loaded machine (a 50 ms job could
        // end before its second poll, leaving fewer token calls than asserted).
        "seed = 5\ntoken_ttl_ms = 20000\nlatency_ms = { min = 0, max = 1 }\njob_duration_ms = { min = 400, max = 600 }\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_env(dir.path(), "lab", &sim.base_url(), "", &hosts("lab", 4));
    run_once(cfg);
    let c = sim.counters();
    let authed: u64 = ["backups", "job_status"]
        .iter()
        .map(|n| c.endpoints.get(*n).map_or(0, |e| e.requests))
        .sum();
    assert!(authed >= 12, "the pass made {authed} calls with the token");
    assert_eq!(c.logins_ok, 1, "one login for {authed} calls");
}

#[test]
fn a_portal_that_lets_tokens_die_after_1_s_gets_one_login_per_min_login_interval_at_most() {
    let sim = simulator(
        "seed = 6\ntoken_ttl_ms = 1000\nlatency_ms = { min = 0, max = 1 }\njob_duration_ms = { min = 3000, max = 3500 }\njob_failure_ratio = 0.0\njob_warning_ratio = 0.0\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let tail = format!(
        "poll_interval_ms = 100\n{}[environments.lab.api.auth]\nmin_login_interval_secs = 2\n",
        hosts("lab", 3)
    );
    let cfg = one_env(dir.path(), "lab", &sim.base_url(), "", &tail);
    let t0 = Instant::now();
    let report = run_once(cfg);
    let elapsed = t0.elapsed();
    let c = sim.counters();
    let docs = journal(dir.path());
    // Logins are at least 2 s apart: over the run's span, at most one per 2 s plus the first.
    let max = elapsed.as_secs() / 2 + 1;
    assert!(
        c.logins_ok <= max,
        "{} logins in {elapsed:?} (at most {max})",
        c.logins_ok
    );
    assert!(c.logins_ok >= 2, "expired tokens were renewed");
    assert_eq!(
        count(&docs, Action::JobEnd),
        3,
        "no job lost to the waiting"
    );
    assert_eq!(
        report.tally.environments["lab"].job_results.get("success"),
        Some(&3)
    );
}

// ---- item 5: error.type, one test per type -------------------------------------------

/// The environment `lab` of a configuration pointed at `url`, with `extra` keys.
fn env_cfg(url: &str, extra: &str) -> Arc<EnvironmentConfig> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_env(dir.path(), "lab", url, extra, "");
    Arc::new(cfg.environments["lab"].clone())
}

fn client(url: &str, extra: &str) -> ApiClient {
    let cfg = env_cfg(url, extra);
    let limits = Arc::new(EnvLimits::new(
        "lab",
        NonZeroU32::new(1000).unwrap(),
        NonZeroU32::new(50).unwrap(),
        NonZeroUsize::new(16).unwrap(),
    ));
    ApiClient::for_this_thread(url, cfg, limits)
}

fn liveness_type(reply: impl Fn() -> Reply + Send + Sync + 'static, extra: &str) -> ErrorType {
    let portal = Portal::start(move |_, _| reply());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = client(&portal.url(), extra);
    let call = rt.block_on(c.liveness());
    call.outcome.expect_err("a failure").error_type()
}

fn login_outcome(reply: impl Fn() -> Reply + Send + Sync + 'static) -> Result<(), ApiError> {
    let portal = Portal::start(move |_, _| reply());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = client(&portal.url(), "");
    rt.block_on(async {
        c.login("probe", &Secret::new("pw"))
            .await
            .outcome
            .map(|_| ())
    })
}

#[test]
fn error_type_timeout_when_no_answer_comes_in_time() {
    let t = liveness_type(|| Reply::Hang(Duration::from_secs(3)), "timeout_ms = 300");
    assert_eq!(t, ErrorType::Timeout);
}

#[test]
fn error_type_connect_when_nothing_listens() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let call = rt.block_on(client(&url, "").liveness());
    assert_eq!(call.outcome.unwrap_err().error_type(), ErrorType::Connect);
}

#[test]
fn error_type_http_status_for_a_liveness_5xx_like_every_other_check() {
    let t = liveness_type(|| Reply::Json(503, r#"{"statusCode":503}"#.into()), "");
    assert_eq!(t, ErrorType::HttpStatus);
}

#[test]
fn error_type_assertion_when_the_answer_says_something_else() {
    let t = liveness_type(|| Reply::Json(200, r#"{"statusCode":500}"#.into()), "");
    assert_eq!(t, ErrorType::Assertion);
}

#[test]
fn error_type_decode_when_a_whole_answer_is_not_json() {
    let t = liveness_type(|| Reply::Json(200, "<html>".into()), "");
    assert_eq!(t, ErrorType::Decode);
}

#[test]
fn error_type_auth_when_the_login_is_refused() {
    let e = login_outcome(|| Reply::Json(401, "{}".into())).unwrap_err();
    assert_eq!(e.error_type(), ErrorType::Auth);
}

#[test]
fn error_type_rate_limited_on_429() {
    let t = liveness_type(
        || {
            Reply::Raw(
                b"HTTP/1.1 429 X\r\nretry-after: 3\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_vec(),
            )
        },
        "",
    );
    assert_eq!(t, ErrorType::RateLimited);
}

#[test]
fn error_type_body_too_large_past_max_body_bytes() {
    let t = liveness_type(
        || {
            Reply::Json(
                200,
                format!(r#"{{"statusCode":200,"pad":"{}"}}"#, "x".repeat(5000)),
            )
        },
        "max_body_bytes = 1024",
    );
    assert_eq!(t, ErrorType::BodyTooLarge);
}

#[test]
fn error_type_network_for_an_early_eof_mid_body() {
    let e = login_outcome(|| Reply::EofMidBody).unwrap_err();
    assert_eq!(e.error_type(), ErrorType::Network, "{e}");
}

#[test]
fn error_type_network_for_a_reset_mid_body() {
    let e = login_outcome(|| Reply::ResetMidBody).unwrap_err();
    assert_eq!(e.error_type(), ErrorType::Network, "{e}");
}

#[test]
fn error_type_config_for_a_token_that_cannot_be_a_header_value_and_the_token_is_not_shown() {
    let portal = Portal::start(|_, path| match path {
        "/api/v1/auth/token" => Reply::Json(
            200,
            r#"{"token":"s3cr3t\nX-Evil: 1","expiresIn":60}"#.into(),
        ),
        _ => Reply::Json(200, r#"{"jobId":"J1"}"#.into()),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = client(&portal.url(), "");
    let tokens = TokenManager::new("probe".into(), Secret::new("pw"));
    let err = rt.block_on(async {
        match tokens.lease(&c).await.0 {
            Err(e) => e,
            Ok(lease) => c
                .launch(JobKind::Backup, "web-01", None, None, &lease.token)
                .await
                .outcome
                .expect_err("a token with a newline cannot be sent"),
        }
    });
    assert_eq!(err.error_type(), ErrorType::Config, "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    assert_eq!(portal.requests(), 1, "nothing was sent with that token");
}

// ---- item 6: health components capped -----------------------------------------------

#[test]
fn ten_thousand_health_components_give_max_components_results_and_one_summary() {
    let services: Vec<String> = (0..10_000)
        .map(|i| {
            let st = if i == 9_999 { "down" } else { "healthy" };
            format!(r#"{{"name":"c{i}","status":"{st}"}}"#)
        })
        .collect();
    let body = format!(
        r#"{{"status":"healthy","services":[{}]}}"#,
        services.join(",")
    );
    let portal = Portal::start(move |_, path| match path {
        "/api/v1/health" => Reply::Json(200, body.clone()),
        "/api/v1/auth/token" => Reply::Json(200, r#"{"token":"t","expiresIn":60}"#.into()),
        _ => Reply::Json(200, r#"{"statusCode":200}"#.into()),
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_env(
        dir.path(),
        "lab",
        &portal.url(),
        "",
        "[environments.lab.api.health]\nmax_components = 100\n",
    );
    run_once(cfg);
    let docs = journal(dir.path());
    let health: Vec<_> = docs
        .iter()
        .filter(|r| r.event.action == Action::Health)
        .collect();
    assert_eq!(health.len(), 1 + 100 + 1, "_overall, 100 components, _more");
    let more = health
        .iter()
        .find(|r| r.iaso.health.as_ref().unwrap().component == "_more")
        .expect("a summary result");
    assert_eq!(more.event.outcome, Outcome::Failure);
    let msg = &more.error.as_ref().unwrap().message;
    assert!(
        msg.contains("1 of the 9900 components beyond the first 100") && msg.contains("c9999"),
        "{msg}"
    );
}
