//! Shared helpers for the integration tests; each test binary includes this with `mod support;`.
// Every test binary uses a different subset of the helpers.
#![allow(dead_code)]

pub mod es_emulator;
pub mod net;

/// The built `iaso-probe` binary, run in `dir`, free of the developer's settings
/// (`ELASTICSEARCH_URL`, `RUST_LOG`, every `IASO_PROBE_*` variable).
pub fn bin(dir: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_iaso-probe"));
    c.current_dir(dir)
        .env_remove("ELASTICSEARCH_URL")
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("IASO_PROBE_") {
            c.env_remove(k);
        }
    }
    c
}
