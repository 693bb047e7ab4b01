//! Dates in JSON: extended JSON `{"$date": …}` values and the ISO-8601 text Fluxion writes.
//!
//! MongoDB dates are milliseconds since the Unix epoch, in UTC; in Arrow they are
//! `Timestamp(Millisecond, "UTC")` ([`date_type`]). In JSON a date is written as extended JSON:
//!
//! | input form                                   | meaning                                  |
//! |----------------------------------------------|------------------------------------------|
//! | `{"$date": "2026-03-01T10:00:00.250Z"}`      | ISO-8601 text (offsets allowed; none = UTC) |
//! | `{"$date": 1772359200250}`                   | milliseconds since the epoch             |
//! | `{"$date": {"$numberLong": "1772359200250"}}`| the same, canonical extended JSON        |
//!
//! Output is `{"$date": "2026-03-01T10:00:00.250Z"}` (always three fraction digits, as
//! JavaScript's `toISOString` and `mongoexport` write), or the `$numberLong` form for years
//! outside 0000–9999, which ISO-8601 text cannot hold.

use chrono::{DateTime, Datelike, Utc};
use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use serde_json::Value;

/// The Arrow type of a date.
pub fn date_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// If `v` is an extended JSON date (`{"$date": …}`), its milliseconds since the epoch, or why
/// its operand is not a date. `None` for any other value.
pub fn date_millis(v: &Value) -> Option<Result<i64, String>> {
    let Value::Object(map) = v else {
        return None;
    };
    if map.len() != 1 {
        return None;
    }
    let operand = map.get("$date")?;
    Some(match operand {
        Value::String(s) => parse_iso(s).ok_or_else(|| {
            format!("\"{s}\" is not an ISO-8601 date (e.g. \"2026-03-01T10:00:00Z\")")
        }),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{n} is not a whole number of milliseconds")),
        Value::Object(inner) => match inner.get("$numberLong") {
            Some(Value::String(s)) if inner.len() == 1 => s
                .parse::<i64>()
                .map_err(|_| format!("$numberLong \"{s}\" is not an integer")),
            _ => Err("expected {\"$numberLong\": \"<milliseconds>\"}".to_string()),
        },
        _ => Err("expected an ISO-8601 string or milliseconds since the epoch".to_string()),
    })
}

/// Parses ISO-8601 / RFC 3339 text (`2026-03-01`, `2026-03-01T10:00:00`, with optional fraction
/// and `Z` or `±hh:mm`), as Arrow's casts read it; text without an offset is UTC.
pub fn parse_iso(s: &str) -> Option<i64> {
    string_to_datetime(&Utc, s)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// The extended JSON text for `ms` milliseconds since the epoch.
pub fn write_date(out: &mut Vec<u8>, ms: i64) {
    use std::io::Write;
    match DateTime::<Utc>::from_timestamp_millis(ms).filter(|d| (0..=9999).contains(&d.year())) {
        Some(d) => {
            let _ = write!(
                out,
                "{{\"$date\":\"{}\"}}",
                d.format("%Y-%m-%dT%H:%M:%S%.3fZ")
            );
        }
        None => {
            let _ = write!(out, "{{\"$date\":{{\"$numberLong\":\"{ms}\"}}}}");
        }
    }
}

/// Replaces every extended JSON date inside `v` by its milliseconds, for decoders that read
/// dates as numbers.
pub fn unwrap_dates(v: &mut Value) {
    match v {
        Value::Object(_) => {
            if let Some(Ok(ms)) = date_millis(v) {
                *v = Value::from(ms);
            } else if let Value::Object(map) = v {
                map.values_mut().for_each(unwrap_dates);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_dates),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_extended_json_form() {
        let ms = 1_772_359_200_250;
        assert_eq!(
            date_millis(&json!({"$date": "2026-03-01T10:00:00.250Z"})),
            Some(Ok(ms))
        );
        assert_eq!(
            date_millis(&json!({"$date": "2026-03-01T11:00:00.250+01:00"})),
            Some(Ok(ms))
        );
        assert_eq!(date_millis(&json!({"$date": ms})), Some(Ok(ms)));
        assert_eq!(
            date_millis(&json!({"$date": {"$numberLong": ms.to_string()}})),
            Some(Ok(ms))
        );
        assert!(matches!(
            date_millis(&json!({"$date": "yesterday"})),
            Some(Err(_))
        ));
        assert_eq!(date_millis(&json!({"date": 1})), None);
        assert_eq!(date_millis(&json!({"$date": 1, "x": 2})), None);
    }

    #[test]
    fn writes_iso_text_with_milliseconds() {
        let mut out = Vec::new();
        write_date(&mut out, 0);
        assert_eq!(out, br#"{"$date":"1970-01-01T00:00:00.000Z"}"#);
        out.clear();
        write_date(&mut out, -62_198_755_200_000 - 86_400_000 * 366);
        assert!(out.starts_with(br#"{"$date":{"$numberLong":"#), "{out:?}");
    }
}
