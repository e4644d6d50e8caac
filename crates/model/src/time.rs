//! Dates of the `Reputation Entries TTL` kind and the injectable clock.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::format::{Item, Numeric, Pad, Parsed};
use chrono::{DateTime, FixedOffset, NaiveDateTime, NaiveTime, TimeZone, Utc};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a date (expected YYYY-MM-DD hh:mm:ss TZ, e.g. 2027-10-25 07:15:00 UTC or 2027-10-25 07:15:00-0400, or RFC 3339)"
)]
pub struct TimeError(pub String);

/// Parse the date forms rephub accepts, returning seconds since the epoch (UTC):
/// `YYYY-MM-DD hh:mm:ss TZ` with TZ `UTC`, `GMT`, `Z`, `±hhmm` or `±hh:mm` (with or without a space
/// before it), the same without TZ (taken as UTC), `YYYY-MM-DD` (midnight UTC), and RFC 3339.
pub fn parse_datetime(input: &str) -> Result<i64, TimeError> {
    let s = input.trim();
    let err = || TimeError(s.to_string());
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    if s.len() < 10 || !s.is_char_boundary(10) {
        return Err(err());
    }
    let (date, rest) = s.split_at(10);
    let date = parse_with(date, DATE)
        .and_then(|p| p.to_naive_date())
        .map_err(|_| err())?;
    let rest = rest.trim_start_matches(['T', ' ']);
    if rest.is_empty() {
        return Ok(date.and_time(NaiveTime::MIN).and_utc().timestamp());
    }
    if rest.len() < 8 || !rest.is_char_boundary(8) {
        return Err(err());
    }
    let (time, zone) = rest.split_at(8);
    let time = parse_with(time, TIME)
        .and_then(|p| p.to_naive_time())
        .map_err(|_| err())?;
    let local = NaiveDateTime::new(date, time);
    let offset = parse_offset(zone.trim()).ok_or_else(err)?;
    offset
        .from_local_datetime(&local)
        .single()
        .map(|t| t.timestamp())
        .ok_or_else(err)
}

/// `%Y-%m-%d` and `%H:%M:%S` as chrono's format items, read once rather than from the format
/// string on every date (an import parses hundreds of thousands).
const DATE: &[Item<'static>] = &[
    Item::Numeric(Numeric::Year, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Month, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Day, Pad::Zero),
];
const TIME: &[Item<'static>] = &[
    Item::Numeric(Numeric::Hour, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Minute, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Second, Pad::Zero),
];

fn parse_with(s: &str, items: &[Item<'static>]) -> chrono::ParseResult<Parsed> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, s, items.iter())?;
    Ok(parsed)
}

fn parse_offset(z: &str) -> Option<FixedOffset> {
    match z.to_ascii_uppercase().as_str() {
        "" | "UTC" | "GMT" | "Z" | "UT" => return FixedOffset::east_opt(0),
        _ => {}
    }
    let (sign, digits) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits[2..].parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// `YYYY-MM-DD hh:mm:ss UTC`, the form rephub writes.
pub fn format_utc(t: i64) -> String {
    match Utc.timestamp_opt(t, 0).single() {
        Some(d) => d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => format!("@{t}"),
    }
}

/// The TTL given to objects that never expire upstream: ten years from `now` (seed 002, chapter 5).
pub fn default_ttl(now: i64) -> i64 {
    Utc.timestamp_opt(now, 0)
        .single()
        .and_then(|d| d.checked_add_months(chrono::Months::new(120)))
        .map(|d| d.timestamp())
        .unwrap_or(now.saturating_add(3653 * 86_400))
}

/// Where time comes from, so that expiry and renewal are testable without sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        Utc::now().timestamp()
    }
}

/// The system clock moved by a fixed number of seconds: a hub run "as if it were later" (drills
/// and tests of what happens in a year, with real processes).
#[derive(Debug, Clone, Copy, Default)]
pub struct OffsetClock(pub i64);

impl Clock for OffsetClock {
    fn now(&self) -> i64 {
        Utc::now().timestamp().saturating_add(self.0)
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn new(now: i64) -> FixedClock {
        FixedClock(AtomicI64::new(now))
    }

    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let utc = 1_540_466_100; // 2018-10-25 11:15:00 UTC
        for s in [
            "2018-10-25 07:15:00-0400",
            "2018-10-25 07:15:00 -0400",
            "2018-10-25 07:15:00 -04:00",
            "2018-10-25 11:15:00 UTC",
            "2018-10-25 11:15:00 GMT",
            "2018-10-25 11:15:00",
            "2018-10-25T11:15:00Z",
            "2018-10-25T13:15:00+02:00",
        ] {
            assert_eq!(parse_datetime(s), Ok(utc), "{s}");
        }
        assert_eq!(parse_datetime("2018-10-25"), Ok(1_540_425_600));
        assert_eq!(format_utc(utc), "2018-10-25 11:15:00 UTC");
        assert_eq!(parse_datetime(&format_utc(utc)), Ok(utc));
    }

    #[test]
    fn rejected_forms() {
        for s in [
            "",
            "2018-13-01",
            "2018-10-25 25:00:00",
            "2018-10-25 07:15:00 EST",
            "2018-10-25 07:15:00+9999",
            "tomorrow",
            "2018-10-25 07:15",
        ] {
            assert!(parse_datetime(s).is_err(), "{s:?} accepted");
        }
    }

    /// The format items read once are the format strings they replaced: the same answer for
    /// any ten (date) or eight (time) characters, good or bad.
    #[test]
    fn format_items_read_as_the_format_strings() {
        use chrono::NaiveDate;
        use proptest::prelude::*;
        let date = |s: &str| parse_with(s, DATE).and_then(|p| p.to_naive_date()).ok();
        let time = |s: &str| parse_with(s, TIME).and_then(|p| p.to_naive_time()).ok();
        for s in [
            "2018-10-25",
            "2018-1-025",
            "+201-10-25",
            "0000-01-01",
            "9999-12-31",
            "2018-02-30",
        ] {
            assert_eq!(
                date(s),
                NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
                "{s}"
            );
        }
        for s in [
            "07:15:00", "7:15:000", "23:59:60", "24:00:00", "00:00:00", "07:15:0a",
        ] {
            assert_eq!(
                time(s),
                NaiveTime::parse_from_str(s, "%H:%M:%S").ok(),
                "{s}"
            );
        }
        proptest!(|(s in "[0-9+ :-]{10}", t in "[0-9+ :-]{8}")| {
            prop_assert_eq!(date(&s), NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok());
            prop_assert_eq!(time(&t), NaiveTime::parse_from_str(&t, "%H:%M:%S").ok());
        });
    }

    #[test]
    fn ten_years() {
        assert_eq!(
            format_utc(default_ttl(1_540_466_100)),
            "2028-10-25 11:15:00 UTC"
        );
    }
}
