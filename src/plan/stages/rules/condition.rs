//! json-rules-engine conditions compiled to boolean expressions, with json-rules-engine's
//! meaning: its operators are JavaScript's `===`, `indexOf` and `<` behind its fact
//! validators, not MongoDB's comparisons. Each leaf becomes an aggregation expression
//! chosen by the fact's column type, then goes through the expression compiler:
//!
//! - `equal` / `notEqual`: strict equality — an object or array never equals anything (JS
//!   compares them by reference), numbers equal across integer and float.
//! - `in` / `notIn`: the fact is one of the listed values (objects and arrays in the list
//!   never match).
//! - `contains` / `doesNotContain`: only for an array fact; anything else is `false` for
//!   both (json-rules-engine's `Array.isArray` validator).
//! - `lessThan` & co.: only for a number, or a one-element array of a number (which JS
//!   compares like its element); anything else is `false`.
//!
//! Where Fluxion must differ: a missing fact is the same as a `null` one (`equal null` holds
//! for both), and a numeric string (`"5"`), which JavaScript coerces, is never a number.

use std::ops::Not;

use datafusion::logical_expr::{Expr, lit};
use serde_json::{Value, json};

use crate::Result;
use crate::dsl::expression::Expression;
use crate::dsl::rule_set::{Condition, Fact, FactCondition, Operand, Operator, Step};
use crate::plan::expr::{ExprCompiler, Kind, truthy};

/// One leaf for traces: what it says, the fact's value and the leaf's result.
pub struct Leaf {
    pub fixed: Value,
    pub fact: Expr,
    pub result: Expr,
}

/// The predicate of `cond`; with `trace`, also its leaves.
pub fn compile(c: &ExprCompiler, cond: &Condition, trace: bool) -> Result<(Expr, Vec<Leaf>)> {
    let mut leaves = Vec::new();
    let pass = walk(c, cond, trace.then_some(&mut leaves))?;
    Ok((pass, leaves))
}

fn walk(c: &ExprCompiler, cond: &Condition, mut leaves: Option<&mut Vec<Leaf>>) -> Result<Expr> {
    Ok(match cond {
        Condition::All(parts, _) => {
            let mut out = lit(true);
            for p in parts {
                out = out.and(walk(c, p, leaves.as_deref_mut())?);
            }
            out
        }
        Condition::Any(parts, _) => {
            let mut out = lit(false);
            for p in parts {
                out = out.or(walk(c, p, leaves.as_deref_mut())?);
            }
            out
        }
        Condition::Not(inner, _) => walk(c, inner, leaves)?.not(),
        Condition::Fact(f) => {
            let (fact, result) = leaf(c, f)?;
            if let Some(out) = leaves {
                out.push(Leaf {
                    fixed: describe(f),
                    fact,
                    result: result.clone(),
                });
            }
            result
        }
    })
}

/// A leaf as traces show it: `{"fact", "path"?, "operator", "value"}`.
pub fn describe(f: &FactCondition) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("fact".into(), Value::String(f.fact.name.clone()));
    if let Some(p) = &f.fact.written {
        m.insert("path".into(), Value::String(p.clone()));
    }
    m.insert("operator".into(), Value::String(f.operator.name().into()));
    m.insert(
        "value".into(),
        match &f.value {
            Operand::Value(v) => v.clone(),
            Operand::Fact(r) => {
                let mut m = serde_json::Map::new();
                m.insert("fact".into(), Value::String(r.name.clone()));
                if let Some(p) = &r.written {
                    m.insert("path".into(), Value::String(p.clone()));
                }
                Value::Object(m)
            }
        },
    );
    Value::Object(m)
}

/// The fact's value and the leaf's result (never NULL).
fn leaf(c: &ExprCompiler, f: &FactCondition) -> Result<(Expr, Expr)> {
    let at = &f.path;
    let (a, fact_expr, kind) = fact_kind(c, &f.fact, f)?;
    let (rhs_fact, other_expr, other) = match &f.value {
        Operand::Fact(r) => {
            let (j, e, k) = fact_kind(c, r, f)?;
            (Some(j), Some(e), Some(k))
        }
        Operand::Value(_) => (None, None, None),
    };
    let composite = |k: Kind| matches!(k, Kind::Document | Kind::Array);
    // A fact compared with itself is the same value, even an object (`x === x`).
    if let (Operand::Fact(r), Operator::Equal | Operator::NotEqual) = (&f.value, f.operator)
        && r.name == f.fact.name
        && r.path == f.fact.path
    {
        return Ok((fact_expr, lit(f.operator == Operator::Equal)));
    }
    // Two facts of which one is an object or array are equal only when both are missing
    // (`undefined === undefined`): JS compares objects by reference.
    if let (Some(b), Some(k), Operator::Equal | Operator::NotEqual) =
        (&other_expr, other, f.operator)
        && (composite(kind) || composite(k))
    {
        let both_missing = fact_expr.clone().is_null().and(b.clone().is_null());
        let result = match f.operator {
            Operator::Equal => both_missing,
            _ => both_missing.not(),
        };
        return Ok((fact_expr, result));
    }
    let rhs = match (&f.value, rhs_fact) {
        (_, Some(j)) => j,
        (Operand::Value(v), _) => json!({"$literal": v}),
        (Operand::Fact(r), None) => r.expression(),
    };
    let never = || Value::Bool(false);
    let equal = || -> Value {
        match (&f.value, other) {
            (Operand::Value(v), _) if v.is_object() || v.is_array() => never(),
            _ if composite(kind) => never(),
            _ => json!({"$eq": [a, rhs]}),
        }
    };
    let one_of = || -> Result<Value> {
        let Operand::Value(Value::Array(items)) = &f.value else {
            return Err(at
                .key("value")
                .err(format!("{} needs an array of values", f.operator.name())));
        };
        // Strict equality never holds across types: only the values of the fact's type can
        // match (and a list of one type is what `$in` compares column-wise).
        let items: Vec<&Value> = items
            .iter()
            .filter(|v| match kind {
                Kind::Number => v.is_number(),
                Kind::String => v.is_string(),
                Kind::Bool => v.is_boolean(),
                Kind::Null => false,
                _ => !v.is_object() && !v.is_array(),
            })
            .collect();
        Ok(if composite(kind) || items.is_empty() {
            never()
        } else {
            json!({"$in": [a, {"$literal": items}]})
        })
    };
    let contains = || -> Value {
        match (&f.value, other) {
            _ if kind != Kind::Array => never(),
            (Operand::Value(v), _) if v.is_object() || v.is_array() => never(),
            (_, Some(k)) if composite(k) => never(),
            _ => json!({"$and": [{"$isArray": a}, {"$in": [rhs, a]}]}),
        }
    };
    let ordering = |op: &str| -> Result<Value> {
        let rhs_number = match (&f.value, other) {
            (Operand::Value(v), _) if v.is_number() => json!({"$literal": v}),
            (Operand::Fact(_), Some(Kind::Number)) => rhs.clone(),
            (Operand::Fact(_), Some(_)) => return Ok(never()),
            _ => {
                return Err(at.key("value").err(format!(
                    "{} compares with a number (or a numeric fact)",
                    f.operator.name()
                )));
            }
        };
        let guard_rhs = match &f.value {
            Operand::Fact(_) => json!({"$isNumber": rhs_number}),
            Operand::Value(_) => Value::Bool(true),
        };
        Ok(match kind {
            Kind::Number => json!({"$and": [{"$isNumber": a}, guard_rhs, {op: [a, rhs_number]}]}),
            Kind::Array => {
                let first = json!({"$arrayElemAt": [a, 0]});
                json!({"$and": [
                    {"$isArray": a},
                    {"$eq": [{"$size": a}, 1]},
                    {"$isNumber": first},
                    guard_rhs,
                    {op: [first, rhs_number]}
                ]})
            }
            _ => never(),
        })
    };
    let expression = match f.operator {
        Operator::Equal => equal(),
        Operator::NotEqual => json!({"$not": [equal()]}),
        Operator::In => one_of()?,
        Operator::NotIn => json!({"$not": [one_of()?]}),
        Operator::Contains => contains(),
        Operator::DoesNotContain => match kind {
            // The validator comes first: a missing array contains nothing and does not
            // "not contain" either.
            Kind::Array => json!({"$and": [{"$isArray": a}, {"$not": [contains()]}]}),
            _ => never(),
        },
        Operator::LessThan => ordering("$lt")?,
        Operator::LessThanInclusive => ordering("$lte")?,
        Operator::GreaterThan => ordering("$gt")?,
        Operator::GreaterThanInclusive => ordering("$gte")?,
    };
    let parsed = Expression::parse(&expression, at)?;
    let result = truthy(&c.typed(&parsed, at)?);
    Ok((fact_expr, result))
}

/// The fact's value as an aggregation expression, compiled, and its type class; a fact the
/// documents never have is null. The path is followed as json-rules-engine follows it: on a
/// fact that is not an object or array the path is ignored (the fact's own value), a member
/// of an array or a step below a plain value is undefined.
fn fact_kind(c: &ExprCompiler, fact: &Fact, f: &FactCondition) -> Result<(Value, Expr, Kind)> {
    let at = &f.path;
    let typed =
        |e: &Value| -> Result<crate::plan::expr::Typed> { c.typed(&Expression::parse(e, at)?, at) };
    let mut expr = Value::String(format!("${}", fact.name));
    let mut t = typed(&expr)?;
    for (i, step) in fact.path.iter().enumerate() {
        expr = match (t.kind(), step) {
            (Kind::Document, Step::Field(name)) => {
                json!({"$getField": {"field": name, "input": expr}})
            }
            (Kind::Array, Step::Index(n)) => json!({"$arrayElemAt": [expr, n]}),
            (Kind::Null, _) => break,
            (Kind::Document | Kind::Array, _) => json!({"$literal": null}),
            _ if i == 0 => break,
            _ => json!({"$literal": null}),
        };
        t = typed(&expr)?;
    }
    let kind = t.kind();
    Ok((expr, t.expr, kind))
}
