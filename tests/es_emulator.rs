//! Tests of the in-process Elasticsearch emulator, driven through the official `elasticsearch`
//! crate and, where the crate hides details (headers, raw bodies, content types), raw reqwest.

mod support;

use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::cluster::ClusterPutComponentTemplateParts;
use elasticsearch::http::headers::{HeaderValue, CONTENT_TYPE};
use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{SingleNodeConnectionPool, Transport, TransportBuilder};
use elasticsearch::http::Url;
use elasticsearch::ilm::{IlmGetLifecycleParts, IlmPutLifecycleParts};
use elasticsearch::indices::{
    IndicesExistsIndexTemplateParts, IndicesGetDataStreamParts, IndicesGetIndexTemplateParts,
    IndicesPutIndexTemplateParts, IndicesRolloverParts,
};
use elasticsearch::{BulkParts, CountParts, Elasticsearch, SearchParts};
use serde_json::{json, Value};

use support::es_emulator::{EmulatorOptions, EsEmulator, Fault};

const STREAM: &str = "iaso-checks-lab";

fn client(es: &EsEmulator) -> Elasticsearch {
    Elasticsearch::new(Transport::single_node(&es.url()).expect("transport"))
}

fn client_with(es: &EsEmulator, credentials: Option<Credentials>, gzip: bool) -> Elasticsearch {
    let pool = SingleNodeConnectionPool::new(Url::parse(&es.url()).expect("url"));
    let mut builder = TransportBuilder::new(pool).request_body_compression(gzip);
    if let Some(c) = credentials {
        builder = builder.auth(c);
    }
    Elasticsearch::new(builder.build().expect("transport"))
}

/// Mappings in the shape of `docs/result-schema.md`: strict, nested objects.
fn iaso_mappings() -> Value {
    json!({
        "dynamic": "strict",
        "properties": {
            "@timestamp": {"type": "date"},
            "event": {"properties": {
                "id": {"type": "keyword"},
                "dataset": {"type": "keyword"},
                "action": {"type": "keyword"},
                "outcome": {"type": "keyword"},
                "duration": {"type": "long"},
                "sequence": {"type": "long"}
            }},
            "service": {"properties": {"environment": {"type": "keyword"}}},
            "http": {"properties": {"response": {"properties": {"status_code": {"type": "long"}}}}},
            "error": {"properties": {
                "type": {"type": "keyword"},
                "message": {"type": "keyword", "fields": {"text": {"type": "text"}}}
            }},
            "iaso": {"properties": {"job": {"properties": {
                "id": {"type": "keyword"},
                "percent": {"type": "float"}
            }}}},
            "summary": {"properties": {"up": {"type": "long"}, "down": {"type": "long"}}},
            "monitor": {"properties": {"status": {"type": "keyword"}}},
            "labels": {"dynamic": false, "properties": {"run_id": {"type": "keyword"}}}
        }
    })
}

/// ILM policy, component templates and the `iaso-checks` data-stream template.
async fn setup_templates(client: &Elasticsearch) {
    let ok = |r: Response| {
        assert_eq!(r.status_code().as_u16(), 200, "setup call failed");
    };
    ok(client
        .ilm()
        .put_lifecycle(IlmPutLifecycleParts::Policy("iaso-probe"))
        .body(json!({"policy": {"phases": {
            "hot": {"actions": {"rollover": {"max_primary_shard_size": "50gb", "max_age": "30d"}}},
            "delete": {"min_age": "30d", "actions": {"delete": {}}}
        }}}))
        .send()
        .await
        .unwrap());
    ok(client
        .cluster()
        .put_component_template(ClusterPutComponentTemplateParts::Name("iaso-mappings"))
        .body(json!({"template": {"mappings": iaso_mappings()}}))
        .send()
        .await
        .unwrap());
    ok(client
        .cluster()
        .put_component_template(ClusterPutComponentTemplateParts::Name("iaso-settings"))
        .body(json!({"template": {"settings": {"index.lifecycle.name": "iaso-probe"}}}))
        .send()
        .await
        .unwrap());
    ok(client
        .indices()
        .put_index_template(IndicesPutIndexTemplateParts::Name("iaso-checks"))
        .body(json!({
            "index_patterns": ["iaso-checks-*"],
            "data_stream": {},
            "composed_of": ["iaso-mappings", "iaso-settings"],
            "priority": 200
        }))
        .send()
        .await
        .unwrap());
}

fn check_doc(id: &str, seq: u64) -> Value {
    json!({
        "@timestamp": "2025-03-01T10:00:00.000Z",
        "event": {"id": id, "dataset": "iaso.checks", "action": "liveness", "outcome": "success",
                  "duration": 1_500_000, "sequence": seq},
        "service": {"environment": "lab"},
        "http": {"response": {"status_code": 200}},
        "monitor": {"status": "up"},
        "summary": {"up": 1, "down": 0}
    })
}

/// Sends `(action, source)` pairs through the crate; returns the status and the JSON body.
async fn bulk(
    client: &Elasticsearch,
    index: &str,
    ops: Vec<(Value, Option<Value>)>,
) -> (u16, Value) {
    let mut body: Vec<elasticsearch::http::request::JsonBody<Value>> = Vec::new();
    for (action, source) in ops {
        body.push(action.into());
        if let Some(s) = source {
            body.push(s.into());
        }
    }
    let resp = client
        .bulk(BulkParts::Index(index))
        .body(body)
        .send()
        .await
        .expect("bulk sent");
    let status = resp.status_code().as_u16();
    (status, resp.json::<Value>().await.unwrap_or(Value::Null))
}

fn create(id: &str, doc: Value) -> (Value, Option<Value>) {
    (json!({"create": {"_id": id}}), Some(doc))
}

/// Raw reqwest POST of a body, with a content type.
async fn raw_post(
    url: &str,
    body: impl Into<reqwest::Body>,
    content_type: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request sent")
}

// ---- headers and basics ----

#[tokio::test]
async fn every_response_carries_the_product_and_content_type_headers() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    let info = client.info().send().await.unwrap();
    assert_eq!(info.content_type(), "application/json");
    let info: Value = info.json().await.unwrap();
    assert!(info["version"]["number"]
        .as_str()
        .unwrap()
        .starts_with("8."));
    assert_eq!(info["tagline"], "You Know, for Search");
    bulk(&client, STREAM, vec![create("a", check_doc("a", 1))]).await;

    let http = reqwest::Client::new();
    let base = es.url();
    let calls = [
        ("GET", format!("{base}/")),
        ("HEAD", format!("{base}/")),
        ("GET", format!("{base}/_cluster/health")),
        ("GET", format!("{base}/_index_template/iaso-checks")),
        ("GET", format!("{base}/_index_template/missing")),
        ("GET", format!("{base}/_data_stream/{STREAM}")),
        ("GET", format!("{base}/{STREAM}/_count")),
        ("GET", format!("{base}/no-such-index/_search")),
        ("GET", format!("{base}/_bulk")),
        ("GET", format!("{base}/_nothing/here/at/all")),
    ];
    for (method, url) in calls {
        let resp = http
            .request(method.parse().unwrap(), &url)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers()["x-elastic-product"],
            "Elasticsearch",
            "{method} {url}"
        );
        assert_eq!(
            resp.headers()["content-type"],
            "application/json",
            "{method} {url}"
        );
    }
    let health: Value = http
        .get(format!("{base}/_cluster/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "green");
    assert!(health["cluster_name"].is_string());
}

#[tokio::test]
async fn responses_are_compact_json_with_errors_before_took() {
    let es = EsEmulator::start();
    let resp = raw_post(
        &format!("{}/plain/_bulk", es.url()),
        "{\"index\":{\"_id\":\"1\"}}\n{\"a\":1}\n",
        "application/x-ndjson",
    )
    .await;
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("{\"errors\":false,\"took\":"), "{text}");
    assert!(!text.contains(": ") && !text.contains('\n'), "{text}");
    assert!(text.contains(
        "{\"index\":{\"_index\":\"plain\",\"_id\":\"1\",\"_version\":1,\"result\":\"created\",\"_shards\":{\"total\":2,\"successful\":1,\"failed\":0},\"_seq_no\":0,\"_primary_term\":1,\"status\":201}}"
    ), "{text}");
}

// ---- data streams ----

#[tokio::test]
async fn a_create_into_a_templated_data_stream_gives_201_with_a_ds_backing_index() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    let (status, body) = bulk(&client, STREAM, vec![create("id-1", check_doc("id-1", 1))]).await;
    assert_eq!(status, 200);
    assert_eq!(body["errors"], false);
    let item = &body["items"][0]["create"];
    assert_eq!(item["status"], 201);
    assert_eq!(item["result"], "created");
    assert_eq!(item["_id"], "id-1");
    assert_eq!(item["_version"], 1);
    assert_eq!(item["_seq_no"], 0);
    assert_eq!(item["_primary_term"], 1);
    let index = item["_index"].as_str().unwrap();
    let date = chrono::Utc::now().format("%Y.%m.%d").to_string();
    assert_eq!(index, format!(".ds-{STREAM}-{date}-000001"));
    assert_eq!(es.count(STREAM), 1);
    assert_eq!(es.count("iaso-checks-*"), 1);
    assert_eq!(es.ids(STREAM), vec!["id-1"]);
    assert_eq!(es.docs(STREAM)[0]["event"]["id"], "id-1");
    assert_eq!(es.backing_indices(STREAM), vec![index.to_owned()]);

    let ds: Value = client
        .indices()
        .get_data_stream(IndicesGetDataStreamParts::Name(&[STREAM]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ds = &ds["data_streams"][0];
    assert_eq!(ds["name"], STREAM);
    assert_eq!(ds["template"], "iaso-checks");
    assert_eq!(ds["generation"], 1);
    assert_eq!(ds["ilm_policy"], "iaso-probe");
    assert_eq!(ds["timestamp_field"]["name"], "@timestamp");
    assert_eq!(ds["indices"][0]["index_name"], index);
}

#[tokio::test]
async fn the_same_id_again_gives_409_version_conflict_with_errors_true() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    bulk(&client, STREAM, vec![create("dup", check_doc("dup", 1))]).await;
    let (status, body) = bulk(
        &client,
        STREAM,
        vec![
            create("dup", check_doc("dup", 1)),
            create("new", check_doc("new", 2)),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["errors"], true);
    let conflict = &body["items"][0]["create"];
    assert_eq!(conflict["status"], 409);
    assert_eq!(conflict["_id"], "dup");
    assert_eq!(
        conflict["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_eq!(
        conflict["error"]["reason"],
        "[dup]: version conflict, document already exists (current version [1])"
    );
    assert_eq!(conflict["error"]["shard"], "0");
    assert_eq!(conflict["error"]["index"], conflict["_index"]);
    assert!(conflict["error"]["index_uuid"].is_string());
    assert_eq!(body["items"][1]["create"]["status"], 201);
    assert_eq!(es.count(STREAM), 2);
    assert_eq!(es.bulk_stats().conflicts_409, 1);
}

#[tokio::test]
async fn an_index_op_on_a_data_stream_is_rejected_with_400() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    let (status, body) = bulk(
        &client,
        STREAM,
        vec![(json!({"index": {}}), Some(check_doc("x", 1)))],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["errors"], true);
    let item = &body["items"][0]["index"];
    assert_eq!(item["status"], 400);
    assert_eq!(item["_index"], STREAM);
    assert_eq!(item["_id"], Value::Null);
    assert_eq!(item["error"]["type"], "illegal_argument_exception");
    assert_eq!(
        item["error"]["reason"],
        "only write ops with an op_type of create are allowed in data streams"
    );
    assert_eq!(es.count(STREAM), 0);
}

#[tokio::test]
async fn a_missing_timestamp_in_a_data_stream_is_rejected_with_400() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    let mut doc = check_doc("no-ts", 1);
    doc.as_object_mut().unwrap().remove("@timestamp");
    let (_, body) = bulk(&client, STREAM, vec![create("no-ts", doc)]).await;
    let item = &body["items"][0]["create"];
    assert_eq!(item["status"], 400);
    assert_eq!(item["error"]["type"], "document_parsing_exception");
    let reason = item["error"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("[1:"), "{reason}");
    assert!(
        reason.ends_with("failed to parse: data stream timestamp field [@timestamp] is missing"),
        "{reason}"
    );
    assert_eq!(
        item["error"]["caused_by"]["type"],
        "illegal_argument_exception"
    );
    assert_eq!(
        item["error"]["caused_by"]["reason"],
        "data stream timestamp field [@timestamp] is missing"
    );
}

#[tokio::test]
async fn a_name_without_data_stream_template_is_a_plain_index_taking_index_and_create() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    let (_, body) = bulk(
        &client,
        "plain-results",
        vec![
            (json!({"index": {"_id": "1"}}), Some(json!({"a": 1}))),
            (json!({"index": {"_id": "1"}}), Some(json!({"a": 2}))),
            (json!({"create": {"_id": "2"}}), Some(json!({"a": 3}))),
        ],
    )
    .await;
    assert_eq!(body["errors"], false);
    assert_eq!(body["items"][0]["index"]["status"], 201);
    assert_eq!(body["items"][0]["index"]["_index"], "plain-results");
    assert_eq!(body["items"][1]["index"]["status"], 200);
    assert_eq!(body["items"][1]["index"]["result"], "updated");
    assert_eq!(body["items"][1]["index"]["_version"], 2);
    assert_eq!(body["items"][2]["create"]["status"], 201);
    assert_eq!(es.count("plain-results"), 2);
    assert!(es.data_streams().is_empty());
}

#[tokio::test]
async fn a_missing_id_gets_a_generated_twenty_character_id() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    let (_, body) = bulk(
        &client,
        STREAM,
        vec![
            (json!({"create": {}}), Some(check_doc("g1", 1))),
            (json!({"create": {}}), Some(check_doc("g2", 2))),
        ],
    )
    .await;
    let a = body["items"][0]["create"]["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = body["items"][1]["create"]["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(a.len(), 20);
    assert_ne!(a, b);
    assert!(a
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    assert_eq!(es.ids(STREAM), vec![a, b]);
}

#[tokio::test]
async fn rollover_lets_a_replayed_id_land_again_which_is_the_data_stream_duplicate_window() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    bulk(
        &client,
        STREAM,
        vec![create("replayed", check_doc("replayed", 1))],
    )
    .await;
    es.rollover(STREAM);
    let (_, body) = bulk(
        &client,
        STREAM,
        vec![create("replayed", check_doc("replayed", 1))],
    )
    .await;
    let item = &body["items"][0]["create"];
    assert_eq!(item["status"], 201, "ids are unique per backing index only");
    assert!(item["_index"].as_str().unwrap().ends_with("-000002"));
    assert_eq!(es.count(STREAM), 2);
    assert_eq!(es.ids(STREAM), vec!["replayed", "replayed"]);
    // A further replay lands in the same (new) write index: a conflict again.
    let (_, body) = bulk(
        &client,
        STREAM,
        vec![create("replayed", check_doc("replayed", 1))],
    )
    .await;
    assert_eq!(body["items"][0]["create"]["status"], 409);

    // The HTTP rollover API does the same.
    let rolled: Value = client
        .indices()
        .rollover(IndicesRolloverParts::Alias(STREAM))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rolled["rolled_over"], true);
    assert!(rolled["new_index"].as_str().unwrap().ends_with("-000003"));
    assert_eq!(es.backing_indices(STREAM).len(), 3);
}

// ---- mappings ----

#[tokio::test]
async fn strict_mapping_rejects_an_unknown_field() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    let mut root_extra = check_doc("s1", 1);
    root_extra["surprise"] = json!("x");
    let mut nested_extra = check_doc("s2", 2);
    nested_extra["event"]["kind"] = json!("metric");
    let (_, body) = bulk(
        &client,
        STREAM,
        vec![create("s1", root_extra), create("s2", nested_extra)],
    )
    .await;
    assert_eq!(body["errors"], true);
    let root = &body["items"][0]["create"]["error"];
    assert_eq!(body["items"][0]["create"]["status"], 400);
    assert_eq!(root["type"], "strict_dynamic_mapping_exception");
    let reason = root["reason"].as_str().unwrap();
    assert!(reason.starts_with("[1:"), "{reason}");
    assert!(
        reason.ends_with("mapping set to strict, dynamic introduction of [surprise] within [_doc] is not allowed"),
        "{reason}"
    );
    let nested = body["items"][1]["create"]["error"]["reason"]
        .as_str()
        .unwrap();
    assert!(
        nested.ends_with("dynamic introduction of [kind] within [event] is not allowed"),
        "{nested}"
    );
    assert_eq!(es.count(STREAM), 0);
}

#[tokio::test]
async fn the_strict_error_column_points_at_the_value_like_elasticsearch() {
    let es = EsEmulator::start();
    let client = client(&es);
    client
        .indices()
        .create(elasticsearch::indices::IndicesCreateParts::Index("agents"))
        .body(json!({"mappings": {"dynamic": "strict", "properties": {"agent": {"properties": {"name": {"type": "keyword"}}}}}}))
        .send()
        .await
        .unwrap();
    let resp = raw_post(
        &format!("{}/agents/_bulk", es.url()),
        "{\"index\":{}}\n{\"agent\":{\"hostname\":\"x\"}}\n",
        "application/json",
    )
    .await;
    let body: Value = resp.json().await.unwrap();
    // Real 8.x text for this document (Rally log): "[1:22] mapping set to strict, …".
    assert_eq!(
        body["items"][0]["index"]["error"]["reason"],
        "[1:22] mapping set to strict, dynamic introduction of [hostname] within [agent] is not allowed"
    );
}

#[tokio::test]
async fn dynamic_false_accepts_unknown_fields_without_indexing_them() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    let mut doc = check_doc("f1", 1);
    doc["labels"] = json!({"run_id": "r1", "extra": "kept in _source"});
    let (_, body) = bulk(&client, STREAM, vec![create("f1", doc)]).await;
    assert_eq!(body["errors"], false, "{body}");
    assert_eq!(es.docs(STREAM)[0]["labels"]["extra"], "kept in _source");
    let search = |field: &'static str, value: &'static str| {
        let client = client.clone();
        async move {
            let r: Value = client
                .search(SearchParts::Index(&[STREAM]))
                .body(json!({"query": {"term": {field: value}}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["hits"]["total"]["value"].as_u64().unwrap()
        }
    };
    assert_eq!(search("labels.run_id", "r1").await, 1);
    assert_eq!(search("labels.extra", "kept in _source").await, 0);
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_a_document_parsing_exception_with_caused_by() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    let mut bad_long = check_doc("t1", 1);
    bad_long["event"]["duration"] = json!("invalid");
    let mut bad_date = check_doc("t2", 2);
    bad_date["@timestamp"] = json!("yesterday");
    let mut bad_float = check_doc("t3", 3);
    bad_float["iaso"] = json!({"job": {"percent": "half"}});
    let mut object_for_keyword = check_doc("t4", 4);
    object_for_keyword["monitor"]["status"] = json!({"up": true});
    let mut scalar_for_object = check_doc("t5", 5);
    scalar_for_object["service"] = json!("lab");
    let mut coerced = check_doc("t6", 6);
    coerced["event"]["duration"] = json!("42");
    coerced["@timestamp"] = json!(1_740_823_200_000_u64);
    let (_, body) = bulk(
        &client,
        STREAM,
        vec![
            create("t1", bad_long),
            create("t2", bad_date),
            create("t3", bad_float),
            create("t4", object_for_keyword),
            create("t5", scalar_for_object),
            create("t6", coerced),
        ],
    )
    .await;
    let err = |i: usize| body["items"][i]["create"]["error"].clone();
    let long = err(0);
    assert_eq!(long["type"], "document_parsing_exception");
    let reason = long["reason"].as_str().unwrap();
    assert!(
        reason.ends_with("failed to parse field [event.duration] of type [long] in document with id 't1'. Preview of field's value: 'invalid'"),
        "{reason}"
    );
    assert_eq!(long["caused_by"]["type"], "illegal_argument_exception");
    assert_eq!(long["caused_by"]["reason"], "For input string: \"invalid\"");
    let date = err(1);
    assert!(date["reason"]
        .as_str()
        .unwrap()
        .contains("failed to parse field [@timestamp] of type [date]"));
    assert_eq!(
        date["caused_by"]["reason"],
        "failed to parse date field [yesterday] with format [strict_date_optional_time||epoch_millis]"
    );
    assert_eq!(
        date["caused_by"]["caused_by"]["type"],
        "date_time_parse_exception"
    );
    assert!(err(2)["reason"]
        .as_str()
        .unwrap()
        .contains("of type [float]"));
    assert!(err(3)["reason"]
        .as_str()
        .unwrap()
        .contains("of type [keyword]"));
    assert!(err(4)["reason"]
        .as_str()
        .unwrap()
        .ends_with("object mapping for [service] tried to parse field [service] as object, but found a concrete value"));
    assert_eq!(
        body["items"][5]["create"]["status"], 201,
        "numeric strings and epoch millis are coerced"
    );
    assert_eq!(es.bulk_stats().errors_400, 5);
}

#[tokio::test]
async fn dynamic_mapping_maps_new_fields_and_then_enforces_their_type() {
    let es = EsEmulator::start();
    let client = client(&es);
    let (_, body) = bulk(
        &client,
        "dyn",
        vec![
            (
                json!({"index": {"_id": "1"}}),
                Some(json!({"n": 1, "when": "2025-01-01T00:00:00Z", "name": "a"})),
            ),
            (
                json!({"index": {"_id": "2"}}),
                Some(json!({"n": "not a number"})),
            ),
        ],
    )
    .await;
    assert_eq!(body["items"][0]["index"]["status"], 201);
    assert_eq!(body["items"][1]["index"]["status"], 400);
    let mappings = es.mappings("dyn").unwrap();
    assert_eq!(mappings["properties"]["n"]["type"], "long");
    assert_eq!(mappings["properties"]["when"]["type"], "date");
    assert_eq!(mappings["properties"]["name"]["type"], "text");
    assert_eq!(
        mappings["properties"]["name"]["fields"]["keyword"]["type"],
        "keyword"
    );
}

// ---- item-level faults ----

#[tokio::test]
async fn a_thirty_percent_item_429_ratio_rejects_about_thirty_percent_reproducibly() {
    async fn run(seed: u64) -> Vec<u64> {
        let es = EsEmulator::start();
        let client = client(&es);
        setup_templates(&client).await;
        es.set_item_429_ratio(0.3, seed);
        let ops = (0..1000)
            .map(|i| create(&format!("r{i}"), check_doc(&format!("r{i}"), i)))
            .collect();
        let (status, body) = bulk(&client, STREAM, ops).await;
        assert_eq!(status, 200);
        assert_eq!(body["errors"], true);
        let rejected = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["create"]["status"] == 429)
            .count();
        assert_eq!(es.bulk_stats().rejected_429, rejected);
        assert_eq!(es.count(STREAM), 1000 - rejected);
        let first = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["create"]["status"] == 429)
            .unwrap();
        assert_eq!(
            first["create"]["error"]["type"],
            "es_rejected_execution_exception"
        );
        assert!(first["create"]["_index"]
            .as_str()
            .unwrap()
            .starts_with(".ds-"));
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["create"]["status"].as_u64().unwrap())
            .collect()
    }
    let a = run(7).await;
    let rejected = a.iter().filter(|s| **s == 429).count();
    assert!(
        (240..=360).contains(&rejected),
        "{rejected} of 1000 rejected"
    );
    assert_eq!(run(7).await, a, "same seed, same rejected positions");
    assert_ne!(run(8).await, a, "another seed, other positions");
}

#[tokio::test]
async fn a_reject_field_gives_a_per_item_document_parsing_exception() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    es.set_reject_field(Some("http.response.status_code".into()));
    let mut without = check_doc("ok", 2);
    without.as_object_mut().unwrap().remove("http");
    let (_, body) = bulk(
        &client,
        STREAM,
        vec![create("bad", check_doc("bad", 1)), create("ok", without)],
    )
    .await;
    let item = &body["items"][0]["create"];
    assert_eq!(item["status"], 400);
    assert_eq!(item["error"]["type"], "document_parsing_exception");
    assert!(item["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("failed to parse field [http.response.status_code] of type [long]"));
    assert_eq!(
        item["error"]["caused_by"]["type"],
        "illegal_argument_exception"
    );
    assert_eq!(body["items"][1]["create"]["status"], 201);
    es.set_reject_field(None);
    let (_, body) = bulk(&client, STREAM, vec![create("bad", check_doc("bad", 1))]).await;
    assert_eq!(body["items"][0]["create"]["status"], 201);
}

#[tokio::test]
async fn items_come_back_in_request_order_with_mixed_results() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    bulk(&client, STREAM, vec![create("old", check_doc("old", 0))]).await;
    let mut strict = check_doc("s", 3);
    strict["nope"] = json!(1);
    let (_, body) = bulk(
        &client,
        STREAM,
        vec![
            create("n1", check_doc("n1", 1)),
            create("old", check_doc("old", 0)),
            create("s", strict),
            (json!({"index": {"_id": "i"}}), Some(check_doc("i", 4))),
            create("n2", check_doc("n2", 2)),
        ],
    )
    .await;
    let statuses: Vec<u64> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i.as_object().unwrap().values().next().unwrap()["status"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(statuses, vec![201, 409, 400, 400, 201]);
    assert_eq!(
        body["items"][3]["index"]["error"]["type"],
        "illegal_argument_exception"
    );
}

#[tokio::test]
async fn update_and_delete_give_elasticsearch_results() {
    let es = EsEmulator::start();
    let client = client(&es);
    let (_, body) = bulk(
        &client,
        "things",
        vec![
            (
                json!({"index": {"_id": "1"}}),
                Some(json!({"a": 1, "o": {"x": 1}})),
            ),
            (
                json!({"update": {"_id": "1"}}),
                Some(json!({"doc": {"o": {"y": 2}}})),
            ),
            (
                json!({"update": {"_id": "1"}}),
                Some(json!({"doc": {"a": 1}})),
            ),
            (
                json!({"update": {"_id": "9"}}),
                Some(json!({"doc": {"a": 1}})),
            ),
            (
                json!({"update": {"_id": "8"}}),
                Some(json!({"doc": {"a": 8}, "doc_as_upsert": true})),
            ),
            (json!({"delete": {"_id": "1"}}), None),
            (json!({"delete": {"_id": "1"}}), None),
        ],
    )
    .await;
    let item = |i: usize, op: &str| body["items"][i][op].clone();
    assert_eq!(item(1, "update")["result"], "updated");
    assert_eq!(item(1, "update")["_version"], 2);
    assert_eq!(item(2, "update")["result"], "noop");
    assert_eq!(item(3, "update")["status"], 404);
    assert_eq!(
        item(3, "update")["error"]["type"],
        "document_missing_exception"
    );
    assert_eq!(
        item(3, "update")["error"]["reason"],
        "[9]: document missing"
    );
    assert_eq!(item(4, "update")["status"], 201);
    assert_eq!(item(5, "delete")["result"], "deleted");
    assert_eq!(item(6, "delete")["status"], 404);
    assert_eq!(item(6, "delete")["result"], "not_found");
    assert!(item(6, "delete").get("error").is_none());
    assert_eq!(es.ids("things"), vec!["8"]);
    assert_eq!(
        body["errors"], true,
        "the document_missing_exception is an error"
    );
}

// ---- whole-request faults ----

#[tokio::test]
async fn fail_requests_503_fails_one_bulk_then_the_next_succeeds() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    es.fail_requests(503, 1);
    let resp = client
        .bulk(BulkParts::Index(STREAM))
        .body(vec![
            elasticsearch::http::request::JsonBody::new(json!({"create": {"_id": "a"}})),
            elasticsearch::http::request::JsonBody::new(check_doc("a", 1)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status_code().as_u16(), 503);
    let exception = resp.exception().await.unwrap().unwrap();
    assert_eq!(exception.status(), Some(503));
    assert_eq!(exception.error().ty(), Some("cluster_block_exception"));
    assert_eq!(
        exception.error().reason(),
        Some("blocked by: [SERVICE_UNAVAILABLE/2/no master];")
    );
    assert_eq!(
        exception.error().root_cause()[0].ty(),
        Some("cluster_block_exception")
    );
    assert_eq!(es.count(STREAM), 0);
    let (status, body) = bulk(&client, STREAM, vec![create("a", check_doc("a", 1))]).await;
    assert_eq!(status, 200);
    assert_eq!(body["errors"], false);
    let stats = es.bulk_stats();
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.whole_request_errors.get(&503), Some(&1));
    assert_eq!(stats.created_201, 1);
}

#[tokio::test]
async fn injected_whole_request_errors_have_the_real_shapes() {
    let es = EsEmulator::start();
    let url = format!("{}/x/_bulk", es.url());
    let line = "{\"index\":{}}\n{\"a\":1}\n";
    es.fail_requests(429, 1);
    es.fail_requests_with(Fault::CircuitBreaker429 { permanent: false }, 1);
    es.fail_requests(401, 1);
    es.fail_requests(500, 1);

    let r = raw_post(&url, line, "application/json").await;
    assert_eq!(r.status(), 429);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["status"], 429);
    assert_eq!(b["error"]["type"], "es_rejected_execution_exception");
    assert_eq!(
        b["error"]["root_cause"][0]["type"],
        "es_rejected_execution_exception"
    );

    let b: Value = raw_post(&url, line, "application/json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b["error"]["type"], "circuit_breaking_exception");
    assert_eq!(b["error"]["durability"], "TRANSIENT");
    assert!(b["error"]["bytes_wanted"].is_u64());

    let r = raw_post(&url, line, "application/json").await;
    assert_eq!(r.status(), 401);
    let challenges: Vec<_> = r.headers().get_all("www-authenticate").iter().collect();
    assert_eq!(challenges.len(), 3);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["type"], "security_exception");
    assert_eq!(
        b["error"]["reason"],
        "missing authentication credentials for REST request [/x/_bulk]"
    );
    assert_eq!(b["error"]["header"]["WWW-Authenticate"][2], "ApiKey");

    let r = raw_post(&url, line, "application/json").await;
    assert_eq!(r.status(), 500);

    // Only bulk requests consume the queue; other endpoints are untouched.
    es.fail_requests(503, 1);
    assert_eq!(reqwest::get(es.url()).await.unwrap().status(), 200);
    assert_eq!(raw_post(&url, line, "application/json").await.status(), 503);
    assert_eq!(raw_post(&url, line, "application/json").await.status(), 200);
    // fail_any_requests hits any endpoint.
    es.fail_any_requests(503, 1);
    assert_eq!(reqwest::get(es.url()).await.unwrap().status(), 503);
    assert_eq!(es.count("x"), 1);
}

#[tokio::test]
async fn bodies_over_the_max_request_bytes_get_413_with_an_empty_body() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    es.set_max_request_bytes(Some(600));
    let ops: Vec<_> = (0..5)
        .map(|i| create(&format!("b{i}"), check_doc(&format!("b{i}"), i)))
        .collect();
    let mut body: Vec<elasticsearch::http::request::JsonBody<Value>> = Vec::new();
    for (a, s) in ops {
        body.push(a.into());
        body.push(s.unwrap().into());
    }
    let resp = client
        .bulk(BulkParts::Index(STREAM))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status_code().as_u16(), 413);
    assert_eq!(resp.content_length(), Some(0));
    // Like Netty's 413: no content-type and no product header (content_type() would panic).
    assert!(resp.headers().get("content-type").is_none());
    assert!(resp.headers().get("x-elastic-product").is_none());
    assert!(resp.bytes().await.unwrap().is_empty());
    assert_eq!(es.count(STREAM), 0);
    let (status, _) = bulk(
        &client,
        STREAM,
        vec![create("small", check_doc("small", 1))],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(es.bulk_stats().whole_request_errors.get(&413), Some(&1));
}

#[tokio::test]
async fn set_down_refuses_connections_and_set_down_false_serves_the_same_url_again() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    let url = es.url();
    // A pooled keep-alive connection exists now; going down must drop it too.
    assert_eq!(
        client.info().send().await.unwrap().status_code().as_u16(),
        200
    );
    es.set_down(true);
    let err = client.info().send().await.expect_err("the node is down");
    assert!(
        err.status_code().is_none(),
        "a transport error, not an HTTP status: {err}"
    );
    let raw = reqwest::get(&url).await.expect_err("connection refused");
    assert!(raw.is_connect(), "{raw}");
    es.set_down(false);
    assert_eq!(es.url(), url);
    let (status, body) = bulk(&client, STREAM, vec![create("back", check_doc("back", 1))]).await;
    assert_eq!(status, 200);
    assert_eq!(body["errors"], false);
    assert_eq!(es.count(STREAM), 1, "state survives the outage");
}

#[tokio::test]
async fn slow_answers_time_the_client_out_while_the_documents_are_stored() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    es.set_slow(Some(Duration::from_millis(400)));
    let err = client
        .bulk(BulkParts::Index(STREAM))
        .request_timeout(Duration::from_millis(100))
        .body(vec![
            elasticsearch::http::request::JsonBody::new(json!({"create": {"_id": "late"}})),
            elasticsearch::http::request::JsonBody::new(check_doc("late", 1)),
        ])
        .send()
        .await
        .expect_err("times out");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(es.count(STREAM), 1, "processed before the delayed answer");
    es.set_slow(None);
    let (_, body) = bulk(&client, STREAM, vec![create("late", check_doc("late", 1))]).await;
    assert_eq!(
        body["items"][0]["create"]["status"], 409,
        "the retry finds it stored"
    );
}

// ---- body rules ----

#[tokio::test]
async fn both_json_and_ndjson_content_types_are_accepted() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    let line = |id: &str| format!("{}\n{}\n", json!({"create": {"_id": id}}), check_doc(id, 1));
    let url = format!("{}/{STREAM}/_bulk", es.url());
    for (id, ct) in [
        ("j", "application/json"),
        ("n", "application/x-ndjson"),
        (
            "v",
            "application/vnd.elasticsearch+x-ndjson;compatible-with=8",
        ),
    ] {
        let r = raw_post(&url, line(id), ct).await;
        assert_eq!(r.status(), 200, "{ct}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["errors"], false, "{ct}");
    }
    // Through the crate, with its application/json default and an explicit x-ndjson header.
    let resp = client
        .bulk(BulkParts::Index(STREAM))
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )
        .body(vec![
            elasticsearch::http::request::JsonBody::new(json!({"create": {"_id": "c"}})),
            elasticsearch::http::request::JsonBody::new(check_doc("c", 1)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status_code().as_u16(), 200);
    let recorded = es.requests();
    let last = recorded.last().unwrap();
    assert_eq!(last.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(es.count(STREAM), 4);
}

#[tokio::test]
async fn unsupported_or_missing_content_types_get_406() {
    let es = EsEmulator::start();
    let url = format!("{}/x/_bulk", es.url());
    let body = "{\"index\":{}}\n{\"a\":1}\n";
    let r = raw_post(&url, body, "text/plain").await;
    assert_eq!(r.status(), 406);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b,
        json!({"error": "Content-Type header [text/plain] is not supported", "status": 406})
    );
    let r = reqwest::Client::new()
        .post(&url)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"], "Content-Type header is missing");
    assert_eq!(es.count("x"), 0);
}

#[tokio::test]
async fn a_body_without_a_trailing_newline_gets_the_reference_400() {
    let es = EsEmulator::start();
    let r = raw_post(
        &format!("{}/x/_bulk", es.url()),
        "{\"index\":{}}\n{\"a\":1}",
        "application/x-ndjson",
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"}],"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"},"status":400}"#
    );
    assert_eq!(es.count("x"), 0);
}

#[tokio::test]
async fn an_empty_bulk_body_gets_action_request_validation_exception() {
    let es = EsEmulator::start();
    let client = client(&es);
    let resp = client
        .bulk(BulkParts::Index("x"))
        .body(Vec::<elasticsearch::http::request::JsonBody<Value>>::new())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status_code().as_u16(), 400);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["error"]["type"], "action_request_validation_exception");
    assert_eq!(
        b["error"]["reason"],
        "Validation Failed: 1: no requests added;"
    );
}

#[tokio::test]
async fn malformed_action_lines_fail_the_whole_request() {
    let es = EsEmulator::start();
    let url = format!("{}/_bulk", es.url());
    let cases = [
        ("{\"upsert\":{}}\n{}\n", "Malformed action/metadata line [1], expected one of [create, delete, index, update] but found [upsert]"),
        ("{\"index\":{\"_type\":\"_doc\"}}\n{}\n", "Action/metadata line [1] contains an unknown parameter [_type]"),
        ("{\"index\":{}}\n{\"a\":1}\n", "Validation Failed: 1: index is missing;"),
    ];
    for (body, reason) in cases {
        let r = raw_post(&url, body, "application/json").await;
        assert_eq!(r.status(), 400, "{body}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"]["reason"], reason);
    }
    let r = raw_post(
        &format!("{url}?refresh=true&nonsense=1"),
        "{\"index\":{\"_index\":\"a\"}}\n{}\n",
        "application/json",
    )
    .await;
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b["error"]["reason"],
        "request [/_bulk] contains unrecognized parameter: [nonsense]"
    );
}

#[tokio::test]
async fn filter_path_errors_items_error_items_status_keeps_one_entry_per_item() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    bulk(&client, STREAM, vec![create("dup", check_doc("dup", 1))]).await;
    let resp = client
        .bulk(BulkParts::Index(STREAM))
        .filter_path(&["errors", "items.*.error", "items.*.status"])
        .refresh(elasticsearch::params::Refresh::WaitFor)
        .timeout("1m")
        .body(vec![
            elasticsearch::http::request::JsonBody::new(json!({"create": {"_id": "fresh"}})),
            elasticsearch::http::request::JsonBody::new(check_doc("fresh", 2)),
            elasticsearch::http::request::JsonBody::new(json!({"create": {"_id": "dup"}})),
            elasticsearch::http::request::JsonBody::new(check_doc("dup", 1)),
        ])
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let expected = format!(
        "{{\"errors\":true,\"items\":[{{\"create\":{{\"status\":201}}}},{{\"create\":{{\"status\":409,\"error\":{{\"type\":\"version_conflict_engine_exception\",\"reason\":\"[dup]: version conflict, document already exists (current version [1])\",\"index_uuid\":\"{uuid}\",\"shard\":\"0\",\"index\":\"{index}\"}}}}}}]}}",
        uuid = {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["items"][1]["create"]["error"]["index_uuid"].as_str().unwrap().to_owned()
        },
        index = es.backing_indices(STREAM)[0]
    );
    assert_eq!(text, expected);
    let last = es.requests().pop().unwrap();
    assert_eq!(
        last.query_param("filter_path").as_deref(),
        Some("errors,items.*.error,items.*.status")
    );
}

#[tokio::test]
async fn filter_path_does_not_filter_whole_request_errors() {
    let es = EsEmulator::start();
    es.fail_requests(429, 1);
    let r = raw_post(
        &format!(
            "{}/f/_bulk?filter_path=errors,items.*.error,items.*.status",
            es.url()
        ),
        "{\"index\":{}}\n{}\n",
        "application/json",
    )
    .await;
    assert_eq!(r.status(), 429);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["type"], "es_rejected_execution_exception");
    assert_eq!(b["status"], 429);
}

#[tokio::test]
async fn filter_path_items_error_drops_the_successful_items() {
    let es = EsEmulator::start();
    let url = format!("{}/f/_bulk", es.url());
    let body = "{\"create\":{\"_id\":\"1\"}}\n{}\n{\"create\":{\"_id\":\"1\"}}\n{}\n";
    let text = raw_post(
        &format!("{url}?filter_path=items.*.error"),
        body,
        "application/json",
    )
    .await
    .text()
    .await
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["items"][0]["create"]["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert!(v.get("errors").is_none());
    let clean = raw_post(
        &format!("{url}?filter_path=items.*.error"),
        "{\"create\":{\"_id\":\"2\"}}\n{}\n",
        "application/json",
    )
    .await
    .text()
    .await
    .unwrap();
    assert_eq!(clean, "{}");
}

// ---- templates and ILM ----

#[tokio::test]
async fn index_templates_referencing_missing_component_templates_are_rejected() {
    let es = EsEmulator::start();
    let client = client(&es);
    let resp = client
        .indices()
        .put_index_template(IndicesPutIndexTemplateParts::Name("broken"))
        .body(json!({"index_patterns": ["b-*"], "composed_of": ["nowhere"], "data_stream": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status_code().as_u16(), 400);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["error"]["type"], "invalid_index_template_exception");
    assert_eq!(
        b["error"]["reason"],
        "index_template [broken] invalid, cause [index template [broken] specifies component templates [nowhere] that do not exist]"
    );
    assert!(es.index_templates().is_empty());

    let resp = client
        .indices()
        .put_index_template(IndicesPutIndexTemplateParts::Name("no-patterns"))
        .body(json!({"data_stream": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status_code().as_u16(), 400);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["error"]["reason"], "Required [index_patterns]");

    let resp = client
        .indices()
        .put_index_template(IndicesPutIndexTemplateParts::Name("bad-type"))
        .body(json!({"index_patterns": ["t-*"], "template": {"mappings": {"properties": {"x": {"type": "strnig"}}}}}))
        .send()
        .await
        .unwrap();
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["error"]["type"], "mapper_parsing_exception");
}

#[tokio::test]
async fn templates_and_policies_round_trip_and_missing_ones_give_404() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    assert_eq!(es.index_templates()["iaso-checks"]["priority"], 200);
    assert_eq!(
        es.component_templates()["iaso-mappings"]["template"]["mappings"]["dynamic"],
        "strict"
    );
    assert!(es.ilm_policies()["iaso-probe"]["phases"]["hot"].is_object());

    let got: Value = client
        .indices()
        .get_index_template(IndicesGetIndexTemplateParts::Name("iaso-checks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = &got["index_templates"][0];
    assert_eq!(t["name"], "iaso-checks");
    assert_eq!(
        t["index_template"]["composed_of"],
        json!(["iaso-mappings", "iaso-settings"])
    );
    assert_eq!(
        t["index_template"]["data_stream"],
        json!({"hidden": false, "allow_custom_routing": false})
    );
    let exists = client
        .indices()
        .exists_index_template(IndicesExistsIndexTemplateParts::Name("iaso-checks"))
        .send()
        .await
        .unwrap();
    assert_eq!(exists.status_code().as_u16(), 200);
    let missing = client
        .indices()
        .exists_index_template(IndicesExistsIndexTemplateParts::Name("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status_code().as_u16(), 404);

    let resp = client
        .indices()
        .get_index_template(IndicesGetIndexTemplateParts::Name("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status_code().as_u16(), 404);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(
        b,
        json!({"error": {"root_cause": [{"type": "resource_not_found_exception", "reason": "index template matching [nope] not found"}],
                         "type": "resource_not_found_exception", "reason": "index template matching [nope] not found"}, "status": 404})
    );

    let policy: Value = client
        .ilm()
        .get_lifecycle(IlmGetLifecycleParts::Policy("iaso-probe"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(policy["iaso-probe"]["version"], 1);
    assert_eq!(
        policy["iaso-probe"]["in_use_by"]["composable_templates"],
        json!(["iaso-checks"])
    );
    let http = reqwest::Client::new();
    let head = http
        .head(format!("{}/_ilm/policy/iaso-probe", es.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let head = http
        .head(format!("{}/_component_template/nope", es.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
    let missing = http
        .get(format!("{}/_ilm/policy/nope", es.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let b: Value = missing.json().await.unwrap();
    assert_eq!(b["error"]["type"], "resource_not_found_exception");
    let del = http
        .delete(format!("{}/_ilm/policy/iaso-probe", es.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    assert!(es.ilm_policies().is_empty());
    let in_use = http
        .delete(format!("{}/_component_template/iaso-mappings", es.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(in_use.status(), 400);
}

#[tokio::test]
async fn the_highest_priority_template_wins_and_same_priority_overlaps_are_rejected() {
    let es = EsEmulator::start();
    let http = reqwest::Client::new();
    let put = |name: &'static str, body: Value| {
        let http = http.clone();
        let url = format!("{}/_index_template/{name}", es.url());
        async move {
            http.put(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        put("low", json!({"index_patterns": ["logs-*"], "priority": 1})).await,
        200
    );
    assert_eq!(
        put(
            "high",
            json!({"index_patterns": ["logs-app-*"], "priority": 300, "data_stream": {}})
        )
        .await,
        200
    );
    assert_eq!(
        put(
            "clash",
            json!({"index_patterns": ["logs-a*"], "priority": 1})
        )
        .await,
        400
    );
    raw_post(
        &format!("{}/_bulk", es.url()),
        "{\"create\":{\"_index\":\"logs-app-x\"}}\n{\"@timestamp\":\"2025-01-01\"}\n{\"create\":{\"_index\":\"logs-db\"}}\n{\"a\":1}\n",
        "application/json",
    )
    .await;
    assert_eq!(es.data_streams(), vec!["logs-app-x"]);
    assert_eq!(es.count("logs-*"), 2);
}

// ---- reads over HTTP ----

#[tokio::test]
async fn count_and_search_over_http_see_every_stored_document() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    let ops = (0..25)
        .map(|i| {
            let mut d = check_doc(&format!("c{i}"), i);
            if i % 5 == 0 {
                d["event"]["outcome"] = json!("failure");
            }
            create(&format!("c{i}"), d)
        })
        .collect();
    bulk(&client, STREAM, ops).await;
    client
        .indices()
        .refresh(elasticsearch::indices::IndicesRefreshParts::Index(&[
            STREAM,
        ]))
        .send()
        .await
        .unwrap();
    let count: Value = client
        .count(CountParts::Index(&[STREAM]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count["count"], 25);
    assert!(count["_shards"]["total"].is_u64());
    let search: Value = client
        .search(SearchParts::Index(&["iaso-checks-*"]))
        .body(
            json!({"size": 3, "query": {"term": {"event.outcome": "failure"}},
                     "sort": [{"event.sequence": {"order": "desc"}}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        search["hits"]["total"],
        json!({"value": 5, "relation": "eq"})
    );
    let hits = search["hits"]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0]["_id"], "c20");
    assert_eq!(hits[0]["sort"], json!([20]));
    assert_eq!(hits[0]["_source"]["event"]["id"], "c20");
    assert!(hits[0]["_index"].as_str().unwrap().starts_with(".ds-"));
    let all: Value = client
        .search(SearchParts::Index(&[STREAM]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["hits"]["total"]["value"], 25);
    assert_eq!(all["hits"]["hits"].as_array().unwrap().len(), 10);
    let missing = client
        .count(CountParts::Index(&["nothing-here"]))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status_code().as_u16(), 404);
    let b: Value = missing.json().await.unwrap();
    assert_eq!(b["error"]["type"], "index_not_found_exception");
    assert_eq!(b["error"]["resource.id"], "nothing-here");
}

// ---- auth ----

#[tokio::test]
async fn basic_auth_is_required_when_configured() {
    let es = EsEmulator::start_with(EmulatorOptions {
        basic_auth: Some(("elastic".into(), "changeme".into())),
        ..EmulatorOptions::default()
    });
    let anonymous = client(&es);
    let resp = anonymous.info().send().await.unwrap();
    assert_eq!(resp.status_code().as_u16(), 401);
    assert_eq!(resp.headers().get_all("www-authenticate").iter().count(), 3);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(
        b["error"]["reason"],
        "missing authentication credentials for REST request [/]"
    );
    let wrong = client_with(
        &es,
        Some(Credentials::Basic("elastic".into(), "nope".into())),
        false,
    );
    let b: Value = wrong.info().send().await.unwrap().json().await.unwrap();
    assert_eq!(
        b["error"]["reason"],
        "unable to authenticate user [elastic] for REST request [/]"
    );
    let right = client_with(
        &es,
        Some(Credentials::Basic("elastic".into(), "changeme".into())),
        false,
    );
    assert_eq!(
        right.info().send().await.unwrap().status_code().as_u16(),
        200
    );
    // Credentials in the URL work too (the crate turns them into basic auth).
    let in_url = es.url().replace("http://", "http://elastic:changeme@");
    let c = Elasticsearch::new(Transport::single_node(&in_url).unwrap());
    assert_eq!(c.info().send().await.unwrap().status_code().as_u16(), 200);
}

#[tokio::test]
async fn api_key_auth_is_accepted_in_both_forms() {
    let es = EsEmulator::start_with(EmulatorOptions {
        api_key: Some("key-id:secret".into()),
        ..EmulatorOptions::default()
    });
    let c = client_with(
        &es,
        Some(Credentials::ApiKey("key-id".into(), "secret".into())),
        false,
    );
    assert_eq!(c.info().send().await.unwrap().status_code().as_u16(), 200);
    let bad = client_with(
        &es,
        Some(Credentials::ApiKey("key-id".into(), "wrong".into())),
        false,
    );
    let resp = bad.info().send().await.unwrap();
    assert_eq!(resp.status_code().as_u16(), 401);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["error"]["type"], "security_exception");

    // The encoded form Elasticsearch hands out (base64 of `id:api_key`).
    let encoded = EsEmulator::start_with(EmulatorOptions {
        api_key: Some("a2V5LWlkOnNlY3JldA==".into()),
        ..EmulatorOptions::default()
    });
    for credentials in [
        Credentials::EncodedApiKey("a2V5LWlkOnNlY3JldA==".into()),
        Credentials::ApiKey("key-id".into(), "secret".into()),
    ] {
        let c = client_with(&encoded, Some(credentials), false);
        assert_eq!(c.info().send().await.unwrap().status_code().as_u16(), 200);
    }
}

// ---- transport details ----

#[tokio::test]
async fn gzip_request_bodies_are_decompressed() {
    let es = EsEmulator::start();
    let client = client_with(&es, None, true);
    setup_templates(&client).await;
    let (status, body) = bulk(&client, STREAM, vec![create("z", check_doc("z", 1))]).await;
    assert_eq!(status, 200);
    assert_eq!(body["errors"], false);
    let last = es.requests().pop().unwrap();
    assert_eq!(last.header("content-encoding"), Some("gzip"));
    assert!(last.body_text().contains("\"create\""));
}

#[tokio::test]
async fn requests_are_recorded_with_lowercase_headers_body_and_status() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    bulk(&client, STREAM, vec![create("r", check_doc("r", 1))]).await;
    let requests = es.requests();
    assert_eq!(requests.len(), 5);
    let last = requests.last().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.path, format!("/{STREAM}/_bulk"));
    assert!(last.is_bulk());
    assert_eq!(last.status, 200);
    assert_eq!(last.header("content-type"), Some("application/json"));
    assert!(last
        .header("user-agent")
        .unwrap()
        .starts_with("elasticsearch-rs/"));
    assert!(last.headers.iter().all(|(k, _)| k == &k.to_lowercase()));
    assert!(last.body_text().ends_with('\n'));
    assert_eq!(requests[0].path, "/_ilm/policy/iaso-probe");
}

#[tokio::test]
async fn unknown_endpoints_and_wrong_methods_get_elasticsearch_shaped_errors() {
    let es = EsEmulator::start();
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/a/b/c/d", es.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b,
        json!({"error": "no handler found for uri [/a/b/c/d] and method [GET]"})
    );
    let r = http
        .get(format!("{}/_bulk", es.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST,PUT");
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b["error"],
        "Incorrect HTTP method for uri [/_bulk] and method [GET], allowed: [POST, PUT]"
    );
}

#[tokio::test]
async fn odd_requests_get_elasticsearch_errors_and_never_break_the_emulator() {
    let es = EsEmulator::start();
    let http = reqwest::Client::new();
    let cases: Vec<(&str, &str, &str)> = vec![
        ("POST", "/_bulk", "{\"index\":{\"_index\":\"UPPER\"}}\n{}\n"),
        ("POST", "/_bulk", "{\"index\":{\"_index\":\"_under\"}}\n{}\n"),
        ("POST", "/_bulk", "{\"index\":{\"_index\":\"ok\"}}\nnot json\n"),
        ("POST", "/_bulk", "{\"index\":{\"_index\":\"ok\"}}\n[1,2]\n"),
        ("POST", "/_bulk", "{\"index\":{\"_index\":\"ok\",\"_id\":\"é/ü\"}}\n{\"_id\":\"x\"}\n"),
        ("POST", "/_bulk", "not json at all\n"),
        ("POST", "/_bulk", "[]\n"),
        ("POST", "/_bulk", "{}\n"),
        ("POST", "/_bulk", "{\"index\":1}\n{}\n"),
        ("POST", "/_bulk", "{\"create\":{},\"index\":{}}\n{}\n"),
        ("POST", "/_bulk", "\n\n\n"),
        ("POST", "/_bulk", "{\"delete\":{\"_index\":\"nope\",\"_id\":\"1\"}}\n"),
        ("POST", "/_bulk", "{\"update\":{\"_index\":\"ok\",\"_id\":\"1\"}}\n{\"script\":\"x\"}\n"),
        ("POST", "/_bulk?refresh=maybe", "{\"index\":{\"_index\":\"ok\"}}\n{}\n"),
        ("POST", "/ok/_search", "{\"query\":{\"fuzzy\":{\"a\":\"b\"}}}"),
        ("POST", "/ok/_search", "{\"aggs\":{}}"),
        ("POST", "/ok/_search", "{\"query\":{\"range\":{\"a\":{\"gte\":\"x\"}}},\"sort\":[\"a\"]}"),
        ("POST", "/ok/_count", "[1]"),
        ("PUT", "/_index_template/t", "{\"index_patterns\":\"x-*\",\"unknown\":1}"),
        ("PUT", "/_index_template/t", "{\"index_patterns\":[\"ts-*\"],\"data_stream\":{},\"template\":{\"mappings\":{\"properties\":{\"@timestamp\":{\"type\":\"keyword\"}}}}}"),
        ("PUT", "/_component_template/c", "{\"template\":{\"mappings\":{\"dynamic\":\"sometimes\"}}}"),
        ("PUT", "/_ilm/policy/p", "{\"policy\":{\"phases\":{\"lukewarm\":{}}}}"),
        ("PUT", "/_ilm/policy/p", "{\"policy\":{\"phases\":{\"warm\":{\"actions\":{\"rollover\":{}}}}}}"),
        ("PUT", "/_ilm/policy/p", ""),
        ("PUT", "/_data_stream/no-template", ""),
        ("DELETE", "/ok,*", ""),
        ("GET", "/%ZZ/_doc/%", ""),
        ("GET", "/ok/_doc/missing", ""),
        ("POST", "/missing-stream/_rollover", ""),
    ];
    for (method, path, body) in cases {
        let resp = http
            .request(method.parse().unwrap(), format!("{}{path}", es.url()))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!(
            (200..500).contains(&status),
            "{method} {path} {body:?} -> {status}"
        );
        let text = resp.text().await.unwrap();
        let parsed: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        if status >= 400 {
            assert!(
                parsed.get("error").is_some() || parsed.get("found").is_some(),
                "{text}"
            );
        }
    }
    let health = http
        .get(format!("{}/_cluster/health", es.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[test]
fn the_emulator_can_be_shared_between_threads_and_tasks() {
    fn shareable<T: Send + Sync>() {}
    shareable::<EsEmulator>();
}

#[tokio::test]
async fn the_x_opaque_id_header_is_echoed() {
    let es = EsEmulator::start();
    let r = reqwest::Client::new()
        .get(es.url())
        .header("x-opaque-id", "probe-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-opaque-id"], "probe-42");
}

#[actix_rt::test]
async fn it_serves_tests_running_on_an_actix_system() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    let (status, _) = bulk(
        &client,
        STREAM,
        vec![create("actix", check_doc("actix", 1))],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(es.count(STREAM), 1);
}

#[tokio::test(start_paused = true)]
async fn it_answers_while_the_test_runtime_has_paused_time() {
    let es = EsEmulator::start();
    es.set_slow(Some(Duration::from_millis(50)));
    let resp = reqwest::get(es.url()).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_hundred_thousand_small_documents_fit_and_search_caps_total_hits_at_ten_thousand() {
    let es = EsEmulator::start();
    let client = client(&es);
    setup_templates(&client).await;
    for batch in 0..20 {
        let mut body = String::new();
        for i in 0..5000 {
            let id = format!("b{batch}-{i}");
            body.push_str(&format!(
                "{}\n{}\n",
                json!({"create": {"_id": id}}),
                check_doc(&id, i)
            ));
        }
        let r = raw_post(
            &format!("{}/{STREAM}/_bulk?filter_path=errors", es.url()),
            body,
            "application/x-ndjson",
        )
        .await;
        assert_eq!(r.text().await.unwrap(), "{\"errors\":false}");
    }
    assert_eq!(es.count(STREAM), 100_000);
    let search: Value = client
        .search(SearchParts::Index(&[STREAM]))
        .size(1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        search["hits"]["total"],
        json!({"value": 10000, "relation": "gte"})
    );
}
