//! Property tests of the seven answer parsers (liveness, health, login, backup launch,
//! restore launch, job status, response time) through the real functions of
//! `iaso_probe::api::answers`, for the reference and the alternative mapping: whatever the
//! HTTP status and body (JSON shaped like the portal's, with out-of-range numbers, or plain
//! bytes), the answer is a value or an error, never a panic, and what is accepted is in range.
//!
//! `cargo test --test answers_fuzz` runs 256 cases per property with a fixed seed. A long run:
//! `PROPTEST_CASES=1000000 cargo test --release --test answers_fuzz -- --nocapture`
//! (`ANSWERS_FUZZ_SEED=<n>` changes the seed).

use iaso_probe::api::answers::{
    self, MAX_ELAPSED_S, MAX_JOB_ID_LEN, MAX_TOKEN_LIFETIME, MIN_TOKEN_LIFETIME,
};
use iaso_probe::api::renew_deadline;
use iaso_probe::config::load::load_with;
use iaso_probe::config::{ApiMapping, ConfigSource};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::path::Path;
use std::time::Duration;

/// Keys the parsers look for, so that generated objects reach every branch.
const KEYS: &[&str] = &[
    "token",
    "expiresIn",
    "jobId",
    "status",
    "statusCode",
    "services",
    "name",
    "percentComplete",
    "elapsedSeconds",
    "phase",
    "failureReason",
    "result",
    "id",
    "state",
    "data",
    "progress",
    "components",
    "health",
    "access_token",
    "expires",
];

/// Number literals, including the ones that broke the prober.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "20",
    "1e300",
    "-1e300",
    "1e19",
    "1.5e300",
    "1e400",
    "5e-324",
    "123456789012345678901234567890",
    "-123456789012345678901234567890",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "9223372036854775807",
    "1.5",
    "100.0000001",
];

/// Strings, including numeric ones that parse to NaN or infinity.
const STRINGS: &[&str] = &[
    "",
    "NaN",
    "inf",
    "-inf",
    "1e300",
    "20",
    "Completed",
    "Running",
    "Failed",
    "healthy",
    "OK",
    "J1",
    "a\nb",
    "\u{0}",
    "é",
    "  ",
    "-5",
];

fn json_leaf() -> BoxedStrategy<String> {
    prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        prop::sample::select(NUMBERS).prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        prop::sample::select(STRINGS).prop_map(|s| serde_json::to_string(s).unwrap()),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
    .boxed()
}

/// JSON text shaped like the portal's answers (objects keyed by the fields it uses).
fn json_text() -> BoxedStrategy<String> {
    json_leaf()
        .prop_recursive(5, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((key(), inner), 0..8).prop_map(|kv| {
                    let fields: Vec<String> = kv
                        .into_iter()
                        .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap()))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        })
        .boxed()
}

fn status() -> BoxedStrategy<u16> {
    prop_oneof![
        6 => Just(200u16),
        1 => prop::sample::select(&[201u16, 204, 301, 400, 401, 403, 404, 429, 500, 503][..]),
        1 => any::<u16>(),
    ]
    .boxed()
}

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let seed: u64 = std::env::var("ANSWERS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261202);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// The reference mapping and the alternative portal's (config/alt-portal.toml).
fn mappings() -> Vec<ApiMapping> {
    let alt = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/alt-portal.toml");
    let cfg = load_with(&ConfigSource::Files(vec![alt]), false)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    vec![ApiMapping::default(), cfg.environments["alt"].api.clone()]
}

/// Every parser on one answer, with the range properties of what they accept.
fn check_all(apis: &[ApiMapping], status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    for a in apis {
        let _ = answers::liveness(&a.liveness, status, body);
        let _ = answers::timed(status, body);
        if let Ok(h) = answers::health(&a.health, status, body) {
            prop_assert!(h.components.len() <= body.len());
        }
        match answers::login(&a.auth, &a.token_header, &a.token_format, status, body) {
            Ok(t) => {
                prop_assert!(!t.value.expose().is_empty());
                if let Some(d) = t.expires_in {
                    prop_assert!(d >= MIN_TOKEN_LIFETIME && d <= MAX_TOKEN_LIFETIME);
                }
                // The renewal arithmetic on the real clock, with any floor.
                for floor in [0, 10, 3600] {
                    let now = tokio::time::Instant::now();
                    let _ = renew_deadline(now, t.expires_in, Duration::from_secs(floor));
                }
            }
            Err(e) => {
                let _ = e.error_type();
                let _ = e.to_string();
            }
        }
        for ep in [&a.backup, &a.restore] {
            if let Ok(l) = answers::launch(ep, status, body) {
                prop_assert!(!l.job_id.trim().is_empty() && l.job_id.len() <= MAX_JOB_ID_LEN);
                // A numeric id is an exact integer: it reads back as the same integer.
                let v: serde_json::Value = serde_json::from_slice(body).unwrap();
                if let Some(n) = v.pointer(&ep.job_id_pointer).and_then(|x| x.as_number()) {
                    prop_assert!(n.is_i64() || n.is_u64());
                    prop_assert_eq!(&n.to_string(), &l.job_id);
                }
            }
        }
        if let Ok(s) = answers::job_status(&a.job_status, status, body) {
            prop_assert!(!s.status.is_empty());
            if let Some(p) = s.percent {
                prop_assert!((0.0..=100.0).contains(&p));
            }
            if let Some(e) = s.elapsed_s {
                prop_assert!(e <= MAX_ELAPSED_S);
            }
        }
    }
    Ok(())
}

#[test]
fn no_portal_shaped_json_answer_panics_a_parser_and_accepted_values_are_in_range() {
    let apis = mappings();
    let started = std::time::Instant::now();
    let mut r = runner();
    let cases = r.config().cases;
    r.run(&(status(), json_text()), |(status, body)| {
        check_all(&apis, status, body.as_bytes())
    })
    .unwrap();
    eprintln!(
        "answers_fuzz json: {cases} inputs x 7 answers x {} mappings in {:?}",
        apis.len(),
        started.elapsed()
    );
}

#[test]
fn no_arbitrary_bytes_panic_a_parser() {
    let apis = mappings();
    let started = std::time::Instant::now();
    let mut r = runner();
    let cases = r.config().cases;
    r.run(
        &(status(), prop::collection::vec(any::<u8>(), 0..512)),
        |(status, body)| check_all(&apis, status, &body),
    )
    .unwrap();
    eprintln!(
        "answers_fuzz bytes: {cases} inputs x 7 answers x {} mappings in {:?}",
        apis.len(),
        started.elapsed()
    );
}

#[test]
fn the_generator_reaches_accepted_answers_of_every_kind() {
    // A property test that never produces a valid answer tests only the error paths.
    let a = ApiMapping::default();
    let mut r = runner();
    let (mut tokens, mut launches, mut statuses) = (0, 0, 0);
    let strategy = json_text();
    for _ in 0..2000 {
        let body = strategy.new_tree(&mut r).unwrap().current();
        let b = body.as_bytes();
        tokens += answers::login(&a.auth, &a.token_header, &a.token_format, 200, b).is_ok() as u32;
        launches += answers::launch(&a.backup, 200, b).is_ok() as u32;
        statuses += answers::job_status(&a.job_status, 200, b).is_ok() as u32;
    }
    assert!(
        tokens > 0 && launches > 0 && statuses > 0,
        "tokens {tokens}, launches {launches}, statuses {statuses}"
    );
}

#[test]
fn a_lifetime_in_any_unit_never_overflows_the_renewal_clock() {
    let mut r = runner();
    r.run(
        &(any::<u64>(), any::<u32>(), any::<u64>()),
        |(secs, nanos, floor)| {
            let d = Duration::new(secs, nanos % 1_000_000_000);
            let now = tokio::time::Instant::now();
            let _ = renew_deadline(now, Some(d), Duration::from_secs(floor));
            Ok(())
        },
    )
    .unwrap();
}
