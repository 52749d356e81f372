//! `send_all` against a `_bulk` endpoint on the test's thread, in paused tokio time (its
//! retry delays then take no real time): what is sent again, split, counted and
//! dead-lettered for each kind of answer.

use super::*;
use crate::test_support::loopback::{LoopbackServer, Request, Response};
use elasticsearch::http::transport::Transport;
use std::cell::RefCell;
use std::rc::Rc;

fn doc(id: &str) -> BulkDoc {
    BulkDoc {
        index: "iaso-checks-lab".into(),
        id: id.into(),
        source: bytes::Bytes::from(format!(r#"{{"event":{{"id":"{id}"}}}}"#)),
    }
}

/// The `_id`s of a bulk request, in order.
fn ids(req: &Request) -> Vec<String> {
    String::from_utf8_lossy(&req.body)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["create"]["_id"].as_str().map(str::to_owned))
        .collect()
}

fn items(statuses: &[u16]) -> Response {
    let items: Vec<_> = statuses
        .iter()
        .map(|s| match s {
            201 => serde_json::json!({"create": {"status": 201}}),
            s => serde_json::json!({"create": {"status": s, "error": {"type": "some_exception", "reason": format!("refused with {s}")}}}),
        })
        .collect();
    let mut r = Response::json(
        200,
        serde_json::json!({"errors": true, "items": items}).to_string(),
    );
    r.headers
        .push(("x-elastic-product".into(), "Elasticsearch".into()));
    r
}

struct Outcome {
    dead: Vec<DeadLetter>,
    counters: ShipperCounters,
    /// The `_id`s of each bulk request, in order.
    requests: Vec<Vec<String>>,
    elapsed: Duration,
}

/// Runs `send_all` on `docs`; `answer` gets the n-th request (from 0) and its `_id`s.
async fn send(docs: &[&str], answer: impl Fn(usize, &[String]) -> Response + 'static) -> Outcome {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let es = LoopbackServer::start(Rc::new(move |req: Request| {
        let ids = ids(&req);
        let n = s.borrow().len();
        let res = answer(n, &ids);
        s.borrow_mut().push(ids);
        Box::pin(async move { res })
    }))
    .await;
    let transport = Transport::single_node(&es.base_url()).unwrap();
    let cfg = ElasticsearchConfig {
        retry_initial_ms: 1_000,
        retry_max_ms: 30_000,
        ..Default::default()
    };
    let counters = Arc::new(Mutex::new(ShipperCounters::default()));
    let backlog = Backlog {
        base: 0,
        metrics: None,
    };
    let t0 = tokio::time::Instant::now();
    let dead = send_all(
        Elasticsearch::new(transport),
        docs.iter().map(|d| doc(d)).collect(),
        cfg,
        counters.clone(),
        7,
        backlog,
    )
    .await;
    let counters = counters.lock().unwrap().clone();
    let requests = seen.borrow().clone();
    Outcome {
        dead,
        counters,
        requests,
        elapsed: t0.elapsed(),
    }
}

#[actix_rt::test]
async fn only_the_items_answered_429_or_5xx_are_sent_again() {
    tokio::time::pause();
    let o = send(&["a", "b", "c", "d"], |n, ids| match n {
        0 => items(&[201, 429, 201, 503]),
        _ => items(&vec![201; ids.len()]),
    })
    .await;
    assert_eq!(o.requests, [vec!["a", "b", "c", "d"], vec!["b", "d"]]);
    assert!(o.dead.is_empty());
    let c = &o.counters;
    assert_eq!((c.stored, c.retried, c.requests), (4, 2, 2));
    assert_eq!(c.last_error, None, "cleared by the answer that stored them");
}

#[actix_rt::test]
async fn a_replay_counts_duplicates_and_a_refused_item_is_dead_lettered_with_its_reason() {
    tokio::time::pause();
    let o = send(&["a", "b", "c"], |_, _| items(&[409, 400, 201])).await;
    assert_eq!(o.requests.len(), 1, "nothing to send again");
    let c = &o.counters;
    assert_eq!((c.stored, c.duplicates, c.retried), (1, 1, 0));
    assert_eq!(o.dead.len(), 1);
    let d = &o.dead[0];
    assert_eq!((d.id.as_str(), d.status), ("b", 400));
    assert_eq!(
        (d.error_type.as_str(), d.reason.as_str()),
        ("some_exception", "refused with 400")
    );
    assert_eq!(
        &d.source[..],
        &doc("b").source[..],
        "the journal line, unchanged"
    );
}

#[actix_rt::test]
async fn a_failed_request_is_sent_again_whole_after_a_growing_delay() {
    tokio::time::pause();
    let o = send(&["a", "b"], |n, ids| match n {
        0..=2 => Response::json(503, r#"{"error":{"type":"unavailable","reason":"busy"}}"#),
        _ => items(&vec![201; ids.len()]),
    })
    .await;
    assert_eq!(o.requests.len(), 4);
    assert!(o.requests.iter().all(|r| r == &["a", "b"]));
    let c = &o.counters;
    assert_eq!((c.stored, c.retried), (2, 6));
    assert_eq!(c.bulk_statuses.get(&503), Some(&3));
    assert_eq!(c.bulk_statuses.get(&200), Some(&1));
    assert!(
        c.outage_since.is_none(),
        "the answer with items ended the outage"
    );
    // Full jitter below caps of 1, 2 and 4 s: at most 7 s, more than nothing.
    assert!(
        o.elapsed > Duration::ZERO && o.elapsed <= Duration::from_secs(7),
        "{:?}",
        o.elapsed
    );
}

#[actix_rt::test]
async fn a_too_large_request_is_split_and_a_single_too_large_document_dead_lettered() {
    tokio::time::pause();
    let o = send(&["a", "b", "big", "c"], |_, ids| {
        if ids.len() > 1 || ids == ["big"] {
            Response::json(413, "")
        } else {
            items(&[201])
        }
    })
    .await;
    let sent: Vec<String> = o.requests.iter().map(|r| r.join(",")).collect();
    assert_eq!(sent, ["a,b,big,c", "a,b", "a", "b", "big,c", "big", "c"]);
    assert_eq!((o.counters.stored, o.counters.splits), (3, 3));
    assert_eq!(o.dead.len(), 1);
    assert_eq!((o.dead[0].id.as_str(), o.dead[0].status), ("big", 413));
}

#[actix_rt::test]
async fn a_refusing_cluster_pauses_shipping_until_it_accepts_again() {
    tokio::time::pause();
    let o = send(&["a"], |n, _| match n {
        0 => Response::json(
            401,
            r#"{"error":{"type":"security_exception","reason":"bad creds"}}"#,
        ),
        _ => items(&[201]),
    })
    .await;
    assert_eq!(o.requests.len(), 2, "the same batch, once accepted");
    assert!(o.dead.is_empty());
    assert_eq!((o.counters.stored, o.counters.paused.as_deref()), (1, None));
    // Paused for at least `retry_initial_ms` before asking again.
    assert!(o.elapsed >= Duration::from_secs(1), "{:?}", o.elapsed);
}

#[actix_rt::test]
async fn a_request_error_dead_letters_the_whole_batch() {
    tokio::time::pause();
    let o = send(&["a", "b"], |_, _| {
        Response::json(
            400,
            r#"{"error":{"type":"parse_exception","reason":"bad body"}}"#,
        )
    })
    .await;
    assert_eq!(o.requests.len(), 1);
    let dead: Vec<_> = o.dead.iter().map(|d| (d.id.as_str(), d.status)).collect();
    assert_eq!(dead, [("a", 400), ("b", 400)]);
    assert_eq!(o.dead[0].error_type, "request_error");
}
