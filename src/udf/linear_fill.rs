//! `mongo_linear_fill(value, position)`: `$fill` with `method: "linear"`, a window function
//! over a partition in `sortBy` order. A null between two numbers becomes the value on the
//! straight line between them, by its sort key (`position`); nulls before the first or after
//! the last number stay null, as in MongoDB.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::Result as DFResult;
use datafusion::logical_expr::{Signature, Volatility, WindowUDF};

use super::KernelUdwf;

/// The function.
pub fn udwf() -> Arc<WindowUDF> {
    static UDWF: LazyLock<Arc<WindowUDF>> = LazyLock::new(|| {
        Arc::new(WindowUDF::new_from_impl(KernelUdwf::new(
            "mongo_linear_fill",
            Signature::exact(
                vec![DataType::Float64, DataType::Float64],
                Volatility::Immutable,
            ),
            DataType::Float64,
            kernel,
        )))
    });
    UDWF.clone()
}

fn kernel(values: &[ArrayRef], _num_rows: usize) -> DFResult<ArrayRef> {
    let y: Vec<Option<f64>> = values[0].as_primitive::<Float64Type>().iter().collect();
    let x: Vec<Option<f64>> = values[1].as_primitive::<Float64Type>().iter().collect();
    Ok(Arc::new(Float64Array::from(fill(&y, &x))))
}

fn fill(y: &[Option<f64>], x: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut out = y.to_vec();
    let mut prev: Option<usize> = None;
    for i in 0..y.len() {
        if y[i].is_none() {
            continue;
        }
        if let Some(p) = prev
            && i > p + 1
        {
            let (y0, y1) = (y[p].expect("set"), y[i].expect("set"));
            for (k, slot) in out.iter_mut().enumerate().take(i).skip(p + 1) {
                *slot = match (x[p], x[i], x[k]) {
                    (Some(x0), Some(x1), Some(xk)) if x1 != x0 => {
                        Some(y0 + (y1 - y0) * (xk - x0) / (x1 - x0))
                    }
                    _ => None,
                };
            }
        }
        prev = Some(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_between_known_values_only() {
        let y = [None, Some(10.0), None, None, Some(40.0), None];
        let x = [
            Some(0.0),
            Some(1.0),
            Some(2.0),
            Some(4.0),
            Some(5.0),
            Some(6.0),
        ];
        assert_eq!(
            fill(&y, &x),
            [None, Some(10.0), Some(17.5), Some(32.5), Some(40.0), None]
        );
    }
}
