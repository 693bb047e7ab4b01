//! `$match`: the query language compiled to a DataFusion filter predicate.
//!
//! Query operators use *type bracketing*: `{"qty": {"$gt": 5}}` only matches numbers, and
//! `{"qty": "5"}` only strings — never a cross-type comparison. Column types are known when
//! planning, so bracketing costs nothing per row: a condition on the wrong type class is the
//! constant `false`.
//!
//! A compiled condition may be NULL where a field is missing, which a filter treats as "no
//! match" — so the plain SQL comparison (`status = 'PAID'`) is used and the optimizer sees the
//! same predicate as the SQL twin's. Negations (`$ne`, `$nin`, `$not`, `$nor`) use
//! `IS NOT TRUE`, which turns that NULL into a match, as MongoDB matches documents without
//! the field.
//!
//! Arrays follow MongoDB's rules: a condition on an array field holds when any element
//! satisfies it (`{"tags": "gift"}`, `{"flags": {"$gt": 8}}`), each condition of a field
//! separately; `$elemMatch` needs one element to satisfy all of them; a dotted path through an
//! array of sub-documents (`"items.sku"`) reads every element's field. Element tests are
//! `array_any_match` lambdas, evaluated column-at-a-time.

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::DFSchema;
use datafusion::functions::regex::expr_fn::regexp_like;
use datafusion::functions_nested::expr_fn::{
    array_any_match, array_has, array_has_any, cardinality, make_array,
};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast, lambda, lit};
use serde_json::Value;

use crate::Result;
use crate::document::date::date_millis;
use crate::dsl::JsonPath;
use crate::dsl::query::{BsonType, Condition, Query};
use crate::plan::expr::{ExprCompiler, Kind, Typed, literal, scalar, truthy};
use crate::plan::field::{self, Mode};

/// Adds a filter for `query` on top of `input`.
pub fn plan(input: LogicalPlan, query: &Query, _at: &JsonPath) -> Result<LogicalPlan> {
    let predicate = predicate(input.schema(), query)?;
    Ok(LogicalPlanBuilder::from(input).filter(predicate)?.build()?)
}

/// The predicate of `query` over `schema`.
pub fn predicate(schema: &DFSchema, query: &Query) -> Result<Expr> {
    let compiler = ExprCompiler::new(schema);
    Scope {
        compiler: &compiler,
        element: None,
        depth: 0,
    }
    .query(query)
}

/// The predicate of `query` with `compiler`'s schema and variables (a `$lookup` pipeline's
/// `$match`, which may read `let` variables in `$expr`).
pub fn predicate_in(compiler: &ExprCompiler, query: &Query) -> Result<Expr> {
    Scope {
        compiler,
        element: None,
        depth: 0,
    }
    .query(query)
}

/// Where field names are looked up: the plan's columns, or (inside `$elemMatch`) the fields
/// of the array element under test.
struct Scope<'a> {
    compiler: &'a ExprCompiler<'a>,
    element: Option<Typed>,
    /// Nesting of element lambdas, to keep their parameter names apart.
    depth: usize,
}

impl Scope<'_> {
    fn query(&self, q: &Query) -> Result<Expr> {
        Ok(match q {
            Query::And(parts) => all(parts.iter().map(|p| self.query(p)).collect::<Result<_>>()?),
            Query::Or(parts) => parts
                .iter()
                .map(|p| self.query(p))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .reduce(Expr::or)
                .unwrap_or(lit(false)),
            Query::Nor(parts) => self.query(&Query::Or(parts.clone()))?.is_not_true(),
            // The parser keeps `$expr` out of `$elemMatch`, so this is the document's scope.
            Query::Expr(e, at) => truthy(&self.compiler.typed(e, at)?),
            Query::Field {
                field: path,
                conditions,
                path: at,
            } => {
                let r = match &self.element {
                    None => field::resolve_in(self.compiler.schema(), path, Mode::Query),
                    Some(e) => field::resolve_below(
                        e.expr.clone(),
                        &e.ty,
                        path.segments(),
                        Mode::Query,
                        self.depth,
                    ),
                };
                let target = Typed {
                    expr: r.expr,
                    ty: r.ty,
                };
                all(conditions
                    .iter()
                    .map(|cond| self.condition(&target, cond, at, r.through_array))
                    .collect::<Result<_>>()?)
            }
        })
    }

    /// `cond` on the value `f`: whole-value conditions first, then element-wise ones.
    /// `gathered` says `f` was gathered from the elements of an array on the path, where a
    /// field exists when some element has it.
    fn condition(
        &self,
        f: &Typed,
        cond: &Condition,
        at: &JsonPath,
        gathered: bool,
    ) -> Result<Expr> {
        let list = element_field(f);
        Ok(match cond {
            Condition::Exists(exists) if gathered => {
                let elem = list.as_ref().expect("a gathered path is a list");
                let any = self.any_element(f, elem, |_, x| Ok(x.expr.clone().is_not_null()))?;
                if *exists { any } else { any.is_not_true() }
            }
            Condition::Exists(true) => f.expr.clone().is_not_null(),
            Condition::Exists(false) => f.expr.clone().is_null(),
            Condition::Not(inner) => self.conditions(f, inner, at, gathered)?.is_not_true(),
            Condition::Ne(v) => self
                .condition(f, &Condition::Eq(v.clone()), at, gathered)?
                .is_not_true(),
            Condition::Nin(vs) => self
                .condition(f, &Condition::In(vs.clone()), at, gathered)?
                .is_not_true(),
            // `{"items.sku": null}` also matches when some element lacks the field.
            Condition::Eq(Value::Null) if gathered => {
                let elem = list.as_ref().expect("a gathered path is a list");
                let some_missing =
                    self.any_element(f, elem, |_, x| Ok(x.expr.clone().is_null()))?;
                f.expr.clone().is_null().or(some_missing)
            }
            Condition::Eq(Value::Null) => f.expr.clone().is_null(),
            Condition::Eq(v @ Value::Array(_)) => whole_array_equals(f, v, at)?,
            Condition::Eq(v @ Value::Object(_)) if date_millis(v).is_none() => {
                return Err(at.err(
                    "equality with an embedded document is not supported; compare its fields instead",
                ));
            }
            Condition::In(vs) => self.any_of(f, vs, at, gathered)?,
            Condition::All(vs) => {
                if vs.is_empty() {
                    return Ok(lit(false));
                }
                all(vs
                    .iter()
                    .map(|v| self.condition(f, &Condition::Eq(v.clone()), at, gathered))
                    .collect::<Result<_>>()?)
            }
            Condition::Size(n) => match list {
                Some(_) => cardinality(f.expr.clone()).eq(lit(*n as u64)),
                None => lit(false),
            },
            Condition::Type(types) => type_test(f, types),
            Condition::ElemMatchQuery(q) => match list {
                Some(elem) => self.any_element(f, &elem, |inner, _| inner.query(q))?,
                None => lit(false),
            },
            Condition::ElemMatchValue(conds) => match list {
                Some(elem) => {
                    self.any_element(f, &elem, |inner, x| inner.conditions(x, conds, at, false))?
                }
                None => lit(false),
            },
            // Element-wise conditions: on an array, any element may satisfy them.
            Condition::Eq(_)
            | Condition::Gt(_)
            | Condition::Gte(_)
            | Condition::Lt(_)
            | Condition::Lte(_)
            | Condition::Regex { .. }
            | Condition::Mod { .. } => match list {
                Some(elem) => {
                    if let Condition::Eq(v) = cond {
                        // The common case `{"tags": "gift"}` has a dedicated kernel.
                        let l = literal(v);
                        if Kind::of(elem.data_type()) == l.kind() {
                            return Ok(array_has(f.expr.clone(), l.expr));
                        }
                    }
                    self.any_element(f, &elem, |_, x| scalar_condition(x, cond, at))?
                }
                None => scalar_condition(f, cond, at)?,
            },
        })
    }

    fn conditions(
        &self,
        f: &Typed,
        conds: &[Condition],
        at: &JsonPath,
        gathered: bool,
    ) -> Result<Expr> {
        Ok(all(conds
            .iter()
            .map(|c| self.condition(f, c, at, gathered))
            .collect::<Result<_>>()?))
    }

    /// True when some element of the array `f` satisfies `test`.
    fn any_element(
        &self,
        f: &Typed,
        elem: &FieldRef,
        test: impl FnOnce(&Scope, &Typed) -> Result<Expr>,
    ) -> Result<Expr> {
        let (name, var) = field::element_var(elem, self.depth);
        let x = Typed {
            expr: var,
            ty: elem.data_type().clone(),
        };
        let inner = Scope {
            compiler: self.compiler,
            element: Some(x.clone()),
            depth: self.depth + 1,
        };
        let body = test(&inner, &x)?;
        Ok(array_any_match(f.expr.clone(), lambda([name], body)))
    }

    /// `$in`: scalars of the field's type class go to one `IN` list (or one `array_has_any`
    /// for an array field); nulls, arrays and regexes each add an alternative.
    fn any_of(&self, f: &Typed, values: &[Value], at: &JsonPath, gathered: bool) -> Result<Expr> {
        let target_kind = match element_field(f) {
            Some(elem) => Kind::of(elem.data_type()),
            None => f.kind(),
        };
        let mut alternatives = Vec::new();
        let mut same: Vec<Expr> = Vec::new();
        for v in values {
            let l = literal(v);
            let structured = match v {
                Value::Null | Value::Array(_) => true,
                Value::Object(_) => date_millis(v).is_none(),
                _ => false,
            };
            if structured {
                alternatives.push(self.condition(f, &Condition::Eq(v.clone()), at, gathered)?);
            } else if l.kind() == target_kind {
                same.push(l.expr);
            }
        }
        if !same.is_empty() {
            alternatives.push(match element_field(f) {
                Some(_) => array_has_any(f.expr.clone(), make_array(same)),
                None => f.expr.clone().in_list(same, false),
            });
        }
        Ok(alternatives
            .into_iter()
            .reduce(Expr::or)
            .unwrap_or(lit(false)))
    }
}

fn all(parts: Vec<Expr>) -> Expr {
    parts.into_iter().reduce(Expr::and).unwrap_or(lit(true))
}

/// The element field of an array-typed value.
fn element_field(f: &Typed) -> Option<FieldRef> {
    match &f.ty {
        DataType::List(elem) | DataType::LargeList(elem) => Some(elem.clone()),
        _ => None,
    }
}

/// A condition on one (non-array) value, with type bracketing.
fn scalar_condition(f: &Typed, cond: &Condition, at: &JsonPath) -> Result<Expr> {
    Ok(match cond {
        Condition::Eq(v) => {
            let l = literal(v);
            if !same_class(f, &l) {
                return Ok(lit(false));
            }
            f.expr.clone().eq(l.expr)
        }
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
        Condition::Mod { divisor, remainder } => {
            if f.kind() != Kind::Number {
                return Ok(lit(false));
            }
            // MongoDB truncates a fractional dividend toward zero; so does the cast.
            let n = cast(f.expr.clone(), DataType::Int64);
            (n % lit(*divisor)).eq(lit(*remainder))
        }
        other => unreachable!("{other:?} is not an element-wise condition"),
    })
}

/// `{field: [..]}`: the whole array equals the literal (same elements, same order).
fn whole_array_equals(f: &Typed, v: &Value, at: &JsonPath) -> Result<Expr> {
    let Some(elem) = element_field(f) else {
        return Ok(lit(false));
    };
    let s = scalar(v);
    let Value::Array(items) = v else {
        unreachable!()
    };
    if items.is_empty() {
        return Ok(cardinality(f.expr.clone()).eq(lit(0u64)));
    }
    let l = literal(v);
    let DataType::List(lit_elem) = &l.ty else {
        return Ok(lit(false));
    };
    if Kind::of(lit_elem.data_type()) != Kind::of(elem.data_type()) {
        return Ok(lit(false));
    }
    let cast_lit = s
        .cast_to(&f.ty)
        .map_err(|e| at.err(format!("cannot compare this array with the field: {e}")))?;
    Ok(f.expr.clone().eq(lit(cast_lit)))
}

/// `$type`: decided from the column type when planning; an array matches its own type
/// (`"array"`) and, when it has a non-null element, its elements' type.
fn type_test(f: &Typed, types: &[BsonType]) -> Expr {
    let mut alternatives = Vec::new();
    for t in types {
        if *t == BsonType::Null {
            alternatives.push(f.expr.clone().is_null());
            continue;
        }
        if type_matches(&f.ty, *t) {
            alternatives.push(f.expr.clone().is_not_null());
        } else if let Some(elem) = element_field(f)
            && type_matches(elem.data_type(), *t)
        {
            alternatives.push(cardinality(f.expr.clone()).gt(lit(0u64)));
        }
    }
    alternatives
        .into_iter()
        .reduce(Expr::or)
        .unwrap_or(lit(false))
}

/// Whether values of Arrow type `ty` have BSON type `t`. Integers read from JSON are
/// `Int64`, which answers to both `"int"` and `"long"` (README).
fn type_matches(ty: &DataType, t: BsonType) -> bool {
    use BsonType::*;
    let kind = Kind::of(ty);
    match t {
        Double => matches!(
            ty,
            DataType::Float16 | DataType::Float32 | DataType::Float64
        ),
        Int | Long => ty.is_integer(),
        Decimal => matches!(ty, DataType::Decimal128(..) | DataType::Decimal256(..)),
        Number => kind == Kind::Number,
        String => kind == Kind::String,
        Object => kind == Kind::Document,
        Array => kind == Kind::Array,
        Bool => kind == Kind::Bool,
        Date => kind == Kind::Date,
        Null => false,
    }
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
