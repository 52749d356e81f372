//! What to do after a failed portal call, in one place: a pure [`classify`] of the failure
//! (by the kind of call and the attempt it ended), and [`authorized`], the one loop every
//! call with a token goes through (lease, send, re-login once after a 401, wait as told
//! after a 429). Vector's `retry.rs` is the model: the rules are a table, tested as one.

use super::{ApiError, Call, TokenLease, TokenManager};
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

/// Launches (and logins) answered 429 are sent again this many times at most.
pub(crate) const MAX_RATE_LIMITED_RETRIES: u32 = 10;

/// Logins answered 429 are sent again this many times at most (each no sooner than
/// `api.auth.min_login_interval_secs` after the previous one).
pub(crate) const MAX_RATE_LIMITED_LOGINS: u32 = 3;

/// The longest wait a `Retry-After` can impose: a portal asking for an hour must not stall
/// a launch (or every job of the environment, behind the login) that long.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The wait after a 429 without `Retry-After`.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The kind of call that failed: each has its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// The login itself (no token to renew).
    Login,
    /// A backup or restore launch: a 429 is not a failed launch.
    Launch,
    /// A check's call (liveness, health) that sends the token; the check's own `attempts`
    /// retry any failure around it.
    Check,
    /// A job's status poll: a 429 is not a failed poll, the job polls again later.
    Status,
}

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The token was refused: drop it (its generation only), lease again, send once more.
    ReLogin,
    /// Send again after waiting `after` (the portal's rate limit).
    Retry { after: Duration },
    /// Report the call, but not as a failure of what it probes: the caller tries again no
    /// sooner than `after`, at its next turn (a job's next poll).
    Backoff { after: Duration },
    /// Report the call as it is.
    GiveUp,
}

/// How long to wait after a 429: `Retry-After` capped at [`MAX_RETRY_AFTER`], else
/// [`DEFAULT_RETRY_AFTER`].
pub(crate) fn retry_after(retry_after: Option<Duration>) -> Duration {
    retry_after
        .unwrap_or(DEFAULT_RETRY_AFTER)
        .min(MAX_RETRY_AFTER)
}

/// What to do after `attempt` (1 = the first) of a call at `site` failed with `e`.
///
/// A 401 re-logs in once, after the first attempt only (a refused fresh token is the
/// answer); a 429 is retried a bounded number of times (launch, login) or postponed
/// (status). Everything else is reported: the actors' schedules are the retries (a check's
/// `attempts`, a job's next poll and `max_consecutive_poll_failures`).
pub(crate) fn classify(site: Site, e: &ApiError, attempt: u32) -> Action {
    match (site, e) {
        (Site::Launch | Site::Check | Site::Status, ApiError::Unauthorized(401))
            if attempt == 1 =>
        {
            Action::ReLogin
        }
        (Site::Launch, ApiError::RateLimited { retry_after: r })
            if attempt <= MAX_RATE_LIMITED_RETRIES =>
        {
            Action::Retry {
                after: retry_after(*r),
            }
        }
        (Site::Login, ApiError::RateLimited { retry_after: r })
            if attempt <= MAX_RATE_LIMITED_LOGINS =>
        {
            Action::Retry {
                after: retry_after(*r),
            }
        }
        (Site::Status, ApiError::RateLimited { retry_after: r }) => Action::Backoff {
            after: retry_after(*r),
        },
        _ => Action::GiveUp,
    }
}

/// The `stop` of a call that is never cut.
pub fn never() -> std::future::Pending<Infallible> {
    std::future::pending()
}

/// How an [`authorized`] call ended; `X` is what its `stop` future gives (`Infallible` for a
/// call that is never cut: then [`Sent::Stopped`] cannot happen, and the compiler knows).
pub(crate) enum Sent<T, X = Infallible> {
    /// The deciding call (a success, or the failure to report), and the wait the portal
    /// asked for when the failure is only its rate limit ([`Action::Backoff`]).
    Answered {
        call: Call<T>,
        backoff: Option<Duration>,
    },
    /// No token (the lease failed with this error): nothing was sent.
    NoToken(ApiError),
    /// `stop` resolved while a request was waiting at the limiter or in flight: the request
    /// was abandoned.
    Stopped(X),
}

/// The one loop of a call with a token: `lease` a token, `send` with it, then as
/// [`classify`] says: after a 401 invalidate that token's generation and lease again
/// (reported by `lease` if it logs in), after a 429 wait and send again.
///
/// Only `send` is raced against `stop` ([`never`] for a call that is never cut): a lease,
/// and what it reports, always completes.
pub(crate) async fn authorized<T, X, L, LF, S, SF>(
    site: Site,
    tokens: &TokenManager,
    mut lease: L,
    mut send: S,
    stop: impl Future<Output = X>,
) -> Sent<T, X>
where
    L: FnMut() -> LF,
    LF: Future<Output = Result<TokenLease, ApiError>>,
    S: FnMut(TokenLease) -> SF,
    SF: Future<Output = Call<T>>,
{
    let mut stop = std::pin::pin!(stop);
    let mut attempt = 1;
    loop {
        let lease = match lease().await {
            Ok(l) => l,
            Err(e) => return Sent::NoToken(e),
        };
        let generation = lease.generation;
        let call = tokio::select! {
            biased;
            x = &mut stop => return Sent::Stopped(x),
            call = send(lease) => call,
        };
        let action = match &call.outcome {
            Ok(_) => Action::GiveUp,
            Err(e) => classify(site, e, attempt),
        };
        match action {
            Action::ReLogin => tokens.invalidate(generation),
            Action::Retry { after } => tokio::time::sleep(after).await,
            Action::Backoff { after } => {
                return Sent::Answered {
                    call,
                    backoff: Some(after),
                }
            }
            Action::GiveUp => {
                return Sent::Answered {
                    call,
                    backoff: None,
                }
            }
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Exchange;
    use crate::config::Secret;
    use std::sync::atomic::{AtomicU32, Ordering};

    const S: fn(u64) -> Duration = Duration::from_secs;

    /// One of every variant; the match makes a new variant a compile error here, so that
    /// the table below has to say what happens to it.
    fn every_variant() -> Vec<ApiError> {
        let all = vec![
            ApiError::Timeout(5),
            ApiError::Connect("refused".into()),
            ApiError::HttpStatus {
                status: 503,
                excerpt: String::new(),
            },
            ApiError::RateLimited {
                retry_after: Some(S(7)),
            },
            ApiError::Unauthorized(401),
            ApiError::Decode("x".into()),
            ApiError::BodyTooLarge(10),
            ApiError::Assertion("x".into()),
            ApiError::Skipped("x".into()),
            ApiError::Network("reset".into()),
            ApiError::Config("x".into()),
            ApiError::Tls("x".into()),
            ApiError::Redirect {
                status: 307,
                location: String::new(),
            },
            ApiError::TooManyRedirects("x".into()),
            ApiError::Portal("x".into()),
            ApiError::LoginRefused("x".into()),
        ];
        for e in &all {
            match e {
                ApiError::Timeout(_)
                | ApiError::Connect(_)
                | ApiError::HttpStatus { .. }
                | ApiError::RateLimited { .. }
                | ApiError::Unauthorized(_)
                | ApiError::Decode(_)
                | ApiError::BodyTooLarge(_)
                | ApiError::Assertion(_)
                | ApiError::Skipped(_)
                | ApiError::Network(_)
                | ApiError::Config(_)
                | ApiError::Tls(_)
                | ApiError::Redirect { .. }
                | ApiError::TooManyRedirects(_)
                | ApiError::Portal(_)
                | ApiError::LoginRefused(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_failure_at_every_site_has_one_decision() {
        use Action::*;
        let retry7 = Retry { after: S(7) };
        for e in every_variant() {
            let (login, launch, check, status) = match &e {
                ApiError::Unauthorized(401) => (GiveUp, ReLogin, ReLogin, ReLogin),
                ApiError::RateLimited { .. } => (retry7, retry7, GiveUp, Backoff { after: S(7) }),
                _ => (GiveUp, GiveUp, GiveUp, GiveUp),
            };
            assert_eq!(classify(Site::Login, &e, 1), login, "login: {e:?}");
            assert_eq!(classify(Site::Launch, &e, 1), launch, "launch: {e:?}");
            assert_eq!(classify(Site::Check, &e, 1), check, "check: {e:?}");
            assert_eq!(classify(Site::Status, &e, 1), status, "status: {e:?}");
        }
    }

    #[test]
    fn a_401_re_logs_in_after_the_first_attempt_only() {
        for site in [Site::Launch, Site::Check, Site::Status] {
            assert_eq!(
                classify(site, &ApiError::Unauthorized(401), 2),
                Action::GiveUp
            );
        }
        // A 403 is a refusal, not an expired token.
        assert_eq!(
            classify(Site::Launch, &ApiError::Unauthorized(403), 1),
            Action::GiveUp
        );
    }

    #[test]
    fn a_429_is_retried_a_bounded_number_of_times() {
        let e = ApiError::RateLimited { retry_after: None };
        let retry = Action::Retry { after: S(1) };
        assert_eq!(classify(Site::Launch, &e, MAX_RATE_LIMITED_RETRIES), retry);
        assert_eq!(
            classify(Site::Launch, &e, MAX_RATE_LIMITED_RETRIES + 1),
            Action::GiveUp
        );
        assert_eq!(classify(Site::Login, &e, MAX_RATE_LIMITED_LOGINS), retry);
        assert_eq!(
            classify(Site::Login, &e, MAX_RATE_LIMITED_LOGINS + 1),
            Action::GiveUp
        );
        // A status poll is postponed however often: the job's own deadline bounds it.
        assert_eq!(
            classify(Site::Status, &e, 1000),
            Action::Backoff { after: S(1) }
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        assert_eq!(retry_after(None), S(1));
        assert_eq!(retry_after(Some(S(0))), S(0));
        assert_eq!(retry_after(Some(S(12))), S(12));
        assert_eq!(retry_after(Some(S(30))), S(30));
        assert_eq!(retry_after(Some(S(3600))), S(30));
    }

    fn call(outcome: Result<(), ApiError>) -> Call<()> {
        Call {
            exchange: Exchange {
                method: "GET".into(),
                url: String::new(),
                status: None,
                duration: Duration::ZERO,
            },
            outcome,
        }
    }

    fn lease(generation: u64) -> Result<TokenLease, ApiError> {
        Ok(TokenLease {
            token: Secret::new("t".to_owned()),
            generation,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_invalidates_the_token_and_sends_once_more_with_a_new_lease() {
        let tokens = TokenManager::new("u".into(), Secret::new("p".to_owned()));
        let (leases, sends) = (AtomicU32::new(0), AtomicU32::new(0));
        let sent = authorized(
            Site::Check,
            &tokens,
            || async { lease(leases.fetch_add(1, Ordering::SeqCst) as u64) },
            |_| {
                sends.fetch_add(1, Ordering::SeqCst);
                async { call(Err(ApiError::Unauthorized(401))) }
            },
            never(),
        )
        .await;
        let Sent::Answered { call, backoff } = sent else {
            panic!("answered")
        };
        assert_eq!(call.outcome, Err(ApiError::Unauthorized(401)));
        assert_eq!(backoff, None);
        assert_eq!(leases.load(Ordering::SeqCst), 2);
        assert_eq!(sends.load(Ordering::SeqCst), 2, "one re-login, not more");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_launch_waits_as_told_then_succeeds() {
        let tokens = TokenManager::new("u".into(), Secret::new("p".to_owned()));
        let sends = AtomicU32::new(0);
        let t0 = tokio::time::Instant::now();
        let sent = authorized(
            Site::Launch,
            &tokens,
            || async { lease(1) },
            |_| {
                let n = sends.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        call(Err(ApiError::RateLimited {
                            retry_after: Some(S(5)),
                        }))
                    } else {
                        call(Ok(()))
                    }
                }
            },
            never(),
        )
        .await;
        assert!(matches!(sent, Sent::Answered { call, .. } if call.outcome.is_ok()));
        assert_eq!(t0.elapsed(), S(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_status_is_answered_with_its_backoff() {
        let tokens = TokenManager::new("u".into(), Secret::new("p".to_owned()));
        let sent = authorized(
            Site::Status,
            &tokens,
            || async { lease(1) },
            |_| async { call(Err(ApiError::RateLimited { retry_after: None })) },
            never(),
        )
        .await;
        assert!(matches!(
            sent,
            Sent::Answered { backoff: Some(d), .. } if d == S(1)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_token_nothing_is_sent_and_a_stop_cuts_only_the_request() {
        let tokens = TokenManager::new("u".into(), Secret::new("p".to_owned()));
        let sends = AtomicU32::new(0);
        let sent = authorized(
            Site::Status,
            &tokens,
            || async { Err(ApiError::LoginRefused("no".into())) },
            |_| {
                sends.fetch_add(1, Ordering::SeqCst);
                async { call(Ok(())) }
            },
            never(),
        )
        .await;
        assert!(matches!(sent, Sent::NoToken(ApiError::LoginRefused(_))));
        assert_eq!(sends.load(Ordering::SeqCst), 0);

        // The lease takes time and completes although `stop` is already resolved; the
        // request is then abandoned.
        let leased = AtomicU32::new(0);
        let sent = authorized(
            Site::Status,
            &tokens,
            || async {
                tokio::time::sleep(S(1)).await;
                leased.fetch_add(1, Ordering::SeqCst);
                lease(1)
            },
            |_| async {
                tokio::time::sleep(S(60)).await;
                call(Ok(()))
            },
            std::future::ready(()),
        )
        .await;
        assert!(matches!(sent, Sent::Stopped(())));
        assert_eq!(leased.load(Ordering::SeqCst), 1);
    }
}
