//! Tests only: an HTTP/1.1 server on the test's own thread (127.0.0.1:0), answering with an
//! async handler. Requests are read by hand (head, then a `content-length` body), which is
//! all reqwest and the Elasticsearch client send.
//!
//! Why on the test's thread: under paused tokio time, a runtime that waits for an answer
//! from another thread is idle, so it advances its clock to the next timer (a request
//! timeout, a retry delay) before the answer arrives. With client and server on one thread
//! every answer is readable when the runtime next looks, and the clock only jumps once all
//! requests are answered.

use futures_util::future::LocalBoxFuture;
use std::net::SocketAddr;
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request, as received.
pub(crate) struct Request {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One answer.
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }
}

pub(crate) type Handler = Rc<dyn Fn(Request) -> LocalBoxFuture<'static, Response>>;

/// A server answering with `handler`, served by tasks of the current `LocalSet` (an actix
/// runtime or `#[actix_rt::test]`); stopped when dropped.
pub(crate) struct LoopbackServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl LoopbackServer {
    pub(crate) async fn start(handler: Handler) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::task::spawn_local(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let handler = handler.clone();
                tokio::task::spawn_local(async move {
                    let mut buf = Vec::new();
                    while let Some((req, close)) = read_request(&mut sock, &mut buf).await {
                        let res = handler(req).await;
                        let mut out = format!("HTTP/1.1 {} X\r\n", res.status);
                        for (k, v) in &res.headers {
                            out += &format!("{k}: {v}\r\n");
                        }
                        out += &format!("content-length: {}\r\n\r\n", res.body.len());
                        let mut bytes = out.into_bytes();
                        bytes.extend_from_slice(&res.body);
                        if sock.write_all(&bytes).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, task }
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request from `sock`, keeping what follows in `buf`; None at the end of the
/// connection (or on a request this server cannot read). The flag: the client asked to close.
async fn read_request(
    sock: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(Request, bool)> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(sock, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, uri) = (first.next()?.to_owned(), first.next()?.to_owned());
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let len: usize = header("content-length").map_or(Some(0), |v| v.parse().ok())?;
    let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    while buf.len() < head_end + len {
        fill(sock, buf).await?;
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    let req = Request {
        method,
        uri,
        headers,
        body,
    };
    Some((req, close))
}

async fn fill(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    let n = sock.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
    buf.extend_from_slice(&chunk[..n]);
    Some(())
}
