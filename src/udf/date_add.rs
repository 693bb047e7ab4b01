//! `mongo_date_add(date, unit, amount, timezone)`: `$dateAdd` (and `$dateSubtract` with a
//! negated amount).
//!
//! Months, quarters and years move the wall-clock date, keeping the time of day and clamping
//! the day to the target month's end (Jan 31 + 1 month = Feb 28/29); days and weeks move the
//! wall-clock date too, so a day is 23 or 25 hours across a daylight-saving change; hours and
//! smaller add exact durations.

use std::sync::{Arc, LazyLock};

use chrono::{Datelike, NaiveDate, TimeDelta};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::ScalarUDF;

use super::KernelUdf;
use super::args::{date_array, dates, get, ints, strings};
use super::calendar::{Unit, Zones, from_local, month_index, month_start, to_local};
use crate::document::date::date_type;

/// The function.
pub fn udf() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(KernelUdf::new(
            "mongo_date_add",
            vec![date_type(), DataType::Utf8, DataType::Int64, DataType::Utf8],
            date_type(),
            kernel,
        )))
    });
    UDF.clone()
}

fn kernel(a: &[ArrayRef]) -> DFResult<ArrayRef> {
    let (d, unit, amount, tz) = (dates(&a[0]), strings(&a[1]), ints(&a[2]), strings(&a[3]));
    let mut zones = Zones::default();
    let mut out = Vec::with_capacity(d.len());
    for i in 0..d.len() {
        let (Some(ms), Some(unit), Some(amount), Some(tz)) =
            (get(d, i), get(unit, i), get(amount, i), get(tz, i))
        else {
            out.push(None);
            continue;
        };
        let tz = zones.get(tz)?;
        let r = add(ms, Unit::get(unit)?, amount, &tz).ok_or_else(|| {
            DataFusionError::Execution(format!(
                "$dateAdd: adding {amount} {unit}(s) overflows the date range"
            ))
        })?;
        out.push(Some(r));
    }
    Ok(date_array(out))
}

/// `ms` moved by `amount` units in `tz`; `None` on overflow.
pub fn add(ms: i64, unit: Unit, amount: i64, tz: &Tz) -> Option<i64> {
    let months = match unit {
        Unit::Year => amount.checked_mul(12)?,
        Unit::Quarter => amount.checked_mul(3)?,
        Unit::Month => amount,
        Unit::Week | Unit::Day => {
            let days = if unit == Unit::Week {
                amount.checked_mul(7)?
            } else {
                amount
            };
            let local = to_local(ms, tz)?;
            return from_local(local.checked_add_signed(TimeDelta::try_days(days)?)?, tz);
        }
        fixed => return ms.checked_add(amount.checked_mul(fixed.millis()?)?),
    };
    let local = to_local(ms, tz)?;
    let first = month_start(month_index(local.date()).checked_add(months)?)?;
    let day = local.day().min(days_in_month(first));
    from_local(first.with_day(day)?.and_time(local.time()), tz)
}

fn days_in_month(first: NaiveDate) -> u32 {
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    (next - first).num_days() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf::calendar::zone;

    fn ms(s: &str) -> i64 {
        crate::document::date::parse_iso(s).unwrap()
    }

    #[test]
    fn calendar_units_clamp_and_days_follow_the_wall_clock() {
        let utc = zone("UTC").unwrap();
        let ny = zone("America/New_York").unwrap();
        let jan31 = ms("2024-01-31T10:00:00Z");
        assert_eq!(
            add(jan31, Unit::Month, 1, &utc),
            Some(ms("2024-02-29T10:00:00Z"))
        );
        assert_eq!(
            add(jan31, Unit::Quarter, -1, &utc),
            Some(ms("2023-10-31T10:00:00Z"))
        );
        assert_eq!(
            add(jan31, Unit::Year, 1, &utc),
            Some(ms("2025-01-31T10:00:00Z"))
        );
        // Across New York's spring-forward night a day is 23 hours.
        let before = ms("2024-03-09T17:00:00Z"); // 12:00 EST
        assert_eq!(
            add(before, Unit::Day, 1, &ny),
            Some(ms("2024-03-10T16:00:00Z"))
        );
        assert_eq!(
            add(before, Unit::Day, 1, &utc),
            Some(ms("2024-03-10T17:00:00Z"))
        );
        assert_eq!(
            add(before, Unit::Hour, -2, &ny),
            Some(ms("2024-03-09T15:00:00Z"))
        );
        assert_eq!(add(1, Unit::Millisecond, i64::MAX, &utc), None);
    }
}
