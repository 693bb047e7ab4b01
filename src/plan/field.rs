//! Field paths resolved against the schema of the plan they read from.
//!
//! A top-level field is a column; `a.b.c` descends through struct columns with `get_field`. A
//! field the schema does not have is *missing*, which the columnar engine represents as a
//! typed `NULL` (see the README's semantic differences).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::{Expr, lit};

use crate::Result;
use crate::dsl::{FieldPath, JsonPath};

/// The expression reading `path`, and its Arrow type (`Null` when missing).
pub fn resolve(schema: &DFSchema, path: &FieldPath, at: &JsonPath) -> Result<(Expr, DataType)> {
    let segments = path.segments();
    let Some((_, field)) = schema
        .qualified_field_with_unqualified_name(&segments[0])
        .ok()
    else {
        return Ok((lit(ScalarValue::Null), DataType::Null));
    };
    let mut expr = Expr::Column(Column::from_name(&segments[0]));
    let mut ty = field.data_type().clone();
    for (depth, seg) in segments.iter().enumerate().skip(1) {
        match &ty {
            DataType::Struct(fields) => match fields.iter().find(|f| f.name() == seg) {
                Some(f) => {
                    ty = f.data_type().clone();
                    expr = get_field(expr, seg.as_str());
                }
                None => return Ok((lit(ScalarValue::Null), DataType::Null)),
            },
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
                return Err(at.err(format!(
                    "field path \"{path}\" goes through the array \"{}\"; paths through arrays are not supported yet",
                    segments[..depth].join(".")
                )));
            }
            // A scalar has no sub-fields: the path is missing.
            _ => return Ok((lit(ScalarValue::Null), DataType::Null)),
        }
    }
    Ok((expr, ty))
}
