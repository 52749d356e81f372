//! The Elasticsearch client, built once from `[elasticsearch]` (and `ELASTICSEARCH_URL`, as
//! in Elastic's own tools). Credentials come from env/file sources and never reach a log.

use crate::config::{check_url, read_secret_file, ElasticsearchConfig};
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::transport::{
    CloudConnectionPool, MultiNodeConnectionPool, SingleNodeConnectionPool, TransportBuilder,
};
use elasticsearch::Elasticsearch;
use std::time::Duration;
use url::Url;

/// Where the client points, for one log line (no credentials).
#[derive(Debug, Clone)]
pub struct EsTarget {
    pub description: String,
}

/// The node URLs: `urls`, else `ELASTICSEARCH_URL` (comma-separated).
pub fn node_urls(cfg: &ElasticsearchConfig) -> Vec<String> {
    if !cfg.urls.is_empty() {
        return cfg.urls.clone();
    }
    std::env::var("ELASTICSEARCH_URL")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// True when some output is configured.
pub fn is_configured(cfg: &ElasticsearchConfig) -> bool {
    cfg.cloud_id.is_some() || !node_urls(cfg).is_empty()
}

/// Builds the client; `Ok(None)` when Elasticsearch is not configured (journal only).
pub fn build(cfg: &ElasticsearchConfig) -> Result<Option<(Elasticsearch, EsTarget)>, String> {
    let mut creds = credentials(cfg)?;
    let builder = if let Some(cloud) = &cfg.cloud_id {
        let pool =
            CloudConnectionPool::new(cloud).map_err(|e| format!("elasticsearch.cloud_id: {e}"))?;
        TransportBuilder::new(pool)
    } else {
        let raw = node_urls(cfg);
        if raw.is_empty() {
            return Ok(None);
        }
        let mut urls = Vec::new();
        for u in &raw {
            // ELASTICSEARCH_URL may carry user:password@ (Elastic's convention): take them
            // as basic credentials and keep them out of the URL (and of every log line).
            let mut parsed = Url::parse(u).map_err(|e| format!("elasticsearch URL: {e}"))?;
            if !parsed.username().is_empty() {
                if creds.is_none() {
                    let user = urlencoding_decode(parsed.username());
                    let pass = urlencoding_decode(parsed.password().unwrap_or(""));
                    creds = Some(Credentials::Basic(user, pass));
                }
                let _ = parsed.set_username("");
                let _ = parsed.set_password(None);
            }
            check_url(parsed.as_str()).map_err(|m| format!("elasticsearch URL: {m}"))?;
            urls.push(parsed);
        }
        if urls.len() == 1 {
            TransportBuilder::new(SingleNodeConnectionPool::new(urls[0].clone()))
        } else {
            TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls, None))
        }
    };
    let description = match &cfg.cloud_id {
        Some(_) => "Elastic Cloud deployment".to_string(),
        None => node_urls(cfg)
            .iter()
            .map(|u| {
                Url::parse(u)
                    .map(|mut p| {
                        let _ = p.set_username("");
                        let _ = p.set_password(None);
                        p.to_string()
                    })
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut builder = builder
        .timeout(Duration::from_millis(cfg.request_timeout_ms))
        .disable_proxy();
    if let Some(c) = creds {
        builder = builder.auth(c);
    }
    if let Some(ca) = &cfg.ca_cert_file {
        let pem = std::fs::read(ca)
            .map_err(|e| format!("elasticsearch.ca_cert_file {}: {e}", ca.display()))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| format!("elasticsearch.ca_cert_file {}: {e}", ca.display()))?;
        builder = builder.cert_validation(CertificateValidation::Full(cert));
    }
    let transport = builder
        .build()
        .map_err(|e| format!("elasticsearch client: {e}"))?;
    Ok(Some((
        Elasticsearch::new(transport),
        EsTarget { description },
    )))
}

fn urlencoding_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn credentials(cfg: &ElasticsearchConfig) -> Result<Option<Credentials>, String> {
    if let Some(var) = &cfg.api_key_env {
        let key = std::env::var(var).map_err(|_| {
            format!("elasticsearch.api_key_env: environment variable {var} is not set")
        })?;
        return Ok(Some(Credentials::EncodedApiKey(key)));
    }
    if let Some(f) = &cfg.api_key_file {
        let key = read_secret_file(f).map_err(|e| format!("elasticsearch.api_key_file: {e}"))?;
        return Ok(Some(Credentials::EncodedApiKey(key.expose().to_owned())));
    }
    let password = if let Some(p) = &cfg.password {
        Some(p.expose().to_owned())
    } else if let Some(var) = &cfg.password_env {
        Some(std::env::var(var).map_err(|_| {
            format!("elasticsearch.password_env: environment variable {var} is not set")
        })?)
    } else if let Some(f) = &cfg.password_file {
        Some(
            read_secret_file(f)
                .map_err(|e| format!("elasticsearch.password_file: {e}"))?
                .expose()
                .to_owned(),
        )
    } else {
        None
    };
    Ok(match (&cfg.username, password) {
        (Some(u), Some(p)) => Some(Credentials::Basic(u.clone(), p)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_url_means_journal_only() {
        let cfg = ElasticsearchConfig {
            urls: vec![],
            ..Default::default()
        };
        if std::env::var_os("ELASTICSEARCH_URL").is_none() {
            assert!(build(&cfg).unwrap().is_none());
        }
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_an_error_naming_the_key() {
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let cfg = ElasticsearchConfig {
            urls: vec!["https://127.0.0.1:9200".into()],
            ca_cert_file: Some(ca),
            ..Default::default()
        };
        let e = build(&cfg).err().unwrap();
        assert!(e.contains("elasticsearch.ca_cert_file"), "{e}");
    }

    #[test]
    fn an_api_key_from_the_environment_must_exist() {
        let cfg = ElasticsearchConfig {
            urls: vec!["http://127.0.0.1:9200".into()],
            api_key_env: Some("IASO_TEST_SURELY_UNSET_KEY".into()),
            ..Default::default()
        };
        let e = build(&cfg).err().unwrap();
        assert!(e.contains("IASO_TEST_SURELY_UNSET_KEY"), "{e}");
    }

    #[test]
    fn credentials_in_the_url_are_kept_out_of_the_description() {
        let cfg = ElasticsearchConfig {
            urls: vec!["http://elastic:s3cret@127.0.0.1:9200".into()],
            ..Default::default()
        };
        let (_, target) = build(&cfg).unwrap().unwrap();
        assert!(
            !target.description.contains("s3cret"),
            "{}",
            target.description
        );
        assert!(target.description.contains("127.0.0.1:9200"));
    }
}
