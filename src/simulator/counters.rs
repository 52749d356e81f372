//! What the simulator has seen and answered, for tests and for `GET /_sim/counters`.
//!
//! Counting happens when the answer is decided, before the latency is waited out, so a
//! snapshot never misses a request that a client could already have seen answered.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::ENDPOINT_NAMES;

/// The key of requests to paths that are no endpoint (answered 404).
pub const OTHER_ENDPOINT: &str = "other";

/// How many request offsets are kept (16 MB); later requests are counted in
/// `request_offsets_dropped` instead.
pub(crate) const MAX_REQUEST_OFFSETS: usize = 2_000_000;

/// Counters of one endpoint. Every request ends in exactly one of `ok_2xx`, `client_4xx`
/// and `server_5xx`; the other counters are parts of those.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCounters {
    /// Requests received (including rate-limited and faulty ones).
    pub requests: u64,
    /// Answers with a 2xx status (including malformed bodies).
    pub ok_2xx: u64,
    /// Answers with a 4xx status (including 401 and 429).
    pub client_4xx: u64,
    /// Answers with a 5xx status (including the 504 after a hang).
    pub server_5xx: u64,
    /// 401 answers: bad credentials, or a missing, unknown or expired token.
    pub unauthorized_401: u64,
    /// 429 answers from the simulator's own rate limit.
    pub rate_limited_429: u64,
    /// 200 answers whose body was made invalid JSON on purpose.
    pub malformed: u64,
    /// Requests made to hang for `hang_ms` (then answered 504).
    pub timeouts: u64,
}

/// A consistent copy of all counters at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersSnapshot {
    /// Counters per endpoint name (`alive`, `health`, `auth`, `backups`, `job_status`,
    /// `restores`, and `other` for unknown paths); every name is present.
    pub endpoints: BTreeMap<String, EndpointCounters>,
    /// Logins answered with a token.
    pub logins_ok: u64,
    /// Logins refused for bad credentials (401).
    pub logins_failed: u64,
    /// Backup jobs launched (answered with a job id; includes jobs that failed to start).
    pub backups_launched: u64,
    /// Restore jobs launched.
    pub restores_launched: u64,
    /// Job status answers (200, not malformed) whose status differs from the previous one answered for the
    /// same job; the first answer for a job counts as a change.
    pub status_changes_served: u64,
    /// Jobs for which a terminal status was answered at least once.
    pub jobs_terminal_served: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Milliseconds since the simulator started, of every counted request, in order of
    /// arrival (at most `MAX_REQUEST_OFFSETS`).
    pub request_offsets_ms: Vec<u64>,
    /// Requests not in `request_offsets_ms` because it was full.
    pub request_offsets_dropped: u64,
}

impl CountersSnapshot {
    /// Counters with every endpoint name present and zero.
    pub fn new() -> Self {
        let endpoints = ENDPOINT_NAMES
            .iter()
            .chain([&OTHER_ENDPOINT])
            .map(|name| ((*name).to_owned(), EndpointCounters::default()))
            .collect();
        Self {
            endpoints,
            ..Self::default()
        }
    }

    /// The counters of `endpoint` (all zero when it was never seen).
    pub fn endpoint(&self, endpoint: &str) -> EndpointCounters {
        self.endpoints.get(endpoint).cloned().unwrap_or_default()
    }

    /// Requests over all endpoints.
    #[cfg(test)]
    pub(crate) fn total_requests(&self) -> u64 {
        self.endpoints.values().map(|c| c.requests).sum()
    }

    /// The largest number of requests that arrived within any `window_ms` long interval
    /// (half-open: requests `window_ms` apart are not in the same window). Exact over
    /// `request_offsets_ms`.
    pub fn max_requests_in_window(&self, window_ms: u64) -> u64 {
        if window_ms == 0 {
            return 0;
        }
        let sorted;
        let offsets: &[u64] = // `slice::is_sorted` needs Rust 1.82; the crate supports 1.80.
        if self.request_offsets_ms.windows(2).all(|w| w[0] <= w[1]) {
            &self.request_offsets_ms
        } else {
            let mut copy = self.request_offsets_ms.clone();
            copy.sort_unstable();
            sorted = copy;
            &sorted
        };
        let mut best = 0;
        let mut start = 0;
        for (end, &t) in offsets.iter().enumerate() {
            while t - offsets[start] >= window_ms {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best as u64
    }

    /// Requests per whole second since the simulator started (seconds with no request are
    /// absent).
    #[cfg(test)]
    pub(crate) fn requests_per_second(&self) -> BTreeMap<u64, u64> {
        let mut per_second = BTreeMap::new();
        for t in &self.request_offsets_ms {
            *per_second.entry(t / 1000).or_insert(0) += 1;
        }
        per_second
    }

    /// Counts a request to `endpoint` that arrived `offset_ms` after the start.
    pub(crate) fn record_request(&mut self, endpoint: &str, offset_ms: u64) {
        self.endpoint_mut(endpoint).requests += 1;
        if self.request_offsets_ms.len() < MAX_REQUEST_OFFSETS {
            self.request_offsets_ms.push(offset_ms);
        } else {
            self.request_offsets_dropped += 1;
        }
    }

    /// Counts the class of the answer to a request to `endpoint`.
    pub(crate) fn record_status(&mut self, endpoint: &str, status: u16) {
        let c = self.endpoint_mut(endpoint);
        match status {
            200..=299 => c.ok_2xx += 1,
            400..=499 => c.client_4xx += 1,
            _ => c.server_5xx += 1,
        }
        match status {
            401 => c.unauthorized_401 += 1,
            429 => c.rate_limited_429 += 1,
            _ => {}
        }
    }

    pub(crate) fn endpoint_mut(&mut self, endpoint: &str) -> &mut EndpointCounters {
        self.endpoints.entry(endpoint.to_owned()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_offsets(offsets: &[u64]) -> CountersSnapshot {
        CountersSnapshot {
            request_offsets_ms: offsets.to_vec(),
            ..CountersSnapshot::new()
        }
    }

    #[test]
    fn new_counters_list_every_endpoint_and_other() {
        let c = CountersSnapshot::new();
        let names: Vec<&str> = c.endpoints.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "alive",
                "auth",
                "backups",
                "health",
                "job_status",
                "other",
                "restores"
            ]
        );
    }

    #[test]
    fn max_window_counts_a_sliding_second() {
        // Two bursts straddling a second boundary: per calendar second they look like 3 and 3,
        // but 5 requests fall within one sliding second (900..1_800).
        let c = with_offsets(&[100, 900, 950, 1_000, 1_100, 1_800, 2_500]);
        assert_eq!(c.max_requests_in_window(1_000), 5);
        assert_eq!(
            c.requests_per_second(),
            BTreeMap::from([(0, 3), (1, 3), (2, 1)])
        );
    }

    #[test]
    fn max_window_is_half_open() {
        let c = with_offsets(&[0, 1_000, 2_000]);
        assert_eq!(c.max_requests_in_window(1_000), 1);
        assert_eq!(c.max_requests_in_window(1_001), 2);
        assert_eq!(c.max_requests_in_window(0), 0);
    }

    #[test]
    fn max_window_counts_requests_in_the_same_millisecond() {
        let c = with_offsets(&[5, 5, 5, 7]);
        assert_eq!(c.max_requests_in_window(1), 3);
        assert_eq!(c.max_requests_in_window(3), 4);
    }

    #[test]
    fn max_window_sorts_offsets_that_are_out_of_order() {
        let c = with_offsets(&[1_500, 10, 1_400, 20]);
        assert_eq!(c.max_requests_in_window(100), 2);
        assert_eq!(c.max_requests_in_window(10_000), 4);
    }

    #[test]
    fn max_window_of_no_requests_is_zero() {
        assert_eq!(CountersSnapshot::new().max_requests_in_window(1_000), 0);
    }

    #[test]
    fn status_classes_and_their_parts_are_counted() {
        let mut c = CountersSnapshot::new();
        for status in [200, 401, 429, 404, 503, 504] {
            c.record_request("auth", 0);
            c.record_status("auth", status);
        }
        let auth = c.endpoint("auth");
        assert_eq!(auth.requests, 6);
        assert_eq!((auth.ok_2xx, auth.client_4xx, auth.server_5xx), (1, 3, 2));
        assert_eq!((auth.unauthorized_401, auth.rate_limited_429), (1, 1));
        assert_eq!(c.total_requests(), 6);
    }

    #[test]
    fn offsets_beyond_the_cap_are_counted_as_dropped() {
        let mut c = CountersSnapshot::new();
        c.request_offsets_ms = vec![0; MAX_REQUEST_OFFSETS];
        c.record_request("alive", 1);
        assert_eq!(c.request_offsets_ms.len(), MAX_REQUEST_OFFSETS);
        assert_eq!(c.request_offsets_dropped, 1);
        assert_eq!(c.endpoint("alive").requests, 1);
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let mut c = with_offsets(&[1, 2]);
        c.logins_ok = 3;
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<CountersSnapshot>(&json).unwrap(), c);
    }
}
