//! The environment's token: shared by every actor of the environment, renewed single-flight
//! (one login however many jobs see a 401 or an expiry at once), at 80 % of its lifetime,
//! and never more than one login per `api.auth.min_login_interval_secs` whatever the portal
//! says (a portal announcing `expiresIn: 1`, or refusing every token, cannot make the prober
//! hammer the login and lock the service account).

use super::retry::{self, Action, Site};
use super::{ApiClient, ApiError, Call, Token};
use crate::config::Secret;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
// tokio's clock, so that paused time drives renewal in tests.
use tokio::time::Instant;

/// Share of the announced lifetime after which the token is renewed.
const RENEW_AT: f64 = 0.8;

/// When a token issued at `issued` with `lifetime` is renewed: at 80 % of its lifetime,
/// never sooner than `floor` after the login; None = never by time (unknown lifetime, or
/// a deadline beyond the clock's range), only after a 401.
pub fn renew_deadline(
    issued: Instant,
    lifetime: Option<Duration>,
    floor: Duration,
) -> Option<Instant> {
    let lifetime = lifetime?;
    // Saturating arithmetic: the lifetime is clamped when parsed, but this must hold for
    // any Duration (an Instant overflow panics).
    let at = Duration::try_from_secs_f64(lifetime.as_secs_f64() * RENEW_AT)
        .unwrap_or(Duration::MAX)
        .max(floor);
    issued.checked_add(at)
}

/// A token and the generation it belongs to (to invalidate exactly that one on a 401).
#[derive(Clone)]
pub struct TokenLease {
    pub token: Secret,
    pub generation: u64,
}

/// After a refused login, further leases fail at once for this long instead of hammering
/// the portal (and locking the account) with one login per job.
const LOGIN_RETRY_AFTER: Duration = Duration::from_secs(30);

struct State {
    /// The token and when to renew it.
    token: Option<(Secret, Option<Instant>)>,
    generation: u64,
    failed: Option<(Instant, ApiError)>,
    /// When the last login request was sent (the floor counts from there).
    last_login: Option<Instant>,
}

/// Owns the credentials and the current token of one environment.
pub struct TokenManager {
    username: String,
    password: Secret,
    // std Mutex: held only to read or swap the token, never across an await.
    state: Mutex<State>,
    // tokio Mutex: held across the login request so that only one login runs at a time.
    login: tokio::sync::Mutex<()>,
    logins: AtomicU64,
}

impl TokenManager {
    pub fn new(username: String, password: Secret) -> Self {
        Self {
            username,
            password,
            state: Mutex::new(State {
                token: None,
                generation: 0,
                failed: None,
                last_login: None,
            }),
            login: tokio::sync::Mutex::new(()),
            logins: AtomicU64::new(0),
        }
    }

    /// Login requests sent so far (retries after a 429 included).
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    fn recent_failure(&self) -> Option<ApiError> {
        let s = self.state.lock().unwrap();
        match &s.failed {
            Some((at, e)) if at.elapsed() < LOGIN_RETRY_AFTER => Some(e.clone()),
            _ => None,
        }
    }

    fn current(&self) -> Option<TokenLease> {
        let s = self.state.lock().unwrap();
        match &s.token {
            Some((t, renew)) if renew.is_none_or(|r| Instant::now() < r) => Some(TokenLease {
                token: t.clone(),
                generation: s.generation,
            }),
            _ => None,
        }
    }

    /// A valid token, logging in when there is none or it is about to expire. The login
    /// call, when one was made by this caller, is returned so that it can be reported.
    pub async fn lease(
        &self,
        client: &ApiClient,
    ) -> (Result<TokenLease, ApiError>, Option<Call<Token>>) {
        if let Some(l) = self.current() {
            return (Ok(l), None);
        }
        if let Some(e) = self.recent_failure() {
            return (Err(e), None);
        }
        // Boxed: the login's future is large, and every status poll's future would carry
        // its size while it waits at the limiter (memory per tracked job).
        Box::pin(self.lease_by_login(client)).await
    }

    /// [`lease`](Self::lease) when there is no token: one login (single-flight).
    async fn lease_by_login(
        &self,
        client: &ApiClient,
    ) -> (Result<TokenLease, ApiError>, Option<Call<Token>>) {
        let _guard = self.login.lock().await;
        // Someone else may have logged in (or failed to) while we waited.
        if let Some(l) = self.current() {
            return (Ok(l), None);
        }
        if let Some(e) = self.recent_failure() {
            return (Err(e), None);
        }
        let floor = Duration::from_secs(client.api_mapping().auth.min_login_interval_secs);
        let mut call = self.login_no_sooner_than_floor(client, floor).await;
        // The portal's rate limit is not a refused login: wait as told (and at least the
        // floor) and try again.
        let mut attempt = 1;
        while let Err(e) = &call.outcome {
            let Action::Retry { after } = retry::classify(Site::Login, e, attempt) else {
                break;
            };
            tokio::time::sleep(after).await;
            attempt += 1;
            call = self.login_no_sooner_than_floor(client, floor).await;
        }
        let res = match &call.outcome {
            Ok(tok) => {
                let mut s = self.state.lock().unwrap();
                s.generation += 1;
                let issued = s.last_login.unwrap_or_else(Instant::now);
                let renew = renew_deadline(issued, tok.expires_in, floor);
                s.token = Some((tok.value.clone(), renew));
                s.failed = None;
                Ok(TokenLease {
                    token: tok.value.clone(),
                    generation: s.generation,
                })
            }
            Err(e) => {
                self.state.lock().unwrap().failed = Some((Instant::now(), e.clone()));
                Err(e.clone())
            }
        };
        (res, Some(call))
    }

    /// One login request, sent no sooner than `floor` after the previous one (waiting with
    /// the login lock held: every other caller waits for this login's token).
    async fn login_no_sooner_than_floor(&self, client: &ApiClient, floor: Duration) -> Call<Token> {
        let last = self.state.lock().unwrap().last_login;
        if let Some(next) = last.and_then(|l| l.checked_add(floor)) {
            if Instant::now() < next {
                tracing::debug!(
                    wait_ms = (next - Instant::now()).as_millis() as u64,
                    "login held back by api.auth.min_login_interval_secs"
                );
                tokio::time::sleep_until(next).await;
            }
        }
        self.state.lock().unwrap().last_login = Some(Instant::now());
        self.logins.fetch_add(1, Ordering::Relaxed);
        client.login(&self.username, &self.password).await
    }

    /// Forces the next [`lease`](Self::lease) to log in (the auth check does this).
    pub(crate) fn forget(&self) {
        let mut s = self.state.lock().unwrap();
        s.token = None;
        s.failed = None;
    }

    /// The token of `generation` was refused (401): drop it unless already replaced.
    pub(crate) fn invalidate(&self, generation: u64) {
        let mut s = self.state.lock().unwrap();
        if s.generation == generation {
            s.token = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[tokio::test(start_paused = true)]
    async fn a_token_is_renewed_at_80_percent_of_its_lifetime() {
        let issued = Instant::now();
        let at = renew_deadline(issued, Some(S(3600)), S(10)).unwrap();
        assert_eq!(at - issued, S(2880));
        tokio::time::advance(S(2879)).await;
        assert!(Instant::now() < at);
        tokio::time::advance(S(1)).await;
        assert!(Instant::now() >= at);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_lifetime_is_renewed_no_sooner_than_the_floor() {
        let issued = Instant::now();
        // expiresIn: 20 with a 30 s margin used to mean "renew before every call".
        assert_eq!(
            renew_deadline(issued, Some(S(20)), S(10)).unwrap() - issued,
            S(16)
        );
        assert_eq!(
            renew_deadline(issued, Some(S(1)), S(10)).unwrap() - issued,
            S(10)
        );
        assert_eq!(
            renew_deadline(issued, Some(Duration::from_millis(1)), Duration::ZERO).unwrap()
                - issued,
            Duration::from_micros(800)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_or_unrepresentable_lifetime_renews_only_after_a_401() {
        let issued = Instant::now();
        assert_eq!(renew_deadline(issued, None, S(10)), None);
        assert_eq!(renew_deadline(issued, Some(Duration::MAX), S(10)), None);
        assert!(renew_deadline(issued, Some(S(u64::MAX / 4)), S(u64::MAX)).is_none());
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests_paused;
