//! The validated configuration: what [`validate`](super::validate()) accepted, carried by
//! types. Actors and clients are built from a [`ValidConfig`], so they need no clamp and no
//! `expect`: a rate is a `NonZeroU32`, the password was read and is there.

use super::resolve::{resolve, Resolved};
use super::{validate, Config, HostSpec, Problem, Secret};
use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroUsize};

/// A configuration that passed validation, with the secrets and hosts files it refers to,
/// read once.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    config: Config,
    environments: BTreeMap<String, ValidEnvironment>,
    sink_buffer: NonZeroUsize,
}

/// What validation guarantees about one environment, as types.
#[derive(Debug, Clone)]
pub struct ValidEnvironment {
    /// Its rate limit and concurrency.
    pub limits: EnvLimitsSpec,
    /// Its job launches and tracking.
    pub jobs: JobLimits,
    /// The portal password, from its single source.
    pub password: Secret,
    /// The hosts of its `hosts_file`, when it has one.
    pub file_hosts: Option<Vec<HostSpec>>,
}

/// One environment's request limits, as the limiter takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvLimitsSpec {
    /// Requests per second.
    pub rate_per_sec: NonZeroU32,
    /// Requests allowed at once above the steady rate; at least [`Self::min_burst_for`] the rate.
    pub burst: NonZeroU32,
    /// Requests in flight at once.
    pub max_in_flight: NonZeroUsize,
}

impl EnvLimitsSpec {
    /// How often, at most, the runtime's request pacer hands out permits: tokio's timer has
    /// a 1 ms resolution (see `limiter`), so a burst must cover one millisecond of the rate.
    pub(crate) const PACER_WAKEUPS_PER_SEC: u32 = 1000;

    /// The smallest burst that a pacer waking [`Self::PACER_WAKEUPS_PER_SEC`] times a
    /// second needs to sustain `rate`/s.
    pub(crate) fn min_burst_for(rate: u32) -> u32 {
        rate.div_ceil(Self::PACER_WAKEUPS_PER_SEC).max(1)
    }

    /// The limits, when every value is usable: none is zero and the burst sustains the rate.
    pub fn new(rate_per_sec: u32, burst: u32, max_in_flight: usize) -> Option<Self> {
        if burst < Self::min_burst_for(rate_per_sec) {
            return None;
        }
        Some(Self {
            rate_per_sec: NonZeroU32::new(rate_per_sec)?,
            burst: NonZeroU32::new(burst)?,
            max_in_flight: NonZeroUsize::new(max_in_flight)?,
        })
    }
}

/// One environment's job limits (`jobs.launch_concurrency`, `jobs.max_tracked_jobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Launches in flight at once.
    pub launch_concurrency: NonZeroUsize,
    /// Jobs tracked (polled) at once; launches wait for a slot beyond.
    pub max_tracked_jobs: NonZeroUsize,
}

impl JobLimits {
    /// The limits, when neither is zero.
    pub fn new(launch_concurrency: usize, max_tracked_jobs: usize) -> Option<Self> {
        Some(Self {
            launch_concurrency: NonZeroUsize::new(launch_concurrency)?,
            max_tracked_jobs: NonZeroUsize::new(max_tracked_jobs)?,
        })
    }
}

/// Every problem of `config`, after reading what it refers to (empty: valid).
pub fn problems(config: &Config) -> Vec<Problem> {
    validate(config, &resolve(config))
}

impl ValidConfig {
    /// Resolves and validates `config`; every problem at once when it is not valid.
    pub fn new(config: Config) -> Result<Self, Vec<Problem>> {
        let mut resolved = resolve(&config);
        let problems = validate(&config, &resolved);
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut environments = BTreeMap::new();
        for (name, e) in &config.environments {
            let env = valid_environment(name, e, &mut resolved).map_err(|p| vec![p])?;
            environments.insert(name.clone(), env);
        }
        let sink_buffer = NonZeroUsize::new(config.sink.buffer)
            .ok_or_else(|| vec![Problem::new("sink.buffer", "must be greater than 0")])?;
        Ok(Self {
            config,
            environments,
            sink_buffer,
        })
    }

    /// The configuration tree.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Results the sink takes before producers wait (`sink.buffer`).
    pub(crate) fn sink_buffer(&self) -> NonZeroUsize {
        self.sink_buffer
    }

    /// What validation guarantees about environment `name` (every configured one is there).
    pub fn environment(&self, name: &str) -> Option<&ValidEnvironment> {
        self.environments.get(name)
    }
}

/// The typed view of an environment `validate` accepted. The errors cannot happen after a
/// clean validation; they are problems rather than panics all the same.
fn valid_environment(
    name: &str,
    e: &super::EnvironmentConfig,
    resolved: &mut Resolved,
) -> Result<ValidEnvironment, Problem> {
    let key = |s: &str| format!("environments.{name}.{s}");
    let limits = EnvLimitsSpec::new(e.rate_limit_per_sec, e.rate_limit_burst, e.max_in_flight)
        .ok_or_else(|| Problem::new(key("rate_limit_per_sec"), "unusable rate limit"))?;
    let jobs = JobLimits::new(e.jobs.launch_concurrency, e.jobs.max_tracked_jobs)
        .ok_or_else(|| Problem::new(key("jobs"), "zero launch_concurrency or max_tracked_jobs"))?;
    let password = match resolved.passwords.remove(name) {
        Some(Ok(p)) => p,
        Some(Err(m)) => return Err(Problem::new(key("credentials"), m)),
        None => return Err(Problem::new(key("credentials"), "not resolved")),
    };
    let file_hosts = match resolved.hosts_files.remove(name) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(m)) => return Err(Problem::new(key("hosts_file"), m)),
    };
    Ok(ValidEnvironment {
        limits,
        jobs,
        password,
        file_hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_limits_reject_zero_and_a_burst_that_cannot_sustain_the_rate() {
        // (rate, burst, max_in_flight) -> accepted
        for (rate, burst, in_flight, ok) in [
            (20, 5, 256, true),
            (1, 1, 1, true),
            (0, 5, 256, false),
            (20, 0, 256, false),
            (20, 5, 0, false),
            (5000, 4, 256, false),
            (5000, 5, 256, true),
            (5001, 5, 256, false),
        ] {
            let got = EnvLimitsSpec::new(rate, burst, in_flight);
            assert_eq!(got.is_some(), ok, "{rate} {burst} {in_flight}");
            if let Some(l) = got {
                assert_eq!(
                    (l.rate_per_sec.get(), l.burst.get(), l.max_in_flight.get()),
                    (rate, burst, in_flight)
                );
            }
        }
    }

    #[test]
    fn a_valid_config_carries_the_password_and_the_limits() {
        let c = crate::config::load::load_with(&crate::config::ConfigSource::Embedded, false)
            .unwrap()
            .config;
        let v = ValidConfig::new(c).unwrap();
        let lab = v.environment("lab").unwrap();
        assert_eq!(
            lab.limits.rate_per_sec.get(),
            v.config().environments["lab"].rate_limit_per_sec
        );
        assert!(!lab.password.expose().is_empty());
    }

    #[test]
    fn an_invalid_config_is_refused_with_its_problems() {
        let mut c = crate::config::load::load_with(&crate::config::ConfigSource::Embedded, false)
            .unwrap()
            .config;
        c.environments.get_mut("lab").unwrap().rate_limit_per_sec = 0;
        let p = ValidConfig::new(c).unwrap_err();
        assert!(
            p.iter()
                .any(|p| p.key == "environments.lab.rate_limit_per_sec"),
            "{p:?}"
        );
    }
}
