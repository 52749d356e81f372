//! Per-environment tallies of results (kept by the sink), the end-of-run summary table and
//! the exit code it implies (the codes themselves: [`crate::exit`]).

use crate::config::ThresholdsConfig;
use crate::exit::ExitCode;
use crate::model::{Action, ErrorType, JobResult, Outcome, ProbeResult};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Durations in a log-linear histogram: 16 buckets per power of two (a value is reported
/// within ±3 %), sparse, so a tally stays small whatever the number of results.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Latency {
    /// bucket → count
    buckets: BTreeMap<u16, u64>,
    pub count: u64,
}

const SUB_BUCKETS: u64 = 16;

impl Latency {
    fn bucket(us: u64) -> u16 {
        if us < SUB_BUCKETS {
            return us as u16;
        }
        let e = 63 - u64::from(us.leading_zeros()); // ≥ 4
        let m = (us >> (e - 4)) & (SUB_BUCKETS - 1);
        (SUB_BUCKETS + (e - 4) * SUB_BUCKETS + m) as u16
    }

    /// The middle of a bucket, in µs.
    fn value(b: u16) -> f64 {
        let b = u64::from(b);
        if b < SUB_BUCKETS {
            return b as f64;
        }
        let e = (b - SUB_BUCKETS) / SUB_BUCKETS + 4;
        let m = (b - SUB_BUCKETS) % SUB_BUCKETS;
        let width = 1u64 << (e - 4);
        ((SUB_BUCKETS + m) * width) as f64 + width as f64 / 2.0
    }

    pub fn add(&mut self, d_us: u64) {
        *self.buckets.entry(Self::bucket(d_us)).or_default() += 1;
        self.count += 1;
    }

    /// The `q` quantile (0–1) in milliseconds; None without values.
    pub(crate) fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some(Self::value(*b).round() / 1000.0);
            }
        }
        None
    }
}

/// Distinct failure reasons kept per environment and action; further ones count as "other".
const MAX_REASONS: usize = 50;
const MAX_REASON_CHARS: usize = 160;
const OTHER_REASONS: &str = "(other reasons)";

/// Counts for one environment.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EnvTally {
    /// action → (success, failure, unknown)
    pub actions: BTreeMap<&'static str, [u64; 3]>,
    pub skipped: u64,
    /// `iaso.job.result` of `job.end` results.
    pub job_results: BTreeMap<&'static str, u64>,
    /// action → request durations (health: the overall result only; not `job.end`).
    pub latency: BTreeMap<&'static str, Latency>,
    /// action → "error.type: reason" → failures.
    pub reasons: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

impl EnvTally {
    /// Jobs that ended with this `iaso.job.result`.
    pub fn jobs(&self, r: JobResult) -> u64 {
        self.job_results.get(r.as_str()).copied().unwrap_or(0)
    }

    /// Failed job ends (`failure`), as the summary's `failed` column.
    pub(crate) fn jobs_failed(&self) -> u64 {
        self.jobs(JobResult::Failure)
    }

    /// Timed-out or unreadable job ends, as the summary's `timeout` column.
    pub(crate) fn jobs_timed_out(&self) -> u64 {
        self.jobs(JobResult::Timeout) + self.jobs(JobResult::PollFailed)
    }

    /// Failed check results (liveness, health, response time, auth).
    pub(crate) fn checks_failed(&self) -> u64 {
        [
            Action::Liveness,
            Action::Health,
            Action::ResponseTime,
            Action::Auth,
        ]
        .iter()
        .map(|a| self.count(*a, Outcome::Failure))
        .sum()
    }

    /// Launches the portal refused.
    pub(crate) fn launches_failed(&self) -> u64 {
        self.count(Action::BackupLaunch, Outcome::Failure)
            + self.count(Action::RestoreLaunch, Outcome::Failure)
    }

    /// Jobs the portal accepted.
    pub fn launched(&self) -> u64 {
        self.count(Action::BackupLaunch, Outcome::Success)
            + self.count(Action::RestoreLaunch, Outcome::Success)
    }

    /// The most frequent failure reasons of every action, most frequent first.
    pub(crate) fn top_reasons(&self, n: usize) -> Vec<(&'static str, &str, u64)> {
        let mut all: Vec<(&'static str, &str, u64)> = self
            .reasons
            .iter()
            .flat_map(|(a, m)| m.iter().map(move |(r, c)| (*a, r.as_str(), *c)))
            .collect();
        all.sort_by(|x, y| {
            y.2.cmp(&x.2)
                .then_with(|| x.0.cmp(y.0))
                .then_with(|| x.1.cmp(y.1))
        });
        all.truncate(n);
        all
    }

    pub fn count(&self, action: Action, outcome: Outcome) -> u64 {
        self.actions
            .get(action.as_str())
            .map_or(0, |c| c[outcome_index(outcome)])
    }

    pub fn total(&self, action: Action) -> u64 {
        self.actions
            .get(action.as_str())
            .map_or(0, |c| c.iter().sum())
    }

    pub fn failures(&self) -> u64 {
        self.actions.values().map(|c| c[1]).sum()
    }
}

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Success => 0,
        Outcome::Failure => 1,
        Outcome::Unknown => 2,
    }
}

/// Tallies of every environment.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    pub environments: BTreeMap<String, EnvTally>,
    pub results: u64,
    /// Results recording a bug (`error.type: internal`, a caught panic): exit code 2.
    pub internal_errors: u64,
}

impl Tally {
    pub fn add(&mut self, r: &ProbeResult) {
        self.results += 1;
        let env = match self.environments.get_mut(&r.service.environment) {
            Some(e) => e,
            None => self
                .environments
                .entry(r.service.environment.clone())
                .or_default(),
        };
        env.actions.entry(r.event.action.as_str()).or_default()[outcome_index(r.event.outcome)] +=
            1;
        if r.error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorType::Internal)
        {
            self.internal_errors += 1;
        }
        if r.error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorType::Skipped)
        {
            env.skipped += 1;
        }
        if let Some(res) = r.iaso.job.as_ref().and_then(|j| j.result) {
            *env.job_results.entry(res.as_str()).or_default() += 1;
        }
        let action = r.event.action;
        let per_component = r
            .iaso
            .health
            .as_ref()
            .is_some_and(|c| c.component != "_overall");
        if let (Some(ns), false, false) =
            (r.event.duration, per_component, action == Action::JobEnd)
        {
            env.latency
                .entry(action.as_str())
                .or_default()
                .add(ns / 1000);
        }
        if r.event.outcome == Outcome::Failure {
            if let Some(e) = &r.error {
                let why = r
                    .iaso
                    .job
                    .as_ref()
                    .and_then(|j| j.failure_reason.as_deref())
                    .filter(|s| !s.is_empty())
                    .unwrap_or(&e.message);
                let key: String = format!("{}: {}", e.kind.as_str(), why)
                    .chars()
                    .take(MAX_REASON_CHARS)
                    .collect();
                let m = env.reasons.entry(action.as_str()).or_default();
                if let Some(n) = m.get_mut(&key) {
                    *n += 1;
                } else if m.len() < MAX_REASONS {
                    m.insert(key, 1);
                } else {
                    *m.entry(OTHER_REASONS.into()).or_default() += 1;
                }
            }
        }
    }

    /// 0 when every probe passed, 1 when some failed or was skipped, 2 when the prober
    /// itself failed (an internal error: a caught panic).
    pub fn exit_code(&self) -> ExitCode {
        self.pass_exit_code(None)
    }

    /// The pass's exit code, decided by the thresholds when set (`Some(all passed)`).
    pub(crate) fn pass_exit_code(&self, thresholds: Option<bool>) -> ExitCode {
        let bad = self
            .environments
            .values()
            .any(|e| e.failures() > 0 || e.skipped > 0);
        ExitCode::of_pass(self.internal_errors > 0, bad, thresholds)
    }

    /// The human summary: the table, p95 latency per check, the top failure reasons.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<12} {:>10} {:>10} {:>10} {:>6} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}",
            "environment",
            "liveness",
            "health",
            "resp.time",
            "auth",
            "backups",
            "restores",
            "jobs ok",
            "warning",
            "failed",
            "timeout",
            "cancelled",
            "skipped"
        );
        for (name, e) in &self.environments {
            let ratio = |a: Action| format!("{}/{}", e.count(a, Outcome::Success), e.total(a));
            let _ = writeln!(
                s,
                "{:<12} {:>10} {:>10} {:>10} {:>6} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}",
                name,
                ratio(Action::Liveness),
                ratio(Action::Health),
                ratio(Action::ResponseTime),
                ratio(Action::Auth),
                ratio(Action::BackupLaunch),
                ratio(Action::RestoreLaunch),
                e.jobs(JobResult::Success),
                e.jobs(JobResult::Warning),
                e.jobs_failed(),
                e.jobs_timed_out(),
                e.jobs(JobResult::Cancelled),
                e.skipped
            );
        }
        let _ = writeln!(
            s,
            "(checks and launches: passed/total; jobs: how tracked jobs ended; {} results)",
            self.results
        );
        for (name, e) in &self.environments {
            let p95: Vec<String> = Action::ALL
                .iter()
                .filter(|a| **a != Action::JobEnd)
                .filter_map(|a| {
                    let l = e.latency.get(a.as_str())?;
                    Some(format!("{} {}", a.as_str(), fmt_ms(l.quantile_ms(0.95)?)))
                })
                .collect();
            if !p95.is_empty() {
                let _ = writeln!(s, "{name}: p95 latency (ms): {}", p95.join(" · "));
            }
        }
        for (name, e) in &self.environments {
            for (action, why, n) in e.top_reasons(3) {
                let _ = writeln!(s, "{name}: {n} × {action} failed: {why}");
            }
        }
        s.truncate(s.trim_end().len());
        s
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

/// One threshold's verdict.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    /// The key in `[thresholds]`.
    pub threshold: &'static str,
    pub environment: Option<String>,
    /// The check (`event.action`) it applies to, for per-check thresholds.
    pub check: Option<&'static str>,
    pub limit: f64,
    /// The measured value; None when nothing was measured (then it passes: nothing ran).
    pub value: Option<f64>,
    pub passed: bool,
}

impl Verdict {
    /// One line for the human summary.
    pub fn describe(&self) -> String {
        let scope = match (&self.environment, self.check) {
            (Some(e), Some(c)) => format!("{e} {c}"),
            (Some(e), None) => e.clone(),
            _ => "run".into(),
        };
        let value = self.value.map_or("nothing measured".into(), |v| {
            format!("{}", (v * 10_000.0).round() / 10_000.0)
        });
        let op = if self.threshold.ends_with("_min") {
            "≥"
        } else {
            "≤"
        };
        format!(
            "{} {scope}: {value} (limit {op} {}) {}",
            self.threshold,
            self.limit,
            if self.passed { "passed" } else { "FAILED" }
        )
    }
}

const CHECKS: [Action; 4] = [
    Action::Liveness,
    Action::Health,
    Action::ResponseTime,
    Action::Auth,
];

/// Evaluates `t` on the tallies. `unshipped`: results left unshipped, when Elasticsearch is
/// configured (None: not configured, `unshipped_max` does not apply).
pub(crate) fn evaluate(
    t: &ThresholdsConfig,
    tally: &Tally,
    unshipped: Option<u64>,
) -> Vec<Verdict> {
    let mut out = Vec::new();
    for (env, e) in &tally.environments {
        if let Some(min) = t.availability_min {
            for a in CHECKS {
                let total = e.total(a);
                if total == 0 {
                    continue;
                }
                let v = e.count(a, Outcome::Success) as f64 / total as f64;
                out.push(Verdict {
                    threshold: "availability_min",
                    environment: Some(env.clone()),
                    check: Some(a.as_str()),
                    limit: min,
                    value: Some(v),
                    passed: v >= min,
                });
            }
        }
        if let Some(min) = t.job_success_rate_min {
            let ok = e.jobs(JobResult::Success) + e.jobs(JobResult::Warning);
            let ended: u64 = e.job_results.values().sum();
            let attempts = ended + e.launches_failed();
            let value = (attempts > 0).then(|| ok as f64 / attempts as f64);
            out.push(Verdict {
                threshold: "job_success_rate_min",
                environment: Some(env.clone()),
                check: None,
                limit: min,
                value,
                passed: value.is_none_or(|v| v >= min),
            });
        }
        if let Some(max) = t.response_time_p95_max_ms {
            for a in CHECKS {
                let Some(p95) = e.latency.get(a.as_str()).and_then(|l| l.quantile_ms(0.95)) else {
                    continue;
                };
                out.push(Verdict {
                    threshold: "response_time_p95_max_ms",
                    environment: Some(env.clone()),
                    check: Some(a.as_str()),
                    limit: max as f64,
                    value: Some(p95),
                    passed: p95 <= max as f64,
                });
            }
        }
    }
    if let (Some(max), Some(n)) = (t.unshipped_max, unshipped) {
        out.push(Verdict {
            threshold: "unshipped_max",
            environment: None,
            check: None,
            limit: max as f64,
            value: Some(n as f64),
            passed: n <= max,
        });
    }
    out
}

/// Where shipping stood at the end of a run, for the summaries.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct ShippingSummary {
    pub stored: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    /// Journal lines not in Elasticsearch (the next run or `iaso-probe ship` sends them).
    pub unshipped: u64,
    /// A signal ended the wait for shipping.
    pub interrupted: bool,
}

/// Version of the `--summary-json` document (docs/summary.schema.json).
pub(crate) const SUMMARY_SCHEMA_VERSION: u32 = 1;

/// The `--summary-json` document (its schema: docs/summary.schema.json).
pub(crate) fn summary_json(
    run_id: &str,
    tally: &Tally,
    shipping: Option<&ShippingSummary>,
    verdicts: &[Verdict],
    thresholds_set: bool,
    interrupted: bool,
    exit_code: ExitCode,
) -> serde_json::Value {
    use serde_json::{json, Map};
    let envs: Map<String, serde_json::Value> = tally
        .environments
        .iter()
        .map(|(name, e)| (name.clone(), env_summary_json(e)))
        .collect();
    json!({
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "run_id": run_id,
        "results": tally.results,
        "internal_errors": tally.internal_errors,
        "interrupted": interrupted,
        "exit_code": exit_code,
        "environments": envs,
        "shipping": shipping,
        "unshipped": shipping.map(|s| s.unshipped),
        "thresholds": verdicts,
        "thresholds_passed": thresholds_set.then(|| verdicts.iter().all(|v| v.passed)),
    })
}

/// One environment of the `--summary-json` document: its actions, jobs and skips.
fn env_summary_json(e: &EnvTally) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut actions = Map::new();
    for a in Action::ALL {
        let c = e.actions.get(a.as_str()).copied().unwrap_or_default();
        if c.iter().sum::<u64>() == 0 {
            continue;
        }
        let latency = e.latency.get(a.as_str()).filter(|l| l.count > 0).map(|l| {
            json!({
                "count": l.count,
                "p50": l.quantile_ms(0.50),
                "p95": l.quantile_ms(0.95),
                "p99": l.quantile_ms(0.99),
            })
        });
        let mut reasons: Vec<(&String, &u64)> = e
            .reasons
            .get(a.as_str())
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        reasons.sort_by(|x, y| y.1.cmp(x.1).then_with(|| x.0.cmp(y.0)));
        let top: Vec<Value> = reasons
            .iter()
            .take(5)
            .map(|(r, n)| json!({"reason": r, "count": n}))
            .collect();
        actions.insert(
            a.as_str().into(),
            json!({
                "success": c[0],
                "failure": c[1],
                "unknown": c[2],
                "latency_ms": latency,
                "top_failure_reasons": top,
            }),
        );
    }
    let mut jobs = Map::new();
    jobs.insert("launched".into(), e.launched().into());
    jobs.insert("launch_failed".into(), e.launches_failed().into());
    for r in JobResult::ALL {
        jobs.insert(r.as_str().into(), e.jobs(r).into());
    }
    json!({
        "actions": actions,
        "jobs": jobs,
        "skipped": e.skipped,
        "checks_failed": e.checks_failed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResultContext;

    #[test]
    fn failures_and_skips_make_exit_code_one() {
        let ctx = ResultContext::new("r", "lab", "o");
        let mut t = Tally::default();
        t.add(&ctx.result(Action::Liveness, Outcome::Success));
        assert_eq!(t.exit_code(), 0);
        t.add(
            &ctx.result(Action::BackupLaunch, Outcome::Unknown)
                .with_error(ErrorType::Skipped, "no token"),
        );
        assert_eq!(t.exit_code(), 1);
        assert_eq!(t.environments["lab"].skipped, 1);
    }

    #[test]
    fn an_internal_error_makes_exit_code_two() {
        let ctx = ResultContext::new("r", "lab", "o");
        let mut t = Tally::default();
        t.add(
            &ctx.result(Action::Liveness, Outcome::Failure)
                .with_error(ErrorType::Assertion, "x"),
        );
        assert_eq!(t.exit_code(), 1);
        t.add(
            &ctx.result(Action::Health, Outcome::Failure)
                .with_error(ErrorType::Internal, "internal error: boom"),
        );
        assert_eq!((t.exit_code(), t.internal_errors), (ExitCode::Setup, 1));
    }

    #[test]
    fn latency_quantiles_are_within_three_percent() {
        let mut l = Latency::default();
        for ms in 1..=1000u64 {
            l.add(ms * 1000);
        }
        for (q, want) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = l.quantile_ms(q).unwrap();
            assert!((got - want).abs() / want <= 0.03, "p{q}: {got} vs {want}");
        }
        assert_eq!(Latency::default().quantile_ms(0.5), None);
        let mut tiny = Latency::default();
        tiny.add(7);
        assert_eq!(tiny.quantile_ms(0.99), Some(0.007));
    }

    fn tally_with_jobs(ok: u64, failed: u64, cancelled: u64) -> Tally {
        use crate::model::result::IasoJob;
        let ctx = ResultContext::new("r", "lab", "o");
        let mut t = Tally::default();
        for (n, res) in [
            (ok, JobResult::Success),
            (failed, JobResult::Failure),
            (cancelled, JobResult::Cancelled),
        ] {
            for _ in 0..n {
                let outcome = if res == JobResult::Success {
                    Outcome::Success
                } else {
                    Outcome::Failure
                };
                let mut r = ctx
                    .result(Action::JobEnd, outcome)
                    .with_duration(std::time::Duration::from_secs(3));
                if outcome == Outcome::Failure {
                    r = r.with_error(ErrorType::JobFailed, "job ended Failed");
                }
                r.iaso.job = Some(IasoJob {
                    result: Some(res),
                    failure_reason: (res == JobResult::Failure)
                        .then(|| "media agent offline".into()),
                    ..Default::default()
                });
                t.add(&r);
            }
        }
        for ms in [10, 20, 30, 40, 900] {
            t.add(
                &ctx.result(Action::Liveness, Outcome::Success)
                    .with_duration(std::time::Duration::from_millis(ms)),
            );
        }
        t
    }

    #[test]
    fn thresholds_pass_and_fail_on_the_tallies() {
        let t = tally_with_jobs(90, 8, 2);
        let th = ThresholdsConfig {
            availability_min: Some(0.99),
            job_success_rate_min: Some(0.9),
            response_time_p95_max_ms: Some(1000),
            unshipped_max: Some(0),
        };
        let v = evaluate(&th, &t, Some(0));
        assert!(v.iter().all(|v| v.passed), "{v:?}");
        assert_eq!(v.len(), 4);
        // 90 of 100 ended jobs succeeded (cancelled ones count as not successful).
        let th = ThresholdsConfig {
            job_success_rate_min: Some(0.91),
            response_time_p95_max_ms: Some(500),
            unshipped_max: Some(0),
            ..Default::default()
        };
        let v = evaluate(&th, &t, Some(3));
        let failed: Vec<&str> = v
            .iter()
            .filter(|v| !v.passed)
            .map(|v| v.threshold)
            .collect();
        assert_eq!(
            failed,
            [
                "job_success_rate_min",
                "response_time_p95_max_ms",
                "unshipped_max"
            ]
        );
        // Without Elasticsearch, unshipped_max does not apply.
        assert!(evaluate(&th, &t, None)
            .iter()
            .all(|v| v.threshold != "unshipped_max"));
        assert!(v[0].describe().contains("FAILED"), "{}", v[0].describe());
    }

    #[test]
    fn the_summary_shows_cancelled_jobs_p95_and_the_top_reasons() {
        let s = tally_with_jobs(5, 3, 2).render();
        let header = s.lines().next().unwrap();
        assert!(header.contains("cancelled"), "{s}");
        let row: Vec<&str> = s.lines().nth(1).unwrap().split_whitespace().collect();
        // … jobs ok, warning, failed, timeout, cancelled, skipped
        assert_eq!(&row[row.len() - 6..], ["5", "0", "3", "0", "2", "0"], "{s}");
        assert!(s.contains("lab: p95 latency (ms): liveness 9"), "{s}");
        assert!(
            s.contains("lab: 3 × job.end failed: job_failed: media agent offline"),
            "{s}"
        );
    }

    #[test]
    fn renders_one_row_per_environment() {
        let mut t = Tally::default();
        for env in ["lab", "prod"] {
            t.add(&ResultContext::new("r", env, "o").result(Action::Auth, Outcome::Success));
        }
        let s = t.render();
        assert!(s.contains("\nlab ") && s.contains("\nprod "), "{s}");
    }
}
