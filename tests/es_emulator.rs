//! The emulator's fault injection (`tests/support/es_emulator.rs`): each fault does what the
//! prober's tests rely on, and nothing else is affected. Elasticsearch's own behaviour is
//! tested against a real node in `tests/real_es.rs`, not here.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::es_emulator::{EmulatorOptions, EsEmulator, Fault};

/// `(status, body)` of a request; the body as JSON, `Null` when empty.
async fn call(es: &EsEmulator, method: &str, path: &str, body: &str) -> (u16, Value) {
    let http = reqwest::Client::new();
    let response = http
        .request(method.parse().unwrap(), format!("{}{path}", es.url()))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, body)
}

/// An NDJSON body creating `ids` in `index`, each with `doc`.
fn creates(index: &str, ids: &[&str], doc: &Value) -> String {
    ids.iter()
        .map(|id| {
            format!(
                "{}\n{doc}\n",
                json!({"create": {"_index": index, "_id": id}})
            )
        })
        .collect()
}

fn statuses(answer: &Value) -> Vec<u64> {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["create"]["status"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn creates_store_each_id_once_and_a_repeated_id_answers_409() {
    let es = EsEmulator::start();
    let doc = json!({"event": {"id": "x"}});
    let (status, answer) = call(&es, "POST", "/_bulk", &creates("iaso-a", &["1", "2"], &doc)).await;
    assert_eq!((status, statuses(&answer)), (200, vec![201, 201]));
    assert_eq!(answer["errors"], false);
    let (_, answer) = call(&es, "POST", "/_bulk", &creates("iaso-a", &["2", "3"], &doc)).await;
    assert_eq!(statuses(&answer), vec![409, 201]);
    assert_eq!(answer["errors"], true);
    assert_eq!(
        answer["items"][0]["create"]["error"]["type"],
        "version_conflict_engine_exception"
    );
    call(&es, "POST", "/_bulk", &creates("other", &["1"], &doc)).await;
    assert_eq!(es.ids("iaso-*"), ["1", "2", "3"]);
    assert_eq!(es.count("iaso-a,other"), 4);
    assert_eq!(es.count("missing"), 0);
    let stats = es.bulk_stats();
    assert_eq!(
        (
            stats.requests,
            stats.items,
            stats.created_201,
            stats.conflicts_409
        ),
        (3, 5, 4, 1)
    );
}

#[tokio::test]
async fn an_action_other_than_create_is_refused_whole_naming_what_the_emulator_takes() {
    let es = EsEmulator::start();
    let body = "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{}\n";
    let (status, answer) = call(&es, "POST", "/_bulk", body).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("takes only"),
        "{answer}"
    );
    assert_eq!(es.count("*"), 0);
}

#[tokio::test]
async fn fail_requests_fails_only_the_next_n_bulk_requests() {
    let es = EsEmulator::start();
    es.fail_requests(503, 2);
    let body = creates("a", &["1"], &json!({}));
    // Other endpoints are not affected.
    assert_eq!(call(&es, "GET", "/_ilm/status", "").await.0, 200);
    let (status, answer) = call(&es, "POST", "/_bulk", &body).await;
    assert_eq!(status, 503);
    assert_eq!(answer["error"]["type"], "cluster_block_exception");
    assert_eq!(call(&es, "POST", "/_bulk", &body).await.0, 503);
    assert_eq!(call(&es, "POST", "/_bulk", &body).await.0, 200);
    assert_eq!(es.count("a"), 1, "a failed request stores nothing");
    assert_eq!(es.bulk_stats().whole_request_errors.get(&503), Some(&2));
}

#[tokio::test]
async fn fail_any_requests_and_fail_path_hit_the_chosen_requests() {
    let es = EsEmulator::start();
    es.fail_any_requests(500, 1);
    assert_eq!(call(&es, "GET", "/_ilm/status", "").await.0, 500);
    assert_eq!(call(&es, "GET", "/_ilm/status", "").await.0, 200);

    es.fail_path(
        "/_index_template/b",
        Fault::Error {
            status: 400,
            error_type: "invalid_index_template_exception".into(),
            reason: "because".into(),
        },
    );
    assert_eq!(call(&es, "PUT", "/_index_template/a", "{}").await.0, 200);
    let (status, answer) = call(&es, "PUT", "/_index_template/b", "{}").await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["type"], "invalid_index_template_exception");
    assert_eq!(answer["error"]["reason"], "because");
    // One shot: the next PUT of the same template is stored.
    assert_eq!(call(&es, "PUT", "/_index_template/b", "{}").await.0, 200);
    assert_eq!(es.index_templates().len(), 2);
    assert_eq!(call(&es, "HEAD", "/_index_template/b", "").await.0, 200);
    assert_eq!(call(&es, "HEAD", "/_index_template/c", "").await.0, 404);
}

#[tokio::test]
async fn a_bulk_over_the_size_limit_gets_a_bare_413_and_smaller_ones_pass() {
    let es = EsEmulator::start();
    es.set_max_request_bytes(Some(200));
    let small = creates("a", &["1"], &json!({}));
    let big = creates("a", &["2"], &json!({"pad": "x".repeat(300)}));
    let response = reqwest::Client::new()
        .post(format!("{}/_bulk", es.url()))
        .header("content-type", "application/x-ndjson")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert!(response.headers().get("x-elastic-product").is_none());
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(call(&es, "POST", "/_bulk", &small).await.0, 200);
    assert_eq!(es.ids("a"), ["1"]);
}

#[tokio::test]
async fn item_429s_follow_the_seed_and_stop_at_ratio_zero() {
    let ids: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let body = creates("a", &ids, &json!({}));
    let mut runs = Vec::new();
    for _ in 0..2 {
        let es = EsEmulator::start();
        es.set_item_429_ratio(0.3, 7);
        let (_, answer) = call(&es, "POST", "/_bulk", &body).await;
        let got = statuses(&answer);
        let rejected = got.iter().filter(|s| **s == 429).count();
        assert!((5..=25).contains(&rejected), "{got:?}");
        assert_eq!(
            es.count("a"),
            50 - rejected,
            "a rejected item is not stored"
        );
        assert_eq!(es.bulk_stats().rejected_429, rejected);
        es.set_item_429_ratio(0.0, 7);
        let (_, answer) = call(&es, "POST", "/_bulk", &body).await;
        assert!(statuses(&answer).iter().all(|s| *s == 201 || *s == 409));
        assert_eq!(es.count("a"), 50);
        runs.push(got);
    }
    assert_eq!(runs[0], runs[1], "same seed, same rejected positions");
}

#[tokio::test]
async fn a_rejected_field_gives_that_item_a_400_and_stores_the_others() {
    let es = EsEmulator::start();
    es.set_reject_field(Some("iaso.limit_ms".into()));
    let body = format!(
        "{}{}",
        creates("a", &["with"], &json!({"iaso": {"limit_ms": 5}})),
        creates("a", &["without"], &json!({"iaso": {"other": 1}}))
    );
    let (_, answer) = call(&es, "POST", "/_bulk", &body).await;
    assert_eq!(statuses(&answer), vec![400, 201]);
    let error = &answer["items"][0]["create"]["error"];
    assert_eq!(error["type"], "document_parsing_exception");
    assert!(
        error["reason"]
            .as_str()
            .unwrap()
            .contains("[iaso.limit_ms]"),
        "{error}"
    );
    assert_eq!(es.bulk_stats().errors_400, 1);
    es.set_reject_field(None);
    let (_, answer) = call(&es, "POST", "/_bulk", &body).await;
    assert_eq!(statuses(&answer), vec![201, 409]);
}

#[tokio::test]
async fn down_refuses_connections_and_up_serves_again_on_the_same_port() {
    let es = EsEmulator::start();
    let http = reqwest::Client::new();
    let status = format!("{}/_ilm/status", es.url());
    assert!(http.get(&status).send().await.is_ok(), "pooled connection");
    es.set_down(true);
    let err = http.get(&status).send().await.unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    es.set_down(false);
    assert_eq!(
        http.get(&status).send().await.unwrap().status().as_u16(),
        200
    );
}

#[tokio::test]
async fn slow_answers_come_after_the_delay_and_the_work_is_done_first() {
    let es = EsEmulator::start();
    es.set_slow(Some(Duration::from_millis(400)));
    let t0 = Instant::now();
    let (status, _) = call(&es, "POST", "/_bulk", &creates("a", &["1"], &json!({}))).await;
    assert_eq!(status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(400));
    assert_eq!(es.count("a"), 1);
    es.set_slow(None);
}

#[tokio::test]
async fn basic_auth_answers_401_without_the_right_password() {
    let es = EsEmulator::start_with(EmulatorOptions {
        basic_auth: Some(("elastic".into(), "right".into())),
    });
    let http = reqwest::Client::new();
    let url = format!("{}/_ilm/status", es.url());
    let none = http.get(&url).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["error"]["type"], "security_exception");
    let wrong = http.get(&url).basic_auth("elastic", Some("wrong")).send();
    assert_eq!(wrong.await.unwrap().status().as_u16(), 401);
    let right = http.get(&url).basic_auth("elastic", Some("right")).send();
    assert_eq!(right.await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn a_path_the_prober_does_not_use_gets_no_handler_found() {
    let es = EsEmulator::start();
    let (status, answer) = call(&es, "GET", "/_search", "").await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("no handler found for uri [/_search]"),
        "{answer}"
    );
}
