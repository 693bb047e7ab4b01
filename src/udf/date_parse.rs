//! `mongo_date_parse(text, format, timezone, strict)`: `$dateFromString`, `$toDate` and
//! `$convert` to `"date"` of strings.
//!
//! Without a format (null), ISO-8601 text as Arrow reads it (`2026-03-01`,
//! `2026-03-01T10:00:00.5`, with `Z` or `±hh:mm`); with one, MongoDB's specifiers (`%Y-%m-%d
//! %H:%M:%S.%L`, `%z`, `%j`, `%G-%V-%u`, …). Text without an offset is wall-clock time in
//! `timezone`. Unparsable text is an error when `strict`, else null (for `onError`).

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::ScalarUDF;

use super::KernelUdf;
use super::args::{bools, date_array, get, strings};
use super::calendar::{FormatPiece, Zones, format_pieces, from_local};
use crate::document::date::date_type;

/// The function.
pub fn udf() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(KernelUdf::new(
            "mongo_date_parse",
            vec![
                DataType::Utf8,
                DataType::Utf8,
                DataType::Utf8,
                DataType::Boolean,
            ],
            date_type(),
            kernel,
        )))
    });
    UDF.clone()
}

fn kernel(a: &[ArrayRef]) -> DFResult<ArrayRef> {
    let (text, format, tz, strict) = (strings(&a[0]), strings(&a[1]), strings(&a[2]), bools(&a[3]));
    let mut zones = Zones::default();
    let mut last_format: Option<(String, String)> = None;
    let mut out = Vec::with_capacity(text.len());
    for i in 0..text.len() {
        let (Some(s), Some(tz)) = (get(text, i), get(tz, i)) else {
            out.push(None);
            continue;
        };
        // MongoDB refuses text that carries its own offset together with a timezone.
        let clash = tz != "UTC" && has_offset(s);
        let tz = zones.get(tz)?;
        let format = match get(format, i) {
            None => None,
            Some(f) => {
                if last_format.as_ref().is_none_or(|(m, _)| m != f) {
                    last_format = Some((f.to_string(), chrono_format(f)?));
                }
                last_format.as_ref().map(|(_, c)| c.as_str())
            }
        };
        let parsed = if clash { None } else { parse(s, format, &tz) };
        if parsed.is_none() && get(strict, i).unwrap_or(true) {
            return Err(DataFusionError::Execution(match format {
                _ if clash => format!(
                    "cannot parse \"{s}\": it carries its own UTC offset, and a timezone was given too"
                ),
                None => format!("cannot parse \"{s}\" as a date (expected ISO-8601 text)"),
                Some(_) => format!("cannot parse \"{s}\" as a date with the given format"),
            }));
        }
        out.push(parsed);
    }
    Ok(date_array(out))
}

/// True when ISO text ends in a UTC offset (`Z`, `+02:00`, `-0530`).
fn has_offset(s: &str) -> bool {
    let s = s.trim();
    if s.ends_with(['Z', 'z']) {
        return true;
    }
    // An offset follows the time: look for a sign after a 'T' or space.
    let Some(t) = s.find(['T', 't', ' ']) else {
        return false;
    };
    s[t..].contains(['+', '-'])
}

/// A MongoDB parsing format as chrono's, when every specifier has an equivalent.
fn chrono_format(format: &str) -> DFResult<String> {
    match format_pieces(format)
        .map_err(DataFusionError::Execution)?
        .as_slice()
    {
        [FormatPiece::Chrono(f)] => Ok(f.clone()),
        _ => Err(DataFusionError::Execution(format!(
            "format \"{format}\": %w and %Z cannot be parsed"
        ))),
    }
}

/// Milliseconds since the epoch of `s`, or `None` when it does not parse.
pub fn parse(s: &str, format: Option<&str>, tz: &Tz) -> Option<i64> {
    let Some(format) = format else {
        return string_to_datetime(tz, s.trim())
            .ok()
            .map(|d| d.timestamp_millis());
    };
    if format.contains("%z") {
        return DateTime::parse_from_str(s, format)
            .ok()
            .map(|d| d.timestamp_millis());
    }
    let local = match NaiveDateTime::parse_from_str(s, format) {
        Ok(t) => t,
        Err(_) => NaiveDate::parse_from_str(s, format)
            .ok()?
            .and_hms_opt(0, 0, 0)?,
    };
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
    fn parses_iso_text_and_formats_in_a_zone() {
        let utc = zone("UTC").unwrap();
        let ny = zone("America/New_York").unwrap();
        assert_eq!(
            parse("2024-03-01", None, &utc),
            Some(ms("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            parse("2024-03-01T10:00:00", None, &ny),
            Some(ms("2024-03-01T15:00:00Z"))
        );
        assert_eq!(
            parse("2024-03-01T10:00:00+01:00", None, &ny),
            Some(ms("2024-03-01T09:00:00Z"))
        );
        assert_eq!(parse("soon", None, &utc), None);
        let f = chrono_format("%d/%m/%Y %H:%M:%S.%L").unwrap();
        assert_eq!(
            parse("01/03/2024 10:00:00.250", Some(&f), &utc),
            Some(ms("2024-03-01T10:00:00.250Z"))
        );
        let f = chrono_format("%Y-%m-%d").unwrap();
        assert_eq!(
            parse("2024-03-01", Some(&f), &ny),
            Some(ms("2024-03-01T05:00:00Z"))
        );
        let f = chrono_format("%Y-%m-%dT%H:%M:%S%z").unwrap();
        assert_eq!(
            parse("2024-03-01T10:00:00+0200", Some(&f), &utc),
            Some(ms("2024-03-01T08:00:00Z"))
        );
        assert!(chrono_format("%w").is_err());
        assert!(has_offset("2024-03-01T10:00:00Z") && has_offset("2024-03-01T10:00:00-05:00"));
        assert!(!has_offset("2024-03-01T10:00:00") && !has_offset("2024-03-01"));
    }
}
