//! The status poll's own HTTP/1.1 client (`api::h1`, `lean_status_polls`) against raw
//! loopback portals: every answer, well or badly formed, gives the same status and outcome
//! (error type and text) as through reqwest (`lean_status_polls = false`), the request
//! carries the same headers and body, keep-alive connections are reused, and a connection
//! the portal closed while idle is replaced without a failed poll.

mod harness;

use harness::*;
use iaso_probe::api::ApiClient;
use iaso_probe::config::{EnvironmentConfig, Secret};
use iaso_probe::limiter::EnvLimits;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the portal does after writing an answer.
#[derive(Clone, Copy)]
enum After {
    /// Waits for the next request on the same connection.
    KeepOpen,
    Close,
    /// An abortive close (RST).
    Reset,
    /// Writes nothing more for this long, then closes.
    Hang(Duration),
}

type Handler = dyn Fn(usize) -> (Vec<u8>, After) + Send + Sync;
/// Each request's head (as text) and body.
type Seen = Mutex<Vec<(String, Vec<u8>)>>;

/// A raw HTTP/1.1 portal on 127.0.0.1:0: each request gets `handler(n)`'s bytes (n counts
/// requests from 0); the connections accepted and the request heads are recorded.
struct RawPortal {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    heads: Arc<Seen>,
}

impl RawPortal {
    fn start(handler: impl Fn(usize) -> (Vec<u8>, After) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (c, h) = (connections.clone(), heads.clone());
        let count = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let (h, handler, count) = (h.clone(), handler.clone(), count.clone());
                std::thread::spawn(move || serve(conn, &*handler, &h, &count));
            }
        });
        RawPortal {
            addr,
            connections,
            heads,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn serve(mut conn: TcpStream, handler: &Handler, heads: &Seen, count: &AtomicUsize) {
    let mut buf = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut conn, &mut buf) else {
            return;
        };
        heads.lock().unwrap().push((head, body));
        let (bytes, after) = handler(count.fetch_add(1, Ordering::SeqCst));
        let _ = conn.write_all(&bytes);
        let _ = conn.flush();
        match after {
            After::KeepOpen => {}
            After::Close => return,
            After::Reset => {
                std::thread::sleep(Duration::from_millis(20));
                let sock = socket2::Socket::from(conn);
                let _ = sock.set_linger(Some(Duration::ZERO));
                return;
            }
            After::Hang(d) => {
                std::thread::sleep(d);
                return;
            }
        }
    }
}

fn env_cfg(url: &str, extra: &str) -> Arc<EnvironmentConfig> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_env(dir.path(), "lab", url, extra, "");
    Arc::new(cfg.environments["lab"].clone())
}

fn client(url: &str, extra: &str) -> ApiClient {
    let limits = Arc::new(EnvLimits::new(
        "lab",
        NonZeroU32::new(1000).unwrap(),
        NonZeroU32::new(50).unwrap(),
        NonZeroUsize::new(16).unwrap(),
    ));
    ApiClient::for_this_thread(url, env_cfg(url, extra), limits)
}

/// A poll's status and outcome as text: the job state, or the error type and message.
fn poll(rt: &tokio::runtime::Runtime, c: &ApiClient) -> (Option<u16>, Result<String, String>) {
    let token = Secret::new("tok-123");
    let call = rt.block_on(c.job_status("J1", "web-01", &token));
    let outcome = call
        .outcome
        .map(|s| format!("{s:?}"))
        .map_err(|e| format!("{}: {e}", e.error_type().as_str()));
    (call.exchange.status, outcome)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn http(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\n{headers}\r\n{body}").into_bytes()
}

/// A keep-alive `Running` status answer.
fn running() -> Vec<u8> {
    let ok = r#"{"status":"Running"}"#;
    http("200 OK", &format!("content-length: {}\r\n", ok.len()), ok)
}

/// The request head's lines, lowercased, without the request line, the `host` (each
/// portal has its port) and reqwest's `accept-encoding: gzip` (the lean client asks for no
/// compression, so it gets none), sorted.
fn header_set(head: &str) -> Vec<String> {
    let mut v: Vec<String> = head
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.to_ascii_lowercase())
        .filter(|l| !l.starts_with("host: ") && l != "accept-encoding: gzip")
        .collect();
    v.sort();
    v
}

#[test]
fn every_answer_reads_the_same_through_the_lean_client_and_through_reqwest() {
    let ok = r#"{"status":"Running","percentComplete":40}"#;
    let json = "content-type: application/json\r\n";
    let cases: Vec<(&str, Vec<u8>, After)> = vec![
        (
            "content-length",
            http(
                "200 OK",
                &format!("{json}content-length: {}\r\n", ok.len()),
                ok,
            ),
            After::Close,
        ),
        (
            "chunked, with an extension and a trailer",
            http(
                "200 OK",
                &format!("{json}transfer-encoding: chunked\r\n"),
                "10;x=y\r\n{\"status\":\"Runni\r\n3\r\nng\"\r\n1\r\n}\r\n0\r\nx-trailer: 1\r\n\r\n",
            ),
            After::Close,
        ),
        (
            "until the connection closes",
            http("200 OK", &format!("{json}connection: close\r\n"), ok),
            After::Close,
        ),
        (
            "HTTP/1.0",
            format!("HTTP/1.0 200 OK\r\n{json}\r\n{ok}").into_bytes(),
            After::Close,
        ),
        (
            "100 Continue first",
            [
                b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
                http(
                    "200 OK",
                    &format!("{json}content-length: {}\r\n", ok.len()),
                    ok,
                ),
            ]
            .concat(),
            After::Close,
        ),
        (
            "500",
            http("500 Oops", "content-length: 15\r\n", r#"{"status":"KO"}"#),
            After::Close,
        ),
        (
            "429 with Retry-After",
            http("429 Slow", "retry-after: 7\r\ncontent-length: 2\r\n", "{}"),
            After::Close,
        ),
        (
            "401",
            http("401 No", "content-length: 0\r\n", ""),
            After::Close,
        ),
        (
            "302 elsewhere, credentials hidden",
            http(
                "302 Found",
                "location: http://user:pw@elsewhere.example/x\r\ncontent-length: 0\r\n",
                "",
            ),
            After::Close,
        ),
        ("204", http("204 No Content", "", ""), After::Close),
        (
            "HTML",
            http(
                "200 OK",
                "content-type: text/html\r\ncontent-length: 13\r\n",
                "<html></html>",
            ),
            After::Close,
        ),
        (
            "declared larger than max_body_bytes",
            http("200 OK", "content-length: 5000\r\n", ""),
            After::Close,
        ),
        (
            "chunked past max_body_bytes",
            http(
                "200 OK",
                "transfer-encoding: chunked\r\n",
                &format!(
                    "800\r\n{x}\r\n800\r\n{x}\r\n0\r\n\r\n",
                    x = "x".repeat(2048)
                ),
            ),
            After::Close,
        ),
        (
            "end of file mid-body",
            http("200 OK", "content-length: 100\r\n", "{\"status\":"),
            After::Close,
        ),
        (
            "reset mid-body",
            http("200 OK", "content-length: 100\r\n", "{\"status\":"),
            After::Reset,
        ),
        ("closed before any answer", Vec::new(), After::Close),
        (
            "no answer within the timeout",
            Vec::new(),
            After::Hang(Duration::from_millis(1500)),
        ),
    ];
    let rt = runtime();
    for (name, bytes, after) in cases {
        let mut seen = Vec::new();
        let mut heads = Vec::new();
        for lean in [true, false] {
            let b = bytes.clone();
            let portal = RawPortal::start(move |_| (b.clone(), after));
            let extra =
                format!("lean_status_polls = {lean}\ntimeout_ms = 400\nmax_body_bytes = 3000\n");
            let c = client(&portal.url(), &extra);
            seen.push(poll(&rt, &c));
            heads.push(portal.heads.lock().unwrap().clone());
        }
        assert_eq!(seen[0], seen[1], "{name}: lean (left) against reqwest");
        let (lean, reqwest) = (&heads[0][0], &heads[1][0]);
        assert_eq!(
            header_set(&lean.0),
            header_set(&reqwest.0),
            "{name}: headers"
        );
        assert_eq!(lean.1, reqwest.1, "{name}: body");
        assert!(lean.0.starts_with("POST /api/v1/jobs/status HTTP/1.1\r\n"));
        let host = format!(
            "host: {}",
            lean.0
                .lines()
                .nth(1)
                .unwrap_or("")
                .trim_start_matches("host: ")
        );
        assert!(host.starts_with("host: 127.0.0.1:"), "{name}: {}", lean.0);
    }
}

#[test]
fn polls_reuse_one_keep_alive_connection() {
    let answer = running();
    let portal = RawPortal::start(move |_| (answer.clone(), After::KeepOpen));
    let rt = runtime();
    let c = client(&portal.url(), "");
    for _ in 0..50 {
        let (status, outcome) = poll(&rt, &c);
        assert_eq!(status, Some(200));
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    assert_eq!(portal.connections.load(Ordering::SeqCst), 1);
    assert_eq!(portal.heads.lock().unwrap().len(), 50);
}

#[test]
fn a_connection_the_portal_closed_after_its_answer_is_replaced_without_a_failed_poll() {
    // Keep-alive announced, then the portal closes at once: the next poll finds the pooled
    // connection closed and is sent again on a new one.
    let answer = running();
    let portal = RawPortal::start(move |_| (answer.clone(), After::Close));
    let rt = runtime();
    let c = client(&portal.url(), "");
    for i in 0..20 {
        let (status, outcome) = poll(&rt, &c);
        assert_eq!(status, Some(200), "poll {i}");
        assert!(outcome.is_ok(), "poll {i}: {outcome:?}");
    }
    assert_eq!(
        portal.heads.lock().unwrap().len(),
        20,
        "each poll answered once"
    );
    assert_eq!(portal.connections.load(Ordering::SeqCst), 20);
}

#[test]
fn a_connection_broken_mid_answer_is_a_failure_and_is_not_sent_again() {
    // Unlike a connection closed while idle, a poll whose answer started is not repeated.
    let portal = RawPortal::start(move |n| {
        if n == 0 {
            (running(), After::KeepOpen)
        } else {
            (
                http("200 OK", "content-length: 100\r\n", "{\"st"),
                After::Close,
            )
        }
    });
    let rt = runtime();
    let c = client(&portal.url(), "");
    assert!(poll(&rt, &c).1.is_ok());
    let (status, outcome) = poll(&rt, &c);
    assert_eq!(status, Some(200), "the status came; the body did not");
    assert_eq!(
        outcome,
        Err("network: network failure: end of file before message length reached".into())
    );
    assert_eq!(portal.heads.lock().unwrap().len(), 2);
}

#[test]
fn a_refused_connection_reads_the_same_through_both_clients() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let rt = runtime();
    let lean = poll(&rt, &client(&url, ""));
    let reqwest = poll(&rt, &client(&url, "lean_status_polls = false\n"));
    assert_eq!(lean, reqwest);
    assert!(
        lean.1.as_ref().unwrap_err().starts_with("connect: "),
        "{lean:?}"
    );
}
