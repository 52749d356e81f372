//! The binary as a user runs it: exit codes, configuration errors naming file and key, the
//! alt-shaped portal probed by configuration alone, shipping with ELASTICSEARCH_URL, and no
//! secret in any output.

mod support;

use std::path::Path;
use std::process::Output;
use support::es_emulator::{EmulatorOptions, EsEmulator};

use support::bin;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const GOOD_ENV: &str = r#"
[environments.lab]
base_url = "https://iaso-lab.example.com"
[environments.lab.credentials]
username = "probe"
password = "p"
"#;

/// `check-config` with `toml` as the only file: exit code and output.
fn check(toml: &str, extra_args: &[&str]) -> (i32, String) {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("probe.toml"), toml).unwrap();
    let o = bin(d.path())
        .args(["--config", "probe.toml", "check-config"])
        .args(extra_args)
        .output()
        .unwrap();
    (o.status.code().unwrap(), text(&o))
}

#[test]
fn check_config_accepts_the_embedded_default() {
    let d = tempfile::tempdir().unwrap();
    let o = bin(d.path()).arg("check-config").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("environment prod"));
}

#[test]
fn check_config_rejects_each_problem_with_file_key_and_exit_code_2() {
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (
            format!("{GOOD_ENV}rate_limt_per_sec = 3\n"),
            vec![],
            "rate_limt_per_sec",
        ),
        (
            GOOD_ENV.replace("base_url = \"https://iaso-lab.example.com\"\n", ""),
            vec![],
            "environments.lab.base_url",
        ),
        (
            GOOD_ENV.replace("https://iaso-lab.example.com", "iaso-lab"),
            vec![],
            "environments.lab.base_url",
        ),
        (
            GOOD_ENV.replace(
                "[environments.lab.credentials]",
                "rate_limit_per_sec = 0\n[environments.lab.credentials]",
            ),
            vec![],
            "environments.lab.rate_limit_per_sec",
        ),
        (
            GOOD_ENV.replace("password = \"p\"\n", ""),
            vec![],
            "environments.lab.credentials",
        ),
        (
            GOOD_ENV.replace("password = \"p\"", "password_env = \"IASO_TEST_UNSET_VAR\""),
            vec![],
            "IASO_TEST_UNSET_VAR",
        ),
        (
            GOOD_ENV.replace(
                "[environments.lab.credentials]",
                "hosts_file = \"hosts.txt\"\n[environments.lab.credentials]",
            ),
            vec![],
            "hosts.txt:2",
        ),
        (
            GOOD_ENV.to_string(),
            vec!["--env", "staging"],
            "--env staging",
        ),
    ];
    for (toml, args, needle) in cases {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("probe.toml"), &toml).unwrap();
        std::fs::write(d.path().join("hosts.txt"), "web-01 FULL\nweb-02 HOURLY\n").unwrap();
        let o = bin(d.path())
            .args(["--config", "probe.toml", "check-config"])
            .args(&args)
            .output()
            .unwrap();
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{needle}: {out}");
        assert!(out.contains(needle), "message should name {needle}: {out}");
        if !needle.starts_with("--env") {
            assert!(
                out.contains("probe.toml"),
                "message should name the file: {out}"
            );
        }
    }
}

#[test]
fn a_missing_config_file_is_exit_code_2() {
    let (code, out) = check(GOOD_ENV, &[]);
    assert_eq!(code, 0, "{out}");
    let d = tempfile::tempdir().unwrap();
    let o = bin(d.path())
        .args(["--config", "nope.toml", "check-config"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("nope.toml"));
}

#[test]
fn config_errors_never_print_a_secret() {
    let toml = GOOD_ENV.replace("password = \"p\"", "password = \"hunter2-secret\"\nfoo = 1");
    let (code, out) = check(&toml, &[]);
    assert_eq!(code, 2);
    assert!(out.contains("foo"), "{out}");
    assert!(!out.contains("hunter2-secret"), "{out}");
}

#[test]
fn the_alt_portal_is_probed_by_configuration_alone() {
    let d = tempfile::tempdir().unwrap();
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/alt-portal.toml");
    let o = bin(d.path())
        .args(["--config", cfg.to_str().unwrap(), "run", "--once"])
        .output()
        .unwrap();
    let out = text(&o);
    // Jobs may fail by the simulator's seeded fate; every check and launch must pass.
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{out}");
    let row = out.lines().find(|l| l.starts_with("alt ")).expect(&out);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[1..7],
        &["1/1", "6/6", "1/1", "1/1", "2/2", "1/1"],
        "{out}"
    );
    let lines = iaso_probe::sink::journal::read_all(&d.path().join("data/journal")).unwrap();
    let ends = lines.iter().filter(|l| l.contains("\"job.end\"")).count();
    assert_eq!(ends, 3, "two backups and one restore tracked to their end");
    assert!(
        lines.iter().any(|l| l.contains("\"id\":\"1\"")),
        "numeric job ids become text"
    );
}

#[test]
fn run_once_ships_to_elasticsearch_url_without_leaking_its_password() {
    let emu = EsEmulator::start_with(EmulatorOptions {
        basic_auth: Some(("elastic".into(), "s3cret-pw".into())),
    });
    let url = emu.url().replace("http://", "http://elastic:s3cret-pw@");
    let d = tempfile::tempdir().unwrap();
    let o = bin(d.path())
        .env("ELASTICSEARCH_URL", &url)
        .args(["run", "--once", "--env", "lab"])
        .output()
        .unwrap();
    let out = text(&o);
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{out}");
    let lines = iaso_probe::sink::journal::read_all(&d.path().join("data/journal")).unwrap();
    assert!(!lines.is_empty());
    assert_eq!(emu.count("*-iaso.*"), lines.len(), "{out}");
    assert!(out.contains("0 still unshipped"), "{out}");
    assert!(!out.contains("s3cret-pw"), "password in the output: {out}");
    let log_dir = d.path().join("data/log");
    for f in std::fs::read_dir(&log_dir).unwrap() {
        let log = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!log.contains("s3cret-pw"), "password in the log file");
    }
    assert!(lines
        .iter()
        .all(|l| !l.contains("s3cret-pw") && !l.contains("lab-secret")));
}

#[test]
fn ship_sends_a_journal_written_without_elasticsearch() {
    let d = tempfile::tempdir().unwrap();
    let o = bin(d.path())
        .args(["run", "--once", "--env", "prod"])
        .output()
        .unwrap();
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{}", text(&o));
    let lines = iaso_probe::sink::journal::read_all(&d.path().join("data/journal")).unwrap();
    let emu = EsEmulator::start();
    let o = bin(d.path())
        .env("ELASTICSEARCH_URL", emu.url())
        .arg("ship")
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(emu.count("*-iaso.*"), lines.len());
    assert!(
        out.contains(&format!("shipped: {} stored", lines.len())),
        "{out}"
    );
    // Shipping again sends nothing new: the checkpoint moved.
    let o = bin(d.path())
        .env("ELASTICSEARCH_URL", emu.url())
        .arg("ship")
        .output()
        .unwrap();
    assert!(text(&o).contains("shipped: 0 stored"), "{}", text(&o));
    assert_eq!(emu.count("*-iaso.*"), lines.len());
}

#[test]
fn setup_dry_run_prints_the_exact_requests() {
    let d = tempfile::tempdir().unwrap();
    let toml = format!("{GOOD_ENV}\n[kibana]\nurl = \"http://kibana.example:5601\"\n");
    std::fs::write(d.path().join("probe.toml"), toml).unwrap();
    let o = bin(d.path())
        .args(["--config", "probe.toml", "setup", "--dry-run"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let has = |prefix: &str| out.lines().any(|l| l.starts_with(prefix));
    assert!(has("PUT /_ilm/policy/iaso-probe {"), "{out}");
    assert!(has("PUT /_index_template/iaso-checks {"), "{out}");
    assert!(out.contains("_import?overwrite=true"), "{out}");
    assert!(out.contains("kbn-xsrf"), "{out}");
}
