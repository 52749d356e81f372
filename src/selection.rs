//! What a run covers: `--env`, `--host`, `--hosts FILE` and `--shard I/N` applied to the
//! configuration, giving each selected environment its host list.
//!
//! Sharding splits one configuration over N instances: each host and each restore belongs to
//! exactly one shard (the same stable hash of the host name), and the checks of every
//! environment run on one shard only (the checks owner, shard 0 unless told otherwise), so N
//! instances write one copy of each check result.

use crate::config::{read_hosts_file, Config, EnvironmentConfig, HostSpec};
use std::path::PathBuf;
use std::str::FromStr;

/// The command line's selection.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Environments to run (all enabled ones when empty).
    pub envs: Vec<String>,
    /// Hosts to back up instead of the configured ones.
    pub hosts: Vec<String>,
    /// File of hosts to back up instead of the configured ones.
    pub hosts_file: Option<PathBuf>,
    /// Only the hosts and restores of this shard (checks only on the checks owner).
    pub shard: Option<Shard>,
    /// The shard that runs the checks (0 by default).
    pub checks_owner: u32,
}

/// `I/N`: this instance takes the hosts whose stable hash modulo N is I.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("--shard `{s}`: expected I/N, e.g. 0/4"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("--shard `{s}`: I is not a number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("--shard `{s}`: N is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("--shard `{s}`: need 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// `--shard-from-hostname N`: the ordinal a StatefulSet gives its pods (`iaso-probe-3` →
    /// 3/N). The ordinal must be below N: a pod beyond the replica count named in the
    /// configuration would otherwise take nobody's hosts, or somebody else's.
    pub fn from_hostname(hostname: &str, count: u32) -> Result<Shard, String> {
        let digits = hostname.rsplit_once('-').map(|(_, d)| d).unwrap_or("");
        let index: u32 = digits.parse().map_err(|_| {
            format!(
                "--shard-from-hostname: hostname `{hostname}` does not end in -<ordinal> (a StatefulSet pod name such as iaso-probe-3)"
            )
        })?;
        if count == 0 || index >= count {
            return Err(format!(
                "--shard-from-hostname {count}: hostname `{hostname}` gives ordinal {index}, need 0 <= ordinal < {count} (replicas and N disagree?)"
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard runs the checks (`owner` is the checks owner's index).
    pub(crate) fn runs_checks(&self, owner: u32) -> bool {
        self.index == owner
    }

    /// Stable across processes and versions (FNV-1a of the host name).
    pub fn owns(&self, host: &str) -> bool {
        crate::hash::fnv1a(host.bytes()) % self.count as u64 == self.index as u64
    }
}

/// The selected environments with their configuration and hosts, in name order.
pub fn select(
    cfg: &Config,
    sel: &Selection,
) -> Result<Vec<(String, EnvironmentConfig, Vec<HostSpec>)>, String> {
    for e in &sel.envs {
        if !cfg.environments.contains_key(e) {
            let known: Vec<&str> = cfg.environments.keys().map(String::as_str).collect();
            return Err(format!(
                "--env {e}: no such environment (configured: {})",
                known.join(", ")
            ));
        }
    }
    let mut out = Vec::new();
    for (name, env) in &cfg.environments {
        let chosen = if sel.envs.is_empty() {
            env.enabled
        } else {
            sel.envs.contains(name)
        };
        if !chosen {
            continue;
        }
        let mut hosts = if let Some(f) = &sel.hosts_file {
            read_hosts_file(f, env.default_backup_level).map_err(|m| format!("--hosts: {m}"))?
        } else if !sel.hosts.is_empty() {
            sel.hosts
                .iter()
                .map(|h| {
                    env.hosts
                        .iter()
                        .find(|c| &c.name == h)
                        .cloned()
                        .unwrap_or(HostSpec {
                            name: h.clone(),
                            level: None,
                            vars: Default::default(),
                        })
                })
                .collect()
        } else {
            let mut hosts = env.hosts.clone();
            if let Some(f) = &env.hosts_file {
                hosts.extend(
                    read_hosts_file(f, env.default_backup_level)
                        .map_err(|m| format!("environments.{name}.hosts_file: {m}"))?,
                );
            }
            hosts
        };
        let mut env = env.clone();
        with_host_vars(&mut env.restores, &hosts, &env.hosts);
        if let Some(shard) = sel.shard {
            hosts.retain(|h| shard.owns(&h.name));
        }
        out.push((name.clone(), env, hosts));
    }
    if out.is_empty() {
        return Err("no environment selected (all are disabled)".into());
    }
    Ok(out)
}

/// Gives each restore the `vars` of its host (from the run's hosts, else the configured
/// ones), under its own: a restore names the host's variables like its backup does.
fn with_host_vars(
    restores: &mut [crate::config::RestoreSpec],
    hosts: &[HostSpec],
    configured: &[HostSpec],
) {
    for r in restores {
        let host = hosts
            .iter()
            .chain(configured)
            .find(|h| h.name == r.host && !h.vars.is_empty());
        if let Some(h) = host {
            for (k, v) in &h.vars {
                r.vars.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_hosts() {
        let hosts: Vec<String> = (0..1000).map(|i| format!("host-{i}")).collect();
        let shards: Vec<Shard> = (0..4).map(|i| Shard { index: i, count: 4 }).collect();
        for h in &hosts {
            assert_eq!(shards.iter().filter(|s| s.owns(h)).count(), 1);
        }
        let first = hosts.iter().filter(|h| shards[0].owns(h)).count();
        assert!((150..350).contains(&first), "{first}");
    }

    #[test]
    fn rejects_bad_shards() {
        assert!("3/3".parse::<Shard>().is_err());
        assert!("x/3".parse::<Shard>().is_err());
        assert_eq!(
            "1/3".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 3 }
        );
    }

    #[test]
    fn rejects_unknown_environment() {
        let cfg = crate::config::load::load_with(&crate::config::ConfigSource::Embedded, false)
            .unwrap()
            .config;
        let e = select(
            &cfg,
            &Selection {
                envs: vec!["staging".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.contains("--env staging") && e.contains("lab"), "{e}");
    }
}
