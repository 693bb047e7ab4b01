//! The streaming micro-batch loop (`runtime::micro_batch`): streaming a pipeline in
//! micro-batches of any size gives the batch result; a stopped run resumes from its
//! checkpoint without loss or duplicates; output written after the last checkpoint is
//! discarded on restart (exactly-once file sink); a followed file streams appended lines;
//! stages that need every document are rejected.

mod common;

use fluxion::connect::jsonl_sink::JsonlFileSink;
use fluxion::connect::jsonl_source::JsonlFileSource;
use fluxion::connect::memory::{MemorySink, MemorySource};
use fluxion::document::encode::to_documents;
use fluxion::runtime::exec::micro_batch::{
    GroupUpserts, RuntimeOptions, run, run_with_dead_letters,
};
use fluxion::runtime::policy::error_policy::ErrorPolicy;
use fluxion::runtime::state::checkpoint::{CheckpointStore, DirCheckpoints, MemoryCheckpoints};
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

#[tokio::test]
async fn any_micro_batch_size_gives_the_batch_result() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for p in pipelines() {
        let pipeline = Pipeline::from_value(&p).unwrap();
        let expected = common::batch_result(&data, &pipeline).await;
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
            let mut checkpoints = MemoryCheckpoints::default();
            let stats = run(
                &engine,
                &pipeline,
                &mut source,
                &mut sink,
                &mut checkpoints,
                &options,
            )
            .await
            .unwrap();
            assert_eq!(checkpoints.0.unwrap().batches, stats.batches);
            assert_eq!(stats.input_rows, 80, "every document read");
            assert_eq!(stats.batches, 80u64.div_ceil(size as u64));
            let got = to_documents(&sink.committed).unwrap();
            assert_eq!(stats.output_rows as usize, got.len());
            assert_eq!(got, expected, "{p} in batches of {size}");
        }
    }
}

#[tokio::test]
async fn a_stopped_run_resumes_from_its_checkpoint() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let pipeline = Pipeline::from_value(&pipelines()[1]).unwrap();
    let expected = common::batch_result(&data, &pipeline).await;
    let engine = Engine::new();
    let mut sink = MemorySink::default();
    let mut checkpoints = MemoryCheckpoints::default();
    let first = RuntimeOptions {
        micro_batch_size: 7,
        max_batches: Some(5),
        ..Default::default()
    };
    let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
    let stats = run(
        &engine,
        &pipeline,
        &mut source,
        &mut sink,
        &mut checkpoints,
        &first,
    )
    .await
    .unwrap();
    assert_eq!(stats.input_rows, 35);
    // A new run over a fresh source resumes at the checkpointed position.
    let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
    let rest = RuntimeOptions {
        micro_batch_size: 7,
        ..Default::default()
    };
    let stats = run(
        &engine,
        &pipeline,
        &mut source,
        &mut sink,
        &mut checkpoints,
        &rest,
    )
    .await
    .unwrap();
    assert_eq!(stats.input_rows, 45);
    assert_eq!(to_documents(&sink.committed).unwrap(), expected);
}

fn read_docs(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn output_written_after_the_last_checkpoint_is_discarded_on_restart() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let pipeline = Pipeline::from_value(&pipelines()[0]).unwrap();
    let expected = common::batch_result(&data, &pipeline).await;
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, &data).unwrap();
    let engine = Engine::new();
    let options = |max| RuntimeOptions {
        micro_batch_size: 9,
        max_batches: max,
        ..Default::default()
    };
    {
        let mut source = JsonlFileSource::open(&input, None, false).unwrap();
        let mut sink = JsonlFileSink::open(&output).unwrap();
        let mut checkpoints = DirCheckpoints::new(dir.path().join("cp")).unwrap();
        run(
            &engine,
            &pipeline,
            &mut source,
            &mut sink,
            &mut checkpoints,
            &options(Some(3)),
        )
        .await
        .unwrap();
    }
    // A crash after writing but before checkpointing leaves uncommitted output behind.
    let committed = read_docs(&output);
    assert!(!committed.is_empty() && committed.len() < expected.len());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&output)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"_id\": 999, \"uncommitted\": true}\n").unwrap();
    drop(f);
    let mut source = JsonlFileSource::open(&input, None, false).unwrap();
    let mut sink = JsonlFileSink::open(&output).unwrap();
    let mut checkpoints = DirCheckpoints::new(dir.path().join("cp")).unwrap();
    run(
        &engine,
        &pipeline,
        &mut source,
        &mut sink,
        &mut checkpoints,
        &options(None),
    )
    .await
    .unwrap();
    assert_eq!(read_docs(&output), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_file_streams_lines_as_they_are_appended() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let lines: Vec<&str> = data.lines().collect();
    let pipeline = Pipeline::from_value(&pipelines()[2]).unwrap();
    let expected = common::batch_result(&data, &pipeline).await;
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, lines[..30].join("\n") + "\n").unwrap();
    let options = RuntimeOptions {
        micro_batch_size: 16,
        ..Default::default()
    };
    let stop = options.stop.clone();
    let (input2, output2, cp) = (input.clone(), output.clone(), dir.path().join("cp"));
    let running = tokio::spawn(async move {
        let engine = Engine::new();
        let mut source = JsonlFileSource::open(&input2, None, true).unwrap();
        let mut sink = JsonlFileSink::open(&output2).unwrap();
        let mut checkpoints = DirCheckpoints::new(cp).unwrap();
        run(
            &engine,
            &pipeline,
            &mut source,
            &mut sink,
            &mut checkpoints,
            &options,
        )
        .await
    });
    // The rest arrives in two appends, the first ending in the middle of a line.
    let rest = lines[30..].join("\n") + "\n";
    let cut = rest.len() / 2;
    for part in [&rest[..cut], &rest[cut..]] {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&input)
            .unwrap();
        std::io::Write::write_all(&mut f, part.as_bytes()).unwrap();
    }
    let mut waited = 0;
    while std::fs::read_to_string(&output).map_or(0, |s| s.lines().count()) < expected.len() {
        assert!(waited < 200, "the appended lines never reached the output");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let stats = running.await.unwrap().unwrap();
    assert_eq!(stats.input_rows, 80);
    assert_eq!(read_docs(&output), expected);
}

#[tokio::test]
async fn a_continuous_group_ends_in_the_batch_group() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    for stages in [
        json!([
            {"$match": {"status": {"$ne": "CANCELLED"}}},
            {"$group": {"_id": "$customerId", "n": {"$count": {}}, "orderTotal": {"$sum": "$orderValue"},
                        "avg": {"$avg": "$priority"}, "low": {"$min": "$orderValue"}, "high": {"$max": "$orderValue"},
                        "first": {"$first": "$orderId"}, "last": {"$last": "$orderId"}, "ids": {"$push": "$_id"}}}
        ]),
        // The n-forms, standard deviations, and stages after the $group.
        json!([
            {"$group": {"_id": "$status", "firstIds": {"$firstN": {"input": "$_id", "n": 3}},
                        "lastIds": {"$lastN": {"input": "$_id", "n": 2}},
                        "top": {"$maxN": {"input": "$orderValue", "n": 3}},
                        "bottom": {"$minN": {"input": "$priority", "n": 4}},
                        "sd": {"$stdDevPop": "$orderValue"}, "sds": {"$stdDevSamp": "$priority"},
                        "high": {"$max": "$orderValue"}, "low": {"$min": "$orderValue"}}},
            {"$addFields": {"range": {"$subtract": ["$high", "$low"]}}},
            {"$project": {"high": 0}}
        ]),
        // Fields that merge row by row (no merge query): counts, sums of doubles and of
        // integers, averages, deviations, first and last values (some missing).
        json!([
            {"$group": {"_id": "$customerId", "n": {"$count": {}}, "orderTotal": {"$sum": "$orderValue"},
                        "priorities": {"$sum": "$priority"}, "ones": {"$sum": 1},
                        "avg": {"$avg": "$orderValue"}, "sd": {"$stdDevSamp": "$orderValue"},
                        "firstCoupon": {"$first": "$coupon"}, "lastCoupon": {"$last": "$coupon"},
                        "last": {"$last": "$orderId"}}}
        ]),
        // Objects merged in order, fields set by some documents only.
        json!([
            {"$group": {"_id": "$customerId", "merged": {"$mergeObjects": {
                "last": "$orderId",
                "high": {"$cond": [{"$gt": ["$orderValue", 300]}, "$orderValue", "$$REMOVE"]},
                "low": {"$cond": [{"$lte": ["$orderValue", 300]}, "$status", "$$REMOVE"]}}}}}
        ]),
    ] {
        let pipeline = Pipeline::from_value(&stages).unwrap();
        let mut expected = common::batch_result(&data, &pipeline).await;
        expected.sort_by_key(|d| d["_id"].to_string());
        let mut seed = 7u64;
        for _ in 0..4 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let size = 1 + (seed >> 33) as usize % 25;
            // Merged at every batch, and held until the one checkpoint at the end (a key
            // then comes in many batches' aggregates at once).
            for interval in [None, Some(std::time::Duration::from_secs(3600))] {
                let engine = Engine::new();
                let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
                let mut sink = MemorySink::default();
                let mut checkpoints = MemoryCheckpoints::default();
                let options = RuntimeOptions {
                    micro_batch_size: size,
                    checkpoint_interval: interval,
                    group_upserts: GroupUpserts::AtCheckpoint,
                    ..Default::default()
                };
                run(
                    &engine,
                    &pipeline,
                    &mut source,
                    &mut sink,
                    &mut checkpoints,
                    &options,
                )
                .await
                .unwrap();
                // Upserts: the last document per _id is the group's value.
                let got = common::last_per_id(to_documents(&sink.committed).unwrap());
                assert_eq!(got.len(), expected.len(), "batches of {size}, {interval:?}");
                for (g, e) in got.iter().zip(&expected) {
                    assert!(
                        common::same_value(g, e),
                        "batches of {size}, {interval:?}:\n{g}\n{e}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn after_a_streaming_group_only_stages_that_keep_id_are_allowed() {
    for (stages, says) in [
        (
            json!([{"$group": {"_id": "$status", "n": {"$sum": 1}}}, {"$match": {"n": {"$gt": 2}}}]),
            "pipeline[1].$match: cannot follow a $group on a stream yet",
        ),
        (
            json!([{"$group": {"_id": "$status", "n": {"$sum": 1}}}, {"$project": {"_id": 0, "n": 1}}]),
            "pipeline[1].$project: cannot change _id after a streaming $group",
        ),
        (
            json!([{"$group": {"_id": "$status", "n": {"$median": {"input": "$priority", "method": "approximate"}}}}]),
            "$median is not supported in a $group over a stream yet",
        ),
    ] {
        let mut source =
            MemorySource::from_jsonl(b"{\"status\": \"A\", \"priority\": 1}\n").unwrap();
        let e = run(
            &Engine::new(),
            &Pipeline::from_value(&stages).unwrap(),
            &mut source,
            &mut MemorySink::default(),
            &mut MemoryCheckpoints::default(),
            &RuntimeOptions::default(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains(says), "{e}");
    }
}

#[tokio::test]
async fn a_continuous_group_emits_only_the_groups_a_batch_changed() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let pipeline = Pipeline::from_value(&json!([
        {"$match": {"status": {"$ne": "CANCELLED"}}},
        {"$group": {"_id": "$customerId", "n": {"$sum": 1}}}
    ]))
    .unwrap();
    let kept = data
        .lines()
        .filter(|l| !l.contains("\"status\":\"CANCELLED\""))
        .count();
    let engine = Engine::new();
    let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
    let mut sink = MemorySink::default();
    let options = RuntimeOptions {
        micro_batch_size: 1,
        ..Default::default()
    };
    let stats = run(
        &engine,
        &pipeline,
        &mut source,
        &mut sink,
        &mut MemoryCheckpoints::default(),
        &options,
    )
    .await
    .unwrap();
    // One document per batch changes one group: one upsert per kept document.
    assert_eq!(stats.output_rows as usize, kept);
    assert_eq!(to_documents(&sink.committed).unwrap().len(), kept);
}

/// With checkpoints spaced out and `groupUpserts: "atCheckpoint"`, a continuous `$group`
/// merges the batches since the last checkpoint at once: each group they changed is emitted
/// once. By default (`"everyBatch"`) it emits the groups each batch changed.
#[tokio::test]
async fn a_continuous_group_emits_its_groups_once_per_checkpoint() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let pipeline = Pipeline::from_value(&json!([
        {"$group": {"_id": "$customerId", "n": {"$sum": 1}, "last": {"$last": "$orderId"}}}
    ]))
    .unwrap();
    let expected = common::batch_result(&data, &pipeline).await;
    let mut emitted = Vec::new();
    for when in [GroupUpserts::AtCheckpoint, GroupUpserts::EveryBatch] {
        let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
        let mut sink = MemorySink::default();
        let options = RuntimeOptions {
            micro_batch_size: 7,
            checkpoint_interval: Some(std::time::Duration::from_secs(3600)),
            group_upserts: when,
            ..Default::default()
        };
        let stats = run(
            &Engine::new(),
            &pipeline,
            &mut source,
            &mut sink,
            &mut MemoryCheckpoints::default(),
            &options,
        )
        .await
        .unwrap();
        assert_eq!((stats.input_rows, stats.checkpoints), (80, 1), "{when:?}");
        let upserts = to_documents(&sink.committed).unwrap();
        assert_eq!(stats.output_rows as usize, upserts.len());
        common::assert_same_groups(upserts.clone(), &expected);
        emitted.push(upserts.len());
    }
    assert_eq!(emitted[0], expected.len(), "once per group");
    assert!(emitted[1] > expected.len(), "{emitted:?}");
}

#[tokio::test]
async fn a_continuous_group_resumes_with_its_checkpointed_state() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let pipeline = Pipeline::from_value(&json!([
        {"$group": {"_id": "$status", "n": {"$sum": 1}, "avg": {"$avg": "$orderValue"},
                    "first": {"$first": "$_id"}, "ids": {"$push": "$_id"}}}
    ]))
    .unwrap();
    let mut expected = common::batch_result(&data, &pipeline).await;
    expected.sort_by_key(|d| d["_id"].to_string());
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, &data).unwrap();
    let engine = Engine::new();
    for max in [Some(3), Some(2), None] {
        // Each run is a new process: new source, sink, store and group state.
        let mut source = JsonlFileSource::open(&input, None, false).unwrap();
        let mut sink = JsonlFileSink::open(&output).unwrap();
        let mut checkpoints = DirCheckpoints::new(dir.path().join("cp")).unwrap();
        let options = RuntimeOptions {
            micro_batch_size: 11,
            max_batches: max,
            ..Default::default()
        };
        run(
            &engine,
            &pipeline,
            &mut source,
            &mut sink,
            &mut checkpoints,
            &options,
        )
        .await
        .unwrap();
    }
    common::assert_same_groups(read_docs(&output), &expected);
}

#[tokio::test]
async fn unreadable_records_follow_the_error_policy_and_are_all_accounted_for() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let mut lines: Vec<String> = data.lines().map(str::to_string).collect();
    // Line 11 is not JSON; line 41 has a string where the schema says double.
    lines[10] = "{\"_id\": 11, \"status\": ".to_string();
    lines[40] = "{\"_id\": 41, \"status\": \"PAID\", \"orderValue\": \"lots\"}".to_string();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let good: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 10 && *i != 40)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let schema = std::sync::Arc::new(
        fluxion::document::declared::parse_schema(
            &json!({"_id": "long", "status": "string", "orderValue": "double"}),
            "test",
            "schema",
        )
        .unwrap(),
    );
    let pipeline = Pipeline::from_value(
        &json!([{"$match": {"status": "PAID"}}, {"$project": {"orderValue": 1}}]),
    )
    .unwrap();
    let expected = {
        let engine = Engine::new();
        let mut src = MemorySource::from_jsonl(good.as_bytes()).unwrap();
        let mut sink = MemorySink::default();
        run(
            &engine,
            &pipeline,
            &mut src,
            &mut sink,
            &mut MemoryCheckpoints::default(),
            &RuntimeOptions::default(),
        )
        .await
        .unwrap();
        to_documents(&sink.committed).unwrap()
    };
    let engine = Engine::new();
    let go = |policy| RuntimeOptions {
        micro_batch_size: 16,
        error_policy: policy,
        ..Default::default()
    };
    // failFast: the run stops at the first unreadable record, naming its position.
    let mut source = JsonlFileSource::open(&input, Some(schema.clone()), false).unwrap();
    let e = run(
        &engine,
        &pipeline,
        &mut source,
        &mut MemorySink::default(),
        &mut MemoryCheckpoints::default(),
        &go(ErrorPolicy::fail_fast()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("source position {\"offset\":") && e.contains("failFast"),
        "{e}"
    );
    // skip: counted, and the rest goes on.
    let mut source = JsonlFileSource::open(&input, Some(schema.clone()), false).unwrap();
    let mut sink = MemorySink::default();
    let stats = run(
        &engine,
        &pipeline,
        &mut source,
        &mut sink,
        &mut MemoryCheckpoints::default(),
        &go(ErrorPolicy::skip()),
    )
    .await
    .unwrap();
    assert_eq!((stats.input_rows, stats.skipped), (78, 2));
    assert_eq!(to_documents(&sink.committed).unwrap(), expected);
    // deadLetter: each unreadable record with its reason, position and text.
    let mut source = JsonlFileSource::open(&input, Some(schema), false).unwrap();
    let mut sink = MemorySink::default();
    let mut dead = MemorySink::default();
    let stats = run_with_dead_letters(
        &engine,
        &pipeline,
        &mut source,
        &mut sink,
        Some(&mut dead),
        &mut MemoryCheckpoints::default(),
        &go(ErrorPolicy::dead_letter()),
    )
    .await
    .unwrap();
    assert_eq!(
        stats.input_rows + stats.dead_lettered,
        80,
        "every record accounted for"
    );
    assert_eq!(to_documents(&sink.committed).unwrap(), expected);
    let letters = to_documents(&dead.committed).unwrap();
    assert_eq!(letters.len(), 2);
    let offset_of = |i: usize| lines[..i].iter().map(|l| l.len() + 1).sum::<usize>();
    assert_eq!(letters[0]["raw"], json!(lines[10]));
    assert_eq!(letters[0]["position"], json!({"offset": offset_of(10)}));
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{}",
        letters[0]
    );
    assert_eq!(letters[1]["raw"], json!(lines[40]));
    assert_eq!(letters[1]["position"], json!({"offset": offset_of(40)}));
}

/// Counts the checkpoints it is given.
#[derive(Default)]
struct Counting(MemoryCheckpoints, usize);

#[async_trait::async_trait]
impl fluxion::runtime::state::checkpoint::CheckpointStore for Counting {
    async fn load(
        &mut self,
    ) -> fluxion::Result<Option<fluxion::runtime::state::checkpoint::Checkpoint>> {
        self.0.load().await
    }
    async fn save(
        &mut self,
        c: &fluxion::runtime::state::checkpoint::Checkpoint,
    ) -> fluxion::Result<()> {
        self.1 += 1;
        self.0.save(c).await
    }
    async fn clear(&mut self) -> fluxion::Result<()> {
        self.0.clear().await
    }
}

#[tokio::test]
async fn checkpoints_follow_their_interval_and_close_every_run() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let pipeline = Pipeline::from_value(&pipelines()[0]).unwrap();
    for (interval, saves) in [(None, 12), (Some(std::time::Duration::from_secs(3600)), 1)] {
        let engine = Engine::new();
        let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
        let mut store = Counting::default();
        let options = RuntimeOptions {
            micro_batch_size: 7,
            checkpoint_interval: interval,
            ..Default::default()
        };
        run(
            &engine,
            &pipeline,
            &mut source,
            &mut MemorySink::default(),
            &mut store,
            &options,
        )
        .await
        .unwrap();
        assert_eq!(store.1, saves, "{interval:?}");
        let last = store.0.0.unwrap();
        assert_eq!((last.batches, last.source), (12, json!({"offset": 80})));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_runs_a_stream_until_its_handle_stops_it() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, &data).unwrap();
    let pipeline = pipelines()[0].to_string();
    let expected = common::batch_result(&data, &Pipeline::from_json_str(&pipeline).unwrap()).await;
    let handle = fluxion::runtime::builder::Stream::builder("test")
        .source(JsonlFileSource::open(&input, None, true).unwrap())
        .stages_json(&pipeline)
        .unwrap()
        .sink(JsonlFileSink::open(&output).unwrap())
        .checkpoints(DirCheckpoints::new(dir.path().join("cp")).unwrap())
        .micro_batch_size(10)
        .start()
        .unwrap();
    // A followed source never ends: the stream runs until it is stopped.
    let mut waited = 0;
    while read_docs_or_none(&output).len() < expected.len() {
        assert!(waited < 200, "the stream never caught up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    handle.stop();
    let stats = handle.wait().await.unwrap();
    assert_eq!((stats.input_rows, stats.batches), (80, 8));
    assert_eq!(read_docs(&output), expected);
    // Missing parts are named.
    let e = fluxion::runtime::builder::Stream::builder("incomplete")
        .micro_batch_size(5)
        .start()
        .err()
        .unwrap();
    assert_eq!(e.to_string(), "incomplete: the stream needs a source");
}

fn read_docs_or_none(path: &std::path::Path) -> Vec<Value> {
    if path.exists() {
        read_docs(path)
    } else {
        Vec::new()
    }
}

#[tokio::test]
async fn stages_that_need_every_document_are_rejected_by_path() {
    let engine = Engine::new();
    let mut source = MemorySource::from_jsonl(b"{\"a\": 1}\n").unwrap();
    let mut sink = MemorySink::default();
    let pipeline = Pipeline::from_value(
        &json!([{"$match": {"a": 1}}, {"$sort": {"a": 1}}, {"$group": {"_id": null, "n": {"$sum": 1}}}]),
    )
    .unwrap();
    let mut checkpoints = MemoryCheckpoints::default();
    let e = run(
        &engine,
        &pipeline,
        &mut source,
        &mut sink,
        &mut checkpoints,
        &RuntimeOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("pipeline[1].$sort: cannot run on a stream yet"),
        "{e}"
    );
    assert!(sink.committed.is_empty());
}

#[tokio::test]
async fn a_restarted_stream_reads_with_the_schema_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, "{\"a\": 1}\n").unwrap();
    let pipeline =
        Pipeline::from_value(&json!([{"$project": {"_id": 0, "a": 1, "b": 1}}])).unwrap();
    let engine = Engine::new();
    let go = || async {
        // Inferred from the file as it is when the run starts.
        let mut source = JsonlFileSource::open(&input, None, false).unwrap();
        let mut sink = JsonlFileSink::open(&output).unwrap();
        let mut checkpoints = DirCheckpoints::new(dir.path().join("cp")).unwrap();
        run(
            &engine,
            &pipeline,
            &mut source,
            &mut sink,
            &mut checkpoints,
            &RuntimeOptions::default(),
        )
        .await
        .unwrap()
    };
    go().await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"a\": 2, \"b\": \"new\"}\n").unwrap();
    go().await;
    // `b` was not in the schema the stream started with: the restart reads as the first run.
    assert_eq!(read_docs(&output), [json!({"a": 1}), json!({"a": 2})]);
}

#[tokio::test]
async fn sql_streams_through_the_same_loop_and_matches_its_json_twin() {
    use fluxion::runtime::query::StreamQuery;
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let json = Pipeline::from_value(&json!([
        {"$match": {"status": "PAID", "orderValue": {"$gt": 100}}},
        {"$project": {"_id": 0, "customerId": 1, "orderValue": 1}}
    ]))
    .unwrap();
    let sql = StreamQuery::Sql {
        sql: "SELECT \"customerId\", \"orderValue\" FROM orders WHERE status = 'PAID' AND \"orderValue\" > 100".into(),
        table: "orders".into(),
    };
    let mut answers = Vec::new();
    for query in [StreamQuery::from(&json), sql.clone()] {
        let engine = Engine::new();
        let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
        let mut sink = MemorySink::default();
        let stats = run(
            &engine,
            query,
            &mut source,
            &mut sink,
            &mut MemoryCheckpoints::default(),
            &RuntimeOptions {
                micro_batch_size: 9,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(stats.batches, 9);
        answers.push(to_documents(&sink.committed).unwrap());
    }
    assert!(!answers[0].is_empty());
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], common::batch_result(&data, &json).await);
    // Queries that need every row first are rejected, naming the clause.
    for (query, says) in [
        (
            "SELECT status, count(*) FROM orders GROUP BY status",
            "GROUP BY and aggregate functions cannot run on a stream yet",
        ),
        (
            "SELECT * FROM orders ORDER BY \"orderValue\"",
            "ORDER BY cannot",
        ),
        ("SELECT * FROM orders LIMIT 3", "LIMIT and OFFSET cannot"),
        (
            "SELECT a._id FROM orders a JOIN orders b ON a._id = b._id",
            "reads its stream \"orders\" exactly once (it reads it 2 times)",
        ),
    ] {
        let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
        let e = run(
            &Engine::new(),
            StreamQuery::Sql {
                sql: query.into(),
                table: "orders".into(),
            },
            &mut source,
            &mut MemorySink::default(),
            &mut MemoryCheckpoints::default(),
            &RuntimeOptions::default(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("sql: ") && e.contains(says), "{query}: {e}");
    }
}

#[tokio::test]
async fn a_line_too_long_to_read_stops_the_stream_naming_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let long = format!("{{\"a\": \"{}\"}}\n", "x".repeat(9 << 20));
    std::fs::write(&input, format!("{{\"a\": \"short\"}}\n{long}")).unwrap();
    let schema = std::sync::Arc::new(
        fluxion::document::declared::parse_schema(&json!({"a": "string"}), "test", "schema")
            .unwrap(),
    );
    let mut source = JsonlFileSource::open(&input, Some(schema), false).unwrap();
    let mut sink = MemorySink::default();
    let e = run(
        &Engine::new(),
        &Pipeline::from_value(&json!([{"$project": {"_id": 0, "a": 1}}])).unwrap(),
        &mut source,
        &mut sink,
        &mut MemoryCheckpoints::default(),
        &RuntimeOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("in.jsonl@15: a line longer than 8 MB"), "{e}");
    assert_eq!(
        to_documents(&sink.committed).unwrap(),
        [json!({"a": "short"})]
    );
}

/// A continuous `$group` sums doubles as the batch `$group` does — compensated, keeping what
/// rounding left out in its state — so its groups equal the batch answer exactly, whatever
/// the micro-batch size (the quickstart's expected output is `math.fsum` in Python).
#[tokio::test]
async fn streamed_sums_equal_the_batch_sums_exactly() {
    let data = std::fs::read_to_string("examples/data/orders.jsonl").unwrap();
    let pipeline = Pipeline::from_value(&json!([
        {"$match": {"status": "PAID"}},
        {"$group": {"_id": "$customerId", "orderCount": {"$count": {}},
                    "lifetimeValue": {"$sum": "$orderValue"}}}
    ]))
    .unwrap();
    let expected: Vec<Value> = std::fs::read_to_string("examples/orders-ltv.expected.jsonl")
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for size in [1, 7, 64, 1000] {
        let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
        let mut sink = MemorySink::default();
        let options = RuntimeOptions {
            micro_batch_size: size,
            ..Default::default()
        };
        run(
            &Engine::new(),
            &pipeline,
            &mut source,
            &mut sink,
            &mut MemoryCheckpoints::default(),
            &options,
        )
        .await
        .unwrap();
        let got = common::last_per_id(to_documents(&sink.committed).unwrap());
        assert_eq!(got, expected, "micro-batches of {size}");
    }
}

/// With many groups and small batches, a checkpoint writes the groups changed since the last
/// one (a delta file of at most a batch's groups), not all of them; a run resumed from a whole
/// state and its deltas ends in the batch answer.
#[tokio::test]
async fn a_continuous_group_checkpoints_only_the_groups_that_changed() {
    let data: String = (0..600)
        .map(|i| format!("{{\"k\": {}, \"v\": {}.25}}\n", (i * 37) % 211, i % 13))
        .collect();
    let pipeline = Pipeline::from_value(&json!([
        {"$group": {"_id": "$k", "n": {"$sum": 1}, "total": {"$sum": "$v"}, "last": {"$last": "$v"}}}
    ]))
    .unwrap();
    let mut expected = common::batch_result(&data, &pipeline).await;
    expected.sort_by_key(|d| d["_id"].to_string());
    let dir = tempfile::tempdir().unwrap();
    let (input, output, cp) = (
        dir.path().join("in.jsonl"),
        dir.path().join("out.jsonl"),
        dir.path().join("cp"),
    );
    std::fs::write(&input, &data).unwrap();
    let engine = Engine::new();
    let mut deltas_seen = 0;
    for max in [Some(25), Some(7), Some(13), None] {
        let mut source = JsonlFileSource::open(&input, None, false).unwrap();
        let mut sink = JsonlFileSink::open(&output).unwrap();
        let mut checkpoints = DirCheckpoints::new(&cp).unwrap();
        let options = RuntimeOptions {
            micro_batch_size: 5,
            max_batches: max,
            ..Default::default()
        };
        let stats = run(
            &engine,
            &pipeline,
            &mut source,
            &mut sink,
            &mut checkpoints,
            &options,
        )
        .await
        .unwrap();
        assert_eq!(
            stats.checkpoints, stats.batches,
            "a checkpoint after every batch"
        );
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(cp.join("checkpoint.json")).unwrap()).unwrap();
        let deltas = manifest["deltas"].as_array().unwrap();
        for d in deltas {
            let bytes = std::fs::read(cp.join(d["file"].as_str().unwrap())).unwrap();
            let reader = datafusion::arrow::ipc::reader::FileReader::try_new(
                std::io::Cursor::new(bytes),
                None,
            )
            .unwrap();
            let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
            assert!(
                rows <= 5,
                "a delta holds the groups of one batch, not {rows}"
            );
        }
        deltas_seen += deltas.len();
        // Nothing left behind that the checkpoint does not name.
        let mut files: Vec<String> = std::fs::read_dir(&cp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        files.sort();
        assert_eq!(files.len(), 2 + deltas.len(), "{files:?}");
    }
    assert!(deltas_seen > 0, "no checkpoint wrote a delta");
    common::assert_same_groups(read_docs(&output), &expected);
}

/// With a checkpoint interval longer than the run, a continuous `$group`'s only checkpoint is
/// the closing one, and it holds the groups as they were after the last batch: a run resumed
/// from it ends in the batch answer.
#[tokio::test]
async fn the_closing_checkpoint_holds_the_groups_after_the_last_batch() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let pipeline = Pipeline::from_value(&json!([
        {"$group": {"_id": "$customerId", "n": {"$sum": 1}, "total": {"$sum": "$orderValue"}}}
    ]))
    .unwrap();
    let expected = common::batch_result(&data, &pipeline).await;
    // Held aggregates (`atCheckpoint`) are merged as the run stops, and committed as one more
    // commit (without input of its own) before the closing checkpoint.
    for (when, commits) in [
        (GroupUpserts::EveryBatch, 4),
        (GroupUpserts::AtCheckpoint, 5),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
        std::fs::write(&input, &data).unwrap();
        let engine = Engine::new();
        for max in [Some(4), None] {
            let mut source = JsonlFileSource::open(&input, None, false).unwrap();
            let mut sink = JsonlFileSink::open(&output).unwrap();
            let mut checkpoints = DirCheckpoints::new(dir.path().join("cp")).unwrap();
            let options = RuntimeOptions {
                micro_batch_size: 9,
                max_batches: max,
                checkpoint_interval: Some(std::time::Duration::from_secs(3600)),
                group_upserts: when,
                ..Default::default()
            };
            let stats = run(
                &engine,
                &pipeline,
                &mut source,
                &mut sink,
                &mut checkpoints,
                &options,
            )
            .await
            .unwrap();
            assert_eq!(stats.checkpoints, 1);
            if max.is_some() {
                assert_eq!((stats.batches, stats.input_rows), (commits, 36), "{when:?}");
                let cp = DirCheckpoints::new(dir.path().join("cp"))
                    .unwrap()
                    .load()
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(cp.batches, commits);
                assert!(
                    cp.state.is_some_and(|s| !s.is_empty()),
                    "the groups are saved"
                );
                // The groups of the first 36 documents were emitted before the stop.
                let first: String = data.lines().take(36).map(|l| format!("{l}\n")).collect();
                common::assert_same_groups(
                    read_docs(&output),
                    &common::batch_result(&first, &pipeline).await,
                );
            }
        }
        common::assert_same_groups(read_docs(&output), &expected);
    }
}
