//! `$match`: the query language compiled to a DataFusion filter predicate.
//!
//! Query operators use *type bracketing*: `{"qty": {"$gt": 5}}` only matches numbers, and
//! `{"qty": "5"}` only strings — never a cross-type comparison. A compiled condition may be
//! NULL where a field is missing, which a filter treats as "no match" — so the plain SQL
//! comparison (`status = 'PAID'`) is used and the optimizer sees the same predicate as the
//! SQL twin's. Negations (`$ne`, `$nin`, `$not`, `$nor`) use `IS NOT TRUE`, which turns that
//! NULL into a match, as MongoDB matches documents without the field.

use datafusion::arrow::datatypes::DataType;
use datafusion::functions::regex::expr_fn::regexp_like;
use datafusion::functions_nested::expr_fn::array_has;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, lit};
use serde_json::Value;

use crate::Result;
use crate::dsl::JsonPath;
use crate::dsl::query::{Condition, Query};
use crate::plan::expr::{ExprCompiler, Kind, Typed, literal, truthy};
use crate::plan::field;

/// Adds a filter for `query` on top of `input`.
pub fn plan(input: LogicalPlan, query: &Query, _at: &JsonPath) -> Result<LogicalPlan> {
    let predicate = predicate(input.schema(), query)?;
    Ok(LogicalPlanBuilder::from(input).filter(predicate)?.build()?)
}

/// The predicate of `query` over `schema`.
pub fn predicate(schema: &datafusion::common::DFSchema, query: &Query) -> Result<Expr> {
    let compiler = ExprCompiler::new(schema);
    compile_query(&compiler, query)
}

fn compile_query(c: &ExprCompiler, q: &Query) -> Result<Expr> {
    Ok(match q {
        Query::And(parts) => all(parts
            .iter()
            .map(|p| compile_query(c, p))
            .collect::<Result<_>>()?),
        Query::Or(parts) => parts
            .iter()
            .map(|p| compile_query(c, p))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .reduce(Expr::or)
            .unwrap_or(lit(false)),
        Query::Nor(parts) => compile_query(c, &Query::Or(parts.clone()))?.is_not_true(),
        Query::Expr(e) => {
            let at = JsonPath::root();
            truthy(&c.typed(e, &at)?)
        }
        Query::Field {
            field: path,
            conditions,
            path: at,
        } => {
            let (expr, ty) = field::resolve(c.schema(), path, at)?;
            let target = Typed { expr, ty };
            all(conditions
                .iter()
                .map(|cond| condition(&target, cond, at))
                .collect::<Result<_>>()?)
        }
    })
}

fn all(parts: Vec<Expr>) -> Expr {
    parts.into_iter().reduce(Expr::and).unwrap_or(lit(true))
}

fn condition(f: &Typed, cond: &Condition, at: &JsonPath) -> Result<Expr> {
    Ok(match cond {
        Condition::Eq(v) => equals(f, v, at)?,
        Condition::Ne(v) => equals(f, v, at)?.is_not_true(),
        Condition::Gt(v) | Condition::Gte(v) | Condition::Lt(v) | Condition::Lte(v) => {
            if v.is_null() {
                // {$gte: null} and {$lte: null} match null/missing; {$gt: null} nothing.
                return Ok(match cond {
                    Condition::Gte(_) | Condition::Lte(_) => f.expr.clone().is_null(),
                    _ => lit(false),
                });
            }
            let l = literal(v);
            if !same_class(f, &l) {
                return Ok(lit(false));
            }
            let (a, b) = (f.expr.clone(), l.expr);
            match cond {
                Condition::Gt(_) => a.gt(b),
                Condition::Gte(_) => a.gt_eq(b),
                Condition::Lt(_) => a.lt(b),
                _ => a.lt_eq(b),
            }
        }
        Condition::In(values) => any_of(f, values, at)?,
        Condition::Nin(values) => any_of(f, values, at)?.is_not_true(),
        Condition::Exists(true) => f.expr.clone().is_not_null(),
        Condition::Exists(false) => f.expr.clone().is_null(),
        Condition::Regex { pattern, options } => {
            if let Err(e) = regex_syntax_check(pattern) {
                return Err(at.err(format!("invalid $regex \"{pattern}\": {e}")));
            }
            if f.kind() != Kind::String {
                return Ok(lit(false));
            }
            let flags = (!options.is_empty()).then(|| lit(options.as_str()));
            regexp_like(f.expr.clone(), lit(pattern.as_str()), flags)
        }
        Condition::Not(inner) => all(inner
            .iter()
            .map(|c| condition(f, c, at))
            .collect::<Result<_>>()?)
        .is_not_true(),
    })
}

/// `{field: v}`: null matches null or missing; a scalar matches equal values of the same
/// type class, or an array field containing it.
fn equals(f: &Typed, v: &Value, at: &JsonPath) -> Result<Expr> {
    if v.is_null() {
        return Ok(f.expr.clone().is_null());
    }
    let l = literal(v);
    if f.kind() == Kind::Array && !matches!(v, Value::Array(_) | Value::Object(_)) {
        let DataType::List(elem) = &f.ty else {
            return Ok(lit(false));
        };
        if Kind::of(elem.data_type()) != l.kind() {
            return Ok(lit(false));
        }
        return Ok(array_has(f.expr.clone(), l.expr));
    }
    if matches!(v, Value::Array(_) | Value::Object(_)) {
        return Err(at.err(
            "equality with an embedded document or array is not supported yet; compare its fields instead",
        ));
    }
    if !same_class(f, &l) {
        return Ok(lit(false));
    }
    Ok(f.expr.clone().eq(l.expr))
}

fn any_of(f: &Typed, values: &[Value], at: &JsonPath) -> Result<Expr> {
    let mut alternatives = Vec::new();
    let mut same: Vec<Expr> = Vec::new();
    for v in values {
        let l = literal(v);
        if !v.is_null() && f.kind() != Kind::Array && same_class(f, &l) {
            same.push(l.expr);
        } else {
            alternatives.push(equals(f, v, at)?);
        }
    }
    if !same.is_empty() {
        alternatives.push(f.expr.clone().in_list(same, false));
    }
    Ok(alternatives
        .into_iter()
        .reduce(Expr::or)
        .unwrap_or(lit(false)))
}

fn same_class(a: &Typed, b: &Typed) -> bool {
    a.kind() == b.kind() && a.kind() != Kind::Null
}

fn regex_syntax_check(pattern: &str) -> std::result::Result<(), String> {
    regex::Regex::new(pattern).map(|_| ()).map_err(|e| {
        e.to_string()
            .lines()
            .last()
            .unwrap_or("invalid pattern")
            .trim()
            .to_string()
    })
}
