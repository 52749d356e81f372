//! Self-observation: the run's metrics registry and the small API the rest of the prober
//! records into ([`Metrics`]), and the opt-in HTTP listener serving `/metrics` (Prometheus
//! text format 0.0.4), `/healthz` and `/readyz` ([`server`]).
//!
//! Hot paths hold pre-resolved handles (an `Arc` around an atomic): recording a result costs
//! a hash lookup by environment name (no allocation once the environment was seen) and a few
//! atomic adds. Values other modules already count (limiter, tracked jobs, sink buffer,
//! shipper, journal files) are read at scrape time from the sources they registered, so
//! their owners never call into this module at all.

pub mod server;

use crate::model::{Action, ErrorType, JobResult, Outcome, ProbeResult};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    environment: String,
    action: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    environment: String,
    action: String,
    error_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    environment: String,
    check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    environment: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    environment: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobEndLabels {
    environment: String,
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvLabels {
    environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

const OUTCOMES: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Unknown];
const ERROR_TYPES: usize = ErrorType::ALL.len();
const JOB_RESULTS: [JobResult; 6] = JobResult::ALL;

fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Unknown => "unknown",
    }
}

fn outcome_idx(o: Outcome) -> usize {
    match o {
        Outcome::Success => 0,
        Outcome::Failure => 1,
        Outcome::Unknown => 2,
    }
}

fn action_idx(a: Action) -> usize {
    Action::ALL
        .iter()
        .position(|x| *x == a)
        .expect("ALL lists every action")
}

fn error_idx(e: ErrorType) -> usize {
    e as usize
}

fn job_result_idx(r: JobResult) -> usize {
    JOB_RESULTS.iter().position(|x| *x == r).expect("listed")
}

/// Handles of one environment, resolved on first use (one allocation per series, ever).
#[derive(Default)]
struct EnvHandles {
    results: [[Option<Counter>; 3]; 8],
    errors: [[Option<Counter>; ERROR_TYPES]; 8],
    check_up: [Option<Gauge>; 8],
    duration: [Option<Histogram>; 8],
    launched: [Option<Counter>; 2],
    ended: [[Option<Counter>; 6]; 2],
    job_duration: [Option<Histogram>; 2],
}

type GaugeSource = Box<dyn Fn() -> i64 + Send + Sync>;

/// A value another module owns, read at scrape time.
struct EnvSource {
    env: String,
    read: GaugeSource,
}

/// Counters of one environment's limiter (read at scrape).
pub(crate) trait LimiterStats: Send + Sync {
    /// Requests that went through the limiter.
    fn requests(&self) -> u64;
    /// Total time requests waited for a rate permit and an in-flight slot, in µs.
    fn wait_us(&self) -> u64;
    /// Requests waiting now.
    fn queued(&self) -> usize;
}

/// What shipping exposes at scrape, read under its lock (the sink's counters implement it,
/// so this module does not depend on the sink).
pub(crate) trait ShippingCounters: Send + 'static {
    /// The values the scrape reads.
    fn snapshot(&self) -> ShippingSnapshot;
}

/// Shipping's counts at one scrape.
pub(crate) struct ShippingSnapshot {
    /// Bulk requests by HTTP status of the answer (0: no answer, a transport error).
    pub bulk_statuses: std::collections::BTreeMap<u16, u64>,
    pub stored: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    /// Paused or in an outage.
    pub paused: bool,
    /// Journal lines shipping moved past.
    pub lines_done: u64,
    /// `@timestamp` of the oldest unshipped result in the journal directory given (read
    /// after the lock is released).
    pub oldest_unshipped: OldestUnshipped,
}

/// Reads, from the journal directory given, the `@timestamp` of the oldest unshipped result.
pub(crate) type OldestUnshipped = Box<dyn FnOnce(&Path) -> Option<chrono::DateTime<chrono::Utc>>>;

/// What shipping exposes at scrape.
struct ShippingSource {
    snapshot: Box<dyn Fn() -> ShippingSnapshot + Send + Sync>,
    /// Journal lines unshipped when shipping started (before this run produced any).
    base_backlog: u64,
}

/// The run's metrics. One per `run()`; shared as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    results: Family<ResultLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    check_up: Family<CheckLabels, Gauge>,
    duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    jobs_launched: Family<JobLabels, Counter>,
    jobs_ended: Family<JobEndLabels, Counter>,
    job_duration: Family<JobLabels, Histogram, fn() -> Histogram>,
    jobs_tracked: Family<EnvLabels, Gauge>,
    limiter_requests: Family<EnvLabels, Gauge>,
    limiter_wait: Family<EnvLabels, Gauge<f64, AtomicU64>>,
    limiter_queued: Family<EnvLabels, Gauge>,
    sink_buffer_used: Gauge,
    sink_buffer_capacity: Gauge,
    journal_written: Counter,
    journal_bytes: Gauge,
    journal_segments: Gauge,
    journal_writable: Gauge,
    backlog_docs: Gauge,
    backlog_age: Gauge<f64, AtomicU64>,
    bulk_requests: Family<StatusLabels, Gauge>,
    stored: Gauge,
    duplicates: Gauge,
    dead_letters: Gauge,
    shipping_paused: Gauge,
    start_time: Gauge,
    envs: Mutex<HashMap<String, EnvHandles>>,
    trackers: Mutex<Vec<EnvSource>>,
    limiters: Mutex<Vec<(String, Arc<dyn LimiterStats>)>>,
    sink_buffer: Mutex<Option<GaugeSource>>,
    journal_dir: Mutex<Option<PathBuf>>,
    shipping: Mutex<Option<ShippingSource>>,
    /// Written by the sink on every result: the journal's line count this run.
    written: AtomicU64,
    ready: Readiness,
}

/// What `/readyz` answers from.
#[derive(Default)]
pub(crate) struct Readiness {
    started: AtomicBool,
    stopping: AtomicBool,
    journal_failing: AtomicBool,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn job_histogram() -> Histogram {
    // 1 s … ~9 h.
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("written", &self.written())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The registry with every metric registered.
    // Long on purpose: one registration per metric (name, help, handle), a flat list in the
    // order `/metrics` serves them.
    pub fn new() -> Self {
        let mut reg = Registry::with_prefix("iaso_probe");
        let results = Family::<ResultLabels, Counter>::default();
        reg.register(
            "results",
            "Results recorded (journaled), by environment, action and event.outcome",
            results.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        reg.register(
            "result_errors",
            "Results carrying an error, by environment, action and error.type",
            errors.clone(),
        );
        let check_up = Family::<CheckLabels, Gauge>::default();
        reg.register(
            "check_up",
            "Last status of each check: 1 up (success), 0 down",
            check_up.clone(),
        );
        let duration = Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        reg.register_with_unit(
            "request_duration",
            "Duration of the portal requests, per environment and endpoint (event.action)",
            Unit::Seconds,
            duration.clone(),
        );
        let jobs_launched = Family::<JobLabels, Counter>::default();
        reg.register(
            "jobs_launched",
            "Jobs the portal accepted",
            jobs_launched.clone(),
        );
        let jobs_ended = Family::<JobEndLabels, Counter>::default();
        reg.register(
            "jobs_ended",
            "Tracked jobs that ended, by iaso.job.result",
            jobs_ended.clone(),
        );
        let job_duration =
            Family::<JobLabels, Histogram, fn() -> Histogram>::new_with_constructor(job_histogram);
        reg.register_with_unit(
            "job_duration",
            "Whole-job durations (launch to job.end)",
            Unit::Seconds,
            job_duration.clone(),
        );
        let jobs_tracked = Family::<EnvLabels, Gauge>::default();
        reg.register(
            "jobs_tracked",
            "Jobs tracked now (launches in flight included)",
            jobs_tracked.clone(),
        );
        let limiter_requests = Family::<EnvLabels, Gauge>::default();
        reg.register(
            "limiter_requests",
            "Requests paced by the environment's rate limiter (a counter read at scrape)",
            limiter_requests.clone(),
        );
        let limiter_wait = Family::<EnvLabels, Gauge<f64, AtomicU64>>::default();
        reg.register_with_unit(
            "limiter_wait",
            "Total time requests waited for a rate permit and an in-flight slot (a counter read at scrape)",
            Unit::Seconds,
            limiter_wait.clone(),
        );
        let limiter_queued = Family::<EnvLabels, Gauge>::default();
        reg.register(
            "limiter_queued_requests",
            "Requests waiting for a rate permit now",
            limiter_queued.clone(),
        );
        let sink_buffer_used = Gauge::default();
        reg.register(
            "sink_buffer_used",
            "Results handed to the sink and not yet taken (back-pressure beyond sink.buffer)",
            sink_buffer_used.clone(),
        );
        let sink_buffer_capacity = Gauge::default();
        reg.register(
            "sink_buffer_capacity",
            "sink.buffer",
            sink_buffer_capacity.clone(),
        );
        let journal_written = Counter::default();
        reg.register(
            "journal_results_written",
            "Results appended to the journal by this process",
            journal_written.clone(),
        );
        let journal_bytes = Gauge::default();
        reg.register_with_unit(
            "journal",
            "Size of the journal segments on disk",
            Unit::Bytes,
            journal_bytes.clone(),
        );
        let journal_segments = Gauge::default();
        reg.register(
            "journal_segments",
            "Journal segment files on disk",
            journal_segments.clone(),
        );
        let journal_writable = Gauge::default();
        reg.register(
            "journal_writable",
            "1 while the journal takes writes, 0 while the disk refuses them",
            journal_writable.clone(),
        );
        let backlog_docs = Gauge::default();
        reg.register(
            "shipping_backlog_documents",
            "Journal lines not yet stored in Elasticsearch (nor dead-lettered)",
            backlog_docs.clone(),
        );
        let backlog_age = Gauge::<f64, AtomicU64>::default();
        reg.register_with_unit(
            "shipping_oldest_unshipped_age",
            "Age of the oldest unshipped result (0 when caught up)",
            Unit::Seconds,
            backlog_age.clone(),
        );
        let bulk_requests = Family::<StatusLabels, Gauge>::default();
        reg.register(
            "bulk_requests",
            "Bulk requests sent to Elasticsearch, by HTTP status (transport_error: no answer; a counter read at scrape)",
            bulk_requests.clone(),
        );
        let stored = Gauge::default();
        reg.register(
            "shipped_documents",
            "Documents newly stored in Elasticsearch (a counter read at scrape)",
            stored.clone(),
        );
        let duplicates = Gauge::default();
        reg.register(
            "shipped_duplicate_documents",
            "Documents Elasticsearch already had (409 on create; a counter read at scrape)",
            duplicates.clone(),
        );
        let dead_letters = Gauge::default();
        reg.register(
            "dead_letter_documents",
            "Documents refused for good and written to the dead-letter file (a counter read at scrape)",
            dead_letters.clone(),
        );
        let shipping_paused = Gauge::default();
        reg.register(
            "shipping_paused",
            "1 while shipping is paused (Elasticsearch unreachable or refusing), else 0",
            shipping_paused.clone(),
        );
        let start_time = Gauge::default();
        reg.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Unit::Seconds,
            start_time.clone(),
        );
        start_time.set(chrono::Utc::now().timestamp());
        let build = Family::<BuildLabels, Gauge>::default();
        reg.register(
            "build_info",
            "Version of the prober (always 1)",
            build.clone(),
        );
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        journal_writable.set(1);
        Self {
            registry: reg,
            results,
            errors,
            check_up,
            duration,
            jobs_launched,
            jobs_ended,
            job_duration,
            jobs_tracked,
            limiter_requests,
            limiter_wait,
            limiter_queued,
            sink_buffer_used,
            sink_buffer_capacity,
            journal_written,
            journal_bytes,
            journal_segments,
            journal_writable,
            backlog_docs,
            backlog_age,
            bulk_requests,
            stored,
            duplicates,
            dead_letters,
            shipping_paused,
            start_time,
            envs: Mutex::new(HashMap::new()),
            trackers: Mutex::new(Vec::new()),
            limiters: Mutex::new(Vec::new()),
            sink_buffer: Mutex::new(None),
            journal_dir: Mutex::new(None),
            shipping: Mutex::new(None),
            written: AtomicU64::new(0),
            ready: Readiness::default(),
        }
    }

    /// Records one result the sink journaled (called by the sink only, on its thread).
    pub fn record(&self, r: &ProbeResult) {
        self.journal_written.inc();
        self.written.fetch_add(1, Ordering::Relaxed);
        let env = r.service.environment.as_str();
        let mut envs = self.envs.lock().unwrap();
        if !envs.contains_key(env) {
            envs.insert(env.to_owned(), EnvHandles::default());
        }
        let h = envs.get_mut(env).expect("inserted");
        let action = r.event.action;
        let a = action_idx(action);
        let o = outcome_idx(r.event.outcome);
        h.results[a][o]
            .get_or_insert_with(|| {
                self.results.get_or_create_owned(&ResultLabels {
                    environment: env.into(),
                    action: action.as_str().into(),
                    outcome: outcome_str(OUTCOMES[o]).into(),
                })
            })
            .inc();
        if let Some(e) = &r.error {
            h.errors[a][error_idx(e.kind)]
                .get_or_insert_with(|| {
                    self.errors.get_or_create_owned(&ErrorLabels {
                        environment: env.into(),
                        action: action.as_str().into(),
                        error_type: e.kind.as_str().into(),
                    })
                })
                .inc();
        }
        // Health reports one result per component: the overall one carries the request.
        let per_component = r
            .iaso
            .health
            .as_ref()
            .is_some_and(|c| c.component != "_overall");
        self.record_check_up(h, r, env, per_component);
        self.record_duration(h, r, env, per_component);
        self.record_jobs(h, r, env);
    }

    /// `check_up`: the last outcome of each check (the overall result of a health check).
    fn record_check_up(&self, h: &mut EnvHandles, r: &ProbeResult, env: &str, per_component: bool) {
        let action = r.event.action;
        let a = action_idx(action);
        let is_check = matches!(
            action,
            Action::Liveness | Action::Health | Action::ResponseTime | Action::Auth
        );
        if is_check && !per_component && r.event.outcome != Outcome::Unknown {
            h.check_up[a]
                .get_or_insert_with(|| {
                    self.check_up.get_or_create_owned(&CheckLabels {
                        environment: env.into(),
                        check: action.as_str().into(),
                    })
                })
                .set(i64::from(r.event.outcome == Outcome::Success));
        }
    }

    /// Request durations by endpoint, job durations by kind.
    fn record_duration(&self, h: &mut EnvHandles, r: &ProbeResult, env: &str, per_component: bool) {
        let action = r.event.action;
        let a = action_idx(action);
        if let Some(ns) = r.event.duration {
            let secs = ns as f64 / 1e9;
            if action == Action::JobEnd {
                if let Some(j) = &r.iaso.job {
                    let k = j.kind as usize;
                    h.job_duration[k]
                        .get_or_insert_with(|| {
                            self.job_duration.get_or_create_owned(&JobLabels {
                                environment: env.into(),
                                kind: j.kind.as_str().into(),
                            })
                        })
                        .observe(secs);
                }
            } else if !per_component {
                h.duration[a]
                    .get_or_insert_with(|| {
                        self.duration.get_or_create_owned(&EndpointLabels {
                            environment: env.into(),
                            endpoint: action.as_str().into(),
                        })
                    })
                    .observe(secs);
            }
        }
    }

    /// Jobs launched and ended.
    fn record_jobs(&self, h: &mut EnvHandles, r: &ProbeResult, env: &str) {
        let action = r.event.action;
        if let Some(j) = &r.iaso.job {
            let k = j.kind as usize;
            if matches!(action, Action::BackupLaunch | Action::RestoreLaunch)
                && r.event.outcome == Outcome::Success
            {
                h.launched[k]
                    .get_or_insert_with(|| {
                        self.jobs_launched.get_or_create_owned(&JobLabels {
                            environment: env.into(),
                            kind: j.kind.as_str().into(),
                        })
                    })
                    .inc();
            }
            if let (Action::JobEnd, Some(res)) = (action, j.result) {
                h.ended[k][job_result_idx(res)]
                    .get_or_insert_with(|| {
                        self.jobs_ended.get_or_create_owned(&JobEndLabels {
                            environment: env.into(),
                            kind: j.kind.as_str().into(),
                            result: res.as_str().into(),
                        })
                    })
                    .inc();
            }
        }
    }

    /// Tracked jobs of `env`, read at scrape (the job tracker's count).
    pub(crate) fn track_jobs(&self, env: &str, read: impl Fn() -> usize + Send + Sync + 'static) {
        self.trackers.lock().unwrap().push(EnvSource {
            env: env.into(),
            read: Box::new(move || read() as i64),
        });
    }

    /// An environment's limiter, read at scrape.
    pub(crate) fn track_limiter(&self, env: &str, stats: Arc<dyn LimiterStats>) {
        self.limiters.lock().unwrap().push((env.into(), stats));
    }

    /// The sink's buffer: capacity and a reader of the slots in use.
    pub(crate) fn track_sink_buffer(
        &self,
        capacity: usize,
        used: impl Fn() -> usize + Send + Sync + 'static,
    ) {
        self.sink_buffer_capacity.set(capacity as i64);
        *self.sink_buffer.lock().unwrap() = Some(Box::new(move || used() as i64));
    }

    /// The journal directory (segment count and bytes are read at scrape).
    pub(crate) fn track_journal(&self, dir: PathBuf) {
        *self.journal_dir.lock().unwrap() = Some(dir);
    }

    /// Shipping's counters; `base_backlog`: journal lines unshipped before this run wrote any.
    pub(crate) fn track_shipping<C: ShippingCounters>(
        &self,
        counters: Arc<Mutex<C>>,
        base_backlog: u64,
    ) {
        *self.shipping.lock().unwrap() = Some(ShippingSource {
            snapshot: Box::new(move || counters.lock().unwrap().snapshot()),
            base_backlog,
        });
    }

    /// Results the sink appended this run.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// The journal's state as the sink sees it (for `/readyz` and `journal_writable`).
    pub(crate) fn set_journal_failing(&self, failing: bool) {
        self.ready.journal_failing.store(failing, Ordering::Relaxed);
        self.journal_writable.set(i64::from(!failing));
    }

    /// The configuration is loaded and the tree started.
    pub(crate) fn set_started(&self) {
        self.ready.started.store(true, Ordering::Relaxed);
    }

    /// The run is stopping: `/readyz` answers 503 from now on.
    pub(crate) fn set_stopping(&self) {
        self.ready.stopping.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready, else why not.
    pub(crate) fn readiness(&self) -> Result<(), &'static str> {
        if self.ready.stopping.load(Ordering::Relaxed) {
            Err("shutting down")
        } else if !self.ready.started.load(Ordering::Relaxed) {
            Err("starting")
        } else if self.ready.journal_failing.load(Ordering::Relaxed) {
            Err("journal not writable")
        } else {
            Ok(())
        }
    }

    /// Reads the registered sources into their gauges.
    fn refresh(&self) {
        for s in self.trackers.lock().unwrap().iter() {
            self.jobs_tracked
                .get_or_create(&EnvLabels {
                    environment: s.env.clone(),
                })
                .set((s.read)());
        }
        for (env, l) in self.limiters.lock().unwrap().iter() {
            let labels = EnvLabels {
                environment: env.clone(),
            };
            self.limiter_requests
                .get_or_create(&labels)
                .set(l.requests() as i64);
            self.limiter_wait
                .get_or_create(&labels)
                .set(l.wait_us() as f64 / 1e6);
            self.limiter_queued
                .get_or_create(&labels)
                .set(l.queued() as i64);
        }
        if let Some(used) = self.sink_buffer.lock().unwrap().as_ref() {
            self.sink_buffer_used.set(used());
        }
        let dir = self.journal_dir.lock().unwrap().clone();
        if let Some(dir) = &dir {
            let (mut n, mut bytes) = (0i64, 0i64);
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    if name.starts_with("results-") && name.ends_with(".ndjson") {
                        n += 1;
                        bytes += e.metadata().map_or(0, |m| m.len() as i64);
                    }
                }
            }
            self.journal_segments.set(n);
            self.journal_bytes.set(bytes);
        }
        let shipping = self.shipping.lock().unwrap();
        if let Some(s) = shipping.as_ref() {
            let c = (s.snapshot)();
            for (status, n) in &c.bulk_statuses {
                let status = if *status == 0 {
                    "transport_error".to_string()
                } else {
                    status.to_string()
                };
                self.bulk_requests
                    .get_or_create(&StatusLabels { status })
                    .set(*n as i64);
            }
            self.stored.set(c.stored as i64);
            self.duplicates.set(c.duplicates as i64);
            self.dead_letters.set(c.dead_lettered as i64);
            self.shipping_paused.set(i64::from(c.paused));
            let backlog = (s.base_backlog + self.written()).saturating_sub(c.lines_done);
            self.backlog_docs.set(backlog as i64);
            let age = match (&dir, backlog) {
                (_, 0) | (None, _) => 0.0,
                (Some(dir), _) => (c.oldest_unshipped)(dir).map_or(0.0, |t| {
                    (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1e3
                }),
            };
            self.backlog_age.set(age);
        }
    }

    /// The scrape: every family in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        self.refresh();
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The process start time (seconds since the epoch).
    pub fn start_time(&self) -> i64 {
        self.start_time.get()
    }
}

/// The `Content-Type` of [`Metrics::render`].
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResultContext;

    #[test]
    fn error_type_indices_cover_the_closed_list() {
        for t in ErrorType::ALL {
            assert!(error_idx(t) < ERROR_TYPES, "{t:?}");
        }
    }

    #[test]
    fn a_result_moves_its_counters_and_the_last_check_status() {
        let m = Metrics::new();
        let ctx = ResultContext::new("r", "lab", "o");
        m.record(
            &ctx.result(Action::Liveness, Outcome::Success)
                .with_duration(std::time::Duration::from_millis(12)),
        );
        m.record(
            &ctx.result(Action::Liveness, Outcome::Failure)
                .with_error(ErrorType::Connect, "refused"),
        );
        let text = m.render();
        assert!(text.contains(
            "iaso_probe_results_total{environment=\"lab\",action=\"liveness\",outcome=\"success\"} 1"
        ), "{text}");
        assert!(text.contains("iaso_probe_result_errors_total{environment=\"lab\",action=\"liveness\",error_type=\"connect\"} 1"), "{text}");
        assert!(
            text.contains("iaso_probe_check_up{environment=\"lab\",check=\"liveness\"} 0"),
            "{text}"
        );
        assert!(text.contains("iaso_probe_request_duration_seconds_count{environment=\"lab\",endpoint=\"liveness\"} 1"), "{text}");
        assert!(text.contains("iaso_probe_build_info{version="), "{text}");
    }

    #[test]
    fn readiness_says_why_not() {
        let m = Metrics::new();
        assert_eq!(m.readiness(), Err("starting"));
        m.set_started();
        assert_eq!(m.readiness(), Ok(()));
        m.set_journal_failing(true);
        assert_eq!(m.readiness(), Err("journal not writable"));
        m.set_journal_failing(false);
        m.set_stopping();
        assert_eq!(m.readiness(), Err("shutting down"));
    }
}
