//! The Elasticsearch client, built once from `[elasticsearch]` (and `ELASTICSEARCH_URL`, as
//! in Elastic's own tools). Credentials come from env/file sources and never reach a log.

use crate::config::{check_url, es_credentials, ElasticsearchConfig, EsCredentials};
use crate::net::{self, TlsVersion};
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

/// The node URLs: `urls`, else `ELASTICSEARCH_URL` (comma-separated).
pub(crate) fn node_urls(cfg: &ElasticsearchConfig) -> Vec<String> {
    node_urls_with(cfg, std::env::var("ELASTICSEARCH_URL").ok().as_deref())
}

/// [`node_urls`] with the value of `ELASTICSEARCH_URL` given.
fn node_urls_with(cfg: &ElasticsearchConfig, from_env: Option<&str>) -> Vec<String> {
    if !cfg.urls.is_empty() {
        return cfg.urls.clone();
    }
    from_env
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// True when some output is configured.
pub(crate) fn is_configured(cfg: &ElasticsearchConfig) -> bool {
    cfg.cloud_id.is_some() || !node_urls(cfg).is_empty()
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
        net::tls::check_ca_file("elasticsearch.ca_cert_file", ca).map_err(|e| e.to_string())?;
    }
    if let Some(m) = unsupported_tls(cfg) {
        return Err(m);
    }
    cfg.effective_tls()
        .load("elasticsearch.tls")
        .map_err(|e| e.to_string())
}

/// The `[elasticsearch.tls]` settings the elasticsearch crate cannot apply.
pub(crate) fn unsupported_tls(cfg: &ElasticsearchConfig) -> Option<String> {
    if !cfg.tls.system_roots {
        return Some("elasticsearch.tls.system_roots: false is not supported by the Elasticsearch client (it always trusts the system and built-in roots; add your CA with ca_files)".into());
    }
    if cfg.tls.min_version != TlsVersion::Tls12 {
        return Some("elasticsearch.tls.min_version: not supported by the Elasticsearch client (it negotiates TLS 1.2 or 1.3)".into());
    }
    None
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

/// The one proxy of every node, `None` when they are all reached directly.
fn proxy_for_nodes<'a>(
    cfg: &ElasticsearchConfig,
    resolved: &'a net::ResolvedProxy,
) -> Result<Option<&'a Url>, String> {
    let targets: Vec<Url> = if cfg.cloud_id.is_some() {
        // Elastic Cloud is reached over https; its host is not known before the pool decodes it.
        vec![Url::parse("https://cloud.elastic.invalid/").expect("static URL")]
    } else {
        node_urls(cfg)
            .iter()
            .filter_map(|u| Url::parse(u).ok())
            .collect()
    };
    let proxies: Vec<Option<&Url>> = targets.iter().map(|t| resolved.for_target(t)).collect();
    let Some(first) = proxies.first().copied() else {
        return Ok(None);
    };
    if proxies.iter().any(|p| *p != first) {
        return Err("elasticsearch.no_proxy: some nodes would use the proxy and others not; the Elasticsearch client takes one proxy for all nodes".into());
    }
    Ok(first)
}

/// The TLS and proxy keys of `[elasticsearch]`, checked as `check-config` does.
pub(crate) fn outbound_problems(cfg: &ElasticsearchConfig) -> Vec<crate::config::Problem> {
    use crate::config::Problem;
    let mut out = Vec::new();
    // A missing file is already reported by the general file check of validate.rs.
    if let Some(ca) = cfg.ca_cert_file.as_ref().filter(|f| f.exists()) {
        if let Err(e) = net::tls::check_ca_file("elasticsearch.ca_cert_file", ca) {
            out.push(net::tls_problem(e));
        }
    }
    if let Some(m) = unsupported_tls(cfg) {
        let (key, message) = m.split_once(": ").unwrap_or(("elasticsearch.tls", &m));
        out.push(Problem::new(key, message));
    }
    if let Err(e) = cfg.tls.load("elasticsearch.tls") {
        out.push(net::tls_problem(e));
    }
    match cfg.proxy().resolve_from_process("elasticsearch") {
        Err(e) => out.push(Problem::new(e.key, e.message)),
        Ok(Some(resolved)) => {
            if let Err(m) = proxy_for_nodes(cfg, &resolved) {
                let (key, message) = m.split_once(": ").unwrap_or(("elasticsearch.no_proxy", &m));
                out.push(Problem::new(key, message));
            }
        }
        Ok(None) => {}
    }
    out
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
    fn the_nodes_are_the_urls_else_elasticsearch_url_else_none() {
        let none = ElasticsearchConfig::default();
        let urls = ElasticsearchConfig {
            urls: vec!["http://a:9200".into()],
            ..Default::default()
        };
        for (cfg, env, want) in [
            (&none, None, vec![]),
            (&none, Some(" , "), vec![]),
            (
                &none,
                Some("http://b:9200, http://c:9200"),
                vec!["http://b:9200", "http://c:9200"],
            ),
            (&urls, Some("http://b:9200"), vec!["http://a:9200"]),
            (&urls, None, vec!["http://a:9200"]),
        ] {
            assert_eq!(node_urls_with(cfg, env), want, "{env:?}");
        }
        assert!(is_configured(&urls));
        let (_, target) = build(&urls).unwrap().expect("configured");
        assert!(
            target.description.contains("a:9200"),
            "{}",
            target.description
        );
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

    fn es(toml_text: &str) -> ElasticsearchConfig {
        toml::from_str(toml_text).unwrap()
    }

    fn keys(cfg: &ElasticsearchConfig) -> Vec<String> {
        outbound_problems(cfg).into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn rejects_system_roots_off_for_elasticsearch() {
        let cfg = es("urls = [\"https://es:9200\"]\n[tls]\nsystem_roots = false\n");
        assert!(keys(&cfg).contains(&"elasticsearch.tls.system_roots".to_string()));
    }

    #[test]
    fn rejects_min_version_for_elasticsearch() {
        let cfg = es("urls = [\"https://es:9200\"]\n[tls]\nmin_version = \"1.3\"\n");
        assert_eq!(
            keys(&cfg),
            vec!["elasticsearch.tls.min_version".to_string()]
        );
    }

    #[test]
    fn rejects_nodes_split_by_no_proxy() {
        let cfg = es("urls = [\"https://es-1.lan:9200\", \"https://es-2.example:9200\"]\nproxy_url = \"http://proxy:3128\"\nno_proxy = [\"lan\"]\n");
        assert_eq!(keys(&cfg), vec!["elasticsearch.no_proxy".to_string()]);
    }

    #[test]
    fn rejects_a_proxy_url_that_is_not_http() {
        let cfg = es("urls = [\"https://es:9200\"]\nproxy_url = \"ftp://proxy\"\n");
        assert_eq!(keys(&cfg), vec!["elasticsearch.proxy_url".to_string()]);
    }

    #[test]
    fn accepts_the_default_outbound_settings() {
        assert!(keys(&es("urls = [\"https://es:9200\"]\n")).is_empty());
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
