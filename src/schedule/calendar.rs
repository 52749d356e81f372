//! A cron expression per scenario (`backup_cron = "0 2 * * *"`: every night at 02:00),
//! evaluated in the schedule's time zone by `croner` (POSIX/Vixie fields, DST-aware).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

#[derive(Debug, Clone)]
pub struct Calendar {
    cron: croner::Cron,
    tz: Tz,
}

impl Calendar {
    /// A five-field cron expression (minute hour day-of-month month day-of-week).
    pub fn parse(expr: &str, tz: Tz) -> Result<Self, String> {
        let cron = croner::Cron::from_str(expr)
            .map_err(|e| format!("`{expr}` is not a cron expression like \"0 2 * * *\": {e}"))?;
        Ok(Self { cron, tz })
    }

    /// The first occurrence after `t` (or at `t` when `inclusive`).
    pub fn next(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), inclusive)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::super::window::parse_tz;
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_nightly_expression_fires_at_local_time_across_dst() {
        let c = Calendar::parse("30 2 * * *", parse_tz("Europe/Paris").unwrap()).unwrap();
        assert_eq!(
            c.next(utc("2026-01-05T12:00:00Z"), false),
            Some(utc("2026-01-06T01:30:00Z"))
        );
        let at = c.next(utc("2026-01-06T01:30:00Z"), true).unwrap();
        assert_eq!(at, utc("2026-01-06T01:30:00Z"), "inclusive");
        // Summer: UTC+2.
        assert_eq!(
            c.next(utc("2026-07-01T12:00:00Z"), false),
            Some(utc("2026-07-02T00:30:00Z"))
        );
    }

    #[test]
    fn a_malformed_expression_is_refused_with_an_example() {
        let e = Calendar::parse("every night", parse_tz("UTC").unwrap()).unwrap_err();
        assert!(e.contains("every night") && e.contains("0 2 * * *"), "{e}");
    }
}
