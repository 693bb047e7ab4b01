//! Variables and the expressions that bind them: `$$ROOT` / `$$CURRENT` (the document as a
//! struct), `$$NOW`, `$$REMOVE`, and `$let`, `$map`, `$filter`, `$reduce`.
//!
//! `$map` and `$filter` become DataFusion lambdas (`array_transform`, `array_filter`): the
//! body is compiled once, with the element as a lambda parameter, and evaluated over all
//! elements of a batch at once. `$let` substitutes its variables' expressions into the body
//! (DataFusion's common-subexpression elimination evaluates a repeated one once).
//!
//! `$reduce` has no fold lambda to become: it is compiled when its `in` combines `$$value`
//! with a function of `$$this` through an associative operator (`$add`, `$sum`, `$multiply`,
//! `$concat`, `$concatArrays`, `$max`, `$min`, `$and`, `$or`) — the function is mapped over the
//! elements, then aggregated (`array_sum`, `array_product`, `array_to_string`, `flatten`,
//! `array_max`, …) and combined with `initialValue`. That covers the usual uses (sums,
//! products, joining strings, flattening); other bodies are rejected naming their path.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue};
use datafusion::functions::core::expr_fn::named_struct;
use datafusion::functions::core::expr_fn::{coalesce, greatest, least};
use datafusion::functions::datetime::expr_fn::now;
use datafusion::functions::string::expr_fn::concat;
use datafusion::functions_nested::expr_fn::{
    array_any_match, array_concat, array_filter, array_max, array_min, array_product, array_slice,
    array_sum, array_to_string, array_transform, flatten,
};
use datafusion::logical_expr::{Expr, cast, lambda, lit, when};

use super::{ExprCompiler, Kind, Typed, truthy};
use crate::Result;
use crate::dsl::expression::{Binding, Expression};
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
            for (q, f) in c.schema().iter().filter(|(_, f)| !order::rides(f.name())) {
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
        Binding::Reduce {
            input,
            initial,
            body,
            path,
        } => reduce(c, input, initial, body, path),
    }
}

/// The operators `$reduce` can fold with.
const FOLDS: &[&str] = &[
    "$add",
    "$sum",
    "$multiply",
    "$concat",
    "$concatArrays",
    "$max",
    "$min",
    "$and",
    "$or",
];

fn reduce(
    c: &ExprCompiler,
    input: &Expression,
    initial: &Expression,
    body: &Expression,
    path: &JsonPath,
) -> Result<Typed> {
    let unsupported = || {
        path.key("in").err(format!(
            "$reduce is supported when \"in\" is {{op: [\"$$value\", <expression of $$this>]}} with op one of {} (other folds have no columnar form)",
            FOLDS.join(", ")
        ))
    };
    let Expression::Operator(op) = body else {
        return Err(unsupported());
    };
    let is_value =
        |e: &Expression| matches!(e, Expression::Variable { name, path: None } if name == "value");
    let value_args = op.args.iter().filter(|a| is_value(a)).count();
    let rest: Vec<Expression> = op.args.iter().filter(|a| !is_value(a)).cloned().collect();
    if !FOLDS.contains(&op.name)
        || value_args != 1
        || rest.is_empty()
        || rest.iter().any(|a| mentions(a, "value"))
    {
        return Err(unsupported());
    }
    let init = c.typed(initial, &path.key("initialValue"))?;
    let Some((list, elem)) = array_input(c, input, path)? else {
        return Ok(null());
    };
    // What each element contributes: the operator over the other arguments.
    let step = match rest.as_slice() {
        [one] => one.clone(),
        _ => Expression::Operator(crate::dsl::expression::Operator {
            args: rest,
            ..op.clone()
        }),
    };
    let (param, inner) = element_scope(c, &elem, "this");
    let each = inner.typed(&step, &path.key("in"))?;
    let (elem_param, elem_var) = field::element_var(
        &std::sync::Arc::new(datafusion::arrow::datatypes::Field::new(
            "item",
            each.ty.clone(),
            true,
        )),
        c.depth(),
    );
    let is_bool = matches!(op.name, "$and" | "$or");
    let each_expr = if is_bool {
        truthy(&each)
    } else {
        each.expr.clone()
    };
    let mapped = array_transform(list.expr.clone(), lambda([param], each_expr));
    let any = |test: Expr| array_any_match(mapped.clone(), lambda([elem_param.clone()], test));
    let some_null = any(elem_var.clone().is_null());
    // array_sum / array_product work in doubles; integers stay integers, as in MongoDB.
    let integers = each.ty.is_integer() && init.ty.is_integer();
    let exact = |e: Expr| {
        if integers {
            cast(e, DataType::Int64)
        } else {
            e
        }
    };
    let folded = match op.name {
        "$add" | "$sum" => {
            let total =
                init.expr.clone() + exact(coalesce(vec![array_sum(mapped.clone()), lit(0i64)]));
            if op.name == "$add" {
                when(some_null, lit(ScalarValue::Null)).otherwise(total)?
            } else {
                total
            }
        }
        "$multiply" => {
            let product =
                init.expr.clone() * exact(coalesce(vec![array_product(mapped.clone()), lit(1i64)]));
            when(some_null, lit(ScalarValue::Null)).otherwise(product)?
        }
        "$concat" => {
            let joined = concat(vec![
                init.expr.clone(),
                array_to_string(mapped.clone(), lit("")),
            ]);
            when(
                some_null.or(init.expr.clone().is_null()),
                lit(ScalarValue::Null),
            )
            .otherwise(joined)?
        }
        "$concatArrays" => array_concat(vec![init.expr.clone(), flatten(mapped.clone())]),
        "$max" => greatest(vec![init.expr.clone(), array_max(mapped.clone())]),
        "$min" => least(vec![init.expr.clone(), array_min(mapped.clone())]),
        "$and" => truthy(&init).and(!any(elem_var.clone().is_false())),
        _ => truthy(&init).or(any(elem_var.clone().is_true())),
    };
    // A null or missing input gives null, as in MongoDB.
    let out = when(list.expr.is_null(), lit(ScalarValue::Null)).otherwise(folded)?;
    c.with_type(out, path)
}

/// True when `e` reads the variable `$$name` (outside inner scopes that rebind it).
fn mentions(e: &Expression, name: &str) -> bool {
    match e {
        Expression::Variable { name: n, .. } => n == name,
        Expression::Literal(_) | Expression::Field(_) => false,
        Expression::Array(items) => items.iter().any(|x| mentions(x, name)),
        Expression::Document(fields) => fields.iter().any(|(_, x)| mentions(x, name)),
        Expression::Operator(op) => op.args.iter().any(|x| mentions(x, name)),
        Expression::Enrich(call) => call.inputs.iter().any(|x| mentions(x, name)),
        Expression::Binding(b) => match b.as_ref() {
            Binding::Let { vars, body } => {
                vars.iter().any(|(_, x)| mentions(x, name))
                    || (!vars.iter().any(|(v, _)| v == name) && mentions(body, name))
            }
            Binding::Map {
                input, var, body, ..
            } => mentions(input, name) || (var != name && mentions(body, name)),
            Binding::Filter {
                input,
                var,
                cond,
                limit,
                ..
            } => {
                mentions(input, name)
                    || (var != name && mentions(cond, name))
                    || limit.as_ref().is_some_and(|l| mentions(l, name))
            }
            Binding::Reduce { input, initial, .. } => {
                mentions(input, name) || mentions(initial, name)
            }
        },
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
