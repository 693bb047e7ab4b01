//! Arithmetic expressions: `$add` `$subtract` `$multiply` `$divide` `$mod` `$abs`, rounding
//! (`$ceil` `$floor` `$round` `$trunc`), `$sqrt` `$pow` `$exp` `$ln` `$log` `$log10` and
//! trigonometry. `$round` rounds half to even, as MongoDB does (2.5 → 2, 3.5 → 4).
//!
//! Operands must be numbers (or null/missing, which makes the result null), as in MongoDB;
//! the check happens at plan time against the column types. `$divide` always yields a double.
//! Division or modulo by zero yields null where MongoDB raises an error (README).

use datafusion::arrow::datatypes::DataType;
use datafusion::functions::expr_fn::{abs, nullif};
use datafusion::functions::math::expr_fn as math;
use datafusion::logical_expr::{Expr, cast, lit, when};

use super::{Kind, Typed};
use crate::Result;
use crate::document::date::date_type;
use crate::dsl::JsonPath;

pub(super) fn compile(name: &str, args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    if matches!(name, "$add" | "$subtract") && args.iter().any(|a| a.kind() == Kind::Date) {
        return date_arithmetic(name, args, at);
    }
    for (i, a) in args.iter().enumerate() {
        if !matches!(a.kind(), Kind::Number | Kind::Null) {
            return Err(at.index(i).err(format!(
                "{name} only supports numeric types, not {}",
                a.kind().name()
            )));
        }
    }
    // Integers stay integers, checked for overflow (DataFusion's `+ - *` wrap around).
    let integers = !args.is_empty()
        && args
            .iter()
            .all(|a| a.ty.is_integer() || a.kind() == Kind::Null)
        && args.iter().any(|a| a.ty.is_integer());
    if integers && matches!(name, "$add" | "$subtract" | "$multiply") {
        let f = match name {
            "$add" => crate::udf::checked_arith::add(),
            "$subtract" => crate::udf::checked_arith::subtract(),
            _ => crate::udf::checked_arith::multiply(),
        };
        let ints = args.into_iter().map(|a| cast(a.expr, DataType::Int64));
        return Ok(ints
            .reduce(|a, b| crate::udf::call(f.clone(), vec![a, b]))
            .expect("at least one argument"));
    }
    let mut exprs = args.into_iter().map(|a| a.expr);
    Ok(match name {
        "$add" => exprs.reduce(|a, b| a + b).unwrap_or(lit(0i64)),
        "$multiply" => exprs.reduce(|a, b| a * b).unwrap_or(lit(1i64)),
        "$subtract" => {
            let (a, b) = (exprs.next().expect("2"), exprs.next().expect("2"));
            a - b
        }
        "$divide" => {
            let (a, b) = (exprs.next().expect("2"), exprs.next().expect("2"));
            let b = cast(b, DataType::Float64);
            cast(a, DataType::Float64) / nullif(b, lit(0f64))
        }
        "$mod" => {
            let (a, b) = (exprs.next().expect("2"), exprs.next().expect("2"));
            a % nullif(b, lit(0i64))
        }
        "$abs" => abs(exprs.next().expect("1")),
        "$ceil" => math::ceil(exprs.next().expect("1")),
        "$floor" => math::floor(exprs.next().expect("1")),
        "$round" | "$trunc" => {
            let x = float(exprs.next().expect("1"));
            let place = exprs.next().map_or(lit(0i64), |p| cast(p, DataType::Int64));
            // Scale by a power of ten that is a whole number (10^-1 is not exact in binary):
            // multiply for places after the point, divide for places before it.
            let scale = math::power(lit(10f64), float(abs(place.clone())));
            let after = place.gt_eq(lit(0i64));
            let y = when(after.clone(), x.clone() * scale.clone()).otherwise(x / scale.clone())?;
            let r = if name == "$trunc" {
                math::trunc(vec![y])
            } else {
                // Half to even: a tie goes to the even neighbour.
                let tie = abs(y.clone() - math::trunc(vec![y.clone()])).eq(lit(0.5f64));
                when(tie, lit(2f64) * math::round(vec![y.clone() / lit(2f64)]))
                    .otherwise(math::round(vec![y]))?
            };
            when(after, r.clone() / scale.clone()).otherwise(r * scale)?
        }
        "$sqrt" => math::sqrt(float(exprs.next().expect("1"))),
        "$pow" => {
            let (a, b) = (exprs.next().expect("2"), exprs.next().expect("2"));
            math::power(float(a), float(b))
        }
        "$exp" => math::exp(float(exprs.next().expect("1"))),
        "$ln" => math::ln(float(exprs.next().expect("1"))),
        "$log10" => math::log10(float(exprs.next().expect("1"))),
        "$log" => {
            let (n, base) = (exprs.next().expect("2"), exprs.next().expect("2"));
            math::log(float(base), float(n))
        }
        "$atan2" => {
            let (y, x) = (exprs.next().expect("2"), exprs.next().expect("2"));
            math::atan2(float(y), float(x))
        }
        "$degreesToRadians" => math::radians(float(exprs.next().expect("1"))),
        "$radiansToDegrees" => math::degrees(float(exprs.next().expect("1"))),
        trig => {
            let x = float(exprs.next().expect("1"));
            match trig {
                "$sin" => math::sin(x),
                "$cos" => math::cos(x),
                "$tan" => math::tan(x),
                "$asin" => math::asin(x),
                "$acos" => math::acos(x),
                "$atan" => math::atan(x),
                "$sinh" => math::sinh(x),
                "$cosh" => math::cosh(x),
                "$tanh" => math::tanh(x),
                "$asinh" => math::asinh(x),
                "$acosh" => math::acosh(x),
                "$atanh" => math::atanh(x),
                other => unreachable!("{other} is not an arithmetic operator"),
            }
        }
    })
}

fn float(e: Expr) -> Expr {
    cast(e, DataType::Float64)
}

/// `$add` of one date and numbers (milliseconds) is a date; `$subtract` of two dates is the
/// milliseconds between them, of a date and a number a date.
fn date_arithmetic(name: &str, args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    let millis = |a: &Typed| cast(a.expr.clone(), DataType::Int64);
    let dates = args.iter().filter(|a| a.kind() == Kind::Date).count();
    for (i, a) in args.iter().enumerate() {
        if !matches!(a.kind(), Kind::Number | Kind::Null | Kind::Date) {
            return Err(at.index(i).err(format!(
                "{name} only supports numbers and dates, not {}",
                a.kind().name()
            )));
        }
    }
    match name {
        "$add" if dates > 1 => Err(at.err("$add can add numbers to only one date")),
        "$add" => {
            let sum = args
                .iter()
                .map(millis)
                .reduce(|a, b| a + b)
                .expect("a date is present");
            Ok(cast(sum, date_type()))
        }
        _ => match (args[0].kind(), args[1].kind()) {
            (Kind::Date, Kind::Date) => Ok(millis(&args[0]) - millis(&args[1])),
            (Kind::Date, _) => Ok(cast(millis(&args[0]) - millis(&args[1]), date_type())),
            _ => Err(at
                .index(1)
                .err("$subtract cannot subtract a date from a number")),
        },
    }
}
