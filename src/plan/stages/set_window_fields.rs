//! `$setWindowFields` compiled to DataFusion window functions: each output field is one
//! `… OVER (PARTITION BY … ORDER BY … ROWS|RANGE BETWEEN …)` expression, evaluated by one
//! `Window` operator. Ties in `sortBy` are broken by document order (`plan::order`), so
//! `documents` windows and `$first` / `$last` / `$push` are repeatable. Afterwards the
//! documents are in partition, then `sortBy`, order, as MongoDB leaves them.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue};
use datafusion::functions::core::expr_fn::greatest;
use datafusion::functions::core::expr_fn::{coalesce, nullif};
use datafusion::functions_aggregate::array_agg::array_agg_udaf;
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
use datafusion::functions_aggregate::stddev::{stddev_pop_udaf, stddev_udaf};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::functions_nested::expr_fn::{
    array_distinct, array_filter, array_slice, array_sort, cardinality, make_array,
};
use datafusion::functions_window::expr_fn::{
    dense_rank, first_value, lag, last_value, lead, rank, row_number,
};
use datafusion::logical_expr::expr::{NullTreatment, WindowFunction};
use datafusion::logical_expr::lambda;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, SortExpr, WindowFrame,
    WindowFrameBound, WindowFrameUnits, cast, lit, when,
};

use super::project;
use crate::Result;
use crate::document::hidden;
use crate::dsl::JsonPath;
use crate::dsl::accumulator::Acc;
use crate::dsl::set_window_fields::{Bound, SetWindowFields, Window, WindowOp};
use crate::plan::expr::{ExprCompiler, Kind, scalar};
use crate::plan::{field, order};

/// Window arguments, partition and sort keys computed as columns before the Window operator:
/// DataFusion's common-subexpression pass would otherwise pull a shared argument (say
/// `CAST(_id AS DOUBLE)` read by two functions) out of the window functions, which its
/// physical planner then rejects.
#[derive(Default)]
struct Columns {
    exprs: Vec<Expr>,
}

impl Columns {
    /// `e` as a column: itself when it is one, else a new column computed before the window.
    fn of(&mut self, e: Expr) -> Expr {
        if matches!(e, Expr::Column(_)) {
            return e;
        }
        let name = hidden::numbered("warg", self.exprs.len());
        self.exprs.push(e.alias(&name));
        Expr::Column(Column::from_name(name))
    }
}

/// Plans `$setWindowFields`.
pub fn plan(input: LogicalPlan, w: &SetWindowFields, at: &JsonPath) -> Result<LogicalPlan> {
    let original = input.schema().clone();
    let c = ExprCompiler::new(&original);
    let mut pre = Columns::default();
    // The keys as written (for the order afterwards) and as columns (for the window).
    let mut after: Vec<SortExpr> = Vec::new();
    let partition: Vec<Expr> = match &w.partition_by {
        Some(p) => {
            let e = c.compile(p, &at.key("partitionBy"))?;
            after.push(e.clone().sort(true, true));
            vec![pre.of(e)]
        }
        None => vec![],
    };
    let mut sort: Vec<SortExpr> = Vec::new();
    let mut sort_types = Vec::new();
    for k in &w.sort_by {
        let (e, ty) = field::resolve(&original, &k.field, &at.key("sortBy"))?;
        sort_types.push(ty);
        after.push(e.clone().sort(k.ascending, k.ascending));
        sort.push(pre.of(e).sort(k.ascending, k.ascending));
    }
    let mut with_ties = sort.clone();
    if order::has_seq(&original) {
        with_ties.push(order::by_seq());
    }
    // Each output's arguments, as columns.
    let mut args: Vec<Vec<Expr>> = Vec::with_capacity(w.output.len());
    for out in &w.output {
        let here = &out.path;
        let a = match &out.op {
            WindowOp::Rank | WindowOp::DenseRank | WindowOp::DocumentNumber => vec![],
            WindowOp::Locf(e) => vec![pre.of(c.compile(e, here)?)],
            WindowOp::Shift { output, .. } => vec![pre.of(c.compile(output, here)?)],
            WindowOp::Linear(e) => {
                let x = position(&sort, &sort_types, None, here).or_else(|_| {
                    // A date sort key: interpolate along its milliseconds.
                    position(
                        &sort,
                        &sort_types,
                        Some(crate::dsl::set_window_fields::Unit::Millisecond),
                        here,
                    )
                })?;
                vec![pre.of(numeric(&c, e, here)?), pre.of(x)]
            }
            WindowOp::ExpMovingAvg { input, .. } => vec![pre.of(numeric(&c, input, here)?)],
            WindowOp::Derivative { input, unit } | WindowOp::Integral { input, unit } => {
                let x = position(&sort, &sort_types, *unit, here)?;
                vec![pre.of(numeric(&c, input, here)?), pre.of(x)]
            }
            WindowOp::AccumulateN { input, .. } | WindowOp::Percentile { input, .. } => {
                vec![pre.of(c.compile(input, here)?)]
            }
            WindowOp::Accumulate { op, arg } => {
                if *op == Acc::Count {
                    vec![lit(1i64)]
                } else {
                    vec![pre.of(c.compile(arg, here)?)]
                }
            }
        };
        args.push(a);
    }
    let mut cols: Vec<Expr> = original.columns().into_iter().map(Expr::Column).collect();
    cols.extend(pre.exprs);
    let input = LogicalPlanBuilder::from(input).project(cols)?.build()?;
    // `$integral` adds up trapezoids between neighbours: a first Window operator gives each
    // document its predecessor's key and value, then each trapezoid becomes a column.
    let mut lags = Vec::new();
    for (i, out) in w.output.iter().enumerate() {
        if let WindowOp::Integral { .. } = &out.op {
            let (y, x) = (args[i][0].clone(), args[i][1].clone());
            for (name, e) in [
                (hidden::numbered("lag_x", i), x),
                (hidden::numbered("lag_y", i), y),
            ] {
                lags.push(
                    lag(e, Some(1), None)
                        .partition_by(partition.clone())
                        .order_by(with_ties.clone())
                        .build()?
                        .alias(name),
                );
            }
        }
    }
    let input = if lags.is_empty() {
        input
    } else {
        let lagged = LogicalPlanBuilder::from(input).window(lags)?.build()?;
        let mut cols: Vec<Expr> = lagged
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        for (i, out) in w.output.iter().enumerate() {
            if let WindowOp::Integral { .. } = &out.op {
                let (y, x) = (args[i][0].clone(), args[i][1].clone());
                let lx = hidden::column(&hidden::numbered("lag_x", i));
                let ly = hidden::column(&hidden::numbered("lag_y", i));
                cols.push(((x - lx) * (y + ly) / lit(2f64)).alias(hidden::numbered("piece", i)));
            }
        }
        LogicalPlanBuilder::from(lagged).project(cols)?.build()?
    };
    let schema = input.schema().clone();
    let c = ExprCompiler::new(&schema);
    // The Window operator takes bare window functions; each output is then an expression over
    // their columns (casts, defaults, combinations), applied in the projection after it.
    let mut results: Vec<(String, Expr)> = Vec::new();
    let mut window_exprs = Vec::new();
    let mut next = 0usize;
    let mut add = |e: Expr, window_exprs: &mut Vec<Expr>| -> Expr {
        let alias = hidden::numbered("window", next);
        next += 1;
        window_exprs.push(e.alias(&alias));
        Expr::Column(Column::from_name(alias))
    };
    for (i, out) in w.output.iter().enumerate() {
        let here = &out.path;
        let result: Expr = match &out.op {
            WindowOp::Rank => {
                let f = rank()
                    .order_by(sort.clone())
                    .partition_by(partition.clone())
                    .build()?;
                cast(add(f, &mut window_exprs), DataType::Int64)
            }
            WindowOp::DenseRank => {
                let f = dense_rank()
                    .order_by(sort.clone())
                    .partition_by(partition.clone())
                    .build()?;
                cast(add(f, &mut window_exprs), DataType::Int64)
            }
            WindowOp::DocumentNumber => {
                let f = row_number()
                    .order_by(with_ties.clone())
                    .partition_by(partition.clone())
                    .build()?;
                cast(add(f, &mut window_exprs), DataType::Int64)
            }
            WindowOp::Locf(_) => {
                let value = args[i][0].clone();
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
                add(f, &mut window_exprs)
            }
            WindowOp::Linear(_) => {
                let (value, x) = (args[i][0].clone(), args[i][1].clone());
                let f = Expr::from(WindowFunction::new(
                    crate::udf::linear_fill::udwf(),
                    vec![value, x],
                ))
                .partition_by(partition.clone())
                .order_by(with_ties.clone())
                .build()?;
                add(f, &mut window_exprs)
            }
            WindowOp::ExpMovingAvg { alpha, .. } => {
                let value = args[i][0].clone();
                let f = Expr::from(WindowFunction::new(
                    crate::udf::exp_moving_avg::udwf(),
                    vec![value, lit(*alpha)],
                ))
                .partition_by(partition.clone())
                .order_by(with_ties.clone())
                .build()?;
                add(f, &mut window_exprs)
            }
            WindowOp::Derivative { .. } => {
                let frame = frame(out.window, &sort_types, at)?;
                let order_by = frame_order(out.window, &sort, &with_ties);
                let (y, x) = (args[i][0].clone(), args[i][1].clone());
                let mut ends = Vec::new();
                for e in [y, x] {
                    for f in [first_value(e.clone()), last_value(e)] {
                        let f = f
                            .partition_by(partition.clone())
                            .order_by(order_by.clone())
                            .window_frame(frame.clone())
                            .build()?;
                        ends.push(add(f, &mut window_exprs));
                    }
                }
                let (y0, y1, x0, x1) = (
                    ends[0].clone(),
                    ends[1].clone(),
                    ends[2].clone(),
                    ends[3].clone(),
                );
                (y1 - y0) / nullif(x1 - x0, lit(0f64))
            }
            WindowOp::Integral { .. } => {
                let frame = frame(out.window, &sort_types, at)?;
                let order_by = frame_order(out.window, &sort, &with_ties);
                // The window's area is the sum of its trapezoids but the first (which reaches
                // back outside the window).
                let piece = hidden::column(&hidden::numbered("piece", i));
                let total = Expr::from(WindowFunction::new(sum_udaf(), vec![piece.clone()]))
                    .partition_by(partition.clone())
                    .order_by(order_by.clone())
                    .window_frame(frame.clone())
                    .build()?;
                let head = first_value(piece)
                    .partition_by(partition.clone())
                    .order_by(order_by.clone())
                    .window_frame(frame.clone())
                    .build()?;
                let total = add(total, &mut window_exprs);
                let head = add(head, &mut window_exprs);
                coalesce(vec![total, lit(0f64)]) - coalesce(vec![head, lit(0f64)])
            }
            WindowOp::AccumulateN { .. } | WindowOp::Percentile { .. } => {
                let frame = frame(out.window, &sort_types, at)?;
                let order_by = frame_order(out.window, &sort, &with_ties);
                let value = args[i][0].clone();
                let value_ty = c.with_type(value.clone(), here)?.ty;
                let gathered = Expr::from(WindowFunction::new(array_agg_udaf(), vec![value]))
                    .partition_by(partition.clone())
                    .order_by(order_by)
                    .window_frame(frame)
                    .build()?;
                let all = add(gathered, &mut window_exprs);
                // The non-null values of the window, for the sorted forms.
                let elem = std::sync::Arc::new(
                    datafusion::arrow::datatypes::Field::new_list_field(value_ty.clone(), true),
                );
                let (param, x) = field::element_var(&elem, 0);
                let present = array_filter(all.clone(), lambda([param], x.is_not_null()));
                let sorted = |asc: bool| {
                    array_sort(
                        present.clone(),
                        lit(if asc { "ASC" } else { "DESC" }),
                        lit("NULLS LAST"),
                    )
                };
                let take = |list: Expr, n: u64| array_slice(list, lit(1i64), lit(n as i64), None);
                match &out.op {
                    WindowOp::AccumulateN { op, n, .. } => match *op {
                        Acc::FirstN => take(all, *n),
                        Acc::LastN => {
                            let len = cardinality(all.clone());
                            let from = greatest(vec![
                                cast(len.clone(), DataType::Int64) - lit(*n as i64 - 1),
                                lit(1i64),
                            ]);
                            array_slice(all, from, cast(len, DataType::Int64), None)
                        }
                        Acc::MaxN => take(sorted(false), *n),
                        _ => take(sorted(true), *n),
                    },
                    WindowOp::Percentile { p, median, .. } => {
                        if Kind::of(&value_ty) != Kind::Number {
                            return Err(here.err("needs numbers"));
                        }
                        let sorted = cast(
                            sorted(true),
                            DataType::List(std::sync::Arc::new(
                                datafusion::arrow::datatypes::Field::new_list_field(
                                    DataType::Float64,
                                    true,
                                ),
                            )),
                        );
                        let picks: Vec<Expr> = p
                            .iter()
                            .map(|q| super::group::nearest_rank(sorted.clone(), *q))
                            .collect();
                        if *median {
                            picks.into_iter().next().expect("p = 0.5")
                        } else {
                            make_array(picks)
                        }
                    }
                    _ => unreachable!(),
                }
            }
            WindowOp::Shift {
                output: _,
                by,
                default,
            } => {
                let value = args[i][0].clone();
                let default = match default {
                    crate::dsl::Expression::Literal(v) => Some(scalar(v)),
                    _ => return Err(here.err("$shift default must be a constant")),
                };
                let f = if *by >= 0 {
                    lead(value, Some(*by), default)
                } else {
                    lag(value, Some(-*by), default)
                };
                let f = f
                    .order_by(with_ties.clone())
                    .partition_by(partition.clone())
                    .build()?;
                add(f, &mut window_exprs)
            }
            WindowOp::Accumulate { op, arg } => {
                let frame = frame(out.window, &sort_types, at)?;
                let order_by = frame_order(out.window, &sort, &with_ties);
                let value = args[i][0].clone();
                let numeric = *op == Acc::Count
                    || c.typed(arg, here)
                        .map(|t| t.kind() == Kind::Number)
                        .unwrap_or(false);
                // Doubles sum compensated, as in `$group` (`udf::compensated_sum`).
                let doubles = c.typed(arg, here).is_ok_and(|t| t.ty == DataType::Float64);
                let agg = |udaf| -> Result<Expr> {
                    Ok(Expr::from(WindowFunction::new(udaf, vec![value.clone()]))
                        .partition_by(partition.clone())
                        .order_by(order_by.clone())
                        .window_frame(frame.clone())
                        .build()?)
                };
                match *op {
                    Acc::Sum if doubles => coalesce(vec![
                        add(agg(crate::udf::compensated_sum::sum())?, &mut window_exprs),
                        lit(0i64),
                    ]),
                    Acc::Avg if doubles => {
                        let total =
                            add(agg(crate::udf::compensated_sum::sum())?, &mut window_exprs);
                        let n = add(agg(count_udaf())?, &mut window_exprs);
                        total / cast(n, DataType::Float64)
                    }
                    Acc::Sum if numeric => {
                        coalesce(vec![add(agg(sum_udaf())?, &mut window_exprs), lit(0i64)])
                    }
                    Acc::Count => cast(add(agg(count_udaf())?, &mut window_exprs), DataType::Int64),
                    Acc::Sum | Acc::Avg | Acc::StdDevPop | Acc::StdDevSamp if !numeric => {
                        // Nothing numeric: a constant, still computed per window.
                        let counted = add(agg(count_udaf())?, &mut window_exprs);
                        let constant = if *op == Acc::Sum {
                            lit(0i64)
                        } else {
                            lit(ScalarValue::Float64(None))
                        };
                        when(counted.is_null(), constant.clone()).otherwise(constant)?
                    }
                    Acc::Avg => add(agg(avg_udaf())?, &mut window_exprs),
                    Acc::StdDevPop => add(agg(stddev_pop_udaf())?, &mut window_exprs),
                    Acc::StdDevSamp => add(agg(stddev_udaf())?, &mut window_exprs),
                    Acc::Min => add(agg(min_udaf())?, &mut window_exprs),
                    Acc::Max => add(agg(max_udaf())?, &mut window_exprs),
                    Acc::Push => add(agg(array_agg_udaf())?, &mut window_exprs),
                    // The distinct values of the window (MongoDB leaves their order open).
                    Acc::AddToSet => array_distinct(add(agg(array_agg_udaf())?, &mut window_exprs)),
                    Acc::First | Acc::Last => {
                        let f = if *op == Acc::First {
                            first_value(value)
                        } else {
                            last_value(value)
                        };
                        let f = f
                            .partition_by(partition.clone())
                            .order_by(order_by.clone())
                            .window_frame(frame.clone())
                            .build()?;
                        add(f, &mut window_exprs)
                    }
                    other => {
                        return Err(crate::Error::internal(format!(
                            "accumulator {other} has no plan in $setWindowFields"
                        )));
                    }
                }
            }
        };
        results.push((out.name.clone(), result));
    }
    let windowed = LogicalPlanBuilder::from(input)
        .window(window_exprs)?
        .build()?;
    // The outputs replace fields of the same name in place, or are appended (as `$set`); the
    // helper columns of `$integral` are dropped.
    let mut fields: Vec<(String, Expr)> = Vec::new();
    for col in original.columns() {
        match results.iter().find(|(n, _)| *n == col.name) {
            Some((n, e)) => fields.push((n.clone(), e.clone())),
            None => {
                let name = col.name.clone();
                fields.push((name, Expr::Column(col)));
            }
        }
    }
    for (n, e) in &results {
        if !original.has_column_with_unqualified_name(n) {
            fields.push((n.clone(), e.clone()));
        }
    }
    let projected = project::project_fields(windowed, fields, at)?;
    // MongoDB sorts by partition, then sortBy, to compute the windows, and later stages see
    // the documents in that order: renumber them so.
    if after.is_empty() {
        return Ok(projected);
    }
    order::renumber(projected, after)
}

/// A range frame orders by its one key; a documents frame also by input order.
fn frame_order(w: Option<Window>, sort: &[SortExpr], with_ties: &[SortExpr]) -> Vec<SortExpr> {
    match w {
        Some(Window::Range(..)) => sort.to_vec(),
        _ => with_ties.to_vec(),
    }
}

/// A numeric operand as a double (`$derivative`, `$integral`, `$expMovingAvg`, linear fill).
fn numeric(c: &ExprCompiler, e: &crate::dsl::Expression, at: &JsonPath) -> Result<Expr> {
    let t = c.typed(e, at)?;
    match t.kind() {
        Kind::Number | Kind::Null => Ok(cast(t.expr, DataType::Float64)),
        other => Err(at.err(format!("needs a number, not {}", other.name()))),
    }
}

/// The sort key as a number for `$derivative` / `$integral` / linear fill: a numeric key as
/// is (no `unit`); a date key in `unit`s since the epoch (a `unit` is required).
fn position(
    sort: &[SortExpr],
    sort_types: &[DataType],
    unit: Option<crate::dsl::set_window_fields::Unit>,
    at: &JsonPath,
) -> Result<Expr> {
    let ([key], [ty]) = (sort, sort_types) else {
        return Err(at.err("needs sortBy on exactly one field"));
    };
    let e = key.expr.clone();
    match (Kind::of(ty), unit) {
        (Kind::Number, None) => Ok(cast(e, DataType::Float64)),
        (Kind::Number, Some(_)) => Err(at.err("unit applies to a date sortBy only")),
        (Kind::Date, Some(u)) => {
            let ms = u.millis().expect("parsed as a fixed unit") as f64;
            Ok(cast(cast(e, DataType::Int64), DataType::Float64) / lit(ms))
        }
        (Kind::Date, None) => Err(at.err("a date sortBy needs a unit (e.g. \"unit\": \"hour\")")),
        (other, _) => Err(at.err(format!(
            "needs a numeric or date sortBy, not {}",
            other.name()
        ))),
    }
}

/// The DataFusion frame of a MongoDB window (`None`: the whole partition).
fn frame(w: Option<Window>, sort_types: &[DataType], at: &JsonPath) -> Result<WindowFrame> {
    let (units, lo, hi) = match w {
        None => (WindowFrameUnits::Rows, Bound::Unbounded, Bound::Unbounded),
        Some(Window::Documents(lo, hi)) => (WindowFrameUnits::Rows, lo, hi),
        Some(Window::Range(lo, hi, unit)) => {
            match (sort_types, unit) {
                ([t], None) if Kind::of(t) == Kind::Number => {}
                ([t], Some(u)) if Kind::of(t) == Kind::Date => {
                    return Ok(WindowFrame::new_bounds(
                        WindowFrameUnits::Range,
                        time_bound(lo, true, u),
                        time_bound(hi, false, u),
                    ));
                }
                ([t], None) if Kind::of(t) == Kind::Date => {
                    return Err(at.err("a range window over a date sortBy needs a unit"));
                }
                _ => {
                    return Err(at.err(
                        "a range window needs exactly one sortBy field: a number, or a date with a unit",
                    ));
                }
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

/// One end of a range frame over a date key, `n` time units away.
fn time_bound(
    b: Bound,
    start: bool,
    unit: crate::dsl::set_window_fields::Unit,
) -> WindowFrameBound {
    use crate::dsl::set_window_fields::Unit;
    let interval = |n: f64| {
        let n = n.abs();
        let (months, days, nanos) = match unit {
            Unit::Year => (n as i32 * 12, 0, 0),
            Unit::Quarter => (n as i32 * 3, 0, 0),
            Unit::Month => (n as i32, 0, 0),
            Unit::Week => (0, n as i32 * 7, 0),
            Unit::Day => (0, n as i32, 0),
            fixed => (
                0,
                0,
                (n * fixed.millis().expect("fixed") as f64 * 1e6) as i64,
            ),
        };
        ScalarValue::IntervalMonthDayNano(Some(
            datafusion::arrow::datatypes::IntervalMonthDayNano::new(months, days, nanos),
        ))
    };
    match b {
        Bound::Unbounded if start => WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
        Bound::Unbounded => WindowFrameBound::Following(ScalarValue::UInt64(None)),
        Bound::Current => WindowFrameBound::CurrentRow,
        Bound::Offset(n) if n < 0.0 => WindowFrameBound::Preceding(interval(n)),
        Bound::Offset(n) if n > 0.0 => WindowFrameBound::Following(interval(n)),
        Bound::Offset(_) => WindowFrameBound::CurrentRow,
    }
}
