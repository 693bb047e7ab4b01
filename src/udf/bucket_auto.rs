//! `mongo_bucket_auto(key, buckets)`: the bucket number of each document for `$bucketAuto`,
//! a window function over all documents in key order.
//!
//! MongoDB's rule: buckets of round(n / buckets) documents (at least 1), filled in key order;
//! documents with the same key as a bucket's last one join it; the last bucket takes every
//! document left. So there may be fewer buckets than asked, never more.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{DataFusionError, Result as DFResult, ScalarValue};
use datafusion::logical_expr::{Signature, Volatility, WindowUDF};

use super::KernelUdwf;

/// The function.
pub fn udwf() -> Arc<WindowUDF> {
    static UDWF: LazyLock<Arc<WindowUDF>> = LazyLock::new(|| {
        Arc::new(WindowUDF::new_from_impl(KernelUdwf::new(
            "mongo_bucket_auto",
            Signature::any(2, Volatility::Immutable),
            DataType::Int64,
            kernel,
        )))
    });
    UDWF.clone()
}

fn kernel(values: &[ArrayRef], num_rows: usize) -> DFResult<ArrayRef> {
    let buckets = match values[1].as_primitive_opt::<Int64Type>() {
        Some(b) if !b.is_empty() && b.value(0) > 0 => b.value(0) as usize,
        _ => {
            return Err(DataFusionError::Execution(
                "$bucketAuto buckets must be a positive integer".into(),
            ));
        }
    };
    let keys = (0..num_rows)
        .map(|i| ScalarValue::try_from_array(&values[0], i))
        .collect::<DFResult<Vec<_>>>()?;
    Ok(Arc::new(Int64Array::from(assign(&keys, buckets))))
}

/// Bucket numbers (from 0) for keys in ascending order.
fn assign<T: PartialEq>(keys: &[T], buckets: usize) -> Vec<i64> {
    let n = keys.len();
    let size = ((n as f64 / buckets as f64).round() as usize).max(1);
    let mut out = Vec::with_capacity(n);
    let (mut bucket, mut count) = (0usize, 0usize);
    let mut i = 0;
    while i < n {
        out.push(bucket as i64);
        count += 1;
        if count >= size && bucket + 1 < buckets {
            // Equal keys stay together.
            while i + 1 < n && keys[i + 1] == keys[i] {
                i += 1;
                out.push(bucket as i64);
            }
            bucket += 1;
            count = 0;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_like_mongodb() {
        let b = |keys: &[i32], n| assign(keys, n);
        assert_eq!(
            b(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 3),
            [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
        );
        assert_eq!(
            b(&[1, 1, 1, 1, 2, 3, 4, 5, 6, 7], 3),
            [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
        );
        assert_eq!(b(&[5, 5, 5], 2), [0, 0, 0]);
        assert_eq!(b(&[1, 2, 3], 5), [0, 1, 2]);
        assert_eq!(b(&[1, 2, 3, 4, 5, 6, 7], 2), [0, 0, 0, 0, 1, 1, 1]);
    }
}
