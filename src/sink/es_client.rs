//! The Elasticsearch client, built once from `[elasticsearch]` (and `ELASTICSEARCH_URL`, as
//! in Elastic's own tools). Credentials come from env/file sources and never reach a log.

use crate::config::{
    check_url, es_credentials, proxy_for_nodes, unsupported_tls, ElasticsearchConfig, EsCredentials,
};
use crate::net;
use elasticsearch::auth::{ClientCertificate, Credentials};
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderValue, AUTHORIZATION};
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

/// Builds the client; `Ok(None)` when Elasticsearch is not configured (journal only).
pub fn build(cfg: &ElasticsearchConfig) -> Result<Option<(Elasticsearch, EsTarget)>, String> {
    let mut creds = credentials(cfg)?;
    let Some(builder) = node_pool(cfg, &mut creds)? else {
        return Ok(None);
    };
    net::log_outbound("elasticsearch", &cfg.effective_tls(), &cfg.proxy());
    let description = describe_target(cfg);
    let mut builder = builder.timeout(Duration::from_millis(cfg.request_timeout_ms));
    builder = apply_proxy(builder, cfg)?;
    builder = apply_tls_and_login(builder, cfg, creds)?;
    let transport = builder
        .build()
        .map_err(|e| format!("elasticsearch client: {e}"))?;
    Ok(Some((
        Elasticsearch::new(transport),
        EsTarget { description },
    )))
}

/// The connection pool: Elastic Cloud, one node or round robin; `None` without any node.
/// Credentials in a node URL become the login when none is configured.
fn node_pool(
    cfg: &ElasticsearchConfig,
    creds: &mut Option<Credentials>,
) -> Result<Option<TransportBuilder>, String> {
    if let Some(cloud) = &cfg.cloud_id {
        let pool =
            CloudConnectionPool::new(cloud).map_err(|e| format!("elasticsearch.cloud_id: {e}"))?;
        return Ok(Some(TransportBuilder::new(pool)));
    }
    let raw = cfg.node_urls();
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
                *creds = Some(Credentials::Basic(user, pass));
            }
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
        }
        check_url(parsed.as_str()).map_err(|m| format!("elasticsearch URL: {m}"))?;
        urls.push(parsed);
    }
    Ok(Some(if urls.len() == 1 {
        TransportBuilder::new(SingleNodeConnectionPool::new(urls[0].clone()))
    } else {
        TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls, None))
    }))
}

/// Where the client points, without credentials.
fn describe_target(cfg: &ElasticsearchConfig) -> String {
    match &cfg.cloud_id {
        Some(_) => "Elastic Cloud deployment".to_string(),
        None => cfg
            .node_urls()
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
    }
}

/// The client certificate, the login and the trusted roots.
fn apply_tls_and_login(
    mut builder: TransportBuilder,
    cfg: &ElasticsearchConfig,
    mut creds: Option<Credentials>,
) -> Result<TransportBuilder, String> {
    let tls = tls_settings(cfg)?;
    if let Some(identity) = tls.identity_pem() {
        // The crate holds one credential: the client certificate takes it, and the basic
        // or API-key login (when there is one) rides along as a default header.
        if let Some(c) = creds.take() {
            builder = builder.header(AUTHORIZATION, authorization_header(&c)?);
        }
        builder = builder.auth(Credentials::Certificate(ClientCertificate::Pem(identity)));
    }
    if let Some(c) = creds {
        builder = builder.auth(c);
    }
    if tls.insecure_skip_verify {
        return Ok(builder.cert_validation(CertificateValidation::None));
    }
    let mut chain: Option<Certificate> = None;
    for der in &tls.extra_roots {
        let c = Certificate::from_der(der.as_ref())
            .map_err(|e| format!("elasticsearch.tls.ca_files: {e}"))?;
        match &mut chain {
            Some(all) => all.append(c),
            None => chain = Some(c),
        }
    }
    if let Some(chain) = chain {
        // Added to the built-in roots (system store and Mozilla roots).
        builder = builder.cert_validation(CertificateValidation::Full(chain));
    }
    Ok(builder)
}

/// `[elasticsearch.tls]` (with the older `ca_cert_file`), read and checked. The crate builds
/// its own reqwest client: it always trusts the built-in roots and takes no minimum version,
/// so those two settings are refused rather than silently ignored.
fn tls_settings(cfg: &ElasticsearchConfig) -> Result<net::LoadedTls, String> {
    if let Some(ca) = &cfg.ca_cert_file {
        crate::config::tls::check_ca_file("elasticsearch.ca_cert_file", ca)
            .map_err(|e| e.to_string())?;
    }
    if let Some(m) = unsupported_tls(cfg) {
        return Err(m);
    }
    cfg.effective_tls()
        .load("elasticsearch.tls")
        .map_err(|e| e.to_string())
}

/// The proxy of `[elasticsearch]`; none (and no environment variable) unless configured.
/// The crate takes one proxy for every node: nodes are either all proxied or all direct.
fn apply_proxy(
    builder: TransportBuilder,
    cfg: &ElasticsearchConfig,
) -> Result<TransportBuilder, String> {
    let Some(resolved) = cfg
        .proxy()
        .resolve_from_process("elasticsearch")
        .map_err(|e| e.to_string())?
    else {
        return Ok(builder.disable_proxy());
    };
    let Some(proxy) = proxy_for_nodes(cfg, &resolved)? else {
        return Ok(builder.disable_proxy());
    };
    let mut bare = proxy.clone();
    let user = urlencoding_decode(proxy.username());
    let pass = proxy.password().map(urlencoding_decode);
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    let user = (!user.is_empty()).then_some(user);
    Ok(builder.proxy(bare, user.as_deref(), pass.as_deref()))
}

/// An `Authorization` header for basic or API-key credentials (marked sensitive: never logged).
fn authorization_header(c: &Credentials) -> Result<HeaderValue, String> {
    use base64::Engine as _;
    let text = match c {
        Credentials::Basic(u, p) => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        ),
        Credentials::EncodedApiKey(k) => format!("ApiKey {k}"),
        _ => {
            return Err(
                "elasticsearch: only basic or API-key login can go with a client certificate"
                    .into(),
            )
        }
    };
    let mut v = HeaderValue::from_str(&text).map_err(|_| {
        "elasticsearch: the credentials contain characters not allowed in a header".to_string()
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn urlencoding_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The login of `[elasticsearch]` ([`config::es_credentials`](crate::config::es_credentials),
/// the one resolver), as the crate takes it.
fn credentials(cfg: &ElasticsearchConfig) -> Result<Option<Credentials>, String> {
    Ok(es_credentials(cfg)?.map(|c| match c {
        EsCredentials::ApiKey(k) => Credentials::EncodedApiKey(k.expose().to_owned()),
        EsCredentials::Basic { username, password } => {
            Credentials::Basic(username, password.expose().to_owned())
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
