//! The `$match` query language: field conditions (`{"status": "PAID"}`,
//! `{"qty": {"$gt": 5}}`), the logical operators `$and` / `$or` / `$nor`, field-level `$not`,
//! the array operators `$all` / `$size` / `$elemMatch`, `$type`, `$mod`, `$regex`, and `$expr`
//! for aggregation expressions.

use serde_json::{Map, Value};

use super::expression::{Expression, check_dates};
use super::path::{FieldPath, JsonPath};
use crate::Result;
use crate::document::date::date_millis;

/// A parsed query document.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// All must hold (a query document's top-level keys, or `$and`).
    And(Vec<Query>),
    /// At least one must hold.
    Or(Vec<Query>),
    /// None may hold.
    Nor(Vec<Query>),
    /// `$expr`: an aggregation expression, true by MongoDB's truthiness rules.
    Expr(Expression, JsonPath),
    /// Conditions on one field; all must hold.
    Field {
        field: FieldPath,
        conditions: Vec<Condition>,
        path: JsonPath,
    },
}

/// One condition on a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Regex {
        pattern: String,
        options: String,
    },
    /// `$not`: the inner conditions do not all hold (also true when the field is missing).
    Not(Vec<Condition>),
    /// `$all`: an array holding every one of the values.
    All(Vec<Value>),
    /// `$size`: an array of exactly this many elements.
    Size(i64),
    /// `$elemMatch` with a query over each element's fields (`{"sku": "A", "qty": {"$gt": 1}}`).
    ElemMatchQuery(Box<Query>),
    /// `$elemMatch` with operators on each element itself (`{"$gte": 80, "$lt": 85}`).
    ElemMatchValue(Vec<Condition>),
    /// `$type`: the value has one of these BSON types.
    Type(Vec<BsonType>),
    /// `$mod`: a number whose remainder by `divisor` is `remainder` (both truncated).
    Mod {
        divisor: i64,
        remainder: i64,
    },
}

/// BSON type names and numbers as `$type` accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BsonType {
    Double,
    String,
    Object,
    Array,
    Bool,
    Date,
    Null,
    Int,
    Long,
    Decimal,
    /// The alias `"number"`: any numeric type.
    Number,
}

impl BsonType {
    /// Parses a `$type` operand: a name (`"string"`) or a BSON type number (`2`).
    pub fn parse(v: &Value) -> Option<BsonType> {
        use BsonType::*;
        Some(match v {
            Value::String(s) => match s.as_str() {
                "double" => Double,
                "string" => String,
                "object" => Object,
                "array" => Array,
                "bool" => Bool,
                "date" => Date,
                "null" => Null,
                "int" => Int,
                "long" => Long,
                "decimal" => Decimal,
                "number" => Number,
                _ => return None,
            },
            Value::Number(n) => match n.as_f64()? as i64 {
                1 => Double,
                2 => String,
                3 => Object,
                4 => Array,
                8 => Bool,
                9 => Date,
                10 => Null,
                16 => Int,
                18 => Long,
                19 => Decimal,
                _ => return None,
            },
            _ => return None,
        })
    }
}

impl Query {
    /// Parses the query document of a `$match` stage.
    pub fn parse(v: &Value, at: &JsonPath) -> Result<Query> {
        let Value::Object(map) = v else {
            return Err(at.err("$match expects a query document (an object)"));
        };
        let mut parts = Vec::with_capacity(map.len());
        for (key, value) in map {
            let here = at.key(key);
            let q = match key.as_str() {
                "$and" | "$or" | "$nor" => {
                    let Value::Array(items) = value else {
                        return Err(here.err(format!(
                            "{key} expects a non-empty array of query documents"
                        )));
                    };
                    if items.is_empty() {
                        return Err(here.err(format!(
                            "{key} expects a non-empty array of query documents"
                        )));
                    }
                    let subs = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| Query::parse(item, &here.index(i)))
                        .collect::<Result<Vec<_>>>()?;
                    match key.as_str() {
                        "$and" => Query::And(subs),
                        "$or" => Query::Or(subs),
                        _ => Query::Nor(subs),
                    }
                }
                "$expr" => Query::Expr(Expression::parse(value, &here)?, here),
                k if k.starts_with('$') => {
                    return Err(here.err(format!("unknown top-level query operator \"{k}\"")));
                }
                _ => Query::Field {
                    field: FieldPath::parse(key, &here)?,
                    conditions: parse_conditions(value, &here)?,
                    path: here,
                },
            };
            parts.push(q);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Query::And(parts)
        })
    }
}

impl Query {
    /// Where the first `$expr` in this query is, if any.
    fn first_expr(&self) -> Option<&JsonPath> {
        match self {
            Query::Expr(_, at) => Some(at),
            Query::And(qs) | Query::Or(qs) | Query::Nor(qs) => {
                qs.iter().find_map(Query::first_expr)
            }
            Query::Field { .. } => None,
        }
    }
}

/// Parses what stands after a field name: a value to equal, or an object of operators.
fn parse_conditions(v: &Value, at: &JsonPath) -> Result<Vec<Condition>> {
    check_dates(v, at)?;
    match v {
        // `{"at": {"$date": …}}` is a date to equal, not an operator.
        Value::Object(map) if date_millis(v).is_some() => {
            Ok(vec![Condition::Eq(Value::Object(map.clone()))])
        }
        Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => {
            if let Some(plain) = map.keys().find(|k| !k.starts_with('$')) {
                return Err(at.err(format!(
                    "cannot mix operators and plain field \"{plain}\" in one condition"
                )));
            }
            parse_operator_object(map, at)
        }
        other => Ok(vec![Condition::Eq(other.clone())]),
    }
}

fn parse_operator_object(map: &Map<String, Value>, at: &JsonPath) -> Result<Vec<Condition>> {
    let mut out = Vec::with_capacity(map.len());
    for (op, operand) in map {
        let here = at.key(op);
        let cond = match op.as_str() {
            "$eq" => Condition::Eq(operand.clone()),
            "$ne" => Condition::Ne(operand.clone()),
            "$gt" => Condition::Gt(operand.clone()),
            "$gte" => Condition::Gte(operand.clone()),
            "$lt" => Condition::Lt(operand.clone()),
            "$lte" => Condition::Lte(operand.clone()),
            "$in" | "$nin" => {
                let Value::Array(items) = operand else {
                    return Err(here.err(format!("{op} expects an array")));
                };
                if op == "$in" {
                    Condition::In(items.clone())
                } else {
                    Condition::Nin(items.clone())
                }
            }
            "$exists" => Condition::Exists(truthy_literal(operand)),
            "$regex" => {
                let Value::String(pattern) = operand else {
                    return Err(here.err("$regex expects a string pattern"));
                };
                let options = match map.get("$options") {
                    None => String::new(),
                    Some(Value::String(o)) => o.clone(),
                    Some(_) => return Err(at.key("$options").err("$options expects a string")),
                };
                if let Some(bad) = options.chars().find(|c| !"imsx".contains(*c)) {
                    return Err(at.key("$options").err(format!(
                        "unsupported regex option '{bad}' (supported: i, m, s, x)"
                    )));
                }
                Condition::Regex {
                    pattern: pattern.clone(),
                    options,
                }
            }
            "$options" => {
                if !map.contains_key("$regex") {
                    return Err(here.err("$options needs a $regex beside it"));
                }
                continue;
            }
            "$all" => match operand {
                Value::Array(items) => Condition::All(items.clone()),
                _ => return Err(here.err("$all expects an array")),
            },
            "$size" => match operand.as_f64() {
                Some(n) if n >= 0.0 && n.fract() == 0.0 => Condition::Size(n as i64),
                _ => return Err(here.err("$size expects a non-negative integer")),
            },
            "$elemMatch" => match operand {
                Value::Object(inner)
                    if inner.keys().any(|k| VALUE_OPERATORS.contains(&k.as_str())) =>
                {
                    Condition::ElemMatchValue(parse_operator_object(inner, &here)?)
                }
                Value::Object(_) => {
                    let q = Query::parse(operand, &here)?;
                    if let Some(at) = q.first_expr() {
                        return Err(at.err("$expr is not supported inside $elemMatch"));
                    }
                    Condition::ElemMatchQuery(Box::new(q))
                }
                _ => return Err(here.err("$elemMatch expects a query document (an object)")),
            },
            "$type" => {
                let names: Vec<&Value> = match operand {
                    Value::Array(items) if !items.is_empty() => items.iter().collect(),
                    Value::Array(_) => return Err(here.err("$type expects at least one type")),
                    single => vec![single],
                };
                let types = names
                    .into_iter()
                    .map(|n| {
                        BsonType::parse(n).ok_or_else(|| here.err(format!("unknown BSON type {n}")))
                    })
                    .collect::<Result<_>>()?;
                Condition::Type(types)
            }
            "$mod" => {
                let parts = match operand {
                    Value::Array(items) if items.len() == 2 => items,
                    _ => return Err(here.err("$mod expects an array [divisor, remainder]")),
                };
                let int = |v: &Value| {
                    v.as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f.trunc() as i64)
                };
                match (int(&parts[0]), int(&parts[1])) {
                    (Some(0), _) => return Err(here.err("$mod divisor must not be 0")),
                    (Some(divisor), Some(remainder)) => Condition::Mod { divisor, remainder },
                    _ => return Err(here.err("$mod expects numbers [divisor, remainder]")),
                }
            }
            "$not" => {
                match operand {
                    Value::Object(inner)
                        if !inner.is_empty() && inner.keys().all(|k| k.starts_with('$')) =>
                    {
                        Condition::Not(parse_operator_object(inner, &here)?)
                    }
                    _ => return Err(here.err(
                        "$not expects an object of query operators, e.g. {\"$not\": {\"$gt\": 5}}",
                    )),
                }
            }
            other => return Err(here.err(format!("unknown query operator \"{other}\""))),
        };
        out.push(cond);
    }
    Ok(out)
}

/// Operators that apply to a value itself; an `$elemMatch` whose keys include one of these
/// constrains the elements, otherwise it is a query over their fields.
const VALUE_OPERATORS: &[&str] = &[
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$exists",
    "$regex",
    "$not",
    "$all",
    "$size",
    "$elemMatch",
    "$type",
    "$mod",
];

/// MongoDB reads `$exists: 0` / `false` / `null` as false and anything else as true.
fn truthy_literal(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_field_conditions_and_logic() {
        let q = Query::parse(
            &json!({"status": "PAID", "$or": [{"qty": {"$gt": 5, "$lte": 9}}, {"x": null}]}),
            &JsonPath::root().index(0).key("$match"),
        )
        .unwrap();
        let Query::And(parts) = q else { panic!("and") };
        assert_eq!(parts.len(), 2);
        let Query::Or(alts) = &parts[1] else {
            panic!("or")
        };
        let Query::Field { conditions, .. } = &alts[0] else {
            panic!("field")
        };
        assert_eq!(
            conditions,
            &vec![Condition::Gt(json!(5)), Condition::Lte(json!(9))]
        );
    }

    #[test]
    fn errors_name_the_path() {
        let at = JsonPath::root().index(0).key("$match");
        let e = Query::parse(&json!({"qty": {"$gtt": 5}}), &at).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pipeline[0].$match.qty.$gtt: unknown query operator \"$gtt\""
        );
        let e = Query::parse(&json!({"$or": {}}), &at).unwrap_err();
        assert!(e.to_string().starts_with("pipeline[0].$match.$or:"), "{e}");
        let e = Query::parse(&json!({"a": {"$regex": "x", "$options": "q"}}), &at).unwrap_err();
        assert!(
            e.to_string().contains("unsupported regex option 'q'"),
            "{e}"
        );
        assert!(Query::parse(&json!([1]), &at).is_err());
    }
}
