//! `max_launches_per_minute`: launches of one environment go out at most one per
//! `60 s / N`, so no minute holds more than N, whatever the schedule says is due (a start
//! after a long stop finds a whole fleet overdue). On tokio's clock: paused in tests.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct LaunchPacer {
    gap: Duration,
    /// The earliest instant of the next launch. A std mutex: never held across an await.
    next: Mutex<Option<Instant>>,
}

impl LaunchPacer {
    /// None for 0 (no limit).
    pub fn new(per_minute: u32) -> Option<Self> {
        (per_minute > 0).then(|| Self {
            gap: Duration::from_secs(60) / per_minute,
            next: Mutex::new(None),
        })
    }

    /// Waits for this launch's turn.
    pub async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().unwrap();
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.gap);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn no_minute_holds_more_than_the_limit() {
        let p = Arc::new(LaunchPacer::new(10).unwrap());
        let t0 = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..35)
            .map(|_| {
                let (p, times) = (p.clone(), times.clone());
                tokio::spawn(async move {
                    p.wait().await;
                    times.lock().unwrap().push(t0.elapsed());
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let mut times = times.lock().unwrap().clone();
        times.sort();
        assert_eq!(times[0], Duration::ZERO, "the first launch does not wait");
        for (i, t) in times.iter().enumerate() {
            let in_minute = times
                .iter()
                .filter(|u| **u >= *t && **u < *t + Duration::from_secs(60))
                .count();
            assert!(
                in_minute <= 10,
                "{in_minute} launches in the minute from {t:?} (#{i})"
            );
        }
        assert_eq!(*times.last().unwrap(), Duration::from_secs(6 * 34));
        assert!(LaunchPacer::new(0).is_none());
    }
}
