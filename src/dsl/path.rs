//! JSON paths for error messages (`pipeline[2].$group.total`) and document field paths
//! (`items.sku`, written `"$items.sku"` in expressions).

use std::fmt;

/// Where a value sits in the pipeline document; rendered in every DSL error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(String);

impl JsonPath {
    /// The root of a pipeline: `pipeline`.
    pub fn root() -> Self {
        JsonPath("pipeline".to_string())
    }

    /// A root other than the pipeline, e.g. `sink.key` for an expression in a sink's options.
    pub fn named(root: &str) -> Self {
        JsonPath(root.to_string())
    }

    /// The path of an array element: `pipeline[3]`.
    pub fn index(&self, i: usize) -> Self {
        JsonPath(format!("{}[{i}]", self.0))
    }

    /// The path of an object member: `pipeline[3].$group`.
    pub fn key(&self, k: &str) -> Self {
        JsonPath(format!("{}.{k}", self.0))
    }

    /// An error at this path.
    pub fn err(&self, message: impl Into<String>) -> crate::Error {
        crate::Error::pipeline(self, message)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A dotted path to a field inside a document, e.g. `customer.address.city`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    /// Parses a dotted path as MongoDB accepts it: non-empty segments, no leading `$`.
    pub fn parse(s: &str, at: &JsonPath) -> crate::Result<Self> {
        if s.is_empty() {
            return Err(at.err("field path must not be empty"));
        }
        let parts: Vec<String> = s.split('.').map(str::to_string).collect();
        if parts.iter().any(String::is_empty) {
            return Err(at.err(format!("field path \"{s}\" has an empty segment")));
        }
        if parts.iter().any(|p| p.starts_with('$')) {
            return Err(at.err(format!(
                "field path \"{s}\" must not contain a segment starting with '$'"
            )));
        }
        Ok(FieldPath(parts))
    }

    /// The path's segments, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The first segment (the top-level field).
    pub fn head(&self) -> &str {
        &self.0[0]
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_paths() {
        let p = JsonPath::root().index(1).key("$group").key("total");
        assert_eq!(p.to_string(), "pipeline[1].$group.total");
    }

    #[test]
    fn field_paths_reject_empty_and_dollar_segments() {
        let at = JsonPath::root();
        assert_eq!(
            FieldPath::parse("a.b", &at).unwrap().segments(),
            &["a".to_string(), "b".to_string()]
        );
        assert!(FieldPath::parse("a..b", &at).is_err());
        assert!(FieldPath::parse("", &at).is_err());
        assert!(FieldPath::parse("a.$b", &at).is_err());
    }
}
