//! `$group`: the `_id` grouping expression and the accumulators.

use serde_json::Value;

pub use super::accumulator::Acc;
use super::expression::Expression;
use super::path::JsonPath;
use super::sort::{self, SortKey};
use crate::Result;

/// A parsed `$group` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The grouping key; a constant (e.g. `null`) groups every document together.
    pub id: Expression,
    /// Output fields in the order written.
    pub fields: Vec<Accumulator>,
}

/// One output field of `$group`: `"total": {"$sum": "$amount"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Accumulator {
    pub name: String,
    /// The accumulator, e.g. `$sum`.
    pub op: Acc,
    /// Its argument (`Literal(null)` for `$count`; `input` / `output` for the n-forms).
    pub arg: Expression,
    /// `n` of `$firstN`, `$lastN`, `$maxN`, `$minN`, `$topN`, `$bottomN`.
    pub n: Option<u64>,
    /// `sortBy` of `$top`, `$bottom`, `$topN`, `$bottomN`.
    pub sort_by: Vec<SortKey>,
    /// `p` of `$percentile` (`[0.5]` for `$median`).
    pub percentiles: Vec<f64>,
    pub path: JsonPath,
}

/// Named-argument accumulators: `{"input", "n"}` or `{"sortBy", "output", "n"}`.
fn parse_named(
    op: Acc,
    arg: &Value,
    at: &JsonPath,
) -> Result<(Expression, Option<u64>, Vec<SortKey>)> {
    let Value::Object(map) = arg else {
        return Err(at.err(format!("{op} expects a document of named arguments")));
    };
    let (value_key, takes_n, sorted) = match op {
        Acc::FirstN | Acc::LastN | Acc::MaxN | Acc::MinN => ("input", true, false),
        Acc::TopN | Acc::BottomN => ("output", true, true),
        _ => ("output", false, true),
    };
    let mut allowed = vec![value_key];
    if takes_n {
        allowed.push("n");
    }
    if sorted {
        allowed.push("sortBy");
    }
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(at.key(k).err(format!(
            "unknown argument \"{k}\" for {op} (expected {})",
            allowed.join(", ")
        )));
    }
    let value = match map.get(value_key) {
        Some(v) => Expression::parse(v, &at.key(value_key))?,
        None => return Err(at.err(format!("{op} is missing its \"{value_key}\" argument"))),
    };
    let n = if takes_n {
        match map.get("n").and_then(Value::as_u64) {
            Some(n) if n > 0 => Some(n),
            _ => return Err(at.key("n").err("expects a positive integer constant")),
        }
    } else {
        None
    };
    let sort_by = if sorted {
        match map.get("sortBy") {
            Some(s) => sort::parse(s, &at.key("sortBy"))?,
            None => return Err(at.err(format!("{op} is missing its \"sortBy\" argument"))),
        }
    } else {
        Vec::new()
    };
    Ok((value, n, sort_by))
}

/// `{"input", "p", "method"}` of `$percentile` (`{"input", "method"}` of `$median`).
pub fn parse_percentile(op: &str, arg: &Value, at: &JsonPath) -> Result<(Expression, Vec<f64>)> {
    let Value::Object(map) = arg else {
        return Err(at.err(format!(
            "{op} expects {{\"input\", {}\"method\": \"approximate\"}}",
            if op == "$percentile" { "\"p\", " } else { "" }
        )));
    };
    let allowed: &[&str] = if op == "$percentile" {
        &["input", "p", "method"]
    } else {
        &["input", "method"]
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(at.key(k).err(format!(
            "unknown argument \"{k}\" for {op} (expected {})",
            allowed.join(", ")
        )));
    }
    match map.get("method") {
        Some(Value::String(m)) if m == "approximate" || m == "discrete" => {}
        Some(_) => {
            return Err(at.key("method").err(
                "supported methods are \"approximate\" and \"discrete\" (both return a value of the input)",
            ));
        }
        None => return Err(at.err(format!("{op} is missing its \"method\" argument"))),
    }
    let input = match map.get("input") {
        Some(v) => Expression::parse(v, &at.key("input"))?,
        None => return Err(at.err(format!("{op} is missing its \"input\" argument"))),
    };
    let p = if op == "$median" {
        vec![0.5]
    } else {
        let bad = || {
            at.key("p")
                .err("expects a constant array of numbers between 0 and 1")
        };
        match map.get("p") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| {
                    v.as_f64()
                        .filter(|p| (0.0..=1.0).contains(p))
                        .ok_or_else(bad)
                })
                .collect::<Result<_>>()?,
            _ => return Err(bad()),
        }
    };
    Ok((input, p))
}

impl Group {
    /// Parses the document of a `$group` stage.
    pub fn parse(v: &Value, at: &JsonPath) -> Result<Group> {
        let Value::Object(map) = v else {
            return Err(at.err("$group expects a document with an _id and accumulators"));
        };
        let id = match map.get("_id") {
            Some(id) => Expression::parse(id, &at.key("_id"))?,
            None => return Err(at.err("$group requires an _id (use null to group all documents)")),
        };
        let mut fields = Vec::new();
        for (name, spec) in map.iter().filter(|(k, _)| *k != "_id") {
            let here = at.key(name);
            if name.contains('.') || name.starts_with('$') {
                return Err(here.err(format!(
                    "field name \"{name}\" must not contain '.' or start with '$'"
                )));
            }
            let Value::Object(acc) = spec else {
                return Err(here.err("expects an accumulator object, e.g. {\"$sum\": \"$amount\"}"));
            };
            if acc.len() != 1 {
                return Err(
                    here.err("expects exactly one accumulator, e.g. {\"$sum\": \"$amount\"}")
                );
            }
            let (op_name, arg) = acc.iter().next().expect("one key");
            let op = Acc::for_group(op_name)
                .ok_or_else(|| here.err(format!("unknown accumulator \"{op_name}\"")))?;
            let arg_at = here.key(op_name);
            let (mut n, mut sort_by, mut percentiles) = (None, Vec::new(), Vec::new());
            let arg = if matches!(op, Acc::Median | Acc::Percentile) {
                let (input, p) = parse_percentile(op_name, arg, &arg_at)?;
                percentiles = p;
                input
            } else if matches!(
                op,
                Acc::FirstN
                    | Acc::LastN
                    | Acc::MaxN
                    | Acc::MinN
                    | Acc::Top
                    | Acc::Bottom
                    | Acc::TopN
                    | Acc::BottomN
            ) {
                let (value, count, keys) = parse_named(op, arg, &arg_at)?;
                n = count;
                sort_by = keys;
                value
            } else if op == Acc::Count {
                match arg {
                    Value::Object(m) if m.is_empty() => Expression::Literal(Value::Null),
                    _ => {
                        return Err(arg_at.err("$count takes no arguments: write {\"$count\": {}}"));
                    }
                }
            } else {
                if matches!(arg, Value::Array(_)) {
                    return Err(arg_at.err(format!(
                        "the {op_name} accumulator is a unary operator, not an array of arguments"
                    )));
                }
                Expression::parse(arg, &arg_at)?
            };
            fields.push(Accumulator {
                name: name.clone(),
                op,
                arg,
                n,
                sort_by,
                percentiles,
                path: here,
            });
        }
        Ok(Group { id, fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_quickstart_group() {
        let g = Group::parse(
            &json!({"_id": "$customerId", "orderCount": {"$count": {}}, "lifetimeValue": {"$sum": "$orderValue"}}),
            &JsonPath::root().index(1).key("$group"),
        )
        .unwrap();
        assert_eq!(g.fields.len(), 2);
        assert_eq!(g.fields[0].op, Acc::Count);
        assert_eq!(g.fields[1].name, "lifetimeValue");
    }

    #[test]
    fn unknown_accumulator_names_its_path() {
        let e = Group::parse(
            &json!({"_id": null, "lifetimeValue": {"$summ": "$orderValue"}}),
            &JsonPath::root().index(1).key("$group"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "pipeline[1].$group.lifetimeValue: unknown accumulator \"$summ\""
        );
        assert!(Group::parse(&json!({"n": {"$sum": 1}}), &JsonPath::root()).is_err());
        assert!(
            Group::parse(&json!({"_id": null, "n": {"$count": 1}}), &JsonPath::root()).is_err()
        );
        assert!(
            Group::parse(&json!({"_id": null, "a.b": {"$sum": 1}}), &JsonPath::root()).is_err()
        );
    }
}
