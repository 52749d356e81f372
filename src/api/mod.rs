//! HTTP to the IASO portal lives here only: the client (requests built from configuration),
//! its error classification, and the token manager.

mod auth;
mod client;
mod error;

pub use auth::{TokenLease, TokenManager};
pub use client::{ApiClient, Call, Exchange, HealthReport, JobState, Launched, Token, Vars};
pub use error::ApiError;
