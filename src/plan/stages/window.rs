//! `$setWindowFields` compiled to DataFusion window functions: each output field is one
//! `… OVER (PARTITION BY … ORDER BY … ROWS|RANGE BETWEEN …)` expression, evaluated by one
//! `Window` operator. Ties in `sortBy` are broken by document order (`plan::order`), so
//! `documents` windows and `$first` / `$last` / `$push` are repeatable. Afterwards the
//! documents are in partition, then `sortBy`, order, as MongoDB leaves them.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue};
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions_aggregate::array_agg::array_agg_udaf;
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::functions_window::expr_fn::{
    dense_rank, first_value, lag, last_value, lead, rank, row_number,
};
use datafusion::logical_expr::expr::{NullTreatment, WindowFunction};
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, SortExpr, WindowFrame,
    WindowFrameBound, WindowFrameUnits, cast, lit,
};

use super::project;
use crate::Result;
use crate::dsl::JsonPath;
use crate::dsl::window::{Bound, SetWindowFields, Window, WindowOp};
use crate::plan::expr::{ExprCompiler, Kind, scalar};
use crate::plan::{field, order};

/// Plans `$setWindowFields`.
pub fn plan(input: LogicalPlan, w: &SetWindowFields, at: &JsonPath) -> Result<LogicalPlan> {
    let schema = input.schema().clone();
    let c = ExprCompiler::new(&schema);
    let partition: Vec<Expr> = match &w.partition_by {
        Some(p) => vec![c.compile(p, &at.key("partitionBy"))?],
        None => vec![],
    };
    let mut sort: Vec<SortExpr> = Vec::new();
    let mut sort_types = Vec::new();
    for k in &w.sort_by {
        let (e, ty) = field::resolve(&schema, &k.field, &at.key("sortBy"))?;
        sort_types.push(ty);
        sort.push(e.sort(k.ascending, k.ascending));
    }
    let mut with_ties = sort.clone();
    if order::has_seq(&schema) {
        with_ties.push(order::by_seq());
    }
    // The Window operator takes bare window functions; casts and defaults are applied in the
    // projection after it (`post`).
    let mut names = Vec::new();
    let mut window_exprs = Vec::new();
    type Post = Box<dyn Fn(Expr) -> Expr>;
    let int64: fn() -> Post = || Box::new(|e| cast(e, DataType::Int64));
    let same: fn() -> Post = || Box::new(|e| e);
    for (i, out) in w.output.iter().enumerate() {
        let alias = format!("__fluxion_window_{i}");
        let here = &out.path;
        let (expr, post): (Expr, Post) = match &out.op {
            WindowOp::Rank => (
                rank()
                    .order_by(sort.clone())
                    .partition_by(partition.clone())
                    .build()?,
                int64(),
            ),
            WindowOp::DenseRank => (
                dense_rank()
                    .order_by(sort.clone())
                    .partition_by(partition.clone())
                    .build()?,
                int64(),
            ),
            WindowOp::DocumentNumber => (
                row_number()
                    .order_by(with_ties.clone())
                    .partition_by(partition.clone())
                    .build()?,
                int64(),
            ),
            WindowOp::Locf(field) => {
                let value = c.compile(field, here)?;
                let f = last_value(value)
                    .null_treatment(NullTreatment::IgnoreNulls)
                    .partition_by(partition.clone())
                    .order_by(with_ties.clone())
                    .window_frame(WindowFrame::new_bounds(
                        WindowFrameUnits::Rows,
                        WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
                        WindowFrameBound::CurrentRow,
                    ))
                    .build()?;
                (f, same())
            }
            WindowOp::Shift {
                output,
                by,
                default,
            } => {
                let value = c.compile(output, here)?;
                let default = match default {
                    crate::dsl::Expression::Literal(v) => Some(scalar(v)),
                    _ => return Err(here.err("$shift default must be a constant")),
                };
                let f = if *by >= 0 {
                    lead(value, Some(*by), default)
                } else {
                    lag(value, Some(-*by), default)
                };
                (
                    f.order_by(with_ties.clone())
                        .partition_by(partition.clone())
                        .build()?,
                    same(),
                )
            }
            WindowOp::Accumulate { op, arg } => {
                let frame = frame(out.window, &sort_types, at)?;
                // A range frame orders by its one key; a documents frame also by input order.
                let order_by = match out.window {
                    Some(Window::Range(..)) => sort.clone(),
                    _ => with_ties.clone(),
                };
                let value = if *op == "$count" {
                    lit(1i64)
                } else {
                    c.compile(arg, here)?
                };
                let numeric = *op == "$count"
                    || c.typed(arg, here)
                        .map(|t| t.kind() == Kind::Number)
                        .unwrap_or(false);
                let agg = |udaf| -> Result<Expr> {
                    Ok(Expr::from(WindowFunction::new(udaf, vec![value.clone()]))
                        .partition_by(partition.clone())
                        .order_by(order_by.clone())
                        .window_frame(frame.clone())
                        .build()?)
                };
                match *op {
                    "$sum" if numeric => (
                        agg(sum_udaf())?,
                        Box::new(|e| coalesce(vec![e, lit(0i64)])) as Post,
                    ),
                    "$count" => (agg(count_udaf())?, int64()),
                    "$sum" | "$avg" if !numeric => {
                        // Nothing numeric to add up: a constant, still computed per window.
                        let zero = if *op == "$sum" {
                            lit(0i64)
                        } else {
                            lit(ScalarValue::Float64(None))
                        };
                        (agg(count_udaf())?, Box::new(move |_| zero.clone()) as Post)
                    }
                    "$avg" => (agg(avg_udaf())?, same()),
                    "$min" => (agg(min_udaf())?, same()),
                    "$max" => (agg(max_udaf())?, same()),
                    "$push" => (agg(array_agg_udaf())?, same()),
                    "$first" | "$last" => {
                        let f = if *op == "$first" {
                            first_value(value)
                        } else {
                            last_value(value)
                        };
                        let f = f
                            .partition_by(partition.clone())
                            .order_by(order_by.clone())
                            .window_frame(frame.clone())
                            .build()?;
                        (f, same())
                    }
                    other => unreachable!("window accumulator {other} is validated by the parser"),
                }
            }
        };
        window_exprs.push(expr.alias(&alias));
        names.push((out.name.clone(), alias, post));
    }
    let windowed = LogicalPlanBuilder::from(input)
        .window(window_exprs)?
        .build()?;
    // The outputs replace fields of the same name in place, or are appended (as `$set`).
    let mut fields: Vec<(String, Expr)> = Vec::new();
    for col in schema.columns() {
        match names.iter().find(|(n, _, _)| *n == col.name) {
            Some((n, alias, post)) => {
                fields.push((n.clone(), post(Expr::Column(Column::from_name(alias)))))
            }
            None => {
                let name = col.name.clone();
                fields.push((name, Expr::Column(col)));
            }
        }
    }
    for (n, alias, post) in &names {
        if !schema.has_column_with_unqualified_name(n) {
            fields.push((n.clone(), post(Expr::Column(Column::from_name(alias)))));
        }
    }
    let projected = project::project_fields(windowed, fields, at)?;
    // MongoDB sorts by partition, then sortBy, to compute the windows, and later stages see
    // the documents in that order: renumber them so.
    let mut keys: Vec<SortExpr> = partition
        .iter()
        .map(|p| p.clone().sort(true, true))
        .collect();
    keys.extend(sort);
    if keys.is_empty() {
        return Ok(projected);
    }
    order::renumber(projected, keys)
}

/// The DataFusion frame of a MongoDB window (`None`: the whole partition).
fn frame(w: Option<Window>, sort_types: &[DataType], at: &JsonPath) -> Result<WindowFrame> {
    let (units, lo, hi) = match w {
        None => (WindowFrameUnits::Rows, Bound::Unbounded, Bound::Unbounded),
        Some(Window::Documents(lo, hi)) => (WindowFrameUnits::Rows, lo, hi),
        Some(Window::Range(lo, hi)) => {
            if sort_types.len() != 1 || Kind::of(&sort_types[0]) != Kind::Number {
                return Err(at.err("a range window needs exactly one numeric sortBy field"));
            }
            (WindowFrameUnits::Range, lo, hi)
        }
    };
    // Range offsets must have the sort key's type (an integer key with a fractional offset
    // is widened to double by the key's own type rule, so keep it integral there).
    let key_is_integer = sort_types.first().is_some_and(DataType::is_integer);
    let value = |n: f64| -> ScalarValue {
        match units {
            WindowFrameUnits::Rows => ScalarValue::UInt64(Some(n.abs() as u64)),
            _ if key_is_integer && n.fract() == 0.0 => ScalarValue::Int64(Some(n.abs() as i64)),
            _ => ScalarValue::Float64(Some(n.abs())),
        }
    };
    let bound = |b: Bound, start: bool| -> WindowFrameBound {
        match b {
            Bound::Unbounded if start => WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
            Bound::Unbounded => WindowFrameBound::Following(ScalarValue::UInt64(None)),
            Bound::Current => WindowFrameBound::CurrentRow,
            Bound::Offset(n) if n < 0.0 => WindowFrameBound::Preceding(value(n)),
            Bound::Offset(n) if n > 0.0 => WindowFrameBound::Following(value(n)),
            Bound::Offset(_) => WindowFrameBound::CurrentRow,
        }
    };
    Ok(WindowFrame::new_bounds(
        units,
        bound(lo, true),
        bound(hi, false),
    ))
}
