//! The shipper wires the stages: journal reader → encoder → bulk call → retry classification
//! → dead-letter file → checkpoint. Every document that reached the journal ends up in
//! Elasticsearch exactly once (deterministic `_id` + `create`: a replay answers 409) or in
//! the dead-letter file with its reason; the checkpoint advances only past those.

use super::bulk;
use super::checkpoint::{Checkpoint, Position};
use super::encoder::{self, BulkDoc};
use super::reader::JournalReader;
use super::retry::{backoff_cap, jittered, ItemVerdict, RequestVerdict};
use crate::config::{ElasticsearchConfig, JournalConfig};
use crate::setup::SetupRequest;
use bytes::Bytes;
use elasticsearch::Elasticsearch;
use futures_util::stream::{FuturesOrdered, StreamExt};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{self, Write};
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
    /// Checkpoint: everything before is stored or dead-lettered.
    pub position: Position,
}

/// A document Elasticsearch will never take as it is.
#[derive(Debug, Clone)]
struct DeadLetter {
    index: String,
    id: String,
    status: u16,
    error_type: String,
    reason: String,
    source: Bytes,
}

pub struct Shipper {
    client: Elasticsearch,
    cfg: ElasticsearchConfig,
    journal: JournalConfig,
    checkpoint: Checkpoint,
    dead_letter_path: PathBuf,
    counters: Arc<Mutex<ShipperCounters>>,
    seed: u64,
    /// Templates to make sure of before the first document is sent (data streams need
    /// their template: without it Elasticsearch would create plain, dynamically mapped indices).
    setup: Option<Vec<SetupRequest>>,
}

impl Shipper {
    pub fn new(
        client: Elasticsearch,
        cfg: ElasticsearchConfig,
        journal: JournalConfig,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(&journal.dir)?;
        let checkpoint = Checkpoint::new(&journal.dir);
        let position = checkpoint.load()?;
        let dead_letter_path = cfg
            .dead_letter_file
            .clone()
            .unwrap_or_else(|| journal.dir.join("dead-letter.ndjson"));
        Ok(Self {
            client,
            cfg,
            journal,
            checkpoint,
            dead_letter_path,
            counters: Arc::new(Mutex::new(ShipperCounters {
                position,
                ..Default::default()
            })),
            seed: rand::random(),
            setup: None,
        })
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
                    self.setup_failed(format!("checking {}: {e}", r.path));
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

    pub fn dead_letter_path(&self) -> &Path {
        &self.dead_letter_path
    }

    /// Ships everything the journal holds now, `max_in_flight` bulk requests at a time;
    /// returns the documents handled. Retries until each document is stored or
    /// dead-lettered (so it only returns early on an I/O error of the journal itself).
    pub async fn ship_available(&mut self) -> io::Result<u64> {
        if !self.ensure_setup().await {
            return Ok(0);
        }
        let start = self.checkpoint.load()?;
        let mut reader = JournalReader::new(&self.journal.dir, start);
        let mut inflight = FuturesOrdered::new();
        let mut handled = 0u64;
        let mut exhausted = false;
        loop {
            while !exhausted && inflight.len() < self.cfg.max_in_flight.max(1) {
                let lines = reader.read_batch(self.cfg.batch_max_docs, self.cfg.batch_max_bytes)?;
                let Some(end) = lines.last().map(|l| l.end) else {
                    exhausted = true;
                    break;
                };
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
                let n = docs.len() + dead.len();
                self.counters.lock().unwrap().torn_lines = reader.torn;
                let fut = send_all(
                    self.client.clone(),
                    docs,
                    self.cfg.clone(),
                    self.counters.clone(),
                    self.seed.wrapping_add(end.offset ^ end.segment),
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
            self.write_dead_letters(&dead)?;
            self.checkpoint.save(end)?;
            self.counters.lock().unwrap().position = end;
            handled += n as u64;
            super::journal::apply_retention(
                &self.journal.dir,
                end.segment,
                self.journal.retention_hours,
                self.journal.retention_max_bytes,
                true,
            );
        }
        Ok(handled)
    }

    /// Follows the journal until `stop` turns true, shipping every `batch_max_wait_ms`;
    /// then keeps shipping until the journal is caught up (the caller bounds this with its
    /// deadline: whatever is left is sent by the next run or `iaso-probe ship`).
    pub async fn follow(mut self, mut stop: watch::Receiver<bool>) {
        let tick = Duration::from_millis(self.cfg.batch_max_wait_ms.max(10));
        loop {
            let stopping = *stop.borrow();
            if let Err(e) = self.ship_available().await {
                tracing::error!(error = %e, "shipping stopped on a journal error; retrying");
                self.counters.lock().unwrap().last_error = Some(e.to_string());
            }
            if stopping && unshipped(&self.journal.dir).is_ok_and(|n| n == 0) {
                return;
            }
            if stopping {
                tokio::time::sleep(tick).await;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    fn write_dead_letters(&self, dead: &[DeadLetter]) -> io::Result<()> {
        if dead.is_empty() {
            return Ok(());
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.dead_letter_path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{}: {e}", self.dead_letter_path.display()),
                )
            })?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for d in dead {
            let document =
                serde_json::from_slice::<serde_json::Value>(&d.source).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&d.source).into_owned())
                });
            let rec = serde_json::json!({
                "@timestamp": now,
                "error": {"status": d.status, "type": d.error_type, "reason": d.reason},
                "_index": d.index,
                "_id": d.id,
                "document": document,
            });
            serde_json::to_writer(&mut f, &rec)?;
            f.write_all(b"\n")?;
            tracing::warn!(id = %d.id, index = %d.index, status = d.status, error_type = %d.error_type, reason = %d.reason, file = %self.dead_letter_path.display(), "document refused by Elasticsearch, written to the dead-letter file");
        }
        f.sync_data()?;
        self.counters.lock().unwrap().dead_lettered += dead.len() as u64;
        Ok(())
    }
}

/// Sends one batch until every document is stored, a duplicate, or dead.
async fn send_all(
    client: Elasticsearch,
    docs: Vec<BulkDoc>,
    cfg: ElasticsearchConfig,
    counters: Arc<Mutex<ShipperCounters>>,
    seed: u64,
) -> Vec<DeadLetter> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let timeout = Duration::from_millis(cfg.request_timeout_ms);
    let (initial, max) = (
        Duration::from_millis(cfg.retry_initial_ms),
        Duration::from_millis(cfg.retry_max_ms),
    );
    let mut dead = Vec::new();
    let mut queue: VecDeque<Vec<BulkDoc>> = VecDeque::from([docs]);
    let mut attempt = 0u32;
    while let Some(batch) = queue.pop_front() {
        if batch.is_empty() {
            continue;
        }
        counters.lock().unwrap().requests += 1;
        let verdict = bulk::send(&client, &batch, timeout).await;
        let retry_later = |attempt: &mut u32, rng: &mut SmallRng| {
            *attempt += 1;
            jittered(backoff_cap(*attempt, initial, max), rng)
        };
        match verdict {
            RequestVerdict::Items(verdicts) => {
                let mut again = Vec::new();
                {
                    let mut c = counters.lock().unwrap();
                    c.paused = None;
                    for (doc, v) in batch.into_iter().zip(verdicts) {
                        match v {
                            ItemVerdict::Stored => c.stored += 1,
                            ItemVerdict::Duplicate => c.duplicates += 1,
                            ItemVerdict::Retry(why) => {
                                c.retried += 1;
                                c.last_error = Some(why);
                                again.push(doc);
                            }
                            ItemVerdict::DeadLetter {
                                status,
                                error_type,
                                reason,
                            } => dead.push(DeadLetter {
                                index: doc.index,
                                id: doc.id,
                                status,
                                error_type,
                                reason,
                                source: doc.source,
                            }),
                        }
                    }
                }
                if again.is_empty() {
                    attempt = 0;
                } else {
                    let d = retry_later(&mut attempt, &mut rng);
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
                let d = retry_later(&mut attempt, &mut rng);
                tracing::warn!(documents = batch.len(), attempt, delay_ms = d.as_millis() as u64, error = %why, "bulk request failed, will retry");
                {
                    let mut c = counters.lock().unwrap();
                    c.retried += batch.len() as u64;
                    c.last_error = Some(why);
                }
                tokio::time::sleep(d).await;
                queue.push_front(batch);
            }
            RequestVerdict::Split => {
                if batch.len() == 1 {
                    let doc = batch.into_iter().next().expect("one");
                    dead.push(DeadLetter {
                        index: doc.index,
                        id: doc.id,
                        status: 413,
                        error_type: "request_entity_too_large".into(),
                        reason: "a single document is larger than the cluster accepts (http.max_content_length)".into(),
                        source: doc.source,
                    });
                } else {
                    counters.lock().unwrap().splits += 1;
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    tracing::info!(
                        halves = first.len(),
                        "bulk request too large (413), splitting"
                    );
                    queue.push_front(second);
                    queue.push_front(first);
                }
            }
            RequestVerdict::Pause(why) => {
                let first_time = {
                    let mut c = counters.lock().unwrap();
                    let first = c.paused.is_none();
                    c.paused = Some(why.clone());
                    first
                };
                if first_time {
                    tracing::error!(error = %why, "Elasticsearch refuses our requests: shipping paused, the journal keeps every result; check elasticsearch credentials, privileges and URL");
                }
                attempt = attempt.max(1);
                tokio::time::sleep(jittered(max, &mut rng).max(initial)).await;
                queue.push_front(batch);
            }
            RequestVerdict::DeadLetterAll { status, reason } => {
                for doc in batch {
                    dead.push(DeadLetter {
                        index: doc.index,
                        id: doc.id,
                        status,
                        error_type: "request_error".into(),
                        reason: reason.clone(),
                        source: doc.source,
                    });
                }
            }
        }
    }
    dead
}

/// Complete journal lines not yet shipped.
pub fn unshipped(journal_dir: &Path) -> io::Result<u64> {
    let pos = Checkpoint::new(journal_dir).load()?;
    JournalReader::count_remaining(journal_dir, pos)
}
