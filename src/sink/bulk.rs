//! The bulk call: one `_bulk` request of `create` operations through the official client,
//! its answer classified by [`retry`](super::retry). Transport errors become `RetryAll`.

use super::encoder::{self, BulkDoc};
use super::retry::{classify_response, RequestVerdict};
use elasticsearch::http::headers::{HeaderValue, CONTENT_TYPE};
use elasticsearch::{BulkParts, Elasticsearch};
use std::time::Duration;

/// Sends `docs` and classifies the answer.
pub async fn send(client: &Elasticsearch, docs: &[BulkDoc], timeout: Duration) -> RequestVerdict {
    let res = client
        .bulk(BulkParts::None)
        // Keeps one entry per item (positions preserved) while trimming successful ones.
        .filter_path(&["errors", "items.*.error", "items.*.status"])
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )
        .request_timeout(timeout)
        .body(encoder::body(docs))
        .send()
        .await;
    match res {
        Err(e) => RequestVerdict::RetryAll(format!("transport error: {}", root_cause(&e))),
        Ok(resp) => {
            let status = resp.status_code().as_u16();
            match resp.bytes().await {
                Ok(body) => classify_response(status, &body, docs.len()),
                Err(e) => RequestVerdict::RetryAll(format!("reading the bulk answer: {e}")),
            }
        }
    }
}

/// The error and its chain of causes, in one line ("… : Connection refused").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        msg = format!("{msg}: {c}");
        cur = c.source();
    }
    msg
}
