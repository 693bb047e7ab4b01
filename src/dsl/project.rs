//! Projection specifications: the tree of fields that `$project`, `$addFields` / `$set` and
//! `$unset` keep, drop or compute. Dotted keys (`"a.b": 1`) and nested objects
//! (`{"a": {"b": 1}}`) build the same tree.

use indexmap::IndexMap;
use serde_json::Value;

use super::expression::Expression;
use super::path::{FieldPath, JsonPath};
use crate::Result;

/// What happens to one field of a projection.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Keep the field (`1` / `true`).
    Include,
    /// Drop the field (`0` / `false`).
    Exclude,
    /// Set the field to an expression's value.
    Computed(Expression),
    /// Descend into a sub-document.
    Nested(Tree),
}

/// An ordered set of projected fields.
pub type Tree = IndexMap<String, Node>;

/// Whether a `$project` keeps only what it names or drops what it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Inclusion,
    Exclusion,
}

/// A parsed `$project`.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub mode: Mode,
    pub tree: Tree,
}

/// How the leaves of a spec are read: `$project` reads `1`/`0` as include/exclude;
/// `$addFields` reads every leaf as an expression.
#[derive(Clone, Copy, PartialEq)]
enum Leaves {
    Project,
    AddFields,
}

impl Projection {
    /// Parses a `$project` specification.
    pub fn parse(v: &Value, at: &JsonPath) -> Result<Projection> {
        let tree = parse_tree(v, at, Leaves::Project)?;
        if tree.is_empty() {
            return Err(at.err("$project requires at least one field"));
        }
        let mut includes = false;
        let mut first_exclude: Option<String> = None;
        visit(&tree, "", &mut |name, node| match node {
            Node::Include | Node::Computed(_) => includes = true,
            Node::Exclude if name != "_id" => {
                first_exclude.get_or_insert_with(|| name.to_string());
            }
            _ => {}
        });
        let mode = match (includes, first_exclude) {
            (true, Some(ex)) => {
                return Err(at.err(format!(
                    "cannot exclude \"{ex}\" in an inclusion projection (only _id may be excluded there)"
                )));
            }
            (true, None) => Mode::Inclusion,
            (false, _) => Mode::Exclusion,
        };
        Ok(Projection { mode, tree })
    }
}

/// Parses the document of `$addFields` / `$set`: every leaf is an expression.
pub fn parse_add_fields(v: &Value, at: &JsonPath) -> Result<Tree> {
    let tree = parse_tree(v, at, Leaves::AddFields)?;
    if tree.is_empty() {
        return Err(at.err("expects at least one field"));
    }
    Ok(tree)
}

/// Parses `$unset`: a field path or an array of them, as an exclusion tree.
pub fn parse_unset(v: &Value, at: &JsonPath) -> Result<Tree> {
    let names: Vec<(String, JsonPath)> = match v {
        Value::String(s) => vec![(s.clone(), at.clone())],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok((s.clone(), at.index(i))),
                _ => Err(at.index(i).err("$unset expects field names (strings)")),
            })
            .collect::<Result<_>>()?,
        _ => return Err(at.err("$unset expects a field name or a non-empty array of field names")),
    };
    let mut tree = Tree::new();
    for (name, here) in names {
        let path = FieldPath::parse(&name, &here)?;
        insert(&mut tree, path.segments(), Node::Exclude, &here)?;
    }
    Ok(tree)
}

/// A `$set` tree assigning each expression to its path (for stages that write fields, such as
/// `$unwind`).
pub fn assignments(sets: Vec<(FieldPath, Expression)>, at: &JsonPath) -> Result<Tree> {
    let mut tree = Tree::new();
    for (path, e) in sets {
        insert(&mut tree, path.segments(), Node::Computed(e), at)?;
    }
    Ok(tree)
}

fn parse_tree(v: &Value, at: &JsonPath, leaves: Leaves) -> Result<Tree> {
    let Value::Object(map) = v else {
        return Err(at.err("expects a document (an object) of fields"));
    };
    let mut tree = Tree::new();
    for (key, value) in map {
        let here = at.key(key);
        let path = FieldPath::parse(key, &here)?;
        let node = parse_node(value, &here, leaves)?;
        insert(&mut tree, path.segments(), node, &here)?;
    }
    Ok(tree)
}

fn parse_node(v: &Value, at: &JsonPath, leaves: Leaves) -> Result<Node> {
    match (v, leaves) {
        (Value::Bool(b), Leaves::Project) => Ok(if *b { Node::Include } else { Node::Exclude }),
        (Value::Number(n), Leaves::Project) => Ok(if n.as_f64() == Some(0.0) {
            Node::Exclude
        } else {
            Node::Include
        }),
        (Value::Object(map), _) if !map.is_empty() && !map.keys().any(|k| k.starts_with('$')) => {
            Ok(Node::Nested(parse_tree(v, at, leaves)?))
        }
        (Value::Object(map), Leaves::Project) if map.is_empty() => {
            Err(at.err("an empty object is not a valid projection value"))
        }
        _ => Ok(Node::Computed(Expression::parse(v, at)?)),
    }
}

/// Inserts `node` at the dotted path `segments`, creating nested trees on the way.
fn insert(tree: &mut Tree, segments: &[String], node: Node, at: &JsonPath) -> Result<()> {
    let (first, rest) = segments.split_first().expect("field paths are non-empty");
    if rest.is_empty() {
        match (tree.get_mut(first), node) {
            (None, node) => {
                tree.insert(first.clone(), node);
            }
            (Some(Node::Nested(existing)), Node::Nested(more)) => {
                for (k, v) in more {
                    insert(existing, std::slice::from_ref(&k), v, at)?;
                }
            }
            _ => return Err(at.err(format!("path collision at \"{first}\""))),
        }
        return Ok(());
    }
    let entry = tree
        .entry(first.clone())
        .or_insert_with(|| Node::Nested(Tree::new()));
    match entry {
        Node::Nested(sub) => insert(sub, rest, node, at),
        _ => Err(at.err(format!("path collision at \"{first}\""))),
    }
}

fn visit(tree: &Tree, prefix: &str, f: &mut impl FnMut(&str, &Node)) {
    for (k, node) in tree {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match node {
            Node::Nested(sub) => visit(sub, &name, f),
            other => f(&name, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at() -> JsonPath {
        JsonPath::root().index(0).key("$project")
    }

    #[test]
    fn modes() {
        let p = Projection::parse(&json!({"a": 1, "_id": 0}), &at()).unwrap();
        assert_eq!(p.mode, Mode::Inclusion);
        let p = Projection::parse(&json!({"a": 0, "b.c": false}), &at()).unwrap();
        assert_eq!(p.mode, Mode::Exclusion);
        let p = Projection::parse(&json!({"_id": 0}), &at()).unwrap();
        assert_eq!(p.mode, Mode::Exclusion);
        let p = Projection::parse(&json!({"t": {"$add": ["$a", 1]}}), &at()).unwrap();
        assert_eq!(p.mode, Mode::Inclusion);
    }

    #[test]
    fn dotted_and_nested_forms_build_the_same_tree() {
        let a = Projection::parse(&json!({"x.y": 1, "x.z": 1}), &at()).unwrap();
        let b = Projection::parse(&json!({"x": {"y": 1, "z": 1}}), &at()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn errors() {
        let e = Projection::parse(&json!({"a": 1, "b": 0}), &at()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pipeline[0].$project: cannot exclude \"b\" in an inclusion projection (only _id may be excluded there)"
        );
        let e = Projection::parse(&json!({"a": 1, "a.b": 1}), &at()).unwrap_err();
        assert!(e.to_string().contains("path collision"), "{e}");
        assert!(Projection::parse(&json!({}), &at()).is_err());
        assert!(parse_unset(&json!([1]), &at()).is_err());
    }

    #[test]
    fn add_fields_leaves_are_expressions() {
        let t = parse_add_fields(&json!({"one": 1}), &at()).unwrap();
        assert_eq!(t["one"], Node::Computed(Expression::Literal(json!(1))));
    }
}
