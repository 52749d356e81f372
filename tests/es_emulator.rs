//! Tests of the in-process Elasticsearch emulator, through the official crate and raw reqwest.

mod support;

use support::es_emulator::EsEmulator;

#[tokio::test]
async fn root_answers_with_the_product_header() {
    let es = EsEmulator::start();
    let resp = reqwest::get(es.url()).await.unwrap();
    assert_eq!(resp.headers()["x-elastic-product"], "Elasticsearch");
}
