//! Replay: the pipeline run again in batch over the input a stream's last checkpoint covers,
//! and compared with what the stream committed — the proof that streaming gave the batch
//! answer (the same compiled plan runs in both).
//!
//! The source is read from its start to the checkpointed position, with the schema the stream
//! read with (kept in the checkpoint); records it cannot read are left out, as the stream left
//! them out (dead-lettered or skipped). The pipeline then runs once over all of it, as a batch
//! (`$group` as a plain `$group`, not the continuous one). If the stream dead-lettered
//! documents the pipeline failed on, the replay finds the same documents (by halving, with the
//! stages before the `$group`) and leaves them out too.
//!
//! Comparing: a pipeline with a `$group` wrote upserts, so the stream's answer is the last
//! document per `_id`, compared group by group; any other pipeline's output is compared
//! document by document, in order. Numbers match within 1e-9 relative (a continuous `$avg` is
//! a sum over a count, the batch one DataFusion's average; float sums differ in the last bits
//! with the order of addition).

use std::collections::BTreeMap;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::connect::source::{Position, Source};
use crate::dsl::Pipeline;
use crate::plan::order;
use crate::runtime::policy::error_policy::{ErrorPolicy, OnFailure};
use crate::runtime::query::{StreamQuery, run_once};
use crate::runtime::state::checkpoint::Checkpoint;
use crate::runtime::state::group::split_at_group;
use crate::runtime::window::WindowOperator;
use crate::{Engine, Error, Result};

const REPLAY: &str = crate::document::hidden::REPLAY_TABLE;

/// What a replay read and computed.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// Documents read (up to the checkpointed position).
    pub documents: u64,
    /// Records the source could not read (left out).
    pub unreadable: u64,
    /// Documents the pipeline fails on (left out, as the stream's `deadLetter` policy did),
    /// or a window found late or without an event time.
    pub failed: u64,
    /// The batch answer.
    pub output: Vec<RecordBatch>,
}

/// Runs `pipeline` in batch over what `source` (at its start) holds up to `checkpoint`'s
/// position; `progress(done, total)` is told how far it has read (in the source's lag units,
/// bytes of a file).
pub async fn replay(
    engine: &Engine,
    query: &StreamQuery,
    source: &mut dyn Source,
    checkpoint: &Checkpoint,
    policy: &ErrorPolicy,
    time_field: Option<&Value>,
    progress: &dyn Fn(u64, u64),
) -> Result<Replayed> {
    if let Some(schema) = &checkpoint.schema {
        source.resume_schema(schema.clone());
    }
    source.end_at(&Position(checkpoint.source.clone()))?;
    let total = source.lag().unwrap_or(0);
    let schema = source.schema();
    let mut batches = Vec::new();
    let mut partitions = Vec::new();
    let mut unreadable = 0u64;
    while let Some(b) = source.next_batch(1 << 16).await? {
        unreadable += b.rejected.len() as u64;
        match b.partitions {
            Some(p) => partitions.extend(p),
            None => partitions.extend(std::iter::repeat_n(0, b.batch.num_rows())),
        }
        if b.batch.num_rows() > 0 {
            batches.push(b.batch);
        }
        progress(total - source.lag().unwrap_or(0).min(total), total);
    }
    let input = concat_batches(&schema, &batches)?;
    let documents = input.num_rows() as u64;
    // Windows: the window operator over all of it as one batch, then the end of input (the
    // same per-document watermark decides the same late documents).
    let window = match query {
        StreamQuery::Pipeline(p) => WindowOperator::plan(p, time_field)?,
        StreamQuery::Sql { sql, table } => match crate::runtime::window::sql::parse(sql)? {
            Some(w) => Some(WindowOperator::plan_sql(&w, table)?),
            None => None,
        },
    };
    if let Some(mut w) = window {
        if w.processing_time() {
            return Err(Error::config(
                "replay",
                "processing-time windows cannot be replayed: which window a document fell in depends on when it was processed (boundary: \"eventTime\" replays)",
            ));
        }
        let input = crate::runtime::window::watermark::with_partitions(&input, Some(&partitions))?;
        order::register_ordered(
            engine.context(),
            REPLAY,
            input.schema(),
            vec![vec![input.clone()]],
        )?;
        // No idle time passes in a replay: the clock stands still.
        let out = w
            .step(engine, REPLAY, input.num_rows(), true, 0, &mut Vec::new())
            .await?;
        return Ok(Replayed {
            documents,
            unreadable,
            failed: (out.late.len() + out.untimed.len()) as u64,
            output: out.output,
        });
    }
    let first = run_once(engine, query, REPLAY, &input, 0, &mut Vec::new()).await;
    let (output, failed) = match first {
        Ok(out) => (out, 0),
        Err(e) if policy.on_failure == OnFailure::DeadLetter => {
            // Find the documents the stream dead-lettered, run without them.
            let bad = failing_documents(engine, query, &input).await?;
            let keep: Vec<usize> = (0..input.num_rows()).filter(|i| !bad.contains(i)).collect();
            let kept = datafusion::arrow::compute::take_record_batch(
                &input,
                &datafusion::arrow::array::UInt64Array::from_iter_values(
                    keep.iter().map(|&i| i as u64),
                ),
            )?;
            let out = run_once(engine, query, REPLAY, &kept, 0, &mut Vec::new())
                .await
                .map_err(|again| {
                    Error::config(
                        "replay",
                        format!("the batch run fails ({e}), and again without the documents that fail one by one ({again})"),
                    )
                })?;
            (out, bad.len() as u64)
        }
        Err(e) => {
            return Err(Error::config(
                "replay",
                format!(
                    "the batch run fails: {e} (with errorPolicy skip the stream dropped whole micro-batches, which a batch run cannot reproduce)"
                ),
            ));
        }
    };
    Ok(Replayed {
        documents,
        unreadable,
        failed,
        output,
    })
}

/// The rows of `input` that the stages before a `$group` (or the SQL) fail on, found by
/// halving.
async fn failing_documents(
    engine: &Engine,
    query: &StreamQuery,
    input: &RecordBatch,
) -> Result<Vec<usize>> {
    let prefix = match query {
        StreamQuery::Pipeline(p) => match split_at_group(p) {
            Some((before, _, _)) => StreamQuery::Pipeline(Pipeline {
                stages: before.to_vec(),
            }),
            None => query.clone(),
        },
        StreamQuery::Sql { .. } => query.clone(),
    };
    let mut bad = Vec::new();
    let mut todo = vec![(0usize, input.num_rows())];
    while let Some((offset, len)) = todo.pop() {
        let part = input.slice(offset, len);
        let ok = run_once(
            engine,
            &prefix,
            REPLAY,
            &part,
            offset as i64,
            &mut Vec::new(),
        )
        .await
        .is_ok();
        match (ok, len) {
            (true, _) => {}
            (false, 1) => bad.push(offset),
            (false, _) => {
                let half = len / 2;
                todo.push((offset + half, len - half));
                todo.push((offset, half));
            }
        }
    }
    Ok(bad)
}

/// One way the stream's answer and the batch answer differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// The group's `_id` (upserts) or the document's index (in order).
    pub key: String,
    /// What the stream committed, if anything.
    pub committed: Option<Value>,
    /// What the batch run gives, if anything.
    pub replayed: Option<Value>,
}

/// Compares what a stream committed with the batch answer: group by group (the last upsert
/// per `_id`) when `upserts`, else document by document.
pub fn compare(committed: &[Value], replayed: &[Value], upserts: bool) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut differ = |key: String, c: Option<&Value>, r: Option<&Value>| {
        let same = match (c, r) {
            (Some(c), Some(r)) => same_value(c, r),
            (None, None) => true,
            _ => false,
        };
        if !same {
            out.push(Difference {
                key,
                committed: c.cloned(),
                replayed: r.cloned(),
            });
        }
    };
    if upserts {
        let by_id = |docs: &[Value]| -> BTreeMap<String, Value> {
            docs.iter()
                .map(|d| {
                    let id = d.get("_id").cloned().unwrap_or(Value::Null);
                    (id.to_string(), d.clone())
                })
                .collect()
        };
        let (c, r) = (by_id(committed), by_id(replayed));
        let keys: std::collections::BTreeSet<&String> = c.keys().chain(r.keys()).collect();
        for k in keys {
            differ(format!("_id {k}"), c.get(k), r.get(k));
        }
    } else {
        for i in 0..committed.len().max(replayed.len()) {
            differ(format!("document {i}"), committed.get(i), replayed.get(i));
        }
    }
    out
}

/// Equal JSON values, whatever the order of object fields; numbers within 1e-9 relative or
/// 1e-7 absolute (float sums differ in the last bits with the order of addition, and sliding
/// windows that add and retract values can leave 1e-9 where exact arithmetic gives 0).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => {
                x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()) || (x - y).abs() < 1e-7
            }
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upserts_compare_by_last_document_per_id() {
        let committed = [
            json!({"_id": "a", "n": 1}),
            json!({"_id": "b", "n": 1}),
            json!({"_id": "a", "n": 2.0000000000001}),
        ];
        let replayed = [json!({"n": 2, "_id": "a"}), json!({"_id": "c", "n": 1})];
        let d = compare(&committed, &replayed, true);
        assert_eq!(
            d.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(),
            ["_id \"b\"", "_id \"c\""]
        );
        assert_eq!(d[0].replayed, None);
        assert!(compare(&committed[..1], &[json!({"_id": "a", "n": 1})], false).is_empty());
        let d = compare(&committed[..2], &committed[..1], false);
        assert_eq!((d.len(), d[0].key.as_str()), (1, "document 1"));
    }
}
