//! Retry classification of bulk answers: pure functions over status codes and bodies,
//! tested against literal Elasticsearch responses (reference/elasticsearch.md §1.2–1.4).
//! `send()` returns Ok for 4xx/5xx and a 200 may hold item errors: everything is checked.

use serde_json::Value;
use std::time::Duration;

/// What to do with one document after its bulk item answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemVerdict {
    /// 200/201: stored.
    Stored,
    /// 409 on `create`: the same `_id` is already stored (a replay). Success.
    Duplicate,
    /// 429 or 5xx: try again later.
    Retry(String),
    /// Any other 4xx: Elasticsearch will never take it (mapping error, missing @timestamp…).
    DeadLetter {
        status: u16,
        error_type: String,
        reason: String,
    },
}

/// What to do with a whole bulk request after its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestVerdict {
    /// 200 with one verdict per document, in request order.
    Items(Vec<ItemVerdict>),
    /// Network error, 429, 5xx, or an answer we cannot read: send it all again later.
    RetryAll(String),
    /// 413: the body is too large; split it in two and send each half.
    Split,
    /// 401/403/404: credentials, privileges or address are wrong — nothing will work until an
    /// operator acts. Shipping pauses (the journal keeps everything) and retries slowly.
    Pause(String),
    /// Another 4xx on the whole request: these documents cannot be sent as they are.
    DeadLetterAll { status: u16, reason: String },
}

/// Classifies one item of a 200 answer.
pub(crate) fn classify_item(item: &Value) -> ItemVerdict {
    // Each item is {"<op>": {...}}.
    let inner = item
        .as_object()
        .and_then(|o| o.values().next())
        .unwrap_or(&Value::Null);
    let status = inner.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
    let err = inner.get("error");
    let etype = err
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let reason = error_reason(err);
    match status {
        200..=299 => ItemVerdict::Stored,
        409 => ItemVerdict::Duplicate,
        429 => ItemVerdict::Retry(format!("429 {etype}: {reason}")),
        s if s >= 500 => ItemVerdict::Retry(format!("{s} {etype}: {reason}")),
        0 => ItemVerdict::Retry("item without status".into()),
        s => ItemVerdict::DeadLetter {
            status: s,
            error_type: etype,
            reason,
        },
    }
}

/// `reason`, with the innermost `caused_by` reason appended when it says more.
fn error_reason(err: Option<&Value>) -> String {
    let Some(e) = err else { return String::new() };
    let mut reason = e
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut cause = e.get("caused_by");
    while let Some(c) = cause {
        if let Some(r) = c.get("reason").and_then(Value::as_str) {
            if !reason.contains(r) {
                reason = format!("{reason} (caused by: {r})");
            }
        }
        cause = c.get("caused_by");
    }
    reason
}

/// The error of a non-2xx answer, in one line.
fn request_error(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let e = v.get("error").unwrap_or(&Value::Null);
            let etype = e.get("type").and_then(Value::as_str).unwrap_or("");
            let reason = error_reason(Some(e));
            format!("{etype}: {reason}")
        }
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// Classifies a whole answer to a bulk request of `n_docs` documents.
pub(crate) fn classify_response(status: u16, body: &[u8], n_docs: usize) -> RequestVerdict {
    match status {
        200..=299 => {}
        413 => return RequestVerdict::Split,
        429 => return RequestVerdict::RetryAll(format!("429 {}", request_error(body))),
        401 | 403 | 404 => {
            return RequestVerdict::Pause(format!("HTTP {status} {}", request_error(body)))
        }
        s if s >= 500 => return RequestVerdict::RetryAll(format!("{s} {}", request_error(body))),
        s => {
            return RequestVerdict::DeadLetterAll {
                status: s,
                reason: request_error(body),
            }
        }
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return RequestVerdict::RetryAll(format!("unreadable bulk answer: {e}")),
    };
    let items = match v.get("items").and_then(Value::as_array) {
        Some(items) => items,
        // errors:false with filter_path may drop "items" entirely: all stored.
        None if v.get("errors") == Some(&Value::Bool(false)) => {
            return RequestVerdict::Items(vec![ItemVerdict::Stored; n_docs])
        }
        None => return RequestVerdict::RetryAll("bulk answer without items".into()),
    };
    if items.len() != n_docs {
        return RequestVerdict::RetryAll(format!(
            "bulk answer has {} items for {n_docs} documents",
            items.len()
        ));
    }
    RequestVerdict::Items(items.iter().map(classify_item).collect())
}

/// Upper bound of the delay before attempt `attempt` (1-based): capped exponential. The
/// caller draws the actual delay uniformly in `0..=bound` (full jitter).
pub(crate) fn backoff_cap(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1).min(20))
        .unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// The backoff of one batch's sends. Whole-request failures (network, 429, 5xx) and rounds
/// of item rejections count apart: any answer with items resets the first, so rejections
/// after an outage are retried from `initial`, not at the outage's built-up delays; the
/// second grows only over consecutive rounds that still had items to retry.
#[derive(Debug, Clone)]
pub(crate) struct SendBackoff {
    initial: Duration,
    max: Duration,
    request_failures: u32,
    item_rounds: u32,
}

impl SendBackoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            request_failures: 0,
            item_rounds: 0,
        }
    }

    /// The whole request failed: the bound of the delay before sending it again.
    pub fn failed(&mut self) -> Duration {
        self.request_failures = self.request_failures.saturating_add(1);
        backoff_cap(self.request_failures, self.initial, self.max)
    }

    /// Elasticsearch answered with items; `retry_items`: some must be sent again. Returns
    /// the bound of the delay before that, if any.
    pub fn answered(&mut self, retry_items: bool) -> Option<Duration> {
        self.request_failures = 0;
        if !retry_items {
            self.item_rounds = 0;
            return None;
        }
        self.item_rounds = self.item_rounds.saturating_add(1);
        Some(backoff_cap(self.item_rounds, self.initial, self.max))
    }
}

/// Full jitter: uniform in `0..=cap`.
pub(crate) fn jittered(cap: Duration, rng: &mut impl rand::Rng) -> Duration {
    let ms = cap.as_millis() as u64;
    Duration::from_millis(if ms == 0 { 0 } else { rng.gen_range(0..=ms) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn created_items_are_stored() {
        let body = br#"{"errors":false,"took":12,"items":[{"create":{"_index":".ds-iaso-checks-lab-2026.11.28-000001","_id":"a","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":7,"_primary_term":1,"status":201}}]}"#;
        assert_eq!(
            classify_response(200, body, 1),
            RequestVerdict::Items(vec![ItemVerdict::Stored])
        );
    }

    #[test]
    fn a_409_on_create_is_already_stored() {
        let item = json!({"create":{"_index":".ds-my-ds","_id":"1","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[1]: version conflict, document already exists (current version [1])"}}});
        assert_eq!(classify_item(&item), ItemVerdict::Duplicate);
    }

    #[test]
    fn retries_only_items_that_got_429_or_5xx() {
        let body = br#"{"errors":true,"took":3,"items":[{"create":{"status":201}},{"create":{"_id":"b","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of processing"}}},{"create":{"_id":"c","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}]}"#;
        let RequestVerdict::Items(v) = classify_response(200, body, 3) else {
            panic!()
        };
        assert_eq!(v[0], ItemVerdict::Stored);
        assert!(
            matches!(&v[1], ItemVerdict::Retry(r) if r.contains("es_rejected_execution_exception"))
        );
        assert!(matches!(&v[2], ItemVerdict::Retry(_)));
    }

    #[test]
    fn mapping_errors_go_to_the_dead_letter_file_with_their_reason() {
        let item = json!({"create":{"_index":"testcase15","_id":"X7","status":400,"error":{"type":"document_parsing_exception","reason":"[1:14] failed to parse field [newcolumn] of type [long] in document with id 'X7'. Preview of field's value: 'invalid'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"invalid\""}}}});
        match classify_item(&item) {
            ItemVerdict::DeadLetter {
                status,
                error_type,
                reason,
            } => {
                assert_eq!(status, 400);
                assert_eq!(error_type, "document_parsing_exception");
                assert!(
                    reason.contains("failed to parse field [newcolumn]")
                        && reason.contains("For input string"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn whole_request_errors_are_classified() {
        let cb = br#"{"error":{"root_cause":[],"type":"circuit_breaking_exception","reason":"[parent] Data too large","durability":"TRANSIENT"},"status":429}"#;
        assert!(
            matches!(classify_response(429, cb, 5), RequestVerdict::RetryAll(r) if r.contains("circuit_breaking_exception"))
        );
        let nm = br#"{"error":{"root_cause":[],"type":"cluster_block_exception","reason":"blocked by: [SERVICE_UNAVAILABLE/2/no master];"},"status":503}"#;
        assert!(matches!(
            classify_response(503, nm, 5),
            RequestVerdict::RetryAll(_)
        ));
        assert_eq!(classify_response(413, b"", 5), RequestVerdict::Split);
        let auth = br#"{"error":{"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]"},"status":401}"#;
        assert!(
            matches!(classify_response(401, auth, 5), RequestVerdict::Pause(r) if r.contains("security_exception"))
        );
        let nl = br#"{"error":{"root_cause":[],"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"},"status":400}"#;
        assert!(matches!(
            classify_response(400, nl, 5),
            RequestVerdict::DeadLetterAll { status: 400, .. }
        ));
    }

    #[test]
    fn item_count_mismatch_is_retried_not_trusted() {
        let body = br#"{"errors":false,"took":1,"items":[{"create":{"status":201}}]}"#;
        assert!(matches!(
            classify_response(200, body, 2),
            RequestVerdict::RetryAll(_)
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (i, m) = (Duration::from_millis(500), Duration::from_secs(30));
        let table: Vec<u64> = (1..=9)
            .map(|a| backoff_cap(a, i, m).as_millis() as u64)
            .collect();
        assert_eq!(
            table,
            vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(backoff_cap(1000, i, m), m);
    }

    #[test]
    fn item_retries_after_an_outage_start_again_from_the_initial_delay() {
        let (i, m) = (Duration::from_millis(500), Duration::from_secs(30));
        let mut b = SendBackoff::new(i, m);
        let outage: Vec<u64> = (0..7).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(outage, vec![500, 1000, 2000, 4000, 8000, 16000, 30000]);
        // Back, answering 200 with some items rejected (429): 0.5 s, then doubling.
        let rounds: Vec<u64> = (0..3)
            .map(|_| b.answered(true).unwrap().as_millis() as u64)
            .collect();
        assert_eq!(rounds, vec![500, 1000, 2000]);
        // A round with nothing to retry resets the item backoff, and so does the next outage
        // only count its own failures.
        assert_eq!(b.answered(false), None);
        assert_eq!(b.answered(true), Some(i));
        assert_eq!(b.failed(), i);
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_cap_and_a_zero_cap_waits_nothing() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let cap = Duration::from_millis(100);
        let draws: Vec<Duration> = (0..1000).map(|_| jittered(cap, &mut rng)).collect();
        // Full jitter (0..=cap), not "equal" jitter (cap/2..=cap) nor the cap itself.
        assert!(draws.iter().all(|d| *d <= cap));
        assert!(
            draws.iter().any(|d| *d < Duration::from_millis(10)),
            "low end"
        );
        assert!(
            draws.iter().any(|d| *d > Duration::from_millis(90)),
            "high end"
        );
        assert_eq!(jittered(Duration::ZERO, &mut rng), Duration::ZERO);
        // Sub-millisecond caps are whole milliseconds: no wait.
        assert_eq!(
            jittered(Duration::from_micros(900), &mut rng),
            Duration::ZERO
        );
    }
}
