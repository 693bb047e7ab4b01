//! `$sort`: an ordered list of keys, each ascending (`1`) or descending (`-1`).

use serde_json::Value;

use super::path::{FieldPath, JsonPath};
use crate::Result;

/// One sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub field: FieldPath,
    pub ascending: bool,
}

/// Parses the document of a `$sort` stage.
pub fn parse(v: &Value, at: &JsonPath) -> Result<Vec<SortKey>> {
    let Value::Object(map) = v else {
        return Err(at.err("$sort expects a document such as {\"field\": 1}"));
    };
    if map.is_empty() {
        return Err(at.err("$sort requires at least one key"));
    }
    map.iter()
        .map(|(k, dir)| {
            let here = at.key(k);
            let ascending = match dir.as_i64() {
                Some(1) => true,
                Some(-1) => false,
                _ => return Err(here.err("sort direction must be 1 or -1")),
            };
            Ok(SortKey {
                field: FieldPath::parse(k, &here)?,
                ascending,
            })
        })
        .collect()
}
