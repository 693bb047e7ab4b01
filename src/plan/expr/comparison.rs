//! Comparison expressions: `$eq` `$ne` `$gt` `$gte` `$lt` `$lte` `$cmp`.
//!
//! Aggregation comparisons are total: `null` (and missing) sorts below every value, and
//! values of different types compare by MongoDB's type order (numbers < strings < objects
//! < arrays < booleans < dates). Because column types are known at plan time, a comparison
//! between two different type classes becomes a comparison of their constant ranks.

use datafusion::logical_expr::{Expr, Operator, binary_expr, lit, when};

use super::{Kind, Typed};
use crate::Result;
use crate::dsl::JsonPath;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

pub(super) fn compile(name: &str, mut args: Vec<Typed>, _at: &JsonPath) -> Result<Expr> {
    let r = args.pop().expect("arity checked");
    let l = args.pop().expect("arity checked");
    let op = match name {
        "$eq" => Cmp::Eq,
        "$ne" => Cmp::Ne,
        "$gt" => Cmp::Gt,
        "$gte" => Cmp::Gte,
        "$lt" => Cmp::Lt,
        "$lte" => Cmp::Lte,
        "$cmp" => {
            return Ok(when(compare(Cmp::Lt, &l, &r), lit(-1i64))
                .when(compare(Cmp::Eq, &l, &r), lit(0i64))
                .otherwise(lit(1i64))?);
        }
        other => unreachable!("{other} is not a comparison operator"),
    };
    Ok(compare(op, &l, &r))
}

/// `l op r` with MongoDB's total order; never NULL.
pub(crate) fn compare(op: Cmp, l: &Typed, r: &Typed) -> Expr {
    let (kl, kr) = (l.kind(), r.kind());
    let comparable = kl == kr && !matches!(kl, Kind::Null | Kind::Other);
    if !comparable {
        // Different classes (or a constant null): compare type ranks; a NULL value has the
        // rank of null whatever its column type.
        let rank = |t: &Typed| {
            if t.kind() == Kind::Null {
                lit(Kind::Null.bson_rank())
            } else {
                when(t.expr.clone().is_null(), lit(Kind::Null.bson_rank()))
                    .otherwise(lit(t.kind().bson_rank()))
                    .expect("CASE with one branch")
            }
        };
        return apply(op, rank(l), rank(r));
    }
    let (a, b) = (l.expr.clone(), r.expr.clone());
    let a_null = a.clone().is_null();
    let b_null = b.clone().is_null();
    match op {
        Cmp::Eq => binary_expr(a, Operator::IsNotDistinctFrom, b),
        Cmp::Ne => binary_expr(a, Operator::IsDistinctFrom, b),
        Cmp::Gt => case_null(a_null, lit(false), b_null, lit(true), apply(op, a, b)),
        Cmp::Gte => case_null(a_null, b_null.clone(), b_null, lit(true), apply(op, a, b)),
        Cmp::Lt => case_null(b_null, lit(false), a_null, lit(true), apply(op, a, b)),
        Cmp::Lte => case_null(b_null, a_null.clone(), a_null, lit(true), apply(op, a, b)),
    }
}

fn case_null(c1: Expr, v1: Expr, c2: Expr, v2: Expr, otherwise: Expr) -> Expr {
    when(c1, v1)
        .when(c2, v2)
        .otherwise(otherwise)
        .expect("CASE with branches")
}

fn apply(op: Cmp, a: Expr, b: Expr) -> Expr {
    match op {
        Cmp::Eq => a.eq(b),
        Cmp::Ne => a.not_eq(b),
        Cmp::Gt => a.gt(b),
        Cmp::Gte => a.gt_eq(b),
        Cmp::Lt => a.lt(b),
        Cmp::Lte => a.lt_eq(b),
    }
}
