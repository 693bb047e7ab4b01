//! `mongo_array_to_object(keys, values)`: `$arrayToObject`, a document whose field names are
//! data. It cannot be a struct (a struct's fields are fixed when planning), so it is an Arrow
//! map from names to values, which JSON output writes as an object. A repeated name keeps its
//! first position and takes its last value, as MongoDB does; a null name is an error.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, MapArray, StringArray, StructArray, UInt32Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DataFusionError, Result as DFResult, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The function.
pub fn udf() -> Arc<ScalarUDF> {
    static UDF: std::sync::LazyLock<Arc<ScalarUDF>> = std::sync::LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(ArrayToObject {
            signature: Signature::any(2, Volatility::Immutable),
        }))
    });
    UDF.clone()
}

/// The map type for values of `value`.
pub fn map_type(value: &DataType) -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(entry_fields(value)),
            false,
        )),
        false,
    )
}

fn entry_fields(value: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", value.clone(), true),
    ])
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayToObject {
    signature: Signature,
}

impl ScalarUDFImpl for ArrayToObject {
    fn name(&self) -> &str {
        "mongo_array_to_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DFResult<DataType> {
        match (&args[0], &args[1]) {
            (DataType::List(k), DataType::List(v)) if k.data_type() == &DataType::Utf8 => {
                Ok(map_type(v.data_type()))
            }
            (k, v) => exec_err!(
                "mongo_array_to_object expects a list of names and a list of values, got {k} and {v}"
            ),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array(build(&arrays[0], &arrays[1])?))
    }
}

fn build(keys: &ArrayRef, values: &ArrayRef) -> DFResult<ArrayRef> {
    let (keys, values) = (keys.as_list::<i32>(), values.as_list::<i32>());
    let names = keys.values().as_string::<i32>();
    let mut picked: Vec<u32> = Vec::new();
    let mut picked_names: Vec<&str> = Vec::new();
    let mut offsets = vec![0i32];
    for row in 0..keys.len() {
        if !keys.is_null(row) {
            let (k0, k1) = (
                keys.value_offsets()[row] as usize,
                keys.value_offsets()[row + 1] as usize,
            );
            let v0 = values.value_offsets()[row] as usize;
            let mut slot: HashMap<&str, usize> = HashMap::new();
            let start = picked.len();
            for i in k0..k1 {
                if names.is_null(i) {
                    return Err(DataFusionError::Execution(
                        "$arrayToObject: a field name is null".into(),
                    ));
                }
                let name = names.value(i);
                let value_index = (v0 + (i - k0)) as u32;
                match slot.get(name) {
                    Some(&at) => picked[start + at] = value_index,
                    None => {
                        slot.insert(name, picked.len() - start);
                        picked.push(value_index);
                        picked_names.push(name);
                    }
                }
            }
        }
        offsets.push(picked.len() as i32);
    }
    let value_type = values.value_type();
    let taken = take(values.values().as_ref(), &UInt32Array::from(picked), None)?;
    let entries = StructArray::try_new(
        entry_fields(&value_type),
        vec![Arc::new(StringArray::from(picked_names)), taken],
        None,
    )?;
    let map = MapArray::try_new(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(entry_fields(&value_type)),
            false,
        )),
        OffsetBuffer::new(offsets.into()),
        entries,
        keys.nulls().cloned(),
        false,
    )?;
    Ok(Arc::new(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    #[test]
    fn last_value_wins_in_first_position() {
        let keys = datafusion::arrow::array::ListArray::new(
            Arc::new(Field::new_list_field(DataType::Utf8, true)),
            OffsetBuffer::new(vec![0, 3].into()),
            Arc::new(StringArray::from(vec!["a", "b", "a"])),
            None,
        );
        let values = datafusion::arrow::array::ListArray::new(
            Arc::new(Field::new_list_field(DataType::Int64, true)),
            OffsetBuffer::new(vec![0, 3].into()),
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            None,
        );
        let out = build(
            &(Arc::new(keys) as ArrayRef),
            &(Arc::new(values) as ArrayRef),
        )
        .unwrap();
        assert_eq!(
            datafusion::arrow::util::display::array_value_to_string(&out, 0).unwrap(),
            "{a: 3, b: 2}"
        );
    }
}
