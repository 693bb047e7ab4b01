//! Conditional expressions `$cond` and `$ifNull`.
//!
//! A column has one type, so the branches of a conditional must share a type class (numbers
//! of any width mix freely); MongoDB would allow a different type per document (README).

use datafusion::arrow::datatypes::DataType;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::logical_expr::{Expr, cast, when};

use super::{Kind, Typed, truthy};
use crate::Result;
use crate::dsl::JsonPath;

pub(super) fn compile(name: &str, args: Vec<Typed>, at: &JsonPath) -> Result<Expr> {
    match name {
        "$cond" => {
            same_kind(&args[1..], at, name, 1)?;
            let mut it = args.into_iter();
            let (cond, then, otherwise) = (
                it.next().expect("3"),
                it.next().expect("3"),
                it.next().expect("3"),
            );
            let (then, otherwise) = unify(then, otherwise);
            Ok(when(truthy(&cond), then).otherwise(otherwise)?)
        }
        "$ifNull" => {
            same_kind(&args, at, name, 0)?;
            let wide = widest(&args);
            Ok(coalesce(
                args.into_iter().map(|a| widen(a, wide.as_ref())).collect(),
            ))
        }
        other => unreachable!("{other} is not a conditional operator"),
    }
}

/// Numbers of different widths meet at `Float64` (or `Int64` when all are integers). Done
/// here, not left to DataFusion's coercion, so that the type Fluxion plans with is the type
/// the column gets (lambdas over it check their parameter's type).
fn widest(branches: &[Typed]) -> Option<DataType> {
    let numeric: Vec<&DataType> = branches
        .iter()
        .filter(|b| b.kind() == Kind::Number)
        .map(|b| &b.ty)
        .collect();
    if numeric.windows(2).all(|w| w[0] == w[1]) {
        return None;
    }
    Some(if numeric.iter().all(|t| t.is_integer()) {
        DataType::Int64
    } else {
        DataType::Float64
    })
}

fn widen(a: Typed, to: Option<&DataType>) -> Expr {
    match to {
        Some(t) if a.kind() == Kind::Number && &a.ty != t => cast(a.expr, t.clone()),
        _ => a.expr,
    }
}

fn unify(a: Typed, b: Typed) -> (Expr, Expr) {
    let wide = widest(&[a.clone(), b.clone()]);
    (widen(a, wide.as_ref()), widen(b, wide.as_ref()))
}

/// Errors unless all non-null `branches` share a type class.
fn same_kind(branches: &[Typed], at: &JsonPath, name: &str, offset: usize) -> Result<()> {
    let mut seen: Option<(usize, Kind)> = None;
    for (i, b) in branches.iter().enumerate() {
        let k = b.kind();
        if k == Kind::Null {
            continue;
        }
        match seen {
            None => seen = Some((i, k)),
            Some((_, first)) if first == k => {}
            Some((j, first)) => {
                return Err(at.index(i + offset).err(format!(
                    "{name} branches must have one type: argument {} is {} but argument {} is {} (a Fluxion column holds one type)",
                    j + offset,
                    first.name(),
                    i + offset,
                    k.name()
                )));
            }
        }
    }
    Ok(())
}
