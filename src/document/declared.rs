//! Declared schemas: a job file may state its documents' shape instead of having it inferred.
//!
//! The declaration mirrors a document: a type name for a scalar field, an object for a
//! sub-document, a one-element array for an array of that element.
//!
//! ```json
//! {"orderId": "string", "orderValue": "double", "paid": "bool",
//!  "shipping": {"city": "string"}, "items": [{"sku": "string", "qty": "long"}],
//!  "createdAt": "timestamp"}
//! ```
//!
//! | name                         | Arrow type                          |
//! |------------------------------|-------------------------------------|
//! | `string`                     | `Utf8`                              |
//! | `long`, `int`                | `Int64`                             |
//! | `double`, `number`           | `Float64`                           |
//! | `bool`, `boolean`            | `Boolean`                           |
//! | `timestamp`, `date`          | `Timestamp(ms, UTC)` (ISO-8601 text)|
//!
//! Fields a document has but the declaration does not are ignored; declared fields a document
//! lacks are missing (null). A value of the wrong type is an input error naming its line.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use serde_json::Value;

use crate::{Error, Result};

/// Parses the declaration at JSON path `root` (e.g. `source.schema`) of `context` (the job's
/// name); errors read `context: root.field: problem`.
pub fn parse_schema(v: &Value, context: &str, root: &str) -> Result<Schema> {
    match v {
        Value::Object(_) => match data_type(v, root, context)? {
            DataType::Struct(fields) => Ok(Schema::new(fields)),
            _ => unreachable!("an object declares a struct"),
        },
        _ => Err(Error::config(
            context,
            format!(
                "{root}: expected an object mapping field names to types, e.g. {{\"orderValue\": \"double\"}}"
            ),
        )),
    }
}

fn data_type(v: &Value, at: &str, context: &str) -> Result<DataType> {
    let bad = |msg: String| Error::config(context, format!("{at}: {msg}"));
    match v {
        Value::String(name) => match name.as_str() {
            "string" => Ok(DataType::Utf8),
            "long" | "int" => Ok(DataType::Int64),
            "double" | "number" => Ok(DataType::Float64),
            "bool" | "boolean" => Ok(DataType::Boolean),
            "timestamp" | "date" => Ok(DataType::Timestamp(
                TimeUnit::Millisecond,
                Some("UTC".into()),
            )),
            other => Err(bad(format!(
                "unknown type \"{other}\" (expected string, long, double, bool, timestamp, an object or a one-element array)"
            ))),
        },
        Value::Object(map) => {
            if map.is_empty() {
                return Err(bad("a sub-document must declare at least one field".into()));
            }
            let fields: Fields = map
                .iter()
                .map(|(k, t)| {
                    Ok(Field::new(
                        k,
                        data_type(t, &format!("{at}.{k}"), context)?,
                        true,
                    ))
                })
                .collect::<Result<Vec<_>>>()?
                .into();
            Ok(DataType::Struct(fields))
        }
        Value::Array(items) if items.len() == 1 => {
            let elem = data_type(&items[0], &format!("{at}[0]"), context)?;
            Ok(DataType::List(Arc::new(Field::new_list_field(elem, true))))
        }
        _ => Err(bad(
            "expected a type name, an object of fields or a one-element array".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn declarations_mirror_documents() {
        let s = parse_schema(
            &json!({"a": "long", "b": {"c": "string"}, "t": [{"q": "double"}], "when": "timestamp"}),
            "job.json",
            "schema",
        )
        .unwrap();
        let names: Vec<_> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["a", "b", "t", "when"]);
        assert_eq!(s.field(0).data_type(), &DataType::Int64);
        let DataType::List(elem) = s.field(2).data_type() else {
            panic!("list")
        };
        assert!(matches!(elem.data_type(), DataType::Struct(f) if f.len() == 1));
    }

    #[test]
    fn bad_declarations_name_the_field() {
        let e = parse_schema(&json!({"a": {"b": "strng"}}), "job.json", "schema").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("job.json: schema.a.b: unknown type \"strng\""),
            "{e}"
        );
        let e = parse_schema(&json!({"a": ["long", "string"]}), "job.json", "schema").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("job.json: schema.a: expected a type name"),
            "{e}"
        );
        assert!(parse_schema(&json!(["long"]), "job.json", "schema").is_err());
    }
}
