//! Fluxion's own scalar functions, for what DataFusion's built-ins cannot express with
//! MongoDB's meaning: calendar arithmetic in a time zone (`$dateTrunc` with bins, `$dateAdd`,
//! `$dateDiff`, `$dateFromParts`), date parsing that can fail softly (`$dateFromString`
//! with `onError`), and every match of a regular expression with its captures
//! (`$regexFind`, `$regexFindAll`), integer arithmetic that stops on overflow, documents with data for field names (`$arrayToObject`);
//! and window functions that carry a value along a
//! partition (`$expMovingAvg`, linear `$fill`, `$bucketAuto`'s buckets). One file per function; [`calendar`] holds what the date
//! functions share.
//!
//! Each is a plain columnar kernel over Arrow arrays, wrapped by [`KernelUdf`]. They are also
//! registered in the engine's session, so SQL can call them (`mongo_date_add(ts, 'month', 1,
//! 'UTC')`).

pub mod array_to_object;
pub mod bucket_auto;
pub mod calendar;
pub mod checked_arith;
pub mod compensated_sum;
pub mod date_add;
pub mod date_diff;
pub mod date_from_parts;
pub mod date_parse;
pub mod date_trunc;
pub mod exp_moving_avg;
pub mod linear_fill;
pub mod regex_find;
pub mod rule_decision;
pub mod rules_fired;

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result as DFResult;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    ColumnarValue, Expr, PartitionEvaluator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility, WindowUDFImpl,
};

/// A kernel: every argument as an array of the batch's length, in; the result array, out.
pub type Kernel = fn(&[ArrayRef]) -> DFResult<ArrayRef>;

/// A scalar function defined by its argument types, result type and kernel.
#[derive(Debug)]
pub struct KernelUdf {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    kernel: Kernel,
}

impl KernelUdf {
    /// A function taking exactly `args`.
    pub fn new(name: &'static str, args: Vec<DataType>, returns: DataType, kernel: Kernel) -> Self {
        KernelUdf {
            name,
            signature: Signature::exact(args, Volatility::Immutable),
            returns,
            kernel,
        }
    }
}

// Functions are identified by name (kernel pointers are not comparable).
impl PartialEq for KernelUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for KernelUdf {}

impl std::hash::Hash for KernelUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for KernelUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DFResult<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = (self.kernel)(&arrays)?;
        if scalar {
            // Constant arguments: hand back a scalar so DataFusion can fold the call.
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&out, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(out))
    }
}

/// A window kernel: the arguments over one whole partition (in the window's order), in; one
/// value per row, out.
pub type WindowKernel = fn(&[ArrayRef], usize) -> DFResult<ArrayRef>;

/// A window function defined by its signature, result type and partition kernel.
#[derive(Debug)]
pub struct KernelUdwf {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    kernel: WindowKernel,
}

impl KernelUdwf {
    /// A window function over whole partitions.
    pub fn new(
        name: &'static str,
        signature: Signature,
        returns: DataType,
        kernel: WindowKernel,
    ) -> Self {
        KernelUdwf {
            name,
            signature,
            returns,
            kernel,
        }
    }
}

impl PartialEq for KernelUdwf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for KernelUdwf {}

impl std::hash::Hash for KernelUdwf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl WindowUDFImpl for KernelUdwf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> DFResult<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(WholePartition(self.kernel)))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> DFResult<FieldRef> {
        Ok(Arc::new(Field::new(
            field_args.name(),
            self.returns.clone(),
            true,
        )))
    }
}

/// Evaluates a [`WindowKernel`] once per partition.
#[derive(Debug)]
struct WholePartition(WindowKernel);

impl PartitionEvaluator for WholePartition {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> DFResult<ArrayRef> {
        (self.0)(values, num_rows)
    }
}

/// Every function in this module, for registration in a session.
pub fn all() -> Vec<Arc<ScalarUDF>> {
    vec![
        date_trunc::udf(),
        date_add::udf(),
        date_diff::udf(),
        date_from_parts::udf(),
        date_from_parts::iso_udf(),
        date_parse::udf(),
        regex_find::udf(),
        array_to_object::udf(),
        checked_arith::add(),
        checked_arith::subtract(),
        checked_arith::multiply(),
    ]
}

/// A call of `udf` on `args`.
pub fn call(udf: Arc<ScalarUDF>, args: Vec<Expr>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(udf, args))
}

/// Argument accessors for kernels (arguments arrive with the exact types of the signature).
pub(crate) mod args {
    use datafusion::arrow::array::{
        ArrayAccessor, ArrayRef, AsArray, BooleanArray, Int64Array, StringArray,
        TimestampMillisecondArray,
    };
    use datafusion::arrow::datatypes::{Int64Type, TimestampMillisecondType};

    pub fn dates(a: &ArrayRef) -> &TimestampMillisecondArray {
        a.as_primitive::<TimestampMillisecondType>()
    }

    pub fn ints(a: &ArrayRef) -> &Int64Array {
        a.as_primitive::<Int64Type>()
    }

    pub fn strings(a: &ArrayRef) -> &StringArray {
        a.as_string::<i32>()
    }

    pub fn bools(a: &ArrayRef) -> &BooleanArray {
        a.as_boolean()
    }

    /// The value at `i`, or `None` when null.
    pub fn get<A: ArrayAccessor>(a: A, i: usize) -> Option<A::Item> {
        (!a.is_null(i)).then(|| a.value(i))
    }

    /// The result type of date-valued functions.
    pub fn date_array(values: Vec<Option<i64>>) -> ArrayRef {
        std::sync::Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC"))
    }
}
