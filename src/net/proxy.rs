//! Installs the resolved proxies (`config::proxy`) on a reqwest client builder.

use crate::config::proxy::ResolvedProxy;

impl ResolvedProxy {
    /// Installs the proxies on a reqwest builder (after `no_proxy()` has cleared reqwest's own
    /// environment lookup).
    pub fn apply(&self, mut b: reqwest::ClientBuilder) -> reqwest::Result<reqwest::ClientBuilder> {
        let list = reqwest::NoProxy::from_string(&self.no_proxy.join(","));
        if let Some(u) = &self.http {
            b = b.proxy(reqwest::Proxy::http(u.as_str())?.no_proxy(list.clone()));
        }
        if let Some(u) = &self.https {
            b = b.proxy(reqwest::Proxy::https(u.as_str())?.no_proxy(list));
        }
        Ok(b)
    }
}
