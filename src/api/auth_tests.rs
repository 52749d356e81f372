//! The token manager against a simulator on the test's thread, in paused tokio time: one
//! login however many callers need a token, the refused login remembered, the floor between
//! logins, renewal at 80 % of the lifetime, and the wait after a rate-limited login.

use super::*;
use crate::limiter::EnvLimits;
use crate::simulator::local::LocalSimulator;
use crate::test_support::loopback::{LoopbackServer, Response};
use crate::test_support::quiet_simulator;
use std::num::{NonZeroU32, NonZeroUsize};
use std::rc::Rc;
use std::sync::Arc;

fn client(base_url: &str) -> ApiClient {
    let cfg: crate::config::EnvironmentConfig =
        toml::from_str(&format!("base_url = \"{base_url}\"")).unwrap();
    let n = NonZeroU32::new(1000).unwrap();
    let limits = Arc::new(EnvLimits::new("lab", n, n, NonZeroUsize::new(64).unwrap()));
    ApiClient::for_this_thread(base_url, Arc::new(cfg), limits)
}

fn manager(password: &str) -> TokenManager {
    TokenManager::new("probe".into(), Secret::new(password))
}

async fn sim(token_ttl_ms: u64) -> LocalSimulator {
    let mut cfg = quiet_simulator();
    cfg.token_ttl_ms = token_ttl_ms;
    LocalSimulator::start(cfg).await
}

fn logins_sent(sim: &LocalSimulator) -> u64 {
    sim.counters().endpoint("auth").requests
}

#[actix_rt::test]
async fn callers_that_need_a_token_at_once_cause_one_login() {
    tokio::time::pause();
    let sim = sim(3_600_000).await;
    let (c, tokens) = (client(&sim.base_url()), manager("probe-secret"));
    let leases = futures_util::future::join_all((0..20).map(|_| tokens.lease(&c))).await;
    let generations: Vec<u64> = leases
        .iter()
        .map(|(l, _)| l.as_ref().expect("a token").generation)
        .collect();
    assert!(generations.iter().all(|g| *g == 1), "{generations:?}");
    let reported = leases.iter().filter(|(_, call)| call.is_some()).count();
    assert_eq!(reported, 1, "the one login is reported by its caller only");
    assert_eq!((tokens.logins(), logins_sent(&sim)), (1, 1));
}

#[actix_rt::test]
async fn a_refused_login_is_remembered_for_30_s_not_retried_per_caller() {
    tokio::time::pause();
    let sim = sim(3_600_000).await;
    let (c, tokens) = (client(&sim.base_url()), manager("wrong"));
    assert!(tokens.lease(&c).await.0.is_err());
    for _ in 0..5 {
        let (lease, call) = tokens.lease(&c).await;
        assert!(lease.is_err() && call.is_none());
    }
    assert_eq!(logins_sent(&sim), 1);
    tokio::time::sleep(LOGIN_RETRY_AFTER).await;
    assert!(tokens.lease(&c).await.1.is_some(), "tried again after 30 s");
    assert_eq!(logins_sent(&sim), 2);
}

#[actix_rt::test]
async fn a_forced_login_waits_for_the_floor_after_the_last_one() {
    tokio::time::pause();
    let sim = sim(3_600_000).await;
    let (c, tokens) = (client(&sim.base_url()), manager("probe-secret"));
    tokens.lease(&c).await.0.unwrap();
    let t0 = Instant::now();
    tokens.forget();
    let lease = tokens.lease(&c).await.0.unwrap();
    // api.auth.min_login_interval_secs defaults to 10.
    assert!(
        t0.elapsed() >= Duration::from_secs(10),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!((lease.generation, logins_sent(&sim)), (2, 2));
}

#[actix_rt::test]
async fn a_token_is_renewed_once_80_percent_of_its_lifetime_passed() {
    tokio::time::pause();
    // expiresIn: 100 s: renewed from 80 s on.
    let sim = sim(100_000).await;
    let (c, tokens) = (client(&sim.base_url()), manager("probe-secret"));
    assert_eq!(tokens.lease(&c).await.0.unwrap().generation, 1);
    tokio::time::sleep(Duration::from_secs(79)).await;
    let (lease, call) = tokens.lease(&c).await;
    assert!(call.is_none());
    assert_eq!(lease.unwrap().generation, 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(tokens.lease(&c).await.0.unwrap().generation, 2);
    assert_eq!(logins_sent(&sim), 2);
}

#[actix_rt::test]
async fn a_401_drops_only_the_token_it_was_given_for() {
    tokio::time::pause();
    let sim = sim(3_600_000).await;
    let (c, tokens) = (client(&sim.base_url()), manager("probe-secret"));
    let first = tokens.lease(&c).await.0.unwrap();
    tokens.invalidate(first.generation);
    let second = tokens.lease(&c).await.0.unwrap();
    assert_eq!(second.generation, 2);
    // A late 401 for the first token must not drop the second one.
    tokens.invalidate(first.generation);
    let (lease, call) = tokens.lease(&c).await;
    assert!(call.is_none());
    assert_eq!(lease.unwrap().generation, 2);
    assert_eq!(logins_sent(&sim), 2);
}

#[actix_rt::test]
async fn a_rate_limited_login_waits_as_told_and_is_sent_again() {
    tokio::time::pause();
    let sent = Rc::new(std::cell::Cell::new(0u32));
    let n = sent.clone();
    let portal = LoopbackServer::start(Rc::new(move |_| {
        n.set(n.get() + 1);
        let res = if n.get() == 1 {
            let mut r = Response::json(429, "{}");
            r.headers.push(("retry-after".into(), "20".into()));
            r
        } else {
            Response::json(200, r#"{"token":"t-2","expiresIn":3600}"#)
        };
        Box::pin(async move { res })
    }))
    .await;
    let (c, tokens) = (client(&portal.base_url()), manager("probe-secret"));
    let t0 = Instant::now();
    let (lease, call) = tokens.lease(&c).await;
    assert_eq!(lease.unwrap().token.expose(), "t-2");
    assert!(
        call.unwrap().outcome.is_ok(),
        "the reported login is the last one"
    );
    assert!(
        t0.elapsed() >= Duration::from_secs(20),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!((sent.get(), tokens.logins()), (2, 2));
}
