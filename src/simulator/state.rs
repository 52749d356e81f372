//! The simulator's state and behaviour: counters, rate limit, faults, tokens, jobs.
//!
//! `State::handle` turns one parsed request into one answer, synchronously and under one
//! lock, so the counters are exact and a snapshot is consistent. Time is passed in
//! (milliseconds since the start), so tests drive it without sleeping.

use std::collections::HashMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::config::{RangeMs, SimulatorConfig};
use super::counters::CountersSnapshot;
use super::dialect::{Answer, Call, Endpoint, Route};
use super::jobs::{Job, JobKind, JobPlan};
use super::ratelimit::TokenBucket;

/// Above this many live tokens, expired ones are swept at the next login.
const TOKEN_SWEEP_THRESHOLD: usize = 1_024;

/// One answer and how long to wait before sending it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub answer: Answer,
    pub delay_ms: u64,
}

/// Everything the simulator remembers.
pub struct State {
    cfg: SimulatorConfig,
    counters: CountersSnapshot,
    /// One stream for latency, faults, tokens and health; job plans do not draw from it.
    rng: SmallRng,
    bucket: Option<TokenBucket>,
    /// Live tokens and the offset (ms) at which each expires.
    tokens: HashMap<String, u64>,
    /// Host name → index into `hosts`.
    host_index: HashMap<String, u32>,
    hosts: Vec<Host>,
    /// Job `n` (as answered) is `jobs[n - 1]`.
    jobs: Vec<Job>,
}

struct Host {
    name: String,
    backups: u32,
    restores: u32,
}

impl State {
    /// A fresh simulator state for a validated `cfg`.
    pub fn new(cfg: SimulatorConfig) -> Self {
        let bucket = cfg
            .rate_limit_per_sec
            .map(|rate| TokenBucket::new(rate, cfg.rate_limit_burst));
        Self {
            rng: SmallRng::seed_from_u64(cfg.seed),
            bucket,
            cfg,
            counters: CountersSnapshot::new(),
            tokens: HashMap::new(),
            host_index: HashMap::new(),
            hosts: Vec::new(),
            jobs: Vec::new(),
        }
    }

    /// A copy of the counters.
    pub fn counters(&self) -> CountersSnapshot {
        self.counters.clone()
    }

    /// Makes every issued token invalid.
    pub fn expire_tokens(&mut self) {
        self.tokens.clear();
    }

    /// Answers a request that arrived at `now_ms`: `call` is the parsed request (None for
    /// an unknown path, an error message for a bad body) and `token` the one it carries.
    pub fn handle(
        &mut self,
        now_ms: u64,
        route: &Route,
        token: Option<&str>,
        call: Option<Result<Call, String>>,
    ) -> Reply {
        let name = route.name();
        self.counters.record_request(name, now_ms);
        let latency_ms = self.draw_latency(self.cfg.latency_for(name));
        let reply = self.decide(now_ms, route, token, call, latency_ms);
        let status = super::dialect::http_status(self.cfg.dialect, route, &reply.answer);
        self.counters.record_status(name, status);
        reply
    }

    fn decide(
        &mut self,
        now_ms: u64,
        route: &Route,
        token: Option<&str>,
        call: Option<Result<Call, String>>,
        latency_ms: u64,
    ) -> Reply {
        let reply = |answer| Reply {
            answer,
            delay_ms: latency_ms,
        };
        if let Some(bucket) = &mut self.bucket {
            if let Err(retry_after_secs) = bucket.try_take(now_ms) {
                return reply(Answer::RateLimited { retry_after_secs });
            }
        }
        let endpoint = match route {
            Route::NotFound => return reply(Answer::error(404, "not found")),
            Route::Endpoint {
                method_ok: false, ..
            } => return reply(Answer::error(405, "method not allowed")),
            Route::Endpoint { endpoint, .. } => *endpoint,
        };
        if let Some(fault) = self.draw_fault(endpoint, latency_ms) {
            return fault;
        }
        if endpoint.needs_token_in(self.cfg.dialect)
            && !token.is_some_and(|t| self.token_is_valid(t, now_ms))
        {
            return reply(Answer::error(401, "invalid or expired token"));
        }
        let call = match call {
            Some(Ok(call)) => call,
            Some(Err(message)) => return reply(Answer::error(400, message)),
            None => return reply(Answer::error(404, "not found")),
        };
        reply(self.execute(now_ms, call))
    }

    /// Draws the fault of this request, if any. A timeout waits `hang_ms` instead of the
    /// latency.
    fn draw_fault(&mut self, endpoint: Endpoint, latency_ms: u64) -> Option<Reply> {
        let name = endpoint.name();
        let f = self.cfg.faults_for(name);
        let (timeout, error, malformed, hang_ms) = (
            f.timeout_ratio,
            f.error_5xx_ratio,
            f.malformed_ratio,
            f.hang_ms,
        );
        if timeout + error + malformed <= 0.0 {
            // No draw: configuring no fault leaves the random stream as it was.
            return None;
        }
        let roll: f64 = self.rng.gen();
        if roll < timeout {
            self.counters.endpoint_mut(name).timeouts += 1;
            Some(Reply {
                answer: Answer::error(504, "gateway timeout"),
                delay_ms: hang_ms,
            })
        } else if roll < timeout + error {
            let (status, message) = [
                (500, "internal server error"),
                (502, "bad gateway"),
                (503, "service unavailable"),
            ][self.rng.gen_range(0..3)];
            Some(Reply {
                answer: Answer::error(status, message),
                delay_ms: latency_ms,
            })
        } else if roll < timeout + error + malformed {
            self.counters.endpoint_mut(name).malformed += 1;
            Some(Reply {
                answer: Answer::Malformed,
                delay_ms: latency_ms,
            })
        } else {
            None
        }
    }

    fn execute(&mut self, now_ms: u64, call: Call) -> Answer {
        match call {
            Call::Alive => Answer::Alive,
            Call::Health => {
                let ratio = self.cfg.unhealthy_ratio;
                let services = self
                    .cfg
                    .components
                    .iter()
                    .map(|name| (name.clone(), !self.rng.gen_bool(ratio)))
                    .collect();
                Answer::Health { services }
            }
            Call::Login { username, password } => self.login(now_ms, &username, &password),
            Call::Launch { kind, host } => self.launch(now_ms, kind, host, false),
            Call::LaunchSubclient {
                kind,
                subclient_id,
                client,
            } => self.launch_subclient(now_ms, kind, subclient_id, client),
            Call::Status { job_id, host } => self.status(now_ms, job_id, host.as_deref()),
        }
    }

    fn login(&mut self, now_ms: u64, username: &str, password: &str) -> Answer {
        let known = self
            .cfg
            .credentials
            .iter()
            .any(|c| c.username == username && c.password == password);
        if !known {
            self.counters.logins_failed += 1;
            return Answer::error(401, "invalid credentials");
        }
        if self.tokens.len() >= TOKEN_SWEEP_THRESHOLD {
            self.tokens.retain(|_, expires_ms| *expires_ms > now_ms);
        }
        let token = format!("{:032x}", self.rng.gen::<u128>());
        self.tokens
            .insert(token.clone(), now_ms.saturating_add(self.cfg.token_ttl_ms));
        self.counters.logins_ok += 1;
        self.counters.tokens_issued += 1;
        Answer::Token {
            token,
            expires_in_secs: self.cfg.token_ttl_ms / 1000,
            username: username.to_owned(),
        }
    }

    fn token_is_valid(&self, token: &str, now_ms: u64) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|expires_ms| now_ms < *expires_ms)
    }

    /// A `commvault` launch: the subclient must be known (and belong to the client when
    /// both are named); by client name alone, the client's first subclient decides the fate.
    fn launch_subclient(
        &mut self,
        now_ms: u64,
        kind: JobKind,
        subclient_id: Option<u64>,
        client: Option<String>,
    ) -> Answer {
        let subs = &self.cfg.subclients;
        let (host, fails) = match (subclient_id, client) {
            (Some(id), client) => match subs.iter().find(|s| s.id == id) {
                None => return Answer::error(404, "Subclient not found"),
                Some(s) if client.as_ref().is_some_and(|c| *c != s.client) => {
                    return Answer::error(
                        400,
                        format!(
                            "Subclient {id} does not belong to client {}",
                            client.unwrap_or_default()
                        ),
                    )
                }
                Some(s) => (s.client.clone(), s.always_fails),
            },
            (None, Some(c)) => {
                let fails = subs.iter().any(|s| s.client == c && s.always_fails);
                (c, fails)
            }
            (None, None) => return Answer::error(404, "Subclient not found"),
        };
        self.launch(now_ms, kind, host, fails)
    }

    fn launch(&mut self, now_ms: u64, kind: JobKind, host: String, always_fails: bool) -> Answer {
        let index = match self.host_index.get(&host) {
            Some(i) => *i,
            None => {
                let i = u32::try_from(self.hosts.len()).expect("fewer than 2^32 hosts");
                self.hosts.push(Host {
                    name: host.clone(),
                    backups: 0,
                    restores: 0,
                });
                self.host_index.insert(host, i);
                i
            }
        };
        let entry = &mut self.hosts[index as usize];
        let launches = match kind {
            JobKind::Backup => &mut entry.backups,
            JobKind::Restore => &mut entry.restores,
        };
        let nth = *launches;
        *launches += 1;
        let mut plan = JobPlan::derive(&self.cfg, kind, &entry.name, nth);
        if always_fails {
            plan = plan.failed();
        }
        self.jobs.push(Job {
            launched_ms: now_ms,
            plan,
            kind,
            host: index,
            last_served: None,
        });
        match kind {
            JobKind::Backup => self.counters.backups_launched += 1,
            JobKind::Restore => self.counters.restores_launched += 1,
        }
        Answer::Launched {
            job_id: self.jobs.len() as u64,
        }
    }

    fn status(&mut self, now_ms: u64, job_id: Option<u64>, host: Option<&str>) -> Answer {
        let slot = job_id.and_then(|id| usize::try_from(id).ok()?.checked_sub(1));
        let Some(job) = slot.and_then(|i| self.jobs.get_mut(i)) else {
            return Answer::error(404, "unknown job");
        };
        if host.is_some_and(|h| h != self.hosts[job.host as usize].name) {
            return Answer::error(404, "unknown job");
        }
        let view = job
            .plan
            .status_at(job.kind, now_ms.saturating_sub(job.launched_ms));
        if job.last_served != Some(view.status) {
            job.last_served = Some(view.status);
            self.counters.status_changes_served += 1;
            // A terminal status never changes, so this change happens once per job.
            if view.status.is_terminal() {
                self.counters.jobs_terminal_served += 1;
            }
        }
        Answer::JobStatus {
            job_id: job_id.unwrap_or_default(),
            view,
        }
    }

    fn draw_latency(&mut self, range: RangeMs) -> u64 {
        if range.min >= range.max {
            range.min
        } else {
            self.rng.gen_range(range.min..=range.max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::config::FaultConfig;
    use crate::simulator::jobs::JobStatus;

    fn quiet_config() -> SimulatorConfig {
        SimulatorConfig {
            latency_ms: RangeMs::new(0, 0),
            job_duration_ms: RangeMs::new(1_000, 1_000),
            job_failure_ratio: 0.0,
            job_warning_ratio: 0.0,
            ..SimulatorConfig::default()
        }
    }

    fn on(endpoint: Endpoint) -> Route {
        Route::Endpoint {
            endpoint,
            method_ok: true,
            param: None,
        }
    }

    fn login(state: &mut State, now_ms: u64) -> String {
        let call = Call::Login {
            username: "probe".to_owned(),
            password: "probe-secret".to_owned(),
        };
        match state
            .handle(now_ms, &on(Endpoint::Auth), None, Some(Ok(call)))
            .answer
        {
            Answer::Token { token, .. } => token,
            other => panic!("no token: {other:?}"),
        }
    }

    fn launch(state: &mut State, now_ms: u64, token: &str, host: &str) -> Answer {
        let call = Call::Launch {
            kind: JobKind::Backup,
            host: host.to_owned(),
        };
        state
            .handle(now_ms, &on(Endpoint::Backups), Some(token), Some(Ok(call)))
            .answer
    }

    fn poll(state: &mut State, now_ms: u64, token: &str, job_id: u64) -> Answer {
        let call = Call::Status {
            job_id: Some(job_id),
            host: Some("h".to_owned()),
        };
        state
            .handle(
                now_ms,
                &on(Endpoint::JobStatus),
                Some(token),
                Some(Ok(call)),
            )
            .answer
    }

    fn status_of(answer: &Answer) -> JobStatus {
        match answer {
            Answer::JobStatus { view, .. } => view.status,
            other => panic!("not a job status: {other:?}"),
        }
    }

    #[test]
    fn status_changes_are_counted_once_per_change() {
        let mut s = State::new(quiet_config());
        let token = login(&mut s, 0);
        assert_eq!(
            launch(&mut s, 0, &token, "h"),
            Answer::Launched { job_id: 1 }
        );
        let seen: Vec<JobStatus> = [0, 50, 99, 100, 500, 999, 1_000, 5_000]
            .into_iter()
            .map(|t| status_of(&poll(&mut s, t, &token, 1)))
            .collect();
        use JobStatus::*;
        assert_eq!(
            seen,
            [Pending, Pending, Pending, Running, Running, Running, Completed, Completed]
        );
        let c = s.counters();
        assert_eq!(c.status_changes_served, 3);
        assert_eq!(c.jobs_terminal_served, 1);
        assert_eq!(c.endpoint("job_status").ok_2xx, 8);
    }

    #[test]
    fn job_outcome_does_not_depend_on_launch_order() {
        let cfg = SimulatorConfig {
            job_duration_ms: RangeMs::new(100, 100_000),
            job_failure_ratio: 0.3,
            job_warning_ratio: 0.3,
            ..quiet_config()
        };
        let hosts = ["a", "b", "c", "d"];
        let run = |order: &[usize]| {
            let mut s = State::new(cfg.clone());
            let token = login(&mut s, 0);
            let mut ids: HashMap<(String, u32), u64> = HashMap::new();
            let mut launched = HashMap::new();
            for &i in order {
                let host = hosts[i];
                let nth = launched.entry(host).or_insert(0u32);
                let Answer::Launched { job_id } = launch(&mut s, 0, &token, host) else {
                    panic!()
                };
                ids.insert((host.to_owned(), *nth), job_id);
                *nth += 1;
            }
            let mut fates: Vec<((String, u32), JobPlan)> = ids
                .into_iter()
                .map(|(k, id)| (k, s.jobs[id as usize - 1].plan))
                .collect();
            fates.sort_by(|a, b| a.0.cmp(&b.0));
            fates
        };
        let forward = run(&[0, 1, 2, 3, 0, 1, 2, 3, 0, 0]);
        let shuffled = run(&[3, 0, 0, 2, 0, 1, 3, 0, 2, 1]);
        assert_eq!(forward, shuffled);
    }

    #[test]
    fn job_of_another_host_is_unknown() {
        let mut s = State::new(quiet_config());
        let token = login(&mut s, 0);
        launch(&mut s, 0, &token, "other-host");
        assert_eq!(
            poll(&mut s, 0, &token, 1),
            Answer::error(404, "unknown job")
        );
        assert_eq!(
            poll(&mut s, 0, &token, 0),
            Answer::error(404, "unknown job")
        );
        assert_eq!(
            poll(&mut s, 0, &token, 99),
            Answer::error(404, "unknown job")
        );
        assert_eq!(s.counters().status_changes_served, 0);
    }

    #[test]
    fn token_expires_after_its_ttl() {
        let mut s = State::new(SimulatorConfig {
            token_ttl_ms: 1_000,
            ..quiet_config()
        });
        let token = login(&mut s, 0);
        assert_eq!(
            launch(&mut s, 999, &token, "h"),
            Answer::Launched { job_id: 1 }
        );
        assert_eq!(
            launch(&mut s, 1_000, &token, "h"),
            Answer::error(401, "invalid or expired token")
        );
        assert_eq!(s.counters().endpoint("backups").unauthorized_401, 1);
    }

    #[test]
    fn expired_tokens_are_swept_when_many_are_live() {
        let mut s = State::new(SimulatorConfig {
            token_ttl_ms: 10,
            ..quiet_config()
        });
        for _ in 0..TOKEN_SWEEP_THRESHOLD {
            login(&mut s, 0);
        }
        login(&mut s, 10);
        assert_eq!(s.tokens.len(), 1);
        assert_eq!(s.counters().tokens_issued, TOKEN_SWEEP_THRESHOLD as u64 + 1);
    }

    #[test]
    fn faults_have_no_side_effects() {
        let mut cfg = quiet_config();
        cfg.endpoint_faults.insert(
            "auth".to_owned(),
            FaultConfig {
                error_5xx_ratio: 1.0,
                ..FaultConfig::default()
            },
        );
        let mut s = State::new(cfg);
        let call = Call::Login {
            username: "probe".to_owned(),
            password: "probe-secret".to_owned(),
        };
        let reply = s.handle(0, &on(Endpoint::Auth), None, Some(Ok(call)));
        assert!(
            [500, 502, 503].contains(&reply.answer.status()),
            "{reply:?}"
        );
        let c = s.counters();
        assert_eq!(
            (c.logins_ok, c.tokens_issued, c.endpoint("auth").server_5xx),
            (0, 0, 1)
        );
    }

    #[test]
    fn timeout_hangs_for_hang_ms_then_answers_504() {
        let mut cfg = quiet_config();
        cfg.faults = FaultConfig {
            timeout_ratio: 1.0,
            hang_ms: 1_234,
            ..FaultConfig::default()
        };
        let mut s = State::new(cfg);
        let reply = s.handle(0, &on(Endpoint::Alive), None, Some(Ok(Call::Alive)));
        assert_eq!(
            reply,
            Reply {
                answer: Answer::error(504, "gateway timeout"),
                delay_ms: 1_234
            }
        );
        let alive = s.counters().endpoint("alive");
        assert_eq!((alive.timeouts, alive.server_5xx), (1, 1));
    }

    #[test]
    fn fault_ratios_are_shares_of_requests() {
        let mut cfg = quiet_config();
        cfg.faults = FaultConfig {
            error_5xx_ratio: 0.2,
            malformed_ratio: 0.3,
            ..FaultConfig::default()
        };
        let mut s = State::new(cfg);
        for _ in 0..10_000 {
            s.handle(0, &on(Endpoint::Alive), None, Some(Ok(Call::Alive)));
        }
        let alive = s.counters().endpoint("alive");
        assert!((1_800..2_200).contains(&alive.server_5xx), "{alive:?}");
        assert!((2_800..3_200).contains(&alive.malformed), "{alive:?}");
        assert_eq!(alive.ok_2xx + alive.server_5xx, 10_000);
    }

    #[test]
    fn same_seed_gives_the_same_answers() {
        let mut cfg = quiet_config();
        cfg.latency_ms = RangeMs::new(1, 50);
        cfg.faults.error_5xx_ratio = 0.5;
        cfg.unhealthy_ratio = 0.5;
        let replies = |cfg: &SimulatorConfig| {
            let mut s = State::new(cfg.clone());
            (0..50)
                .map(|_| s.handle(0, &on(Endpoint::Health), None, Some(Ok(Call::Health))))
                .collect::<Vec<_>>()
        };
        assert_eq!(replies(&cfg), replies(&cfg));
        assert_ne!(
            replies(&cfg),
            replies(&SimulatorConfig {
                seed: 1,
                ..cfg.clone()
            })
        );
    }

    #[test]
    fn hundred_thousand_jobs_are_launched_and_polled_without_timers() {
        let mut s = State::new(quiet_config());
        let token = login(&mut s, 0);
        let n = 100_000u64;
        for i in 0..n {
            let call = Call::Launch {
                kind: JobKind::Backup,
                host: format!("host-{}", i % 1_000),
            };
            s.handle(0, &on(Endpoint::Backups), Some(&token), Some(Ok(call)));
        }
        for id in 1..=n {
            let call = Call::Status {
                job_id: Some(id),
                host: None,
            };
            s.handle(
                2_000,
                &on(Endpoint::JobStatus),
                Some(&token),
                Some(Ok(call)),
            );
        }
        let c = s.counters();
        assert_eq!(
            (
                c.backups_launched,
                c.jobs_terminal_served,
                c.status_changes_served
            ),
            (n, n, n)
        );
        // Per job: one small record (the host table is shared by all jobs of a host).
        assert!(s.jobs.capacity() * std::mem::size_of::<Job>() < 8 << 20);
        assert_eq!(s.hosts.len(), 1_000);
    }

    #[test]
    fn rate_limit_comes_before_everything_else() {
        let cfg = SimulatorConfig {
            rate_limit_per_sec: Some(1),
            rate_limit_burst: 1,
            ..quiet_config()
        };
        let mut s = State::new(cfg);
        assert_eq!(
            s.handle(0, &Route::NotFound, None, None).answer.status(),
            404
        );
        assert_eq!(
            s.handle(1, &Route::NotFound, None, None).answer,
            Answer::RateLimited {
                retry_after_secs: 1
            }
        );
        let other = s.counters().endpoint("other");
        assert_eq!(
            (other.requests, other.client_4xx, other.rate_limited_429),
            (2, 2, 1)
        );
    }
}
