//! Schema inference for JSON documents, with Fluxion's widening rule.
//!
//! | values seen for one field          | Arrow type                                   |
//! |------------------------------------|----------------------------------------------|
//! | only integers                      | `Int64`                                      |
//! | integers and doubles               | `Float64`                                    |
//! | only strings / booleans            | `Utf8` / `Boolean`                           |
//! | only objects                       | `Struct` of the union of their fields        |
//! | only arrays                        | `List` of the widened element type           |
//! | anything else mixed                | `Utf8`: strings as they are, other values as their JSON text |
//! | only nulls                         | `Null`                                       |
//! | only extended JSON dates (`{"$date": …}`) | `Timestamp(ms, UTC)` (see `document::date`) |
//!
//! ISO-8601 *strings* stay strings, as they do in MongoDB; declare the field as `date` to read
//! them as dates.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
use indexmap::IndexMap;
use serde_json::Value;

use super::date::date_type;

/// The inferred shape of one field's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Null,
    Bool,
    Int,
    Float,
    String,
    /// Extended JSON dates, `{"$date": …}`.
    Date,
    Object(IndexMap<String, Shape>),
    Array(Box<Shape>),
    /// Conflicting types, stored as text: strings as they are, other values as their JSON
    /// text.
    Text,
}

impl Shape {
    /// The shape of one JSON value.
    pub fn of(v: &Value) -> Shape {
        match v {
            Value::Null => Shape::Null,
            Value::Bool(_) => Shape::Bool,
            Value::Number(n) if n.is_i64() => Shape::Int,
            Value::Number(_) => Shape::Float,
            Value::String(_) => Shape::String,
            Value::Array(items) => Shape::Array(Box::new(
                items.iter().map(Shape::of).fold(Shape::Null, Shape::merge),
            )),
            Value::Object(map) if map.is_empty() => Shape::Text,
            Value::Object(map) if map.len() == 1 && map.contains_key("$date") => Shape::Date,
            Value::Object(map) => {
                Shape::Object(map.iter().map(|(k, v)| (k.clone(), Shape::of(v))).collect())
            }
        }
    }

    /// The shape of one document (an object, even an empty one; other values as [`Shape::of`]).
    pub fn of_document(v: &Value) -> Shape {
        match v {
            Value::Object(map) => {
                Shape::Object(map.iter().map(|(k, v)| (k.clone(), Shape::of(v))).collect())
            }
            other => Shape::of(other),
        }
    }

    /// The shape that holds the values of both `self` and `other`.
    pub fn merge(self, other: Shape) -> Shape {
        use Shape::*;
        match (self, other) {
            (Null, x) | (x, Null) => x,
            (Bool, Bool) => Bool,
            (Int, Int) => Int,
            (Int | Float, Int | Float) => Float,
            (String, String) => String,
            (Date, Date) => Date,
            (Object(mut a), Object(b)) => {
                for (k, v) in b {
                    match a.get_mut(&k) {
                        Some(old) => *old = std::mem::replace(old, Null).merge(v),
                        None => {
                            a.insert(k, v);
                        }
                    }
                }
                Object(a)
            }
            (Array(a), Array(b)) => Array(Box::new(a.merge(*b))),
            _ => Text,
        }
    }

    /// The shape of a declared Arrow type (the inverse of [`Shape::data_type`]).
    pub fn of_type(ty: &DataType) -> Shape {
        match ty {
            DataType::Null => Shape::Null,
            DataType::Boolean => Shape::Bool,
            DataType::Int64 => Shape::Int,
            DataType::Float64 => Shape::Float,
            DataType::Timestamp(..) => Shape::Date,
            DataType::Struct(fields) => Shape::Object(
                fields
                    .iter()
                    .map(|f| (f.name().clone(), Shape::of_type(f.data_type())))
                    .collect(),
            ),
            DataType::List(f) => Shape::Array(Box::new(Shape::of_type(f.data_type()))),
            _ => Shape::String,
        }
    }

    /// The Arrow type for this shape.
    pub fn data_type(&self) -> DataType {
        match self {
            Shape::Null => DataType::Null,
            Shape::Bool => DataType::Boolean,
            Shape::Int => DataType::Int64,
            Shape::Float => DataType::Float64,
            Shape::String | Shape::Text => DataType::Utf8,
            Shape::Date => date_type(),
            Shape::Object(fields) => DataType::Struct(fields_of(fields)),
            Shape::Array(e) => {
                let elem = match e.as_ref() {
                    // An array that was always empty: give it a concrete element type.
                    Shape::Null => DataType::Utf8,
                    other => other.data_type(),
                };
                DataType::List(Arc::new(Field::new_list_field(elem, true)))
            }
        }
    }
}

fn fields_of(fields: &IndexMap<String, Shape>) -> Fields {
    fields
        .iter()
        .map(|(k, s)| Field::new(k, s.data_type(), true))
        .collect()
}

/// The schema for documents of shape `top` (an object shape; anything else is empty).
pub fn schema_of(top: &Shape) -> Schema {
    match top {
        Shape::Object(fields) => Schema::new(fields_of(fields)),
        _ => Schema::empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extended_json_dates_are_timestamps() {
        let s = infer(&[
            json!({"at": {"$date": "2026-03-01T10:00:00Z"}}),
            json!({"at": {"$date": 5}}),
        ]);
        assert_eq!(
            schema_of(&s).field(0).data_type(),
            &super::super::date::date_type()
        );
        let mixed = infer(&[json!({"at": {"$date": 5}}), json!({"at": "soon"})]);
        assert_eq!(schema_of(&mixed).field(0).data_type(), &DataType::Utf8);
    }

    fn infer(docs: &[Value]) -> Shape {
        docs.iter().map(Shape::of).fold(Shape::Null, Shape::merge)
    }

    #[test]
    fn widens_numbers_and_merges_objects_in_first_seen_order() {
        let s = infer(&[
            json!({"a": 1, "b": {"x": 1}}),
            json!({"c": true, "a": 2.5, "b": {"y": "s"}}),
        ]);
        let schema = schema_of(&s);
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(schema.field(0).data_type(), &DataType::Float64);
        let DataType::Struct(inner) = schema.field(1).data_type() else {
            panic!("struct")
        };
        assert_eq!(inner.len(), 2);
    }

    #[test]
    fn conflicting_types_become_json_text() {
        let s = infer(&[json!({"v": 1}), json!({"v": "one"})]);
        assert_eq!(schema_of(&s).field(0).data_type(), &DataType::Utf8);
        let s = infer(&[json!({"v": {"k": 1}}), json!({"v": 3})]);
        assert_eq!(
            s,
            Shape::Object([("v".to_string(), Shape::Text)].into_iter().collect())
        );
    }

    #[test]
    fn arrays_widen_their_elements() {
        let s = infer(&[json!({"t": [1, 2]}), json!({"t": [2.5]}), json!({"t": []})]);
        let DataType::List(f) = schema_of(&s).field(0).data_type().clone() else {
            panic!("list")
        };
        assert_eq!(f.data_type(), &DataType::Float64);
    }
}
