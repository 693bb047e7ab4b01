//! `mongo_date_from_parts(year, month, day, hour, minute, second, millisecond, timezone)` and
//! `mongo_date_from_iso_parts(isoWeekYear, isoWeek, isoDayOfWeek, hour, minute, second,
//! millisecond, timezone)`: `$dateFromParts`.
//!
//! Values outside a part's usual range carry into the next larger part, as in MongoDB
//! (month 14 is February of the next year, day 0 the last day of the previous month, hour -1
//! the last hour of the previous day). The year must be within 1–9999.

use std::sync::{Arc, LazyLock};

use chrono::{NaiveDate, NaiveDateTime, TimeDelta, Weekday};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::ScalarUDF;

use super::KernelUdf;
use super::args::{date_array, get, ints, strings};
use super::calendar::{Zones, from_local, month_start};
use crate::document::date::date_type;

fn signature() -> Vec<DataType> {
    let mut args = vec![DataType::Int64; 7];
    args.push(DataType::Utf8);
    args
}

/// The calendar form (`year`, `month`, `day`, …).
pub fn udf() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(KernelUdf::new(
            "mongo_date_from_parts",
            signature(),
            date_type(),
            |a| kernel(a, false),
        )))
    });
    UDF.clone()
}

/// The ISO week form (`isoWeekYear`, `isoWeek`, `isoDayOfWeek`, …).
pub fn iso_udf() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(KernelUdf::new(
            "mongo_date_from_iso_parts",
            signature(),
            date_type(),
            |a| kernel(a, true),
        )))
    });
    UDF.clone()
}

fn kernel(a: &[ArrayRef], iso: bool) -> DFResult<ArrayRef> {
    let parts: Vec<_> = a[..7].iter().map(ints).collect();
    let tz = strings(&a[7]);
    let mut zones = Zones::default();
    let mut out = Vec::with_capacity(tz.len());
    'rows: for i in 0..tz.len() {
        let mut p = [0i64; 7];
        for (k, col) in parts.iter().enumerate() {
            match get(*col, i) {
                Some(v) => p[k] = v,
                None => {
                    out.push(None);
                    continue 'rows;
                }
            }
        }
        let Some(tz) = get(tz, i) else {
            out.push(None);
            continue;
        };
        if !(1..=9999).contains(&p[0]) {
            let name = if iso { "isoWeekYear" } else { "year" };
            return Err(DataFusionError::Execution(format!(
                "$dateFromParts: {name} must be within 1 and 9999, got {}",
                p[0]
            )));
        }
        let tz = zones.get(tz)?;
        out.push(build(p, iso, &tz));
    }
    Ok(date_array(out))
}

fn build(p: [i64; 7], iso: bool, tz: &Tz) -> Option<i64> {
    let day: NaiveDate = if iso {
        let week1 = NaiveDate::from_isoywd_opt(p[0] as i32, 1, Weekday::Mon)?;
        week1.checked_add_signed(TimeDelta::try_days((p[1] - 1) * 7 + (p[2] - 1))?)?
    } else {
        month_start(p[0] * 12 + p[1] - 1)?.checked_add_signed(TimeDelta::try_days(p[2] - 1)?)?
    };
    let local: NaiveDateTime = day.and_hms_opt(0, 0, 0)?.checked_add_signed(
        TimeDelta::try_hours(p[3])?
            + TimeDelta::try_minutes(p[4])?
            + TimeDelta::try_seconds(p[5])?
            + TimeDelta::try_milliseconds(p[6])?,
    )?;
    from_local(local, tz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf::calendar::zone;

    fn ms(s: &str) -> i64 {
        crate::document::date::parse_iso(s).unwrap()
    }

    #[test]
    fn parts_carry_like_mongodb() {
        let utc = zone("UTC").unwrap();
        assert_eq!(
            build([2024, 2, 29, 12, 0, 0, 5], false, &utc),
            Some(ms("2024-02-29T12:00:00.005Z"))
        );
        assert_eq!(
            build([2024, 14, 1, 0, 0, 0, 0], false, &utc),
            Some(ms("2025-02-01T00:00:00Z"))
        );
        assert_eq!(
            build([2024, 3, 0, -1, 0, 0, 0], false, &utc),
            Some(ms("2024-02-28T23:00:00Z"))
        );
        // ISO week 1 of 2021 starts on Monday 2021-01-04.
        assert_eq!(
            build([2021, 1, 1, 0, 0, 0, 0], true, &utc),
            Some(ms("2021-01-04T00:00:00Z"))
        );
        assert_eq!(
            build([2020, 53, 7, 0, 0, 0, 0], true, &utc),
            Some(ms("2021-01-03T00:00:00Z"))
        );
        let lisbon = zone("Europe/Lisbon").unwrap();
        assert_eq!(
            build([2024, 7, 1, 0, 0, 0, 0], false, &lisbon),
            Some(ms("2024-06-30T23:00:00Z"))
        );
    }
}
