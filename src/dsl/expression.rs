//! Aggregation expressions (`"$price"`, `{"$add": ["$a", 1]}`, `{"$cond": …}`) as a typed AST.
//!
//! Parsing is purely syntactic: an operator is checked against [`OPERATORS`] for its name and
//! argument count, and named-argument forms (`{"$cond": {"if", "then", "else"}}`) are
//! normalised to positional arguments, so the planner sees one shape per operator. What an
//! operator *means* lives in `plan::expr`, one file per operator family.

use serde_json::Value;

use super::path::{FieldPath, JsonPath};
use crate::Result;

/// A parsed aggregation expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    /// A constant: null, boolean, number or string (and anything under `$literal`).
    Literal(Value),
    /// A field reference, `"$a.b"`.
    Field(FieldPath),
    /// A system variable, `"$$ROOT"`, `"$$CURRENT.a"`, `"$$NOW"`, `"$$REMOVE"`.
    Variable {
        name: String,
        path: Option<FieldPath>,
    },
    /// An array whose elements are expressions.
    Array(Vec<Expression>),
    /// A document whose values are expressions (field order kept).
    Document(Vec<(String, Expression)>),
    /// An operator applied to its (positional) arguments.
    Operator(Operator),
}

/// An operator call such as `{"$add": ["$a", 1]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    /// The operator's name including `$`, e.g. `$add`.
    pub name: &'static str,
    /// Its family, which decides which planner file compiles it.
    pub family: Family,
    /// Arguments in positional order.
    pub args: Vec<Expression>,
    /// Where the operator was written, for planner errors.
    pub path: JsonPath,
}

/// Operator families; each maps to one file under `plan/expr/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Arithmetic,
    Comparison,
    Boolean,
    Conditional,
    String,
}

/// How many arguments an operator takes.
#[derive(Debug, Clone, Copy)]
pub enum Arity {
    Exactly(usize),
    AtLeast(usize),
}

/// One entry of the operator table.
#[derive(Debug)]
pub struct OperatorSpec {
    pub name: &'static str,
    pub family: Family,
    pub arity: Arity,
    /// For operators that also accept an object of named arguments, the names in positional
    /// order (`$cond`: `if`, `then`, `else`).
    pub named: Option<&'static [&'static str]>,
}

const fn op(name: &'static str, family: Family, arity: Arity) -> OperatorSpec {
    OperatorSpec {
        name,
        family,
        arity,
        named: None,
    }
}

/// Every expression operator Fluxion knows. Adding one: a row here and a match arm in its
/// family's planner file.
pub static OPERATORS: &[OperatorSpec] = &[
    // arithmetic
    op("$add", Family::Arithmetic, Arity::AtLeast(0)),
    op("$subtract", Family::Arithmetic, Arity::Exactly(2)),
    op("$multiply", Family::Arithmetic, Arity::AtLeast(0)),
    op("$divide", Family::Arithmetic, Arity::Exactly(2)),
    op("$mod", Family::Arithmetic, Arity::Exactly(2)),
    op("$abs", Family::Arithmetic, Arity::Exactly(1)),
    // comparison
    op("$eq", Family::Comparison, Arity::Exactly(2)),
    op("$ne", Family::Comparison, Arity::Exactly(2)),
    op("$gt", Family::Comparison, Arity::Exactly(2)),
    op("$gte", Family::Comparison, Arity::Exactly(2)),
    op("$lt", Family::Comparison, Arity::Exactly(2)),
    op("$lte", Family::Comparison, Arity::Exactly(2)),
    op("$cmp", Family::Comparison, Arity::Exactly(2)),
    // boolean
    op("$and", Family::Boolean, Arity::AtLeast(0)),
    op("$or", Family::Boolean, Arity::AtLeast(0)),
    op("$not", Family::Boolean, Arity::Exactly(1)),
    // conditional
    OperatorSpec {
        name: "$cond",
        family: Family::Conditional,
        arity: Arity::Exactly(3),
        named: Some(&["if", "then", "else"]),
    },
    op("$ifNull", Family::Conditional, Arity::AtLeast(2)),
    // string
    op("$concat", Family::String, Arity::AtLeast(0)),
    op("$toUpper", Family::String, Arity::Exactly(1)),
    op("$toLower", Family::String, Arity::Exactly(1)),
];

/// Looks an operator up by name.
pub fn operator_spec(name: &str) -> Option<&'static OperatorSpec> {
    OPERATORS.iter().find(|s| s.name == name)
}

impl Expression {
    /// Parses the expression `v` found at `at`.
    pub fn parse(v: &Value, at: &JsonPath) -> Result<Expression> {
        match v {
            Value::String(s) if s.starts_with("$$") => parse_variable(&s[2..], at),
            Value::String(s) if s.starts_with('$') => {
                Ok(Expression::Field(FieldPath::parse(&s[1..], at)?))
            }
            Value::Array(items) => Ok(Expression::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Expression::parse(item, &at.index(i)))
                    .collect::<Result<_>>()?,
            )),
            Value::Object(map) => {
                let dollar_keys = map.keys().filter(|k| k.starts_with('$')).count();
                if dollar_keys == 0 {
                    return Ok(Expression::Document(
                        map.iter()
                            .map(|(k, v)| {
                                if k.contains('.') {
                                    return Err(at.key(k).err(format!(
                                        "field name \"{k}\" in a document expression must not contain '.'"
                                    )));
                                }
                                Ok((k.clone(), Expression::parse(v, &at.key(k))?))
                            })
                            .collect::<Result<_>>()?,
                    ));
                }
                if map.len() != 1 {
                    return Err(at.err(
                        "an expression object must have exactly one key, the operator (e.g. {\"$add\": [..]})",
                    ));
                }
                let (name, operand) = map.iter().next().expect("one key");
                parse_operator(name, operand, &at.key(name))
            }
            scalar => Ok(Expression::Literal(scalar.clone())),
        }
    }

    /// True for a constant `null` (or `$literal: null`).
    pub fn is_null_literal(&self) -> bool {
        matches!(self, Expression::Literal(Value::Null))
    }
}

fn parse_variable(rest: &str, at: &JsonPath) -> Result<Expression> {
    let (name, path) = match rest.split_once('.') {
        Some((n, p)) => (n, Some(FieldPath::parse(p, at)?)),
        None => (rest, None),
    };
    match name {
        "ROOT" | "CURRENT" | "NOW" | "REMOVE" => Ok(Expression::Variable {
            name: name.to_string(),
            path,
        }),
        "" => Err(at.err("variable name must not be empty")),
        other => Err(at.err(format!("unknown variable \"$${other}\""))),
    }
}

fn parse_operator(name: &str, operand: &Value, at: &JsonPath) -> Result<Expression> {
    if name == "$literal" {
        return Ok(Expression::Literal(operand.clone()));
    }
    let spec = operator_spec(name)
        .ok_or_else(|| at.err(format!("unknown expression operator \"{name}\"")))?;
    let args: Vec<Expression> = match (operand, spec.named) {
        (Value::Array(items), _) => items
            .iter()
            .enumerate()
            .map(|(i, v)| Expression::parse(v, &at.index(i)))
            .collect::<Result<_>>()?,
        (Value::Object(map), Some(names))
            if !map.is_empty() && map.keys().all(|k| !k.starts_with('$')) =>
        {
            if let Some(unknown) = map.keys().find(|k| !names.contains(&k.as_str())) {
                return Err(at.key(unknown).err(format!(
                    "unknown argument \"{unknown}\" for {name} (expected {})",
                    names.join(", ")
                )));
            }
            names
                .iter()
                .map(|n| match map.get(*n) {
                    Some(v) => Expression::parse(v, &at.key(n)),
                    None => Err(at.err(format!("{name} is missing its \"{n}\" argument"))),
                })
                .collect::<Result<_>>()?
        }
        // A single non-array operand is shorthand for a one-element argument list.
        (single, _) => vec![Expression::parse(single, at)?],
    };
    let ok = match spec.arity {
        Arity::Exactly(n) => args.len() == n,
        Arity::AtLeast(n) => args.len() >= n,
    };
    if !ok {
        let expected = match spec.arity {
            Arity::Exactly(1) => "exactly 1 argument".to_string(),
            Arity::Exactly(n) => format!("exactly {n} arguments"),
            Arity::AtLeast(n) => format!("at least {n} arguments"),
        };
        return Err(at.err(format!("{name} takes {expected}, got {}", args.len())));
    }
    Ok(Expression::Operator(Operator {
        name: spec.name,
        family: spec.family,
        args,
        path: at.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Expression> {
        Expression::parse(&v, &JsonPath::root())
    }

    #[test]
    fn parses_fields_literals_and_operators() {
        assert_eq!(
            parse(json!("$a.b")).unwrap(),
            Expression::Field(FieldPath::parse("a.b", &JsonPath::root()).unwrap())
        );
        assert_eq!(parse(json!(5)).unwrap(), Expression::Literal(json!(5)));
        assert_eq!(
            parse(json!({"$literal": "$notAField"})).unwrap(),
            Expression::Literal(json!("$notAField"))
        );
        let Expression::Operator(op) = parse(json!({"$add": ["$a", 1]})).unwrap() else {
            panic!("expected operator")
        };
        assert_eq!(op.name, "$add");
        assert_eq!(op.args.len(), 2);
    }

    #[test]
    fn cond_named_form_is_positional() {
        let Expression::Operator(op) =
            parse(json!({"$cond": {"if": true, "then": 1, "else": 2}})).unwrap()
        else {
            panic!("expected operator")
        };
        assert_eq!(op.args[2], Expression::Literal(json!(2)));
    }

    #[test]
    fn errors_name_the_path() {
        let e = parse(json!({"$add": ["$a", {"$frobnicate": 1}]})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pipeline.$add[1].$frobnicate: unknown expression operator \"$frobnicate\""
        );
        let e = parse(json!({"$divide": [1]})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pipeline.$divide: $divide takes exactly 2 arguments, got 1"
        );
        let e = parse(json!({"$cond": {"if": true, "then": 1}})).unwrap_err();
        assert!(e.to_string().contains("missing its \"else\""), "{e}");
        assert!(parse(json!({"$add": [1], "b": 2})).is_err());
        assert!(parse(json!("$$NOPE")).is_err());
    }
}
