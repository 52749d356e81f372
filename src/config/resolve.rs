//! The one place the configuration meets the outside world: secrets (inline, environment
//! variable or file), hosts files, and the TLS files and proxy variables the clients will
//! use are read here, once, before [`validate`](super::validate()) checks the tree without
//! touching anything. Every credential of the portal, Elasticsearch and Kibana is resolved
//! by [`secret`].

use super::{Config, Credentials, ElasticsearchConfig, HostSpec, Problem, Secret};
use crate::model::BackupLevel;
use std::collections::BTreeMap;
use std::path::Path;

/// What the configuration points at outside itself, as read once by [`resolve`].
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// Per environment: its portal password, or why it cannot be had.
    pub passwords: BTreeMap<String, Result<Secret, String>>,
    /// Per environment with a `hosts_file`: the file's hosts, or why they cannot be read.
    pub hosts_files: BTreeMap<String, Result<Vec<HostSpec>, String>>,
    /// `[elasticsearch]` secret sources and files that are missing.
    pub elasticsearch: Vec<Problem>,
    /// TLS files and proxy settings of the portal, Kibana and Elasticsearch clients.
    pub outbound: Vec<Problem>,
}

impl Resolved {
    /// The hosts of environment `name`'s hosts file, when it has one that reads.
    pub(crate) fn file_hosts(&self, name: &str) -> Option<&[HostSpec]> {
        self.hosts_files
            .get(name)
            .and_then(|r| r.as_ref().ok())
            .map(Vec::as_slice)
    }
}

/// Reads everything `c` refers to outside itself.
pub fn resolve(c: &Config) -> Resolved {
    let mut r = Resolved::default();
    for (name, e) in &c.environments {
        r.passwords
            .insert(name.clone(), portal_password(&e.credentials));
        if let Some(f) = &e.hosts_file {
            r.hosts_files
                .insert(name.clone(), read_hosts_file(f, e.default_backup_level));
        }
    }
    r.elasticsearch = elasticsearch_sources(&c.elasticsearch);
    r.outbound = super::outbound::problems(c);
    if c.elasticsearch.is_configured() {
        r.outbound
            .extend(super::outbound::elasticsearch_problems(&c.elasticsearch));
    }
    r
}

/// The secret of the first configured source, in the order inline, environment variable,
/// file; `Ok(None)` when none is configured. `key` prefixes the messages
/// (`elasticsearch` → `elasticsearch.password_env: …`); a message never holds the secret.
pub fn secret(
    key: &str,
    inline: Option<&Secret>,
    env: Option<(&str, &str)>,
    file: Option<(&str, &Path)>,
) -> Result<Option<Secret>, String> {
    let dot = if key.is_empty() { "" } else { "." };
    if let Some(s) = inline {
        return Ok(Some(s.clone()));
    }
    if let Some((field, var)) = env {
        return std::env::var(var)
            .map(|v| Some(Secret::new(v)))
            .map_err(|_| format!("{key}{dot}{field}: environment variable {var} is not set"));
    }
    if let Some((field, f)) = file {
        return read_secret_file(f)
            .map(Some)
            .map_err(|e| format!("{key}{dot}{field}: {e}"));
    }
    Ok(None)
}

/// A portal account's password, from its single source.
pub fn portal_password(c: &Credentials) -> Result<Secret, String> {
    let sources = [
        c.password.is_some(),
        c.password_env.is_some(),
        c.password_file.is_some(),
    ];
    match sources.iter().filter(|b| **b).count() {
        0 => Err("missing password source: set password, password_env or password_file".into()),
        1 => secret(
            "",
            c.password.as_ref(),
            c.password_env.as_deref().map(|v| ("password_env", v)),
            c.password_file.as_deref().map(|f| ("password_file", f)),
        )
        .map(|s| s.expect("one source is set")),
        _ => Err("set only one of password, password_env, password_file".into()),
    }
}

/// How the prober logs in to Elasticsearch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsCredentials {
    /// An encoded API key (`base64(id:key)`).
    ApiKey(Secret),
    /// Basic authentication.
    Basic { username: String, password: Secret },
}

/// The Elasticsearch login: an API key (environment, then file) wins over a user and
/// password; `None` without either.
pub fn es_credentials(es: &ElasticsearchConfig) -> Result<Option<EsCredentials>, String> {
    let key = secret(
        "elasticsearch",
        None,
        es.api_key_env.as_deref().map(|v| ("api_key_env", v)),
        es.api_key_file.as_deref().map(|f| ("api_key_file", f)),
    )?;
    if let Some(k) = key {
        return Ok(Some(EsCredentials::ApiKey(k)));
    }
    Ok(match (&es.username, es_password(es)?) {
        (Some(u), Some(p)) => Some(EsCredentials::Basic {
            username: u.clone(),
            password: p,
        }),
        _ => None,
    })
}

/// The `[elasticsearch]` password, from its first configured source.
pub fn es_password(es: &ElasticsearchConfig) -> Result<Option<Secret>, String> {
    secret(
        "elasticsearch",
        es.password.as_ref(),
        es.password_env.as_deref().map(|v| ("password_env", v)),
        es.password_file.as_deref().map(|f| ("password_file", f)),
    )
}

/// The `[elasticsearch]` secret sources and files that are missing (what `check-config`
/// reports; reading and parsing them is left to the client build).
fn elasticsearch_sources(es: &ElasticsearchConfig) -> Vec<Problem> {
    let mut p = Vec::new();
    for (key, var) in [
        ("elasticsearch.password_env", &es.password_env),
        ("elasticsearch.api_key_env", &es.api_key_env),
    ] {
        if let Some(var) = var {
            if std::env::var_os(var).is_none() {
                p.push(Problem::new(
                    key,
                    format!("environment variable {var} is not set"),
                ));
            }
        }
    }
    for (key, file) in [
        ("elasticsearch.password_file", &es.password_file),
        ("elasticsearch.api_key_file", &es.api_key_file),
        ("elasticsearch.ca_cert_file", &es.ca_cert_file),
    ] {
        if let Some(f) = file {
            if let Err(e) = std::fs::metadata(f) {
                p.push(Problem::new(key, format!("{}: {e}", f.display())));
            }
        }
    }
    p
}

/// Reads a secret file, trimming one trailing newline.
pub fn read_secret_file(f: &Path) -> Result<Secret, String> {
    let s = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
    let s = s.strip_suffix('\n').unwrap_or(&s);
    let s = s.strip_suffix('\r').unwrap_or(s);
    if s.is_empty() {
        return Err(format!("{} is empty", f.display()));
    }
    Ok(Secret::new(s))
}

/// Reads a hosts file: one `hostname [LEVEL] [name=value ...]` per line, `#` comments,
/// blank lines ignored. Errors name the file and line.
pub fn read_hosts_file(path: &Path, default: BackupLevel) -> Result<Vec<HostSpec>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    super::validate::parse_hosts(&text, default)
        .map_err(|(line, m)| format!("{}:{line}: {m}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_comes_from_the_first_configured_source_and_errors_name_the_key() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let empty = d.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let inline = Secret::new("inline");
        let unset = ("password_env", "IASO_TEST_SURELY_UNSET_SECRET");
        type Case<'a> = (
            Option<&'a Secret>,
            Option<(&'a str, &'a str)>,
            Option<(&'a str, &'a Path)>,
            Result<Option<&'a str>, &'a str>,
        );
        let cases: [Case; 6] = [
            (None, None, None, Ok(None)),
            (Some(&inline), Some(unset), None, Ok(Some("inline"))),
            (None, None, Some(("password_file", &file)), Ok(Some("from-file"))),
            (None, Some(unset), None, Err("es.password_env: environment variable IASO_TEST_SURELY_UNSET_SECRET is not set")),
            (None, None, Some(("password_file", &empty)), Err("is empty")),
            (None, None, Some(("password_file", &d.path().join("none"))), Err("es.password_file: ")),
        ];
        for (inline, env, file, want) in cases {
            let got = secret("es", inline, env, file);
            match (got, want) {
                (Ok(s), Ok(w)) => assert_eq!(s.as_ref().map(Secret::expose), w),
                (Err(m), Err(w)) => assert!(m.contains(w), "{m} does not contain {w}"),
                (got, want) => panic!("{got:?} but wanted {want:?}"),
            }
        }
    }

    #[test]
    fn a_portal_account_needs_exactly_one_password_source() {
        let mut c = Credentials::default();
        assert!(portal_password(&c)
            .unwrap_err()
            .contains("missing password source"));
        c.password = Some(Secret::new("p"));
        assert_eq!(portal_password(&c).unwrap().expose(), "p");
        c.password_env = Some("X".into());
        assert!(portal_password(&c).unwrap_err().contains("only one"));
    }

    #[test]
    fn an_elasticsearch_api_key_wins_over_a_password() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("key");
        std::fs::write(&key, "a2V5").unwrap();
        let mut es = ElasticsearchConfig {
            username: Some("elastic".into()),
            password: Some(Secret::new("pw")),
            ..Default::default()
        };
        assert_eq!(
            es_credentials(&es).unwrap(),
            Some(EsCredentials::Basic {
                username: "elastic".into(),
                password: Secret::new("pw")
            })
        );
        es.api_key_file = Some(key);
        assert_eq!(
            es_credentials(&es).unwrap(),
            Some(EsCredentials::ApiKey(Secret::new("a2V5")))
        );
        es.username = None;
        es.api_key_file = None;
        assert_eq!(es_credentials(&es).unwrap(), None);
    }
}
