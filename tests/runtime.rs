//! The streaming micro-batch loop (`runtime::micro_batch`): streaming a pipeline in
//! micro-batches of any size gives the batch result, a stopped run resumes from its committed
//! position without loss or duplicates, and stages that need every document are rejected.

mod common;

use fluxion::connect::memory::{MemorySink, MemorySource};
use fluxion::connect::source::Source;
use fluxion::document::encode::to_documents;
use fluxion::runtime::micro_batch::{RuntimeOptions, run};
use fluxion::{Engine, Pipeline};
use serde_json::{Value, json};

const ORDERS: &str = "tests/oracle/data/orders.jsonl";

fn pipelines() -> Vec<Value> {
    vec![
        json!([{"$match": {"status": "PAID"}}, {"$project": {"customerId": 1, "orderValue": 1}}]),
        json!([{"$unwind": "$items"}, {"$addFields": {"line": {"$multiply": ["$items.qty", "$items.price"]}}},
               {"$match": {"line": {"$gt": 50}}}, {"$project": {"sku": "$items.sku", "line": 1}}]),
        json!([{"$set": {"tagCount": {"$size": "$tags"}, "month": {"$substrCP": ["$createdAt", 0, 7]}}},
               {"$unset": ["items", "flags"]}]),
        json!([{"$replaceRoot": {"newRoot": "$shipping"}}, {"$match": {"express": true}}]),
    ]
}

async fn batch_result(data: &str, pipeline: &Pipeline) -> Vec<Value> {
    let engine = Engine::new();
    engine.register_jsonl("input", data.as_bytes()).unwrap();
    common::collect(engine.pipeline("input", pipeline).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn any_micro_batch_size_gives_the_batch_result() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for p in pipelines() {
        let pipeline = Pipeline::from_value(&p).unwrap();
        let expected = batch_result(&data, &pipeline).await;
        for _ in 0..4 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let size = 1 + (seed >> 33) as usize % 40;
            let engine = Engine::new();
            let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
            let mut sink = MemorySink::default();
            let options = RuntimeOptions {
                micro_batch_size: size,
                ..Default::default()
            };
            let stats = run(&engine, &pipeline, &mut source, &mut sink, &options)
                .await
                .unwrap();
            assert_eq!(stats.input_rows, 80, "every document read");
            assert_eq!(stats.batches, 80u64.div_ceil(size as u64));
            let got = to_documents(&sink.committed).unwrap();
            assert_eq!(stats.output_rows as usize, got.len());
            assert_eq!(got, expected, "{p} in batches of {size}");
        }
    }
}

#[tokio::test]
async fn a_stopped_run_resumes_from_its_committed_position() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let pipeline = Pipeline::from_value(&pipelines()[1]).unwrap();
    let expected = batch_result(&data, &pipeline).await;
    let engine = Engine::new();
    let mut sink = MemorySink::default();
    let first = RuntimeOptions {
        micro_batch_size: 7,
        max_batches: Some(5),
    };
    let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
    let stats = run(&engine, &pipeline, &mut source, &mut sink, &first)
        .await
        .unwrap();
    assert_eq!(stats.input_rows, 35);
    // A new process: a fresh source, moved to the committed position.
    let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
    source.seek(sink.position.as_ref().unwrap()).unwrap();
    let rest = RuntimeOptions {
        micro_batch_size: 7,
        max_batches: None,
    };
    let stats = run(&engine, &pipeline, &mut source, &mut sink, &rest)
        .await
        .unwrap();
    assert_eq!(stats.input_rows, 45);
    assert_eq!(to_documents(&sink.committed).unwrap(), expected);
}

#[tokio::test]
async fn stages_that_need_every_document_are_rejected_by_path() {
    let engine = Engine::new();
    let mut source = MemorySource::from_jsonl(b"{\"a\": 1}\n").unwrap();
    let mut sink = MemorySink::default();
    let pipeline = Pipeline::from_value(
        &json!([{"$match": {"a": 1}}, {"$group": {"_id": null, "n": {"$sum": 1}}}]),
    )
    .unwrap();
    let e = run(
        &engine,
        &pipeline,
        &mut source,
        &mut sink,
        &RuntimeOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("pipeline[1].$group: cannot run on a stream yet"),
        "{e}"
    );
    assert!(sink.committed.is_empty());
}
