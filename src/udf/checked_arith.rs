//! `mongo_add_checked`, `mongo_subtract_checked`, `mongo_multiply_checked`: 64-bit integer
//! arithmetic that stops on overflow instead of wrapping around (DataFusion's `+ - *` wrap).
//! MongoDB turns an overflowing long into a double; a Fluxion column holds one type, so the
//! run stops with an error naming the operator rather than give a wrong number.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::ScalarUDF;

use super::KernelUdf;

fn make(name: &'static str, kernel: super::Kernel) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(KernelUdf::new(
        name,
        vec![DataType::Int64, DataType::Int64],
        DataType::Int64,
        kernel,
    )))
}

fn overflow(op: &str, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!(
        "integer overflow in {op}: {e} (MongoDB would give a double here; convert an operand with $toDouble)"
    ))
}

fn add_kernel(a: &[ArrayRef]) -> DFResult<ArrayRef> {
    numeric::add(&a[0], &a[1]).map_err(|e| overflow("$add", e))
}

fn subtract_kernel(a: &[ArrayRef]) -> DFResult<ArrayRef> {
    numeric::sub(&a[0], &a[1]).map_err(|e| overflow("$subtract", e))
}

fn multiply_kernel(a: &[ArrayRef]) -> DFResult<ArrayRef> {
    numeric::mul(&a[0], &a[1]).map_err(|e| overflow("$multiply", e))
}

/// Checked `a + b`.
pub fn add() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| make("mongo_add_checked", add_kernel));
    UDF.clone()
}

/// Checked `a - b`.
pub fn subtract() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| make("mongo_subtract_checked", subtract_kernel));
    UDF.clone()
}

/// Checked `a * b`.
pub fn multiply() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| make("mongo_multiply_checked", multiply_kernel));
    UDF.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(i64::MAX / 2), None]));
        let two: ArrayRef = Arc::new(Int64Array::from(vec![2, 2]));
        let ok = multiply_kernel(&[a.clone(), two]).unwrap();
        assert_eq!(ok.len(), 2);
        assert!(add_kernel(&[a.clone(), a.clone()]).is_ok());
        assert!(subtract_kernel(&[a.clone(), a.clone()]).is_ok());
        let three: ArrayRef = Arc::new(Int64Array::from(vec![3, 3]));
        let e = multiply_kernel(&[a, three]).unwrap_err();
        assert!(
            e.to_string().contains("integer overflow in $multiply"),
            "{e}"
        );
    }
}
