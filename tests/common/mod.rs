//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod http;
pub mod kafka;
pub mod oracle;
pub mod postgres;
pub mod s3;
pub mod service;

use datafusion::prelude::DataFrame;
use fluxion::document::encode::to_documents;
use fluxion::{Engine, Pipeline};
use serde_json::Value;

/// Runs a DataFrame and returns its documents as JSON values.
pub async fn collect(df: fluxion::Result<DataFrame>) -> fluxion::Result<Vec<Value>> {
    let batches = df?.collect().await.map_err(fluxion::Error::from)?;
    to_documents(&batches)
}

/// Runs `pipeline` over the JSON lines `docs`; returns the output documents.
pub async fn run(docs: &str, pipeline: Value) -> fluxion::Result<Vec<Value>> {
    let engine = Engine::new();
    engine.register_jsonl("input", docs.as_bytes())?;
    let p = Pipeline::from_value(&pipeline)?;
    collect(engine.pipeline("input", &p).await).await
}

/// The batch answer of a parsed pipeline over JSON lines (what streaming must reproduce).
pub async fn batch_result(data: &str, pipeline: &Pipeline) -> Vec<Value> {
    let engine = Engine::new();
    engine.register_jsonl("input", data.as_bytes()).unwrap();
    collect(engine.pipeline("input", pipeline).await)
        .await
        .unwrap()
}

/// The last upsert per `_id` of a continuous `$group`'s output (its groups' current values),
/// ordered by the `_id`'s JSON text.
pub fn last_per_id(upserts: impl IntoIterator<Item = Value>) -> Vec<Value> {
    let mut last = std::collections::BTreeMap::new();
    for d in upserts {
        last.insert(d["_id"].to_string(), d);
    }
    last.into_values().collect()
}

/// Asserts that the last upsert per `_id` of a continuous `$group`'s output equals the batch
/// `$group`'s answer, group for group.
pub fn assert_same_groups(upserts: impl IntoIterator<Item = Value>, batch: &[Value]) {
    let got = last_per_id(upserts);
    let mut expected = batch.to_vec();
    expected.sort_by_key(|d| d["_id"].to_string());
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert!(same_value(g, e), "{g}\n{e}");
    }
}

/// Like [`run`], sorting the output by its JSON text (for order-insensitive checks).
pub async fn run_sorted(docs: &str, pipeline: Value) -> Vec<Value> {
    let mut out = run(docs, pipeline).await.unwrap();
    out.sort_by_key(|v| v.to_string());
    out
}

/// Compares two document lists: same documents, same field order, numbers within 1e-9
/// relative; in order when `ordered`, as multisets otherwise.
pub fn same_documents(a: &[Value], b: &[Value], ordered: bool) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} documents vs {}", a.len(), b.len()));
    }
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    if !ordered {
        a.sort_by_key(|v| v.to_string());
        b.sort_by_key(|v| v.to_string());
    }
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        if !same_value(x, y) {
            return Err(format!("document {i}: {x} vs {y}"));
        }
    }
    Ok(())
}

/// Equal JSON values, numbers within 1e-9 relative or 1e-7 absolute (float sums differ in the last bits with
/// evaluation order); objects compare keys in order.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            // Sliding windows add and retract values, so a result that is 0 in exact arithmetic
            // can come out as 1e-9: an absolute tolerance of 1e-7 next to the relative one.
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()) || (x - y).abs() < 1e-7
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_value(vx, vy))
        }
        _ => a == b,
    }
}

/// Runs the job file `job` with the `fluxion` binary until it finishes, killing it with
/// SIGKILL after each of `kills` (ms after it started) and starting it again; returns how
/// many runs were killed before one finished.
pub fn run_with_kills(job: &std::path::Path, kills: &[u64]) -> usize {
    use std::process::{Command, Stdio};
    let mut killed = 0;
    for &after in kills {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fluxion"))
            .args(["run", job.to_str().unwrap()])
            .env("RUST_LOG", "fluxion=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(after));
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "the job failed: {status}");
                return killed;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                killed += 1;
            }
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_fluxion"))
        .args(["run", job.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    killed
}
