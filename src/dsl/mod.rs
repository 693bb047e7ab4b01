//! The JSON stage DSL: a pipeline document parsed into a typed AST.
//!
//! A pipeline is a JSON array of stages, or an object `{"pipeline": [...]}`. Each stage is an
//! object with exactly one key naming the stage. Parsing checks the grammar and reports the
//! first problem with its JSON path (`pipeline[1].$group.total: unknown accumulator "$summ"`);
//! it knows nothing about the input's schema — that is the planner's job.

pub mod expression;
pub mod group;
pub mod path;
pub mod project;
pub mod query;
pub mod reshape;
pub mod sort;
pub mod stream_window;
pub mod unwind;
pub mod window;

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
    SetWindowFields(window::SetWindowFields),
    /// `$tumblingWindow` / `$hoppingWindow`: windows of a stream (`runtime::window_state`).
    StreamWindow(stream_window::StreamWindow),
}

/// Names of all stages, for error messages.
pub static STAGES: &[&str] = &[
    "$match",
    "$project",
    "$addFields",
    "$set",
    "$unset",
    "$group",
    "$sort",
    "$limit",
    "$skip",
    "$count",
    "$unwind",
    "$replaceRoot",
    "$replaceWith",
    "$sortByCount",
    "$bucket",
    "$sample",
    "$sampleRate",
    "$unionWith",
    "$lookup",
    "$facet",
    "$setWindowFields",
    "$fill",
    "$tumblingWindow",
    "$hoppingWindow",
    "$sessionWindow",
];

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

/// Parses one stage; a few (`$sortByCount`, `$bucket`) are written as several.
fn parse_stage(v: &Value, at: &JsonPath) -> Result<Vec<Stage>> {
    let Value::Object(map) = v else {
        return Err(at.err("a stage must be an object with one key, e.g. {\"$match\": {...}}"));
    };
    if map.len() != 1 {
        return Err(at.err(format!(
            "a stage must have exactly one key, found {}",
            map.len()
        )));
    }
    let (name, operand) = map.iter().next().expect("one key");
    let path = at.key(name);
    let kind = match name.as_str() {
        "$match" => StageKind::Match(query::Query::parse(operand, &path)?),
        "$project" => StageKind::Project(project::Projection::parse(operand, &path)?),
        "$addFields" | "$set" => StageKind::AddFields(project::parse_add_fields(operand, &path)?),
        "$unset" => StageKind::Unset(project::parse_unset(operand, &path)?),
        "$group" => StageKind::Group(group::Group::parse(operand, &path)?),
        "$sort" => StageKind::Sort(sort::parse(operand, &path)?),
        "$limit" => StageKind::Limit(positive_int(operand, &path, "$limit")?),
        "$skip" => StageKind::Skip(non_negative_int(operand, &path, "$skip")?),
        "$count" => StageKind::Count(count_field(operand, &path)?),
        "$unwind" => StageKind::Unwind(unwind::Unwind::parse(operand, &path)?),
        "$replaceRoot" | "$replaceWith" => {
            let (root, root_at) = reshape::parse_replace_root(name, operand, &path)?;
            return Ok(vec![Stage {
                kind: StageKind::ReplaceRoot(root),
                path: root_at,
            }]);
        }
        "$sortByCount" => return reshape::parse_sort_by_count(operand, &path),
        "$bucket" => return reshape::parse_bucket(operand, &path),
        "$sample" => StageKind::Sample(reshape::Sample::parse(operand, &path)?),
        "$bucketAuto" => StageKind::BucketAuto(reshape::BucketAuto::parse(operand, &path)?),
        "$densify" => StageKind::Densify(reshape::Densify::parse(operand, &path)?),
        "$sampleRate" => match operand.as_f64() {
            Some(r) if (0.0..=1.0).contains(&r) => StageKind::SampleRate(r),
            _ => return Err(path.err("$sampleRate expects a number from 0 to 1")),
        },
        "$unionWith" => StageKind::UnionWith(reshape::UnionWith::parse(operand, &path)?),
        "$lookup" => StageKind::Lookup(reshape::Lookup::parse(operand, &path)?),
        "$facet" => StageKind::Facet(reshape::parse_facet(operand, &path)?),
        "$fill" => return window::parse_fill(operand, &path),
        "$tumblingWindow" | "$hoppingWindow" | "$sessionWindow" => {
            StageKind::StreamWindow(stream_window::StreamWindow::parse(name, operand, &path)?)
        }
        "$setWindowFields" => {
            StageKind::SetWindowFields(window::SetWindowFields::parse(operand, &path)?)
        }
        other => {
            return Err(at.err(format!(
                "unknown stage \"{other}\" (supported: {})",
                STAGES.join(", ")
            )));
        }
    };
    Ok(vec![Stage { kind, path }])
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
