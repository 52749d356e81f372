//! iaso-probe: continuously tests the IASO backup-as-a-service API in every environment and
//! records every result in a journal shipped to Elasticsearch.
//!
//! - [`config`]: the configuration tree, its loading (figment) and validation.
//! - [`model`]: result documents and the data travelling between actors.
//! - [`api`]: HTTP to the IASO portal (client built from configuration, token manager).
//! - [`net`]: outbound clients' TLS (rustls) and proxy wiring for the portal, Elasticsearch and Kibana, from the settings `config` read and checked.
//! - [`limiter`]: per-environment rate limiting (governor behind one pacer per thread).
//! - [`runtime`]: what actors and probes share (an environment's runtime, the sink handle).
//! - [`probes`]: what each check and job step does and what its result says.
//! - [`actors`]: supervisor → environments → jobs, and the sink.
//! - [`sink`]: the journal and the shipping stages.
//! - [`schedule`]: schedule state kept across restarts, placement, windows, launch pacing.
//! - [`selection`]: `--env`, `--host`, `--hosts`, `--shard`.
//! - [`summary`]: per-environment tallies, the summary table and the exit code they imply.
//! - [`exit`]: the exit code type and its table.
//! - [`progress`]: the live progress line on a terminal, progress log lines otherwise.
//! - [`setup`]: index templates, ILM and Kibana dashboards (`iaso-probe setup`).
//! - [`simulator`]: the built-in simulator of the portal.
//! - [`logging`]: the human application log.
//! - [`oplog`]: WARN/ERROR lines for the operator, derived from the results (rate-limited).
//! - [`metrics`]: the metrics registry, `/metrics`, `/healthz` and `/readyz`.
//! - [`signals`]: stop signals (one request within 1 s, a later one exits at once).
//! - [`fsutil`], [`hash`]: the atomic file write and the stable FNV-1a hash.
//! - [`cli`]: the command line.

pub(crate) mod actors;
pub mod api;
pub mod cli;
pub mod config;
pub(crate) mod exit;
pub(crate) mod fsutil;
pub(crate) mod hash;
pub mod limiter;
pub mod logging;
pub(crate) mod metrics;
pub mod model;
pub(crate) mod monitor_state;
pub(crate) mod net;
pub(crate) mod oplog;
pub mod probes;
pub(crate) mod progress;
pub(crate) mod runtime;
pub mod schedule;
pub mod selection;
pub mod setup;
pub(crate) mod signals;
pub mod simulator;
pub mod sink;
pub(crate) mod summary;
#[cfg(test)]
mod test_support;

pub use actors::supervisor::{run, RunError, RunOptions, RunReport};
