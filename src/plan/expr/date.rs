//! Date operators: `$toDate`, the calendar parts (`$year` … `$millisecond`, `$dayOfWeek`,
//! `$week`, `$isoWeek`, `$isoWeekYear`, `$isoDayOfWeek`, `$dateToParts`), `$dateToString`,
//! `$dateFromString`, `$dateFromParts`, `$dateTrunc`, `$dateAdd`, `$dateSubtract`, `$dateDiff`.
//!
//! Dates are `Timestamp(ms, UTC)`. Parts and formatting use DataFusion's `date_part` and
//! `to_char` on the timestamp re-labelled with the requested zone (Arrow then computes wall-clock
//! fields), so their `timezone` must be a constant; the calendar arithmetic runs in Fluxion's own
//! functions (`crate::udf`), which also accept a per-document timezone.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::functions::core::expr_fn::named_struct;
use datafusion::functions::datetime::expr_fn::{date_part, to_char, to_local_time};
use datafusion::functions::string::expr_fn::concat;
use datafusion::logical_expr::{Expr, cast, lit, when};

use super::{Kind, Typed, typed_null};
use crate::Result;
use crate::document::date::date_type;
use crate::dsl::JsonPath;
use crate::udf::{self, calendar};

/// MongoDB's default `$dateToString` format.
const DEFAULT_FORMAT: &str = "%Y-%m-%dT%H:%M:%S.%LZ";

pub(super) fn compile(name: &str, args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    match name {
        "$toDate" => to_date(&args[0], true, at),
        "$dateToParts" => to_parts(&args, at),
        "$dateToString" => to_string(&args, at),
        "$dateFromString" => from_string(&args, at),
        "$dateFromParts" => from_parts(&args, at),
        "$dateTrunc" => {
            let d = date_arg(&args[0], at, name)?;
            let unit = unit_arg(&args[1], at)?;
            let bin = int_arg(&args[2], at, "binSize")?;
            let tz = zone_arg(&args[3], at)?;
            let sow = week_arg(&args[4], at)?;
            Ok(udf::call(
                udf::date_trunc::udf(),
                vec![d, unit, bin, tz, sow],
            ))
        }
        "$dateAdd" | "$dateSubtract" => {
            let d = date_arg(&args[0], at, name)?;
            let unit = unit_arg(&args[1], at)?;
            let mut amount = int_arg(&args[2], at, "amount")?;
            if name == "$dateSubtract" {
                amount = Expr::Negative(Box::new(amount));
            }
            let tz = zone_arg(&args[3], at)?;
            Ok(udf::call(udf::date_add::udf(), vec![d, unit, amount, tz]))
        }
        "$dateDiff" => {
            let start = date_arg(&args[0], at, name)?;
            let end = date_arg(&args[1], at, name)?;
            let unit = unit_arg(&args[2], at)?;
            let tz = zone_arg(&args[3], at)?;
            let sow = week_arg(&args[4], at)?;
            Ok(udf::call(
                udf::date_diff::udf(),
                vec![start, end, unit, tz, sow],
            ))
        }
        part => {
            let d = date_arg(&args[0], at, part)?;
            let local = local(d, args.get(1), at)?;
            Ok(date_field(part, local))
        }
    }
}

/// `$toDate` (and `$convert` to `"date"`): dates as they are, numbers as milliseconds since
/// the epoch, strings parsed as ISO-8601 — an error when one does not parse, unless `strict`
/// is off (then null, for `onError`).
pub(super) fn to_date(a: &Typed, strict: bool, at: &JsonPath) -> Result<Expr> {
    let x = a.expr.clone();
    Ok(match a.kind() {
        Kind::Null => typed_null(&date_type()),
        Kind::Date => cast(x, date_type()),
        Kind::Number => cast(cast(x, DataType::Int64), date_type()),
        Kind::String => udf::call(
            udf::date_parse::udf(),
            vec![x, lit(ScalarValue::Utf8(None)), lit("UTC"), lit(strict)],
        ),
        other => {
            return Err(at.err(format!(
                "cannot convert an {} to a date (expected a date, a number of milliseconds or an ISO-8601 string)",
                other.name()
            )));
        }
    })
}

/// A date operand as `Timestamp(ms, UTC)`; a null one stays null; anything else is an error,
/// as it is in MongoDB.
fn date_arg(a: &Typed, at: &JsonPath, op: &str) -> Result<Expr> {
    match a.kind() {
        Kind::Date => Ok(cast(a.expr.clone(), date_type())),
        Kind::Null => Ok(typed_null(&date_type())),
        other => Err(at.err(format!(
            "{op} expects a date, got {} (use $toDate or $dateFromString to convert)",
            other.name()
        ))),
    }
}

/// A constant string argument, if it is one.
fn const_str(a: &Typed) -> Option<&str> {
    match &a.expr {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Some(s),
        _ => None,
    }
}

/// A string argument for a function that checks it per row; constants are checked now.
fn string_arg(
    a: &Typed,
    at: &JsonPath,
    what: &str,
    check: impl Fn(&str) -> std::result::Result<(), String>,
) -> Result<Expr> {
    if let Some(s) = const_str(a) {
        check(s).map_err(|e| at.err(format!("{what}: {e}")))?;
    }
    match a.kind() {
        Kind::String => Ok(cast(a.expr.clone(), DataType::Utf8)),
        Kind::Null => Ok(typed_null(&DataType::Utf8)),
        other => Err(at.err(format!("{what} must be a string, got {}", other.name()))),
    }
}

fn unit_arg(a: &Typed, at: &JsonPath) -> Result<Expr> {
    string_arg(a, at, "unit", |s| {
        calendar::Unit::parse(s).map(|_| ()).ok_or_else(|| {
            format!(
                "unknown unit \"{s}\" (expected one of {})",
                calendar::Unit::NAMES
            )
        })
    })
}

fn zone_arg(a: &Typed, at: &JsonPath) -> Result<Expr> {
    string_arg(a, at, "timezone", |s| calendar::zone(s).map(|_| ()))
}

fn week_arg(a: &Typed, at: &JsonPath) -> Result<Expr> {
    string_arg(a, at, "startOfWeek", |s| {
        calendar::weekday(s)
            .map(|_| ())
            .ok_or_else(|| format!("unknown day \"{s}\""))
    })
}

fn int_arg(a: &Typed, at: &JsonPath, what: &str) -> Result<Expr> {
    match a.kind() {
        Kind::Number => Ok(cast(a.expr.clone(), DataType::Int64)),
        Kind::Null => Ok(typed_null(&DataType::Int64)),
        other => Err(at.err(format!("{what} must be a number, got {}", other.name()))),
    }
}

/// `d` re-labelled with the constant `timezone` argument, so that Arrow reads wall-clock
/// fields in that zone.
fn local(d: Expr, timezone: Option<&Typed>, at: &JsonPath) -> Result<Expr> {
    let zone = match timezone {
        None => return Ok(d),
        Some(t) if t.kind() == Kind::Null => return Ok(d),
        Some(t) => const_str(t).ok_or_else(|| {
            at.err("timezone must be a constant string here (e.g. \"Europe/Lisbon\" or \"+05:30\")")
        })?,
    };
    calendar::zone(zone).map_err(|e| at.err(format!("timezone: {e}")))?;
    Ok(cast(
        d,
        DataType::Timestamp(TimeUnit::Millisecond, Some(zone.into())),
    ))
}

/// One calendar field of a zone-labelled timestamp, as MongoDB numbers it.
fn date_field(part: &str, local: Expr) -> Expr {
    let p = |name: &str| cast(date_part(lit(name), local.clone()), DataType::Int64);
    let formatted = |f: &str| cast(to_char(local.clone(), lit(f)), DataType::Int64);
    match part {
        "$year" => p("year"),
        "$month" => p("month"),
        "$dayOfMonth" => p("day"),
        "$hour" => p("hour"),
        "$minute" => p("minute"),
        "$second" => p("second"),
        // DataFusion counts milliseconds including the seconds.
        "$millisecond" => p("millisecond") % lit(1000i64),
        "$dayOfYear" => p("doy"),
        // DataFusion: Sunday = 0; MongoDB: Sunday = 1.
        "$dayOfWeek" => p("dow") + lit(1i64),
        "$isoDayOfWeek" => (p("dow") + lit(6i64)) % lit(7i64) + lit(1i64),
        "$week" => formatted("%U"),
        "$isoWeek" => p("week"),
        "$isoWeekYear" => formatted("%G"),
        other => unreachable!("{other} is not a date operator"),
    }
}

/// `$dateToParts`: a document of calendar fields (or ISO week fields with `iso8601`).
fn to_parts(args: &[Typed], at: &JsonPath) -> Result<Expr> {
    let d = date_arg(&args[0], at, "$dateToParts")?;
    let local = local(d, args.get(1), at)?;
    let iso = match args.get(2).map(|a| &a.expr) {
        None => false,
        Some(Expr::Literal(ScalarValue::Boolean(b), _)) => b.unwrap_or(false),
        Some(_) => return Err(at.err("iso8601 must be a constant true or false")),
    };
    let fields: &[(&str, &str)] = if iso {
        &[
            ("isoWeekYear", "$isoWeekYear"),
            ("isoWeek", "$isoWeek"),
            ("isoDayOfWeek", "$isoDayOfWeek"),
            ("hour", "$hour"),
            ("minute", "$minute"),
            ("second", "$second"),
            ("millisecond", "$millisecond"),
        ]
    } else {
        &[
            ("year", "$year"),
            ("month", "$month"),
            ("day", "$dayOfMonth"),
            ("hour", "$hour"),
            ("minute", "$minute"),
            ("second", "$second"),
            ("millisecond", "$millisecond"),
        ]
    };
    let mut parts = Vec::with_capacity(fields.len() * 2);
    for (name, op) in fields {
        parts.push(lit(*name));
        parts.push(date_field(op, local.clone()));
    }
    // A null date gives null, not a document of nulls.
    Ok(when(local.is_null(), typed_null_struct(&parts)?).otherwise(named_struct(parts))?)
}

fn typed_null_struct(parts: &[Expr]) -> Result<Expr> {
    let fields: Vec<datafusion::arrow::datatypes::Field> = parts
        .chunks(2)
        .map(|kv| match &kv[0] {
            Expr::Literal(ScalarValue::Utf8(Some(n)), _) => {
                datafusion::arrow::datatypes::Field::new(n, DataType::Int64, true)
            }
            _ => unreachable!("names are literals"),
        })
        .collect();
    Ok(typed_null(&DataType::Struct(fields.into())))
}

/// `$dateToString`: the format's pieces, each by `to_char` or a computed field, concatenated.
fn to_string(args: &[Typed], at: &JsonPath) -> Result<Expr> {
    let d = date_arg(&args[0], at, "$dateToString")?;
    let format = match args.get(1) {
        None => DEFAULT_FORMAT,
        Some(f) if f.kind() == Kind::Null => DEFAULT_FORMAT,
        Some(f) => const_str(f).ok_or_else(|| at.err("format must be a constant string"))?,
    };
    let pieces = calendar::format_pieces(format).map_err(|e| at.err(format!("format: {e}")))?;
    let local = local(d.clone(), args.get(2), at)?;
    let mut parts = Vec::with_capacity(pieces.len());
    for piece in pieces {
        parts.push(match piece {
            calendar::FormatPiece::Chrono(f) => to_char(local.clone(), lit(f)),
            calendar::FormatPiece::DayOfWeek => {
                cast(date_field("$dayOfWeek", local.clone()), DataType::Utf8)
            }
            calendar::FormatPiece::OffsetMinutes => {
                let wall = cast(to_local_time(vec![local.clone()]), DataType::Int64);
                let minutes = (wall - cast(d.clone(), DataType::Int64)) / lit(60_000i64);
                when(
                    minutes.clone().gt_eq(lit(0i64)),
                    concat(vec![lit("+"), cast(minutes.clone(), DataType::Utf8)]),
                )
                .otherwise(cast(minutes, DataType::Utf8))?
            }
        });
    }
    let text = if parts.len() == 1 {
        parts.pop().expect("one")
    } else {
        concat(parts)
    };
    Ok(match args.get(3) {
        Some(on_null) if on_null.kind() != Kind::Null => {
            same_class(on_null, Kind::String, at, "onNull")?;
            when(d.is_null(), on_null.expr.clone()).otherwise(text)?
        }
        _ => when(d.is_null(), typed_null(&DataType::Utf8)).otherwise(text)?,
    })
}

/// `$dateFromString`: `onNull` for null text, `onError` (when given) for text that does not
/// parse; without `onError` such text is an error, as in MongoDB.
fn from_string(args: &[Typed], at: &JsonPath) -> Result<Expr> {
    let text = match args[0].kind() {
        Kind::String => args[0].expr.clone(),
        Kind::Null => typed_null(&DataType::Utf8),
        other => {
            return Err(at.err(format!(
                "$dateFromString expects a string dateString, got {}",
                other.name()
            )));
        }
    };
    let format = match args.get(1) {
        None => typed_null(&DataType::Utf8),
        Some(f) => string_arg(f, at, "format", |s| calendar::format_pieces(s).map(|_| ()))?,
    };
    let tz = zone_arg(&args[2], at)?;
    let on_error = args.get(4);
    let parsed = udf::call(
        udf::date_parse::udf(),
        vec![text.clone(), format, tz, lit(on_error.is_none())],
    );
    let mut case = when(
        text.clone().is_null(),
        match args.get(3) {
            Some(n) if n.kind() != Kind::Null => {
                same_class(n, Kind::Date, at, "onNull")?;
                cast(n.expr.clone(), date_type())
            }
            _ => typed_null(&date_type()),
        },
    );
    if let Some(e) = on_error {
        let value = match e.kind() {
            Kind::Null => typed_null(&date_type()),
            _ => {
                same_class(e, Kind::Date, at, "onError")?;
                cast(e.expr.clone(), date_type())
            }
        };
        case = case.when(parsed.clone().is_null(), value);
    }
    Ok(case.otherwise(parsed)?)
}

/// `$dateFromParts`, calendar or ISO week form.
fn from_parts(args: &[Typed], at: &JsonPath) -> Result<Expr> {
    let iso = args.len() > 8 && args[8].kind() != Kind::Null;
    let year_given = args[0].kind() != Kind::Null || !matches!(args[0].expr, Expr::Literal(..));
    if iso && year_given {
        return Err(at.err("$dateFromParts takes either year or isoWeekYear, not both"));
    }
    if !iso && matches!(args[0].expr, Expr::Literal(ScalarValue::Null, _)) {
        return Err(at.err("$dateFromParts needs year (or isoWeekYear)"));
    }
    let (names, idx): (&[&str], [usize; 3]) = if iso {
        (&["isoWeekYear", "isoWeek", "isoDayOfWeek"], [8, 9, 10])
    } else {
        (&["year", "month", "day"], [0, 1, 2])
    };
    let mut call = Vec::with_capacity(8);
    for (name, i) in names.iter().zip(idx) {
        call.push(int_arg(&args[i], at, name)?);
    }
    for (name, i) in ["hour", "minute", "second", "millisecond"].iter().zip(3..7) {
        call.push(int_arg(&args[i], at, name)?);
    }
    call.push(zone_arg(&args[7], at)?);
    let f = if iso {
        udf::date_from_parts::iso_udf()
    } else {
        udf::date_from_parts::udf()
    };
    Ok(udf::call(f, call))
}

fn same_class(a: &Typed, want: Kind, at: &JsonPath, what: &str) -> Result<()> {
    if a.kind() == want {
        return Ok(());
    }
    Err(at.err(format!(
        "{what} must be a {} or null here, got {} (a Fluxion column holds one type)",
        want.name(),
        a.kind().name()
    )))
}
