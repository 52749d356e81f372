//! The built-in simulator of the IASO portal: serves the reference API (or the `alt`
//! dialect) on a local port, with seeded latency, faults, token expiry, its own rate limit
//! and time-based jobs, and counts everything it answers so that tests can assert on it.
//!
//! - `config`: what the simulator does (`[environments.<name>.simulator]`)
//! - `server`: the actix-web handler; `dialect`: paths and JSON shapes
//! - `state`: counters, rate limit, faults, tokens and jobs, under one lock
//! - `jobs`: job fates and their status at any instant; `ratelimit`: the token bucket
//! - `counters`: the snapshot tests read
//!
//! It runs on its own OS thread with its own actix `System`, so it works the same inside
//! `iaso-probe simulate`, next to the prober in one process, and in tests.

mod config;
mod counters;
mod dialect;
mod jobs;
mod ratelimit;
mod server;
mod state;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::mpsc;
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

pub use config::{
    Dialect, FaultConfig, RangeMs, SimCredential, SimSubclient, SimulatorConfig, ENDPOINT_NAMES,
};
pub use counters::{CountersSnapshot, EndpointCounters, OTHER_ENDPOINT};
pub use dialect::BACKUP_LEVELS;
pub use server::COUNTERS_PATH;

use server::Shared;

/// How long a stop waits for requests in flight (a hanging request is cut short).
const SHUTDOWN_TIMEOUT_SECS: u64 = 1;

/// Starts a simulator on its own OS thread with its own actix System, bound to `bind`
/// (use 127.0.0.1:0 for an ephemeral port). Returns once the socket is bound; fails on an
/// invalid configuration or an address that cannot be bound.
pub fn spawn(cfg: SimulatorConfig, bind: SocketAddr) -> io::Result<SimulatorHandle> {
    cfg.validate().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid simulator configuration: {e}"),
        )
    })?;
    let workers = cfg.workers;
    let dialect = cfg.dialect;
    let shared = web::Data::new(Shared::new(cfg));
    let data = shared.clone();
    let (bound_tx, bound_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("iaso-simulator".to_owned())
        .spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .default_service(web::to(server::dispatch))
                })
                .workers(workers)
                // The prober owns the process's signals; the handle stops the simulator.
                .disable_signals()
                .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
                .bind(bind);
                let server = match server {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                let Some(addr) = server.addrs().first().copied() else {
                    let _ = bound_tx.send(Err(io::Error::other("simulator bound no address")));
                    return;
                };
                let server = server.run();
                let _ = bound_tx.send(Ok((addr, server.handle())));
                if let Err(e) = server.await {
                    tracing::error!(error = %e, "simulator server failed");
                }
            });
        })?;
    match bound_rx.recv() {
        Ok(Ok((addr, server))) => {
            tracing::info!(%addr, ?dialect, "simulator listening");
            Ok(SimulatorHandle {
                addr,
                shared,
                server,
                thread: Some(thread),
            })
        }
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(io::Error::other("simulator thread ended before binding"))
        }
    }
}

/// A running simulator. Dropping it stops the simulator too.
pub struct SimulatorHandle {
    addr: SocketAddr,
    shared: web::Data<Shared>,
    server: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl SimulatorHandle {
    /// The bound address (with the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to reach the simulator, e.g. `http://127.0.0.1:PORT` (the loopback
    /// address when bound to an unspecified address such as 0.0.0.0).
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// A consistent snapshot of the counters. It copies the request offsets (up to 16 MB):
    /// fine after a test or once a second, not in a hot loop.
    pub fn counters(&self) -> CountersSnapshot {
        self.shared.counters()
    }

    /// Makes every token issued so far invalid, now.
    pub fn expire_tokens(&self) {
        self.shared.expire_tokens();
    }

    /// Stops the simulator (requests in flight get up to a second) and joins its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // The stop command is sent when `stop` is called; its future only reports the end,
        // which joining the thread awaits as well, without needing a runtime here.
        drop(self.server.stop(true));
        if thread.join().is_err() {
            tracing::error!("simulator thread panicked");
        }
        tracing::info!(addr = %self.addr, "simulator stopped");
    }
}

impl fmt::Debug for SimulatorHandle {
    // By hand: the state holds tokens and up to 2 million request offsets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatorHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod local;
