//! `mongo_exp_moving_avg(value, alpha)`: `$expMovingAvg`, a window function over a partition
//! in `sortBy` order. The first number is its own average; each later one moves the average
//! by `alpha` towards it (`N` documents means `alpha = 2 / (N + 1)`). Nulls leave the average
//! where it was (and get it as their result).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{DataFusionError, Result as DFResult, ScalarValue};
use datafusion::logical_expr::{Signature, Volatility, WindowUDF};

use super::KernelUdwf;

/// The function.
pub fn udwf() -> Arc<WindowUDF> {
    static UDWF: LazyLock<Arc<WindowUDF>> = LazyLock::new(|| {
        Arc::new(WindowUDF::new_from_impl(KernelUdwf::new(
            "mongo_exp_moving_avg",
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

fn kernel(values: &[ArrayRef], num_rows: usize) -> DFResult<ArrayRef> {
    let y = values[0].as_primitive::<Float64Type>();
    let alpha = match ScalarValue::try_from_array(&values[1], 0)? {
        ScalarValue::Float64(Some(a)) if a > 0.0 && a <= 1.0 => a,
        other => {
            return Err(DataFusionError::Execution(format!(
                "$expMovingAvg alpha must be in (0, 1], got {other}"
            )));
        }
    };
    Ok(Arc::new(ema(y.iter(), alpha, num_rows)))
}

fn ema(values: impl Iterator<Item = Option<f64>>, alpha: f64, n: usize) -> Float64Array {
    let mut out = Vec::with_capacity(n);
    let mut avg: Option<f64> = None;
    for v in values {
        if let Some(x) = v {
            avg = Some(match avg {
                None => x,
                Some(a) => alpha * x + (1.0 - alpha) * a,
            });
        }
        out.push(avg);
    }
    Float64Array::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_towards_each_value_by_alpha() {
        let got = ema(
            [Some(10.0), Some(20.0), None, Some(40.0)].into_iter(),
            0.5,
            4,
        );
        let got: Vec<_> = got.iter().collect();
        assert_eq!(got, [Some(10.0), Some(15.0), Some(15.0), Some(27.5)]);
    }
}
