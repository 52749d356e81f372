//! The shipper wires the stages: journal reader → encoder → bulk call → retry classification
//! → dead-letter file → checkpoint. Every document that reached the journal ends up in
//! Elasticsearch exactly once (deterministic `_id` + `create`: a replay answers 409) or in
//! the dead-letter file with its reason; the checkpoint advances only past those.

use super::bulk;
use super::checkpoint::{Checkpoint, Position};
use super::dead_letter::{self, DeadLetter};
use super::disk::{DiskFaults, RetryBackoff};
use super::encoder::{self, BulkDoc};
use super::reader::JournalReader;
use super::retry::{jittered, ItemVerdict, RequestVerdict, SendBackoff};
use crate::config::{ElasticsearchConfig, JournalConfig};
use crate::setup::SetupRequest;
use elasticsearch::Elasticsearch;
use futures_util::stream::{FuturesOrdered, StreamExt};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::VecDeque;
use std::io;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Observable state of shipping.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ShipperCounters {
    /// Documents newly stored (201).
    pub stored: u64,
    /// Documents Elasticsearch already had (409 on create: a replay).
    pub duplicates: u64,
    /// Documents refused for good, now in the dead-letter file.
    pub dead_lettered: u64,
    /// Document sends retried (item 429/5xx or whole-request failures).
    pub retried: u64,
    /// Bulk requests sent.
    pub requests: u64,
    /// Batches split after a 413.
    pub splits: u64,
    /// Journal lines skipped because a crash tore them.
    pub torn_lines: u64,
    /// Why shipping is paused (401/403/404), if it is.
    pub paused: Option<String>,
    /// The last retryable error seen.
    pub last_error: Option<String>,
    /// Where shipping stands: everything before is stored or dead-lettered. Ahead of the
    /// saved checkpoint while the disk refuses to save it.
    pub position: Position,
    /// Failed attempts to save the checkpoint (retried with backoff; shipping goes on).
    pub checkpoint_errors: u64,
    /// Bulk requests by HTTP status of the answer (0: no answer, a transport error).
    pub bulk_statuses: std::collections::BTreeMap<u16, u64>,
    /// Since when whole bulk requests fail (Elasticsearch unreachable, 429/5xx, or refusing):
    /// shipping is paused until an answer with items comes back.
    pub outage_since: Option<chrono::DateTime<chrono::Utc>>,
    /// Journal lines shipping moved past (stored, duplicates, dead letters, torn lines).
    pub lines_done: u64,
    /// Item rejections (retried or dead-lettered) not yet reported in a log line.
    #[serde(skip)]
    pub rejections_unlogged: u64,
    #[serde(skip)]
    pub rejections_logged_at: Option<std::time::Instant>,
    #[serde(skip)]
    pub outage_logged_at: Option<std::time::Instant>,
    /// The current outage was announced ("shipping paused"): its end is too.
    #[serde(skip)]
    pub outage_announced: bool,
    /// Short outages not announced (they came within a minute of the last line).
    #[serde(skip)]
    pub outages_unlogged: u64,
}

/// Item rejections are logged at most once per this interval (with the count since the last line).
pub(crate) const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// While shipping stays paused, a reminder at most this often.
pub(crate) const OUTAGE_REMINDER_INTERVAL: Duration = Duration::from_secs(60);

/// Journal lines not yet shipped: those unshipped when the shipper started, plus what this
/// process appended since (the metrics' count), less what shipping moved past.
#[derive(Clone)]
pub(crate) struct Backlog {
    base: u64,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Backlog {
    pub fn documents(&self, counters: &ShipperCounters) -> u64 {
        let written = self.metrics.as_ref().map_or(0, |m| m.written());
        (self.base + written).saturating_sub(counters.lines_done)
    }
}

/// Longest wait between two tries of a failing checkpoint or dead-letter write.
pub(crate) const MAX_DISK_RETRY_WAIT: Duration = Duration::from_secs(30);

/// What `ship --dead-letter` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResendReport {
    /// Documents read back from the dead-letter file and sent again.
    pub sent: u64,
    pub stored: u64,
    pub duplicates: u64,
    /// Refused again: kept in the file with the new reason.
    pub refused: u64,
    /// Lines kept as they were (not a document that can be sent).
    pub kept: u64,
}

pub struct Shipper {
    client: Elasticsearch,
    cfg: ElasticsearchConfig,
    /// `cfg.max_in_flight` and `cfg.batch_max_docs`, which validation keeps above 0.
    max_in_flight: NonZeroUsize,
    batch_max_docs: NonZeroUsize,
    journal: JournalConfig,
    checkpoint: Checkpoint,
    dead_letter_path: PathBuf,
    counters: Arc<Mutex<ShipperCounters>>,
    seed: u64,
    /// Templates to make sure of before the first document is sent (data streams need
    /// their template: without it Elasticsearch would create plain, dynamically mapped indices).
    setup: Option<Vec<SetupRequest>>,
    /// In memory, the truth: everything before is stored or durably dead-lettered. The
    /// checkpoint file follows it when the disk lets it; shipping never re-reads it (re-reading
    /// a checkpoint that could not be saved re-sent the same batches in a loop).
    position: Position,
    /// The position last saved in the checkpoint file.
    saved: Position,
    checkpoint_backoff: RetryBackoff,
    /// A checkpoint save running on the blocking pool (at most one: saves stay in order),
    /// and the position it saves.
    saving: Option<(Position, tokio::task::JoinHandle<io::Result<()>>)>,
    /// A batch whose dead letters the disk refused: its end and those dead letters. Nothing
    /// moves past it until they are written.
    blocked: Option<(Position, Vec<DeadLetter>, u64)>,
    faults: DiskFaults,
    backlog: Backlog,
}

impl Shipper {
    /// A shipper of `journal` to `client`. `cfg` is a validated one: a zero
    /// `max_in_flight` or `batch_max_docs` (which validation rejects) is refused here.
    pub fn new(
        client: Elasticsearch,
        cfg: ElasticsearchConfig,
        journal: JournalConfig,
    ) -> io::Result<Self> {
        let (Some(max_in_flight), Some(batch_max_docs)) = (
            NonZeroUsize::new(cfg.max_in_flight),
            NonZeroUsize::new(cfg.batch_max_docs),
        ) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "elasticsearch.max_in_flight and elasticsearch.batch_max_docs must be greater than 0",
            ));
        };
        std::fs::create_dir_all(&journal.dir)?;
        let checkpoint = Checkpoint::new(&journal.dir);
        let position = checkpoint.load()?;
        let dead_letter_path = cfg
            .dead_letter_file
            .clone()
            .unwrap_or_else(|| journal.dir.join("dead-letter.ndjson"));
        let tick = Duration::from_millis(cfg.batch_max_wait_ms.max(10));
        Ok(Self {
            client,
            cfg,
            max_in_flight,
            batch_max_docs,
            journal,
            checkpoint,
            dead_letter_path,
            counters: Arc::new(Mutex::new(ShipperCounters {
                position,
                ..Default::default()
            })),
            seed: rand::random(),
            setup: None,
            position,
            saved: position,
            checkpoint_backoff: RetryBackoff::new(tick, MAX_DISK_RETRY_WAIT),
            saving: None,
            blocked: None,
            faults: DiskFaults::default(),
            backlog: Backlog {
                base: 0,
                metrics: None,
            },
        })
    }

    /// Exposes shipping in `metrics` (backlog, bulk requests, dead letters). Call before
    /// anything is appended to the journal by this process: the backlog starts from the
    /// journal's unshipped lines counted now.
    pub(crate) fn set_metrics(&mut self, metrics: Arc<crate::metrics::Metrics>) {
        let base = self.remaining().unwrap_or(0);
        metrics.track_shipping(self.counters.clone(), base);
        self.backlog = Backlog {
            base,
            metrics: Some(metrics),
        };
    }

    /// Writes of the checkpoint and the dead-letter file go through `faults` (tests).
    pub fn set_disk_faults(&mut self, faults: DiskFaults) {
        self.checkpoint = Checkpoint::new(&self.journal.dir).with_faults(faults.clone());
        self.faults = faults;
    }

    /// Where shipping stands (may be ahead of the saved checkpoint).
    pub fn position(&self) -> Position {
        self.position
    }

    /// Journal lines after [`position`](Self::position).
    /// (A batch blocked on its dead letters is not past the position: it counts.)
    pub(crate) fn remaining(&self) -> io::Result<u64> {
        JournalReader::count_remaining(&self.journal.dir, self.position)
    }

    /// True when everything the journal holds is stored or durably dead-lettered.
    pub fn caught_up(&self) -> bool {
        self.blocked.is_none() && self.remaining().is_ok_and(|n| n == 0)
    }

    /// Moves past a completed batch and saves the checkpoint when the disk allows.
    async fn advance(&mut self, end: Position, lines: u64) {
        self.position = end;
        {
            let mut c = self.counters.lock().unwrap();
            c.position = end;
            c.lines_done += lines;
        }
        self.save_checkpoint_off_thread(false).await;
    }

    /// Saves the position (`force`: even before the backoff allows it, for the stop), then
    /// applies the retention to the segments it is past. A failure is logged and retried
    /// with backoff; shipping goes on from memory (a restart would re-send since the last
    /// saved checkpoint: Elasticsearch answers 409, no duplicate). On this thread: for the
    /// end of `ship` and tests; shipping itself uses [`Self::save_checkpoint_off_thread`].
    pub fn save_checkpoint(&mut self, force: bool) {
        if let Some(pos) = self.checkpoint_due(force) {
            let res = save_and_retain(&self.checkpoint, pos, &self.journal);
            self.checkpoint_saved(pos, res);
        }
    }

    /// [`save_checkpoint`](Self::save_checkpoint) on the blocking pool (its two fsyncs and
    /// the retention's deletions must not block the arbiter shipping shares). The save runs
    /// while shipping goes on; while one runs, a later position waits for the next call
    /// (`force`: waits for it, then saves). One at a time, so saves stay in order;
    /// [`ship_available`](Self::ship_available) waits for the last before it returns.
    async fn save_checkpoint_off_thread(&mut self, force: bool) {
        if !force && self.saving.as_ref().is_some_and(|(_, h)| !h.is_finished()) {
            return;
        }
        self.saved_off_thread().await;
        let Some(pos) = self.checkpoint_due(force) else {
            return;
        };
        let (checkpoint, journal) = (self.checkpoint.clone(), self.journal.clone());
        let save = tokio::task::spawn_blocking(move || save_and_retain(&checkpoint, pos, &journal));
        self.saving = Some((pos, save));
        if force {
            self.saved_off_thread().await;
        }
    }

    /// Waits for the save running on the blocking pool, if any, and notes its outcome.
    async fn saved_off_thread(&mut self) {
        if let Some((pos, save)) = self.saving.take() {
            let res = joined(save.await).and_then(|r| r);
            self.checkpoint_saved(pos, res);
        }
    }

    /// The position to save now, if any.
    fn checkpoint_due(&self, force: bool) -> Option<Position> {
        let due = force || self.checkpoint_backoff.due(tokio::time::Instant::now());
        (self.position != self.saved && due).then_some(self.position)
    }

    fn checkpoint_saved(&mut self, pos: Position, res: io::Result<()>) {
        let now = tokio::time::Instant::now();
        match res {
            Ok(()) => {
                self.saved = pos;
                let failures = self.checkpoint_backoff.succeeded();
                if failures > 0 {
                    tracing::info!(failures, "shipping checkpoint saved again");
                }
            }
            Err(e) => {
                let first = self.checkpoint_backoff.failures() == 0;
                let wait = self.checkpoint_backoff.failed(now);
                self.counters.lock().unwrap().checkpoint_errors += 1;
                if first {
                    tracing::error!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot save the shipping checkpoint; shipping goes on (a restart before it is saved re-sends since the last one, Elasticsearch drops the duplicates)");
                } else {
                    tracing::warn!(error = %e, failures = self.checkpoint_backoff.failures(), retry_in_ms = wait.as_millis() as u64, "shipping checkpoint still cannot be saved");
                }
            }
        }
    }

    /// Installs `plan` (when its index templates are missing) before shipping anything.
    pub fn require_setup(&mut self, plan: Vec<SetupRequest>) {
        self.setup = Some(plan);
    }

    /// True once the templates are known to be in place.
    async fn ensure_setup(&mut self) -> bool {
        let Some(plan) = &self.setup else { return true };
        let mut missing = false;
        for r in plan
            .iter()
            .filter(|r| r.path.starts_with("/_index_template/"))
        {
            let res = self
                .client
                .send(
                    elasticsearch::http::Method::Head,
                    &r.path,
                    elasticsearch::http::headers::HeaderMap::new(),
                    Option::<&()>::None,
                    Option::<elasticsearch::http::request::JsonBody<()>>::None,
                    None,
                )
                .await;
            match res {
                Ok(resp) if resp.status_code().is_success() => {}
                Ok(resp) if resp.status_code().as_u16() == 404 => missing = true,
                Ok(resp) => {
                    self.setup_failed(format!(
                        "checking {}: HTTP {}",
                        r.path,
                        resp.status_code().as_u16()
                    ));
                    return false;
                }
                Err(e) => {
                    self.setup_failed(format!(
                        "checking {}: transport error: {}",
                        r.path,
                        bulk::root_cause(&e)
                    ));
                    return false;
                }
            }
        }
        if missing {
            match crate::setup::install_elasticsearch(&self.client, plan).await {
                Ok(n) => {
                    tracing::info!(requests = n, "installed the ILM policy and index templates")
                }
                Err(e) => {
                    self.setup_failed(e.to_string());
                    return false;
                }
            }
        }
        self.setup = None;
        true
    }

    fn setup_failed(&self, why: String) {
        let mut c = self.counters.lock().unwrap();
        // Say it once per distinct error, not once per retry tick.
        if c.last_error.as_deref() != Some(why.as_str()) {
            tracing::warn!(error = %why, "index templates not verified yet; shipping waits for them (the journal keeps everything)");
        }
        c.last_error = Some(why);
    }

    /// Shared view of the counters.
    pub fn counters(&self) -> Arc<Mutex<ShipperCounters>> {
        self.counters.clone()
    }

    pub(crate) fn dead_letter_path(&self) -> &Path {
        &self.dead_letter_path
    }

    /// Ships everything the journal holds now, `max_in_flight` bulk requests at a time;
    /// returns the documents handled. Retries until each document is stored or
    /// dead-lettered (so it only returns early on an I/O error of the journal itself).
    pub async fn ship_available(&mut self) -> io::Result<u64> {
        if !self.ensure_setup().await {
            return Ok(0);
        }
        // Dead letters the disk refused last time go first: nothing moves past them.
        if let Some((end, dead, n)) = self.blocked.take() {
            let (dead, written) = self.write_dead_letters(dead).await;
            if let Err(e) = written {
                self.blocked = Some((end, dead, n));
                return Err(e);
            }
            self.advance(end, n).await;
        }
        self.save_checkpoint_off_thread(false).await;
        let mut reader = JournalReader::new(&self.journal.dir, self.position);
        let mut inflight = FuturesOrdered::new();
        let mut handled = 0u64;
        let mut exhausted = false;
        let mut disk_error = None;
        loop {
            while !exhausted && disk_error.is_none() && inflight.len() < self.max_in_flight.get() {
                let lines =
                    match reader.read_batch(self.cfg.batch_max_docs, self.cfg.batch_max_bytes) {
                        Ok(lines) => lines,
                        Err(e) => {
                            self.saved_off_thread().await;
                            return Err(e);
                        }
                    };
                let Some(end) = lines.last().map(|l| l.end) else {
                    exhausted = true;
                    break;
                };
                let (docs, mut dead) = encode_batch(lines);
                let n = docs.len() + dead.len();
                self.counters.lock().unwrap().torn_lines = reader.torn;
                let fut = send_all(
                    self.client.clone(),
                    docs,
                    self.cfg.clone(),
                    self.counters.clone(),
                    self.seed.wrapping_add(end.offset ^ end.segment),
                    self.backlog.clone(),
                );
                inflight.push_back(async move {
                    let mut more = fut.await;
                    dead.append(&mut more);
                    (end, dead, n)
                });
            }
            let Some((end, dead, n)) = inflight.next().await else {
                break;
            };
            if disk_error.is_some() {
                // Sent after the blocked batch: sent again once it is unblocked (409s).
                continue;
            }
            let (dead, written) = self.write_dead_letters(dead).await;
            if let Err(e) = written {
                self.blocked = Some((end, dead, n as u64));
                disk_error = Some(e);
                continue;
            }
            self.advance(end, n as u64).await;
            handled += n as u64;
        }
        // The last batches' positions may have come while a save ran (they wait for the
        // next call): save the final one now, so a return means the position is saved
        // (when the disk and the backoff allow), as when saves ran inline.
        self.saved_off_thread().await;
        self.save_checkpoint_off_thread(false).await;
        self.saved_off_thread().await;
        match disk_error {
            Some(e) => Err(e),
            None => Ok(handled),
        }
    }

    /// Follows the journal until `stop` turns true, shipping every `batch_max_wait_ms`;
    /// then keeps shipping until the journal is caught up (the caller bounds this with its
    /// deadline: whatever is left is sent by the next run or `iaso-probe ship`).
    pub async fn follow(mut self, mut stop: watch::Receiver<bool>) {
        let tick = Duration::from_millis(self.cfg.batch_max_wait_ms.max(10));
        // Journal read and dead-letter write errors: retried with a capped backoff, one log
        // line per retry (never a resend loop: the position is kept in memory).
        let mut backoff = RetryBackoff::new(tick, MAX_DISK_RETRY_WAIT);
        loop {
            let stopping = *stop.borrow();
            let mut wait = tick;
            match self.ship_available().await {
                Ok(_) => {
                    if backoff.succeeded() > 0 {
                        tracing::info!("shipping resumed after disk errors");
                    }
                }
                Err(e) => {
                    let first = backoff.failures() == 0;
                    wait = backoff.failed(tokio::time::Instant::now());
                    if first {
                        tracing::error!(error = %e, retry_in_ms = wait.as_millis() as u64, "shipping stopped on a journal or dead-letter file error; retrying with backoff");
                    } else {
                        tracing::warn!(error = %e, failures = backoff.failures(), retry_in_ms = wait.as_millis() as u64, "shipping still stopped on a disk error");
                    }
                    self.counters.lock().unwrap().last_error = Some(e.to_string());
                }
            }
            if stopping && self.caught_up() {
                self.save_checkpoint_off_thread(true).await;
                return;
            }
            if stopping {
                tokio::time::sleep(wait).await;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// Appends `dead` to the dead-letter file and fsyncs it, on a blocking thread (awaited:
    /// nothing moves past a batch before its dead letters are durable); gives them back for
    /// a retry.
    async fn write_dead_letters(&self, dead: Vec<DeadLetter>) -> (Vec<DeadLetter>, io::Result<()>) {
        if dead.is_empty() {
            return (dead, Ok(()));
        }
        let (path, faults) = (self.dead_letter_path.clone(), self.faults.clone());
        let written = off_thread(move || {
            let res = dead_letter::append(&path, &dead, &faults);
            (dead, res)
        })
        .await;
        let (dead, res) = match written {
            Ok(done) => done,
            // Only when the runtime is going away (the write never ran).
            Err(e) => (Vec::new(), Err(e)),
        };
        if res.is_ok() {
            self.counters.lock().unwrap().dead_lettered += dead.len() as u64;
        }
        (dead, res)
    }

    /// `ship --dead-letter`: sends the documents of the dead-letter file again (same `_index`
    /// and `_id`: one stored meanwhile answers 409), then rewrites the file with those still
    /// refused (new reason) and the lines that are no document. A failure before the rewrite
    /// leaves the file as it was (a second try then gets 409s, never duplicates).
    pub async fn resend_dead_letters(&mut self) -> io::Result<ResendReport> {
        let contents = dead_letter::read(&self.dead_letter_path)?;
        let mut report = ResendReport {
            sent: contents.docs.len() as u64,
            kept: contents.kept.len() as u64,
            ..Default::default()
        };
        if contents.docs.is_empty() {
            return Ok(report);
        }
        if !self.ensure_setup().await {
            return Err(io::Error::other(
                "index templates not verified: Elasticsearch unavailable",
            ));
        }
        let before = self.counters.lock().unwrap().clone();
        let mut refused = Vec::new();
        let mut docs = contents.docs;
        while !docs.is_empty() {
            let rest = docs.split_off(docs.len().min(self.batch_max_docs.get()));
            let batch = std::mem::replace(&mut docs, rest);
            let seed = self.seed.wrapping_add(refused.len() as u64);
            refused.extend(
                send_all(
                    self.client.clone(),
                    batch,
                    self.cfg.clone(),
                    self.counters.clone(),
                    seed,
                    self.backlog.clone(),
                )
                .await,
            );
        }
        let after = self.counters.lock().unwrap().clone();
        report.stored = after.stored - before.stored;
        report.duplicates = after.duplicates - before.duplicates;
        report.refused = refused.len() as u64;
        dead_letter::rewrite(
            &self.dead_letter_path,
            &contents.kept,
            &refused,
            &self.faults,
        )?;
        for d in &refused {
            tracing::warn!(id = %d.id, index = %d.index, status = d.status, error_type = %d.error_type, reason = %d.reason, "dead-lettered document refused again, kept in the dead-letter file");
        }
        Ok(report)
    }
}

/// The bulk documents of journal lines, and the lines that are none (dead at once).
fn encode_batch(lines: Vec<super::reader::JournalLine>) -> (Vec<BulkDoc>, Vec<DeadLetter>) {
    let mut docs = Vec::with_capacity(lines.len());
    let mut dead = Vec::new();
    for l in lines {
        match encoder::encode(l.line.clone()) {
            Ok(d) => docs.push(d),
            Err(e) => dead.push(DeadLetter {
                index: String::new(),
                id: String::new(),
                status: 0,
                error_type: "journal_line".into(),
                reason: e.to_string(),
                source: l.line,
            }),
        }
    }
    (docs, dead)
}

/// Runs `f` on tokio's blocking pool; a panic in it goes on here, as if it ran inline.
async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    joined(tokio::task::spawn_blocking(f).await)
}

/// The outcome of a blocking task; its panic goes on here, as if it ran inline.
fn joined<T>(res: Result<T, tokio::task::JoinError>) -> io::Result<T> {
    match res {
        Ok(v) => Ok(v),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => Err(io::Error::other(format!(
                "blocking disk write cancelled: {e}"
            ))),
        },
    }
}

/// Saves `pos` and applies the retention to the segments before it (shipped data only).
fn save_and_retain(
    checkpoint: &Checkpoint,
    pos: Position,
    journal: &JournalConfig,
) -> io::Result<()> {
    checkpoint.save(pos)?;
    super::journal::apply_retention(
        &journal.dir,
        pos.segment,
        journal.retention_hours,
        journal.retention_max_bytes,
        true,
    );
    Ok(())
}

/// Sends one batch until every document is stored, a duplicate, or dead.
async fn send_all(
    client: Elasticsearch,
    docs: Vec<BulkDoc>,
    cfg: ElasticsearchConfig,
    counters: Arc<Mutex<ShipperCounters>>,
    seed: u64,
    backlog: Backlog,
) -> Vec<DeadLetter> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let timeout = Duration::from_millis(cfg.request_timeout_ms);
    let (initial, max) = (
        Duration::from_millis(cfg.retry_initial_ms),
        Duration::from_millis(cfg.retry_max_ms),
    );
    let mut dead = Vec::new();
    let mut queue: VecDeque<Vec<BulkDoc>> = VecDeque::from([docs]);
    let mut backoff = SendBackoff::new(initial, max);
    while let Some(batch) = queue.pop_front() {
        if batch.is_empty() {
            continue;
        }
        counters.lock().unwrap().requests += 1;
        let (status, verdict) = bulk::send_with_status(&client, &batch, timeout).await;
        *counters
            .lock()
            .unwrap()
            .bulk_statuses
            .entry(status)
            .or_default() += 1;
        match verdict {
            RequestVerdict::Items(verdicts) => {
                let again = sort_items(batch, verdicts, &counters, &backlog, &mut dead);
                // Elasticsearch answered: item retries wait from `initial`, not the delays an
                // outage before this answer built up.
                if let Some(cap) = backoff.answered(!again.is_empty()) {
                    let d = jittered(cap, &mut rng);
                    tracing::debug!(
                        documents = again.len(),
                        delay_ms = d.as_millis() as u64,
                        "retrying rejected bulk items"
                    );
                    tokio::time::sleep(d).await;
                    queue.push_front(again);
                }
            }
            RequestVerdict::RetryAll(why) => {
                let d = jittered(backoff.failed(), &mut rng);
                tracing::debug!(documents = batch.len(), delay_ms = d.as_millis() as u64, error = %why, "bulk request failed, will retry");
                {
                    let mut c = counters.lock().unwrap();
                    c.retried += batch.len() as u64;
                    note_outage(&mut c, &why, &backlog);
                    c.last_error = Some(why);
                }
                tokio::time::sleep(d).await;
                queue.push_front(batch);
            }
            RequestVerdict::Split => split(batch, &mut queue, &mut dead, &counters),
            RequestVerdict::Pause(why) => {
                note_pause(&counters, why, &backlog);
                tokio::time::sleep(jittered(max, &mut rng).max(initial)).await;
                queue.push_front(batch);
            }
            RequestVerdict::DeadLetterAll { status, reason } => {
                dead.extend(
                    batch.into_iter().map(|doc| {
                        DeadLetter::refused(doc, status, "request_error", reason.clone())
                    }),
                );
            }
        }
    }
    dead
}

/// An answer with items: counts them, moves the refused ones to `dead`, and returns those
/// to send again.
fn sort_items(
    batch: Vec<BulkDoc>,
    verdicts: Vec<ItemVerdict>,
    counters: &Mutex<ShipperCounters>,
    backlog: &Backlog,
    dead: &mut Vec<DeadLetter>,
) -> Vec<BulkDoc> {
    let mut again = Vec::new();
    let dead_before = dead.len();
    let mut c = counters.lock().unwrap();
    note_answer(&mut c, backlog);
    c.paused = None;
    c.last_error = None;
    for (doc, v) in batch.into_iter().zip(verdicts) {
        match v {
            ItemVerdict::Stored => c.stored += 1,
            ItemVerdict::Duplicate => c.duplicates += 1,
            ItemVerdict::Retry(why) => {
                c.retried += 1;
                c.rejections_unlogged += 1;
                c.last_error = Some(why);
                again.push(doc);
            }
            ItemVerdict::DeadLetter {
                status,
                error_type,
                reason,
            } => {
                c.rejections_unlogged += 1;
                dead.push(DeadLetter::refused(doc, status, error_type, reason));
            }
        }
    }
    log_rejections(&mut c, &again, &dead[dead_before..]);
    again
}

/// A 413: the batch goes back as two halves; a single document too large is dead.
fn split(
    mut batch: Vec<BulkDoc>,
    queue: &mut VecDeque<Vec<BulkDoc>>,
    dead: &mut Vec<DeadLetter>,
    counters: &Mutex<ShipperCounters>,
) {
    if batch.len() == 1 {
        let doc = batch.pop().expect("one");
        dead.push(DeadLetter::refused(
            doc,
            413,
            "request_entity_too_large",
            "a single document is larger than the cluster accepts (http.max_content_length)".into(),
        ));
        return;
    }
    counters.lock().unwrap().splits += 1;
    let second = batch.split_off(batch.len() / 2);
    tracing::info!(
        halves = batch.len(),
        "bulk request too large (413), splitting"
    );
    queue.push_front(second);
    queue.push_front(batch);
}

/// Elasticsearch refuses our requests (credentials, privileges): shipping pauses, said once.
fn note_pause(counters: &Mutex<ShipperCounters>, why: String, backlog: &Backlog) {
    let first_time = {
        let mut c = counters.lock().unwrap();
        let first = c.paused.is_none();
        c.paused = Some(why.clone());
        if c.outage_since.is_none() {
            c.outage_since = Some(chrono::Utc::now());
        }
        first.then(|| backlog.documents(&c))
    };
    if let Some(docs) = first_time {
        tracing::error!(error = %why, backlog = docs, "Elasticsearch refuses our requests: shipping paused, the journal keeps every result; check elasticsearch credentials, privileges and URL");
    }
}

/// An answer with items: the end of an outage, announced if its start was. Returns whether
/// a "shipping resumed" line was written.
fn note_answer(c: &mut ShipperCounters, backlog: &Backlog) -> bool {
    if c.outage_since.is_none() && c.paused.is_none() {
        return false;
    }
    let announced = c.outage_announced || c.paused.is_some();
    if announced {
        let down_for = c
            .outage_since
            .map_or(0, |t| (chrono::Utc::now() - t).num_seconds().max(0));
        let docs = backlog.documents(c);
        tracing::warn!(
            paused_for_s = down_for,
            backlog = docs,
            "shipping resumed: Elasticsearch answers again; sending the backlog"
        );
    }
    c.outage_since = None;
    c.outage_announced = false;
    announced
}

/// The first whole-request failure of an outage: one WARN "shipping paused" with the reason
/// and the backlog; while it lasts, a reminder every [`OUTAGE_REMINDER_INTERVAL`] (the
/// per-retry lines are debug: a long outage would otherwise log every retry of every batch).
/// Outages starting within that interval of the last such line (a cluster answering 429 to
/// every other request) are counted and announced only once they last: never a pair of
/// lines per batch.
fn note_outage(c: &mut ShipperCounters, why: &str, backlog: &Backlog) {
    let now = std::time::Instant::now();
    let quiet = |c: &ShipperCounters| {
        c.outage_logged_at
            .is_none_or(|t| now.duration_since(t) >= OUTAGE_REMINDER_INTERVAL)
    };
    match c.outage_since {
        None => {
            c.outage_since = Some(chrono::Utc::now());
            if quiet(c) {
                c.outage_logged_at = Some(now);
                c.outage_announced = true;
                let docs = backlog.documents(c);
                let earlier_short_outages = std::mem::take(&mut c.outages_unlogged);
                tracing::warn!(error = %why, backlog = docs, earlier_short_outages, "shipping paused: Elasticsearch unavailable; the journal keeps every result and shipping retries with backoff");
            } else {
                c.outages_unlogged += 1;
            }
        }
        Some(since) => {
            if quiet(c) {
                c.outage_announced = true;
                c.outage_logged_at = Some(now);
                let docs = backlog.documents(c);
                let paused_for_s = (chrono::Utc::now() - since).num_seconds().max(0);
                tracing::warn!(error = %why, backlog = docs, paused_for_s, "shipping still paused: Elasticsearch unavailable");
            }
        }
    }
}

/// Item rejections (429 or 5xx items retried, others dead-lettered) at WARN, at most one line
/// per [`REJECTION_LOG_INTERVAL`] with the count since the last line.
fn log_rejections(c: &mut ShipperCounters, retried: &[BulkDoc], dead: &[DeadLetter]) {
    if c.rejections_unlogged == 0 {
        return;
    }
    let now = std::time::Instant::now();
    if c.rejections_logged_at
        .is_some_and(|t| now.duration_since(t) < REJECTION_LOG_INTERVAL)
    {
        return;
    }
    c.rejections_logged_at = Some(now);
    let n = std::mem::take(&mut c.rejections_unlogged);
    let example = dead
        .first()
        .map(|d| format!("{} {}: {}", d.status, d.error_type, d.reason))
        .or_else(|| c.last_error.clone())
        .unwrap_or_default();
    tracing::warn!(
        rejected = n,
        retried_now = retried.len(),
        dead_lettered_now = dead.len(),
        dead_lettered = c.dead_lettered + dead.len() as u64,
        example = %example,
        "Elasticsearch rejected documents (retried when 429/5xx, else written to the dead-letter file)"
    );
}

/// Complete journal lines not yet shipped, according to the saved checkpoint.
pub fn unshipped(journal_dir: &Path) -> io::Result<u64> {
    let pos = Checkpoint::new(journal_dir).load()?;
    JournalReader::count_remaining(journal_dir, pos)
}

/// Complete journal lines after `pos` (a shipper's own [`Shipper::position`]).
pub fn unshipped_from(journal_dir: &Path, pos: Position) -> io::Result<u64> {
    JournalReader::count_remaining(journal_dir, pos)
}

#[cfg(test)]
mod outage_tests {
    use super::*;

    #[test]
    fn a_flapping_cluster_is_announced_once_a_minute_not_per_batch() {
        let backlog = Backlog {
            base: 10,
            metrics: None,
        };
        let mut c = ShipperCounters::default();
        let mut resumed = 0;
        // 100 × (whole request refused, then an answer), within a second.
        for _ in 0..100 {
            note_outage(&mut c, "429", &backlog);
            resumed += u32::from(note_answer(&mut c, &backlog));
        }
        assert_eq!(resumed, 1, "only the announced outage gets its end line");
        assert_eq!(c.outages_unlogged, 99);
        assert!(c.outage_since.is_none() && !c.outage_announced);
        // A lasting outage after the quiet interval is announced, with the flaps counted.
        c.outage_logged_at = Some(std::time::Instant::now() - OUTAGE_REMINDER_INTERVAL);
        note_outage(&mut c, "connection refused", &backlog);
        assert!(c.outage_announced);
        assert_eq!(c.outages_unlogged, 0);
        assert!(note_answer(&mut c, &backlog));
    }

    #[test]
    fn an_outage_still_unannounced_is_announced_when_the_interval_passes() {
        let backlog = Backlog {
            base: 0,
            metrics: None,
        };
        let mut c = ShipperCounters {
            outage_logged_at: Some(std::time::Instant::now()),
            ..Default::default()
        };
        note_outage(&mut c, "503", &backlog);
        assert!(!c.outage_announced);
        c.outage_logged_at = Some(std::time::Instant::now() - OUTAGE_REMINDER_INTERVAL);
        note_outage(&mut c, "503", &backlog);
        assert!(c.outage_announced, "the reminder announces it");
    }
}

#[cfg(test)]
#[path = "shipper_tests.rs"]
mod tests_paused;
