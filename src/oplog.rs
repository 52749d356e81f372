//! The operator's view of the results: WARN and ERROR lines an operator can act on, derived
//! from the results the sink receives (so every producer is covered and none has to log).
//!
//! - ERROR when an environment becomes unreachable (a request failed to connect, TLS, or the
//!   connection broke; the liveness check timed out), WARN once it answers again, with how
//!   long it was unreachable. Once per change of that condition.
//! - ERROR when an environment's login is refused (the auth check got `error.type: auth`),
//!   WARN when a login is accepted again. Once per change.
//! - WARN for each job that failed, timed out or could no longer be read, and each refused
//!   launch (host, job id, reason); rate-limited per environment: beyond
//!   [`JOB_LINES_PER_INTERVAL`] in one [`JOB_LOG_INTERVAL`], one summary line per interval
//!   with the count and the top reasons.
//!
//! - WARN when a check (a monitor: one check of one environment, or one health component)
//!   changes state: up → down with the error, down → up with how long it was down; a
//!   flapping monitor gives one line when it starts flapping and one when it settles
//!   ([`crate::monitor_state`], Heartbeat's flap threshold of 3).
//!
//! Messages and reasons come from result documents, which never hold a secret.

use crate::model::{Action, ErrorType, JobResult, Outcome, ProbeResult};
use crate::monitor_state::{MonitorStates, StateView, Status};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Job failures logged one by one per environment and interval; beyond, summarised.
pub(crate) const JOB_LINES_PER_INTERVAL: u64 = 5;
/// The rate-limit window of job failure lines.
pub(crate) const JOB_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Distinct reasons remembered per interval (others are counted as "other reasons").
const MAX_REASONS: usize = 50;
/// Longest reason kept in a summary.
const MAX_REASON_CHARS: usize = 120;

/// One line for the operator.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OpLine {
    Unreachable {
        env: String,
        action: &'static str,
        error_type: &'static str,
        error: String,
    },
    Reachable {
        env: String,
        down_for: Duration,
    },
    LoginRefused {
        env: String,
        error: String,
    },
    LoginAccepted {
        env: String,
        refused_for: Duration,
    },
    JobFailed {
        env: String,
        action: &'static str,
        kind: &'static str,
        host: String,
        job_id: String,
        result: &'static str,
        reason: String,
    },
    MoreJobsFailed {
        env: String,
        count: u64,
        interval: Duration,
        top_reasons: String,
    },
    CheckState {
        env: String,
        monitor: String,
        /// None: the monitor's first check.
        from: Option<Status>,
        to: Status,
        /// How long the previous state lasted.
        lasted: Duration,
        /// The error of the check that went down.
        error: String,
    },
}

impl OpLine {
    /// Writes the line to the application log.
    pub fn log(&self) {
        match self {
            OpLine::Unreachable {
                env,
                action,
                error_type,
                error,
            } => {
                tracing::error!(env = %env, action, error_type, error = %error, "environment unreachable: requests to the portal fail")
            }
            OpLine::Reachable { env, down_for } => {
                tracing::warn!(env = %env, unreachable_for_s = down_for.as_secs(), "environment reachable again")
            }
            OpLine::LoginRefused { env, error } => {
                tracing::error!(env = %env, error = %error, "login refused by the portal: check the credentials of this environment")
            }
            OpLine::LoginAccepted { env, refused_for } => {
                tracing::warn!(env = %env, refused_for_s = refused_for.as_secs(), "login accepted again")
            }
            OpLine::JobFailed {
                env,
                action,
                kind,
                host,
                job_id,
                result,
                reason,
            } => {
                if *action == Action::JobEnd.as_str() {
                    tracing::warn!(env = %env, kind, host = %host, job_id = %job_id, result, reason = %reason, "job did not succeed")
                } else {
                    tracing::warn!(env = %env, kind, host = %host, reason = %reason, "job launch refused")
                }
            }
            OpLine::MoreJobsFailed {
                env,
                count,
                interval,
                top_reasons,
            } => {
                tracing::warn!(env = %env, more_jobs_failed = count, interval_s = interval.as_secs(), top_reasons = %top_reasons, "more jobs failed in the last interval than are logged one by one")
            }
            OpLine::CheckState {
                env,
                monitor,
                from,
                to,
                lasted,
                error,
            } => {
                let from = from.map_or("new", Status::as_str);
                match to {
                    Status::Down => {
                        tracing::warn!(env = %env, monitor = %monitor, from, error = %error, "check down")
                    }
                    Status::Up if from == "down" => {
                        tracing::warn!(env = %env, monitor = %monitor, down_for_s = lasted.as_secs(), "check up again")
                    }
                    Status::Up => {
                        tracing::warn!(env = %env, monitor = %monitor, from, flapped_for_s = lasted.as_secs(), "check up again (settled)")
                    }
                    Status::Flapping => {
                        tracing::warn!(env = %env, monitor = %monitor, from, "check flapping: its status keeps changing; one more line when it settles")
                    }
                }
            }
        }
    }
}

#[derive(Default)]
struct EnvState {
    unreachable_since: Option<Instant>,
    login_refused_since: Option<Instant>,
    window_start: Option<Instant>,
    logged: u64,
    suppressed: u64,
    reasons: HashMap<String, u64>,
    other_reasons: u64,
}

/// The rules above, on results and the clock passed in (tests drive both).
#[derive(Default)]
pub(crate) struct OpLog {
    envs: HashMap<String, EnvState>,
    monitors: MonitorStates,
}

fn is_transport_failure(r: &ProbeResult) -> Option<ErrorType> {
    let e = r.error.as_ref()?;
    let answered = r.http.as_ref().is_some_and(|h| h.response.is_some());
    match e.kind {
        _ if answered => None,
        ErrorType::Connect | ErrorType::Tls | ErrorType::Network => Some(e.kind),
        // A slow answer to another check is a latency problem, not an unreachable portal.
        ErrorType::Timeout if r.event.action == Action::Liveness => Some(e.kind),
        _ => None,
    }
}

impl OpLog {
    /// The state of check `monitor` as of its last result (at `at`): what the sink writes
    /// into the result's `state.*`. The one tracker of check states is this log's, so the
    /// documents and the WARN lines always agree.
    pub(crate) fn check_state(
        &self,
        monitor: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<StateView> {
        self.monitors.view(monitor, at)
    }

    /// Looks at one result; `emit` receives the lines it calls for.
    pub(crate) fn observe(&mut self, r: &ProbeResult, now: Instant, mut emit: impl FnMut(OpLine)) {
        let env_name = r.service.environment.as_str();
        if !self.envs.contains_key(env_name) {
            self.envs.insert(env_name.to_owned(), EnvState::default());
        }
        let st = self.envs.get_mut(env_name).expect("inserted");
        note_reachability(st, r, now, &mut emit);
        note_check_state(&mut self.monitors, r, now, &mut emit);
        if r.event.action == Action::Auth {
            note_login(st, r, now, &mut emit);
        }
        if let Some(line) = job_failure(r) {
            Self::roll_window(env_name, st, now, &mut emit);
            note_job_failure(st, line, &mut emit);
        }
    }

    /// Ends the windows that are over (call every second or so): one summary line per
    /// environment that had more failures than it logged.
    pub fn tick(&mut self, now: Instant, mut emit: impl FnMut(OpLine)) {
        for (env, st) in self.envs.iter_mut() {
            Self::roll_window(env, st, now, &mut emit);
        }
    }

    fn roll_window(env: &str, st: &mut EnvState, now: Instant, emit: &mut impl FnMut(OpLine)) {
        let start = *st.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) < JOB_LOG_INTERVAL {
            return;
        }
        if st.suppressed > 0 {
            let mut reasons: Vec<(String, u64)> = st.reasons.drain().collect();
            reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let mut top: Vec<String> = reasons
                .iter()
                .take(3)
                .map(|(r, n)| format!("{r} ×{n}"))
                .collect();
            let rest: u64 = reasons.iter().skip(3).map(|(_, n)| n).sum::<u64>() + st.other_reasons;
            if rest > 0 {
                top.push(format!("other reasons ×{rest}"));
            }
            emit(OpLine::MoreJobsFailed {
                env: env.into(),
                count: st.suppressed,
                interval: now.saturating_duration_since(start),
                top_reasons: top.join("; "),
            });
        }
        st.window_start = Some(now);
        st.logged = 0;
        st.suppressed = 0;
        st.reasons.clear();
        st.other_reasons = 0;
    }
}

/// The line of a job that did not succeed, or of a refused launch.
fn job_failure(r: &ProbeResult) -> Option<OpLine> {
    let action = r.event.action;
    let job = r.iaso.job.as_ref();
    let host = r.host.as_ref().map(|h| h.name.clone()).unwrap_or_default();
    let message = r.error.as_ref().map(|e| e.message.clone());
    match action {
        Action::JobEnd => {
            let j = job?;
            let result = j.result?;
            if !matches!(
                result,
                JobResult::Failure | JobResult::Timeout | JobResult::PollFailed
            ) {
                return None;
            }
            let reason = j
                .failure_reason
                .clone()
                .filter(|s| !s.is_empty())
                .or(message)
                .unwrap_or_else(|| j.status.clone().unwrap_or_default());
            Some(OpLine::JobFailed {
                env: r.service.environment.clone(),
                action: action.as_str(),
                kind: j.kind.as_str(),
                host,
                job_id: j.id.clone().unwrap_or_default(),
                result: result.as_str(),
                reason,
            })
        }
        Action::BackupLaunch | Action::RestoreLaunch if r.event.outcome == Outcome::Failure => {
            Some(OpLine::JobFailed {
                env: r.service.environment.clone(),
                action: action.as_str(),
                kind: job.map_or("backup", |j| j.kind.as_str()),
                host,
                job_id: String::new(),
                result: "launch_failed",
                reason: message.unwrap_or_default(),
            })
        }
        _ => None,
    }
}

/// The message of the result's error (empty without one).
fn error_message(r: &ProbeResult) -> String {
    r.error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default()
}

/// The environment became unreachable (a transport failure), or reachable again (a success,
/// or any HTTP answer).
fn note_reachability(
    st: &mut EnvState,
    r: &ProbeResult,
    now: Instant,
    emit: &mut impl FnMut(OpLine),
) {
    let env = r.service.environment.as_str();
    if let Some(kind) = is_transport_failure(r) {
        if st.unreachable_since.is_none() {
            st.unreachable_since = Some(now);
            emit(OpLine::Unreachable {
                env: env.into(),
                action: r.event.action.as_str(),
                error_type: kind.as_str(),
                error: error_message(r),
            });
        }
    } else if st.unreachable_since.is_some()
        && (r.event.outcome == Outcome::Success
            || r.http.as_ref().is_some_and(|h| h.response.is_some()))
    {
        let since = st.unreachable_since.take().expect("checked");
        emit(OpLine::Reachable {
            env: env.into(),
            down_for: now.saturating_duration_since(since),
        });
    }
}

/// A check's monitor changed state (up ↔ down).
fn note_check_state(
    monitors: &mut MonitorStates,
    r: &ProbeResult,
    now: Instant,
    emit: &mut impl FnMut(OpLine),
) {
    let Some(m) = r.monitor.as_ref().filter(|_| {
        r.event.action.dataset() == crate::model::Dataset::Checks
            && matches!(r.event.outcome, Outcome::Success | Outcome::Failure)
    }) else {
        return;
    };
    if let Some(t) = monitors.observe(&m.id, m.status == "up", now, r.timestamp) {
        emit(OpLine::CheckState {
            env: r.service.environment.as_str().into(),
            monitor: m.id.clone(),
            from: t.from,
            to: t.to,
            lasted: t.lasted,
            error: error_message(r),
        });
    }
}

/// A login result: refused (said once until accepted again), or accepted after refusals.
fn note_login(st: &mut EnvState, r: &ProbeResult, now: Instant, emit: &mut impl FnMut(OpLine)) {
    let env = r.service.environment.as_str();
    let refused = r.error.as_ref().is_some_and(|e| e.kind == ErrorType::Auth);
    if refused && st.login_refused_since.is_none() {
        st.login_refused_since = Some(now);
        emit(OpLine::LoginRefused {
            env: env.into(),
            error: error_message(r),
        });
    } else if r.event.outcome == Outcome::Success {
        if let Some(since) = st.login_refused_since.take() {
            emit(OpLine::LoginAccepted {
                env: env.into(),
                refused_for: now.saturating_duration_since(since),
            });
        }
    }
}

/// A failed job: logged while the window's budget lasts, then counted by reason.
fn note_job_failure(st: &mut EnvState, line: OpLine, emit: &mut impl FnMut(OpLine)) {
    if st.logged < JOB_LINES_PER_INTERVAL {
        st.logged += 1;
        emit(line);
        return;
    }
    st.suppressed += 1;
    let OpLine::JobFailed { reason, .. } = &line else {
        unreachable!("job_failure returns JobFailed")
    };
    let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
    if let Some(n) = st.reasons.get_mut(&reason) {
        *n += 1;
    } else if st.reasons.len() < MAX_REASONS {
        st.reasons.insert(reason, 1);
    } else {
        st.other_reasons += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::result::IasoJob;
    use crate::model::{JobKind, ResultContext};

    fn ctx() -> ResultContext {
        ResultContext::new("r", "prod", "o")
    }

    fn failed_job(c: &ResultContext, i: usize, reason: &str) -> ProbeResult {
        let mut r = c
            .result(Action::JobEnd, Outcome::Failure)
            .with_host(&format!("h{i}"))
            .with_error(ErrorType::JobFailed, "job ended Failed");
        r.iaso.job = Some(IasoJob {
            id: Some(format!("{i}")),
            kind: JobKind::Backup,
            status: Some("Failed".into()),
            failure_reason: Some(reason.into()),
            result: Some(JobResult::Failure),
            ..Default::default()
        });
        r
    }

    fn collect(log: &mut OpLog, r: &ProbeResult, now: Instant) -> Vec<OpLine> {
        let mut out = Vec::new();
        log.observe(r, now, |l| out.push(l));
        out
    }

    #[test]
    fn an_unreachable_portal_gives_one_error_and_one_recovery_line() {
        let c = ctx();
        let mut log = OpLog::default();
        let t0 = Instant::now();
        let down = c
            .result(Action::Liveness, Outcome::Failure)
            .with_http("GET", "http://p/alive", None)
            .with_error(ErrorType::Connect, "connection refused");
        let mut lines = Vec::new();
        for i in 0..20 {
            lines.extend(collect(&mut log, &down, t0 + Duration::from_secs(i)));
        }
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(matches!(
            &lines[0],
            OpLine::Unreachable {
                error_type: "connect",
                ..
            }
        ));
        let up = c.result(Action::Liveness, Outcome::Success).with_http(
            "GET",
            "http://p/alive",
            Some(200),
        );
        let back = collect(&mut log, &up, t0 + Duration::from_secs(30));
        assert_eq!(
            back,
            vec![OpLine::Reachable {
                env: "prod".into(),
                down_for: Duration::from_secs(30)
            }]
        );
        assert!(collect(&mut log, &up, t0 + Duration::from_secs(31)).is_empty());
    }

    #[test]
    fn a_flapping_portal_logs_once_per_change_not_per_result() {
        let c = ctx();
        let mut log = OpLog::default();
        let t0 = Instant::now();
        let down = c
            .result(Action::JobStatus, Outcome::Failure)
            .with_error(ErrorType::Network, "connection reset");
        let up = c
            .result(Action::JobStatus, Outcome::Success)
            .with_http("POST", "u", Some(200));
        let mut n = 0;
        for cycle in 0..5u64 {
            for k in 0..10u64 {
                let at = t0 + Duration::from_secs(cycle * 100 + k);
                n += collect(&mut log, &down, at).len();
            }
            n += collect(&mut log, &up, t0 + Duration::from_secs(cycle * 100 + 50)).len();
        }
        assert_eq!(n, 10, "5 × (unreachable + reachable)");
    }

    fn liveness(c: &ResultContext, up: bool) -> ProbeResult {
        let r = if up {
            c.result(Action::Liveness, Outcome::Success).with_http(
                "GET",
                "http://p/alive",
                Some(200),
            )
        } else {
            c.result(Action::Liveness, Outcome::Failure)
                .with_http("GET", "http://p/alive", None)
                .with_error(ErrorType::Connect, "connection refused")
        };
        let run = c.check_run("liveness", Duration::from_secs(30));
        r.with_monitor(&run, "prod-liveness".into(), 1, 1)
    }

    fn check_states(lines: &[OpLine]) -> Vec<(Option<Status>, Status, u64)> {
        lines
            .iter()
            .filter_map(|l| match l {
                OpLine::CheckState {
                    from, to, lasted, ..
                } => Some((*from, *to, lasted.as_secs())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_check_down_for_30_s_is_one_down_line_with_the_error_and_one_up_line_with_the_duration() {
        let c = ctx();
        let mut log = OpLog::default();
        let t0 = Instant::now();
        let mut lines = Vec::new();
        // Up for a minute, down from 60 s to 90 s (a check every 5 s), then up again.
        for i in 0..30u64 {
            let up = !(12..18).contains(&i);
            lines.extend(collect(
                &mut log,
                &liveness(&c, up),
                t0 + Duration::from_secs(i * 5),
            ));
        }
        assert_eq!(
            check_states(&lines),
            vec![
                (Some(Status::Up), Status::Down, 60),
                (Some(Status::Down), Status::Up, 30)
            ]
        );
        let down_line = lines
            .iter()
            .find(|l| {
                matches!(
                    l,
                    OpLine::CheckState {
                        to: Status::Down,
                        ..
                    }
                )
            })
            .unwrap();
        assert!(
            matches!(down_line, OpLine::CheckState { error, monitor, .. } if error == "connection refused" && monitor == "prod-liveness"),
            "{down_line:?}"
        );
    }

    #[test]
    fn a_flapping_check_is_two_lines_while_it_flaps_and_one_when_it_settles() {
        let c = ctx();
        let mut log = OpLog::default();
        let t0 = Instant::now();
        let mut lines = Vec::new();
        for i in 0..200u64 {
            let up = i < 10 || i % 2 == 0;
            lines.extend(collect(
                &mut log,
                &liveness(&c, up),
                t0 + Duration::from_secs(i),
            ));
        }
        let states = check_states(&lines);
        assert_eq!(
            states.iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![Status::Down, Status::Flapping],
            "{states:?}"
        );
        for i in 200..210u64 {
            lines.extend(collect(
                &mut log,
                &liveness(&c, true),
                t0 + Duration::from_secs(i),
            ));
        }
        let states = check_states(&lines);
        assert_eq!(states.len(), 3, "{states:?}");
        assert_eq!(
            (states[2].0, states[2].1),
            (Some(Status::Flapping), Status::Up)
        );
    }

    #[test]
    fn a_refused_login_is_one_error_until_a_login_succeeds() {
        let c = ctx();
        let mut log = OpLog::default();
        let t0 = Instant::now();
        let refused = c
            .result(Action::Auth, Outcome::Failure)
            .with_http("POST", "u", Some(401))
            .with_error(ErrorType::Auth, "401 invalid credentials");
        let mut lines = Vec::new();
        for i in 0..5 {
            lines.extend(collect(&mut log, &refused, t0 + Duration::from_secs(i)));
        }
        assert_eq!(lines.len(), 1);
        assert!(matches!(&lines[0], OpLine::LoginRefused { .. }));
        let ok = c.result(Action::Auth, Outcome::Success);
        let back = collect(&mut log, &ok, t0 + Duration::from_secs(60));
        assert!(
            matches!(&back[..], [OpLine::LoginAccepted { refused_for, .. }] if refused_for.as_secs() == 60)
        );
    }

    #[test]
    fn a_fleet_of_job_failures_is_five_lines_then_one_summary_per_interval() {
        let c = ctx();
        let mut log = OpLog::default();
        let t0 = Instant::now();
        let mut lines = Vec::new();
        for i in 0..10_000 {
            let reason = if i % 3 == 0 {
                "media agent offline"
            } else {
                "quota exceeded"
            };
            let at = t0 + Duration::from_millis(i as u64); // 10 s of failures
            log.observe(&failed_job(&c, i, reason), at, |l| lines.push(l));
            log.tick(at, |l| lines.push(l));
        }
        log.tick(t0 + Duration::from_secs(20), |l| lines.push(l));
        let one_by_one = lines
            .iter()
            .filter(|l| matches!(l, OpLine::JobFailed { .. }))
            .count();
        let summaries: Vec<&OpLine> = lines
            .iter()
            .filter(|l| matches!(l, OpLine::MoreJobsFailed { .. }))
            .collect();
        // One window (the 10,000 failures span 0–10 s): five lines, then one summary.
        assert_eq!(one_by_one, 5, "{lines:?}");
        assert_eq!(summaries.len(), 1);
        let total: u64 = summaries
            .iter()
            .map(|l| match l {
                OpLine::MoreJobsFailed { count, .. } => *count,
                _ => 0,
            })
            .sum();
        assert_eq!(total + one_by_one as u64, 10_000);
        let OpLine::MoreJobsFailed {
            top_reasons, env, ..
        } = summaries[0]
        else {
            unreachable!()
        };
        assert_eq!(env, "prod");
        assert!(top_reasons.starts_with("quota exceeded ×"), "{top_reasons}");
        assert!(
            top_reasons.contains("media agent offline ×"),
            "{top_reasons}"
        );
    }

    #[test]
    fn a_job_line_names_host_job_id_and_reason_and_successes_are_silent() {
        let c = ctx();
        let mut log = OpLog::default();
        let now = Instant::now();
        let lines = collect(&mut log, &failed_job(&c, 7, "media agent offline"), now);
        assert_eq!(
            lines,
            vec![OpLine::JobFailed {
                env: "prod".into(),
                action: "job.end",
                kind: "backup",
                host: "h7".into(),
                job_id: "7".into(),
                result: "failure",
                reason: "media agent offline".into(),
            }]
        );
        let mut ok = failed_job(&c, 8, "");
        ok.iaso.job.as_mut().unwrap().result = Some(JobResult::Success);
        assert!(collect(&mut log, &ok, now).is_empty());
    }
}
