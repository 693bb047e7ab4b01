//! Conditional expressions `$cond` and `$ifNull`.
//!
//! A column has one type, so the branches of a conditional must share a type class (numbers
//! of any width mix freely); MongoDB would allow a different type per document (README).

use datafusion::functions::core::expr_fn::coalesce;
use datafusion::logical_expr::{Expr, when};

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
            Ok(when(truthy(&cond), then.expr).otherwise(otherwise.expr)?)
        }
        "$ifNull" => {
            same_kind(&args, at, name, 0)?;
            Ok(coalesce(args.into_iter().map(|a| a.expr).collect()))
        }
        other => unreachable!("{other} is not a conditional operator"),
    }
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
