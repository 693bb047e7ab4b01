//! Time units: the one table of their names and lengths, shared by the date operators
//! (`$dateTrunc`, `$dateAdd`, `$dateDiff`, `$setWindowFields` ranges, `$densify`), the stream
//! windows' `{size, unit}` durations and the SQL spelling's `INTERVAL`s.

use datafusion::common::{DataFusionError, Result as DFResult};

/// A calendar unit, as `$dateTrunc`, `$dateAdd` and `$dateDiff` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

impl Unit {
    /// Parses a unit name.
    pub fn parse(s: &str) -> Option<Unit> {
        Some(match s {
            "year" => Unit::Year,
            "quarter" => Unit::Quarter,
            "month" => Unit::Month,
            "week" => Unit::Week,
            "day" => Unit::Day,
            "hour" => Unit::Hour,
            "minute" => Unit::Minute,
            "second" => Unit::Second,
            "millisecond" => Unit::Millisecond,
            _ => return None,
        })
    }

    /// The names accepted, for error messages.
    pub const NAMES: &'static str =
        "year, quarter, month, week, day, hour, minute, second, millisecond";

    /// The length of a fixed unit in milliseconds (`None` for months, quarters, years).
    pub fn millis(self) -> Option<i64> {
        Some(match self {
            Unit::Week => 7 * 86_400_000,
            Unit::Day => 86_400_000,
            Unit::Hour => 3_600_000,
            Unit::Minute => 60_000,
            Unit::Second => 1000,
            Unit::Millisecond => 1,
            _ => return None,
        })
    }

    /// Parses `s`, or an execution error listing the units.
    pub fn get(s: &str) -> DFResult<Unit> {
        Unit::parse(s).ok_or_else(|| {
            DataFusionError::Execution(format!(
                "unknown unit \"{s}\" (expected one of {})",
                Unit::NAMES
            ))
        })
    }
}

/// Milliseconds of `n` fixed-length `unit`s as a window duration names them: MongoDB's unit
/// names and `ms`; in `sql` also any case and English plurals (`INTERVAL '2' MINUTES`).
/// `None` for an unknown or calendar unit (month, quarter, year) and on overflow.
pub fn duration_millis(n: i64, unit: &str, sql: bool) -> Option<i64> {
    let folded = if sql {
        unit.to_ascii_lowercase()
    } else {
        unit.to_string()
    };
    let name = match folded.as_str() {
        "ms" => "millisecond",
        s if sql => s
            .strip_suffix('s')
            .filter(|one| Unit::parse(one).is_some())
            .unwrap_or(s),
        s => s,
    };
    Unit::parse(name)?.millis()?.checked_mul(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_spelling_and_without_overflow() {
        assert_eq!(duration_millis(3, "minute", false), Some(180_000));
        assert_eq!(duration_millis(3, "MINUTES", true), Some(180_000));
        assert_eq!(duration_millis(3, "minutes", false), None);
        assert_eq!(duration_millis(250, "ms", false), Some(250));
        assert_eq!(duration_millis(2, "week", false), Some(1_209_600_000));
        assert_eq!(duration_millis(1, "month", false), None);
        assert_eq!(duration_millis(i64::MAX, "day", false), None);
        assert_eq!(duration_millis(1, "fortnight", true), None);
    }
}
