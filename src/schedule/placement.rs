//! Where a spec never launched before falls in its interval: at a stable point given by a
//! hash of its environment and key, so a fleet's first launches spread evenly over the whole
//! interval (not the first minute after a start) and every restart finds the same points.

use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A hash of `env` and `key` that is the same in every process and version (SHA-256; the
/// std hasher is randomly seeded per process).
pub fn stable_hash(env: &str, key: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(env.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("32-byte digest"))
}

/// The spec's phase in `period`, in milliseconds.
pub(crate) fn phase_ms(hash: u64, period: Duration) -> i64 {
    let p = (period.as_millis() as u64).max(1);
    (hash % p) as i64
}

/// The first of the spec's points at or after `after`. Points are `phase + k × interval`
/// counted from the Unix epoch: independent of when the prober started.
pub fn next_point(hash: u64, interval: Duration, after: DateTime<Utc>) -> DateTime<Utc> {
    let period = (interval.as_millis() as i64).max(1);
    let phase = phase_ms(hash, interval);
    let t = after.timestamp_millis();
    let k = (t - phase).div_euclid(period);
    let mut p = phase + k * period;
    if p < t {
        p += period;
    }
    Utc.timestamp_millis_opt(p).single().unwrap_or(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_across_processes() {
        // A literal value: a change of hash would move every host of every fleet.
        assert_eq!(
            stable_hash("lab", "backup web-01"),
            stable_hash("lab", "backup web-01")
        );
        assert_ne!(
            stable_hash("lab", "backup web-01"),
            stable_hash("prod", "backup web-01")
        );
        assert_eq!(
            stable_hash("lab", "backup web-01"),
            16_233_423_447_747_983_588
        );
    }

    #[test]
    fn the_next_point_is_the_first_at_or_after_and_one_interval_apart() {
        let h = stable_hash("lab", "backup web-01");
        let hour = Duration::from_secs(3600);
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 10, 0, 0).unwrap();
        let p = next_point(h, hour, t0);
        assert!(p >= t0 && p < t0 + chrono::Duration::hours(1), "{p}");
        assert_eq!(next_point(h, hour, p), p, "a point is its own next point");
        let later = next_point(h, hour, p + chrono::Duration::milliseconds(1));
        assert_eq!(later - p, chrono::Duration::hours(1));
        // Restarting anywhere before the point finds the same point.
        for s in [1, 60, 600] {
            let t = t0 + chrono::Duration::seconds(s);
            if t <= p {
                assert_eq!(next_point(h, hour, t), p);
            }
        }
    }
}
