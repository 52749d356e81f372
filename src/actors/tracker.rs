//! The job tracker of one environment: counts its job actors and bounds them
//! (`jobs.max_tracked_jobs`), holds the spec of every job and launch in flight (one job per
//! spec at a time), and cancels them all at a stop.

use super::handoff::Handoff;
use super::job::{Cancel, Job};
use crate::model::JobSpec;
use actix::prelude::*;
use actix::WeakAddr;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Counts the jobs of one environment, bounds them, and can cancel them all.
pub(crate) struct JobTracker {
    active: AtomicUsize,
    idle: Notify,
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
    /// Weak addresses: 16 bytes an entry and no allocation (a `Recipient` clone allocated
    /// its box and two `Arc`s of actix's sender, ≈ 110 bytes a job at a million jobs). A
    /// running job's address always upgrades: its context holds the mailbox.
    registry: Mutex<HashMap<u64, WeakAddr<Job>>>,
    /// Set by `cancel_all`: jobs started afterwards are cancelled at once.
    closed: AtomicBool,
    /// Where stopped jobs go to be resumed by the next start; None: they end `cancelled`.
    handoff: Option<Arc<Handoff>>,
    /// What the tracked jobs (and the launches in flight) are for: a spec is launched again
    /// only once its previous job ended. A second backup of a host whose last one still
    /// runs (a slow job past its interval, or one resumed from the last stop) would only
    /// queue behind it in Commvault. Held as 64-bit hashes: 16 bytes a job instead of a
    /// copy of the spec, at 100,000 jobs.
    specs: Mutex<HashSet<u64>>,
}

impl JobTracker {
    pub fn new(max_jobs: NonZeroUsize, handoff: Option<Arc<Handoff>>) -> Arc<Self> {
        Arc::new(Self {
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            slots: Arc::new(Semaphore::new(max_jobs.get())),
            next_id: AtomicU64::new(0),
            registry: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            handoff,
            specs: Mutex::new(HashSet::new()),
        })
    }

    /// Claims `spec` for one job; None while another job (or launch) holds it.
    pub fn claim(self: &Arc<Self>, spec: &JobSpec) -> Option<SpecClaim> {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        spec.hash(&mut h);
        let key = h.finish();
        self.specs.lock().unwrap().insert(key).then(|| SpecClaim {
            tracker: self.clone(),
            key,
        })
    }

    /// Waits for room for one more job (the bound on tracked jobs); the guard keeps
    /// `claim` for as long as the job is tracked.
    pub async fn reserve(self: &Arc<Self>, claim: Option<SpecClaim>) -> JobGuard {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        self.active.fetch_add(1, Ordering::SeqCst);
        JobGuard {
            tracker: self.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            _slot: slot,
            _claim: claim,
        }
    }

    /// Registers the job actor `guard` is held for, so that `cancel_all` reaches it; a job
    /// registered after `cancel_all` is cancelled at once.
    pub(super) fn register(&self, id: u64, job: &Addr<Job>) {
        self.registry.lock().unwrap().insert(id, job.downgrade());
        if self.is_closed() {
            job.do_send(Cancel);
        }
    }

    /// Where stopped jobs go (None: they end `cancelled`).
    pub(super) fn handoff(&self) -> Option<Arc<Handoff>> {
        self.handoff.clone()
    }

    /// True once `cancel_all` ran: start nothing new.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Resolves once no job is tracked.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Asks every job to stop: each is handed over to the next start, or, without a
    /// handoff, reports `job.end` with `cancelled`.
    pub(crate) fn cancel_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Taken, not copied: every job is told once, and the jobs' guards then find an
        // empty registry to remove themselves from (a stop of a million jobs).
        let all = std::mem::take(&mut *self.registry.lock().unwrap());
        if let Some(h) = &self.handoff {
            h.reserve(all.len());
        }
        for job in all.into_values().filter_map(|w| w.upgrade()) {
            // Control message, not data: a job that ended meanwhile is simply gone.
            job.do_send(Cancel);
        }
    }
}

/// A spec being launched or tracked; dropping it lets the spec be launched again.
pub(crate) struct SpecClaim {
    tracker: Arc<JobTracker>,
    key: u64,
}

impl Drop for SpecClaim {
    fn drop(&mut self) {
        self.tracker.specs.lock().unwrap().remove(&self.key);
    }
}

/// Held by a job actor for its whole life; dropping it frees the slot (and the spec).
pub(crate) struct JobGuard {
    tracker: Arc<JobTracker>,
    id: u64,
    _slot: OwnedSemaphorePermit,
    _claim: Option<SpecClaim>,
}

impl JobGuard {
    pub(super) fn tracker(&self) -> &Arc<JobTracker> {
        &self.tracker
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        self.tracker.registry.lock().unwrap().remove(&self.id);
        if self.tracker.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.tracker.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(host: &str, level: crate::model::BackupLevel) -> JobSpec {
        JobSpec {
            kind: crate::model::JobKind::Backup,
            host: host.into(),
            level: Some(level),
            restore: None,
            vars: Default::default(),
        }
    }

    #[test]
    fn a_spec_is_claimed_once_until_its_claim_is_dropped() {
        use crate::model::BackupLevel::{Full, Incremental};
        let t = JobTracker::new(NonZeroUsize::new(10).unwrap(), None);
        let first = t.claim(&backup("h1", Full)).expect("free");
        assert!(t.claim(&backup("h1", Full)).is_none(), "held");
        let other = t.claim(&backup("h2", Full)).expect("another host");
        let level = t.claim(&backup("h1", Incremental)).expect("another level");
        drop(first);
        assert!(t.claim(&backup("h1", Full)).is_some(), "free again");
        drop((other, level));
        assert!(t.specs.lock().unwrap().is_empty());
    }

    #[actix_rt::test]
    async fn tracker_is_idle_once_every_guard_is_dropped() {
        let t = JobTracker::new(NonZeroUsize::new(2).unwrap(), None);
        let a = t.reserve(None).await;
        let b = t.reserve(None).await;
        assert_eq!(t.active(), 2);
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move { t.wait_idle().await })
        };
        drop(a);
        assert!(!waiter.is_finished());
        drop(b);
        waiter.await.unwrap();
        assert_eq!(t.active(), 0);
    }
}
