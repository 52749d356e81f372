//! Stop signals. SIGINT, SIGTERM and SIGHUP ask for a graceful stop (SIGHUP does not reload
//! the configuration: that is not built; under a supervisor that restarts the process, the
//! stop is the reload). Signals within [`SAME_REQUEST_WINDOW`] of the first are the same
//! request: `timeout` signals its child and then the child's process group ~0.6 ms later,
//! and a terminal's Ctrl-C reaches every process of the group. A signal after the window
//! means "now": the process exits at once without waiting for the drain.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Signals closer than this to the first are the same stop request.
pub(crate) const SAME_REQUEST_WINDOW: Duration = Duration::from_secs(1);

/// A signal that asks the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Interrupt,
    Terminate,
    Hangup,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Hangup => "SIGHUP",
        }
    }

    /// 128 + the signal number, the shell's convention for "ended by this signal".
    pub fn exit_code(self) -> i32 {
        128 + match self {
            StopSignal::Hangup => 1,
            StopSignal::Interrupt => 2,
            StopSignal::Terminate => 15,
        }
    }
}

/// What one more signal means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first: stop gracefully.
    First,
    /// Within the window of the first: the same request, nothing more to do.
    Repeat,
    /// Later: stop now.
    Second,
}

/// Counts signals against the window of the first (a pure state machine, tested without
/// a clock).
#[derive(Debug, Default)]
pub(crate) struct SignalCounter {
    first_at: Option<Instant>,
}

impl SignalCounter {
    pub(crate) fn on_signal(&mut self, now: Instant) -> Verdict {
        match self.first_at {
            None => {
                self.first_at = Some(now);
                Verdict::First
            }
            Some(t) if now.saturating_duration_since(t) < SAME_REQUEST_WINDOW => Verdict::Repeat,
            Some(_) => Verdict::Second,
        }
    }
}

/// The stop signals, registered at once (a signal arriving before the first wait is kept).
pub(crate) struct Signals {
    #[cfg(unix)]
    streams: Vec<(StopSignal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Registers the handlers; must run inside a tokio runtime. From then on these signals
    /// no longer end the process by themselves.
    pub(crate) fn register() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let kinds = [
                (StopSignal::Interrupt, SignalKind::interrupt()),
                (StopSignal::Terminate, SignalKind::terminate()),
                (StopSignal::Hangup, SignalKind::hangup()),
            ];
            let streams = kinds
                .into_iter()
                .filter_map(|(s, k)| match signal(k) {
                    Ok(stream) => Some((s, stream)),
                    Err(e) => {
                        tracing::warn!(signal = s.name(), error = %e, "cannot handle this signal");
                        None
                    }
                })
                .collect();
            Self { streams }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next stop signal.
    pub async fn recv(&mut self) -> StopSignal {
        #[cfg(unix)]
        {
            if self.streams.is_empty() {
                return std::future::pending().await;
            }
            let waits = self.streams.iter_mut().map(|(s, stream)| {
                Box::pin(async move {
                    stream.recv().await;
                    *s
                })
            });
            futures_util::future::select_all(waits).await.0
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            StopSignal::Interrupt
        }
    }
}

/// Which signal asked the process to stop, once one did.
pub(crate) type FirstSignal = Arc<OnceLock<StopSignal>>;

/// Watches the stop signals for the rest of the process (spawned on the current actix or
/// tokio local set). Returns the shutdown future, which resolves at the first signal, and
/// the cell that says which. A signal after [`SAME_REQUEST_WINDOW`] calls `on_second`
/// (which is expected to exit the process).
pub(crate) fn watch(
    on_second: impl Fn(StopSignal) + 'static,
) -> (impl Future<Output = ()> + 'static, FirstSignal) {
    let mut signals = Signals::register();
    let first: FirstSignal = Arc::new(OnceLock::new());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let cell = first.clone();
    actix_rt::spawn(async move {
        let mut counter = SignalCounter::default();
        let mut tx = Some(tx);
        loop {
            let sig = signals.recv().await;
            match counter.on_signal(Instant::now()) {
                Verdict::First => {
                    let _ = cell.set(sig);
                    tracing::info!(signal = sig.name(), "stop requested: stopping gracefully (another signal more than 1 s later exits at once)");
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                Verdict::Repeat => {
                    tracing::info!(
                        signal = sig.name(),
                        "signal within 1 s of the first: the same stop request"
                    )
                }
                Verdict::Second => on_second(sig),
            }
        }
    });
    let shutdown = async move {
        // The watcher never drops the sender before sending: if it did (runtime gone),
        // no signal came, so no shutdown.
        if rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    (shutdown, first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_within_one_second_of_the_first_are_the_same_request() {
        let mut c = SignalCounter::default();
        let t0 = Instant::now();
        assert_eq!(c.on_signal(t0), Verdict::First);
        // `timeout`: child, then its process group 0.6 ms later.
        assert_eq!(
            c.on_signal(t0 + Duration::from_micros(600)),
            Verdict::Repeat
        );
        assert_eq!(
            c.on_signal(t0 + Duration::from_millis(999)),
            Verdict::Repeat
        );
        assert_eq!(c.on_signal(t0 + Duration::from_secs(1)), Verdict::Second);
        assert_eq!(c.on_signal(t0 + Duration::from_secs(5)), Verdict::Second);
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(StopSignal::Interrupt.exit_code(), 130);
        assert_eq!(StopSignal::Terminate.exit_code(), 143);
        assert_eq!(StopSignal::Hangup.exit_code(), 129);
    }
}
