//! iaso-probe library.

pub mod setup;
