//! In-process Elasticsearch stand-in for the faults a real node cannot produce on demand.
//!
//! [`EsEmulator::start`] answers on `127.0.0.1:PORT` from its own OS thread and tokio runtime,
//! so it works under whichever runtime a test uses (actix `System`, `#[tokio::test]`, paused
//! time or not — its own timers run in real time).
//!
//! ```ignore
//! let es = EsEmulator::start();
//! // … run the prober against es.url() …
//! es.fail_requests(503, 2);              // the next two _bulk calls get 503
//! assert_eq!(es.count("iaso-checks-*"), 42);
//! ```
//!
//! Faults: the node down (connection refused, pooled connections dropped) and back on the
//! same port; every answer delayed; a chosen status for the next N `_bulk` requests, the next
//! N requests of any kind, or the next request to one path; a `_bulk` size limit (bare 413);
//! item 429s at a seeded ratio; a per-item 400 for documents holding a chosen field; basic
//! authentication (401).
//!
//! It is not an Elasticsearch: it serves only what the prober sends — `_bulk` with `create`
//! actions (stored by `_index` and `_id`, a repeated id answers 409), `PUT` of the ILM policy
//! and the component and index templates (stored as sent, not validated), `HEAD`/`GET` of an
//! index template, `GET /_ilm/status` — and knows no mappings, data streams, search or
//! settings. Everything Elasticsearch itself decides (mapping conflicts, strict dynamic
//! mapping, real 409/413/429 answers, template validation, data streams) is checked against a
//! real node in `tests/real_es.rs`.

mod bulk;
mod http;
mod rest;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// What the emulated cluster requires from clients.
#[derive(Clone, Debug, Default)]
pub struct EmulatorOptions {
    /// Require HTTP basic authentication with this user and password.
    pub basic_auth: Option<(String, String)>,
}

/// A whole-request failure to inject, with the body shape Elasticsearch sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 `es_rejected_execution_exception` (indexing pressure, coordinating bytes).
    Rejected429,
    /// 503 `cluster_block_exception` "blocked by: [SERVICE_UNAVAILABLE/2/no master];".
    NoMaster503,
    /// 401 `security_exception`.
    Unauthorized401,
    /// 413 with an empty body and no Elasticsearch headers (Netty answers it before the REST
    /// layer).
    TooLarge413,
    /// Any other status, with an Elasticsearch-shaped `exception` error body.
    Status(u16),
    /// A status with this error `type` and `reason`.
    Error {
        status: u16,
        error_type: String,
        reason: String,
    },
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
    /// Percent-decoded path, e.g. `/_index_template/iaso-checks`.
    pub path: String,
    /// Raw query string (still encoded), without `?`.
    pub query: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Body as received.
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
    /// Items of the bulk requests that were processed (the whole request got a 200).
    pub items: usize,
    pub created_201: usize,
    pub conflicts_409: usize,
    pub rejected_429: usize,
    pub errors_400: usize,
    /// Bulk requests answered with a non-2xx status, by status.
    pub whole_request_errors: BTreeMap<u16, usize>,
}

/// The documents written to one `_index` name, in arrival order.
#[derive(Default)]
struct Target {
    ids: HashSet<String>,
    order: Vec<String>,
}

/// Everything the emulator holds, behind one lock.
struct State {
    options: EmulatorOptions,
    slow: Option<Duration>,
    bulk_faults: VecDeque<Fault>,
    any_faults: VecDeque<Fault>,
    /// One-shot faults for the next request to a path.
    path_faults: Vec<(String, Fault)>,
    max_request_bytes: Option<usize>,
    item_429: Option<(f64, StdRng)>,
    reject_field: Option<String>,
    ilm_policies: BTreeMap<String, Value>,
    component_templates: BTreeMap<String, Value>,
    index_templates: BTreeMap<String, Value>,
    targets: BTreeMap<String, Target>,
    requests: Vec<RecordedRequest>,
    bulk_stats: BulkStats,
}

impl State {
    fn new(options: EmulatorOptions) -> State {
        State {
            options,
            slow: None,
            bulk_faults: VecDeque::new(),
            any_faults: VecDeque::new(),
            path_faults: Vec::new(),
            max_request_bytes: None,
            item_429: None,
            reject_field: None,
            ilm_policies: BTreeMap::new(),
            component_templates: BTreeMap::new(),
            index_templates: BTreeMap::new(),
            targets: BTreeMap::new(),
            requests: Vec::new(),
            bulk_stats: BulkStats::default(),
        }
    }

    /// The targets whose name matches a comma list of `*` patterns.
    fn matching(&self, patterns: &str) -> impl Iterator<Item = &Target> {
        let patterns: Vec<String> = patterns.split(',').map(|p| p.trim().to_owned()).collect();
        self.targets
            .iter()
            .filter(move |(name, _)| patterns.iter().any(|p| glob(p, name)))
            .map(|(_, t)| t)
    }
}

/// `*` matches any run of characters (Elasticsearch's index pattern wildcard).
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
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
        let mut st = self.state();
        st.bulk_faults
            .extend(std::iter::repeat_n(Fault::from_status(status), n));
    }

    /// The next `n` requests to **any** endpoint fail with `status` (checked before the
    /// bulk-only queue).
    pub fn fail_any_requests(&self, status: u16, n: usize) {
        let mut st = self.state();
        st.any_faults
            .extend(std::iter::repeat_n(Fault::from_status(status), n));
    }

    /// The next request to exactly this path (any method) gets `fault`; checked first.
    pub fn fail_path(&self, path: &str, fault: Fault) {
        self.state().path_faults.push((path.to_owned(), fault));
    }

    /// `_bulk` bodies longer than `n` bytes get 413 with an empty body (like
    /// `http.max_content_length`, which real nodes apply to every request).
    pub fn set_max_request_bytes(&self, n: Option<usize>) {
        self.state().max_request_bytes = n;
    }

    /// That share of bulk items (drawn per item, in request order, from a generator seeded
    /// with `seed`) gets a per-item 429 `es_rejected_execution_exception`. A ratio of 0 stops it.
    pub fn set_item_429_ratio(&self, ratio: f64, seed: u64) {
        self.state().item_429 = (ratio > 0.0).then(|| (ratio, StdRng::seed_from_u64(seed)));
    }

    /// Items whose source holds this dotted field get a per-item 400
    /// `document_parsing_exception` naming the field (the shape of a mapping conflict; the
    /// real conflict is tested in `tests/real_es.rs`).
    pub fn set_reject_field(&self, field: Option<String>) {
        self.state().reject_field = field;
    }

    // ---- assertions ----

    /// Documents written to the matching `_index` names (`*` wildcards, comma lists; a
    /// missing name counts 0).
    pub fn count(&self, patterns: &str) -> usize {
        self.state().matching(patterns).map(|t| t.order.len()).sum()
    }

    /// `_id`s of the matching documents, by `_index` name then in arrival order.
    pub fn ids(&self, patterns: &str) -> Vec<String> {
        self.state()
            .matching(patterns)
            .flat_map(|t| t.order.iter().cloned())
            .collect()
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
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
        self.state().ilm_policies.clone()
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
