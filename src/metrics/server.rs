//! The opt-in HTTP listener (`[metrics] listen`): `/metrics` (Prometheus text format),
//! `/healthz` (the process answers) and `/readyz` (configuration loaded, journal writable,
//! not shutting down). One actix-web worker: a scrape is cheap and rare.

use super::{Metrics, CONTENT_TYPE};
use actix_web::{web, App, HttpResponse, HttpServer};
use std::net::SocketAddr;
use std::sync::Arc;

/// Why the listener could not start (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("metrics.listen = \"{addr}\": cannot listen: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// The running listener.
pub(crate) struct MetricsServer {
    handle: actix_web::dev::ServerHandle,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `listen` now (so a taken or bad address fails the start) and serves in the
    /// background of the current actix System.
    pub fn start(listen: &str, metrics: Arc<Metrics>) -> Result<Self, ListenError> {
        let bind_err = |source| ListenError::Bind {
            addr: listen.to_owned(),
            source,
        };
        let addr: SocketAddr = listen.parse().map_err(|e| {
            bind_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("not an IP address and port ({e})"),
            ))
        })?;
        let data = web::Data::from(metrics);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/metrics", web::get().to(scrape))
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(addr)
        .map_err(bind_err)?;
        let bound = server.addrs().first().copied().unwrap_or(addr);
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        tracing::info!(listen = %bound, "metrics endpoint listening (/metrics, /healthz, /readyz)");
        Ok(Self {
            handle,
            addr: bound,
        })
    }

    /// The bound address (the real port when `listen` asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

async fn scrape(m: web::Data<Metrics>) -> HttpResponse {
    // Reading the journal directory and the shipper's counters: off the arbiter.
    let m = m.into_inner();
    match web::block(move || m.render()).await {
        Ok(text) => HttpResponse::Ok().content_type(CONTENT_TYPE).body(text),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(m: web::Data<Metrics>) -> HttpResponse {
    match m.readiness() {
        Ok(()) => HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n"),
        Err(why) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!("not ready: {why}\n")),
    }
}
