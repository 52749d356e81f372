//! PLACEHOLDER replaced by the simulator branch.
use serde::{Deserialize, Serialize};
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    pub seed: u64,
}
impl SimulatorConfig {
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
pub struct SimulatorHandle;
impl SimulatorHandle {
    pub fn base_url(&self) -> String {
        String::new()
    }
}
pub fn spawn(_: SimulatorConfig, _: std::net::SocketAddr) -> std::io::Result<SimulatorHandle> {
    Ok(SimulatorHandle)
}
