//! `$setWindowFields`: `{"partitionBy": expr, "sortBy": {...}, "output": {"name": {op: arg,
//! "window": {"documents" | "range": [lower, upper]}}}}`.

use serde_json::Value;

use super::accumulator::Acc;
use super::expression::{Expression, Family, Operator};
use super::path::{FieldPath, JsonPath};
use super::project::assignments;
use super::sort::{self, SortKey};
use super::{Stage, StageKind};
use crate::Result;

/// A parsed `$setWindowFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct SetWindowFields {
    pub partition_by: Option<Expression>,
    pub sort_by: Vec<SortKey>,
    pub output: Vec<WindowOutput>,
}

/// One output field.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowOutput {
    pub name: String,
    pub op: WindowOp,
    /// The frame; `None` is the whole partition.
    pub window: Option<Window>,
    pub path: JsonPath,
}

/// A window operator.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowOp {
    /// An accumulator (`$sum`, `$avg`, `$min`, `$max`, `$count`, `$first`, `$last`, `$push`)
    /// over the frame.
    Accumulate {
        op: Acc,
        arg: Expression,
    },
    Rank,
    DenseRank,
    DocumentNumber,
    /// `$shift`: the value of `output` in the document `by` positions away, else `default`.
    Shift {
        output: Expression,
        by: i64,
        default: Expression,
    },
    /// `$fill`'s `locf`: the last non-null value of the field so far.
    Locf(Expression),
    /// `$fill`'s `linear`: nulls between two values interpolated along the sort key.
    Linear(Expression),
    /// `$derivative`: change of `input` per unit of the sort key across the window.
    Derivative {
        input: Expression,
        unit: Option<Unit>,
    },
    /// `$integral`: area under `input` along the sort key across the window (trapezoids).
    Integral {
        input: Expression,
        unit: Option<Unit>,
    },
    /// `$expMovingAvg`: exponential moving average with weight `alpha`.
    ExpMovingAvg {
        input: Expression,
        alpha: f64,
    },
    /// `$firstN`, `$lastN`, `$maxN`, `$minN` over the window.
    AccumulateN {
        op: Acc,
        input: Expression,
        n: u64,
    },
    /// `$median` (`p = [0.5]`, a number) and `$percentile` (an array) over the window.
    Percentile {
        input: Expression,
        p: Vec<f64>,
        median: bool,
    },
}

pub use crate::udf::calendar::Unit;

/// A window frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// Counted in documents, relative to the current one.
    Documents(Bound, Bound),
    /// Counted in values of the (single) sort key: numbers, or time `unit`s of a date key.
    Range(Bound, Bound, Option<Unit>),
}

/// One end of a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Unbounded,
    Current,
    /// Negative: before the current document; positive: after it.
    Offset(f64),
}

impl SetWindowFields {
    /// Parses the operand of `$setWindowFields`.
    pub fn parse(v: &Value, at: &JsonPath) -> Result<SetWindowFields> {
        let Value::Object(map) = v else {
            return Err(
                at.err("$setWindowFields expects {\"partitionBy\", \"sortBy\", \"output\"}")
            );
        };
        if let Some(k) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "partitionBy" | "sortBy" | "output"))
        {
            return Err(at.key(k).err(format!(
                "unknown $setWindowFields option \"{k}\" (expected partitionBy, sortBy, output)"
            )));
        }
        let (partition_by, sort_by) = partition_and_sort(map, at)?;
        let Some(Value::Object(outputs)) = map.get("output") else {
            return Err(at.err("$setWindowFields requires an output document"));
        };
        let mut output = Vec::new();
        for (name, spec) in outputs {
            let here = at.key("output").key(name);
            if name.contains('.') || name.starts_with('$') {
                return Err(
                    here.err("output fields must be top-level names (no '.', no leading '$')")
                );
            }
            output.push(parse_output(name, spec, &here, !sort_by.is_empty())?);
        }
        if output.is_empty() {
            return Err(at.key("output").err("expects at least one output field"));
        }
        Ok(SetWindowFields {
            partition_by,
            sort_by,
            output,
        })
    }
}

/// The `partitionBy` and `sortBy` options shared by `$setWindowFields` and `$fill`.
fn partition_and_sort(
    map: &serde_json::Map<String, Value>,
    at: &JsonPath,
) -> Result<(Option<Expression>, Vec<SortKey>)> {
    let partition_by = map
        .get("partitionBy")
        .map(|p| Expression::parse(p, &at.key("partitionBy")))
        .transpose()?;
    let sort_by = match map.get("sortBy") {
        Some(s) => sort::parse(s, &at.key("sortBy"))?,
        None => Vec::new(),
    };
    Ok((partition_by, sort_by))
}

fn parse_output(name: &str, spec: &Value, at: &JsonPath, sorted: bool) -> Result<WindowOutput> {
    let Value::Object(map) = spec else {
        return Err(at.err("expects {\"<operator>\": <argument>, \"window\": {...}}"));
    };
    let window = map
        .get("window")
        .map(|w| parse_window(w, &at.key("window")))
        .transpose()?;
    let ops: Vec<&String> = map.keys().filter(|k| *k != "window").collect();
    let [op_name] = ops.as_slice() else {
        return Err(at.err("expects exactly one window operator"));
    };
    let here = at.key(op_name);
    let needs_order = |what: &str| -> Result<()> {
        if !sorted {
            return Err(here.err(format!("{what} requires sortBy")));
        }
        if window.is_some() {
            return Err(at
                .key("window")
                .err(format!("{what} does not take a window")));
        }
        Ok(())
    };
    let arg = &map[op_name.as_str()];
    let op = match op_name.as_str() {
        "$rank" | "$denseRank" | "$documentNumber" => {
            needs_order(op_name)?;
            match op_name.as_str() {
                "$rank" => WindowOp::Rank,
                "$denseRank" => WindowOp::DenseRank,
                _ => WindowOp::DocumentNumber,
            }
        }
        "$shift" => {
            needs_order("$shift")?;
            let Value::Object(s) = arg else {
                return Err(here.err("$shift expects {\"output\", \"by\", \"default\"}"));
            };
            let output = match s.get("output") {
                Some(o) => Expression::parse(o, &here.key("output"))?,
                None => return Err(here.err("$shift requires output")),
            };
            let by = s
                .get("by")
                .and_then(Value::as_i64)
                .ok_or_else(|| here.key("by").err("expects an integer"))?;
            let default = match s.get("default") {
                Some(d) => Expression::parse(d, &here.key("default"))?,
                None => Expression::Literal(Value::Null),
            };
            WindowOp::Shift {
                output,
                by,
                default,
            }
        }
        "$derivative" | "$integral" => {
            if !sorted {
                return Err(here.err(format!("{op_name} requires sortBy")));
            }
            let (m, input) = input_and(arg, &here, op_name, &["unit"])?;
            let unit = m
                .get("unit")
                .map(|u| parse_unit(u, &here.key("unit"), true))
                .transpose()?;
            if op_name.as_str() == "$derivative" {
                WindowOp::Derivative { input, unit }
            } else {
                WindowOp::Integral { input, unit }
            }
        }
        "$expMovingAvg" => {
            needs_order("$expMovingAvg")?;
            let (m, input) = input_and(arg, &here, "$expMovingAvg", &["N", "alpha"])?;
            let alpha = match (m.get("N"), m.get("alpha")) {
                (Some(n), None) => match n.as_u64() {
                    Some(n) if n > 0 => 2.0 / (n as f64 + 1.0),
                    _ => return Err(here.key("N").err("expects a positive integer")),
                },
                (None, Some(a)) => match a.as_f64() {
                    Some(a) if a > 0.0 && a < 1.0 => a,
                    _ => return Err(here.key("alpha").err("expects a number between 0 and 1")),
                },
                _ => return Err(here.err("$expMovingAvg takes exactly one of N and alpha")),
            };
            WindowOp::ExpMovingAvg { input, alpha }
        }
        "$median" | "$percentile" => {
            let (input, p) = super::group::parse_percentile(op_name, arg, &here)?;
            WindowOp::Percentile {
                input,
                p,
                median: op_name.as_str() == "$median",
            }
        }
        "$firstN" | "$lastN" | "$maxN" | "$minN" => {
            let (m, input) = input_and(arg, &here, op_name, &["n"])?;
            let n = match m.get("n").and_then(Value::as_u64) {
                Some(n) if n > 0 => n,
                _ => return Err(here.key("n").err("expects a positive integer constant")),
            };
            let Some(op) = Acc::for_window_n(op_name) else {
                return Err(here.err(format!("unknown window operator \"{op_name}\"")));
            };
            WindowOp::AccumulateN { op, input, n }
        }
        acc => {
            let Some(op) = Acc::for_window(acc) else {
                return Err(here.err(format!("unknown window operator \"{acc}\"")));
            };
            let arg = if op == Acc::Count {
                Expression::Literal(Value::Null)
            } else {
                Expression::parse(arg, &here)?
            };
            WindowOp::Accumulate { op, arg }
        }
    };
    if matches!(window, Some(Window::Range(..))) && !sorted {
        return Err(at.key("window").err("a range window requires sortBy"));
    }
    Ok(WindowOutput {
        name: name.to_string(),
        op,
        window,
        path: at.clone(),
    })
}

/// The named arguments `{"input", <others>…}` of a window operator, and `input` parsed.
fn input_and<'a>(
    arg: &'a Value,
    at: &JsonPath,
    op: &str,
    others: &[&str],
) -> Result<(&'a serde_json::Map<String, Value>, Expression)> {
    let Value::Object(m) = arg else {
        return Err(at.err(format!(
            "{op} expects {{\"input\", {}}}",
            others
                .iter()
                .map(|o| format!("\"{o}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    if let Some(k) = m
        .keys()
        .find(|k| k.as_str() != "input" && !others.contains(&k.as_str()))
    {
        return Err(at.key(k).err(format!("unknown argument \"{k}\" for {op}")));
    }
    let input = match m.get("input") {
        Some(i) => Expression::parse(i, &at.key("input"))?,
        None => return Err(at.err(format!("{op} requires input"))),
    };
    Ok((m, input))
}

fn parse_window(v: &Value, at: &JsonPath) -> Result<Window> {
    let Value::Object(map) = v else {
        return Err(
            at.err("expects {\"documents\": [lower, upper]} or {\"range\": [lower, upper]}")
        );
    };
    if let Some(k) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "documents" | "range" | "unit"))
    {
        return Err(at.key(k).err(format!("unknown window option \"{k}\"")));
    }
    let unit = map
        .get("unit")
        .map(|u| parse_unit(u, &at.key("unit"), false))
        .transpose()?;
    if unit.is_some() && map.contains_key("documents") {
        return Err(at.key("unit").err("a unit applies to range windows only"));
    }
    let (kind, bounds) = match (map.get("documents"), map.get("range")) {
        (Some(b), None) => ("documents", b),
        (None, Some(b)) => ("range", b),
        _ => return Err(at.err("expects exactly one of documents or range")),
    };
    let here = at.key(kind);
    let Value::Array(pair) = bounds else {
        return Err(here.err("expects [lower, upper]"));
    };
    let [lo, hi] = pair.as_slice() else {
        return Err(here.err("expects [lower, upper]"));
    };
    let bound = |b: &Value, i: usize| -> Result<Bound> {
        match b {
            Value::String(s) if s == "unbounded" => Ok(Bound::Unbounded),
            Value::String(s) if s == "current" => Ok(Bound::Current),
            Value::Number(n) if kind == "range" || n.is_i64() => {
                Ok(Bound::Offset(n.as_f64().unwrap_or(0.0)))
            }
            _ => Err(here
                .index(i)
                .err("expects \"unbounded\", \"current\" or a number")),
        }
    };
    let (lo, hi) = (bound(lo, 0)?, bound(hi, 1)?);
    Ok(if kind == "documents" {
        Window::Documents(lo, hi)
    } else {
        Window::Range(lo, hi, unit)
    })
}

/// A time unit of a window (`week` … `millisecond`; `month`, `quarter`, `year` too for range
/// windows, which step by calendar months).
fn parse_unit(v: &Value, at: &JsonPath, fixed_only: bool) -> Result<Unit> {
    let unit = v
        .as_str()
        .and_then(Unit::parse)
        .ok_or_else(|| at.err(format!("expects a time unit ({})", Unit::NAMES)))?;
    if fixed_only && unit.millis().is_none() {
        return Err(
            at.err("expects a unit of fixed length (week, day, hour, minute, second, millisecond)")
        );
    }
    Ok(unit)
}

/// `$fill: {"partitionBy", "sortBy", "output": {"f": {"value": expr} | {"method": "locf"}}}`:
/// `value` fills are a `$set` of `$ifNull`, `locf` fills a `$setWindowFields`.
pub fn parse_fill(v: &Value, at: &JsonPath) -> Result<Vec<Stage>> {
    let Value::Object(map) = v else {
        return Err(at.err("$fill expects {\"sortBy\", \"partitionBy\", \"output\"}"));
    };
    if let Some(k) = map.keys().find(|k| {
        !matches!(
            k.as_str(),
            "partitionBy" | "partitionByFields" | "sortBy" | "output"
        )
    }) {
        return Err(at.key(k).err(format!("unknown $fill option \"{k}\"")));
    }
    let (mut partition_by, sort_by) = partition_and_sort(map, at)?;
    if let Some(fields) = map.get("partitionByFields") {
        let here = at.key("partitionByFields");
        if partition_by.is_some() {
            return Err(here.err("give either partitionBy or partitionByFields, not both"));
        }
        let Value::Array(names) = fields else {
            return Err(here.err("expects an array of field names"));
        };
        // Partitioning by several fields is partitioning by the document of them.
        let mut members = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let Value::String(n) = n else {
                return Err(here.index(i).err("expects a field name"));
            };
            let path = FieldPath::parse(n, &here.index(i))?;
            members.push((format!("f{i}"), Expression::Field(path)));
        }
        if members.is_empty() {
            return Err(here.err("expects at least one field name"));
        }
        partition_by = Some(Expression::Document(members));
    }
    let Some(Value::Object(outputs)) = map.get("output") else {
        return Err(at.err("$fill requires an output document"));
    };
    let (mut values, mut locf) = (Vec::new(), Vec::new());
    for (name, spec) in outputs {
        let here = at.key("output").key(name);
        let field = FieldPath::parse(name, &here)?;
        match spec {
            Value::Object(m) if m.len() == 1 && m.contains_key("value") => {
                let value = Expression::parse(&m["value"], &here.key("value"))?;
                let filled = Expression::Operator(Operator {
                    name: "$ifNull",
                    family: Family::Conditional,
                    args: vec![Expression::Field(field.clone()), value],
                    path: here.clone(),
                });
                values.push((field, filled));
            }
            Value::Object(m)
                if m.len() == 1 && m.get("method") == Some(&Value::String("locf".into())) =>
            {
                if sort_by.is_empty() {
                    return Err(here.err("method \"locf\" requires sortBy"));
                }
                if name.contains('.') {
                    return Err(here.err("locf on a nested field is not supported yet"));
                }
                locf.push(WindowOutput {
                    name: name.clone(),
                    op: WindowOp::Locf(Expression::Field(field)),
                    window: None,
                    path: here.clone(),
                });
            }
            Value::Object(m)
                if m.len() == 1 && m.get("method") == Some(&Value::String("linear".into())) =>
            {
                if sort_by.len() != 1 {
                    return Err(here.err("method \"linear\" requires sortBy on exactly one field"));
                }
                if name.contains('.') {
                    return Err(here.err("linear fill of a nested field is not supported"));
                }
                locf.push(WindowOutput {
                    name: name.clone(),
                    op: WindowOp::Linear(Expression::Field(field)),
                    window: None,
                    path: here.clone(),
                });
            }
            Value::Object(m) if m.contains_key("method") => {
                return Err(here
                    .key("method")
                    .err("expects method \"locf\" or \"linear\""));
            }
            _ => {
                return Err(here.err("expects {\"value\": <expression>} or {\"method\": \"locf\"}"));
            }
        }
    }
    let mut stages = Vec::new();
    if !locf.is_empty() {
        stages.push(Stage {
            kind: StageKind::SetWindowFields(SetWindowFields {
                partition_by,
                sort_by,
                output: locf,
            }),
            path: at.clone(),
        });
    }
    if !values.is_empty() {
        stages.push(Stage {
            kind: StageKind::AddFields(assignments(values, at)?),
            path: at.clone(),
        });
    }
    if stages.is_empty() {
        return Err(at.key("output").err("expects at least one field"));
    }
    Ok(stages)
}
