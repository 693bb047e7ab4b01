//! Boolean expressions `$and` `$or` `$not`, and MongoDB's truthiness: `false`, `null`,
//! missing and numeric zero are false; every other value (including `""` and `[]`) is true.

use datafusion::functions::core::expr_fn::coalesce;
use datafusion::logical_expr::{Expr, lit};

use super::{Kind, Typed};
use crate::Result;
use crate::dsl::JsonPath;

pub(super) fn compile(name: &str, args: Vec<Typed>, _at: &JsonPath) -> Result<Expr> {
    let mut bools = args.iter().map(truthy);
    Ok(match name {
        "$and" => bools.reduce(Expr::and).unwrap_or(lit(true)),
        "$or" => bools.reduce(Expr::or).unwrap_or(lit(false)),
        "$not" => Expr::Not(Box::new(bools.next().expect("arity checked"))),
        other => unreachable!("{other} is not a boolean operator"),
    })
}

/// The truth value of `t` by MongoDB's rules; never NULL.
pub fn truthy(t: &Typed) -> Expr {
    let e = t.expr.clone();
    match t.kind() {
        Kind::Null => lit(false),
        Kind::Bool => coalesce(vec![e, lit(false)]),
        Kind::Number => coalesce(vec![e.not_eq(lit(0i64)), lit(false)]),
        _ => e.is_not_null(),
    }
}
