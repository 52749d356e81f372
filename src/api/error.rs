//! How a call to the portal can fail, and how each failure is classified (`error.type`);
//! what to do after one is [`super::retry`].

use crate::model::ErrorType;
use std::time::Duration;

/// A failed call. Messages are lowercase, name what was wrong, and never carry a secret.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("unexpected HTTP status {status}{}", excerpt_suffix(.excerpt))]
    HttpStatus { status: u16, excerpt: String },
    #[error("rate limited by the portal (HTTP 429{})", retry_suffix(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    #[error("authentication refused (HTTP {0})")]
    Unauthorized(u16),
    #[error("answer is not what was expected: {0}")]
    Decode(String),
    #[error("answer body exceeds the {0}-byte limit")]
    BodyTooLarge(usize),
    #[error("{0}")]
    Assertion(String),
    #[error("skipped: {0}")]
    Skipped(String),
    /// The connection was made but the exchange broke (reset, early EOF mid-body).
    #[error("network failure: {0}")]
    Network(String),
    /// The request cannot be sent as configured (or with the value it must carry).
    #[error("cannot send the request: {0}")]
    Config(String),
    /// A certificate or handshake failure (unknown issuer, expired, name mismatch, client
    /// certificate refused), or TLS settings that cannot be loaded.
    #[error("tls: {0}")]
    Tls(String),
    /// A 3xx that was not followed: redirects are off, or it leads to another origin.
    #[error("redirect not followed: HTTP {status} to {}", if .location.is_empty() { "no Location" } else { .location.as_str() })]
    Redirect { status: u16, location: String },
    /// Same-origin redirects past `max_redirects` (or a loop).
    #[error("too many redirects: {0}")]
    TooManyRedirects(String),
    /// The portal reported an error inside a 2xx answer (the endpoint's `errors` pointers);
    /// the text is the portal's own message and code.
    #[error("the portal answered an error: {0}")]
    Portal(String),
    /// The login was refused inside a 2xx answer (`api.auth.errors`): the portal's message.
    #[error("authentication refused: {0}")]
    LoginRefused(String),
}

fn excerpt_suffix(e: &str) -> String {
    if e.is_empty() {
        String::new()
    } else {
        format!(": {e}")
    }
}

fn retry_suffix(r: &Option<Duration>) -> String {
    match r {
        Some(d) => format!(", retry after {} s", d.as_secs()),
        None => String::new(),
    }
}

impl ApiError {
    /// The closed `error.type` of this failure.
    pub fn error_type(&self) -> ErrorType {
        match self {
            ApiError::Timeout(_) => ErrorType::Timeout,
            ApiError::Connect(_) => ErrorType::Connect,
            ApiError::HttpStatus { .. } => ErrorType::HttpStatus,
            ApiError::RateLimited { .. } => ErrorType::RateLimited,
            ApiError::Unauthorized(_) => ErrorType::Auth,
            ApiError::Decode(_) => ErrorType::Decode,
            ApiError::BodyTooLarge(_) => ErrorType::BodyTooLarge,
            ApiError::Assertion(_) => ErrorType::Assertion,
            ApiError::Skipped(_) => ErrorType::Skipped,
            ApiError::Network(_) => ErrorType::Network,
            ApiError::Config(_) => ErrorType::Config,
            ApiError::Tls(_) => ErrorType::Tls,
            ApiError::Redirect { .. } | ApiError::TooManyRedirects(_) => ErrorType::Redirect,
            ApiError::Portal(_) => ErrorType::ApiError,
            ApiError::LoginRefused(_) => ErrorType::Auth,
        }
    }

    /// Classifies a reqwest failure without echoing URLs with credentials (we never put any in URLs).
    pub(crate) fn from_reqwest(e: &reqwest::Error, timeout_ms: u64) -> Self {
        if let Some(tls) = tls_cause(e) {
            ApiError::Tls(tls)
        } else if e.is_redirect() {
            ApiError::TooManyRedirects(root_cause(e))
        } else if e.is_timeout() {
            ApiError::Timeout(timeout_ms)
        } else if e.is_connect() {
            ApiError::Connect(root_cause(e))
        } else if e.is_builder() {
            // Never the value: a header value built from a token must not be echoed.
            ApiError::Config("the request could not be built (invalid URL or header)".into())
        } else {
            // The connection was up: a reset, an early EOF, a broken body. The answer was
            // not wrong, it never arrived whole (`decode` is for answers that did).
            ApiError::Network(root_cause(e))
        }
    }
}

/// The rustls error somewhere in the chain, as text. An `io::Error` is entered through
/// `get_ref()`: its `source()` skips the error it wraps, which is where tokio-rustls puts
/// rustls's (sometimes inside another `io::Error`).
pub(super) fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// The innermost error message (reqwest's own says only "error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_variant_into_the_closed_list() {
        assert_eq!(ApiError::Timeout(5).error_type(), ErrorType::Timeout);
        assert_eq!(
            ApiError::RateLimited { retry_after: None }.error_type(),
            ErrorType::RateLimited
        );
        assert_eq!(ApiError::Unauthorized(401).error_type(), ErrorType::Auth);
        assert_eq!(
            ApiError::HttpStatus {
                status: 503,
                excerpt: String::new()
            }
            .error_type(),
            ErrorType::HttpStatus
        );
    }

    #[test]
    fn tls_and_redirect_failures_have_their_own_types() {
        assert_eq!(ApiError::Tls("x".into()).error_type(), ErrorType::Tls);
        assert_eq!(ErrorType::Tls.as_str(), "tls");
        let r = ApiError::Redirect {
            status: 307,
            location: "http://elsewhere/".into(),
        };
        assert_eq!(r.error_type(), ErrorType::Redirect);
        assert_eq!(ErrorType::Redirect.as_str(), "redirect");
        assert_eq!(
            r.to_string(),
            "redirect not followed: HTTP 307 to http://elsewhere/"
        );
        assert_eq!(
            ApiError::TooManyRedirects("loop".into()).error_type(),
            ErrorType::Redirect
        );
    }

    #[test]
    fn a_rustls_error_inside_an_io_error_is_found() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(
            tls_cause(&io).as_deref(),
            Some("invalid peer certificate: UnknownIssuer")
        );
        let nested = std::io::Error::other(io);
        assert_eq!(
            tls_cause(&nested).as_deref(),
            Some("invalid peer certificate: UnknownIssuer")
        );
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(tls_cause(&plain), None);
    }

    #[test]
    fn errors_inside_2xx_answers_are_api_error_or_auth() {
        let e = ApiError::Portal("Subclient not found (code 2)".into());
        assert_eq!(e.error_type(), ErrorType::ApiError);
        assert_eq!(ErrorType::ApiError.as_str(), "api_error");
        assert_eq!(
            e.to_string(),
            "the portal answered an error: Subclient not found (code 2)"
        );
        let l = ApiError::LoginRefused("Invalid Username or Password".into());
        assert_eq!(l.error_type(), ErrorType::Auth);
    }

    #[test]
    fn messages_name_the_problem() {
        let e = ApiError::HttpStatus {
            status: 500,
            excerpt: "{\"status\":\"KO\"}".into(),
        };
        assert_eq!(
            e.to_string(),
            "unexpected HTTP status 500: {\"status\":\"KO\"}"
        );
    }
}
