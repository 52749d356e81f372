//! The actor tree: [`supervisor`] → one [`environment`] actor per environment → one [`job`]
//! actor per launched backup/restore, and the [`sink`] that records every result. Jobs still
//! running at a stop are handed to the next start ([`handoff`]); each environment counts and
//! bounds its jobs with a [`tracker`].

pub mod environment;
pub mod handoff;
pub mod job;
pub mod sink;
pub mod supervisor;
pub mod tracker;

use actix::ArbiterHandle;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The worker arbiters (one per core) that host job actors, handed out round robin.
#[derive(Clone)]
pub(crate) struct Workers {
    arbiters: Arc<Vec<ArbiterHandle>>,
    next: Arc<AtomicUsize>,
}

impl Workers {
    pub fn new(arbiters: Vec<ArbiterHandle>) -> Self {
        assert!(!arbiters.is_empty(), "at least one worker arbiter");
        Self {
            arbiters: Arc::new(arbiters),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn pick(&self) -> &ArbiterHandle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        &self.arbiters[i]
    }
}
