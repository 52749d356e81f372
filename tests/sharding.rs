//! `--shard I/N` over one configuration: N instances, each host and each restore on exactly
//! one of them, the checks on the checks owner only, every document labelled with its shard.

mod harness;

use harness::*;
use iaso_probe::model::{Action, Dataset};
use iaso_probe::selection::{Selection, Shard};
use iaso_probe::RunOptions;
use std::collections::BTreeMap;

const SIM: Sim = Sim::new(5, 1, (20, 60)).failure(0.0).warning(0.0);

fn restores(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[environments.lab.restores]]\nhost = \"host-{i:05}\"\nfile_name = \"f{i}.txt\"\nsource_path = \"/data\"\ndestination_path = \"/restore\"\n"
            )
        })
        .collect()
}

fn run_shard(cfg: iaso_probe::config::Config, shard: Shard, owner: u32) -> iaso_probe::RunReport {
    let opts = RunOptions {
        once: true,
        seed: Some(7),
        selection: Selection {
            shard: Some(shard),
            checks_owner: owner,
            ..Default::default()
        },
        ..Default::default()
    };
    actix::System::new()
        .block_on(iaso_probe::run(cfg, opts, std::future::pending()))
        .expect("run succeeds")
}

/// Four shards, one host list of 40 and 12 restores, checks owned by shard 2.
#[test]
fn four_shards_split_hosts_and_restores_and_run_the_checks_once() {
    let sim = SIM.start();
    let n = 4;
    let owner = 2;
    // host -> shards that launched its backup; restore file -> shards that launched it.
    let mut backups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut restored: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut checks_by_shard = BTreeMap::new();
    for i in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let tail = format!("{}{}", hosts("lab", 40), restores(12));
        let cfg = one_env(dir.path(), "lab", &sim.base_url(), "", &tail);
        let report = run_shard(cfg, Shard { index: i, count: n }, owner);
        assert!(!report.interrupted);
        let docs = journal(dir.path());
        assert!(!docs.is_empty());
        let label = format!("{i}/{n}");
        for d in &docs {
            assert_eq!(
                d.labels.shard.as_deref(),
                Some(label.as_str()),
                "every document carries labels.shard: {d:?}"
            );
        }
        for d in &docs {
            let host = || d.host.as_ref().expect("launch names its host").name.clone();
            match d.event.action {
                Action::BackupLaunch => backups.entry(host()).or_default().push(i),
                Action::RestoreLaunch => {
                    let r = d
                        .iaso
                        .restore
                        .as_ref()
                        .expect("restore launch names its file");
                    restored.entry(r.file_name.clone()).or_default().push(i);
                }
                _ => {}
            }
        }
        let checks = docs
            .iter()
            .filter(|d| {
                d.event.dataset == Dataset::Checks
                    && matches!(
                        d.event.action,
                        Action::Liveness | Action::Health | Action::ResponseTime
                    )
            })
            .count();
        checks_by_shard.insert(i, checks);
    }
    assert_eq!(
        backups.len(),
        40,
        "every host launched somewhere: {backups:?}"
    );
    for (h, shards) in &backups {
        assert_eq!(shards.len(), 1, "host {h} launched by shards {shards:?}");
    }
    assert_eq!(
        restored.len(),
        12,
        "every restore launched somewhere: {restored:?}"
    );
    for (f, shards) in &restored {
        assert_eq!(shards.len(), 1, "restore {f} launched by shards {shards:?}");
    }
    // Every shard took some hosts (40 hosts over 4 shards by a stable hash).
    for i in 0..n {
        assert!(
            backups.values().any(|s| s[0] == i),
            "shard {i} took no host"
        );
    }
    for (i, c) in &checks_by_shard {
        if *i == owner {
            assert!(
                *c >= 3,
                "the checks owner ran the checks: {checks_by_shard:?}"
            );
        } else {
            assert_eq!(*c, 0, "shard {i} ran checks: {checks_by_shard:?}");
        }
    }
}

#[test]
fn shard_from_a_statefulset_pod_name() {
    assert_eq!(
        Shard::from_hostname("iaso-probe-3", 4).unwrap(),
        Shard { index: 3, count: 4 }
    );
    assert_eq!(
        Shard::from_hostname("probe-0", 1).unwrap(),
        Shard { index: 0, count: 1 }
    );
    let e = Shard::from_hostname("iaso-probe-4", 4).unwrap_err();
    assert!(e.contains("ordinal 4") && e.contains("< 4"), "{e}");
    let e = Shard::from_hostname("laptop", 4).unwrap_err();
    assert!(e.contains("laptop") && e.contains("-<ordinal>"), "{e}");
}

/// The binary: `IASO_PROBE_SHARD` and `--shard-from-hostname` reach the selection, and are
/// not mistaken for configuration keys.
#[test]
fn shard_from_the_environment_and_from_the_pod_name() {
    let d = tempfile::tempdir().unwrap();
    let cv = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_iaso-probe"));
        c.current_dir(d.path()).arg("check-config").args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("IASO_PROBE_") {
                c.env_remove(k);
            }
        }
        for (k, v) in envs {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.code().unwrap(), text)
    };
    let (code, out) = cv(&[("IASO_PROBE_SHARD", "1/4")], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("shard 1/4") && out.contains("no checks (shard 0 runs them)"),
        "{out}"
    );

    let (code, out) = cv(
        &[
            ("HOSTNAME", "iaso-probe-2"),
            ("IASO_PROBE_CHECKS_OWNER", "2"),
        ],
        &["--shard-from-hostname", "3"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("shard 2/3: its hosts and restores; runs the checks"),
        "{out}"
    );

    let (code, out) = cv(
        &[("HOSTNAME", "iaso-probe-5")],
        &["--shard-from-hostname", "3"],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("ordinal 5"), "{out}");

    let (code, out) = cv(&[("IASO_PROBE_SHARD", "1/4")], &["--checks-owner", "4"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--checks-owner 4: no such shard"), "{out}");
}
