//! The portal's own rate limit: one token bucket over all endpoints.
//!
//! Time is passed in (milliseconds since the simulator's start), so the bucket is a pure
//! state machine that tests drive without sleeping.

/// A token bucket refilled at `rate_per_sec`, holding at most `burst` tokens.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate_per_sec: f64::from(rate_per_sec.max(1)),
            burst,
            tokens: burst,
            last_ms: 0,
        }
    }

    /// Takes a token at `now_ms`; when there is none, returns how many whole seconds to wait
    /// (at least 1), for the `Retry-After` header.
    pub(crate) fn try_take(&mut self, now_ms: u64) -> Result<(), u64> {
        let elapsed_ms = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens =
            (self.tokens + elapsed_ms as f64 * self.rate_per_sec / 1000.0).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait_secs = (1.0 - self.tokens) / self.rate_per_sec;
            Err((wait_secs.ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_bucket_lets_a_burst_through_then_refuses() {
        let mut b = TokenBucket::new(10, 3);
        assert_eq!(b.try_take(0), Ok(()));
        assert_eq!(b.try_take(0), Ok(()));
        assert_eq!(b.try_take(0), Ok(()));
        assert_eq!(b.try_take(0), Err(1));
    }

    #[test]
    fn bucket_refills_at_the_rate() {
        let mut b = TokenBucket::new(10, 1);
        assert_eq!(b.try_take(0), Ok(()));
        assert_eq!(b.try_take(99), Err(1));
        assert_eq!(b.try_take(100), Ok(()));
        // A long pause refills only up to the burst.
        assert_eq!(b.try_take(60_000), Ok(()));
        assert_eq!(b.try_take(60_000), Err(1));
    }

    #[test]
    fn first_second_lets_through_the_burst_plus_the_refill() {
        let mut b = TokenBucket::new(5, 2);
        let allowed = (0..1_000u64).filter(|ms| b.try_take(*ms).is_ok()).count();
        // Two at once, then one every 200 ms (at 200, 400, 600 and 800).
        assert_eq!(allowed, 6);
    }

    #[test]
    fn slow_rate_asks_to_retry_after_several_seconds() {
        let mut b = TokenBucket::new(1, 1);
        assert_eq!(b.try_take(0), Ok(()));
        assert_eq!(b.try_take(0), Err(1));
        let mut b = TokenBucket {
            rate_per_sec: 0.25,
            ..TokenBucket::new(1, 1)
        };
        assert_eq!(b.try_take(0), Ok(()));
        assert_eq!(b.try_take(0), Err(4));
    }
}
