//! The oracle corpus: every case in `tests/oracle/cases/*.json` runs through Fluxion and
//! through mingo (an independent implementation of MongoDB's aggregation language) over the
//! same documents, and the answers must agree (see `common::oracle::compare` for the rules).
//!
//! A case: `{"name", "data": "orders" | "sensors" | [docs…], "pipeline": [...],
//! "ordered": bool, "collections": {"table": "orders" | [docs…]}}`. Where MongoDB's
//! documentation and mingo disagree, the case carries `"mongodb": [expected docs]` (what
//! MongoDB returns) and `"why"`, and Fluxion is held to MongoDB's answer.
//!
//! `FLUXION_ORACLE_CASE=substring` runs only the matching cases.

mod common;

use std::path::Path;

use common::oracle::{Oracle, compare};
use fluxion::{Engine, Pipeline};
use serde_json::Value;

/// The documents of a dataset name or an inline array.
fn dataset(v: &Value) -> (String, Vec<Value>) {
    match v {
        Value::String(name) => {
            let path = Path::new("tests/oracle/data").join(format!("{name}.jsonl"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let docs = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            (text, docs)
        }
        Value::Array(docs) => {
            let text = docs.iter().map(|d| format!("{d}\n")).collect();
            (text, docs.clone())
        }
        other => panic!("data must be a dataset name or an array of documents, not {other}"),
    }
}

async fn run_fluxion(case: &Value, data: &str) -> Result<Vec<Value>, String> {
    let engine = Engine::new();
    engine
        .register_jsonl("input", data.as_bytes())
        .map_err(|e| e.to_string())?;
    if let Some(Value::Object(cols)) = case.get("collections") {
        for (name, v) in cols {
            let (text, _) = dataset(v);
            engine
                .register_jsonl(name, text.as_bytes())
                .map_err(|e| e.to_string())?;
        }
    }
    let pipeline = Pipeline::from_value(&case["pipeline"]).map_err(|e| e.to_string())?;
    common::collect(engine.pipeline("input", &pipeline).await)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_agrees_with_the_oracle() {
    let filter = std::env::var("FLUXION_ORACLE_CASE").ok();
    let mut files: Vec<_> = std::fs::read_dir("tests/oracle/cases")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut oracle = Oracle::start();
    let (mut total, mut failures) = (0, Vec::new());
    for file in &files {
        let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let stem = file.file_stem().unwrap().to_string_lossy().to_string();
        for case in &cases {
            let name = format!(
                "{stem}/{}",
                case["name"].as_str().expect("every case has a name")
            );
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            total += 1;
            let (text, docs) = dataset(&case["data"]);
            let collections: serde_json::Map<String, Value> = case
                .get("collections")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), Value::Array(dataset(v).1)))
                        .collect()
                })
                .unwrap_or_default();
            let expected = match case.get("mongodb") {
                Some(Value::Array(docs)) => Ok(docs.clone()),
                _ => oracle.aggregate(&docs, &case["pipeline"], &Value::Object(collections)),
            };
            let expected = match expected {
                Ok(d) => d,
                Err(e) => {
                    failures.push(format!("{name}: the oracle failed: {e}"));
                    continue;
                }
            };
            let ordered = case
                .get("ordered")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match run_fluxion(case, &text).await {
                Ok(got) => {
                    if let Err(diff) = compare(&got, &expected, ordered) {
                        failures.push(format!("{name}: {diff}"));
                    }
                }
                Err(e) => failures.push(format!("{name}: Fluxion failed: {e}")),
            }
        }
    }
    println!("{} of {total} oracle cases agree", total - failures.len());
    assert!(total > 0 || filter.is_some(), "no oracle cases found");
    assert!(
        failures.is_empty(),
        "{} of {total} cases disagree:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
