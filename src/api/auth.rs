//! The environment's token: shared by every actor of the environment, renewed single-flight
//! (one login however many jobs see a 401 or an expiry at once).

use super::{ApiClient, ApiError, Call, Token};
use crate::config::Secret;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Renew this long before the announced expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

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
    token: Option<(Secret, Option<Instant>)>,
    generation: u64,
    failed: Option<(Instant, ApiError)>,
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
            }),
            login: tokio::sync::Mutex::new(()),
            logins: AtomicU64::new(0),
        }
    }

    /// Login requests made so far.
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
            Some((t, exp)) if exp.is_none_or(|e| Instant::now() + EXPIRY_MARGIN < e) => {
                Some(TokenLease {
                    token: t.clone(),
                    generation: s.generation,
                })
            }
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
        let _guard = self.login.lock().await;
        // Someone else may have logged in (or failed to) while we waited.
        if let Some(l) = self.current() {
            return (Ok(l), None);
        }
        if let Some(e) = self.recent_failure() {
            return (Err(e), None);
        }
        self.logins.fetch_add(1, Ordering::Relaxed);
        let call = client.login(&self.username, &self.password).await;
        let res = match &call.outcome {
            Ok(tok) => {
                let mut s = self.state.lock().unwrap();
                s.generation += 1;
                let exp = tok.expires_in.map(|d| Instant::now() + d);
                s.token = Some((tok.value.clone(), exp));
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

    /// Forces the next [`lease`](Self::lease) to log in (the auth check does this).
    pub fn forget(&self) {
        let mut s = self.state.lock().unwrap();
        s.token = None;
        s.failed = None;
    }

    /// The token of `generation` was refused (401): drop it unless already replaced.
    pub fn invalidate(&self, generation: u64) {
        let mut s = self.state.lock().unwrap();
        if s.generation == generation {
            s.token = None;
        }
    }
}
