//! String expressions: `$concat` `$toUpper` `$toLower`.

use datafusion::arrow::datatypes::DataType;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions::expr_fn::{lower, upper};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, cast, lit};

use super::{Kind, Typed};
use crate::Result;
use crate::dsl::JsonPath;

pub(super) fn compile(name: &str, args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    match name {
        // $concat is null when any argument is null or missing; the SQL `||` operator has
        // exactly that behaviour (the `concat` function would skip nulls).
        "$concat" => {
            for (i, a) in args.iter().enumerate() {
                if !matches!(a.kind(), Kind::String | Kind::Null) {
                    return Err(at.index(i).err(format!(
                        "$concat only supports strings, not {}",
                        a.kind().name()
                    )));
                }
            }
            Ok(args
                .into_iter()
                .map(|a| cast(a.expr, DataType::Utf8))
                .reduce(|a, b| {
                    Expr::BinaryExpr(BinaryExpr::new(
                        Box::new(a),
                        Operator::StringConcat,
                        Box::new(b),
                    ))
                })
                .unwrap_or(lit("")))
        }
        // MongoDB converts numbers to strings here and turns null into "".
        "$toUpper" | "$toLower" => {
            let a = args.into_iter().next().expect("arity checked");
            if matches!(a.kind(), Kind::Document | Kind::Array) {
                return Err(at.index(0).err(format!(
                    "{name} cannot convert an {} to a string",
                    a.kind().name()
                )));
            }
            let s = cast(a.expr, DataType::Utf8);
            let f = if name == "$toUpper" {
                upper(s)
            } else {
                lower(s)
            };
            Ok(coalesce(vec![f, lit("")]))
        }
        other => unreachable!("{other} is not a string operator"),
    }
}
