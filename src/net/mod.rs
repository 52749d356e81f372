//! Outbound connections, one configuration shared by every client (portal, Elasticsearch,
//! Kibana): the rustls configuration of the TLS trust and client identity ([`tls`]) and the
//! proxies installed on the builder ([`proxy`]). Each client builder takes what this module
//! makes; none reads TLS files or proxy variables itself. The settings, and the reading and
//! checking of their files and variables, are `config`'s (`config::tls`, `config::proxy`).

pub mod proxy;
pub mod tls;

pub use crate::config::proxy::{ProxyError, ProxySettings};
pub use crate::config::tls::{LoadedTls, TlsConfig, TlsFileError};

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
    client_builder_loaded(key, &loaded, proxy)
}

/// [`client_builder`] with TLS settings already loaded (a caller that needs the rustls
/// configuration for another client too reads the files once).
pub(crate) fn client_builder_loaded(
    key: &str,
    loaded: &LoadedTls,
    proxy: &ProxySettings<'_>,
) -> Result<reqwest::ClientBuilder, NetError> {
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
