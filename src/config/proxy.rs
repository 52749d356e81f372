//! Outbound proxies: `proxy_url`, `no_proxy` and `proxy_from_env` of the portal, Elasticsearch
//! and Kibana clients, resolved and checked. Nothing is taken from the environment unless
//! `proxy_from_env = true` (reqwest on its own follows `HTTP_PROXY` silently), and loopback
//! is never proxied. Installing them on a client is `net::proxy`'s.

use url::Url;

/// Hosts never sent through a proxy, whatever the configuration says.
pub(crate) const LOOPBACK: &[&str] = &["localhost", "127.0.0.0/8", "::1"];

/// The proxy keys of one client, as configured.
#[derive(Debug, Clone, Copy)]
pub struct ProxySettings<'a> {
    /// `proxy_url`: every request goes through it (except `no_proxy` and loopback).
    pub url: Option<&'a str>,
    /// `no_proxy`: host names (and their subdomains), IP addresses or CIDR ranges reached directly.
    pub no_proxy: &'a [String],
    /// `proxy_from_env`: without `proxy_url`, take `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`
    /// and `NO_PROXY` (or their lowercase forms) from the environment.
    pub from_env: bool,
}

/// The proxies to use, once settings and environment are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedProxy {
    /// For `http://` targets.
    pub http: Option<Url>,
    /// For `https://` targets.
    pub https: Option<Url>,
    /// Reached directly (configuration, `NO_PROXY` when taken from the environment, loopback).
    pub no_proxy: Vec<String>,
    /// Where the proxy came from: `proxy_url` or `environment`.
    pub source: &'static str,
}

/// A proxy URL that cannot be used, naming the key or variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ProxyError {
    pub key: String,
    pub message: String,
}

/// Checks a proxy URL: http or https, with a host. `user:password@` is allowed (proxy login)
/// and never logged.
pub(crate) fn check_proxy_url(u: &str) -> Result<Url, String> {
    let parsed = Url::parse(u).map_err(|e| format!("`{}` is not a valid URL: {e}", redact(u)))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "`{}` must use http or https (socks is not supported)",
            redact(u)
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{}` has no host", redact(u)));
    }
    Ok(parsed)
}

/// The URL without `user:password@`, for logs and errors.
pub(crate) fn redact(u: &str) -> String {
    match Url::parse(u) {
        Ok(mut p) => {
            let _ = p.set_username("");
            let _ = p.set_password(None);
            p.to_string()
        }
        Err(_) => "<unparsable URL>".into(),
    }
}

impl ProxySettings<'_> {
    /// The proxies to use, `None` for direct connections. `key` is the dotted prefix of the
    /// keys (`environments.lab`); `env` reads a variable (the process environment in
    /// production, a table in tests).
    pub fn resolve(
        &self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<ResolvedProxy>, ProxyError> {
        let mut no_proxy: Vec<String> = self.no_proxy.to_vec();
        let (http, https, source) = if let Some(u) = self.url {
            let url = check_proxy_url(u).map_err(|message| ProxyError {
                key: format!("{key}.proxy_url"),
                message,
            })?;
            (Some(url.clone()), Some(url), "proxy_url")
        } else if self.from_env {
            let var = |names: &[&str]| -> Result<Option<Url>, ProxyError> {
                for n in names {
                    if let Some(v) = env(n).filter(|v| !v.trim().is_empty()) {
                        return check_proxy_url(v.trim())
                            .map(Some)
                            .map_err(|message| ProxyError {
                                key: format!("{key}.proxy_from_env: {n}"),
                                message,
                            });
                    }
                }
                Ok(None)
            };
            let all = ["ALL_PROXY", "all_proxy"];
            let https = var(&["HTTPS_PROXY", "https_proxy"])?.or(var(&all)?);
            let http = var(&["HTTP_PROXY", "http_proxy"])?.or(var(&all)?);
            for n in ["NO_PROXY", "no_proxy"] {
                if let Some(v) = env(n) {
                    no_proxy.extend(
                        v.split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty()),
                    );
                    break;
                }
            }
            (http, https, "environment")
        } else {
            (None, None, "")
        };
        if http.is_none() && https.is_none() {
            return Ok(None);
        }
        no_proxy.extend(LOOPBACK.iter().map(|s| s.to_string()));
        Ok(Some(ResolvedProxy {
            http,
            https,
            no_proxy,
            source,
        }))
    }

    /// `resolve` with the process environment.
    pub(crate) fn resolve_from_process(
        &self,
        key: &str,
    ) -> Result<Option<ResolvedProxy>, ProxyError> {
        self.resolve(key, &|n| std::env::var(n).ok())
    }
}

impl ResolvedProxy {
    /// The proxy for a target URL, `None` when it is reached directly.
    pub(crate) fn for_target(&self, target: &Url) -> Option<&Url> {
        let host = target.host_str()?;
        if self.no_proxy.iter().any(|n| no_proxy_matches(n, host)) {
            return None;
        }
        match target.scheme() {
            "https" => self.https.as_ref(),
            _ => self.http.as_ref(),
        }
    }

    /// One line for the start log, without credentials.
    pub fn describe(&self) -> String {
        let show = |u: &Option<Url>| u.as_ref().map(|u| redact(u.as_str()));
        let proxies = match (show(&self.http), show(&self.https)) {
            (Some(a), Some(b)) if a == b => a,
            (Some(a), Some(b)) => format!("http {a}, https {b}"),
            (Some(a), None) => format!("http {a}"),
            (None, Some(b)) => format!("https {b}"),
            (None, None) => "none".into(),
        };
        format!(
            "{proxies} (from {}; direct: {})",
            self.source,
            self.no_proxy.join(",")
        )
    }
}

/// One `no_proxy` entry against a host: `*`, an exact host or IP, a domain and its subdomains
/// (`example.com` or `.example.com`), or an IPv4/IPv6 CIDR range.
pub(crate) fn no_proxy_matches(entry: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let entry = entry.trim();
    if entry == "*" {
        return true;
    }
    if let Some((net, bits)) = entry.split_once('/') {
        let (Ok(net), Ok(bits), Ok(ip)) = (
            net.parse::<std::net::IpAddr>(),
            bits.parse::<u32>(),
            host.parse::<std::net::IpAddr>(),
        ) else {
            return false;
        };
        return match (net, ip) {
            (std::net::IpAddr::V4(n), std::net::IpAddr::V4(i)) if bits <= 32 => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (std::net::IpAddr::V6(n), std::net::IpAddr::V6(i)) if bits <= 128 => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        };
    }
    let domain = entry.trim_start_matches('.');
    host.eq_ignore_ascii_case(domain)
        || (host.len() > domain.len()
            && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn environment_variables_are_ignored_unless_proxy_from_env() {
        let vars = env(&[
            ("HTTP_PROXY", "http://proxy:3128"),
            ("HTTPS_PROXY", "http://proxy:3128"),
        ]);
        let off = ProxySettings {
            url: None,
            no_proxy: &[],
            from_env: false,
        };
        assert_eq!(off.resolve("environments.lab", &vars).unwrap(), None);
        let on = ProxySettings {
            from_env: true,
            ..off
        };
        let r = on.resolve("environments.lab", &vars).unwrap().unwrap();
        assert_eq!(r.source, "environment");
        assert_eq!(r.https.unwrap().as_str(), "http://proxy:3128/");
    }

    #[test]
    fn loopback_is_never_proxied() {
        let r = ProxySettings {
            url: Some("http://proxy:3128"),
            no_proxy: &[],
            from_env: false,
        }
        .resolve("x", &env(&[]))
        .unwrap()
        .unwrap();
        for t in [
            "http://127.0.0.1:8080/",
            "https://localhost/",
            "http://[::1]:80/",
        ] {
            assert_eq!(r.for_target(&Url::parse(t).unwrap()), None, "{t}");
        }
        assert!(r
            .for_target(&Url::parse("https://portal.example.com/").unwrap())
            .is_some());
    }

    #[test]
    fn no_proxy_matches_domains_ips_and_ranges() {
        assert!(no_proxy_matches("example.com", "portal.example.com"));
        assert!(no_proxy_matches(".example.com", "example.com"));
        assert!(!no_proxy_matches("example.com", "badexample.com"));
        assert!(no_proxy_matches("10.0.0.0/8", "10.1.2.3"));
        assert!(!no_proxy_matches("10.0.0.0/8", "11.1.2.3"));
        assert!(no_proxy_matches("fd00::/8", "[fd12::1]"));
        assert!(no_proxy_matches("*", "anything"));
        assert!(no_proxy_matches("10.0.0.5", "10.0.0.5"));
    }

    #[test]
    fn rejects_a_socks_proxy_naming_the_key() {
        let e = ProxySettings {
            url: Some("socks5://p:1080"),
            no_proxy: &[],
            from_env: false,
        }
        .resolve("elasticsearch", &env(&[]))
        .unwrap_err();
        assert_eq!(e.key, "elasticsearch.proxy_url");
    }

    #[test]
    fn proxy_credentials_never_reach_the_description() {
        let r = ProxySettings {
            url: Some("http://user:s3cret@proxy:3128"),
            no_proxy: &[],
            from_env: false,
        }
        .resolve("x", &env(&[]))
        .unwrap()
        .unwrap();
        let d = r.describe();
        assert!(!d.contains("s3cret") && !d.contains("user"), "{d}");
        assert!(d.contains("proxy:3128"), "{d}");
    }
}
