//! `$unwind`: `"$path"` or `{"path": "$path", "includeArrayIndex": "name",
//! "preserveNullAndEmptyArrays": bool}`.

use serde_json::Value;

use super::path::{FieldPath, JsonPath};
use crate::Result;

/// A parsed `$unwind` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Unwind {
    /// The array to unwind.
    pub path: FieldPath,
    /// A field to receive each element's index (null for a preserved document).
    pub include_array_index: Option<FieldPath>,
    /// Keep documents whose array is null, missing or empty (once, without the field).
    pub preserve_null_and_empty: bool,
}

impl Unwind {
    /// Parses the operand of `$unwind`.
    pub fn parse(v: &Value, at: &JsonPath) -> Result<Unwind> {
        match v {
            Value::String(_) => Ok(Unwind {
                path: field_ref(v, at)?,
                include_array_index: None,
                preserve_null_and_empty: false,
            }),
            Value::Object(map) => {
                if let Some(k) = map.keys().find(|k| {
                    !matches!(
                        k.as_str(),
                        "path" | "includeArrayIndex" | "preserveNullAndEmptyArrays"
                    )
                }) {
                    return Err(at.key(k).err(format!(
                        "unknown $unwind option \"{k}\" (expected path, includeArrayIndex, preserveNullAndEmptyArrays)"
                    )));
                }
                let path = match map.get("path") {
                    Some(p) => field_ref(p, &at.key("path"))?,
                    None => {
                        return Err(at.err("$unwind requires a path, e.g. {\"path\": \"$items\"}"));
                    }
                };
                let include_array_index = match map.get("includeArrayIndex") {
                    None => None,
                    Some(Value::String(s)) if !s.starts_with('$') => {
                        Some(FieldPath::parse(s, &at.key("includeArrayIndex"))?)
                    }
                    Some(_) => {
                        return Err(at
                            .key("includeArrayIndex")
                            .err("expects a field name (a string not starting with '$')"));
                    }
                };
                let preserve_null_and_empty = match map.get("preserveNullAndEmptyArrays") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        return Err(at
                            .key("preserveNullAndEmptyArrays")
                            .err("expects true or false"));
                    }
                };
                Ok(Unwind {
                    path,
                    include_array_index,
                    preserve_null_and_empty,
                })
            }
            _ => Err(at.err("$unwind expects a field path (\"$items\") or an options document")),
        }
    }
}

fn field_ref(v: &Value, at: &JsonPath) -> Result<FieldPath> {
    match v {
        Value::String(s) if s.starts_with('$') && !s.starts_with("$$") => {
            FieldPath::parse(&s[1..], at)
        }
        _ => Err(at.err("expects a field path starting with '$', e.g. \"$items\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_forms() {
        let at = JsonPath::root().index(0).key("$unwind");
        let a = Unwind::parse(&json!("$items"), &at).unwrap();
        assert_eq!(a.path.to_string(), "items");
        let b = Unwind::parse(
            &json!({"path": "$a.b", "includeArrayIndex": "i", "preserveNullAndEmptyArrays": true}),
            &at,
        )
        .unwrap();
        assert!(b.preserve_null_and_empty);
        assert_eq!(b.include_array_index.unwrap().to_string(), "i");
    }

    #[test]
    fn errors_name_the_option() {
        let at = JsonPath::root().index(0).key("$unwind");
        let e = Unwind::parse(&json!("items"), &at).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pipeline[0].$unwind: expects a field path"),
            "{e}"
        );
        let e = Unwind::parse(&json!({"path": "$a", "preserve": true}), &at).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pipeline[0].$unwind.preserve: unknown $unwind option"),
            "{e}"
        );
        let e = Unwind::parse(&json!({"path": "$a", "includeArrayIndex": "$i"}), &at).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pipeline[0].$unwind.includeArrayIndex:"),
            "{e}"
        );
    }
}
