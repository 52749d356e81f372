//! The bulk call: one `_bulk` request of `create` operations through the official client,
//! its answer classified by [`retry`](super::retry). Transport errors become `RetryAll`.

use super::encoder::{self, BulkDoc};
use super::retry::{classify_response, RequestVerdict};
use elasticsearch::http::headers::{HeaderValue, CONTENT_TYPE};
use elasticsearch::{BulkParts, Elasticsearch};
use std::time::Duration;

/// Sends `docs` and classifies the answer.
pub async fn send(client: &Elasticsearch, docs: &[BulkDoc], timeout: Duration) -> RequestVerdict {
    send_with_status(client, docs, timeout).await.1
}

/// [`send`], with the HTTP status of the answer (0: none, a transport error).
pub(crate) async fn send_with_status(
    client: &Elasticsearch,
    docs: &[BulkDoc],
    timeout: Duration,
) -> (u16, RequestVerdict) {
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
        Err(e) => (
            0,
            RequestVerdict::RetryAll(format!("transport error: {}", root_cause(&e))),
        ),
        Ok(resp) => {
            let status = resp.status_code().as_u16();
            let verdict = match resp.bytes().await {
                Ok(body) => classify_response(status, &body, docs.len()),
                Err(e) => RequestVerdict::RetryAll(format!("reading the bulk answer: {e}")),
            };
            (status, verdict)
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
