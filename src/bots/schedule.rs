//! Scheduled digests: cron expressions in a time zone, the window each run covers, and an
//! injectable [`Clock`] so tests drive time instead of sleeping.

use std::str::FromStr as _;

use chrono::{DateTime, Utc};

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A parsed schedule: a cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: cron::Schedule,
    tz: chrono_tz::Tz,
    pub expression: String,
}

impl Schedule {
    /// Parses a 5-field (`m h dom mon dow`) or 6/7-field (with seconds) cron expression and an
    /// IANA time zone (default UTC).
    pub fn parse(expression: &str, tz: Option<&str>) -> Result<Schedule, String> {
        let fields = expression.split_whitespace().count();
        let full = if fields == 5 {
            format!("0 {expression}")
        } else {
            expression.to_owned()
        };
        let cron = cron::Schedule::from_str(&full).map_err(|e| {
            // The cron crate's message draws a caret under the expression on lines of
            // its own; its last line says what is wrong.
            let e = e.to_string();
            let why = e.lines().last().unwrap_or_default().trim().to_owned();
            format!("invalid cron expression `{expression}`: {why}")
        })?;
        let tz = match tz {
            None => chrono_tz::UTC,
            Some(name) => name
                .parse::<chrono_tz::Tz>()
                .map_err(|_| format!("unknown time zone `{name}`"))?,
        };
        Ok(Schedule {
            cron,
            tz,
            expression: expression.to_owned(),
        })
    }

    /// The time zone the schedule fires in (and its digests name their window in).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.tz
    }

    /// The newest complete window `[start, end)`: `end` is the latest firing at or before
    /// `now`, `start` the firing before it. `None` when it has not fired twice in 35 days.
    pub fn last_window(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let from = (now - chrono::Duration::days(35)).with_timezone(&self.tz);
        let mut prev: Option<DateTime<Utc>> = None;
        let mut last: Option<DateTime<Utc>> = None;
        for (i, t) in self.cron.after(&from).enumerate() {
            let t = t.with_timezone(&Utc);
            if t > now || i > 200_000 {
                break;
            }
            prev = last;
            last = Some(t);
        }
        Some((prev?, last?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_windows_in_a_time_zone() {
        let s = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        // 09:00 Berlin is 08:00 UTC in winter.
        let (start, end) = s.last_window(at("2026-01-10T08:30:00Z")).unwrap();
        assert_eq!(
            (start, end),
            (at("2026-01-09T08:00:00Z"), at("2026-01-10T08:00:00Z"))
        );
        let (_, end) = s.last_window(at("2026-01-10T07:59:00Z")).unwrap();
        assert_eq!(end, at("2026-01-09T08:00:00Z"));
    }

    #[test]
    fn bad_expressions_and_zones_are_errors() {
        assert!(Schedule::parse("every day", None).is_err());
        assert!(
            Schedule::parse("0 9 * * *", Some("Mars/Olympus"))
                .unwrap_err()
                .contains("unknown time zone")
        );
    }
}
