//! HTTP to the IASO portal lives here only: the client (requests built from configuration),
//! what its answers mean, its errors, what to do after each ([`retry`]), and the token
//! manager.

pub mod answers;
mod auth;
mod client;
mod error;
mod h1;
pub mod retry;

pub use answers::{HealthReport, JobState, Launched, Token};
pub use auth::{renew_deadline, TokenLease, TokenManager};
pub use client::{ApiClient, Call, Exchange, Vars};
pub use error::ApiError;
