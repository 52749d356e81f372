//! Loading: built-in defaults < TOML files (`--config`, repeatable; the embedded
//! `config/default.toml` when none is given) < `IASO_PROBE_<SECTION>__<KEY>` variables.

use super::{valid, Config, Problem};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use std::path::{Path, PathBuf};

/// Prefix of the environment variables that override the configuration.
pub const ENV_PREFIX: &str = "IASO_PROBE_";

/// `IASO_PROBE_*` variables that are not configuration: the test suite's
/// (`IASO_PROBE_TEST_ES_URL`, `IASO_PROBE_REQUIRE_REAL_ES`, set by CI). Without this, a
/// process started with them would refuse its configuration as having unknown keys.
pub(crate) const NOT_CONFIGURATION: &[&str] = &[
    "TEST_ES_URL",
    "REQUIRE_REAL_ES",
    // Command-line options read from the environment (clap), not configuration keys.
    "SHARD",
    "SHARD_FROM_HOSTNAME",
    "CHECKS_OWNER",
];

/// The embedded default: three simulated environments, results to `./data/journal`.
pub(crate) const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

/// Name under which the embedded default appears in messages.
pub(crate) const EMBEDDED_NAME: &str = "embedded config/default.toml";

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// `config/default.toml` as built into the binary.
    Embedded,
    /// These files, later ones overriding earlier ones.
    Files(Vec<PathBuf>),
}

/// A loaded and validated configuration.
pub struct LoadedConfig {
    pub config: Config,
}

/// figment names an in-memory TOML "TOML source string": ours is the embedded default.
fn display_name(name: &str) -> String {
    if name.contains("source string") {
        EMBEDDED_NAME.into()
    } else {
        name.into()
    }
}

/// Every way loading can fail; messages name the file and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{0}")]
    Parse(String),
    #[error("{} configuration problem(s):\n{}", .0.len(), render(.0))]
    Invalid(Vec<Problem>),
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn source_of(figment: &Figment, key: &str) -> Option<String> {
    let md = figment.find_metadata(key)?;
    Some(match &md.source {
        Some(figment::Source::File(p)) => p.display().to_string(),
        Some(other) => other.to_string(),
        None => display_name(&md.name),
    })
}

/// Builds the figment for `source` (without reading the process environment when `env` is false).
fn figment(source: &ConfigSource, env: bool) -> Result<Figment, ConfigError> {
    let mut f = Figment::new();
    match source {
        ConfigSource::Embedded => {
            f = f.merge(Toml::string(EMBEDDED_DEFAULT));
        }
        ConfigSource::Files(paths) => {
            for p in paths {
                check_readable(p)?;
                // file_exact: no search in parent folders (figment's `file` would, and would
                // silently ignore a missing file).
                f = f.merge(Toml::file_exact(p));
            }
        }
    }
    if env {
        f = f.merge(
            Env::prefixed(ENV_PREFIX)
                .ignore(NOT_CONFIGURATION)
                .split("__"),
        );
    }
    Ok(f)
}

fn check_readable(p: &Path) -> Result<(), ConfigError> {
    std::fs::metadata(p)
        .map_err(|e| ConfigError::File {
            path: p.display().to_string(),
            reason: e.to_string(),
        })
        .and_then(|m| {
            if m.is_file() {
                Ok(())
            } else {
                Err(ConfigError::File {
                    path: p.display().to_string(),
                    reason: "not a regular file".into(),
                })
            }
        })
}

/// Loads, then validates once. Every problem found is reported, each naming file and key.
pub fn load(source: &ConfigSource) -> Result<LoadedConfig, ConfigError> {
    load_with(source, true)
}

/// As [`load`], with or without the `IASO_PROBE_*` environment (tests pass `false`).
pub fn load_with(source: &ConfigSource, env: bool) -> Result<LoadedConfig, ConfigError> {
    let figment = figment(source, env)?;
    let config: Config = figment.extract().map_err(|e| {
        ConfigError::Parse(
            e.into_iter()
                .map(|e| format!("configuration error: {}", describe(&e)))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let mut problems = valid::problems(&config);
    for p in &mut problems {
        if p.source.is_none() {
            p.source = source_of(&figment, &p.key).or_else(|| match source {
                ConfigSource::Embedded => Some(EMBEDDED_NAME.into()),
                ConfigSource::Files(files) if files.len() == 1 => {
                    Some(files[0].display().to_string())
                }
                _ => None,
            });
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    Ok(LoadedConfig { config })
}

/// figment's message with the key and the source, and the environment variable's name when
/// the value came from the environment (operators set variables, not dotted keys).
fn describe(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let mut s = e.kind.to_string();
    if !key.is_empty() {
        s = format!("key `{key}`: {s}");
    }
    match e.metadata.as_ref() {
        Some(md) if md.name.contains(ENV_PREFIX) => {
            let var = format!("{ENV_PREFIX}{}", e.path.join("__").to_ascii_uppercase());
            format!("{s} (from environment variable {var})")
        }
        Some(md) => match &md.source {
            Some(figment::Source::File(p)) => format!("{}: {s}", p.display()),
            _ => format!("{}: {s}", display_name(&md.name)),
        },
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = load_with(&ConfigSource::Embedded, false).unwrap().config;
        assert_eq!(c.environments.len(), 3);
    }

    #[test]
    fn example_file_parses_and_only_misses_its_secrets_and_files() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
        match load_with(&ConfigSource::Files(vec![p]), false) {
            Ok(_) => {}
            Err(ConfigError::Invalid(problems)) => {
                for pr in problems {
                    assert!(
                        pr.message.contains("is not set") || pr.message.contains("No such file"),
                        "unexpected problem in config/example.toml: {pr}"
                    );
                }
            }
            Err(e) => panic!("config/example.toml does not parse: {e}"),
        }
    }

    #[test]
    fn alt_portal_example_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/alt-portal.toml");
        load_with(&ConfigSource::Files(vec![p]), false).unwrap();
    }

    #[test]
    fn rejects_missing_file_naming_it() {
        let e = load_with(
            &ConfigSource::Files(vec!["/nonexistent/x.toml".into()]),
            false,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("/nonexistent/x.toml"), "{e}");
    }

    #[test]
    fn rejects_unknown_key_naming_file_and_key() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "bad.toml",
            "[environments.lab]\nbase_url = \"http://x\"\nrate_limt_per_sec = 3\n",
        );
        let e = load_with(&ConfigSource::Files(vec![p.clone()]), false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("rate_limt_per_sec"), "{e}");
        assert!(e.contains("bad.toml"), "{e}");
    }

    #[test]
    fn later_files_override_earlier_ones() {
        let d = tempfile::tempdir().unwrap();
        let a = write(
            d.path(),
            "a.toml",
            "[environments.lab]\nbase_url = \"http://a\"\nrate_limit_per_sec = 3\n[environments.lab.credentials]\nusername = \"u\"\npassword = \"p\"\n",
        );
        let b = write(
            d.path(),
            "b.toml",
            "[environments.lab]\nrate_limit_per_sec = 9\n",
        );
        let c = load_with(&ConfigSource::Files(vec![a, b]), false)
            .unwrap()
            .config;
        assert_eq!(c.environments["lab"].rate_limit_per_sec, 9);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn environment_variables_override_files() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "a.toml",
                "[environments.lab]\nbase_url = \"http://a\"\n[environments.lab.credentials]\nusername = \"u\"\npassword = \"p\"\n",
            )?;
            jail.set_env("IASO_PROBE_ENVIRONMENTS__LAB__RATE_LIMIT_PER_SEC", "7");
            jail.set_env(
                "IASO_PROBE_ENVIRONMENTS__LAB__CREDENTIALS__PASSWORD",
                "12345",
            );
            let c = load(&ConfigSource::Files(vec!["a.toml".into()]))
                .map_err(|e| e.to_string())?
                .config;
            assert_eq!(c.environments["lab"].rate_limit_per_sec, 7);
            let pw = c.environments["lab"].credentials.password.clone().unwrap();
            assert_eq!(pw.expose(), "12345");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn the_test_suites_variables_are_not_configuration() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "a.toml",
                "[environments.lab]\nbase_url = \"http://a\"\n[environments.lab.credentials]\nusername = \"u\"\npassword = \"p\"\n",
            )?;
            jail.set_env("IASO_PROBE_REQUIRE_REAL_ES", "1");
            jail.set_env("IASO_PROBE_TEST_ES_URL", "http://127.0.0.1:9250");
            load(&ConfigSource::Files(vec!["a.toml".into()])).map_err(|e| e.to_string())?;
            Ok(())
        });
    }
}
