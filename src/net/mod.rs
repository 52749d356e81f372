//! Outbound connections, one configuration shared by every client (portal, Elasticsearch,
//! Kibana): TLS trust and client identity ([`tls`]) and proxies ([`proxy`]). Each client
//! builder takes what this module makes; none reads TLS files or proxy variables itself.

pub mod proxy;
pub mod tls;

pub use proxy::{ProxyError, ProxySettings, ResolvedProxy};
pub use tls::{LoadedTls, TlsConfig, TlsFileError, TlsVersion};

/// Why a client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NetError {
    #[error(transparent)]
    Tls(#[from] TlsFileError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("{0}")]
    Client(String),
}

/// A reqwest builder with `tls` and the proxy settings applied (no environment proxy unless
/// `proxy.from_env`). Redirects, timeouts and the rest are the caller's.
pub(crate) fn client_builder(
    key: &str,
    tls: &TlsConfig,
    proxy: &ProxySettings<'_>,
) -> Result<reqwest::ClientBuilder, NetError> {
    let loaded = tls.load(&format!("{key}.tls"))?;
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls(loaded.client_config())
        .no_proxy();
    if let Some(p) = proxy.resolve_from_process(key)? {
        b = p
            .apply(b)
            .map_err(|e| NetError::Client(format!("{key}.proxy_url: {e}")))?;
    }
    Ok(b)
}

/// Redirects, for the portal and Kibana: none with `max` = 0 (the 3xx is the result, like
/// Heartbeat's `max_redirects: 0`); else only to the origin of the first request, so a
/// body, a token or a password is never sent to another server. A redirect elsewhere stops
/// (the 3xx is returned and reported as `redirect`); one past the count is an error.
pub(crate) fn redirect_policy(max: u32) -> reqwest::redirect::Policy {
    if max == 0 {
        return reqwest::redirect::Policy::none();
    }
    reqwest::redirect::Policy::custom(move |attempt| {
        let first = attempt.previous().first().map(|u| u.origin());
        if first.is_some_and(|o| o != attempt.url().origin()) {
            attempt.stop()
        } else if attempt.previous().len() > max as usize {
            attempt.error(format!("more than max_redirects = {max}"))
        } else {
            attempt.follow()
        }
    })
}

/// The TLS and proxy keys of every environment and of Kibana, checked as `check-config` does
/// (files read, dates and key checked). Elasticsearch has its own: `es_client::outbound_problems`.
pub fn problems(c: &crate::config::Config) -> Vec<crate::config::Problem> {
    let mut out = Vec::new();
    let mut check = |key: String, tls: &TlsConfig, proxy: ProxySettings<'_>| {
        if let Err(e) = tls.load(&format!("{key}.tls")) {
            out.push(tls_problem(e));
        }
        if let Err(e) = proxy.resolve_from_process(&key) {
            out.push(crate::config::Problem::new(e.key, e.message));
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
pub(crate) fn tls_problem(e: TlsFileError) -> crate::config::Problem {
    let message = if e.file.as_os_str().is_empty() {
        e.problem
    } else {
        format!("{}: {}", e.file.display(), e.problem)
    };
    crate::config::Problem::new(e.key, message)
}

/// Logs, at every start, how a client connects: its trust settings and proxy (never a
/// credential), and a WARN while certificate verification is off.
pub(crate) fn log_outbound(key: &str, tls: &TlsConfig, proxy: &ProxySettings<'_>) {
    if tls.insecure_skip_verify {
        tracing::warn!(
            client = key,
            "{key}.tls.insecure_skip_verify is on: server certificates are not verified, anyone on the path can read and change the traffic"
        );
    }
    let proxy = match proxy.resolve_from_process(key) {
        Ok(Some(p)) => p.describe(),
        Ok(None) => "none".into(),
        Err(e) => format!("unusable: {e}"),
    };
    tracing::info!(client = key, tls = %tls.describe(), proxy = %proxy, "outbound connection settings");
}

impl crate::config::EnvironmentConfig {
    /// This environment's proxy keys.
    pub fn proxy(&self) -> ProxySettings<'_> {
        ProxySettings {
            url: self.proxy_url.as_deref(),
            no_proxy: &self.no_proxy,
            from_env: self.proxy_from_env,
        }
    }
}

impl crate::config::ElasticsearchConfig {
    /// The proxy keys of `[elasticsearch]`.
    pub fn proxy(&self) -> ProxySettings<'_> {
        ProxySettings {
            url: self.proxy_url.as_deref(),
            no_proxy: &self.no_proxy,
            from_env: self.proxy_from_env,
        }
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

impl crate::config::KibanaConfig {
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
}
