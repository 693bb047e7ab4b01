//! Aggregation expressions (`"$price"`, `{"$add": ["$a", 1]}`, `{"$cond": …}`) as a typed AST.
//!
//! Parsing is purely syntactic: an operator is checked against [`OPERATORS`] for its name and
//! argument count, and named-argument forms (`{"$cond": {"if", "then", "else"}}`) are
//! normalised to positional arguments, so the planner sees one shape per operator. What an
//! operator *means* lives in `plan::expr`, one file per operator family.

use serde_json::Value;

use super::path::{FieldPath, JsonPath};
use crate::Result;
use crate::document::date::date_millis;

/// A parsed aggregation expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    /// A constant: null, boolean, number or string (and anything under `$literal`).
    Literal(Value),
    /// A field reference, `"$a.b"`.
    Field(FieldPath),
    /// A variable: a system one (`"$$ROOT"`, `"$$CURRENT.a"`, `"$$NOW"`, `"$$REMOVE"`) or
    /// one bound by `$let`, `$map`, `$filter` (`"$$this"`, `"$$item.qty"`).
    Variable {
        name: String,
        path: Option<FieldPath>,
    },
    /// `$let`, `$map` and `$filter`: expressions that bind variables for a body.
    Binding(Box<Binding>),
    /// An array whose elements are expressions.
    Array(Vec<Expression>),
    /// A document whose values are expressions (field order kept).
    Document(Vec<(String, Expression)>),
    /// An operator applied to its (positional) arguments.
    Operator(Operator),
    /// An enrich operator (`$httpCall`): a call to an external system per document.
    Enrich(Box<super::enrich::EnrichCall>),
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

/// `$let`, `$map` and `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub enum Binding {
    /// `{"$let": {"vars": {...}, "in": body}}`.
    Let {
        vars: Vec<(String, Expression)>,
        body: Expression,
    },
    /// `{"$map": {"input", "as", "in"}}`: `body` for each element, bound to `var`.
    Map {
        input: Expression,
        var: String,
        body: Expression,
        path: JsonPath,
    },
    /// `{"$filter": {"input", "as", "cond", "limit"}}`: the elements for which `cond` holds.
    Filter {
        input: Expression,
        var: String,
        cond: Expression,
        limit: Option<Expression>,
        path: JsonPath,
    },
    /// `{"$reduce": {"input", "initialValue", "in"}}`: folds the elements into `$$value`,
    /// each element being `$$this`.
    Reduce {
        input: Expression,
        initial: Expression,
        body: Expression,
        path: JsonPath,
    },
}

/// Operator families; each maps to one file under `plan/expr/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Arithmetic,
    Comparison,
    Boolean,
    Conditional,
    String,
    Array,
    Type,
    Date,
}

/// How many arguments an operator takes.
#[derive(Debug, Clone, Copy)]
pub enum Arity {
    Exactly(usize),
    AtLeast(usize),
    /// From `.0` to `.1` arguments.
    Between(usize, usize),
}

/// One entry of the operator table.
#[derive(Debug)]
pub struct OperatorSpec {
    pub name: &'static str,
    pub family: Family,
    pub arity: Arity,
    /// For operators that also accept an object of named arguments, the names in positional
    /// order (`$cond`: `if`, `then`, `else`); a trailing `?` marks an optional one, and
    /// `name=JSON` an optional one with a default (`timezone="UTC"`).
    pub named: Option<&'static [&'static str]>,
}

const fn named(
    name: &'static str,
    family: Family,
    arity: Arity,
    names: &'static [&'static str],
) -> OperatorSpec {
    OperatorSpec {
        name,
        family,
        arity,
        named: Some(names),
    }
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
    op("$ceil", Family::Arithmetic, Arity::Exactly(1)),
    op("$floor", Family::Arithmetic, Arity::Exactly(1)),
    op("$round", Family::Arithmetic, Arity::Between(1, 2)),
    op("$trunc", Family::Arithmetic, Arity::Between(1, 2)),
    op("$sqrt", Family::Arithmetic, Arity::Exactly(1)),
    op("$pow", Family::Arithmetic, Arity::Exactly(2)),
    op("$exp", Family::Arithmetic, Arity::Exactly(1)),
    op("$ln", Family::Arithmetic, Arity::Exactly(1)),
    op("$log", Family::Arithmetic, Arity::Exactly(2)),
    op("$log10", Family::Arithmetic, Arity::Exactly(1)),
    op("$sin", Family::Arithmetic, Arity::Exactly(1)),
    op("$cos", Family::Arithmetic, Arity::Exactly(1)),
    op("$tan", Family::Arithmetic, Arity::Exactly(1)),
    op("$asin", Family::Arithmetic, Arity::Exactly(1)),
    op("$acos", Family::Arithmetic, Arity::Exactly(1)),
    op("$atan", Family::Arithmetic, Arity::Exactly(1)),
    op("$atan2", Family::Arithmetic, Arity::Exactly(2)),
    op("$sinh", Family::Arithmetic, Arity::Exactly(1)),
    op("$cosh", Family::Arithmetic, Arity::Exactly(1)),
    op("$tanh", Family::Arithmetic, Arity::Exactly(1)),
    op("$asinh", Family::Arithmetic, Arity::Exactly(1)),
    op("$acosh", Family::Arithmetic, Arity::Exactly(1)),
    op("$atanh", Family::Arithmetic, Arity::Exactly(1)),
    op("$degreesToRadians", Family::Arithmetic, Arity::Exactly(1)),
    op("$radiansToDegrees", Family::Arithmetic, Arity::Exactly(1)),
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
    named(
        "$trim",
        Family::String,
        Arity::Between(1, 2),
        &["input", "chars?"],
    ),
    named(
        "$ltrim",
        Family::String,
        Arity::Between(1, 2),
        &["input", "chars?"],
    ),
    named(
        "$rtrim",
        Family::String,
        Arity::Between(1, 2),
        &["input", "chars?"],
    ),
    op("$substr", Family::String, Arity::Exactly(3)),
    op("$substrBytes", Family::String, Arity::Exactly(3)),
    op("$substrCP", Family::String, Arity::Exactly(3)),
    op("$strLenBytes", Family::String, Arity::Exactly(1)),
    op("$strLenCP", Family::String, Arity::Exactly(1)),
    op("$split", Family::String, Arity::Exactly(2)),
    op("$indexOfBytes", Family::String, Arity::Between(2, 3)),
    op("$indexOfCP", Family::String, Arity::Between(2, 3)),
    op("$strcasecmp", Family::String, Arity::Exactly(2)),
    named(
        "$regexMatch",
        Family::String,
        Arity::Between(2, 3),
        &["input", "regex", "options?"],
    ),
    named(
        "$regexFind",
        Family::String,
        Arity::Between(2, 3),
        &["input", "regex", "options?"],
    ),
    named(
        "$regexFindAll",
        Family::String,
        Arity::Between(2, 3),
        &["input", "regex", "options?"],
    ),
    named(
        "$replaceOne",
        Family::String,
        Arity::Exactly(3),
        &["input", "find", "replacement"],
    ),
    named(
        "$replaceAll",
        Family::String,
        Arity::Exactly(3),
        &["input", "find", "replacement"],
    ),
    // array
    op("$size", Family::Array, Arity::Exactly(1)),
    op("$arrayElemAt", Family::Array, Arity::Exactly(2)),
    op("$first", Family::Array, Arity::Exactly(1)),
    op("$last", Family::Array, Arity::Exactly(1)),
    op("$isArray", Family::Array, Arity::Exactly(1)),
    op("$concatArrays", Family::Array, Arity::AtLeast(0)),
    op("$reverseArray", Family::Array, Arity::Exactly(1)),
    op("$in", Family::Array, Arity::Exactly(2)),
    op("$slice", Family::Array, Arity::Between(2, 3)),
    op("$indexOfArray", Family::Array, Arity::Exactly(2)),
    op("$range", Family::Array, Arity::Between(2, 3)),
    op("$arrayToObject", Family::Array, Arity::Exactly(1)),
    named(
        "$sortArray",
        Family::Array,
        Arity::Exactly(2),
        &["input", "sortBy"],
    ),
    named(
        "$zip",
        Family::Array,
        Arity::Between(1, 3),
        &["inputs", "useLongestLength=false", "defaults?"],
    ),
    // sets (arrays read as sets)
    op("$setUnion", Family::Array, Arity::AtLeast(1)),
    op("$setIntersection", Family::Array, Arity::AtLeast(1)),
    op("$setDifference", Family::Array, Arity::Exactly(2)),
    op("$setEquals", Family::Array, Arity::AtLeast(2)),
    op("$setIsSubset", Family::Array, Arity::Exactly(2)),
    op("$anyElementTrue", Family::Array, Arity::Exactly(1)),
    op("$allElementsTrue", Family::Array, Arity::Exactly(1)),
    // $sum/$avg/$min/$max as expressions: over an array argument, or over their arguments.
    op("$sum", Family::Array, Arity::AtLeast(1)),
    op("$avg", Family::Array, Arity::AtLeast(1)),
    op("$min", Family::Array, Arity::AtLeast(1)),
    op("$max", Family::Array, Arity::AtLeast(1)),
    // type
    op("$type", Family::Type, Arity::Exactly(1)),
    op("$isNumber", Family::Type, Arity::Exactly(1)),
    op("$toString", Family::Type, Arity::Exactly(1)),
    op("$toInt", Family::Type, Arity::Exactly(1)),
    op("$toLong", Family::Type, Arity::Exactly(1)),
    op("$toDouble", Family::Type, Arity::Exactly(1)),
    op("$toDecimal", Family::Type, Arity::Exactly(1)),
    op("$toBool", Family::Type, Arity::Exactly(1)),
    named(
        "$convert",
        Family::Type,
        Arity::Between(2, 4),
        &["input", "to", "onError?", "onNull?"],
    ),
    named(
        "$getField",
        Family::Type,
        Arity::Between(1, 2),
        &["field", "input?"],
    ),
    // objects
    named(
        "$setField",
        Family::Type,
        Arity::Exactly(3),
        &["field", "input", "value"],
    ),
    named(
        "$unsetField",
        Family::Type,
        Arity::Exactly(2),
        &["field", "input"],
    ),
    op("$mergeObjects", Family::Type, Arity::AtLeast(1)),
    op("$objectToArray", Family::Type, Arity::Exactly(1)),
    // dates
    op("$toDate", Family::Date, Arity::Exactly(1)),
    date_part("$year"),
    date_part("$month"),
    date_part("$dayOfMonth"),
    date_part("$hour"),
    date_part("$minute"),
    date_part("$second"),
    date_part("$millisecond"),
    date_part("$dayOfYear"),
    date_part("$dayOfWeek"),
    date_part("$week"),
    date_part("$isoWeek"),
    date_part("$isoWeekYear"),
    date_part("$isoDayOfWeek"),
    named(
        "$dateToParts",
        Family::Date,
        Arity::Between(1, 3),
        &["date", "timezone=\"UTC\"", "iso8601=false"],
    ),
    named(
        "$dateFromParts",
        Family::Date,
        Arity::Between(8, 11),
        &[
            "year?",
            "month=1",
            "day=1",
            "hour=0",
            "minute=0",
            "second=0",
            "millisecond=0",
            "timezone=\"UTC\"",
            "isoWeekYear?",
            "isoWeek=1",
            "isoDayOfWeek=1",
        ],
    ),
    named(
        "$dateTrunc",
        Family::Date,
        Arity::Between(2, 5),
        &[
            "date",
            "unit",
            "binSize=1",
            "timezone=\"UTC\"",
            "startOfWeek=\"sunday\"",
        ],
    ),
    named(
        "$dateAdd",
        Family::Date,
        Arity::Between(3, 4),
        &["startDate", "unit", "amount", "timezone=\"UTC\""],
    ),
    named(
        "$dateSubtract",
        Family::Date,
        Arity::Between(3, 4),
        &["startDate", "unit", "amount", "timezone=\"UTC\""],
    ),
    named(
        "$dateDiff",
        Family::Date,
        Arity::Between(3, 5),
        &[
            "startDate",
            "endDate",
            "unit",
            "timezone=\"UTC\"",
            "startOfWeek=\"sunday\"",
        ],
    ),
    named(
        "$dateToString",
        Family::Date,
        Arity::Between(1, 4),
        &["date", "format?", "timezone=\"UTC\"", "onNull?"],
    ),
    // `onError` last: the planner tells "absent" (errors raise) from `null` by the count.
    named(
        "$dateFromString",
        Family::Date,
        Arity::Between(1, 5),
        &[
            "dateString",
            "format?",
            "timezone=\"UTC\"",
            "onNull?",
            "onError?",
        ],
    ),
];

/// `$year` and its kin: `{"$year": <date>}` or `{"$year": {"date", "timezone"}}`.
const fn date_part(name: &'static str) -> OperatorSpec {
    named(
        name,
        Family::Date,
        Arity::Between(1, 2),
        &["date", "timezone?"],
    )
}

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
        // User variables start with a lower-case letter; the planner checks they are bound.
        user if valid_var(user) => Ok(Expression::Variable {
            name: user.to_string(),
            path,
        }),
        other => Err(at.err(format!("unknown variable \"$${other}\""))),
    }
}

/// Checks every extended JSON date (`{"$date": …}`) inside the constant `v`.
pub fn check_dates(v: &Value, at: &JsonPath) -> Result<()> {
    match v {
        Value::Object(map) => match date_millis(v) {
            Some(Ok(_)) => Ok(()),
            Some(Err(why)) => Err(at.key("$date").err(why)),
            None => map.iter().try_for_each(|(k, x)| check_dates(x, &at.key(k))),
        },
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| check_dates(x, &at.index(i))),
        _ => Ok(()),
    }
}

fn parse_operator(name: &str, operand: &Value, at: &JsonPath) -> Result<Expression> {
    match name {
        "$literal" => {
            check_dates(operand, at)?;
            return Ok(Expression::Literal(operand.clone()));
        }
        // Extended JSON: `{"$date": "2026-03-01T10:00:00Z"}` is a date constant.
        "$date" => {
            let date = serde_json::json!({ "$date": operand });
            if let Some(Err(why)) = date_millis(&date) {
                return Err(at.err(why));
            }
            return Ok(Expression::Literal(date));
        }
        "$let" | "$map" | "$filter" | "$reduce" => return parse_binding(name, operand, at),
        "$httpCall" => {
            return Ok(Expression::Enrich(Box::new(
                super::enrich::EnrichCall::parse_http_call(operand, at)?,
            )));
        }
        "$sqlQuery" => {
            return Ok(Expression::Enrich(Box::new(
                super::enrich::EnrichCall::parse_sql_query(operand, at)?,
            )));
        }
        "$switch" => return parse_switch(operand, at),
        _ => {}
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
            let plain = |n: &str| {
                n.split_once('=')
                    .map_or(n, |(k, _)| k)
                    .trim_end_matches('?')
                    .to_string()
            };
            if let Some(unknown) = map.keys().find(|k| !names.iter().any(|n| plain(n) == **k)) {
                let list: Vec<String> = names.iter().map(|n| plain(n)).collect();
                return Err(at.key(unknown).err(format!(
                    "unknown argument \"{unknown}\" for {name} (expected {})",
                    list.join(", ")
                )));
            }
            // Absent optional arguments at the end are left out; one before a given argument
            // stands as null.
            let mut args = Vec::new();
            let last_given = names
                .iter()
                .rposition(|n| map.contains_key(&plain(n)))
                .unwrap_or(0);
            for (i, n) in names.iter().enumerate() {
                let key = plain(n);
                match map.get(&key) {
                    Some(v) => args.push(Expression::parse(v, &at.key(&key))?),
                    None if n.contains('=') => {
                        let default = n.split_once('=').expect("has =").1;
                        args.push(Expression::Literal(
                            serde_json::from_str(default).expect("defaults are JSON"),
                        ));
                    }
                    None if n.ends_with('?') && i > last_given && !defaults_after(names, i) => {
                        break;
                    }
                    None if n.ends_with('?') => args.push(Expression::Literal(Value::Null)),
                    None => return Err(at.err(format!("{name} is missing its \"{key}\" argument"))),
                }
            }
            args
        }
        // A single non-array operand is shorthand for a one-element argument list.
        (single, _) => vec![Expression::parse(single, at)?],
    };
    let ok = match spec.arity {
        Arity::Exactly(n) => args.len() == n,
        Arity::AtLeast(n) => args.len() >= n,
        Arity::Between(lo, hi) => (lo..=hi).contains(&args.len()),
    };
    if !ok {
        let expected = match spec.arity {
            Arity::Exactly(1) => "exactly 1 argument".to_string(),
            Arity::Exactly(n) => format!("exactly {n} arguments"),
            Arity::AtLeast(n) => format!("at least {n} arguments"),
            Arity::Between(lo, hi) => format!("{lo} to {hi} arguments"),
        };
        return Err(at.err(format!("{name} takes {expected}, got {}", args.len())));
    }
    let mut args = args;
    if let Some(names) = spec.named {
        // Positional forms get the defaults of the arguments they leave out.
        for (i, n) in names.iter().enumerate().skip(args.len()) {
            match n.split_once('=') {
                Some((_, default)) => args.push(Expression::Literal(
                    serde_json::from_str(default).expect("defaults are JSON"),
                )),
                None if defaults_after(names, i) => args.push(Expression::Literal(Value::Null)),
                None => break,
            }
        }
    }
    if spec.name == "$getField" && args.len() == 1 {
        // Without `input`, the field is read from the current document.
        args.push(Expression::Variable {
            name: "CURRENT".to_string(),
            path: None,
        });
    }
    Ok(Expression::Operator(Operator {
        name: spec.name,
        family: spec.family,
        args,
        path: at.clone(),
    }))
}

/// True when an argument after position `i` has a default.
fn defaults_after(names: &[&str], i: usize) -> bool {
    names[i + 1..].iter().any(|n| n.contains('='))
}

/// `$let`, `$map`, `$filter`: named arguments, one of which names the bound variable.
fn parse_binding(name: &str, operand: &Value, at: &JsonPath) -> Result<Expression> {
    let Value::Object(map) = operand else {
        return Err(at.err(format!("{name} expects a document of named arguments")));
    };
    let allowed: &[&str] = match name {
        "$let" => &["vars", "in"],
        "$map" => &["input", "as", "in"],
        "$reduce" => &["input", "initialValue", "in"],
        _ => &["input", "as", "cond", "limit"],
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(at.key(k).err(format!(
            "unknown argument \"{k}\" for {name} (expected {})",
            allowed.join(", ")
        )));
    }
    let required = |k: &str| {
        map.get(k)
            .ok_or_else(|| at.err(format!("{name} is missing its \"{k}\" argument")))
    };
    let var_name = || -> Result<String> {
        match map.get("as") {
            None => Ok("this".to_string()),
            Some(Value::String(v)) if valid_var(v) => Ok(v.clone()),
            Some(_) => Err(at
                .key("as")
                .err("expects a variable name starting with a lower-case letter")),
        }
    };
    let binding = match name {
        "$let" => {
            let Value::Object(vars) = required("vars")? else {
                return Err(at.key("vars").err("expects a document of variables"));
            };
            let vars = vars
                .iter()
                .map(|(k, v)| {
                    if !valid_var(k) {
                        return Err(at
                            .key("vars")
                            .key(k)
                            .err("variable names start with a lower-case letter"));
                    }
                    Ok((k.clone(), Expression::parse(v, &at.key("vars").key(k))?))
                })
                .collect::<Result<_>>()?;
            Binding::Let {
                vars,
                body: Expression::parse(required("in")?, &at.key("in"))?,
            }
        }
        "$map" => Binding::Map {
            input: Expression::parse(required("input")?, &at.key("input"))?,
            var: var_name()?,
            body: Expression::parse(required("in")?, &at.key("in"))?,
            path: at.clone(),
        },
        "$reduce" => Binding::Reduce {
            input: Expression::parse(required("input")?, &at.key("input"))?,
            initial: Expression::parse(required("initialValue")?, &at.key("initialValue"))?,
            body: Expression::parse(required("in")?, &at.key("in"))?,
            path: at.clone(),
        },
        _ => Binding::Filter {
            input: Expression::parse(required("input")?, &at.key("input"))?,
            var: var_name()?,
            cond: Expression::parse(required("cond")?, &at.key("cond"))?,
            limit: map
                .get("limit")
                .map(|v| Expression::parse(v, &at.key("limit")))
                .transpose()?,
            path: at.clone(),
        },
    };
    Ok(Expression::Binding(Box::new(binding)))
}

fn valid_var(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `$switch` is a chain of `$cond`s: `{"branches": [{"case", "then"}…], "default"}`.
fn parse_switch(operand: &Value, at: &JsonPath) -> Result<Expression> {
    let Value::Object(map) = operand else {
        return Err(at.err("$switch expects {\"branches\": [...], \"default\": ...}"));
    };
    if let Some(k) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "branches" | "default"))
    {
        return Err(at.key(k).err(format!(
            "unknown argument \"{k}\" for $switch (expected branches, default)"
        )));
    }
    let Some(Value::Array(branches)) = map.get("branches") else {
        return Err(at.err("$switch requires an array of branches"));
    };
    if branches.is_empty() {
        return Err(at
            .key("branches")
            .err("$switch requires at least one branch"));
    }
    // Without a default MongoDB raises an error when no branch matches; Fluxion yields null.
    let mut out = match map.get("default") {
        Some(d) => Expression::parse(d, &at.key("default"))?,
        None => Expression::Literal(Value::Null),
    };
    for (i, b) in branches.iter().enumerate().rev() {
        let here = at.key("branches").index(i);
        let (Some(case), Some(then), Value::Object(m)) = (b.get("case"), b.get("then"), b) else {
            return Err(here.err("a branch is {\"case\": ..., \"then\": ...}"));
        };
        if m.len() != 2 {
            return Err(here.err("a branch is {\"case\": ..., \"then\": ...}"));
        }
        out = Expression::Operator(Operator {
            name: "$cond",
            family: Family::Conditional,
            args: vec![
                Expression::parse(case, &here.key("case"))?,
                Expression::parse(then, &here.key("then"))?,
                out,
            ],
            path: here,
        });
    }
    Ok(out)
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
    fn optional_named_arguments_and_bindings() {
        let Expression::Operator(op) = parse(json!({"$trim": {"input": "$s"}})).unwrap() else {
            panic!("operator")
        };
        assert_eq!(op.args.len(), 1);
        let Expression::Operator(op) =
            parse(json!({"$trim": {"input": "$s", "chars": "x"}})).unwrap()
        else {
            panic!("operator")
        };
        assert_eq!(op.args.len(), 2);
        let e = parse(json!({"$trim": {"chars": "x"}})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pipeline.$trim: $trim is missing its \"input\" argument"
        );
        // $switch is a chain of $cond.
        let Expression::Operator(op) =
            parse(json!({"$switch": {"branches": [{"case": true, "then": 1}], "default": 2}}))
                .unwrap()
        else {
            panic!("operator")
        };
        assert_eq!(op.name, "$cond");
        let e = parse(json!({"$switch": {"branches": [{"case": true}]}})).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pipeline.$switch.branches[0]: a branch is"),
            "{e}"
        );
        let e = parse(json!({"$map": {"input": "$a", "as": "X", "in": 1}})).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pipeline.$map.as: expects a variable name"),
            "{e}"
        );
        let e = parse(json!({"$filter": {"input": "$a", "condition": true}})).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pipeline.$filter.condition: unknown argument"),
            "{e}"
        );
        assert!(matches!(
            parse(json!("$$item.qty")).unwrap(),
            Expression::Variable { .. }
        ));
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
