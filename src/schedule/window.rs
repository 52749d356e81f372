//! A daily time window (`"22:00-06:00"`) in a time zone: service mode launches a scenario's
//! jobs only inside it. A window may cross midnight; across a DST change it follows the
//! local clock (a local time that does not exist opens the window at the first instant
//! after the gap; an ambiguous one takes the earlier instant).

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A daily window, local time `start` (inclusive) to `end` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: NaiveTime,
    end: NaiveTime,
    tz: Tz,
}

/// Parses a time zone name of the IANA database (`Europe/Paris`, `UTC`).
pub(crate) fn parse_tz(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("`{name}` is not a time zone of the IANA database (e.g. Europe/Paris, UTC)")
    })
}

impl Window {
    /// `"HH:MM-HH:MM"`; start and end must differ.
    pub fn parse(spec: &str, tz: Tz) -> Result<Self, String> {
        let bad =
            || format!("`{spec}` is not a window like \"22:00-06:00\" (HH:MM-HH:MM, local time)");
        let (a, b) = spec.split_once('-').ok_or_else(bad)?;
        let time = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| bad());
        let (start, end) = (time(a)?, time(b)?);
        if start == end {
            return Err(format!(
                "`{spec}` is empty: start and end are the same time"
            ));
        }
        Ok(Self { start, end, tz })
    }

    /// The window's length on a day without a DST change.
    pub(crate) fn nominal_len(&self) -> std::time::Duration {
        let secs = (self.end - self.start).num_seconds().rem_euclid(86_400);
        std::time::Duration::from_secs(secs as u64)
    }

    /// True when `t`'s local time is inside the window.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.tz).time();
        if self.start < self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }

    /// The window open at `t`, or else the next one: its opening and closing instants.
    pub(crate) fn span_at_or_after(&self, t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let day = t.with_timezone(&self.tz).date_naive();
        // The window that opened the day before (crossing midnight), today's, the next days'.
        for offset in -1..=3 {
            let d = day + Duration::days(offset);
            let open = self.resolve(d, self.start);
            let close_day = if self.start < self.end {
                d
            } else {
                d + Duration::days(1)
            };
            let close = self.resolve(close_day, self.end);
            if close > open && close > t {
                return (open, close);
            }
        }
        // Unreachable for a window of non-zero length; stay safe anyway.
        (t, t + Duration::days(1))
    }

    /// The instant of local `time` on `date`: the earlier of two on a fall-back night, the
    /// first instant after the gap on a spring-forward night.
    fn resolve(&self, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
        let mut naive = date.and_time(time);
        for _ in 0..=24 * 60 {
            match self.tz.from_local_datetime(&naive) {
                LocalResult::Single(t) => return t.with_timezone(&Utc),
                LocalResult::Ambiguous(a, _) => return a.with_timezone(&Utc),
                LocalResult::None => naive += Duration::minutes(1),
            }
        }
        Utc.from_utc_datetime(&naive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris(spec: &str) -> Window {
        Window::parse(spec, parse_tz("Europe/Paris").unwrap()).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_window_across_midnight_contains_the_late_evening_and_the_early_morning() {
        let w = paris("22:00-06:00");
        // January: Paris is UTC+1.
        assert!(w.contains(utc("2026-01-05T21:00:00Z")), "22:00 local");
        assert!(w.contains(utc("2026-01-05T23:30:00Z")), "00:30 local");
        assert!(w.contains(utc("2026-01-06T04:59:59Z")), "05:59:59 local");
        assert!(!w.contains(utc("2026-01-06T05:00:00Z")), "06:00 local");
        assert!(!w.contains(utc("2026-01-05T12:00:00Z")), "13:00 local");
        let (open, close) = w.span_at_or_after(utc("2026-01-05T12:00:00Z"));
        assert_eq!(open, utc("2026-01-05T21:00:00Z"));
        assert_eq!(close, utc("2026-01-06T05:00:00Z"));
        // Inside the window: the span that is open now.
        let (open, _) = w.span_at_or_after(utc("2026-01-06T01:00:00Z"));
        assert_eq!(open, utc("2026-01-05T21:00:00Z"));
    }

    #[test]
    fn a_window_follows_the_local_clock_across_dst_changes() {
        let w = paris("22:00-06:00");
        // Spring forward (2026-03-29, 02:00 → 03:00): the night lasts 7 hours.
        let (open, close) = w.span_at_or_after(utc("2026-03-28T12:00:00Z"));
        assert_eq!(open, utc("2026-03-28T21:00:00Z"), "22:00 CET");
        assert_eq!(close, utc("2026-03-29T04:00:00Z"), "06:00 CEST");
        // Fall back (2026-10-25, 03:00 → 02:00): 9 hours.
        let (open, close) = w.span_at_or_after(utc("2026-10-24T12:00:00Z"));
        assert_eq!(open, utc("2026-10-24T20:00:00Z"), "22:00 CEST");
        assert_eq!(close, utc("2026-10-25T05:00:00Z"), "06:00 CET");
        // A window opening inside the spring gap opens when the gap ends.
        let g = paris("02:30-04:00");
        let (open, _) = g.span_at_or_after(utc("2026-03-28T12:00:00Z"));
        assert_eq!(open, utc("2026-03-29T01:00:00Z"), "03:00 CEST");
    }

    #[test]
    fn malformed_or_empty_windows_and_unknown_zones_are_refused() {
        let tz = parse_tz("UTC").unwrap();
        assert!(Window::parse("22-06", tz)
            .unwrap_err()
            .contains("HH:MM-HH:MM"));
        assert!(Window::parse("25:00-06:00", tz).is_err());
        assert!(Window::parse("06:00-06:00", tz)
            .unwrap_err()
            .contains("empty"));
        assert!(parse_tz("Mars/Olympus")
            .unwrap_err()
            .contains("Mars/Olympus"));
    }
}
