//! Stages that reshape or combine documents: `$replaceRoot` / `$replaceWith`, `$sortByCount`
//! and `$bucket` (both written as `$group` + `$sort`), `$bucketAuto`, `$sample`, `$unionWith`,
//! `$lookup`.

use serde_json::{Value, json};

use super::expression::Expression;
use super::group::Group;
use super::path::{FieldPath, JsonPath};
use super::sort::{self, SortKey};
use super::{Pipeline, Stage, StageKind};
use crate::Result;

/// `$replaceRoot: {"newRoot": expr}` or `$replaceWith: expr`: the expression and its path.
pub fn parse_replace_root(name: &str, v: &Value, at: &JsonPath) -> Result<(Expression, JsonPath)> {
    if name == "$replaceWith" {
        return Ok((Expression::parse(v, at)?, at.clone()));
    }
    match v {
        Value::Object(map) if map.len() == 1 && map.contains_key("newRoot") => {
            let here = at.key("newRoot");
            Ok((Expression::parse(&map["newRoot"], &here)?, here))
        }
        _ => Err(at.err("$replaceRoot expects {\"newRoot\": <expression>}")),
    }
}

/// `$sortByCount: expr` is `{$group: {_id: expr, count: {$sum: 1}}}, {$sort: {count: -1}}`.
pub fn parse_sort_by_count(v: &Value, at: &JsonPath) -> Result<Vec<Stage>> {
    if let Value::Object(m) = v
        && !m.keys().all(|k| k.starts_with('$'))
    {
        return Err(at.err("$sortByCount expects an expression such as \"$field\""));
    }
    Expression::parse(v, at)?;
    let group = Group::parse(&json!({"_id": v, "count": {"$sum": 1}}), at)?;
    Ok(vec![
        Stage {
            kind: StageKind::Group(group),
            path: at.clone(),
        },
        Stage {
            kind: StageKind::Sort(descending("count", at)?),
            path: at.clone(),
        },
    ])
}

fn descending(field: &str, at: &JsonPath) -> Result<Vec<SortKey>> {
    sort::parse(&json!({ field: -1 }), at)
}

/// `$bucket: {groupBy, boundaries, default, output}` is a `$group` whose `_id` is the lower
/// boundary of the bucket (a `$switch`), then a `$sort` on `_id`.
pub fn parse_bucket(v: &Value, at: &JsonPath) -> Result<Vec<Stage>> {
    let Value::Object(map) = v else {
        return Err(
            at.err("$bucket expects {\"groupBy\", \"boundaries\", \"default\", \"output\"}")
        );
    };
    if let Some(k) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "groupBy" | "boundaries" | "default" | "output"))
    {
        return Err(at.key(k).err(format!(
            "unknown $bucket option \"{k}\" (expected groupBy, boundaries, default, output)"
        )));
    }
    let Some(group_by) = map.get("groupBy") else {
        return Err(at.err("$bucket requires groupBy"));
    };
    Expression::parse(group_by, &at.key("groupBy"))?;
    let bounds_at = at.key("boundaries");
    let bounds = match map.get("boundaries") {
        Some(Value::Array(b)) if b.len() >= 2 => b,
        _ => return Err(bounds_at.err("expects an array of at least two ascending constants")),
    };
    let class = |v: &Value| match v {
        Value::Number(_) => 1,
        Value::String(_) => 2,
        _ => 0,
    };
    if bounds
        .iter()
        .any(|b| class(b) == 0 || class(b) != class(&bounds[0]))
    {
        return Err(bounds_at.err("boundaries must be all numbers or all strings"));
    }
    let ascending = bounds.windows(2).all(|w| match (&w[0], &w[1]) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() < b.as_f64(),
        (Value::String(a), Value::String(b)) => a < b,
        _ => false,
    });
    if !ascending {
        return Err(bounds_at.err("boundaries must be in ascending order"));
    }
    // A default of another type than the boundaries (`"default": "Other"` with numbers, as in
    // MongoDB's own example): the bucket `_id` column takes the widening rule's type for mixed
    // values, text — strings as they are, other values as their JSON text — and the buckets
    // are sorted by a hidden bucket number in MongoDB's order (numbers before strings).
    let mixed = map.get("default").filter(|d| class(d) != class(&bounds[0]));
    let as_text = |v: &Value| match v {
        Value::String(_) => v.clone(),
        other => json!({"$literal": other.to_string()}),
    };
    // Bucket i holds boundaries[i] <= groupBy < boundaries[i + 1].
    let case =
        |w: &[Value]| json!({"$and": [{"$gte": [group_by, w[0]]}, {"$lt": [group_by, w[1]]}]});
    let branches: Vec<Value> = bounds
        .windows(2)
        .map(|w| {
            let then = match mixed {
                Some(_) => as_text(&w[0]),
                None => w[0].clone(),
            };
            json!({"case": case(w), "then": then})
        })
        .collect();
    let mut switch = json!({"branches": branches});
    if let Some(d) = map.get("default") {
        switch["default"] = match mixed {
            Some(_) => as_text(d),
            None => d.clone(),
        };
    }
    let mut spec = match map.get("output") {
        Some(Value::Object(o)) => Value::Object(o.clone()),
        Some(_) => return Err(at.key("output").err("expects a document of accumulators")),
        None => json!({"count": {"$sum": 1}}),
    };
    if spec.get("_id").is_some() {
        return Err(at
            .key("output")
            .key("_id")
            .err("output cannot set _id (it is the bucket's boundary)"));
    }
    spec["_id"] = json!({ "$switch": switch });
    let order_key = BUCKET;
    if let Some(d) = mixed {
        // BSON order: null < numbers < strings < objects < arrays < booleans.
        let rank = |v: &Value| match v {
            Value::Null => 0,
            Value::Number(_) => 1,
            Value::String(_) => 2,
            Value::Object(_) => 3,
            Value::Array(_) => 4,
            Value::Bool(_) => 5,
        };
        let n = bounds.len() as i64;
        let default_at = if rank(d) < rank(&bounds[0]) { -1 } else { n };
        let numbered: Vec<Value> = bounds
            .windows(2)
            .enumerate()
            .map(|(i, w)| json!({"case": case(w), "then": i}))
            .collect();
        spec[order_key] =
            json!({"$min": {"$switch": {"branches": numbered, "default": default_at}}});
    }
    let group = Group::parse(&spec, &at.key("output"))?;
    // Documents outside every bucket and without a default are dropped (MongoDB: an error).
    let keep = json!({"_id": {"$ne": null}});
    let sort_by = match mixed {
        Some(_) => json!({ order_key: 1 }),
        None => json!({"_id": 1}),
    };
    let mut stages = vec![
        Stage {
            kind: StageKind::Group(group),
            path: at.clone(),
        },
        Stage {
            kind: StageKind::Match(super::query::Query::parse(&keep, at)?),
            path: at.clone(),
        },
        Stage {
            kind: StageKind::Sort(sort::parse(&sort_by, at)?),
            path: at.clone(),
        },
    ];
    if mixed.is_some() {
        stages.push(Stage {
            kind: StageKind::Unset(super::project::parse_unset(&json!(order_key), at)?),
            path: at.clone(),
        });
    }
    Ok(stages)
}

/// `$sample: {"size": n, "seed": s}`: `n` documents chosen by a seeded hash, so the same input
/// and seed give the same sample (MongoDB's is random; `seed` is Fluxion's, default 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub size: u64,
    pub seed: u64,
}

impl Sample {
    pub fn parse(v: &Value, at: &JsonPath) -> Result<Sample> {
        let Value::Object(map) = v else {
            return Err(at.err("$sample expects {\"size\": n}"));
        };
        if let Some(k) = map.keys().find(|k| !matches!(k.as_str(), "size" | "seed")) {
            return Err(at.key(k).err(format!(
                "unknown $sample option \"{k}\" (expected size, seed)"
            )));
        }
        let size = map
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| at.key("size").err("expects a non-negative integer"))?;
        let seed = match map.get("seed") {
            None => 0,
            Some(s) => s
                .as_u64()
                .ok_or_else(|| at.key("seed").err("expects a non-negative integer"))?,
        };
        Ok(Sample { size, seed })
    }
}

/// `$unionWith: "coll"` or `{"coll", "pipeline"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct UnionWith {
    pub coll: String,
    pub pipeline: Option<Pipeline>,
}

impl UnionWith {
    pub fn parse(v: &Value, at: &JsonPath) -> Result<UnionWith> {
        match v {
            Value::String(coll) => Ok(UnionWith {
                coll: coll.clone(),
                pipeline: None,
            }),
            Value::Object(map) => {
                if let Some(k) = map
                    .keys()
                    .find(|k| !matches!(k.as_str(), "coll" | "pipeline"))
                {
                    return Err(at.key(k).err(format!(
                        "unknown $unionWith option \"{k}\" (expected coll, pipeline)"
                    )));
                }
                let Some(Value::String(coll)) = map.get("coll") else {
                    return Err(at.err("$unionWith requires \"coll\", the name of an input"));
                };
                let pipeline = map
                    .get("pipeline")
                    .map(|p| Pipeline::parse_at(p, &at.key("pipeline")))
                    .transpose()?;
                Ok(UnionWith {
                    coll: coll.clone(),
                    pipeline,
                })
            }
            _ => Err(at.err("$unionWith expects an input name or {\"coll\", \"pipeline\"}")),
        }
    }
}

/// `$lookup: {"from", "localField", "foreignField", "as"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    pub from: String,
    /// `localField` / `foreignField`, when given.
    pub keys: Option<(FieldPath, FieldPath)>,
    /// `let`: variables over the input document for the pipeline.
    pub lets: Vec<(String, Expression)>,
    /// `pipeline`: run over the foreign documents (with `let`'s variables).
    pub pipeline: Option<Pipeline>,
    pub as_field: FieldPath,
}

impl Lookup {
    pub fn parse(v: &Value, at: &JsonPath) -> Result<Lookup> {
        let Value::Object(map) = v else {
            return Err(at.err(
                "$lookup expects {\"from\", \"localField\", \"foreignField\", \"as\"} or {\"from\", \"let\", \"pipeline\", \"as\"}",
            ));
        };
        if let Some(k) = map.keys().find(|k| {
            !matches!(
                k.as_str(),
                "from" | "localField" | "foreignField" | "as" | "let" | "pipeline"
            )
        }) {
            return Err(at.key(k).err(format!(
                "unknown $lookup option \"{k}\" (expected from, localField, foreignField, let, pipeline, as)"
            )));
        }
        let text = |k: &str| match map.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(at.key(k).err("expects a string")),
        };
        let keys = match (map.get("localField"), map.get("foreignField")) {
            (None, None) => None,
            (Some(_), Some(_)) => Some((
                FieldPath::parse(&text("localField")?, &at.key("localField"))?,
                FieldPath::parse(&text("foreignField")?, &at.key("foreignField"))?,
            )),
            _ => return Err(at.err("localField and foreignField go together")),
        };
        let lets = match map.get("let") {
            None => Vec::new(),
            Some(Value::Object(vars)) => vars
                .iter()
                .map(|(k, e)| {
                    let here = at.key("let").key(k);
                    if !k.starts_with(|c: char| c.is_ascii_lowercase()) {
                        return Err(here.err("variable names start with a lower-case letter"));
                    }
                    Ok((k.clone(), Expression::parse(e, &here)?))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(at.key("let").err("expects a document of variables")),
        };
        let pipeline = map
            .get("pipeline")
            .map(|p| Pipeline::parse_at(p, &at.key("pipeline")))
            .transpose()?;
        if !lets.is_empty() && pipeline.is_none() {
            return Err(at
                .key("let")
                .err("let needs a pipeline that uses its variables"));
        }
        if keys.is_none() && pipeline.is_none() {
            return Err(at.err("$lookup needs localField/foreignField or a pipeline"));
        }
        Ok(Lookup {
            from: text("from")?,
            keys,
            lets,
            pipeline,
            as_field: FieldPath::parse(&text("as")?, &at.key("as"))?,
        })
    }
}

/// `$bucketAuto: {"groupBy", "buckets", "output"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketAuto {
    pub group_by: Expression,
    pub buckets: u64,
    /// The `$group` of the buckets: `_id` is the bucket number, the fields are `output`'s.
    pub group: Group,
}

/// The column holding the bucket number, and the one holding the `groupBy` value.
pub use crate::document::hidden::{BUCKET, BUCKET_KEY};

impl BucketAuto {
    pub fn parse(v: &Value, at: &JsonPath) -> Result<BucketAuto> {
        let Value::Object(map) = v else {
            return Err(at.err("$bucketAuto expects {\"groupBy\", \"buckets\", \"output\"}"));
        };
        if let Some(k) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "groupBy" | "buckets" | "output" | "granularity"))
        {
            return Err(at.key(k).err(format!(
                "unknown $bucketAuto option \"{k}\" (expected groupBy, buckets, output)"
            )));
        }
        if map.contains_key("granularity") {
            return Err(at
                .key("granularity")
                .err("granularity (preferred-number boundaries) is not supported"));
        }
        let group_by = match map.get("groupBy") {
            Some(g) => Expression::parse(g, &at.key("groupBy"))?,
            None => return Err(at.err("$bucketAuto requires groupBy")),
        };
        let buckets = match map.get("buckets").and_then(Value::as_u64) {
            Some(b) if b > 0 => b,
            _ => return Err(at.key("buckets").err("expects a positive integer")),
        };
        let mut spec = match map.get("output") {
            Some(Value::Object(o)) => o.clone(),
            Some(_) => return Err(at.key("output").err("expects a document of accumulators")),
            None => {
                let mut m = serde_json::Map::new();
                m.insert("count".into(), json!({"$sum": 1}));
                m
            }
        };
        spec.insert("_id".into(), json!(format!("${BUCKET}")));
        // The bucket's bounds come from its keys.
        spec.insert(
            format!("{BUCKET}_min"),
            json!({"$min": format!("${BUCKET_KEY}")}),
        );
        spec.insert(
            format!("{BUCKET}_max"),
            json!({"$max": format!("${BUCKET_KEY}")}),
        );
        let group = Group::parse(&Value::Object(spec), &at.key("output"))?;
        Ok(BucketAuto {
            group_by,
            buckets,
            group,
        })
    }
}

/// `$densify: {"field", "partitionByFields", "range": {"step", "unit", "bounds"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Densify {
    /// The (top-level) field whose sequence is filled.
    pub field: String,
    pub partition_by: Vec<String>,
    pub step: f64,
    /// For a date field: the unit of `step`.
    pub unit: Option<crate::udf::calendar::Unit>,
    pub bounds: DensifyBounds,
}

/// `range.bounds` of `$densify`.
#[derive(Debug, Clone, PartialEq)]
pub enum DensifyBounds {
    /// From the smallest to the largest value of the whole input.
    Full,
    /// From the smallest to the largest value of each partition.
    Partition,
    /// `[lower, upper)`: constants (numbers, or dates for a date field).
    Range(Value, Value),
}

impl Densify {
    pub fn parse(v: &Value, at: &JsonPath) -> Result<Densify> {
        let Value::Object(map) = v else {
            return Err(at.err("$densify expects {\"field\", \"partitionByFields\", \"range\"}"));
        };
        if let Some(k) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "field" | "partitionByFields" | "range"))
        {
            return Err(at.key(k).err(format!(
                "unknown $densify option \"{k}\" (expected field, partitionByFields, range)"
            )));
        }
        let top_level = |v: &Value, here: &JsonPath| -> Result<String> {
            match v {
                Value::String(s) if !s.is_empty() && !s.contains('.') && !s.starts_with('$') => {
                    Ok(s.clone())
                }
                Value::String(_) => {
                    Err(here
                        .err("expects a top-level field name (nested fields are not supported)"))
                }
                _ => Err(here.err("expects a field name")),
            }
        };
        let field = match map.get("field") {
            Some(f) => top_level(f, &at.key("field"))?,
            None => return Err(at.err("$densify requires field")),
        };
        let partition_by = match map.get("partitionByFields") {
            None => Vec::new(),
            Some(Value::Array(names)) => names
                .iter()
                .enumerate()
                .map(|(i, n)| top_level(n, &at.key("partitionByFields").index(i)))
                .collect::<Result<_>>()?,
            Some(_) => {
                return Err(at
                    .key("partitionByFields")
                    .err("expects an array of field names"));
            }
        };
        let here = at.key("range");
        let Some(Value::Object(range)) = map.get("range") else {
            return Err(here.err("expects {\"step\", \"bounds\", \"unit\"}"));
        };
        if let Some(k) = range
            .keys()
            .find(|k| !matches!(k.as_str(), "step" | "unit" | "bounds"))
        {
            return Err(here.key(k).err(format!("unknown range option \"{k}\"")));
        }
        let step = match range.get("step").and_then(Value::as_f64) {
            Some(s) if s > 0.0 => s,
            _ => return Err(here.key("step").err("expects a positive number")),
        };
        let unit = match range.get("unit") {
            None => None,
            Some(u) => {
                let unit = u
                    .as_str()
                    .and_then(crate::udf::calendar::Unit::parse)
                    .ok_or_else(|| {
                        here.key("unit").err(format!(
                            "expects a time unit ({})",
                            crate::udf::calendar::Unit::NAMES
                        ))
                    })?;
                if step.fract() != 0.0 {
                    return Err(here
                        .key("step")
                        .err("a step in time units must be a whole number"));
                }
                Some(unit)
            }
        };
        let bounds = match range.get("bounds") {
            Some(Value::String(b)) if b == "full" => DensifyBounds::Full,
            Some(Value::String(b)) if b == "partition" => DensifyBounds::Partition,
            Some(Value::Array(pair)) if pair.len() == 2 => {
                super::expression::check_dates(&pair[0], &here.key("bounds").index(0))?;
                super::expression::check_dates(&pair[1], &here.key("bounds").index(1))?;
                DensifyBounds::Range(pair[0].clone(), pair[1].clone())
            }
            _ => {
                return Err(here
                    .key("bounds")
                    .err("expects \"full\", \"partition\" or [lower, upper]"));
            }
        };
        if bounds == DensifyBounds::Partition && partition_by.is_empty() {
            return Err(here
                .key("bounds")
                .err("\"partition\" bounds need partitionByFields"));
        }
        Ok(Densify {
            field,
            partition_by,
            step,
            unit,
            bounds,
        })
    }
}

/// `$facet: {"name": [stages…], …}`.
pub fn parse_facet(v: &Value, at: &JsonPath) -> Result<Vec<(String, Pipeline)>> {
    let Value::Object(map) = v else {
        return Err(at.err("$facet expects a document of named pipelines"));
    };
    if map.is_empty() {
        return Err(at.err("$facet requires at least one pipeline"));
    }
    map.iter()
        .map(|(name, p)| {
            let here = at.key(name);
            if name.starts_with('$') || name.contains('.') {
                return Err(here.err("a facet name must not start with '$' or contain '.'"));
            }
            if !p.is_array() {
                return Err(here.err("expects an array of stages"));
            }
            let pipeline = Pipeline::parse_at(p, &here)?;
            if let Some(s) = pipeline
                .stages
                .iter()
                .find(|s| matches!(s.kind, StageKind::Facet(_)))
            {
                return Err(s.path.err("$facet cannot contain another $facet"));
            }
            Ok((name.clone(), pipeline))
        })
        .collect()
}
