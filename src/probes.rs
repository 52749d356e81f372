//! The probes themselves: one async function per check or job step, turning API calls into
//! result documents. Actors decide *when* to run them; this module decides *what a result
//! says*. A failed probe is a result with `event.outcome: failure`, never an `Err`.

use crate::api::retry::{self, Sent, Site};
use crate::api::{ApiClient, ApiError, Call, Exchange, JobState, TokenLease};
use crate::config::{HostSpec, RestoreSpec, Secret, StatusClass};
use crate::limiter::RequestPermit;
use crate::model::result::{CheckRun, IasoBackup, IasoHealth, IasoJob, IasoRestore};
use crate::model::{Action, ErrorType, JobKind, JobResult, JobSpec, Outcome, ProbeResult};
use crate::runtime::EnvRuntime;
use futures_util::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// A token, logging in when needed; the login, if one happened, is reported as an `auth`
/// result.
pub async fn lease(rt: &EnvRuntime, client: &ApiClient) -> Result<TokenLease, ApiError> {
    let (lease, login) = rt.tokens.lease(client).await;
    if let Some(call) = login {
        Box::pin(rt.emit(auth_result(rt, &call.map_unit()))).await;
    }
    lease
}

fn base(
    rt: &EnvRuntime,
    action: Action,
    ex: &Exchange,
    outcome: &Result<(), ApiError>,
) -> ProbeResult {
    let r = rt
        .ctx
        .result(
            action,
            if outcome.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
        )
        .with_duration(ex.duration)
        .with_http(&ex.method, &ex.url, ex.status);
    match outcome {
        Ok(()) => r,
        Err(e) => r.with_error(e.error_type(), e.to_string()),
    }
}

fn monitor_id(rt: &EnvRuntime, check: &str) -> String {
    format!("{}-{check}", rt.name)
}

/// A new run of `check` (its documents share `monitor.check_group`), scheduled every
/// `interval_secs`.
fn check_run(rt: &EnvRuntime, check: &str, interval_secs: u64) -> CheckRun {
    rt.ctx.check_run(check, Duration::from_secs(interval_secs))
}

/// Runs `attempts` times at most, until success; returns the deciding call and its attempt.
/// Always runs once: validation rejects 0 attempts (`checks.*.attempts`), and 0 would mean 1.
async fn with_attempts<T, F, Fut>(attempts: u32, mut f: F) -> (Call<T>, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Call<T>>,
{
    let mut n = 1;
    loop {
        let call = f().await;
        if call.outcome.is_ok() || n >= attempts {
            return (call, n);
        }
        n += 1;
    }
}

/// Runs one piece of an actor's work; a panic inside it is caught and reported as a
/// failure result of `action` with `error.type: internal` (the run then exits 2), instead
/// of silently losing the actor, its later results and the exit code.
pub(crate) async fn guarded<F: std::future::Future<Output = ()>>(
    rt: &EnvRuntime,
    action: Action,
    work: F,
) {
    if let Err(panic) = AssertUnwindSafe(work).catch_unwind().await {
        rt.emit(internal_result(rt, action, &panic_message(panic.as_ref())))
            .await;
    }
}

/// The result recording a caught panic.
pub(crate) fn internal_result(rt: &EnvRuntime, action: Action, message: &str) -> ProbeResult {
    tracing::error!(env = %rt.name, action = action.as_str(), error = %message, "internal error: a probe panicked");
    rt.ctx
        .result(action, Outcome::Failure)
        .with_error(ErrorType::Internal, format!("internal error: {message}"))
}

/// The text of a panic payload (at most 300 characters).
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let s = p
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".into());
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// Fault injection for tests only (hidden, never reachable from configuration): arms a
/// panic at a named point of one environment's next probe, to prove that every panic is
/// reported. Costs one relaxed atomic load per probe while nothing is armed.
#[doc(hidden)]
pub mod fault_injection {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    static ANY: AtomicBool = AtomicBool::new(false);
    static ARMED: Mutex<Vec<(String, &'static str)>> = Mutex::new(Vec::new());

    /// The next probe of `env` at `point` (`liveness`, `launch`, `job_poll`) panics.
    pub fn panic_next(env: &str, point: &'static str) {
        ARMED.lock().unwrap().push((env.to_owned(), point));
        ANY.store(true, Ordering::SeqCst);
    }

    pub(crate) fn hit(env: &str, point: &str) {
        if !ANY.load(Ordering::Relaxed) {
            return;
        }
        let mut armed = ARMED.lock().unwrap();
        if let Some(i) = armed.iter().position(|(e, p)| e == env && *p == point) {
            armed.remove(i);
            drop(armed);
            panic!("injected panic at {point} (test fault injection)");
        }
    }
}

/// A check's call, with the token when its endpoint has `send_token` (a lease first, its
/// login reported as `auth`; one re-login after a 401); without a token when the login
/// failed, the check fails with the login's error.
async fn with_token<T, F, Fut>(
    rt: &EnvRuntime,
    client: &ApiClient,
    (send, method, path): (bool, &str, &str),
    f: F,
) -> Call<T>
where
    F: Fn(Option<Secret>) -> Fut,
    Fut: std::future::Future<Output = Call<T>>,
{
    if !send {
        return f(None).await;
    }
    let sent = retry::authorized(
        Site::Check,
        &rt.tokens,
        || lease(rt, client),
        |lease| f(Some(lease.token)),
        retry::never(),
    )
    .await;
    match sent {
        Sent::Answered { call, .. } => call,
        Sent::NoToken(e) => client.unsent(method, path, e),
        Sent::Stopped(never) => match never {},
    }
}

/// Liveness: one result.
pub async fn liveness(rt: &EnvRuntime) -> ProbeResult {
    fault_injection::hit(&rt.name, "liveness");
    let client = rt.client();
    let attempts = rt.cfg.checks.liveness.attempts;
    let run = check_run(rt, "liveness", rt.cfg.checks.liveness.interval_secs);
    let ep = &rt.cfg.api.liveness;
    let (call, n) = with_attempts(attempts, || {
        with_token(rt, &client, (ep.send_token, &ep.method, &ep.path), |t| {
            let client = &client;
            async move { client.liveness_with(t.as_ref()).await }
        })
    })
    .await;
    base(rt, Action::Liveness, &call.exchange, &call.outcome).with_monitor(
        &run,
        monitor_id(rt, "liveness"),
        n,
        attempts,
    )
}

/// Health: one result per component, plus `_overall` when the API gives an overall status.
/// A failed call gives one failed result for component `_overall`.
pub async fn health(rt: &EnvRuntime) -> Vec<ProbeResult> {
    let client = rt.client();
    let attempts = rt.cfg.checks.health.attempts;
    let run = check_run(rt, "health", rt.cfg.checks.health.interval_secs);
    let ep = &rt.cfg.api.health;
    let (call, n) = with_attempts(attempts, || {
        with_token(rt, &client, (ep.send_token, &ep.method, &ep.path), |t| {
            let client = &client;
            async move { client.health_with(t.as_ref()).await }
        })
    })
    .await;
    let ex = &call.exchange;
    let mut out = Vec::new();
    match &call.outcome {
        Err(e) => {
            let mut r = base(rt, Action::Health, ex, &Err(e.clone()));
            r.iaso.health = Some(IasoHealth {
                component: "_overall".into(),
                status: "unknown".into(),
            });
            out.push(r.with_monitor(&run, monitor_id(rt, "health-_overall"), n, attempts));
        }
        Ok(report) => {
            let max = rt.cfg.api.health.max_components;
            let overall = report
                .overall
                .iter()
                .map(|s| ("_overall".to_string(), s.clone()));
            let shown = report.components.iter().take(max).cloned();
            for (component, status) in overall.chain(shown) {
                let healthy = client.is_healthy(&status);
                let outcome = if healthy {
                    Ok(())
                } else {
                    Err(ApiError::Assertion(format!(
                        "component {component} is {status}"
                    )))
                };
                let mut r = base(rt, Action::Health, ex, &outcome);
                r.iaso.health = Some(IasoHealth {
                    component: component.clone(),
                    status,
                });
                out.push(r.with_monitor(
                    &run,
                    monitor_id(rt, &format!("health-{component}")),
                    n,
                    attempts,
                ));
            }
            if let Some(r) = more_components(rt, &client, &report.components, max, ex) {
                out.push(r.with_monitor(&run, monitor_id(rt, "health-_more"), n, attempts));
            }
        }
    }
    out
}

/// The components beyond `max`, summarised in one result for component `_more`: healthy
/// when all of them are, otherwise a failure naming the first unhealthy ones.
fn more_components(
    rt: &EnvRuntime,
    client: &ApiClient,
    components: &[(String, String)],
    max: usize,
    ex: &Exchange,
) -> Option<ProbeResult> {
    let extra = components.get(max..).filter(|e| !e.is_empty())?;
    let unhealthy: Vec<&str> = extra
        .iter()
        .filter(|(_, st)| !client.is_healthy(st))
        .map(|(name, _)| name.as_str())
        .collect();
    let outcome = if unhealthy.is_empty() {
        Ok(())
    } else {
        let mut names = unhealthy
            .iter()
            .take(10)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if unhealthy.len() > 10 {
            names.push_str(&format!(" and {} more", unhealthy.len() - 10));
        }
        Err(ApiError::Assertion(format!(
            "{} of the {} components beyond the first {max} are not healthy: {names}",
            unhealthy.len(),
            extra.len()
        )))
    };
    let mut r = base(rt, Action::Health, ex, &outcome);
    r.iaso.health = Some(IasoHealth {
        component: "_more".into(),
        status: if unhealthy.is_empty() {
            "healthy".into()
        } else {
            "unhealthy".into()
        },
    });
    Some(r)
}

/// Response time: one result per configured path; fails past the limit.
pub async fn response_time(rt: &EnvRuntime, path: &str) -> ProbeResult {
    let client = rt.client();
    let limit = Duration::from_millis(rt.cfg.checks.response_time_limit_ms);
    let attempts = rt.cfg.checks.response_time.attempts;
    let run = check_run(
        rt,
        "response_time",
        rt.cfg.checks.response_time.interval_secs,
    );
    let (call, n) = with_attempts(attempts, || async {
        let mut call = client.timed_get(path).await;
        if call.outcome.is_ok() && call.exchange.duration > limit {
            call.outcome = Err(ApiError::Assertion(format!(
                "answered in {} ms, over the {} ms limit",
                call.exchange.duration.as_millis(),
                limit.as_millis()
            )));
        }
        call
    })
    .await;
    let mut r = base(rt, Action::ResponseTime, &call.exchange, &call.outcome);
    r.iaso.limit_ms = Some(rt.cfg.checks.response_time_limit_ms);
    let id = if rt.cfg.checks.response_time_paths.len() > 1 {
        format!("response_time{}", path.replace('/', "_"))
    } else {
        "response_time".into()
    };
    r.with_monitor(&run, monitor_id(rt, &id), n, attempts)
}

fn auth_result(rt: &EnvRuntime, call: &Call<()>) -> ProbeResult {
    let attempts = rt.cfg.checks.auth.attempts;
    let run = check_run(rt, "auth", rt.cfg.checks.auth.interval_secs);
    base(rt, Action::Auth, &call.exchange, &call.outcome).with_monitor(
        &run,
        monitor_id(rt, "auth"),
        1,
        attempts,
    )
}

/// The auth check: a fresh login (the token it gets is kept for the jobs).
pub async fn auth(rt: &EnvRuntime) -> Result<TokenLease, ApiError> {
    rt.tokens.forget();
    let client = rt.client();
    lease(rt, &client).await
}

/// A launch reported `skipped` (outcome `unknown`), saying why.
fn skipped_launch(rt: &EnvRuntime, spec: &JobSpec, why: String) -> ProbeResult {
    let mut r = rt
        .ctx
        .result(spec.kind.launch_action(), Outcome::Unknown)
        .with_host(&spec.host)
        .with_error(ErrorType::Skipped, why);
    label_job(&mut r, spec, None);
    r
}

/// A launch skipped because it needed a token and there is none.
pub fn skipped(rt: &EnvRuntime, spec: &JobSpec, why: &ApiError) -> ProbeResult {
    skipped_launch(rt, spec, format!("no token (authentication failed: {why})"))
}

/// A launch skipped because the previous job for the same spec is still tracked.
pub(crate) fn still_running(rt: &EnvRuntime, spec: &JobSpec) -> ProbeResult {
    let kind = spec.kind.as_str();
    skipped_launch(
        rt,
        spec,
        format!("not launched: the previous {kind} of this host is still running"),
    )
}

fn label_job(r: &mut ProbeResult, spec: &JobSpec, job_id: Option<&str>) {
    r.iaso.job = Some(IasoJob {
        id: job_id.map(str::to_owned),
        kind: spec.kind,
        ..Default::default()
    });
    if let Some(level) = spec.level {
        r.iaso.backup = Some(IasoBackup { level });
    }
    if let Some(rs) = &spec.restore {
        r.iaso.restore = Some(IasoRestore {
            file_name: rs.file_name.clone(),
            source_path: rs.source_path.clone(),
            destination_path: rs.destination_path.clone(),
        });
    }
}

/// The job spec of a backup.
pub(crate) fn backup_spec(rt: &EnvRuntime, h: &HostSpec) -> JobSpec {
    JobSpec {
        kind: JobKind::Backup,
        host: h.name.clone(),
        level: Some(rt.level_of(h)),
        restore: None,
        vars: h.vars.clone(),
    }
}

/// The job spec of a restore.
pub(crate) fn restore_spec(r: &RestoreSpec) -> JobSpec {
    JobSpec {
        kind: JobKind::Restore,
        host: r.host.clone(),
        level: None,
        restore: Some(Box::new(r.clone())),
        vars: r.vars.clone(),
    }
}

/// A launched job to track.
pub struct LaunchedJob {
    pub spec: JobSpec,
    pub job_id: String,
    pub trace_id: String,
    /// When the portal accepted the launch (kept when tracking is handed to the next start).
    pub launched_at: chrono::DateTime<chrono::Utc>,
}

/// Launches a backup or restore; one `*.launch` result. A 401 triggers one re-login and
/// one retry, a 429 a few (see [`retry::classify`]). Returns the job to track on success.
pub async fn launch(rt: &EnvRuntime, spec: JobSpec) -> Option<LaunchedJob> {
    fault_injection::hit(&rt.name, "launch");
    let client = rt.client();
    let action = spec.kind.launch_action();
    let sent = retry::authorized(
        Site::Launch,
        &rt.tokens,
        || lease(rt, &client),
        |lease| {
            let client = &client;
            let spec = &spec;
            async move {
                client
                    .launch_with_vars(
                        spec.kind,
                        &spec.host,
                        spec.level,
                        spec.restore.as_deref(),
                        &spec.vars,
                        &lease.token,
                    )
                    .await
            }
        },
        retry::never(),
    )
    .await;
    let call = match sent {
        Sent::Answered { call, .. } => call,
        Sent::NoToken(e) => {
            rt.emit(skipped(rt, &spec, &e)).await;
            return None;
        }
        Sent::Stopped(never) => match never {},
    };
    let trace_id = trace_id(rt, &spec);
    let unit = call.map_unit();
    let mut r = base(rt, action, &call.exchange, &unit.outcome)
        .with_host(&spec.host)
        .with_trace(&trace_id);
    let job_id = call.outcome.as_ref().ok().map(|l| l.job_id.clone());
    label_job(&mut r, &spec, job_id.as_deref());
    if let (Ok(l), Some(j)) = (&call.outcome, r.iaso.job.as_mut()) {
        j.status = l.status.clone();
    }
    rt.emit(r).await;
    job_id.map(|job_id| LaunchedJob {
        spec,
        job_id,
        trace_id,
        launched_at: chrono::Utc::now(),
    })
}

fn trace_id(rt: &EnvRuntime, spec: &JobSpec) -> String {
    use sha2::{Digest, Sha256};
    let seq = rt.ctx.next_trace();
    let mut h = Sha256::new();
    h.update(rt.ctx.run_id.as_bytes());
    h.update(rt.name.as_bytes());
    h.update(spec.host.as_bytes());
    h.update(seq.to_be_bytes());
    hex::encode(&h.finalize()[..16])
}

/// What one poll decided.
pub enum PollVerdict {
    /// Keep polling (no sooner than the given delay when the portal asked us to wait).
    Continue(Option<Duration>),
    /// The job ended (the `job.end` result has been emitted).
    Ended(JobResult),
    /// The stop signal came while the status request was queued at the limiter or in
    /// flight: the request was abandoned (a read, nothing lost) and the poll not counted.
    Stopped,
}

/// The state a job actor keeps between polls.
pub struct JobProgress {
    pub job: LaunchedJob,
    pub started: tokio::time::Instant,
    pub polls: u64,
    pub consecutive_failures: u32,
    pub last: Option<JobState>,
}

impl JobProgress {
    pub fn new(job: LaunchedJob) -> Self {
        Self {
            job,
            started: tokio::time::Instant::now(),
            polls: 0,
            consecutive_failures: 0,
            last: None,
        }
    }
}

fn job_result_doc(
    rt: &EnvRuntime,
    p: &JobProgress,
    action: Action,
    outcome: Outcome,
) -> ProbeResult {
    let mut r = rt
        .ctx
        .result(action, outcome)
        .with_host(&p.job.spec.host)
        .with_trace(&p.job.trace_id);
    label_job(&mut r, &p.job.spec, Some(&p.job.job_id));
    if let (Some(s), Some(j)) = (&p.last, r.iaso.job.as_mut()) {
        j.status = Some(s.status.clone());
        j.percent = s.percent;
        j.elapsed_s = s.elapsed_s;
        j.phase = s.phase.clone();
        j.failure_reason = s.failure_reason.clone();
    }
    r
}

/// Polls once; emits a `job.status` result when the status changed and a `job.end` when
/// the job is over (terminal status, too long, too many failed polls).
///
/// `stop` resolving abandons the status request (waiting at the limiter, or in flight) so
/// that a stop hands the job over at once: a status read changes nothing on the portal,
/// and a poll stuck behind a slow portal or a full limiter would otherwise hold the job
/// until the shutdown deadline, where it is lost. Only the request is raced: a result being
/// emitted is never cut.
///
/// `permit`: the limiter's permit the caller took for this poll, if it did
/// ([`EnvLimits::acquire`](crate::limiter::EnvLimits::acquire)).
pub async fn poll(
    rt: &EnvRuntime,
    p: &mut JobProgress,
    client: &ApiClient,
    stop: impl Future<Output = ()>,
    permit: Option<RequestPermit>,
) -> PollVerdict {
    p.polls += 1;
    let (call, backoff) = match status_call(rt, p, client, stop, permit).await {
        Some(answered) => answered,
        None => {
            p.polls -= 1;
            return PollVerdict::Stopped;
        }
    };
    let ended = match call.outcome {
        Ok(state) => status_seen(rt, p, state, &call.exchange).await,
        // Our own pace is too fast for the portal: not a failure of the job.
        Err(_) if backoff.is_some() => None,
        Err(e) => poll_failed(rt, p, e).await,
    };
    if let Some(v) = ended {
        return v;
    }
    if p.started.elapsed() >= Duration::from_secs(rt.cfg.jobs.max_duration_secs) {
        let msg = format!(
            "still not finished after {} s",
            rt.cfg.jobs.max_duration_secs
        );
        return Box::pin(end(
            rt,
            p,
            JobResult::Timeout,
            Some((ErrorType::JobTimeout, msg)),
        ))
        .await;
    }
    PollVerdict::Continue(backoff)
}

/// The status request (a lease first; see [`retry::authorized`]) and the wait the portal
/// asked for, if it only rate-limited us; None when `stop` came first. Without a token the
/// lease's error is the poll's, on an exchange that sent nothing.
///
/// A `permit` taken before is spent by the first request only if the lease did not wait (a
/// login). Otherwise it is dropped at once and the request takes a new one: kept through
/// the wait it would send the request into a later second, over the quota, and hold an
/// in-flight slot the login itself may need.
async fn status_call(
    rt: &EnvRuntime,
    p: &JobProgress,
    client: &ApiClient,
    stop: impl Future<Output = ()>,
    permit: Option<RequestPermit>,
) -> Option<(Call<JobState>, Option<Duration>)> {
    let job = &p.job;
    let permit = std::cell::Cell::new(permit);
    let permit = &permit;
    let sent = retry::authorized(
        Site::Status,
        &rt.tokens,
        || async move {
            let mut leased = std::pin::pin!(lease(rt, client));
            std::future::poll_fn(|cx| {
                let r = leased.as_mut().poll(cx);
                if r.is_pending() {
                    permit.set(None); // the request takes a new one
                }
                r
            })
            .await
        },
        |lease| async move {
            client
                .job_status_with_vars(
                    &job.job_id,
                    &job.spec.host,
                    &job.spec.vars,
                    &lease.token,
                    permit.take(),
                )
                .await
        },
        stop,
    )
    .await;
    match sent {
        Sent::Answered { call, backoff } => Some((call, backoff)),
        Sent::Stopped(()) => None,
        Sent::NoToken(e) => {
            let backoff = match retry::classify(Site::Status, &e, 1) {
                retry::Action::Backoff { after } => Some(after),
                _ => None,
            };
            let exchange = Exchange {
                method: String::new(),
                url: String::new(),
                status: None,
                duration: Duration::ZERO,
            };
            Some((
                Call {
                    exchange,
                    outcome: Err(e),
                },
                backoff,
            ))
        }
    }
}

/// A status answer: a `job.status` result when it changed, and the `job.end` when it is
/// terminal (then the verdict).
async fn status_seen(
    rt: &EnvRuntime,
    p: &mut JobProgress,
    state: JobState,
    ex: &Exchange,
) -> Option<PollVerdict> {
    p.consecutive_failures = 0;
    let changed = p.last.as_ref().is_none_or(|l| l.status != state.status);
    let class = rt.cfg.jobs.classify(&state.status);
    p.last = Some(state);
    if changed {
        let outcome = match class {
            StatusClass::Failure => Outcome::Failure,
            StatusClass::Running => Outcome::Unknown,
            _ => Outcome::Success,
        };
        let r = job_result_doc(rt, p, Action::JobStatus, outcome)
            .with_duration(ex.duration)
            .with_http(&ex.method, &ex.url, ex.status);
        Box::pin(rt.emit(r)).await;
    }
    let result = match class {
        StatusClass::Success => JobResult::Success,
        StatusClass::Warning => JobResult::Warning,
        StatusClass::Failure => JobResult::Failure,
        StatusClass::Running => return None,
    };
    Some(Box::pin(end(rt, p, result, None)).await)
}

/// A failed poll: the job ends `poll_failed` after `max_consecutive_poll_failures` in a row.
async fn poll_failed(rt: &EnvRuntime, p: &mut JobProgress, e: ApiError) -> Option<PollVerdict> {
    p.consecutive_failures += 1;
    tracing::debug!(env = %rt.name, job_id = %p.job.job_id, error = %e, "job poll failed");
    if p.consecutive_failures < rt.cfg.jobs.max_consecutive_poll_failures {
        return None;
    }
    let msg = format!(
        "{} consecutive status polls failed, last: {e}",
        p.consecutive_failures
    );
    let error = Some((ErrorType::PollFailed, msg));
    Some(Box::pin(end(rt, p, JobResult::PollFailed, error)).await)
}

/// [`poll`], with a panic inside it reported as the job's `job.end` (`error.type:
/// internal`, the run then exits 2) instead of a job that silently disappears.
pub(crate) async fn poll_guarded(
    rt: &EnvRuntime,
    p: &mut JobProgress,
    client: &ApiClient,
    stop: impl Future<Output = ()>,
    permit: Option<RequestPermit>,
) -> PollVerdict {
    let res = AssertUnwindSafe(async {
        fault_injection::hit(&rt.name, "job_poll");
        poll(rt, p, client, stop, permit).await
    })
    .catch_unwind()
    .await;
    match res {
        Ok(v) => v,
        Err(panic) => {
            let msg = panic_message(panic.as_ref());
            tracing::error!(env = %rt.name, job_id = %p.job.job_id, error = %msg, "internal error: a job poll panicked");
            Box::pin(end(
                rt,
                p,
                JobResult::Failure,
                Some((ErrorType::Internal, format!("internal error: {msg}"))),
            ))
            .await
        }
    }
}

/// Emits the `job.end` result.
pub async fn end(
    rt: &EnvRuntime,
    p: &JobProgress,
    result: JobResult,
    error: Option<(ErrorType, String)>,
) -> PollVerdict {
    let outcome = match result {
        JobResult::Success | JobResult::Warning => Outcome::Success,
        JobResult::Cancelled => Outcome::Unknown,
        _ => Outcome::Failure,
    };
    let mut r = job_result_doc(rt, p, Action::JobEnd, outcome).with_duration(p.started.elapsed());
    if let Some(j) = r.iaso.job.as_mut() {
        j.result = Some(result);
        j.polls = Some(p.polls);
    }
    let error = error.or_else(|| match result {
        JobResult::Failure => Some((
            ErrorType::JobFailed,
            p.last
                .as_ref()
                .map(|s| match &s.failure_reason {
                    Some(why) => format!("job ended {}: {why}", s.status),
                    None => format!("job ended {}", s.status),
                })
                .unwrap_or_else(|| "job failed".into()),
        )),
        _ => None,
    });
    if let Some((kind, msg)) = error {
        r = r.with_error(kind, msg);
    }
    rt.emit(r).await;
    PollVerdict::Ended(result)
}
