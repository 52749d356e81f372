//! The due queue of one scenario (the backups or the restores of an environment): each spec
//! is due one interval after its last attempt, a spec never seen before at its stable
//! point ([`super::placement`]), and with a window only inside it.

use super::calendar::Calendar;
use super::placement::{next_point, phase_ms, stable_hash};
use super::spec_key;
use super::window::Window;
use crate::model::JobSpec;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::time::Duration;

/// How one scenario is scheduled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub interval: Duration,
    pub window: Option<Window>,
    /// Instead of the interval: every spec is due at each occurrence (inside the window).
    pub cron: Option<Calendar>,
}

impl Rule {
    fn interval(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.interval).unwrap_or(chrono::Duration::days(365))
    }

    /// When a spec is next due, seen at `now`: `last` is its last attempt (None: never).
    ///
    /// Without a window: one interval after the last attempt (at once when that is past), or
    /// at the spec's stable point in the interval. With a window: the spec keeps a stable
    /// point in the window (`opening + phase + k × interval`, the phase below both the
    /// interval and the window's length, scaled to the night's length on a DST night); the
    /// next one is the first point at least one interval after the last attempt, less a
    /// quarter of the interval (at most two hours) so that a DST change (the window opening
    /// an hour earlier in UTC) or a late tick does not skip a night. Overdue inside the
    /// window: now.
    pub(crate) fn next_due(
        &self,
        hash: u64,
        last: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        if let Some(c) = &self.cron {
            return self.next_by_calendar(c, last, now);
        }
        let interval = self.interval();
        match (&self.window, last) {
            (None, None) => next_point(hash, self.interval, now),
            (None, Some(l)) => (l + interval).max(now),
            (Some(w), None) => self.point_in_window(w, hash, now),
            (Some(w), Some(l)) => {
                if l + interval <= now && w.contains(now) {
                    return now;
                }
                let tolerance = (interval / 4).min(chrono::Duration::hours(2));
                self.point_in_window(w, hash, (l + interval - tolerance).max(now))
            }
        }
    }

    /// With a cron expression: the first occurrence (inside the window) after the last
    /// attempt; one that passed while the prober was stopped is made up once, at once
    /// (inside the window) or at the next occurrence. Never attempted: the next occurrence.
    fn next_by_calendar(
        &self,
        c: &Calendar,
        last: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let Some(l) = last else {
            return self.occurrence_in_window(c, now, true);
        };
        let next = self.occurrence_in_window(c, l, false);
        if next > now {
            return next;
        }
        match &self.window {
            Some(w) if !w.contains(now) => self.occurrence_in_window(c, now, true),
            _ => now,
        }
    }

    /// The first occurrence after `from` that falls inside the window.
    fn occurrence_in_window(
        &self,
        c: &Calendar,
        from: DateTime<Utc>,
        inclusive: bool,
    ) -> DateTime<Utc> {
        let (mut from, mut inclusive) = (from, inclusive);
        for _ in 0..1000 {
            let Some(t) = c.next(from, inclusive) else {
                break;
            };
            match &self.window {
                Some(w) if !w.contains(t) => {
                    from = w.span_at_or_after(t).0;
                    inclusive = true;
                }
                _ => return t,
            }
        }
        // No occurrence inside the window in years: try again in a day.
        from + chrono::Duration::days(1)
    }

    /// Found due long after its time, outside the window: its next time inside it.
    fn next_in_window(&self, w: &Window, hash: u64, now: DateTime<Utc>) -> DateTime<Utc> {
        match &self.cron {
            Some(c) => self.occurrence_in_window(c, now, true),
            None => self.point_in_window(w, hash, now),
        }
    }

    /// The spec's first point in `w` at or after `t`.
    fn point_in_window(&self, w: &Window, hash: u64, t: DateTime<Utc>) -> DateTime<Utc> {
        let interval = self.interval();
        let mut from = t;
        for _ in 0..8 {
            let (open, close) = w.span_at_or_after(from);
            // The phase is taken in the nominal window and scaled to this night's length:
            // a DST night (7 or 9 hours for an 8-hour window) keeps every spec's place.
            let nominal = w.nominal_len().max(Duration::from_secs(1));
            let len = (close - open).num_milliseconds().max(0) as i128;
            let phase = phase_ms(hash, self.interval.min(nominal)) as i128;
            let scaled = phase * len / nominal.as_millis() as i128;
            let mut p = open + chrono::Duration::milliseconds(scaled as i64);
            if p < t {
                let behind = (t - p).num_milliseconds();
                let step = interval.num_milliseconds().max(1);
                let k = (behind + step - 1) / step;
                p += chrono::Duration::milliseconds(k.saturating_mul(step));
            }
            if p < close {
                return p;
            }
            from = close;
        }
        t
    }
}

/// A spec due inside its window but taken up to this late, after the window closed, is
/// still launched (the queue is looked at once a second).
const LATE_GRACE: chrono::Duration = chrono::Duration::minutes(5);

struct Entry {
    spec: JobSpec,
    key: String,
    hash: u64,
    last: Option<DateTime<Utc>>,
    /// None while taken (dispatched, not yet attempted).
    due: Option<DateTime<Utc>>,
}

/// The specs of one scenario, ordered by when they are due.
pub struct SpecQueue {
    rule: Rule,
    entries: Vec<Entry>,
    due: BTreeSet<(DateTime<Utc>, usize)>,
}

impl SpecQueue {
    /// `last` gives each spec's last attempt from the schedule state (by [`spec_key`]).
    pub fn new(
        env: &str,
        rule: Rule,
        specs: Vec<JobSpec>,
        last: impl Fn(&str) -> Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        let mut q = Self {
            rule,
            entries: Vec::with_capacity(specs.len()),
            due: BTreeSet::new(),
        };
        for spec in specs {
            let key = spec_key(&spec);
            let hash = stable_hash(env, &key);
            let l = last(&key);
            let due = q.rule.next_due(hash, l, now);
            q.due.insert((due, q.entries.len()));
            q.entries.push(Entry {
                spec,
                key,
                hash,
                last: l,
                due: Some(due),
            });
        }
        q
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When the earliest queued spec is due.
    pub(crate) fn next_due(&self) -> Option<DateTime<Utc>> {
        self.due.first().map(|(t, _)| *t)
    }

    /// When spec `i` is due (None while taken).
    #[cfg(test)]
    pub(crate) fn due_of(&self, i: usize) -> Option<DateTime<Utc>> {
        self.entries[i].due
    }

    pub fn key(&self, i: usize) -> &str {
        &self.entries[i].key
    }

    /// Takes every spec due at `now` out of the queue (until [`Self::attempted`] or
    /// [`Self::abandoned`]). A spec found due outside its window (the prober was late) goes
    /// back to its next point in the window.
    pub(crate) fn take_due(&mut self, now: DateTime<Utc>) -> Vec<(usize, JobSpec)> {
        let mut out = Vec::new();
        while let Some(&(t, i)) = self.due.first() {
            if t > now {
                break;
            }
            self.due.pop_first();
            let e = &mut self.entries[i];
            if let Some(w) = &self.rule.window {
                // Due inside the window, taken a tick later: still launched. Found due long
                // after its time (the prober was stopped or suspended) outside the window:
                // moved to its next point in the window.
                if !w.contains(now) && (!w.contains(t) || now - t > LATE_GRACE) {
                    let again = self.rule.next_in_window(w, e.hash, now);
                    e.due = Some(again);
                    self.due.insert((again, i));
                    continue;
                }
            }
            e.due = None;
            out.push((i, e.spec.clone()));
        }
        out
    }

    /// Spec `i`'s launch was attempted (or skipped) at `at`: due again per the rule.
    pub(crate) fn attempted(&mut self, i: usize, at: DateTime<Utc>) {
        let e = &mut self.entries[i];
        e.last = Some(at);
        let due = self.rule.next_due(e.hash, Some(at), at);
        if let Some(old) = e.due.replace(due) {
            self.due.remove(&(old, i));
        }
        self.due.insert((due, i));
    }

    /// Spec `i` was taken but not attempted (a stop came first): due again from `now`.
    #[cfg(test)]
    pub(crate) fn abandoned(&mut self, i: usize, now: DateTime<Utc>) {
        let e = &mut self.entries[i];
        if e.due.is_none() {
            let due = self.rule.next_due(e.hash, e.last, now);
            e.due = Some(due);
            self.due.insert((due, i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::window::parse_tz;
    use super::*;
    use crate::model::{BackupLevel, JobKind};
    use std::collections::{BTreeMap, BTreeSet};

    fn specs(n: usize) -> Vec<JobSpec> {
        (0..n)
            .map(|i| JobSpec {
                kind: JobKind::Backup,
                host: format!("host-{i:05}"),
                level: Some(BackupLevel::Incremental),
                restore: None,
                vars: Default::default(),
            })
            .collect()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn hourly() -> Rule {
        Rule {
            interval: Duration::from_secs(3600),
            window: None,
            cron: None,
        }
    }

    /// Drives `q` with a fake clock from `from` to `to` in `step`s, attempting every spec
    /// taken at once; returns (time, key) of every attempt.
    fn drive(
        q: &mut SpecQueue,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: chrono::Duration,
    ) -> Vec<(DateTime<Utc>, String)> {
        let mut out = Vec::new();
        let mut now = from;
        while now < to {
            for (i, _) in q.take_due(now) {
                q.attempted(i, now);
                out.push((now, q.key(i).to_owned()));
            }
            now += step;
        }
        out
    }

    #[test]
    fn ten_thousand_new_hosts_spread_over_the_hour_no_minute_above_twice_the_even_share() {
        let t0 = utc("2026-01-05T10:17:23Z");
        let mut q = SpecQueue::new("prod", hourly(), specs(10_000), |_| None, t0);
        let launches = drive(
            &mut q,
            t0,
            t0 + chrono::Duration::hours(1),
            chrono::Duration::milliseconds(10),
        );
        assert_eq!(
            launches.len(),
            10_000,
            "every host exactly once in its first hour"
        );
        let distinct: std::collections::HashSet<_> = launches.iter().map(|(_, k)| k).collect();
        assert_eq!(distinct.len(), 10_000);
        let mut per_minute: BTreeMap<i64, usize> = BTreeMap::new();
        for (t, _) in &launches {
            *per_minute.entry((*t - t0).num_minutes()).or_default() += 1;
        }
        let even = 10_000 / 60;
        let worst = per_minute.values().max().copied().unwrap();
        assert_eq!(per_minute.len(), 60, "launches in every minute of the hour");
        assert!(
            worst <= 2 * even,
            "a minute held {worst} launches (even share {even})"
        );
        let first_minute = per_minute[&0];
        assert!(
            first_minute <= 2 * even,
            "the first minute held {first_minute}"
        );
    }

    #[test]
    fn a_restart_inside_the_interval_finds_nothing_due_before_its_time() {
        // Two back-to-back half-hour runs sharing the state: each host launched once.
        let t0 = utc("2026-01-05T10:00:00Z");
        let mut state: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        let mut q = SpecQueue::new("lab", hourly(), specs(12), |_| None, t0);
        let half = t0 + chrono::Duration::minutes(30);
        let first = drive(&mut q, t0, half, chrono::Duration::seconds(1));
        for (t, k) in &first {
            state.insert(k.clone(), *t);
        }
        let mut q = SpecQueue::new("lab", hourly(), specs(12), |k| state.get(k).copied(), half);
        let second = drive(
            &mut q,
            half,
            t0 + chrono::Duration::minutes(60),
            chrono::Duration::seconds(1),
        );
        assert_eq!(first.len() + second.len(), 12, "{first:?} {second:?}");
        for (_, k) in &second {
            assert!(
                !state.contains_key(k),
                "{k} launched again before its interval"
            );
        }
        // And every launched host is due exactly one interval after its launch.
        for (t, k) in &first {
            let i = (0..q.len()).find(|i| q.key(*i) == k).unwrap();
            assert_eq!(q.due_of(i), Some(*t + chrono::Duration::hours(1)));
        }
    }

    #[test]
    fn a_config_change_adding_hosts_launches_only_the_new_ones_when_due() {
        let t0 = utc("2026-01-05T10:00:00Z");
        let launched_at = t0 - chrono::Duration::minutes(5);
        let old: BTreeMap<String, DateTime<Utc>> = specs(100)
            .iter()
            .map(|s| (spec_key(s), launched_at))
            .collect();
        let mut q = SpecQueue::new("lab", hourly(), specs(110), |k| old.get(k).copied(), t0);
        let until = launched_at + chrono::Duration::hours(1);
        let got = drive(&mut q, t0, until, chrono::Duration::seconds(1));
        assert!(
            got.iter().all(|(_, k)| !old.contains_key(k)),
            "an old host launched early"
        );
        // The new hosts come at their own points, not at the start.
        for (t, k) in &got {
            let h = stable_hash("lab", k);
            let point = next_point(h, Duration::from_secs(3600), t0);
            assert!(
                *t >= point && *t - point < chrono::Duration::seconds(1),
                "{k} at {t}, its point {point}"
            );
        }
        // After the interval, the old ones are due (once each).
        let later = drive(
            &mut q,
            until,
            until + chrono::Duration::seconds(2),
            chrono::Duration::seconds(1),
        );
        assert_eq!(later.len(), 100);
    }

    #[test]
    fn a_window_is_honoured_across_midnight_and_across_both_dst_changes() {
        let tz = parse_tz("Europe/Paris").unwrap();
        let w = Window::parse("22:00-06:00", tz).unwrap();
        let rule = Rule {
            interval: Duration::from_secs(86_400),
            window: Some(w),
            cron: None,
        };
        for (start, nights) in [("2026-03-26T12:00:00Z", 5), ("2026-10-22T12:00:00Z", 5)] {
            let t0 = utc(start);
            let mut q = SpecQueue::new("prod", rule.clone(), specs(400), |_| None, t0);
            let got = drive(
                &mut q,
                t0,
                t0 + chrono::Duration::days(nights),
                chrono::Duration::seconds(1),
            );
            // Taken at most one tick (a second) after its point inside the window.
            let tick = chrono::Duration::seconds(1);
            for (t, k) in &got {
                assert!(
                    w.contains(*t) || w.contains(*t - tick),
                    "{k} launched at {t}"
                );
            }
            // Every night, every host once: nothing skipped or doubled by the DST change.
            let mut per_host: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
            for (t, k) in &got {
                per_host.entry(k).or_default().push(*t);
            }
            let missing: Vec<_> = (0..q.len())
                .filter(|i| !per_host.contains_key(q.key(*i)))
                .map(|i| (q.key(i).to_owned(), q.due_of(i)))
                .collect();
            assert_eq!(per_host.len(), 400, "{missing:?}");
            for (k, ts) in &per_host {
                assert_eq!(ts.len(), nights as usize, "{k}: {ts:?}");
                for pair in ts.windows(2) {
                    let gap = pair[1] - pair[0];
                    assert!(
                        gap >= chrono::Duration::hours(23) && gap <= chrono::Duration::hours(25),
                        "{k}: {ts:?}"
                    );
                }
            }
            // Launches cover both sides of midnight (local).
            let local_hours: std::collections::BTreeSet<u32> = got
                .iter()
                .map(|(t, _)| chrono::Timelike::hour(&t.with_timezone(&tz)))
                .collect();
            assert!(
                local_hours.contains(&23) && local_hours.contains(&0) && local_hours.contains(&5),
                "{local_hours:?}"
            );
        }
    }

    #[test]
    fn a_short_interval_inside_a_window_runs_every_interval_of_the_window() {
        let tz = parse_tz("UTC").unwrap();
        let rule = Rule {
            interval: Duration::from_secs(3600),
            window: Some(Window::parse("22:00-02:00", tz).unwrap()),
            cron: None,
        };
        let t0 = utc("2026-01-05T12:00:00Z");
        let mut q = SpecQueue::new("lab", rule, specs(20), |_| None, t0);
        let got = drive(
            &mut q,
            t0,
            t0 + chrono::Duration::hours(24),
            chrono::Duration::minutes(1),
        );
        assert_eq!(got.len(), 20 * 4, "four hourly runs in a four-hour window");
    }

    #[test]
    fn a_cron_scenario_launches_every_spec_at_each_occurrence_inside_the_window() {
        let tz = parse_tz("Europe/Paris").unwrap();
        let rule = Rule {
            interval: Duration::from_secs(3600),
            // Every hour at :15, but only from 22:00 to 02:00.
            cron: Some(Calendar::parse("15 * * * *", tz).unwrap()),
            window: Some(Window::parse("22:00-02:00", tz).unwrap()),
        };
        let t0 = utc("2026-01-05T12:00:00Z");
        let mut q = SpecQueue::new("lab", rule.clone(), specs(5), |_| None, t0);
        let got = drive(
            &mut q,
            t0,
            t0 + chrono::Duration::hours(24),
            chrono::Duration::minutes(1),
        );
        let times: BTreeSet<DateTime<Utc>> = got.iter().map(|(t, _)| *t).collect();
        let expected: BTreeSet<DateTime<Utc>> = [
            "2026-01-05T21:15:00Z",
            "2026-01-05T22:15:00Z",
            "2026-01-05T23:15:00Z",
            "2026-01-06T00:15:00Z",
        ]
        .into_iter()
        .map(utc)
        .collect();
        assert_eq!(times, expected);
        assert_eq!(got.len(), 5 * 4);
        // A restart after the last occurrence, before the next: nothing until 22:15.
        let state: BTreeMap<String, DateTime<Utc>> =
            got.iter().map(|(t, k)| (k.clone(), *t)).collect();
        let restart = utc("2026-01-06T09:00:00Z");
        let q = SpecQueue::new(
            "lab",
            rule.clone(),
            specs(5),
            |k| state.get(k).copied(),
            restart,
        );
        assert_eq!(q.next_due(), Some(utc("2026-01-06T21:15:00Z")));
        // Stopped across an occurrence, restarted inside the window: made up once, at once.
        let late = utc("2026-01-07T00:40:00Z");
        let mut q = SpecQueue::new("lab", rule, specs(5), |k| state.get(k).copied(), late);
        assert_eq!(q.take_due(late).len(), 5);
        assert_eq!(q.take_due(late + chrono::Duration::minutes(30)).len(), 0);
    }

    #[test]
    fn an_overdue_spec_is_due_at_once_and_a_taken_spec_is_not_taken_twice() {
        let t0 = utc("2026-01-05T10:00:00Z");
        let long_ago = t0 - chrono::Duration::hours(5);
        let mut q = SpecQueue::new("lab", hourly(), specs(3), |_| Some(long_ago), t0);
        let taken = q.take_due(t0);
        assert_eq!(taken.len(), 3);
        assert!(
            q.take_due(t0 + chrono::Duration::hours(3)).is_empty(),
            "taken specs wait for their attempt"
        );
        q.abandoned(taken[0].0, t0);
        assert_eq!(q.take_due(t0).len(), 1, "an abandoned spec is due again");
    }
}
