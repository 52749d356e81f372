//! The per-environment limiter under load: many tasks on several threads (as job actors on
//! worker arbiters) acquiring permits at a quota. Checks the achieved rate, the busiest
//! one-second window against quota + burst, and the CPU per permit.
//!
//!   cargo bench --bench limiter
//!
//! Figures go to BENCHMARKS.md.

use iaso_probe::limiter::EnvLimits;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// `threads` runtimes, `tasks` tasks each, every task acquiring permits back to back for
/// `secs` seconds.
fn run(rate: u32, burst: u32, threads: usize, tasks: usize, secs: u64) {
    let limits = Arc::new(EnvLimits::new(
        "bench",
        NonZeroU32::new(rate).unwrap(),
        NonZeroU32::new(burst).unwrap(),
        NonZeroUsize::new(100_000).unwrap(),
    ));
    let grants = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let cpu0 = process_cpu();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (limits, grants) = (limits.clone(), grants.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..tasks {
                        let (limits, grants) = (limits.clone(), grants.clone());
                        set.spawn(async move {
                            while Instant::now() < end {
                                let _permit = limits.acquire().await;
                                grants.lock().unwrap().push(Instant::now());
                            }
                        });
                    }
                    while set.join_next().await.is_some() {}
                });
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let cpu = process_cpu() - cpu0;
    let mut g = grants.lock().unwrap().clone();
    g.sort();
    let n = g.len();
    // Busiest window of one second starting at any grant.
    let mut worst = 0;
    let mut j = 0;
    for i in 0..n {
        while j < n && g[j] < g[i] + Duration::from_secs(1) {
            j += 1;
        }
        worst = worst.max(j - i);
    }
    // Tasks queued at the end still get their permits afterwards: the rate counts the
    // measured period only; the window check covers every grant.
    let in_period = g.iter().filter(|t| **t < end).count();
    let achieved = in_period as f64 / secs as f64;
    println!(
        "quota {rate}/s burst {burst}, {threads} threads x {tasks} tasks, {secs} s: {in_period} permits = {achieved:.0}/s ({:.1}% of quota); busiest 1 s window {worst} (limit {}){}; CPU {:.2} s for {} permits = {:.1} µs/permit",
        achieved * 100.0 / rate as f64,
        rate + burst,
        if worst as u32 > rate + burst { " OVER" } else { "" },
        cpu.as_secs_f64(),
        n,
        cpu.as_secs_f64() * 1e6 / n.max(1) as f64
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    run(100, 5, 2, 1_000, 5);
    run(2_000, 50, 2, 5_000, 5);
    run(10_000, 50, 2, 5_000, 5);
}
