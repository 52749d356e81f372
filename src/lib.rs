//! iaso-probe library.
pub mod simulator;
