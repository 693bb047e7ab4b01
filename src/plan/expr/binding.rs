//! Variables and the expressions that bind them: `$$ROOT` / `$$CURRENT` (the document as a
//! struct), `$$NOW`, `$$REMOVE`, and `$let`, `$map`, `$filter`.
//!
//! `$map` and `$filter` become DataFusion lambdas (`array_transform`, `array_filter`): the
//! body is compiled once, with the element as a lambda parameter, and evaluated over all
//! elements of a batch at once. `$let` substitutes its variables' expressions into the body
//! (DataFusion's common-subexpression elimination evaluates a repeated one once).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue};
use datafusion::functions::core::expr_fn::named_struct;
use datafusion::functions::datetime::expr_fn::now;
use datafusion::functions_nested::expr_fn::{array_filter, array_slice, array_transform};
use datafusion::logical_expr::{Expr, lambda, lit};

use super::{ExprCompiler, Kind, Typed, truthy};
use crate::Result;
use crate::dsl::expression::Binding;
use crate::dsl::{FieldPath, JsonPath};
use crate::plan::field::{self, Mode};
use crate::plan::order;

/// The value of `$$name` (or `$$name.path`).
pub(super) fn variable(
    c: &ExprCompiler,
    name: &str,
    path: Option<&FieldPath>,
    at: &JsonPath,
) -> Result<Typed> {
    let base = match name {
        "ROOT" | "CURRENT" => {
            let mut args = Vec::new();
            for (q, f) in c.schema().iter().filter(|(_, f)| f.name() != order::SEQ) {
                args.push(lit(f.name().as_str()));
                args.push(Expr::Column(Column::new(q.cloned(), f.name())));
            }
            if args.is_empty() {
                return Err(at.err("$$ROOT of a document without fields cannot be represented"));
            }
            c.with_type(named_struct(args), at)?
        }
        "NOW" => c.with_type(now(), at)?,
        // A missing value: a field set to it is left out of the document.
        "REMOVE" => {
            return Ok(Typed {
                expr: lit(ScalarValue::Null),
                ty: DataType::Null,
            });
        }
        user => match c.vars.iter().rev().find(|(n, _)| n == user) {
            Some((_, v)) => v.clone(),
            None => return Err(at.err(format!("undefined variable \"$${user}\""))),
        },
    };
    Ok(match path {
        None => base,
        Some(p) => {
            let r = field::resolve_below(
                base.expr,
                &base.ty,
                p.segments(),
                Mode::Expression,
                c.depth(),
            );
            Typed {
                expr: r.expr,
                ty: r.ty,
            }
        }
    })
}

/// Compiles `$let`, `$map` or `$filter`.
pub(super) fn compile(c: &ExprCompiler, b: &Binding, at: &JsonPath) -> Result<Typed> {
    match b {
        Binding::Let { vars, body } => {
            let mut inner = c.clone();
            // Variables are evaluated in the enclosing scope: they cannot see each other.
            for (name, e) in vars {
                let v = c.typed(e, &at.key("vars").key(name))?;
                inner = inner.with_var(name, v);
            }
            inner.typed(body, &at.key("in"))
        }
        Binding::Map {
            input,
            var,
            body,
            path,
        } => {
            let Some((list, elem)) = array_input(c, input, path)? else {
                return Ok(null());
            };
            let (param, inner) = element_scope(c, &elem, var);
            let body = inner.typed(body, &path.key("in"))?;
            c.with_type(array_transform(list.expr, lambda([param], body.expr)), path)
        }
        Binding::Filter {
            input,
            var,
            cond,
            limit,
            path,
        } => {
            let Some((list, elem)) = array_input(c, input, path)? else {
                return Ok(null());
            };
            let (param, inner) = element_scope(c, &elem, var);
            let keep = truthy(&inner.typed(cond, &path.key("cond"))?);
            let mut out = array_filter(list.expr, lambda([param], keep));
            if let Some(limit) = limit {
                let n = c.typed(limit, &path.key("limit"))?;
                if n.kind() != Kind::Number {
                    return Err(path.key("limit").err("$filter limit must be a number"));
                }
                out = array_slice(out, lit(1i64), n.expr, None);
            }
            c.with_type(out, path)
        }
    }
}

/// A lambda parameter for one element of type `elem`, and the compiler in which `var` names
/// it (one level of lambdas deeper).
fn element_scope<'a>(
    c: &ExprCompiler<'a>,
    elem: &datafusion::arrow::datatypes::FieldRef,
    var: &str,
) -> (String, ExprCompiler<'a>) {
    let (param, x) = field::element_var(elem, c.depth());
    let element = Typed {
        expr: x,
        ty: elem.data_type().clone(),
    };
    (param, c.nested().with_var(var, element))
}

fn null() -> Typed {
    Typed {
        expr: lit(ScalarValue::Null),
        ty: DataType::Null,
    }
}

/// The array a `$map` / `$filter` reads and its element field; `None` for a null input.
fn array_input(
    c: &ExprCompiler,
    input: &crate::dsl::Expression,
    path: &JsonPath,
) -> Result<Option<(Typed, datafusion::arrow::datatypes::FieldRef)>> {
    let list = c.typed(input, &path.key("input"))?;
    match &list.ty {
        DataType::List(elem) | DataType::LargeList(elem) => {
            let elem = elem.clone();
            Ok(Some((list, elem)))
        }
        DataType::Null => Ok(None),
        other => Err(path.key("input").err(format!(
            "input must be an array, not {}",
            Kind::of(other).name()
        ))),
    }
}
