//! Shared helpers for the integration tests; each test binary includes this with `mod support;`.
// Every test binary uses a different subset of the helpers.
#![allow(dead_code)]

pub mod es_emulator;
pub mod net;
