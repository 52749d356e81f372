//! The outbound checks `check-config` makes, run by [`resolve`](super::resolve()): the TLS
//! files and proxy settings of every environment, of Kibana and of Elasticsearch (files
//! read, dates and key checked, proxy variables read), and each client's proxy keys.

use super::proxy::{ProxySettings, ResolvedProxy};
use super::tls::{check_ca_file, TlsConfig, TlsFileError, TlsVersion};
use super::{Config, ElasticsearchConfig, EnvironmentConfig, KibanaConfig, Problem};
use url::Url;

/// The TLS and proxy keys of every environment and of Kibana, checked as `check-config` does
/// (files read, dates and key checked). Elasticsearch has its own: [`elasticsearch_problems`].
pub fn problems(c: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut check = |key: String, tls: &TlsConfig, proxy: ProxySettings<'_>| {
        if let Err(e) = tls.load(&format!("{key}.tls")) {
            out.push(tls_problem(e));
        }
        if let Err(e) = proxy.resolve_from_process(&key) {
            out.push(Problem::new(e.key, e.message));
        }
    };
    for (name, env) in &c.environments {
        check(format!("environments.{name}"), &env.tls, env.proxy());
    }
    if c.kibana.url.is_some() {
        check("kibana".into(), &c.kibana.tls, c.kibana.proxy());
    }
    out
}

/// A TLS file error as a configuration problem (key, then file and what is wrong).
pub fn tls_problem(e: TlsFileError) -> Problem {
    let message = if e.file.as_os_str().is_empty() {
        e.problem
    } else {
        format!("{}: {}", e.file.display(), e.problem)
    };
    Problem::new(e.key, message)
}

/// The TLS and proxy keys of `[elasticsearch]`, checked as `check-config` does.
pub(crate) fn elasticsearch_problems(cfg: &ElasticsearchConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    // A missing file is already reported by the general file check of validate.rs.
    if let Some(ca) = cfg.ca_cert_file.as_ref().filter(|f| f.exists()) {
        if let Err(e) = check_ca_file("elasticsearch.ca_cert_file", ca) {
            out.push(tls_problem(e));
        }
    }
    if let Some(m) = unsupported_tls(cfg) {
        let (key, message) = m.split_once(": ").unwrap_or(("elasticsearch.tls", &m));
        out.push(Problem::new(key, message));
    }
    if let Err(e) = cfg.tls.load("elasticsearch.tls") {
        out.push(tls_problem(e));
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

/// The `[elasticsearch.tls]` settings the elasticsearch crate cannot apply.
pub fn unsupported_tls(cfg: &ElasticsearchConfig) -> Option<String> {
    if !cfg.tls.system_roots {
        return Some("elasticsearch.tls.system_roots: false is not supported by the Elasticsearch client (it always trusts the system and built-in roots; add your CA with ca_files)".into());
    }
    if cfg.tls.min_version != TlsVersion::Tls12 {
        return Some("elasticsearch.tls.min_version: not supported by the Elasticsearch client (it negotiates TLS 1.2 or 1.3)".into());
    }
    None
}

/// The one proxy of every node, `None` when they are all reached directly.
pub fn proxy_for_nodes<'a>(
    cfg: &ElasticsearchConfig,
    resolved: &'a ResolvedProxy,
) -> Result<Option<&'a Url>, String> {
    let targets: Vec<Url> = if cfg.cloud_id.is_some() {
        // Elastic Cloud is reached over https; its host is not known before the pool decodes it.
        vec![Url::parse("https://cloud.elastic.invalid/").expect("static URL")]
    } else {
        cfg.node_urls()
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

impl EnvironmentConfig {
    /// This environment's proxy keys.
    pub fn proxy(&self) -> ProxySettings<'_> {
        ProxySettings {
            url: self.proxy_url.as_deref(),
            no_proxy: &self.no_proxy,
            from_env: self.proxy_from_env,
        }
    }
}

impl ElasticsearchConfig {
    /// The proxy keys of `[elasticsearch]`.
    pub fn proxy(&self) -> ProxySettings<'_> {
        ProxySettings {
            url: self.proxy_url.as_deref(),
            no_proxy: &self.no_proxy,
            from_env: self.proxy_from_env,
        }
    }

    /// The node URLs: `urls`, else `ELASTICSEARCH_URL` (comma-separated).
    pub(crate) fn node_urls(&self) -> Vec<String> {
        self.node_urls_with(std::env::var("ELASTICSEARCH_URL").ok().as_deref())
    }

    /// [`Self::node_urls`] with the value of `ELASTICSEARCH_URL` given.
    fn node_urls_with(&self, from_env: Option<&str>) -> Vec<String> {
        if !self.urls.is_empty() {
            return self.urls.clone();
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
    pub(crate) fn is_configured(&self) -> bool {
        self.cloud_id.is_some() || !self.node_urls().is_empty()
    }

    /// `tls` with the older `ca_cert_file` key added to its `ca_files`.
    pub(crate) fn effective_tls(&self) -> TlsConfig {
        let mut tls = self.tls.clone();
        if let Some(f) = &self.ca_cert_file {
            tls.ca_files.insert(0, f.clone());
        }
        tls
    }
}

impl KibanaConfig {
    /// The proxy keys of `[kibana]`.
    pub fn proxy(&self) -> ProxySettings<'_> {
        ProxySettings {
            url: self.proxy_url.as_deref(),
            no_proxy: &self.no_proxy,
            from_env: self.proxy_from_env,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::{load_with, ConfigSource};

    fn problems(extra: &str) -> String {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("t.toml");
        std::fs::write(
            &f,
            format!("[environments.lab]\nbase_url = \"https://lab.example\"\n{extra}\n[environments.lab.credentials]\nusername = \"u\"\npassword = \"p\"\n"),
        )
        .unwrap();
        match load_with(&ConfigSource::Files(vec![f]), false) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn rejects_an_environment_proxy_url_that_is_not_a_url() {
        let e = problems("proxy_url = \"proxy:3128\"");
        assert!(e.contains("environments.lab.proxy_url"), "{e}");
    }

    #[test]
    fn rejects_an_environment_tls_file_that_cannot_be_read() {
        let e = problems("[environments.lab.tls]\nca_files = [\"/nonexistent/corp.pem\"]");
        assert!(
            e.contains("environments.lab.tls.ca_files[0]") && e.contains("/nonexistent/corp.pem"),
            "{e}"
        );
    }

    #[test]
    fn rejects_an_unknown_tls_key() {
        let e = problems("[environments.lab.tls]\nverify = false");
        assert!(e.contains("verify"), "{e}");
    }

    #[test]
    fn accepts_the_default_outbound_settings() {
        assert_eq!(problems(""), "");
    }

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
            assert_eq!(cfg.node_urls_with(env), want, "{env:?}");
        }
    }

    fn es(toml_text: &str) -> ElasticsearchConfig {
        toml::from_str(toml_text).unwrap()
    }

    fn keys(cfg: &ElasticsearchConfig) -> Vec<String> {
        elasticsearch_problems(cfg)
            .into_iter()
            .map(|p| p.key)
            .collect()
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
    fn accepts_the_default_elasticsearch_outbound_settings() {
        assert!(keys(&es("urls = [\"https://es:9200\"]\n")).is_empty());
    }
}
