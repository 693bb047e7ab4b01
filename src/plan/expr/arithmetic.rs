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
use crate::dsl::JsonPath;

pub(super) fn compile(name: &str, args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    for (i, a) in args.iter().enumerate() {
        if !matches!(a.kind(), Kind::Number | Kind::Null) {
            return Err(at.index(i).err(format!(
                "{name} only supports numeric types, not {}",
                a.kind().name()
            )));
        }
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
