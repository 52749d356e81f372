//! The journal's fsync thread. Every fsync of a journal (the segment a rotation closes, the
//! periodic one, the stop's) runs there, one after the other in the order asked: none blocks
//! the arbiter the sink shares with every environment actor (an fsync can take tens of
//! milliseconds, seconds on a loaded disk), and a segment is never made durable after a
//! later one, as when the rotation fsynced inline.

use std::fs::File;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

struct Request {
    file: File,
    /// A periodic fsync: clears the `periodic` flag when it starts.
    periodic: bool,
    /// Told the outcome of this fsync and of every one before it since the last report.
    done: Option<tokio::sync::oneshot::Sender<io::Result<()>>>,
}

/// The handle of one journal's fsync thread; the thread ends once the handle is dropped and
/// what was queued is done.
pub(crate) struct Syncer {
    tx: mpsc::Sender<Request>,
    /// A periodic fsync is queued and not started yet: another one would add nothing (and,
    /// on a disk slower than the interval, the queue would grow without bound).
    periodic: Arc<AtomicBool>,
}

impl Syncer {
    pub fn start() -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Request>();
        // The first failure not yet reported to a waiting caller (an fsync queued without
        // one): the next `sync` reports it, so a stop never says "durable" after a lost one.
        let unreported: Arc<Mutex<Option<String>>> = Arc::default();
        let periodic = Arc::new(AtomicBool::new(false));
        let queued = periodic.clone();
        std::thread::Builder::new()
            .name("journal-fsync".into())
            .spawn(move || {
                for req in rx {
                    if req.periodic {
                        queued.store(false, Ordering::SeqCst);
                    }
                    let res = req.file.sync_data();
                    if let Err(e) = &res {
                        tracing::error!(error = %e, "journal fsync failed");
                    }
                    match req.done {
                        Some(done) => {
                            let earlier = unreported.lock().unwrap().take();
                            let res = match (res, earlier) {
                                (Ok(()), Some(e)) => Err(io::Error::other(format!(
                                    "an earlier journal fsync failed: {e}"
                                ))),
                                (res, _) => res,
                            };
                            // The caller may have given up waiting: nothing to tell.
                            let _ = done.send(res);
                        }
                        None => {
                            if let Err(e) = res {
                                unreported.lock().unwrap().get_or_insert(e.to_string());
                            }
                        }
                    }
                }
            })?;
        Ok(Self { tx, periodic })
    }

    /// Queues an fsync of `file` and returns at once (a failure is logged, and reported by
    /// the next [`sync`](Self::sync)).
    pub(crate) fn sync_later(&self, file: File) {
        // The thread only ends once `tx` is dropped: the send cannot fail.
        let _ = self.tx.send(Request {
            file,
            periodic: false,
            done: None,
        });
    }

    /// The periodic fsync of the segment being written: queued like
    /// [`sync_later`](Self::sync_later), unless one is already waiting (it will cover what
    /// was written until it starts).
    pub(crate) fn sync_periodic(&self, file: impl FnOnce() -> io::Result<File>) -> io::Result<()> {
        if self.periodic.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let file = file().inspect_err(|_| self.periodic.store(false, Ordering::SeqCst))?;
        let _ = self.tx.send(Request {
            file,
            periodic: true,
            done: None,
        });
        Ok(())
    }

    /// Fsyncs `file` after every fsync queued before; resolves once it is durable, with an
    /// error if it or an earlier queued one failed.
    pub fn sync(&self, file: File) -> impl Future<Output = io::Result<()>> + 'static {
        let (done, rx) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Request {
            file,
            periodic: false,
            done: Some(done),
        });
        async move {
            rx.await
                .unwrap_or_else(|_| Err(io::Error::other("the journal fsync thread is gone")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn a_sync_resolves_after_every_fsync_queued_before_it() {
        let d = tempfile::tempdir().unwrap();
        let s = Syncer::start().unwrap();
        for n in 0..5 {
            let mut f = File::create(d.path().join(format!("f{n}"))).unwrap();
            f.write_all(b"x\n").unwrap();
            s.sync_later(f);
        }
        let last = File::create(d.path().join("last")).unwrap();
        s.sync(last).await.unwrap();
    }

    #[tokio::test]
    async fn a_periodic_fsync_is_queued_once_until_it_starts() {
        let d = tempfile::tempdir().unwrap();
        let s = Syncer::start().unwrap();
        let opened = std::sync::atomic::AtomicU32::new(0);
        let open = || {
            opened.fetch_add(1, Ordering::SeqCst);
            File::create(d.path().join("f"))
        };
        s.periodic.store(true, Ordering::SeqCst); // as if one were waiting
        s.sync_periodic(open).unwrap();
        assert_eq!(opened.load(Ordering::SeqCst), 0, "not queued twice");
        s.periodic.store(false, Ordering::SeqCst);
        s.sync_periodic(open).unwrap();
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        s.sync(File::create(d.path().join("g")).unwrap())
            .await
            .unwrap();
        assert!(!s.periodic.load(Ordering::SeqCst), "started, so cleared");
    }

    #[tokio::test]
    async fn a_failed_queued_fsync_is_reported_by_the_next_sync() {
        let d = tempfile::tempdir().unwrap();
        let s = Syncer::start().unwrap();
        // fsync of a read-only handle of a pipe fails (EINVAL): a stand-in for a disk error.
        let (r, _w) = std::io::pipe().unwrap();
        s.sync_later(File::from(std::os::fd::OwnedFd::from(r)));
        let ok = File::create(d.path().join("ok")).unwrap();
        let e = s.sync(ok).await.unwrap_err();
        assert!(
            e.to_string().contains("an earlier journal fsync failed"),
            "{e}"
        );
        // Reported once.
        let ok = File::open(d.path().join("ok")).unwrap();
        s.sync(ok).await.unwrap();
    }
}
