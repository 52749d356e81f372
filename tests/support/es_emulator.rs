//! In-process Elasticsearch emulator for the integration tests.
//!
//! [`EsEmulator::start`] serves the Elasticsearch REST API (8.14-flavoured) on `127.0.0.1:PORT`
//! from its own OS thread and tokio runtime, so it works under whichever runtime a test uses
//! (actix `System`, `#[tokio::test]`, paused time or not — its own timers run in real time).
//!
//! ```ignore
//! let es = EsEmulator::start();
//! let client = Elasticsearch::new(Transport::single_node(&es.url())?);
//! // … run the prober against es.url() …
//! es.fail_requests(429, 2);              // the next two _bulk calls get 429
//! assert_eq!(es.count("iaso-checks-*"), 42);
//! ```
//!
//! It serves only the requests the prober sends — `_bulk`, `PUT`/`HEAD` of component and index
//! templates, `PUT` of the ILM policy, `GET /_ilm/status`, `GET /` and `_cluster/health` — and
//! exists for the faults a real node cannot produce on demand: the node down or answering a
//! chosen status at a chosen request, slow answers, item rejections at a seeded ratio, a chosen
//! field refused, a request size limit, basic/API-key authentication. Everything else about
//! Elasticsearch (search, counts, mappings as a cluster reports them, data stream APIs,
//! rollover, real 429/413/409/400 answers) is checked against a real node in
//! `tests/real_es.rs`; the store is read back directly ([`EsEmulator::ids`], `count`, …).
//!
//! Request pipeline, in Elasticsearch's order: body over the size limit → 413 (empty body, no
//! Elasticsearch headers); no route → 400 `no handler found`; wrong method → 405 with `Allow`;
//! body with a missing or unsupported `content-type` → 406; authentication → 401; then the
//! emulator's injected faults; then the handler.

mod bulk;
mod http;
mod json;
mod mapping;
mod rest;
mod store;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use self::store::State;

/// What the emulated cluster requires from clients.
#[derive(Clone, Debug, Default)]
pub struct EmulatorOptions {
    /// Require HTTP basic authentication with this user and password.
    pub basic_auth: Option<(String, String)>,
    /// Require `Authorization: ApiKey <key>`; the key is the encoded form Elasticsearch returns
    /// (base64 of `id:api_key`), or `id:api_key` itself. Either credential is accepted when both
    /// are set.
    pub api_key: Option<String>,
}

/// A whole-request failure to inject, with the body shape Elasticsearch sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 `es_rejected_execution_exception` (indexing pressure, coordinating bytes).
    Rejected429,
    /// 429 `circuit_breaking_exception` from the parent breaker; `durability` is `PERMANENT`
    /// or `TRANSIENT`.
    CircuitBreaker429 { permanent: bool },
    /// 503 `cluster_block_exception` "blocked by: [SERVICE_UNAVAILABLE/2/no master];".
    NoMaster503,
    /// 401 `security_exception` with the three `WWW-Authenticate` headers.
    Unauthorized401,
    /// 413 with an empty body and only `content-length: 0` (Netty answers it before the REST
    /// layer, so there is no `content-type` and no `X-elastic-product`, as with the real node).
    TooLarge413,
    /// Any other status, with an Elasticsearch-shaped `exception` error body.
    Status(u16),
}

impl Fault {
    /// The fault `fail_requests` uses for a status (429 → indexing-pressure rejection).
    pub fn from_status(status: u16) -> Fault {
        match status {
            429 => Fault::Rejected429,
            503 => Fault::NoMaster503,
            401 => Fault::Unauthorized401,
            413 => Fault::TooLarge413,
            other => Fault::Status(other),
        }
    }
}

/// One request the emulator answered.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Percent-decoded path, e.g. `/iaso-checks-lab/_bulk`.
    pub path: String,
    /// Raw query string (still encoded), without `?`.
    pub query: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Body as received (after gzip decompression when `content-encoding: gzip`).
    pub body: Bytes,
    /// Status of the answer.
    pub status: u16,
}

impl RecordedRequest {
    /// First value of a header (name in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Bulk counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BulkStats {
    /// `_bulk` HTTP requests that reached the emulator (including rejected ones).
    pub requests: usize,
    /// Items in bulk requests that were processed (the whole request got a 200).
    pub items: usize,
    pub created_201: usize,
    /// `index` replacing a document, `update`, successful `delete`.
    pub ok_200: usize,
    pub conflicts_409: usize,
    pub rejected_429: usize,
    pub errors_400: usize,
    /// `delete` of a missing document, `update` of a missing one, missing index.
    pub not_found_404: usize,
    /// Every item status.
    pub items_by_status: BTreeMap<u16, usize>,
    /// Bulk requests answered with a non-2xx status, by status.
    pub whole_request_errors: BTreeMap<u16, usize>,
}

enum Control {
    /// Close (true) or re-open (false) the listener; the sender is told when done.
    Down(bool, std::sync::mpsc::Sender<()>),
    Shutdown,
}

/// A running emulator; stops when dropped.
pub struct EsEmulator {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    control: mpsc::UnboundedSender<Control>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EsEmulator {
    /// Starts an emulator that requires no authentication.
    pub fn start() -> EsEmulator {
        EsEmulator::start_with(EmulatorOptions::default())
    }

    pub fn start_with(options: EmulatorOptions) -> EsEmulator {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the emulator to 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let state = Arc::new(Mutex::new(State::new(options)));
        let (control, rx) = mpsc::unbounded_channel();
        let thread_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name(format!("es-emulator-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("emulator runtime");
                runtime.block_on(serve(listener, addr, thread_state, rx));
            })
            .expect("spawn the emulator thread");
        EsEmulator {
            state,
            addr,
            control,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (the port survives `set_down`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ---- faults ----

    /// `true`: the listener closes and every open connection is dropped, so clients get
    /// "connection refused" (and pooled connections fail). `false`: the same port is bound
    /// again. Returns once done.
    pub fn set_down(&self, down: bool) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.control.send(Control::Down(down, tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Delays every answer by `delay` (the request is processed first: a client that times out
    /// may still have had its documents stored, as with a real slow node).
    pub fn set_slow(&self, delay: Option<Duration>) {
        self.state().slow = delay;
    }

    /// The next `n` **`_bulk`** requests get a whole-request error for `status` (see
    /// [`Fault::from_status`]); other endpoints are not affected. Calls queue up in order.
    pub fn fail_requests(&self, status: u16, n: usize) {
        self.fail_requests_with(Fault::from_status(status), n);
    }

    /// Like [`EsEmulator::fail_requests`] with an explicit fault (e.g. the circuit breaker).
    pub fn fail_requests_with(&self, fault: Fault, n: usize) {
        let mut st = self.state();
        st.bulk_faults.extend(std::iter::repeat_n(fault, n));
    }

    /// The next `n` requests to **any** endpoint fail with `status` (checked before the
    /// bulk-only queue).
    pub fn fail_any_requests(&self, status: u16, n: usize) {
        let mut st = self.state();
        st.any_faults
            .extend(std::iter::repeat_n(Fault::from_status(status), n));
    }

    /// Drops every queued fault and item-level injection.
    pub fn clear_faults(&self) {
        let mut st = self.state();
        st.bulk_faults = VecDeque::new();
        st.any_faults = VecDeque::new();
        st.item_429 = None;
        st.reject_field = None;
        st.max_request_bytes = None;
        st.slow = None;
    }

    /// `_bulk` bodies longer than `n` bytes get 413 with an empty body (like
    /// `http.max_content_length`, which real nodes apply to every request).
    pub fn set_max_request_bytes(&self, n: Option<usize>) {
        self.state().max_request_bytes = n;
    }

    /// That share of bulk items (drawn per item, in request order, from a generator seeded
    /// with `seed`) gets a per-item 429 `es_rejected_execution_exception`. A ratio of 0 stops it.
    pub fn set_item_429_ratio(&self, ratio: f64, seed: u64) {
        self.state().item_429 =
            (ratio > 0.0).then(|| (ratio, rand::rngs::StdRng::seed_from_u64(seed)));
    }

    /// Items whose source holds this dotted field get a per-item 400
    /// `document_parsing_exception` (with `caused_by`), like a mapping error.
    pub fn set_reject_field(&self, field: Option<String>) {
        self.state().reject_field = field;
    }

    // ---- assertions ----

    /// Documents in the matching data streams and indices (`*` wildcards, comma lists; data
    /// streams count all their backing indices; a missing name counts 0).
    pub fn count(&self, index_or_pattern: &str) -> usize {
        let st = self.state();
        st.resolve_lenient(index_or_pattern)
            .iter()
            .map(|i| st.indices[i].len())
            .sum()
    }

    /// `_id`s of the matching documents, in the same order as [`EsEmulator::docs`].
    pub fn ids(&self, index_or_pattern: &str) -> Vec<String> {
        let st = self.state();
        st.resolve_lenient(index_or_pattern)
            .iter()
            .flat_map(|i| st.indices[i].docs())
            .map(|d| d.id.clone())
            .collect()
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Forgets the recorded requests (counters stay).
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    pub fn bulk_stats(&self) -> BulkStats {
        self.state().bulk_stats.clone()
    }

    /// Index templates as they were PUT.
    pub fn index_templates(&self) -> BTreeMap<String, Value> {
        self.state().index_templates.clone()
    }

    /// Component templates as they were PUT.
    pub fn component_templates(&self) -> BTreeMap<String, Value> {
        self.state().component_templates.clone()
    }

    /// ILM policies: the `policy` object of each PUT.
    pub fn ilm_policies(&self) -> BTreeMap<String, Value> {
        self.state()
            .ilm
            .iter()
            .map(|(k, v)| (k.clone(), v.policy.clone()))
            .collect()
    }

    /// Names of the data streams.
    pub fn data_streams(&self) -> Vec<String> {
        self.state().data_streams.keys().cloned().collect()
    }

    /// Backing indices of a data stream, oldest first (empty when it does not exist).
    pub fn backing_indices(&self, data_stream: &str) -> Vec<String> {
        self.state()
            .data_streams
            .get(data_stream)
            .map(|d| d.indices.clone())
            .unwrap_or_default()
    }

    /// Current mappings of a concrete index (a data stream gives its write index's).
    pub fn mappings(&self, index: &str) -> Option<Value> {
        let st = self.state();
        let name = match st.data_streams.get(index) {
            Some(ds) => ds.write_index().to_owned(),
            None => index.to_owned(),
        };
        st.indices.get(&name).map(|i| i.mappings.clone())
    }

    /// Rolls a data stream over to a new backing index (`…-00000N+1`). `_id` uniqueness is per
    /// backing index, so a replayed `create` of an older id is stored again afterwards.
    ///
    /// # Panics
    /// When the data stream does not exist.
    pub fn rollover(&self, data_stream: &str) {
        let mut st = self.state();
        assert!(
            st.data_streams.contains_key(data_stream),
            "no data stream [{data_stream}] to roll over"
        );
        st.add_backing_index(data_stream);
    }
}

impl Drop for EsEmulator {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

enum Event {
    Control(Option<Control>),
    Accepted(std::io::Result<TcpStream>),
    Reaped,
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<TcpStream> {
    match listener {
        Some(l) => l.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

/// Binds the port again after a `set_down(true)`; retries briefly in case the kernel has not
/// released it yet.
async fn rebind(addr: SocketAddr) -> TcpListener {
    let mut last = None;
    for _ in 0..200 {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("could not bind {addr} again: {last:?}");
}

/// The emulator's accept loop; owns the listener and every connection task.
async fn serve(
    listener: std::net::TcpListener,
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let mut listener = Some(TcpListener::from_std(listener).expect("tokio listener"));
    let handler: http::Handler = Arc::new(move |req| rest::handle(&state, req));
    let mut connections = JoinSet::new();
    loop {
        let event = tokio::select! {
            cmd = control.recv() => Event::Control(cmd),
            accepted = accept(listener.as_ref()) => Event::Accepted(accepted),
            Some(_) = connections.join_next(), if !connections.is_empty() => Event::Reaped,
        };
        match event {
            Event::Control(None | Some(Control::Shutdown)) => break,
            Event::Control(Some(Control::Down(true, done))) => {
                listener = None;
                connections.shutdown().await;
                let _ = done.send(());
            }
            Event::Control(Some(Control::Down(false, done))) => {
                if listener.is_none() {
                    listener = Some(rebind(addr).await);
                }
                let _ = done.send(());
            }
            Event::Accepted(Ok(stream)) => {
                connections.spawn(http::serve_connection(stream, Arc::clone(&handler)));
            }
            Event::Accepted(Err(_)) | Event::Reaped => {}
        }
    }
    connections.shutdown().await;
}
