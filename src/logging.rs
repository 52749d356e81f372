//! The human application log: tracing to stderr and to a daily file. The guards must live
//! until the very end of `main` (dropping them flushes; `lossy(false)`: never drop lines).

use crate::config::LogConfig;
use std::io::IsTerminal;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Keep alive until exit.
pub struct LogGuards(#[allow(dead_code)] Vec<WorkerGuard>);

fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")))
}

/// Stderr only (commands that run before or without a configuration).
pub(crate) fn init_stderr(level: &str) -> LogGuards {
    let (w, g) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let layer = fmt::layer()
        .with_writer(w)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter(level));
    let _ = tracing_subscriber::registry().with(layer).try_init();
    LogGuards(vec![g])
}

/// Stderr and, when `cfg.dir` is set, a daily file `iaso-probe.<date>.log`.
pub fn init(cfg: &LogConfig) -> Result<LogGuards, String> {
    let (w, g) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(crate::progress::StderrBelowProgress);
    let stderr = fmt::layer()
        .with_writer(w)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter(&cfg.level));
    let mut guards = vec![g];
    let file = if cfg.dir.as_os_str().is_empty() {
        None
    } else {
        std::fs::create_dir_all(&cfg.dir)
            .map_err(|e| format!("log.dir {}: {e}", cfg.dir.display()))?;
        let appender = RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix("iaso-probe")
            .filename_suffix("log")
            // Validation accepts log.max_files = 0: it keeps only the current file (the
            // appender needs at least 1).
            .max_log_files(cfg.max_files.max(1))
            .build(&cfg.dir)
            .map_err(|e| format!("log.dir {}: {e}", cfg.dir.display()))?;
        let (fw, fg) = NonBlockingBuilder::default().lossy(false).finish(appender);
        guards.push(fg);
        Some(
            fmt::layer()
                .with_writer(fw)
                .with_ansi(false)
                .with_filter(filter(&cfg.level)),
        )
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    Ok(LogGuards(guards))
}
