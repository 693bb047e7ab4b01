//! Calendar helpers shared by the date functions: time zones, local time, units, weekdays.
//!
//! MongoDB computes calendar fields in the wall-clock time of a zone (an Olson name such as
//! `"Europe/Lisbon"` or a UTC offset such as `"+05:30"`); these helpers convert between an
//! instant (milliseconds since the epoch, UTC) and that wall-clock time. A wall-clock time a
//! zone skips (spring forward) is moved past the gap; one it repeats (fall back) takes the
//! earlier instant.

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Weekday,
};
use datafusion::arrow::array::timezone::Tz;
use datafusion::common::{DataFusionError, Result as DFResult};

/// Parses a time zone as MongoDB accepts it: an Olson name, `UTC`/`GMT`, or an offset
/// `±hh`, `±hhmm`, `±hh:mm`.
pub fn zone(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>().map_err(|_| {
        format!("unknown time zone \"{s}\" (expected an Olson name such as \"Europe/Lisbon\" or an offset such as \"+05:30\")")
    })
}

/// Parses time zones row by row, re-parsing only when the name changes.
#[derive(Default)]
pub struct Zones {
    last: Option<(String, Tz)>,
}

impl Zones {
    /// The zone named `name`, or an execution error naming it.
    pub fn get(&mut self, name: &str) -> DFResult<Tz> {
        if let Some((n, tz)) = &self.last
            && n == name
        {
            return Ok(*tz);
        }
        let tz = zone(name).map_err(DataFusionError::Execution)?;
        self.last = Some((name.to_string(), tz));
        Ok(tz)
    }
}

/// The wall-clock time in `tz` at the instant `ms`.
pub fn to_local(ms: i64, tz: &Tz) -> Option<NaiveDateTime> {
    Some(
        DateTime::from_timestamp_millis(ms)?
            .with_timezone(tz)
            .naive_local(),
    )
}

/// The instant at which the wall clock in `tz` shows `local`.
pub fn from_local(local: NaiveDateTime, tz: &Tz) -> Option<i64> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(d) => Some(d.timestamp_millis()),
        LocalResult::Ambiguous(earlier, _) => Some(earlier.timestamp_millis()),
        // In a gap: the same wall-clock distance past the gap's start.
        LocalResult::None => match tz.from_local_datetime(&(local + TimeDelta::hours(1))) {
            LocalResult::Single(d) | LocalResult::Ambiguous(d, _) => Some(d.timestamp_millis()),
            LocalResult::None => None,
        },
    }
}

pub use crate::units::Unit;

/// Parses a `startOfWeek` (a day name or its three-letter abbreviation, any case).
pub fn weekday(s: &str) -> Option<Weekday> {
    let s = s.to_ascii_lowercase();
    let days = [
        ("sunday", Weekday::Sun),
        ("monday", Weekday::Mon),
        ("tuesday", Weekday::Tue),
        ("wednesday", Weekday::Wed),
        ("thursday", Weekday::Thu),
        ("friday", Weekday::Fri),
        ("saturday", Weekday::Sat),
    ];
    days.iter()
        .find(|(name, _)| s == *name || s == name[..3])
        .map(|(_, d)| *d)
}

/// Like [`weekday`], as an execution error when unknown.
pub fn get_weekday(s: &str) -> DFResult<Weekday> {
    weekday(s).ok_or_else(|| {
        DataFusionError::Execution(format!(
            "unknown startOfWeek \"{s}\" (expected a day name such as \"monday\" or \"mon\")"
        ))
    })
}

/// Days since 1970-01-01 of a local date.
pub fn epoch_days(d: NaiveDate) -> i64 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid")).num_days()
}

/// Months since year 0 of a local date.
pub fn month_index(d: NaiveDate) -> i64 {
    d.year() as i64 * 12 + d.month0() as i64
}

/// The first day of the month `index` months after January of year 0.
pub fn month_start(index: i64) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(
        i32::try_from(index.div_euclid(12)).ok()?,
        index.rem_euclid(12) as u32 + 1,
        1,
    )
}

/// The start (local midnight) of the week holding `d`, weeks starting on `start`.
pub fn week_start(d: NaiveDate, start: Weekday) -> NaiveDate {
    let back = (d.weekday().num_days_from_sunday() + 7 - start.num_days_from_sunday()) % 7;
    d - TimeDelta::days(back as i64)
}

/// One piece of a MongoDB date format (`"%Y-%m-%d"`): most specifiers have a chrono
/// equivalent; `%w` (day of week, Sunday = 1) and `%Z` (offset in minutes) do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatPiece {
    /// A chrono format string (specifiers translated, literal `%` escaped).
    Chrono(String),
    /// `%w`: 1 (Sunday) to 7 (Saturday).
    DayOfWeek,
    /// `%Z`: the UTC offset in minutes, e.g. `+330`.
    OffsetMinutes,
}

/// Splits a MongoDB format into pieces, or says which specifier is unknown.
pub fn format_pieces(format: &str) -> Result<Vec<FormatPiece>, String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            current.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            return Err("a format must not end with a lone '%'".to_string());
        };
        let chrono = match spec {
            'Y' => "%Y",
            'm' => "%m",
            'd' => "%d",
            'H' => "%H",
            'M' => "%M",
            'S' => "%S",
            'L' => "%3f",
            'j' => "%j",
            'U' => "%U",
            'u' => "%u",
            'V' => "%V",
            'G' => "%G",
            'z' => "%z",
            'b' => "%b",
            'B' => "%B",
            '%' => "%%",
            'w' | 'Z' => {
                if !current.is_empty() {
                    pieces.push(FormatPiece::Chrono(std::mem::take(&mut current)));
                }
                pieces.push(if spec == 'w' {
                    FormatPiece::DayOfWeek
                } else {
                    FormatPiece::OffsetMinutes
                });
                continue;
            }
            other => return Err(format!("unknown format specifier %{other}")),
        };
        current.push_str(chrono);
    }
    if !current.is_empty() || pieces.is_empty() {
        pieces.push(FormatPiece::Chrono(current));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_offsets_and_gaps() {
        for ok in ["UTC", "GMT", "America/New_York", "+05:30", "-0400", "+03"] {
            assert!(zone(ok).is_ok(), "{ok}");
        }
        assert!(zone("Mars/Olympus").is_err());
        let ny = zone("America/New_York").unwrap();
        // 2024-03-10 02:30 does not exist in New York: it lands at 03:30 EDT (07:30Z).
        let gap = NaiveDate::from_ymd_opt(2024, 3, 10)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(from_local(gap, &ny), Some(1_710_055_800_000));
        // 2024-11-03 01:30 happens twice: the earlier one (EDT, 05:30Z).
        let twice = NaiveDate::from_ymd_opt(2024, 11, 3)
            .unwrap()
            .and_hms_opt(1, 30, 0)
            .unwrap();
        assert_eq!(from_local(twice, &ny), Some(1_730_611_800_000));
        assert_eq!(to_local(1_730_611_800_000, &ny), Some(twice));
    }

    #[test]
    fn formats_translate_to_chrono() {
        assert_eq!(
            format_pieces("%Y-%m-%dT%H:%M:%S.%LZ"),
            Ok(vec![FormatPiece::Chrono("%Y-%m-%dT%H:%M:%S.%3fZ".into())])
        );
        assert_eq!(
            format_pieces("day %w (%Z) 100%%"),
            Ok(vec![
                FormatPiece::Chrono("day ".into()),
                FormatPiece::DayOfWeek,
                FormatPiece::Chrono(" (".into()),
                FormatPiece::OffsetMinutes,
                FormatPiece::Chrono(") 100%%".into()),
            ])
        );
        assert!(format_pieces("%Q").is_err());
    }

    #[test]
    fn weeks_and_months() {
        assert_eq!(weekday("Sun"), Some(Weekday::Sun));
        assert_eq!(weekday("MONDAY"), Some(Weekday::Mon));
        assert_eq!(weekday("someday"), None);
        let sat = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
        assert_eq!(
            week_start(sat, Weekday::Sun),
            NaiveDate::from_ymd_opt(1999, 12, 26).unwrap()
        );
        assert_eq!(week_start(sat, Weekday::Sat), sat);
        assert_eq!(
            month_start(month_index(sat) - 1),
            NaiveDate::from_ymd_opt(1999, 12, 1)
        );
    }
}
