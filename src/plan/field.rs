//! Field paths resolved against the schema of the plan they read from, or against a value
//! (the element an `$elemMatch` or array operator is looking at).
//!
//! A top-level field is a column; `a.b.c` descends through struct columns with `get_field`. A
//! field the schema does not have is *missing*, which the columnar engine represents as a
//! typed `NULL` (see the README's semantic differences).
//!
//! A path that crosses an array follows MongoDB: `items.sku` reads every element's `sku`, as
//! a list computed with `array_transform` (a lambda over the elements, so it runs columnar,
//! not per row), and a numeric segment (`items.0.sku`) picks an element. How the values are
//! collected depends on who reads them ([`Mode`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::functions::core::expr_fn::get_field;
use datafusion::functions_nested::expr_fn::{
    array_element, array_filter, array_transform, flatten,
};
use datafusion::logical_expr::expr::LambdaVariable;
use datafusion::logical_expr::{Expr, lambda, lit};

use crate::Result;
use crate::dsl::{FieldPath, JsonPath};

/// How values found through arrays are collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Query semantics: `items.sku` is one flat list of every value found (an array met on
    /// the way is flattened into it), and a condition holds when any element satisfies it.
    /// Elements without the field contribute a null, which `{"items.sku": null}` matches.
    Query,
    /// Expression semantics: `$items.sku` is the array of each element's `sku`; elements
    /// without it are left out, and arrays inside stay arrays.
    Expression,
}

/// The expression reading `path` from the plan's columns, and its Arrow type (`Null` when
/// missing), with expression semantics.
pub fn resolve(schema: &DFSchema, path: &FieldPath, _at: &JsonPath) -> Result<(Expr, DataType)> {
    let r = resolve_in(schema, path, Mode::Expression);
    Ok((r.expr, r.ty))
}

/// A resolved path.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub expr: Expr,
    pub ty: DataType,
    /// The path crossed an array of sub-documents, so `expr` is a list gathered from its
    /// elements (possibly empty when none has the field).
    pub through_array: bool,
}

/// The expression reading `path` from the plan's columns, with `mode`'s array semantics.
pub fn resolve_in(schema: &DFSchema, path: &FieldPath, mode: Mode) -> Resolved {
    let segments = path.segments();
    let Ok((_, field)) = schema.qualified_field_with_unqualified_name(&segments[0]) else {
        return missing();
    };
    let column = Expr::Column(Column::from_name(&segments[0]));
    descend(column, field.data_type().clone(), &segments[1..], mode, 0).unwrap_or_else(missing)
}

/// The expression reading `segments` below `value` (of type `ty`).
pub fn resolve_below(
    value: Expr,
    ty: &DataType,
    segments: &[String],
    mode: Mode,
    depth: usize,
) -> Resolved {
    descend(value, ty.clone(), segments, mode, depth).unwrap_or_else(missing)
}

fn missing() -> Resolved {
    Resolved {
        expr: lit(ScalarValue::Null),
        ty: DataType::Null,
        through_array: false,
    }
}

/// A lambda parameter standing for one element of type `elem`; `depth` keeps the names of
/// nested lambdas apart.
pub fn element_var(elem: &FieldRef, depth: usize) -> (String, Expr) {
    let name = crate::document::hidden::element_var(depth);
    let var = Expr::LambdaVariable(LambdaVariable::new(name.clone(), Some(Arc::clone(elem))));
    (name, var)
}

fn descend(
    expr: Expr,
    ty: DataType,
    segments: &[String],
    mode: Mode,
    depth: usize,
) -> Option<Resolved> {
    let Some((seg, rest)) = segments.split_first() else {
        return Some(Resolved {
            expr,
            ty,
            through_array: false,
        });
    };
    match &ty {
        DataType::Struct(fields) => {
            let f = fields.iter().find(|f| f.name() == seg)?;
            descend(
                get_field(expr, seg.as_str()),
                f.data_type().clone(),
                rest,
                mode,
                depth,
            )
        }
        // A document whose field names are data (`$arrayToObject`): look the name up.
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return None;
            };
            let value_ty = kv.get(1)?.data_type().clone();
            let value = datafusion::functions_nested::expr_fn::array_element(
                datafusion::functions_nested::expr_fn::map_extract(expr, lit(seg.as_str())),
                lit(1i64),
            );
            descend(value, value_ty, rest, mode, depth)
        }
        DataType::List(elem) => {
            if let Ok(i) = seg.parse::<i64>() {
                // `items.0.sku`: the first element (array_element counts from 1).
                let picked = array_element(expr, lit(i + 1));
                return descend(picked, elem.data_type().clone(), rest, mode, depth);
            }
            // Only sub-documents have fields: an array of scalars has nothing at `seg`.
            if !matches!(elem.data_type(), DataType::Struct(_) | DataType::List(_)) {
                return None;
            }
            let (name, var) = element_var(elem, depth);
            let body = descend(var, elem.data_type().clone(), segments, mode, depth + 1)?;
            let mapped = array_transform(expr, lambda([name], body.expr));
            let item = Arc::new(Field::new_list_field(body.ty.clone(), true));
            let (expr, ty) = match (mode, &body.ty) {
                (Mode::Query, DataType::List(_)) => (flatten(mapped), body.ty),
                (Mode::Query, _) => (mapped, DataType::List(item)),
                (Mode::Expression, _) => {
                    let (name, var) = element_var(&item, depth);
                    let present = array_filter(mapped, lambda([name], var.is_not_null()));
                    (present, DataType::List(item))
                }
            };
            Some(Resolved {
                expr,
                ty,
                through_array: true,
            })
        }
        // A scalar has no sub-fields: the path is missing.
        _ => None,
    }
}
