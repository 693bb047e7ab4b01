//! `$group` compiled to a DataFusion aggregate.
//!
//! The grouping key becomes the `_id` column, first in the output as MongoDB shows it. A
//! compound key (`{"_id": {"c": "$customer", "y": "$year"}}`) groups by each member and is
//! reassembled into a sub-document afterwards. A constant key groups everything into one
//! document — and, as in MongoDB, into *no* document when the input is empty.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::functions::core::expr_fn::{coalesce, named_struct};
use datafusion::functions::core::expr_fn::{get_field, greatest};
use datafusion::functions::math::expr_fn::ceil;
use datafusion::functions_aggregate::count::count_all;
use datafusion::functions_aggregate::expr_fn::{
    array_agg, avg, count, first_value, last_value, max, min, sum,
};
use datafusion::functions_aggregate::expr_fn::{stddev, stddev_pop};
use datafusion::functions_nested::expr_fn::{
    array_element, array_reverse, array_slice, cardinality, make_array,
};
use datafusion::logical_expr::{Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, cast, lit};
use serde_json::Value;

use crate::Result;
use crate::dsl::JsonPath;
use crate::dsl::accumulator::Acc;
use crate::dsl::expression::Expression;
use crate::dsl::group::{Accumulator, Group};
use crate::plan::expr::{ExprCompiler, Kind, literal};
use crate::plan::{field, order};
use crate::udf::compensated_sum;

use crate::document::hidden::{self, GROUP_ROWS as ROWS};

/// Plans a `$group` stage.
pub fn plan(input: LogicalPlan, g: &Group, at: &JsonPath) -> Result<LogicalPlan> {
    // `$first`, `$last` and `$push` follow the pipeline's order (`plan::order`).
    let order_sensitive = g.fields.iter().any(|f| f.op.is_ordered());
    let input = if order_sensitive {
        order::ensure(input)?
    } else {
        input
    };
    let schema = input.schema().clone();
    let c = ExprCompiler::new(&schema);
    let id_at = at.key("_id");

    // Grouping expressions, and the expression that rebuilds `_id` from the aggregate's output.
    let (group_exprs, id_out): (Vec<Expr>, Expr) = match &g.id {
        Expression::Literal(v) => (Vec::new(), literal(v).expr),
        Expression::Document(members) if !members.is_empty() => {
            let mut groups = Vec::new();
            let mut rebuilt = Vec::new();
            for (i, (name, e)) in members.iter().enumerate() {
                let alias = hidden::numbered("id", i);
                groups.push(c.compile(e, &id_at.key(name))?.alias(&alias));
                rebuilt.push(lit(name.as_str()));
                rebuilt.push(Expr::Column(Column::from_name(alias)));
            }
            (groups, named_struct(rebuilt))
        }
        e => (
            vec![c.compile(e, &id_at)?.alias("_id")],
            Expr::Column(Column::from_name("_id")),
        ),
    };
    let constant_key = group_exprs.is_empty();

    let ordered = order::has_seq(&schema);
    let mut aggs = Vec::with_capacity(g.fields.len() + 1);
    // What each output field is, over the aggregate's columns (most are one aggregate of
    // that name; `$mergeObjects` is a document of one aggregate per field).
    let mut outputs = Vec::with_capacity(g.fields.len());
    for acc in &g.fields {
        if acc.op == Acc::MergeObjects {
            let (parts, rebuilt) = merge_objects(&c, acc, ordered)?;
            aggs.extend(parts);
            outputs.push(rebuilt.alias(&acc.name));
        } else {
            aggs.push(accumulator(&c, acc, ordered)?.alias(&acc.name));
            outputs.push(Expr::Column(Column::from_name(&acc.name)).alias(&acc.name));
        }
    }
    if constant_key {
        aggs.push(count_all().alias(ROWS));
    }

    let mut b = LogicalPlanBuilder::from(input).aggregate(group_exprs, aggs)?;
    if constant_key {
        b = b.filter(Expr::Column(Column::from_name(ROWS)).gt(lit(0i64)))?;
    }
    let mut out = vec![id_out.alias("_id")];
    out.extend(outputs);
    Ok(b.project(out)?.build()?)
}

/// The stream's internal accumulators of compensated sums, if `acc` is one: `$__sumResidual`
/// (what rounding a batch's sum left out; 0 for integers), and `$__sumMerge` /
/// `$__sumMergeResidual` over `[sum, residual]` columns (the merged sum and its residual).
fn sum_parts(c: &ExprCompiler, acc: &Accumulator, at: &JsonPath) -> Result<Option<Expr>> {
    let zero = || lit(0.0f64);
    Ok(Some(match acc.op {
        Acc::SumResidual => {
            let arg = c.typed(&acc.arg, at)?;
            match arg.ty == DataType::Float64 {
                true => coalesce(vec![
                    compensated_sum::residual().call(vec![arg.expr]),
                    zero(),
                ]),
                false => zero(),
            }
        }
        Acc::SumMerge | Acc::SumMergeResidual => {
            let Expression::Array(parts) = &acc.arg else {
                return Err(at.err("internal: a merged sum takes [sum, residual]"));
            };
            let [total, residual] = parts.as_slice() else {
                return Err(at.err("internal: a merged sum takes [sum, residual]"));
            };
            let total = c.typed(total, at)?;
            let residual = cast(c.typed(residual, at)?.expr, DataType::Float64);
            let doubles = total.ty == DataType::Float64;
            match (acc.op, doubles) {
                (Acc::SumMerge, true) => coalesce(vec![
                    compensated_sum::sum().call(vec![total.expr, residual]),
                    lit(0i64),
                ]),
                (Acc::SumMerge, false) => coalesce(vec![sum(total.expr), lit(0i64)]),
                (_, true) => coalesce(vec![
                    compensated_sum::residual().call(vec![total.expr, residual]),
                    zero(),
                ]),
                (_, false) => zero(),
            }
        }
        _ => return Ok(None),
    }))
}

fn accumulator(c: &ExprCompiler, acc: &Accumulator, ordered: bool) -> Result<Expr> {
    let by_seq = || {
        if ordered {
            vec![order::by_seq()]
        } else {
            vec![]
        }
    };
    let at = acc.path.key(acc.op.name());
    if acc.op == Acc::Count {
        return Ok(count_all());
    }
    // `{$sum: 1}` counts documents; any numeric constant multiplies the count.
    if acc.op == Acc::Sum
        && let Expression::Literal(Value::Number(n)) = &acc.arg
    {
        let k = literal(&Value::Number(n.clone())).expr;
        return Ok(if n.as_i64() == Some(1) {
            count_all()
        } else {
            count_all() * k
        });
    }
    // The parts of a running compensated sum a stream keeps (`runtime::state::group`): the
    // residual of a batch's sum, and the merge of stored (sum, residual) pairs.
    if let Some(merged) = sum_parts(c, acc, &at)? {
        return Ok(merged);
    }
    let arg = c.typed(&acc.arg, &at)?;
    let numeric = arg.kind() == Kind::Number;
    // Doubles are summed as MongoDB sums them: compensated (`udf::compensated_sum`).
    let doubles = arg.ty == DataType::Float64;
    Ok(match acc.op {
        // MongoDB ignores non-numeric values in $sum and $avg; a sum of nothing is 0.
        Acc::Sum if doubles => {
            coalesce(vec![compensated_sum::sum().call(vec![arg.expr]), lit(0i64)])
        }
        Acc::Sum if numeric => coalesce(vec![sum(arg.expr), lit(0i64)]),
        Acc::Sum => lit(0i64),
        Acc::Avg if doubles => {
            compensated_sum::sum().call(vec![arg.expr.clone()])
                / cast(count(arg.expr), DataType::Float64)
        }
        Acc::Avg if numeric => avg(arg.expr),
        Acc::Avg => lit(datafusion::common::ScalarValue::Float64(None)),
        Acc::Min => min(arg.expr),
        Acc::Max => max(arg.expr),
        Acc::First => first_value(arg.expr, by_seq()),
        Acc::Last => last_value(arg.expr, by_seq()),
        Acc::Push if ordered => array_agg(arg.expr).order_by(by_seq()).build()?,
        Acc::Push => array_agg(arg.expr),
        Acc::AddToSet => array_agg(arg.expr).distinct().build()?,
        Acc::StdDevPop if numeric => stddev_pop(arg.expr),
        Acc::StdDevSamp if numeric => stddev(arg.expr),
        Acc::StdDevPop | Acc::StdDevSamp => lit(datafusion::common::ScalarValue::Float64(None)),
        Acc::Top | Acc::Bottom | Acc::TopN | Acc::BottomN => {
            let mut keys = Vec::new();
            for k in &acc.sort_by {
                let (e, _) = field::resolve(c.schema(), &k.field, &at.key("sortBy"))?;
                keys.push((e, k.ascending));
            }
            let ascending = acc.op == Acc::Top || acc.op == Acc::TopN;
            // `$bottom…` reads the order backwards and turns the result around.
            let mut order: Vec<_> = keys
                .into_iter()
                .map(|(e, asc)| {
                    let asc = if ascending { asc } else { !asc };
                    e.sort(asc, asc)
                })
                .collect();
            if ordered {
                order.push(Expr::Column(Column::from_name(order::SEQ)).sort(ascending, false));
            }
            match acc.n {
                None => first_value(arg.expr, order),
                Some(n) => {
                    let taken = first_n(array_agg(arg.expr).order_by(order).build()?, n);
                    if ascending {
                        taken
                    } else {
                        array_reverse(taken)
                    }
                }
            }
        }
        Acc::FirstN | Acc::LastN => {
            let n = acc.n.expect("parsed with n");
            let forward = acc.op == Acc::FirstN;
            let order = if ordered {
                vec![Expr::Column(Column::from_name(order::SEQ)).sort(forward, false)]
            } else {
                vec![]
            };
            let taken = first_n(array_agg(arg.expr).order_by(order).build()?, n);
            if forward { taken } else { array_reverse(taken) }
        }
        Acc::MaxN | Acc::MinN => {
            let n = acc.n.expect("parsed with n");
            let asc = acc.op == Acc::MinN;
            let present = arg.expr.clone().is_not_null();
            let agg = array_agg(arg.expr.clone())
                .order_by(vec![arg.expr.sort(asc, false)])
                .filter(present)
                .build()?;
            // Nothing but nulls: an empty array, as in MongoDB.
            let empty = datafusion::common::ScalarValue::List(
                datafusion::common::ScalarValue::new_list_nullable(&[], &arg.ty),
            );
            first_n(coalesce(vec![agg, lit(empty)]), n)
        }
        Acc::Median | Acc::Percentile if numeric => {
            // MongoDB's "approximate" / "discrete" percentiles are values of the input: the
            // ceil(p·n)-th smallest (nearest rank) of the non-null numbers.
            let present = arg.expr.clone().is_not_null();
            let sorted = array_agg(cast(arg.expr.clone(), DataType::Float64))
                .order_by(vec![arg.expr.sort(true, false)])
                .filter(present)
                .build()?;
            let picks: Vec<Expr> = acc
                .percentiles
                .iter()
                .map(|p| nearest_rank(sorted.clone(), *p))
                .collect();
            match acc.op {
                Acc::Median => picks.into_iter().next().expect("p = 0.5"),
                _ => make_array(picks),
            }
        }
        Acc::Median => lit(datafusion::common::ScalarValue::Float64(None)),
        Acc::Percentile => {
            let nulls =
                vec![lit(datafusion::common::ScalarValue::Float64(None)); acc.percentiles.len()];
            make_array(nulls)
        }
        other => {
            return Err(crate::Error::internal(format!(
                "accumulator {other} has no plan in a $group"
            )));
        }
    })
}

/// The element at rank ceil(p·n) (at least the first) of a sorted list; null when empty.
pub fn nearest_rank(sorted: Expr, p: f64) -> Expr {
    let n = cast(cardinality(sorted.clone()), DataType::Float64);
    let rank = cast(
        greatest(vec![ceil(n * lit(p)), lit(1.0f64)]),
        DataType::Int64,
    );
    array_element(sorted, rank)
}

/// `$mergeObjects` over a document-valued argument: per field, the last non-null value in
/// document order (later documents win, as in MongoDB; null and missing both leave a field as
/// it was). Returns the per-field aggregates and the expression rebuilding the document.
fn merge_objects(c: &ExprCompiler, acc: &Accumulator, ordered: bool) -> Result<(Vec<Expr>, Expr)> {
    let at = acc.path.key(acc.op.name());
    let arg = c.typed(&acc.arg, &at)?;
    let DataType::Struct(fields) = &arg.ty else {
        return Err(at.err(format!(
            "$mergeObjects needs documents, not {}",
            arg.kind().name()
        )));
    };
    let mut parts = Vec::with_capacity(fields.len());
    let mut rebuilt = Vec::with_capacity(fields.len() * 2);
    for (i, f) in fields.iter().enumerate() {
        let value = get_field(arg.expr.clone(), f.name().as_str());
        let order = if ordered {
            vec![order::by_seq()]
        } else {
            vec![]
        };
        let alias = hidden::numbered(&format!("merge_{}", acc.name), i);
        // The non-null values in document order, then the last one: `last_value … IGNORE
        // NULLS` does not keep its ORDER BY through DataFusion 55's two-phase aggregation when
        // it is the only ordered aggregate (seen as a wrong, run-dependent answer).
        let present = value.clone().is_not_null();
        let values = array_agg(value).order_by(order).filter(present).build()?;
        parts.push(values.alias(&alias));

        rebuilt.push(lit(f.name().as_str()));
        rebuilt.push(array_element(
            Expr::Column(Column::from_name(alias)),
            lit(-1i64),
        ));
    }
    Ok((parts, named_struct(rebuilt)))
}

/// The first `n` elements of a list.
fn first_n(list: Expr, n: u64) -> Expr {
    array_slice(list, lit(1i64), lit(n as i64), None)
}
