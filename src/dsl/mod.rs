//! The JSON stage DSL: a pipeline document parsed into a typed AST.
//!
//! A pipeline is a JSON array of stages, or an object `{"pipeline": [...]}`. Each stage is an
//! object with exactly one key naming the stage. Parsing checks the grammar and reports the
//! first problem with its JSON path (`pipeline[1].$group.total: unknown accumulator "$summ"`);
//! it knows nothing about the input's schema — that is the planner's job.

pub mod accumulator;
pub mod enrich;
pub mod expression;
pub mod group;
pub mod path;
pub mod project;
pub mod query;
pub mod reshape;
pub mod rule_set;
pub mod set_window_fields;
pub mod sort;
pub mod stream_window;
pub mod unwind;

use serde_json::Value;

pub use expression::Expression;
pub use path::{FieldPath, JsonPath};

use crate::Result;

/// A parsed pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub stages: Vec<Stage>,
}

/// One stage and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub kind: StageKind,
    /// Path of the stage's operand, e.g. `pipeline[1].$group`.
    pub path: JsonPath,
}

/// The stages the DSL supports.
#[derive(Debug, Clone, PartialEq)]
pub enum StageKind {
    Match(query::Query),
    Project(project::Projection),
    AddFields(project::Tree),
    Unset(project::Tree),
    Group(group::Group),
    Sort(Vec<sort::SortKey>),
    Limit(u64),
    Skip(u64),
    Count(String),
    Unwind(unwind::Unwind),
    ReplaceRoot(Expression),
    Sample(reshape::Sample),
    BucketAuto(reshape::BucketAuto),
    Densify(reshape::Densify),
    /// `$sampleRate`: each document kept with this probability (seeded, repeatable).
    SampleRate(f64),
    UnionWith(reshape::UnionWith),
    Lookup(reshape::Lookup),
    /// `$facet`: named sub-pipelines over the same input, each collected into an array.
    Facet(Vec<(String, Pipeline)>),
    SetWindowFields(set_window_fields::SetWindowFields),
    /// `$rules`: a rule set's decision for each document.
    Rules(rule_set::RulesStage),
    /// `$tumblingWindow` / `$hoppingWindow`: windows of a stream (`runtime::window`).
    StreamWindow(stream_window::StreamWindow),
}

impl Pipeline {
    /// Parses a pipeline from JSON text.
    pub fn from_json_str(text: &str) -> Result<Pipeline> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| JsonPath::root().err(format!("not valid JSON: {e}")))?;
        Pipeline::from_value(&v)
    }

    /// Parses a pipeline from a JSON value: an array of stages or `{"pipeline": [...]}`.
    pub fn from_value(v: &Value) -> Result<Pipeline> {
        Pipeline::parse_at(v, &JsonPath::root())
    }

    /// Parses a pipeline found at `root` (a sub-pipeline names its place in errors).
    pub fn parse_at(v: &Value, root: &JsonPath) -> Result<Pipeline> {
        let root = root.clone();
        let stages = match v {
            Value::Array(stages) => stages,
            Value::Object(map) => match map.get("pipeline") {
                Some(Value::Array(stages)) => stages,
                Some(_) => return Err(root.err("expected an array of stages")),
                None => {
                    return Err(
                        root.err("expected an array of stages or an object {\"pipeline\": [...]}")
                    );
                }
            },
            _ => return Err(root.err("expected an array of stages")),
        };
        let mut parsed = Vec::with_capacity(stages.len());
        for (i, s) in stages.iter().enumerate() {
            parsed.extend(parse_stage(s, &root.index(i))?);
        }
        Ok(Pipeline { stages: parsed })
    }
}

impl Pipeline {
    /// The other inputs this pipeline reads (`$lookup` `from`, `$unionWith` `coll`).
    pub fn inputs(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.stages {
            match &s.kind {
                StageKind::Lookup(l) => {
                    out.push(l.from.clone());
                    if let Some(p) = &l.pipeline {
                        out.extend(p.inputs());
                    }
                }
                StageKind::UnionWith(u) => {
                    out.push(u.coll.clone());
                    if let Some(p) = &u.pipeline {
                        out.extend(p.inputs());
                    }
                }
                StageKind::Facet(facets) => facets.iter().for_each(|(_, p)| out.extend(p.inputs())),
                _ => {}
            }
        }
        out
    }
}

/// How one stage's operand is parsed: its name (for the aliases), operand and path.
type StageParser = fn(&str, &Value, &JsonPath) -> Result<Vec<Stage>>;

/// One stage at `path`.
fn one(kind: StageKind, path: &JsonPath) -> Result<Vec<Stage>> {
    Ok(vec![Stage {
        kind,
        path: path.clone(),
    }])
}

/// Every stage the DSL reads, and its parser: the one list (error messages name these).
pub static STAGES: &[(&str, StageParser)] = &[
    ("$rules", |_, v, p| {
        one(StageKind::Rules(rule_set::RulesStage::parse(v, p)?), p)
    }),
    ("$match", |_, v, p| {
        one(StageKind::Match(query::Query::parse(v, p)?), p)
    }),
    ("$project", |_, v, p| {
        one(StageKind::Project(project::Projection::parse(v, p)?), p)
    }),
    ("$addFields", |_, v, p| {
        one(StageKind::AddFields(project::parse_add_fields(v, p)?), p)
    }),
    ("$set", |_, v, p| {
        one(StageKind::AddFields(project::parse_add_fields(v, p)?), p)
    }),
    ("$unset", |_, v, p| {
        one(StageKind::Unset(project::parse_unset(v, p)?), p)
    }),
    ("$group", |_, v, p| {
        one(StageKind::Group(group::Group::parse(v, p)?), p)
    }),
    ("$sort", |_, v, p| {
        one(StageKind::Sort(sort::parse(v, p)?), p)
    }),
    ("$limit", |_, v, p| {
        one(StageKind::Limit(positive_int(v, p, "$limit")?), p)
    }),
    ("$skip", |_, v, p| {
        one(StageKind::Skip(non_negative_int(v, p, "$skip")?), p)
    }),
    ("$count", |_, v, p| {
        one(StageKind::Count(count_field(v, p)?), p)
    }),
    ("$unwind", |_, v, p| {
        one(StageKind::Unwind(unwind::Unwind::parse(v, p)?), p)
    }),
    ("$replaceRoot", replace_root),
    ("$replaceWith", replace_root),
    ("$sortByCount", |_, v, p| reshape::parse_sort_by_count(v, p)),
    ("$bucket", |_, v, p| reshape::parse_bucket(v, p)),
    ("$bucketAuto", |_, v, p| {
        one(StageKind::BucketAuto(reshape::BucketAuto::parse(v, p)?), p)
    }),
    ("$sample", |_, v, p| {
        one(StageKind::Sample(reshape::Sample::parse(v, p)?), p)
    }),
    ("$sampleRate", |_, v, p| match v.as_f64() {
        Some(r) if (0.0..=1.0).contains(&r) => one(StageKind::SampleRate(r), p),
        _ => Err(p.err("$sampleRate expects a number from 0 to 1")),
    }),
    ("$unionWith", |_, v, p| {
        one(StageKind::UnionWith(reshape::UnionWith::parse(v, p)?), p)
    }),
    ("$lookup", |_, v, p| {
        one(StageKind::Lookup(reshape::Lookup::parse(v, p)?), p)
    }),
    ("$facet", |_, v, p| {
        one(StageKind::Facet(reshape::parse_facet(v, p)?), p)
    }),
    ("$densify", |_, v, p| {
        one(StageKind::Densify(reshape::Densify::parse(v, p)?), p)
    }),
    ("$fill", |_, v, p| set_window_fields::parse_fill(v, p)),
    ("$setWindowFields", |_, v, p| {
        one(
            StageKind::SetWindowFields(set_window_fields::SetWindowFields::parse(v, p)?),
            p,
        )
    }),
    ("$tumblingWindow", window_stage),
    ("$hoppingWindow", window_stage),
    ("$sessionWindow", window_stage),
];

fn replace_root(name: &str, v: &Value, p: &JsonPath) -> Result<Vec<Stage>> {
    let (root, root_at) = reshape::parse_replace_root(name, v, p)?;
    Ok(vec![Stage {
        kind: StageKind::ReplaceRoot(root),
        path: root_at,
    }])
}

fn window_stage(name: &str, v: &Value, p: &JsonPath) -> Result<Vec<Stage>> {
    one(
        StageKind::StreamWindow(stream_window::StreamWindow::parse(name, v, p)?),
        p,
    )
}

/// Parses one stage; a few (`$sortByCount`, `$bucket`) are written as several.
fn parse_stage(v: &Value, at: &JsonPath) -> Result<Vec<Stage>> {
    let Value::Object(map) = v else {
        return Err(at.err("a stage must be an object with one key, e.g. {\"$match\": {...}}"));
    };
    let (Some((name, operand)), 1) = (map.iter().next(), map.len()) else {
        return Err(at.err(format!(
            "a stage must have exactly one key, found {}",
            map.len()
        )));
    };
    match STAGES.iter().find(|(n, _)| n == name) {
        Some((_, parse)) => parse(name, operand, &at.key(name)),
        None => {
            let names: Vec<&str> = STAGES.iter().map(|(n, _)| *n).collect();
            Err(at.err(format!(
                "unknown stage \"{name}\" (supported: {})",
                names.join(", ")
            )))
        }
    }
}

fn non_negative_int(v: &Value, at: &JsonPath, stage: &str) -> Result<u64> {
    v.as_u64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        })
        .ok_or_else(|| at.err(format!("{stage} expects a non-negative integer")))
}

fn positive_int(v: &Value, at: &JsonPath, stage: &str) -> Result<u64> {
    match non_negative_int(v, at, stage) {
        Ok(0) | Err(_) => Err(at.err(format!("{stage} expects a positive integer"))),
        Ok(n) => Ok(n),
    }
}

fn count_field(v: &Value, at: &JsonPath) -> Result<String> {
    match v {
        Value::String(s) if !s.is_empty() && !s.starts_with('$') && !s.contains('.') => {
            Ok(s.clone())
        }
        _ => Err(at.err(
            "$count expects a non-empty field name that does not start with '$' or contain '.'",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_array_and_object_forms() {
        let a = Pipeline::from_value(&json!([{"$limit": 5}])).unwrap();
        let b = Pipeline::from_value(&json!({"pipeline": [{"$limit": 5}]})).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.stages[0].kind, StageKind::Limit(5));
    }

    #[test]
    fn stage_errors_name_the_path() {
        let e = Pipeline::from_value(&json!([{"$limit": 1}, {"$grup": {}}])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pipeline[1]: unknown stage \"$grup\""),
            "{e}"
        );
        let e = Pipeline::from_value(&json!([{"$limit": -1}])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pipeline[0].$limit: $limit expects a positive integer"
        );
        let e = Pipeline::from_value(&json!([{"$match": {}, "$limit": 1}])).unwrap_err();
        assert!(e.to_string().contains("exactly one key"), "{e}");
        let e = Pipeline::from_value(&json!([{"$count": "$n"}])).unwrap_err();
        assert!(e.to_string().starts_with("pipeline[0].$count:"), "{e}");
        assert!(Pipeline::from_value(&json!(5)).is_err());
        assert!(Pipeline::from_json_str("[{").is_err());
    }
}
