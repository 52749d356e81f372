//! The status poll's own HTTP/1.1 client. A million tracked jobs are polled 16,700 times a
//! second; through reqwest each poll crossed reqwest's request and redirect layers, hyper's
//! dispatch channel and its connection task: about two thirds of the prober's CPU per poll
//! (BENCHMARKS.md §5, §8). Here the polling job's own future writes the request on a
//! pooled keep-alive connection and reads the answer: one `write`, one `read`.
//!
//! What it does not do, it leaves to reqwest: the client is made only for an origin reached
//! without a proxy and with redirects off (a 3xx is the answer), and only the status poll
//! uses it (`lean_status_polls = false` sends it through reqwest too). Its failures are the
//! same [`ApiError`]s reqwest's would be, with the same texts where they are hyper's.

use super::error::{tls_cause, ApiError};
use bytes::{Buf, Bytes, BytesMut};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Longest answer head read (hyper's default buffer is 400 KiB; a status answer's head is a
/// few hundred bytes).
const MAX_HEAD: usize = 64 * 1024;
/// Most header lines in an answer (hyper's default).
const MAX_HEADERS: usize = 100;

/// Where the client connects, and how.
pub(crate) struct Target {
    /// Host name or IP literal (without brackets), for the connect and the TLS name.
    pub host: String,
    pub port: u16,
    /// The only origin this client sends to.
    pub origin: url::Origin,
    /// `Some` for `https`: the environment's TLS configuration.
    pub tls: Option<rustls::ClientConfig>,
}

/// Timeouts and limits (the environment's).
pub(crate) struct Limits {
    pub connect_timeout: Duration,
    pub timeout_ms: u64,
    pub idle_timeout: Duration,
    pub max_idle: usize,
    pub max_body: usize,
}

/// One origin's client: its idle keep-alive connections.
pub(crate) struct LeanClient {
    host: String,
    port: u16,
    origin: url::Origin,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
    limits: Limits,
    idle: IdlePool<Conn>,
}

/// An answer. `body` fails alone (too large, cut short) so the status still reaches the
/// result; a 3xx's body is not read.
#[derive(Debug)]
pub(crate) struct LeanAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<Duration>,
    pub location: Option<String>,
    pub body: Result<Bytes, ApiError>,
}

impl LeanClient {
    pub(crate) fn new(target: Target, limits: Limits) -> Result<Self, ApiError> {
        let tls = match target.tls {
            None => None,
            Some(mut config) => {
                // This client speaks HTTP/1.1 only.
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let name = rustls_pki_types::ServerName::try_from(target.host.clone())
                    .map_err(|_| ApiError::Tls(format!("`{}` is not a TLS name", target.host)))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Self {
            host: target.host,
            port: target.port,
            origin: target.origin,
            tls,
            idle: IdlePool::new(limits.idle_timeout, limits.max_idle),
            limits,
        })
    }

    /// True when `url` is on this client's origin (scheme, host, port).
    pub(crate) fn serves(&self, url: &url::Url) -> bool {
        url.origin() == self.origin
    }

    /// Sends `request` (a whole HTTP/1.1 request, head and body) and reads the answer, all
    /// within the environment's timeout. A pooled connection the server closed while it was
    /// idle (nothing of an answer came back) is replaced once by a new one: the status poll
    /// is a read, so sending it again is safe.
    pub(crate) async fn send(
        &self,
        request: &[u8],
        head_only: bool,
    ) -> Result<LeanAnswer, ApiError> {
        let timeout = Duration::from_millis(self.limits.timeout_ms);
        match tokio::time::timeout(timeout, self.exchange(request, head_only)).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::Timeout(self.limits.timeout_ms)),
        }
    }

    async fn exchange(&self, request: &[u8], head_only: bool) -> Result<LeanAnswer, ApiError> {
        if let Some(mut conn) = self.checkout() {
            match conn
                .round_trip(request, head_only, self.limits.max_body)
                .await
            {
                Ok((answer, reusable)) => return Ok(self.finish(conn, answer, reusable)),
                Err(Failure::BeforeAnswer(_)) => {} // closed while idle: a new connection
                Err(Failure::Answer(e)) => return Err(e),
            }
        }
        let mut conn = self.connect().await?;
        match conn
            .round_trip(request, head_only, self.limits.max_body)
            .await
        {
            Ok((answer, reusable)) => Ok(self.finish(conn, answer, reusable)),
            Err(Failure::BeforeAnswer(e) | Failure::Answer(e)) => Err(e),
        }
    }

    fn finish(&self, conn: Conn, answer: LeanAnswer, reusable: bool) -> LeanAnswer {
        if reusable {
            self.idle.put(conn, Instant::now());
        }
        answer
    }

    fn checkout(&self) -> Option<Conn> {
        self.idle.take(Instant::now())
    }

    async fn connect(&self) -> Result<Conn, ApiError> {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let tcp = match tokio::time::timeout(self.limits.connect_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(ApiError::Connect(e.to_string())),
            // As reqwest's connect timeout: a timeout of the request.
            Err(_) => return Err(ApiError::Timeout(self.limits.timeout_ms)),
        };
        let _ = tcp.set_nodelay(true);
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some((connector, name)) => {
                let handshake = connector.connect(name.clone(), tcp);
                match tokio::time::timeout(self.limits.connect_timeout, handshake).await {
                    Ok(Ok(s)) => Stream::Tls(Box::new(s)),
                    Ok(Err(e)) => {
                        return Err(match tls_cause(&e) {
                            Some(t) => ApiError::Tls(t),
                            None => ApiError::Connect(e.to_string()),
                        })
                    }
                    Err(_) => return Err(ApiError::Timeout(self.limits.timeout_ms)),
                }
            }
        };
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
        })
    }
}

/// Idle keep-alive connections, the most recently used first; one idle longer than
/// `idle_timeout` is closed rather than reused (the portal may be closing it).
struct IdlePool<T> {
    idle: Mutex<Vec<(T, Instant)>>,
    idle_timeout: Duration,
    max: usize,
}

impl<T> IdlePool<T> {
    fn new(idle_timeout: Duration, max: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            idle_timeout,
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(T, Instant)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `item`, idle since `now`, unless `max` are kept already.
    fn put(&self, item: T, now: Instant) {
        let mut idle = self.lock();
        if idle.len() < self.max {
            idle.push((item, now));
        }
    }

    /// The most recently kept item still within the idle timeout at `now`; older ones are
    /// dropped (closed).
    fn take(&self, now: Instant) -> Option<T> {
        let mut idle = self.lock();
        let (item, since) = idle.pop()?;
        if now.saturating_duration_since(since) < self.idle_timeout {
            return Some(item);
        }
        // The rest were kept earlier still.
        idle.clear();
        None
    }
}

/// How an exchange failed: before any byte of an answer (a reused connection may be retried
/// on a new one), or during it.
enum Failure {
    BeforeAnswer(ApiError),
    Answer(ApiError),
}

struct Conn {
    stream: Stream,
    /// Bytes read and not yet consumed (empty between exchanges).
    buf: BytesMut,
}

/// The parts of an answer head this client acts on.
struct Head {
    status: u16,
    head_len: usize,
    keep_alive: bool,
    framing: Framing,
    content_type: Option<String>,
    retry_after: Option<Duration>,
    location: Option<String>,
}

enum Framing {
    Length(usize),
    Chunked,
    /// Until the server closes the connection.
    Close,
    Empty,
}

impl Framing {
    /// How the body is delimited (RFC 9112 §6.3): none (`empty`), else chunked, which wins
    /// over a Content-Length, else the length, else the end of the connection.
    fn of(empty: bool, chunked: bool, length: Option<usize>) -> Self {
        match (empty, chunked, length) {
            (true, _, _) => Framing::Empty,
            (_, true, _) => Framing::Chunked,
            (_, _, Some(n)) => Framing::Length(n),
            _ => Framing::Close,
        }
    }
}

impl Conn {
    /// One request, one answer; `true` with the answer when the connection can be reused.
    async fn round_trip(
        &mut self,
        request: &[u8],
        head_only: bool,
        max_body: usize,
    ) -> Result<(LeanAnswer, bool), Failure> {
        self.buf.clear();
        if let Err(e) = self.write(request).await {
            return Err(Failure::BeforeAnswer(io_failure(&e)));
        }
        let head = loop {
            match self.parse_head(head_only)? {
                Some(h) if (100..200).contains(&h.status) && h.status != 101 => {
                    // An interim answer (100 Continue, 103): the real one follows.
                    self.buf.advance(h.head_len);
                }
                Some(h) => break h,
                None => {
                    let first = self.buf.is_empty();
                    match self.fill().await {
                        Ok(0) if first => {
                            return Err(Failure::BeforeAnswer(closed_before_answer()))
                        }
                        Ok(0) => return Err(Failure::Answer(closed_before_answer())),
                        Ok(_) => {}
                        Err(e) if first => return Err(Failure::BeforeAnswer(io_failure(&e))),
                        Err(e) => return Err(Failure::Answer(io_failure(&e))),
                    }
                }
            }
        };
        self.buf.advance(head.head_len);
        let redirect = (300..400).contains(&head.status) && head.status != 304;
        let mut answer = LeanAnswer {
            status: head.status,
            content_type: head.content_type,
            retry_after: head.retry_after,
            location: head.location,
            body: Ok(Bytes::new()),
        };
        if redirect {
            // Reported with its Location; the body is not read, the connection not kept.
            return Ok((answer, false));
        }
        let (body, framed) = match head.framing {
            Framing::Empty => (Ok(Bytes::new()), true),
            Framing::Length(n) if n > max_body => (Err(ApiError::BodyTooLarge(max_body)), false),
            Framing::Length(n) => (self.read_length(n).await, true),
            Framing::Chunked => (self.read_chunked(max_body).await, true),
            Framing::Close => (self.read_to_end(max_body).await, false),
        };
        let reusable = framed && head.keep_alive && body.is_ok() && self.buf.is_empty();
        answer.body = body;
        Ok((answer, reusable))
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads more into `buf`; 0 at the end of the stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8 * 1024);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    /// The answer head, once `buf` holds all of it.
    fn parse_head(&self, head_only: bool) -> Result<Option<Head>, Failure> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                return Err(Failure::Answer(ApiError::Network(
                    "message head is too large".into(),
                )))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => {
                return Err(Failure::Answer(ApiError::Network(format!(
                    "invalid HTTP answer: {e}"
                ))))
            }
        };
        let status = resp.code.unwrap_or(0);
        let http11 = resp.version == Some(1);
        let mut keep_alive = http11;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut content_type = None;
        let mut retry_after = None;
        let mut location = None;
        for h in resp.headers.iter() {
            let v = h.value;
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.trim().parse::<usize>().ok())
                    .filter(|n| length.is_none_or(|l| l == *n))
                    .ok_or_else(|| {
                        Failure::Answer(ApiError::Network("invalid content-length".into()))
                    })?;
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // Chunked when it is the last coding (RFC 9112 §6.3).
                chunked = String::from_utf8_lossy(v)
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            } else if h.name.eq_ignore_ascii_case("connection") {
                let v = String::from_utf8_lossy(v);
                for token in v.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") && !http11 {
                        keep_alive = true;
                    }
                }
            } else if h.name.eq_ignore_ascii_case("content-type") {
                content_type = Some(String::from_utf8_lossy(v).into_owned());
            } else if h.name.eq_ignore_ascii_case("retry-after") {
                retry_after = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
            } else if h.name.eq_ignore_ascii_case("location") {
                location = Some(String::from_utf8_lossy(v).into_owned());
            }
        }
        Ok(Some(Head {
            status,
            head_len,
            keep_alive,
            framing: Framing::of(head_only || status == 204 || status == 304, chunked, length),
            content_type,
            retry_after,
            location,
        }))
    }

    async fn read_length(&mut self, n: usize) -> Result<Bytes, ApiError> {
        while self.buf.len() < n {
            if self.buf.capacity() - self.buf.len() < n - self.buf.len() {
                self.buf.reserve(n - self.buf.len());
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err(eof_mid_body()),
                Ok(_) => {}
                Err(e) => return Err(io_failure(&e)),
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }

    async fn read_to_end(&mut self, max: usize) -> Result<Bytes, ApiError> {
        loop {
            if self.buf.len() > max {
                return Err(ApiError::BodyTooLarge(max));
            }
            match self.fill().await {
                Ok(0) => return Ok(self.buf.split().freeze()),
                Ok(_) => {}
                Err(e) => return Err(io_failure(&e)),
            }
        }
    }

    /// A chunked body (RFC 9112 §7.1), extensions and trailers ignored.
    async fn read_chunked(&mut self, max: usize) -> Result<Bytes, ApiError> {
        let mut body = BytesMut::new();
        loop {
            let line = self.read_line().await?;
            let size = line.split(|b| *b == b';').next().unwrap_or(&[]);
            let size = std::str::from_utf8(size)
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .ok_or_else(|| ApiError::Network("invalid chunk size line".into()))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body.freeze());
            }
            if body.len() + size > max {
                return Err(ApiError::BodyTooLarge(max));
            }
            let chunk = self.read_length(size + 2).await?;
            if &chunk[size..] != b"\r\n" {
                return Err(ApiError::Network(
                    "invalid chunk: no CRLF after its data".into(),
                ));
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }

    /// One line, without its CRLF (at most 4 KiB).
    async fn read_line(&mut self) -> Result<Bytes, ApiError> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(i + 2).freeze();
                return Ok(line.slice(..i));
            }
            if self.buf.len() > 4096 {
                return Err(ApiError::Network("invalid chunk size line".into()));
            }
            match self.fill().await {
                Ok(0) => return Err(eof_mid_body()),
                Ok(_) => {}
                Err(e) => return Err(io_failure(&e)),
            }
        }
    }
}

/// A read or write that failed on a connection: `tls` when rustls says why (a client
/// certificate refused after a TLS 1.3 handshake arrives as an alert on the first read),
/// else `network`, as reqwest's are classified.
fn io_failure(e: &std::io::Error) -> ApiError {
    match tls_cause(e) {
        Some(t) => ApiError::Tls(t),
        None => ApiError::Network(e.to_string()),
    }
}

/// hyper's text for the same failure, so both clients report it alike.
fn closed_before_answer() -> ApiError {
    ApiError::Network("connection closed before message completed".into())
}

fn eof_mid_body() -> ApiError {
    ApiError::Network("end of file before message length reached".into())
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_hands_out_the_most_recent_connection_and_closes_stale_ones() {
        let t0 = Instant::now();
        let pool = IdlePool::new(Duration::from_secs(4), 2);
        pool.put(1, t0);
        pool.put(2, t0 + Duration::from_secs(1));
        pool.put(3, t0 + Duration::from_secs(1)); // past max: closed
        assert_eq!(pool.take(t0 + Duration::from_secs(2)), Some(2));
        // 1 has been idle 4 s: closed, and the pool is empty.
        assert_eq!(pool.take(t0 + Duration::from_secs(4)), None);
        assert_eq!(pool.take(t0), None);
        pool.put(4, t0 + Duration::from_secs(10));
        pool.put(5, t0 + Duration::from_secs(10));
        // Every kept connection is stale: none is handed out, all are closed.
        assert_eq!(pool.take(t0 + Duration::from_secs(20)), None);
        assert_eq!(pool.take(t0 + Duration::from_secs(10)), None);
    }
}
