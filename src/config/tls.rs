//! Outbound TLS settings: the `[….tls]` table shared by the portal, Elasticsearch and Kibana
//! clients, and its files read and checked once (PEM, certificates present, dates, key
//! matching the certificate). The rustls client configuration made from them is
//! `net::tls`'s.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// TLS towards one server (`[environments.<name>.tls]`, `[elasticsearch.tls]`, `[kibana.tls]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Trust the operating system's certificate store (`SSL_CERT_FILE` and `SSL_CERT_DIR` are
    /// honoured) and the Mozilla roots built into the binary. False: only `ca_files`.
    pub system_roots: bool,
    /// PEM bundles of further CAs to trust (a company or private CA), one or more certificates each.
    pub ca_files: Vec<PathBuf>,
    /// PEM file of the client certificate (then its intermediates) for mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: Option<PathBuf>,
    /// Lowest TLS version accepted: `"1.2"` or `"1.3"`.
    pub min_version: TlsVersion,
    /// Accept any server certificate (no chain, name or date check). For tests only: a WARN
    /// is logged at every start while it is on.
    pub insecure_skip_verify: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            system_roots: default_system_roots(),
            ca_files: Vec::new(),
            client_cert_file: None,
            client_key_file: None,
            min_version: TlsVersion::default(),
            insecure_skip_verify: false,
        }
    }
}

fn default_system_roots() -> bool {
    true
}

/// A TLS protocol version (rustls speaks 1.2 and 1.3 only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

impl TlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

/// A TLS file that cannot be used: names the key, the file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {}: {problem}", file.display())]
pub struct TlsFileError {
    /// Dotted key (`environments.lab.tls.ca_files[0]`).
    pub key: String,
    pub file: PathBuf,
    pub problem: String,
}

/// The files of a [`TlsConfig`], read and checked.
#[derive(Debug, Clone)]
pub struct LoadedTls {
    /// The certificates of `ca_files` (not the system store).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Client certificate chain and key, for mutual TLS.
    pub identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    pub system_roots: bool,
    pub min_version: TlsVersion,
    pub insecure_skip_verify: bool,
}

/// The crypto provider of every client (ring: the one reqwest already builds with).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// Reads and checks every file; `key` is the table's dotted key (`elasticsearch.tls`).
    pub fn load(&self, key: &str) -> Result<LoadedTls, TlsFileError> {
        let now = now_secs();
        let mut extra_roots = Vec::new();
        for (i, f) in self.ca_files.iter().enumerate() {
            let k = format!("{key}.ca_files[{i}]");
            let certs = read_certs(&k, f)?;
            for c in &certs {
                check_dates(&k, f, c, now)?;
            }
            extra_roots.extend(certs);
        }
        let identity = match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(TlsFileError {
                    key: format!("{key}.client_key_file"),
                    file: PathBuf::new(),
                    problem: "missing: client_cert_file is set, its key is not".into(),
                })
            }
            (None, Some(_)) => {
                return Err(TlsFileError {
                    key: format!("{key}.client_cert_file"),
                    file: PathBuf::new(),
                    problem: "missing: client_key_file is set, its certificate is not".into(),
                })
            }
            (Some(cf), Some(kf)) => {
                let ck = format!("{key}.client_cert_file");
                let chain = read_certs(&ck, cf)?;
                check_dates(&ck, cf, &chain[0], now)?;
                let kk = format!("{key}.client_key_file");
                let pem = read_file(&kk, kf)?;
                let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsFileError {
                    key: kk.clone(),
                    file: kf.clone(),
                    problem: match e {
                        rustls::pki_types::pem::Error::NoItemsFound => {
                            "no private key in the file (expected a PEM PRIVATE KEY block)".into()
                        }
                        e => format!("not a valid PEM private key: {}", pem_error(&e)),
                    },
                })?;
                // The same check rustls makes when connecting, made now so check-config
                // names the files instead of a handshake failing later.
                rustls::sign::CertifiedKey::from_der(
                    chain.clone(),
                    private.clone_key(),
                    &provider(),
                )
                .map_err(|e| TlsFileError {
                    key: kk.clone(),
                    file: kf.clone(),
                    problem: match e {
                        rustls::Error::InconsistentKeys(_) => {
                            format!("the key does not match the certificate of {}", cf.display())
                        }
                        e => format!("unusable private key: {e}"),
                    },
                })?;
                Some((chain, Arc::new(private)))
            }
        };
        if !self.system_roots && extra_roots.is_empty() && !self.insecure_skip_verify {
            return Err(TlsFileError {
                key: format!("{key}.ca_files"),
                file: PathBuf::new(),
                problem:
                    "system_roots = false needs at least one CA file, else no server is trusted"
                        .into(),
            });
        }
        Ok(LoadedTls {
            extra_roots,
            identity,
            system_roots: self.system_roots,
            min_version: self.min_version,
            insecure_skip_verify: self.insecure_skip_verify,
        })
    }

    /// One line describing the trust settings, for the start log (no secrets in it).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.insecure_skip_verify {
            parts.push("server certificates NOT verified".to_string());
        } else {
            if self.system_roots {
                parts.push("system roots".into());
            }
            for f in &self.ca_files {
                parts.push(format!("ca {}", f.display()));
            }
        }
        if let Some(c) = &self.client_cert_file {
            parts.push(format!("client certificate {}", c.display()));
        }
        parts.push(format!("min TLS {}", self.min_version.as_str()));
        parts.join(", ")
    }
}

/// Reads and checks one CA file on its own (for keys outside a `tls` table, such as
/// `elasticsearch.ca_cert_file`).
pub(crate) fn check_ca_file(key: &str, f: &Path) -> Result<(), TlsFileError> {
    let now = now_secs();
    for c in read_certs(key, f)? {
        check_dates(key, f, &c, now)?;
    }
    Ok(())
}

fn read_file(key: &str, f: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(f).map_err(|e| TlsFileError {
        key: key.into(),
        file: f.into(),
        problem: format!("cannot read: {e}"),
    })
}

fn read_certs(key: &str, f: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let pem = read_file(key, f)?;
    let err = |problem: String| TlsFileError {
        key: key.into(),
        file: f.into(),
        problem,
    };
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(err(
            "not PEM (no -----BEGIN line; a DER file converts with `openssl x509 -inform der`)"
                .into(),
        ));
    }
    let mut certs = Vec::new();
    for c in CertificateDer::pem_slice_iter(&pem) {
        certs.push(c.map_err(|e| err(format!("not valid PEM: {}", pem_error(&e))))?);
    }
    if certs.is_empty() {
        return Err(err(
            "no certificate in the file (expected BEGIN CERTIFICATE blocks)".into(),
        ));
    }
    Ok(certs)
}

/// A PEM error as text (pki-types' own Display prints markers as byte arrays).
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { end_marker } => format!(
            "missing `-----END {}-----` line",
            String::from_utf8_lossy(end_marker).trim()
        ),
        E::IllegalSectionStart { line } => {
            format!(
                "bad section start `{}`",
                String::from_utf8_lossy(line).trim()
            )
        }
        other => other.to_string(),
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Parses the certificate and refuses it outside its validity dates.
fn check_dates(
    key: &str,
    f: &Path,
    cert: &CertificateDer<'_>,
    now: i64,
) -> Result<(), TlsFileError> {
    let err = |problem: String| TlsFileError {
        key: key.into(),
        file: f.into(),
        problem,
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| err(format!("not an X.509 certificate: {e}")))?;
    let validity = parsed.validity();
    if validity.not_after.timestamp() < now {
        return Err(err(format!(
            "certificate `{}` expired on {}",
            parsed.subject(),
            validity.not_after
        )));
    }
    if validity.not_before.timestamp() > now {
        return Err(err(format!(
            "certificate `{}` is not valid before {}",
            parsed.subject(),
            validity.not_before
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate valid between the two years, and its key, as PEM files.
    fn cert_files(d: &Path, name: &str, from: i32, to: i32) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["probe.example".to_string()]).unwrap();
        p.not_before = rcgen::date_time_ymd(from, 1, 1);
        p.not_after = rcgen::date_time_ymd(to, 1, 1);
        let cert = p.self_signed(&key).unwrap();
        let (c, k) = (
            d.join(format!("{name}.pem")),
            d.join(format!("{name}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn rejects_an_expired_client_certificate_naming_its_date() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = cert_files(d.path(), "old", 2000, 2001);
        let cfg = TlsConfig {
            client_cert_file: Some(c),
            client_key_file: Some(k),
            ..Default::default()
        };
        let e = cfg.load("environments.lab.tls").unwrap_err();
        assert_eq!(e.key, "environments.lab.tls.client_cert_file");
        assert!(
            e.problem.contains("expired on") && e.problem.contains("2001"),
            "{e}"
        );
    }

    #[test]
    fn rejects_an_expired_ca_certificate() {
        let d = tempfile::tempdir().unwrap();
        let (c, _) = cert_files(d.path(), "old-ca", 2000, 2001);
        let cfg = TlsConfig {
            ca_files: vec![c],
            ..Default::default()
        };
        let e = cfg.load("kibana.tls").unwrap_err();
        assert_eq!(e.key, "kibana.tls.ca_files[0]");
        assert!(e.problem.contains("expired"), "{e}");
    }

    #[test]
    fn rejects_a_certificate_not_valid_yet() {
        let d = tempfile::tempdir().unwrap();
        let (c, _) = cert_files(d.path(), "future", 2990, 2999);
        let e = check_ca_file("elasticsearch.ca_cert_file", &c).unwrap_err();
        assert!(e.problem.contains("not valid before"), "{e}");
    }

    #[test]
    fn rejects_a_key_that_does_not_match_the_certificate() {
        let d = tempfile::tempdir().unwrap();
        let (c, _) = cert_files(d.path(), "a", 2020, 2990);
        let (_, other_key) = cert_files(d.path(), "b", 2020, 2990);
        let cfg = TlsConfig {
            client_cert_file: Some(c),
            client_key_file: Some(other_key),
            ..Default::default()
        };
        let e = cfg.load("environments.lab.tls").unwrap_err();
        assert_eq!(e.key, "environments.lab.tls.client_key_file");
        assert!(e.problem.contains("does not match the certificate"), "{e}");
    }

    #[test]
    fn rejects_a_key_file_without_a_key() {
        let d = tempfile::tempdir().unwrap();
        let (c, _) = cert_files(d.path(), "a", 2020, 2990);
        let cfg = TlsConfig {
            client_cert_file: Some(c.clone()),
            client_key_file: Some(c),
            ..Default::default()
        };
        let e = cfg.load("environments.lab.tls").unwrap_err();
        assert!(e.problem.contains("no private key"), "{e}");
    }

    #[test]
    fn a_matching_identity_is_loaded_and_exported_as_one_pem() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = cert_files(d.path(), "a", 2020, 2990);
        let cfg = TlsConfig {
            client_cert_file: Some(c),
            client_key_file: Some(k),
            ..Default::default()
        };
        let t = cfg.load("x.tls").unwrap();
        let pem = String::from_utf8(t.identity_pem().unwrap()).unwrap();
        assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("BEGIN PRIVATE KEY"));
        assert!(reqwest::Identity::from_pem(pem.as_bytes()).is_ok());
    }

    #[test]
    fn rejects_a_ca_file_that_is_not_pem() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("ca.pem");
        std::fs::write(&f, "hello").unwrap();
        let cfg = TlsConfig {
            ca_files: vec![f],
            ..Default::default()
        };
        let e = cfg.load("elasticsearch.tls").unwrap_err();
        assert_eq!(e.key, "elasticsearch.tls.ca_files[0]");
        assert!(e.to_string().contains("not PEM"), "{e}");
        assert!(e.to_string().contains("ca.pem"), "{e}");
    }

    #[test]
    fn rejects_a_pem_file_without_a_certificate() {
        let d = tempfile::tempdir().unwrap();
        let (_, key) = cert_files(d.path(), "a", 2020, 2990);
        let cfg = TlsConfig {
            ca_files: vec![key],
            ..Default::default()
        };
        let e = cfg.load("x.tls").unwrap_err();
        assert!(e.problem.contains("no certificate in the file"), "{e}");
    }

    #[test]
    fn rejects_a_truncated_pem_certificate_naming_the_missing_line() {
        let d = tempfile::tempdir().unwrap();
        let (c, _) = cert_files(d.path(), "a", 2020, 2990);
        let text = std::fs::read_to_string(&c).unwrap();
        std::fs::write(&c, &text[..text.len() / 2]).unwrap();
        let e = check_ca_file("x.ca", &c).unwrap_err();
        assert!(
            e.problem
                .contains("missing `-----END CERTIFICATE-----` line"),
            "{e}"
        );
    }

    #[test]
    fn rejects_a_missing_ca_file_naming_it() {
        let cfg = TlsConfig {
            ca_files: vec!["/nonexistent/iaso-ca.pem".into()],
            ..Default::default()
        };
        let e = cfg.load("environments.lab.tls").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/iaso-ca.pem"), "{e}");
        assert!(e.to_string().contains("cannot read"), "{e}");
    }

    #[test]
    fn rejects_a_client_certificate_without_its_key() {
        let cfg = TlsConfig {
            client_cert_file: Some("c.pem".into()),
            ..Default::default()
        };
        let e = cfg.load("kibana.tls").unwrap_err();
        assert_eq!(e.key, "kibana.tls.client_key_file");
    }

    #[test]
    fn rejects_no_trust_at_all() {
        let cfg = TlsConfig {
            system_roots: false,
            ..Default::default()
        };
        let e = cfg.load("kibana.tls").unwrap_err();
        assert_eq!(e.key, "kibana.tls.ca_files");
    }

    #[test]
    fn min_version_reads_as_a_dotted_string() {
        let t: TlsConfig = toml::from_str("min_version = \"1.3\"").unwrap();
        assert_eq!(t.min_version, TlsVersion::Tls13);
        assert!(toml::from_str::<TlsConfig>("min_version = \"1.1\"").is_err());
    }
}
