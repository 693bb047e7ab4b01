//! `mongo_date_diff(start, end, unit, timezone, startOfWeek)`: `$dateDiff`.
//!
//! Counts the unit boundaries crossed between the two dates in the zone's wall-clock time, as
//! MongoDB does: from 23:59 to 00:01 the next day is 1 day; from Jan 31 to Feb 1 is 1 month.
//! Weeks start on `startOfWeek`; milliseconds are the exact difference.

use std::sync::{Arc, LazyLock};

use chrono::{Datelike, NaiveDateTime, Weekday};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DFResult;
use datafusion::logical_expr::ScalarUDF;

use super::KernelUdf;
use super::args::{dates, get, strings};
use super::calendar::{Unit, Zones, epoch_days, get_weekday, month_index, to_local, week_start};
use crate::document::date::date_type;

/// The function.
pub fn udf() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(KernelUdf::new(
            "mongo_date_diff",
            vec![
                date_type(),
                date_type(),
                DataType::Utf8,
                DataType::Utf8,
                DataType::Utf8,
            ],
            DataType::Int64,
            kernel,
        )))
    });
    UDF.clone()
}

fn kernel(a: &[ArrayRef]) -> DFResult<ArrayRef> {
    let (s, e, unit, tz, sow) = (
        dates(&a[0]),
        dates(&a[1]),
        strings(&a[2]),
        strings(&a[3]),
        strings(&a[4]),
    );
    let mut zones = Zones::default();
    let mut out = Vec::with_capacity(s.len());
    for i in 0..s.len() {
        let (Some(s), Some(e), Some(unit), Some(tz), Some(sow)) =
            (get(s, i), get(e, i), get(unit, i), get(tz, i), get(sow, i))
        else {
            out.push(None);
            continue;
        };
        let tz = zones.get(tz)?;
        out.push(diff(s, e, Unit::get(unit)?, &tz, get_weekday(sow)?));
    }
    Ok(Arc::new(Int64Array::from(out)))
}

/// Unit boundaries crossed from `start` to `end` (negative when `end` is earlier).
pub fn diff(start: i64, end: i64, unit: Unit, tz: &Tz, start_of_week: Weekday) -> Option<i64> {
    if unit == Unit::Millisecond {
        return end.checked_sub(start);
    }
    let (a, b) = (to_local(start, tz)?, to_local(end, tz)?);
    let wall = |t: NaiveDateTime| t.and_utc().timestamp_millis();
    Some(match unit {
        Unit::Year => (b.year() - a.year()) as i64,
        Unit::Quarter => {
            let q = |t: NaiveDateTime| t.year() as i64 * 4 + t.month0() as i64 / 3;
            q(b) - q(a)
        }
        Unit::Month => month_index(b.date()) - month_index(a.date()),
        Unit::Week => {
            (epoch_days(week_start(b.date(), start_of_week))
                - epoch_days(week_start(a.date(), start_of_week)))
                / 7
        }
        Unit::Day => epoch_days(b.date()) - epoch_days(a.date()),
        fixed => {
            let size = fixed.millis()?;
            wall(b).div_euclid(size) - wall(a).div_euclid(size)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf::calendar::zone;

    fn ms(s: &str) -> i64 {
        crate::document::date::parse_iso(s).unwrap()
    }

    #[test]
    fn counts_boundaries_crossed() {
        let utc = zone("UTC").unwrap();
        let d = |a: &str, b: &str, u| diff(ms(a), ms(b), u, &utc, Weekday::Sun);
        assert_eq!(
            d("2024-01-31T23:59:00Z", "2024-02-01T00:01:00Z", Unit::Day),
            Some(1)
        );
        assert_eq!(
            d("2024-01-31T23:59:00Z", "2024-02-01T00:01:00Z", Unit::Month),
            Some(1)
        );
        assert_eq!(
            d("2024-01-01T00:00:00Z", "2024-12-31T00:00:00Z", Unit::Year),
            Some(0)
        );
        assert_eq!(
            d(
                "2024-12-31T00:00:00Z",
                "2024-01-01T00:00:00Z",
                Unit::Quarter
            ),
            Some(-3)
        );
        // 2024-03-09 is a Saturday, 2024-03-10 a Sunday: a new week when weeks start on Sunday.
        assert_eq!(
            d("2024-03-09T12:00:00Z", "2024-03-10T12:00:00Z", Unit::Week),
            Some(1)
        );
        assert_eq!(
            diff(
                ms("2024-03-09T12:00:00Z"),
                ms("2024-03-10T12:00:00Z"),
                Unit::Week,
                &utc,
                Weekday::Mon
            ),
            Some(0)
        );
        assert_eq!(
            d(
                "2024-03-09T12:00:00.5Z",
                "2024-03-09T12:00:01Z",
                Unit::Second
            ),
            Some(1)
        );
        let kolkata = zone("+05:30").unwrap();
        // 18:20Z and 18:40Z straddle local midnight in UTC+05:30.
        assert_eq!(
            diff(
                ms("2024-03-09T18:20:00Z"),
                ms("2024-03-09T18:40:00Z"),
                Unit::Day,
                &kolkata,
                Weekday::Sun
            ),
            Some(1)
        );
    }
}
