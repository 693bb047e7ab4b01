//! `$densify`: documents added where a numeric or date field's sequence (`step` apart) has
//! gaps, per partition.
//!
//! Columnar: the bounds of each partition (the whole input's, the partition's own, or
//! constants) become a `range` of step numbers, unnested into candidate values; an anti-join
//! drops the values documents already have; the rest are new documents holding only the
//! partition fields and the field, unioned with the input. Dates step by calendar units
//! (`mongo_date_add`). Afterwards documents are in partition, then field, order.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, NullEquality};
use datafusion::functions::math::expr_fn::floor;
use datafusion::functions_aggregate::expr_fn::{max, min};
use datafusion::functions_nested::expr_fn::range;
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, LogicalPlanBuilder, cast, lit};

use crate::Result;
use crate::dsl::JsonPath;
use crate::dsl::reshape::{Densify, DensifyBounds};
use crate::plan::expr::{Kind, literal};
use crate::plan::order;
use crate::udf;

use crate::document::hidden::{DENSIFY_HI as HI, DENSIFY_LO as LO, DENSIFY_STEPS as STEPS};

/// Plans `$densify`.
pub fn plan(input: LogicalPlan, d: &Densify, at: &JsonPath) -> Result<LogicalPlan> {
    let schema = input.schema().clone();
    let col = |n: &str| Expr::Column(Column::from_name(n));
    let ty = schema
        .field_with_unqualified_name(&d.field)
        .map_err(|_| {
            at.key("field")
                .err(format!("the input has no field \"{}\"", d.field))
        })?
        .data_type()
        .clone();
    for p in &d.partition_by {
        if !schema.has_column_with_unqualified_name(p) {
            return Err(at
                .key("partitionByFields")
                .err(format!("the input has no field \"{p}\"")));
        }
    }
    let kind = Kind::of(&ty);
    match (kind, d.unit) {
        (Kind::Number, None) | (Kind::Date, Some(_)) => {}
        (Kind::Date, None) => return Err(at.key("range").err("a date field needs range.unit")),
        (Kind::Number, Some(_)) => {
            return Err(at
                .key("range.unit")
                .err("a unit applies to a date field only"));
        }
        (other, _) => {
            return Err(at
                .key("field")
                .err(format!("densifies numbers or dates, not {}", other.name())));
        }
    }
    // New values keep the field's type when it and the step are whole; else doubles.
    let target = match kind {
        Kind::Number if ty.is_integer() && d.step.fract() == 0.0 => DataType::Int64,
        Kind::Number => DataType::Float64,
        _ => crate::document::date::date_type(),
    };
    let field = cast(col(&d.field), target.clone());
    let parts: Vec<Expr> = d.partition_by.iter().map(|p| col(p)).collect();
    let present = LogicalPlanBuilder::from(input.clone())
        .filter(col(&d.field).is_not_null())?
        .build()?;

    // The bounds of each partition.
    let partitions = || -> Result<LogicalPlanBuilder> {
        Ok(if parts.is_empty() {
            LogicalPlanBuilder::empty(true)
        } else {
            LogicalPlanBuilder::from(present.clone())
                .aggregate(parts.clone(), Vec::<Expr>::new())?
        })
    };
    let bounds = match &d.bounds {
        DensifyBounds::Full => {
            let all = LogicalPlanBuilder::from(present.clone())
                .aggregate(
                    Vec::<Expr>::new(),
                    vec![min(field.clone()).alias(LO), max(field.clone()).alias(HI)],
                )?
                .build()?;
            partitions()?.cross_join(all)?
        }
        DensifyBounds::Partition => LogicalPlanBuilder::from(present.clone()).aggregate(
            parts.clone(),
            vec![min(field.clone()).alias(LO), max(field.clone()).alias(HI)],
        )?,
        DensifyBounds::Range(lo, hi) => {
            let constant = |v: &serde_json::Value, i: usize| -> Result<Expr> {
                let l = literal(v);
                if l.kind() != kind {
                    return Err(at
                        .key("range.bounds")
                        .index(i)
                        .err(format!("a bound must be a {} like the field", kind.name())));
                }
                Ok(cast(l.expr, target.clone()))
            };
            let (lo, hi) = (constant(lo, 0)?, constant(hi, 1)?);
            let mut cols = parts.clone();
            cols.push(lo.alias(LO));
            cols.push(hi.alias(HI));
            partitions()?.project(cols)?
        }
    }
    .build()?;
    let inclusive = !matches!(d.bounds, DensifyBounds::Range(..));

    // Step numbers 0..=n from the lower bound, unnested into candidate values.
    let (lo, hi) = (col(LO), col(HI));
    let steps = match d.unit {
        None => floor(
            (cast(hi.clone(), DataType::Float64) - cast(lo.clone(), DataType::Float64))
                / lit(d.step),
        ),
        Some(u) => {
            cast(
                udf::call(
                    udf::date_diff::udf(),
                    vec![
                        lo.clone(),
                        hi.clone(),
                        lit(unit_name(u)),
                        lit("UTC"),
                        lit("sunday"),
                    ],
                ),
                DataType::Float64,
            ) / lit(d.step)
        }
    };
    let count = cast(floor(steps), DataType::Int64) + lit(1i64);
    let mut cols = parts.clone();
    cols.push(lo.clone());
    cols.push(hi.clone());
    cols.push(range(lit(0i64), count, lit(1i64)).alias(STEPS));
    let candidates = LogicalPlanBuilder::from(bounds)
        .filter(lo.clone().is_not_null().and(hi.clone().is_not_null()))?
        .project(cols)?
        .unnest_column(STEPS)?
        .build()?;
    let k = col(STEPS);
    let value = match d.unit {
        None => cast(
            cast(lo.clone(), DataType::Float64) + cast(k, DataType::Float64) * lit(d.step),
            target.clone(),
        ),
        Some(u) => udf::call(
            udf::date_add::udf(),
            vec![
                lo.clone(),
                lit(unit_name(u)),
                k * lit(d.step as i64),
                lit("UTC"),
            ],
        ),
    };
    let within = if inclusive {
        value.clone().lt_eq(hi)
    } else {
        value.clone().lt(hi)
    };
    let mut new_cols = parts.clone();
    new_cols.push(value.alias(&d.field));
    let generated = LogicalPlanBuilder::from(candidates)
        .filter(within)?
        .project(new_cols)?
        .build()?;
    // Only values no document of the partition has.
    let mut existing_cols = parts.clone();
    existing_cols.push(field.clone().alias(&d.field));
    let existing = LogicalPlanBuilder::from(present)
        .project(existing_cols)?
        .build()?;
    let mut keys: Vec<&str> = d.partition_by.iter().map(String::as_str).collect();
    keys.push(&d.field);
    let missing = LogicalPlanBuilder::from(generated)
        .join_detailed(
            existing,
            JoinType::LeftAnti,
            (keys.clone(), keys.clone()),
            None,
            NullEquality::NullEqualsNull,
        )?
        .build()?;
    // The input with the field in the new values' type, then the new documents.
    let input_cols: Vec<Expr> = schema
        .columns()
        .into_iter()
        .map(|c| {
            if c.name == d.field {
                cast(Expr::Column(c), target.clone()).alias(&d.field)
            } else {
                Expr::Column(c)
            }
        })
        .collect();
    let union = LogicalPlanBuilder::from(input)
        .project(input_cols)?
        .union_by_name(missing)
        .map_err(|e| at.err(format!("cannot add the new documents: {e}")))?
        .build()?;
    let mut order_keys: Vec<_> = parts.iter().map(|p| p.clone().sort(true, true)).collect();
    order_keys.push(col(&d.field).sort(true, true));
    order::number_by(union, order_keys)
}

fn unit_name(u: crate::udf::calendar::Unit) -> &'static str {
    use crate::udf::calendar::Unit::*;
    match u {
        Year => "year",
        Quarter => "quarter",
        Month => "month",
        Week => "week",
        Day => "day",
        Hour => "hour",
        Minute => "minute",
        Second => "second",
        Millisecond => "millisecond",
    }
}
