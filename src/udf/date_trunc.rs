//! `mongo_date_trunc(date, unit, binSize, timezone, startOfWeek)`: `$dateTrunc`.
//!
//! Bins of `binSize` units are counted from 2000-01-01T00:00 in the time zone (for weeks, from
//! the start of the week holding that day), as MongoDB does. Units of a day or more are cut in
//! wall-clock time; smaller ones at the input's own UTC offset, so the result is never later
//! than the input across a daylight-saving change.

use std::sync::{Arc, LazyLock};

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta, Weekday};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::ScalarUDF;

use super::KernelUdf;
use super::args::{date_array, dates, get, ints, strings};
use super::calendar::{
    Unit, Zones, epoch_days, from_local, get_weekday, month_index, month_start, to_local,
    week_start,
};
use crate::document::date::date_type;

/// The function.
pub fn udf() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(KernelUdf::new(
            "mongo_date_trunc",
            vec![
                date_type(),
                DataType::Utf8,
                DataType::Int64,
                DataType::Utf8,
                DataType::Utf8,
            ],
            date_type(),
            kernel,
        )))
    });
    UDF.clone()
}

fn kernel(a: &[ArrayRef]) -> DFResult<ArrayRef> {
    let (d, unit, bin, tz, sow) = (
        dates(&a[0]),
        strings(&a[1]),
        ints(&a[2]),
        strings(&a[3]),
        strings(&a[4]),
    );
    let mut zones = Zones::default();
    let mut out = Vec::with_capacity(d.len());
    for i in 0..d.len() {
        let (Some(ms), Some(unit), Some(bin), Some(tz), Some(sow)) = (
            get(d, i),
            get(unit, i),
            get(bin, i),
            get(tz, i),
            get(sow, i),
        ) else {
            out.push(None);
            continue;
        };
        if bin < 1 {
            return Err(DataFusionError::Execution(format!(
                "$dateTrunc binSize must be a positive integer, got {bin}"
            )));
        }
        let tz = zones.get(tz)?;
        out.push(trunc(ms, Unit::get(unit)?, bin, &tz, get_weekday(sow)?));
    }
    Ok(date_array(out))
}

fn reference() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid")
}

fn trunc(
    ms: i64,
    unit: Unit,
    bin: i64,
    tz: &datafusion::arrow::array::timezone::Tz,
    start_of_week: Weekday,
) -> Option<i64> {
    let local = to_local(ms, tz)?;
    let date = local.date();
    let start: NaiveDate = match unit {
        Unit::Year => {
            let years = (date.year() as i64 - 2000).div_euclid(bin) * bin;
            NaiveDate::from_ymd_opt(2000 + i32::try_from(years).ok()?, 1, 1)?
        }
        Unit::Quarter | Unit::Month => {
            let size = if unit == Unit::Quarter { 3 * bin } else { bin };
            let base = month_index(reference());
            month_start(base + (month_index(date) - base).div_euclid(size) * size)?
        }
        Unit::Week => {
            let base = week_start(reference(), start_of_week);
            let days = epoch_days(week_start(date, start_of_week)) - epoch_days(base);
            base + TimeDelta::days(days.div_euclid(7 * bin) * 7 * bin)
        }
        Unit::Day => {
            let days = epoch_days(date) - epoch_days(reference());
            reference() + TimeDelta::days(days.div_euclid(bin) * bin)
        }
        fixed => {
            // Sub-day units: cut the wall-clock time, keeping the input's UTC offset.
            let size = fixed.millis()? * bin;
            let origin: NaiveDateTime = reference().and_hms_opt(0, 0, 0)?;
            let since = (local - origin).num_milliseconds();
            let offset = (local.and_utc().timestamp_millis()) - ms;
            let cut = since.div_euclid(size) * size;
            return Some(
                (origin + TimeDelta::milliseconds(cut))
                    .and_utc()
                    .timestamp_millis()
                    - offset,
            );
        }
    };
    from_local(start.and_hms_opt(0, 0, 0)?, tz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf::calendar::zone;

    fn ms(s: &str) -> i64 {
        crate::document::date::parse_iso(s).unwrap()
    }

    #[test]
    fn truncates_in_wall_clock_time_with_bins() {
        let utc = zone("UTC").unwrap();
        let ny = zone("America/New_York").unwrap();
        let t = ms("2024-03-10T06:30:00Z"); // 01:30 EST, a Sunday
        assert_eq!(
            trunc(t, Unit::Day, 1, &utc, Weekday::Sun),
            Some(ms("2024-03-10T00:00:00Z"))
        );
        assert_eq!(
            trunc(t, Unit::Day, 1, &ny, Weekday::Sun),
            Some(ms("2024-03-10T05:00:00Z"))
        );
        assert_eq!(
            trunc(t, Unit::Week, 1, &utc, Weekday::Mon),
            Some(ms("2024-03-04T00:00:00Z"))
        );
        assert_eq!(
            trunc(t, Unit::Month, 1, &utc, Weekday::Sun),
            Some(ms("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            trunc(t, Unit::Quarter, 1, &utc, Weekday::Sun),
            Some(ms("2024-01-01T00:00:00Z"))
        );
        assert_eq!(
            trunc(t, Unit::Month, 7, &utc, Weekday::Sun),
            Some(ms("2023-12-01T00:00:00Z"))
        );
        assert_eq!(
            trunc(t, Unit::Hour, 4, &utc, Weekday::Sun),
            Some(ms("2024-03-10T04:00:00Z"))
        );
        assert_eq!(
            trunc(t, Unit::Minute, 45, &ny, Weekday::Sun),
            Some(ms("2024-03-10T06:30:00Z"))
        );
        assert_eq!(
            trunc(
                ms("1999-12-31T10:00:00Z"),
                Unit::Year,
                10,
                &utc,
                Weekday::Sun
            ),
            Some(ms("1990-01-01T00:00:00Z"))
        );
    }
}
