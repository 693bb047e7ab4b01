//! Arithmetic expressions: `$add` `$subtract` `$multiply` `$divide` `$mod` `$abs`.
//!
//! Operands must be numbers (or null/missing, which makes the result null), as in MongoDB;
//! the check happens at plan time against the column types. `$divide` always yields a double.
//! Division or modulo by zero yields null where MongoDB raises an error (README).

use datafusion::arrow::datatypes::DataType;
use datafusion::functions::expr_fn::{abs, nullif};
use datafusion::logical_expr::{Expr, cast, lit};

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
        other => unreachable!("{other} is not an arithmetic operator"),
    })
}
