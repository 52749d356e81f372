//! A small HTTP/1.1 server on tokio: enough of the protocol for reqwest/hyper and curl
//! (keep-alive, `content-length` and chunked bodies, `Expect: 100-continue`),
//! with full control over the listener and every open connection — which the emulator needs to
//! play a node that goes down (connection refused, pooled connections closed).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Elasticsearch's default `http.max_content_length` (100mb): bodies above it get 413.
pub const MAX_CONTENT_LENGTH: usize = 100 * 1024 * 1024;
/// Netty's default for the request line plus headers is smaller; 64 KiB is plenty for clients.
const MAX_HEAD: usize = 64 * 1024;

/// A parsed request, as the REST layer sees it.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    /// Path as sent (still percent-encoded).
    pub raw_path: String,
    /// Query string as sent, without `?`.
    pub query: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Body after transfer decoding.
    pub body: Bytes,
    keep_alive: bool,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The target as sent: path plus `?query` when there is one.
    pub fn uri(&self) -> String {
        if self.query.is_empty() {
            self.raw_path.clone()
        } else {
            format!("{}?{}", self.raw_path, self.query)
        }
    }
}

/// A response to write back.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Extra headers; `content-length` is always added by the writer.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before writing (the work is already done: a slow node, not a slow queue).
    pub delay: Option<Duration>,
}

/// What the REST layer does with a request.
pub type Handler = Arc<dyn Fn(HttpRequest) -> HttpResponse + Send + Sync>;

enum Incoming {
    Request(HttpRequest),
    /// `content-length` above [`MAX_CONTENT_LENGTH`]: answered 413 without reading the body.
    TooLarge,
    /// Unparseable request: answered 400 and closed.
    Bad(String),
}

/// Serves one connection until the client closes it, a protocol error occurs, or the task is
/// aborted (which closes the socket: that is how "down" drops pooled connections).
pub async fn serve_connection(mut stream: TcpStream, handler: Handler) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let incoming = match read_request(&mut stream, &mut buf).await {
            Ok(Some(incoming)) => incoming,
            Ok(None) | Err(_) => return,
        };
        let (response, head, keep_alive) = match incoming {
            Incoming::Request(req) => {
                let head = req.method == "HEAD";
                let keep_alive = req.keep_alive;
                // A bug in the emulator answers 500 instead of dropping the connection.
                let answer =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(req)))
                        .unwrap_or_else(|panic| {
                            let what = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                .unwrap_or_default();
                            emulator_bug(&what)
                        });
                (answer, head, keep_alive)
            }
            Incoming::TooLarge => (too_large(), false, false),
            Incoming::Bad(reason) => (bad_request(&reason), false, false),
        };
        if let Some(delay) = response.delay {
            tokio::time::sleep(delay).await;
        }
        if write_response(&mut stream, &response, head, keep_alive)
            .await
            .is_err()
            || !keep_alive
        {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

fn emulator_bug(what: &str) -> HttpResponse {
    let reason = format!("es emulator panicked: {what}");
    let body = serde_json::json!({
        "error": {"root_cause": [{"type": "exception", "reason": reason}], "type": "exception", "reason": reason},
        "status": 500
    });
    HttpResponse {
        status: 500,
        headers: vec![
            ("X-elastic-product".into(), "Elasticsearch".into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: serde_json::to_vec(&body).unwrap_or_default(),
        delay: None,
    }
}

fn too_large() -> HttpResponse {
    HttpResponse {
        status: 413,
        headers: Vec::new(),
        body: Vec::new(),
        delay: None,
    }
}

fn bad_request(reason: &str) -> HttpResponse {
    let body = serde_json::json!({"error": reason, "status": 400});
    HttpResponse {
        status: 400,
        headers: vec![
            ("X-elastic-product".into(), "Elasticsearch".into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: serde_json::to_vec(&body).unwrap_or_default(),
        delay: None,
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<bool> {
    if buf.capacity() - buf.len() < 8192 {
        buf.reserve(64 * 1024);
    }
    Ok(stream.read_buf(buf).await? > 0)
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

async fn read_request(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Option<Incoming>> {
    let head_end = loop {
        if let Some(pos) = find_head_end(buf) {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Ok(Some(Incoming::Bad("request head too large".into())));
        }
        if !fill(stream, buf).await? {
            return Ok(None);
        }
    };
    let head = buf.split_to(head_end + 4);
    let head = String::from_utf8_lossy(&head[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(Some(Incoming::Bad(format!(
            "invalid request line [{request_line}]"
        ))));
    };
    let mut headers = Vec::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let connection = get("connection").unwrap_or_default();
    let keep_alive = if version == "HTTP/1.0" {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let chunked = get("transfer-encoding").is_some_and(|te| te.contains("chunked"));
    let content_length = match get("content-length") {
        Some(v) => match v.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return Ok(Some(Incoming::Bad(format!("invalid content-length [{v}]")))),
        },
        None => 0,
    };
    if content_length > MAX_CONTENT_LENGTH {
        return Ok(Some(Incoming::TooLarge));
    }
    if get("expect").is_some_and(|e| e == "100-continue") {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let body = if chunked {
        match read_chunked(stream, buf).await? {
            Some(body) => body,
            None => return Ok(None),
        }
    } else {
        if buf.len() < content_length {
            buf.reserve(content_length - buf.len());
        }
        while buf.len() < content_length {
            if !fill(stream, buf).await? {
                return Ok(None);
            }
        }
        buf.split_to(content_length).freeze()
    };
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.to_owned(), String::new()),
    };
    Ok(Some(Incoming::Request(HttpRequest {
        method: method.to_owned(),
        raw_path,
        query,
        headers,
        body,
        keep_alive,
    })))
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
    let mut body = BytesMut::new();
    loop {
        let line_end = loop {
            if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
                break pos;
            }
            if !fill(stream, buf).await? {
                return Ok(None);
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        buf.advance(line_end + 2);
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if body.len() + size > MAX_CONTENT_LENGTH {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        if size == 0 {
            // Trailers (ignored) end with an empty line.
            loop {
                if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
                    let empty = pos == 0;
                    buf.advance(pos + 2);
                    if empty {
                        return Ok(Some(body.freeze()));
                    }
                } else if !fill(stream, buf).await? {
                    return Ok(None);
                }
            }
        }
        while buf.len() < size + 2 {
            if !fill(stream, buf).await? {
                return Ok(None);
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.advance(size + 2);
    }
}

async fn write_response(
    stream: &mut TcpStream,
    response: &HttpResponse,
    head: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(256 + response.body.len());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            response.status,
            reason_phrase(response.status)
        )
        .as_bytes(),
    );
    for (name, value) in &response.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\n", response.body.len()).as_bytes());
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(&response.body);
    }
    stream.write_all(&out).await?;
    stream.flush().await
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}
