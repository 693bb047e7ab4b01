//! A continuous `$group`'s merge done row by row, without a query, where every state column
//! merges elementwise: a micro-batch's aggregates have each key once, and each key has at most
//! one state row, so merging is combining two aligned rows — adding counts and sums, keeping
//! the state's `$first` and the batch's `$last`. A query (`runtime::state::group`'s merge plan)
//! does the same work through a hash aggregation over both tables, which for a micro-batch of
//! a thousand documents costs more than the merging itself.
//!
//! The results are the merge plan's, value for value: integers add wrapping as DataFusion's
//! `sum` does, doubles are summed as `udf::compensated_sum` sums them (the same additions in
//! the same order: the state's value before the batch's, totals before residuals), and a group
//! without a value gets the plan's `0`. Columns of other types — and accumulators merged
//! otherwise (`$min`, `$max`, `$mergeObjects`, arrays) — are left to the query.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;

use crate::Result;
use crate::udf::compensated_sum;

/// How a field's state columns merge with a batch's aggregate of the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowMerge {
    /// One column, added (counts, and the parts of averages and deviations).
    Add,
    /// Two columns: a compensated sum's total and residual.
    Sum,
    /// One column: the state's value when the group has a state row (`$first`).
    First,
    /// One column: the batch's value (`$last`).
    Last,
}

impl RowMerge {
    /// How many state columns the field has.
    fn columns(self) -> usize {
        match self {
            RowMerge::Sum => 2,
            _ => 1,
        }
    }
}

/// The batch's aggregate rows `partial` (`_id` first, then the fields' columns as `merges`
/// says) merged with the state rows `state` (same schema), where `at[i]` is the state row of
/// partial row `i`'s key, if it has one; the merged rows are in the order of `partial`.
/// `None` when a column has a type merged only by the query.
pub fn merge(
    merges: &[RowMerge],
    partial: &RecordBatch,
    state: Option<&RecordBatch>,
    at: &[Option<u32>],
) -> Result<Option<RecordBatch>> {
    let columns: usize = merges.iter().map(|m| m.columns()).sum();
    if partial.num_columns() != columns + 1
        || partial.schema().field(0).name() != "_id"
        || at.len() != partial.num_rows()
    {
        return Ok(None);
    }
    let indices = UInt32Array::from(at.to_vec());
    // Each state column aligned with the partial rows, null where a key has no state row.
    let aligned = |c: usize| -> Result<ArrayRef> {
        Ok(match state {
            Some(s) => take(s.column(c), &indices, None)?,
            None => new_null_array(partial.column(c).data_type(), partial.num_rows()),
        })
    };
    let mut out = Vec::with_capacity(partial.num_columns());
    out.push(partial.column(0).clone());
    let mut c = 1;
    for m in merges {
        match m {
            RowMerge::Add => {
                let Some(added) = add(&[aligned(c)?, partial.column(c).clone()])? else {
                    return Ok(None);
                };
                out.push(added);
            }
            RowMerge::Sum => {
                let (total, residual) = (partial.column(c), partial.column(c + 1));
                let (state_total, state_residual) = (aligned(c)?, aligned(c + 1)?);
                match total.data_type() {
                    DataType::Float64 => {
                        let parts = [
                            state_total,
                            total.clone(),
                            cast(&state_residual, &DataType::Float64)?,
                            cast(residual, &DataType::Float64)?,
                        ];
                        let parts: Vec<&Float64Array> = parts
                            .iter()
                            .map(|p| p.as_primitive::<Float64Type>())
                            .collect();
                        let (t, r) = compensated_sum::sum_across(&parts);
                        out.push(Arc::new(Float64Array::from(t)));
                        out.push(cast(&Float64Array::from(r), residual.data_type())?);
                    }
                    DataType::Int64 => {
                        let Some(added) = add(&[state_total, total.clone()])? else {
                            return Ok(None);
                        };
                        out.push(added);
                        let zeros = Float64Array::from(vec![0.0; partial.num_rows()]);
                        out.push(cast(&zeros, residual.data_type())?);
                    }
                    _ => return Ok(None),
                }
            }
            RowMerge::First => {
                let present: BooleanArray = at.iter().map(|a| Some(a.is_some())).collect();
                out.push(datafusion::arrow::compute::kernels::zip::zip(
                    &present,
                    &aligned(c)?,
                    partial.column(c),
                )?);
            }
            RowMerge::Last => out.push(partial.column(c).clone()),
        }
        c += m.columns();
    }
    Ok(Some(RecordBatch::try_new(partial.schema(), out)?))
}

/// The row-wise sums of `values` (columns of one type) as the merge plan sums them: the
/// non-null values, 0 where a row has none; `None` for a type it does not sum.
fn add(values: &[ArrayRef]) -> Result<Option<ArrayRef>> {
    let sums: ArrayRef = match values[1].data_type() {
        DataType::Int64 => {
            let values: Vec<&Int64Array> = values
                .iter()
                .map(|v| v.as_primitive::<Int64Type>())
                .collect();
            let rows = values[0].len();
            let each = (0..rows).map(|i| {
                values
                    .iter()
                    .filter(|v| v.is_valid(i))
                    .fold(0i64, |s, v| s.wrapping_add(v.value(i)))
            });
            Arc::new(Int64Array::from_iter_values(each))
        }
        DataType::Float64 => {
            let values: Vec<&Float64Array> = values
                .iter()
                .map(|v| v.as_primitive::<Float64Type>())
                .collect();
            Arc::new(Float64Array::from(compensated_sum::sum_across(&values).0))
        }
        _ => return Ok(None),
    };
    Ok(Some(sums))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};

    fn batch(ids: &[&str], counts: &[Option<i64>], sums: &[f64], lo: &[f64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("_id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Float64, true),
            Field::new("s__lo", DataType::Float64, true),
            Field::new("f", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(datafusion::arrow::array::StringArray::from(ids.to_vec())),
                Arc::new(Int64Array::from(counts.to_vec())),
                Arc::new(Float64Array::from(sums.to_vec())),
                Arc::new(Float64Array::from(lo.to_vec())),
                Arc::new(datafusion::arrow::array::StringArray::from(
                    ids.iter().map(|i| format!("first {i}")).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    /// Keys with a state row get it added (or kept, for `$first`); new keys keep the batch's.
    #[test]
    fn rows_merge_with_the_state_rows_of_their_keys() {
        let merges = [RowMerge::Add, RowMerge::Sum, RowMerge::First];
        let state = batch(&["b", "a"], &[Some(5), None], &[0.1, 2.0], &[0.0, 0.0]);
        let partial = batch(
            &["a", "c", "b"],
            &[Some(1), Some(2), Some(3)],
            &[0.2, 1.0, 0.2],
            &[0.0, 0.0, 0.0],
        );
        let merged = merge(&merges, &partial, Some(&state), &[Some(1), None, Some(0)])
            .unwrap()
            .expect("merged row by row");
        let n = merged.column(1).as_primitive::<Int64Type>();
        assert_eq!(n.values(), &[1, 2, 8]);
        let s = merged.column(2).as_primitive::<Float64Type>();
        // 0.1 + 0.2 rounds to 0.30000000000000004; the residual keeps what that left out.
        assert_eq!(s.values(), &[2.2, 1.0, 0.30000000000000004]);
        let lo = merged.column(3).as_primitive::<Float64Type>();
        assert_eq!(lo.value(1), 0.0);
        assert_ne!(lo.value(2), 0.0, "the rounding of 0.1 + 0.2 is kept");
        let f = merged.column(4).as_string::<i32>();
        let f: Vec<_> = f.iter().map(|v| v.unwrap()).collect();
        assert_eq!(f, ["first a", "first c", "first b"]);
    }

    /// A type the merge plan sums otherwise (a decimal, say) is left to it.
    #[test]
    fn other_types_are_left_to_the_query() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("_id", DataType::Int64, true),
            Field::new("n", DataType::Int32, true),
        ]));
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(datafusion::arrow::array::Int32Array::from(vec![1])),
            ],
        )
        .unwrap();
        assert!(
            merge(&[RowMerge::Add], &rows, None, &[None])
                .unwrap()
                .is_none()
        );
    }
}
