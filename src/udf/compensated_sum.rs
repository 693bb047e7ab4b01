//! `$sum` and `$avg` of doubles as MongoDB computes them: compensated (double-double)
//! summation, so `0.1 + 0.2 + …` prints the decimal a user expects (`1548.47`, not
//! `1548.4699999999998`) and the answer does not depend on how the input was split into
//! partitions or micro-batches.
//!
//! Each group keeps a pair `(hi, lo)`: `hi` the running sum, `lo` the rounding errors of every
//! addition (Knuth's TwoSum), so `hi + lo` is the sum to about twice a double's precision. The
//! answer is `hi + lo` rounded once. [`Part::Residual`] gives what that rounding left out, so a
//! stream can keep both parts of a running sum in its state and merge batches without losing
//! the compensation; with several arguments the function sums all of them (the parts of a
//! stored sum, merged).
//!
//! A group without a value is null (the caller's `coalesce` makes MongoDB's 0); infinities and
//! NaN give what plain summation gives.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result as DFResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature,
    TypeSignature, Volatility,
};

/// Which part of the compensated sum the function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The sum, rounded once.
    Total,
    /// What rounding the sum left out (`(hi + lo) − Total`).
    Residual,
}

/// The aggregate function (`fluxion_sum`, `fluxion_sum_residual`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CompensatedSum {
    part: Part,
    signature: Signature,
}

impl CompensatedSum {
    fn new(part: Part) -> Self {
        CompensatedSum {
            part,
            signature: Signature::new(
                TypeSignature::OneOf(vec![
                    TypeSignature::Exact(vec![DataType::Float64]),
                    TypeSignature::Exact(vec![DataType::Float64, DataType::Float64]),
                ]),
                Volatility::Immutable,
            ),
        }
    }
}

/// The compensated sum of its (double) arguments.
pub fn sum() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::from(CompensatedSum::new(Part::Total)))
}

/// What the rounded compensated sum left out.
pub fn residual() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::from(CompensatedSum::new(Part::Residual)))
}

/// A running double-double sum.
#[derive(Debug, Clone, Copy, Default)]
struct Pair {
    hi: f64,
    lo: f64,
}

impl Pair {
    /// Adds `x`, keeping the rounding error (TwoSum: exact for any two doubles).
    fn add(&mut self, x: f64) {
        let s = self.hi + x;
        let b = s - self.hi;
        let err = (self.hi - (s - b)) + (x - b);
        self.hi = s;
        self.lo += err;
    }

    fn total(self) -> f64 {
        if self.hi.is_finite() {
            self.hi + self.lo
        } else {
            self.hi
        }
    }

    fn residual(self) -> f64 {
        if self.hi.is_finite() {
            let t = self.hi + self.lo;
            (self.hi - t) + self.lo
        } else {
            0.0
        }
    }

    fn part(self, part: Part) -> f64 {
        match part {
            Part::Total => self.total(),
            Part::Residual => self.residual(),
        }
    }
}

impl AggregateUDFImpl for CompensatedSum {
    fn name(&self) -> &str {
        match self.part {
            Part::Total => "fluxion_sum",
            Part::Residual => "fluxion_sum_residual",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// A double, like the values summed.
    fn return_type(&self, _args: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> DFResult<Box<dyn Accumulator>> {
        Ok(Box::new(One {
            part: self.part,
            sum: Pair::default(),
            count: 0,
        }))
    }

    /// Both parts, and how many values (a group without values is null, not 0).
    fn state_fields(&self, args: StateFieldsArgs) -> DFResult<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "hi"),
                DataType::Float64,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "lo"),
                DataType::Float64,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "count"),
                DataType::Float64,
                true,
            )),
        ])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> DFResult<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Groups {
            part: self.part,
            sums: Vec::new(),
            counts: Vec::new(),
        }))
    }

    /// Sliding window frames subtract the values that leave them.
    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> DFResult<Box<dyn Accumulator>> {
        self.accumulator(args)
    }
}

/// Each row's compensated sum of the non-null values of `columns` (aligned, added in column
/// order) as (totals, residuals); a row without values is 0. Merging a stream's stored sums
/// row by row gives what this function's aggregate gives over the same values.
pub fn sum_across(columns: &[&Float64Array]) -> (Vec<f64>, Vec<f64>) {
    let rows = columns.first().map_or(0, |c| c.len());
    let mut totals = Vec::with_capacity(rows);
    let mut residuals = Vec::with_capacity(rows);
    for i in 0..rows {
        let mut sum = Pair::default();
        for c in columns {
            if c.is_valid(i) {
                sum.add(c.value(i));
            }
        }
        totals.push(sum.total());
        residuals.push(sum.residual());
    }
    (totals, residuals)
}

/// Every non-null value of `values`, with the row it is in.
fn each(values: &[ArrayRef], mut f: impl FnMut(usize, f64)) {
    for column in values {
        let column = column.as_primitive::<Float64Type>();
        match column.nulls() {
            None => column
                .values()
                .iter()
                .enumerate()
                .for_each(|(i, v)| f(i, *v)),
            Some(nulls) => {
                for (i, v) in column.values().iter().enumerate() {
                    if nulls.is_valid(i) {
                        f(i, *v);
                    }
                }
            }
        }
    }
}

/// One group (plain aggregation without grouping, window frames).
#[derive(Debug)]
struct One {
    part: Part,
    sum: Pair,
    count: u64,
}

impl Accumulator for One {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DFResult<()> {
        each(values, |_, v| {
            self.sum.add(v);
            self.count += 1;
        });
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> DFResult<()> {
        each(values, |_, v| {
            self.sum.add(-v);
            self.count -= 1;
        });
        if self.count == 0 {
            // Nothing left in the frame: start clean, without leftover rounding.
            self.sum = Pair::default();
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> DFResult<ScalarValue> {
        Ok(ScalarValue::Float64(
            (self.count > 0).then(|| self.sum.part(self.part)),
        ))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> DFResult<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Float64(Some(self.sum.hi)),
            ScalarValue::Float64(Some(self.sum.lo)),
            ScalarValue::Float64(Some(self.count as f64)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DFResult<()> {
        each_state(states, |_, sum, count| {
            self.sum.add(sum.hi);
            self.sum.lo += sum.lo;
            self.count += count;
        })
    }
}

/// Every non-empty state row of `states` (hi, lo, count): its row, sum and count.
fn each_state(states: &[ArrayRef], mut f: impl FnMut(usize, Pair, u64)) -> DFResult<()> {
    let [hi, lo, count] = states else {
        return Err(datafusion::common::DataFusionError::Internal(
            "fluxion_sum: expected three state columns".into(),
        ));
    };
    let (hi, lo, count) = (
        hi.as_primitive::<Float64Type>(),
        lo.as_primitive::<Float64Type>(),
        count.as_primitive::<Float64Type>(),
    );
    for row in 0..hi.len() {
        if count.is_valid(row) && count.value(row) > 0.0 {
            let sum = Pair {
                hi: hi.value(row),
                lo: lo.value(row),
            };
            f(row, sum, count.value(row) as u64);
        }
    }
    Ok(())
}

/// Many groups at once (hash aggregation).
#[derive(Debug)]
struct Groups {
    part: Part,
    sums: Vec<Pair>,
    counts: Vec<u64>,
}

impl Groups {
    fn grow(&mut self, total: usize) {
        self.sums.resize(total, Pair::default());
        self.counts.resize(total, 0);
    }
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DFResult<()> {
        self.grow(total_num_groups);
        each(values, |row, v| {
            if opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                return;
            }
            let g = group_indices[row];
            self.sums[g].add(v);
            self.counts[g] += 1;
        });
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DFResult<ArrayRef> {
        let sums = emit_to.take_needed(&mut self.sums);
        let counts = emit_to.take_needed(&mut self.counts);
        let part = self.part;
        Ok(Arc::new(Float64Array::from_iter(
            sums.into_iter()
                .zip(counts)
                .map(|(s, n)| (n > 0).then(|| s.part(part))),
        )))
    }

    fn state(&mut self, emit_to: EmitTo) -> DFResult<Vec<ArrayRef>> {
        let sums = emit_to.take_needed(&mut self.sums);
        let counts = emit_to.take_needed(&mut self.counts);
        Ok(vec![
            Arc::new(Float64Array::from_iter_values(sums.iter().map(|s| s.hi))),
            Arc::new(Float64Array::from_iter_values(sums.iter().map(|s| s.lo))),
            Arc::new(Float64Array::from_iter_values(
                counts.into_iter().map(|n| n as f64),
            )),
        ])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> DFResult<()> {
        self.grow(total_num_groups);
        each_state(values, |row, sum, count| {
            let g = group_indices[row];
            self.sums[g].add(sum.hi);
            self.sums[g].lo += sum.lo;
            self.counts[g] += count;
        })
    }

    /// Each row as its own group's state.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> DFResult<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |v| v.len());
        let mut sums = vec![Pair::default(); rows];
        let mut counts = vec![0u64; rows];
        each(values, |row, v| {
            if opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                return;
            }
            sums[row].add(v);
            counts[row] += 1;
        });
        Ok(vec![
            Arc::new(Float64Array::from_iter_values(sums.iter().map(|s| s.hi))),
            Arc::new(Float64Array::from_iter_values(sums.iter().map(|s| s.lo))),
            Arc::new(Float64Array::from_iter_values(
                counts.into_iter().map(|n| n as f64),
            )),
        ])
    }

    fn size(&self) -> usize {
        self.sums.capacity() * std::mem::size_of::<Pair>()
            + self.counts.capacity() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_as_a_decimal_user_expects() {
        let mut naive = 0.0;
        let mut pair = Pair::default();
        for _ in 0..10 {
            naive += 0.1;
            pair.add(0.1);
        }
        assert_eq!(naive, 0.9999999999999999);
        assert_eq!(pair.total(), 1.0);
        // The residual completes the total: a stored (total, residual) merges losslessly.
        let mut merged = Pair::default();
        merged.add(pair.total());
        merged.add(pair.residual());
        assert_eq!(merged.total(), pair.total());
    }

    #[test]
    fn cancellation_and_infinities() {
        let mut p = Pair::default();
        for v in [1e16, 1.0, -1e16] {
            p.add(v);
        }
        assert_eq!(p.total(), 1.0);
        let mut p = Pair::default();
        p.add(f64::INFINITY);
        p.add(1.0);
        assert_eq!(p.total(), f64::INFINITY);
    }

    #[test]
    fn groups_and_their_merged_states_agree() {
        let values: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(0.1),
            Some(0.2),
            None,
            Some(0.3),
            Some(0.7),
        ]));
        let mut g = Groups {
            part: Part::Total,
            sums: Vec::new(),
            counts: Vec::new(),
        };
        g.update_batch(std::slice::from_ref(&values), &[0, 0, 0, 1, 0], None, 3)
            .unwrap();
        let state = g.state(EmitTo::All).unwrap();
        let mut merged = Groups {
            part: Part::Total,
            sums: Vec::new(),
            counts: Vec::new(),
        };
        merged.merge_batch(&state, &[0, 1, 2], 3).unwrap();
        let out = merged.evaluate(EmitTo::All).unwrap();
        let out = out.as_primitive::<Float64Type>();
        assert_eq!(out.value(0), 1.0);
        assert_eq!(out.value(1), 0.3);
        assert!(out.is_null(2), "a group without values is null");
    }
}
