//! The time window a summary covers, as `chatctl summarize` names it: a sliding `--since`,
//! the last complete calendar day or week in a time zone, or explicit bounds.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A calendar unit for `--window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Calendar {
    Day,
    Week,
}

/// The last complete day (midnight to midnight) or ISO week (Monday to Monday) in `tz` before
/// `now`: every run within the next day (or week) names the same window.
pub fn last_complete(unit: Calendar, tz: Tz, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let today = now.with_timezone(&tz).date_naive();
    let end_day = match unit {
        Calendar::Day => today,
        Calendar::Week => today - Duration::days(i64::from(today.weekday().num_days_from_monday())),
    };
    let start_day = match unit {
        Calendar::Day => end_day - Duration::days(1),
        Calendar::Week => end_day - Duration::days(7),
    };
    (midnight(tz, start_day), midnight(tz, end_day))
}

/// The first instant of `day` in `tz` (a day that starts in a DST gap starts when it can).
fn midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let local = day.and_time(NaiveTime::MIN);
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        chrono::LocalResult::None => tz
            .from_local_datetime(&(local + Duration::hours(1)))
            .earliest()
            .map_or_else(|| Utc.from_utc_datetime(&local), |t| t.with_timezone(&Utc)),
    }
}

/// Parses `--from`/`--to`: an RFC 3339 time (`2026-11-22T09:00:00Z`), or a date
/// (`2026-11-22`, its midnight in `tz`).
pub fn parse_time(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map(|d| midnight(tz, d))
        .map_err(|_| format!("`{text}` is not a time: use 2026-11-22 or 2026-11-22T09:00:00Z"))
}

/// A window as a person names it: exactly one of a sliding `since` (`24h`), the last
/// complete calendar `window`, or explicit `from`/`to`; the calendar day when none is given.
///
/// As JSON (the HTTP API), a field is given or left out; `null` is refused.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Named {
    #[serde(default, deserialize_with = "given")]
    pub since: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub window: Option<Calendar>,
    #[serde(default, deserialize_with = "given")]
    pub from: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub to: Option<String>,
    /// The time zone of `window` and of dates in `from`/`to` (IANA name; UTC when unset).
    #[serde(default, deserialize_with = "given")]
    pub tz: Option<String>,
}

/// A field that is present must have a value (`null` is an error, not "left out").
fn given<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

impl Named {
    /// The time zone it names.
    pub fn zone(&self) -> Result<Tz, String> {
        let name = self.tz.as_deref().unwrap_or("UTC");
        name.parse().map_err(|_| {
            format!("unknown time zone `{name}`: use an IANA name such as UTC, Europe/Berlin or America/New_York")
        })
    }

    /// The `[start, end)` it names at `now`.
    pub fn resolve(&self, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
        let tz = self.zone()?;
        let given = [
            self.since.is_some(),
            self.window.is_some(),
            self.from.is_some() || self.to.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err("give one of since, window, or from and to".into());
        }
        if let Some(since) = &self.since {
            let d = crate::config::parse_duration(since)?;
            let d = Duration::from_std(d)
                .ok()
                .filter(|d| *d > Duration::zero())
                .and_then(|d| now.checked_sub_signed(d).map(|start| (start, now)))
                .ok_or_else(|| format!("since `{since}` must be a positive duration"))?;
            return Ok(d);
        }
        match (&self.from, &self.to) {
            (Some(from), Some(to)) => {
                let from = parse_time(from, tz)?;
                let to = parse_time(to, tz)?;
                if from >= to {
                    return Err("from must be before to".into());
                }
                Ok((from, to))
            }
            (Some(_), None) | (None, Some(_)) => Err("from and to go together".into()),
            (None, None) => Ok(last_complete(self.window.unwrap_or(Calendar::Day), tz, now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_last_day_is_the_same_for_every_run_that_day() {
        for now in [
            "2026-11-23T00:00:01Z",
            "2026-11-23T13:00:00Z",
            "2026-11-23T23:59:59Z",
        ] {
            assert_eq!(
                last_complete(Calendar::Day, chrono_tz::UTC, utc(now)),
                (utc("2026-11-22T00:00:00Z"), utc("2026-11-23T00:00:00Z"))
            );
        }
        // In New York (UTC-5 in November) the day runs 05:00 to 05:00 UTC.
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            last_complete(Calendar::Day, ny, utc("2026-11-23T03:00:00Z")),
            (utc("2026-11-21T05:00:00Z"), utc("2026-11-22T05:00:00Z"))
        );
        // The day DST ends there has 25 hours.
        let (s, e) = last_complete(Calendar::Day, ny, utc("2026-11-02T12:00:00Z"));
        assert_eq!(e - s, Duration::hours(25));
    }

    #[test]
    fn the_last_week_runs_monday_to_monday() {
        // 2026-11-23 is a Monday: the last complete week is the one before.
        for now in ["2026-11-23T08:00:00Z", "2026-11-29T23:00:00Z"] {
            assert_eq!(
                last_complete(Calendar::Week, chrono_tz::UTC, utc(now)),
                (utc("2026-11-16T00:00:00Z"), utc("2026-11-23T00:00:00Z"))
            );
        }
    }

    #[test]
    fn times_parse_as_rfc3339_or_dates_in_the_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            parse_time("2026-11-22", berlin).unwrap(),
            utc("2026-11-21T23:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-22T09:30:00+01:00", chrono_tz::UTC).unwrap(),
            utc("2026-11-22T08:30:00Z")
        );
        assert!(
            parse_time("yesterday", chrono_tz::UTC)
                .unwrap_err()
                .contains("yesterday")
        );
    }
}
