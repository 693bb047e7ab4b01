//! Error policies and the loop's queues (`runtime::error_policy`, `runtime::fetch`,
//! `runtime::transform`, `runtime::deliver`): retries with backoff, then fail / skip /
//! dead-letter, for failing sinks and sources (fault injection: wrappers around the in-memory
//! source and sink, since a real sink cannot be made to fail on cue) and for documents the
//! pipeline fails on (real failures: integer overflow); every record accounted for; bounded
//! queues hold the source back when the sink is slow; `max_batch_delay` fills micro-batches.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use fluxion::connect::memory::{MemorySink, MemorySource};
use fluxion::connect::source::{Position, Sink, Source, SourceBatch};
use fluxion::document::encode::to_documents;
use fluxion::runtime::exec::micro_batch::{RunStats, RuntimeOptions, run, run_with_dead_letters};
use fluxion::runtime::policy::error_policy::{ErrorPolicy, OnFailure};
use fluxion::runtime::state::checkpoint::MemoryCheckpoints;
use fluxion::{Engine, Pipeline};
use serde_json::{Value, json};

const ORDERS: &str = "tests/oracle/data/orders.jsonl";

fn quick_retry(attempts: u32) -> ErrorPolicy {
    ErrorPolicy::retry(attempts).with_backoff(Duration::from_millis(1), Duration::from_millis(4))
}

/// A sink whose writes fail (after writing half the batches: a torn write) while `failing`
/// is above zero.
#[derive(Default)]
struct FlakySink {
    inner: MemorySink,
    failing: u32,
    /// Fail only batches holding a document with an `_id` up to this.
    only_ids_up_to: Option<i64>,
}

#[async_trait]
impl Sink for FlakySink {
    async fn write(&mut self, batches: &[RecordBatch]) -> fluxion::Result<()> {
        let hit = match self.only_ids_up_to {
            None => true,
            Some(id) => to_documents(batches)
                .unwrap()
                .iter()
                .any(|d| d["_id"].as_i64().unwrap() <= id),
        };
        if self.failing > 0 && hit {
            self.failing -= 1;
            self.inner
                .write(&batches[..batches.len() / 2 + batches.len() % 2])
                .await?;
            return Err(fluxion::Error::external(
                "flaky sink",
                std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset"),
            ));
        }
        self.inner.write(batches).await
    }
    async fn commit(&mut self) -> fluxion::Result<Value> {
        self.inner.commit().await
    }
    async fn restore(&mut self, state: &Value) -> fluxion::Result<()> {
        self.inner.restore(state).await
    }
}

/// A sink that names every record by its batch and place in it, as the Kafka sink does, and
/// cannot take back what it wrote: a failed write leaves its first half behind, and the retry
/// recognises the names it already holds (the fault a real broker cannot stage on cue).
#[derive(Default)]
struct Naming {
    /// Every name written, in order.
    names: Vec<String>,
    batch: Option<fluxion::connect::source::BatchId>,
    index: u64,
    failing: u32,
}

#[async_trait]
impl Sink for Naming {
    async fn write(&mut self, batches: &[RecordBatch]) -> fluxion::Result<()> {
        let b = self.batch.clone().expect("begun");
        let mut names = Vec::new();
        for _ in 0..batches.iter().map(|b| b.num_rows()).sum::<usize>() {
            names.push(format!("{}:{}:{}", b.job, b.number, self.index));
            self.index += 1;
        }
        let kept = if self.failing > 0 {
            names.len() / 2
        } else {
            names.len()
        };
        for n in names.into_iter().take(kept) {
            if !self.names.contains(&n) {
                self.names.push(n);
            }
        }
        if self.failing > 0 {
            self.failing -= 1;
            return Err(fluxion::Error::external(
                "naming sink",
                std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset"),
            ));
        }
        Ok(())
    }
    async fn commit(&mut self) -> fluxion::Result<Value> {
        Ok(json!(self.names.len()))
    }
    async fn restore(&mut self, _: &Value) -> fluxion::Result<()> {
        Ok(())
    }
    fn recognises_output(&self) -> bool {
        true
    }
    fn begin(&mut self, batch: &fluxion::connect::source::BatchId) {
        self.batch = Some(batch.clone());
        self.index = 0;
    }
}

/// A retried batch's records get the names they had in the failed try, so the records that
/// try left behind are recognised and none is written under a second name.
#[tokio::test]
async fn a_retried_batch_names_its_records_as_before() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let expected = common::batch_result(&data, &paid()).await;
    let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
    let mut sink = Naming {
        failing: 2,
        ..Default::default()
    };
    let stats = stream(
        &mut source,
        &mut sink,
        None,
        &paid(),
        options(quick_retry(3)),
    )
    .await
    .unwrap();
    assert_eq!(stats.retries, 2);
    assert_eq!(sink.names.len(), expected.len(), "{:?}", sink.names);
}

/// The in-memory source with faults and watchers: reads fail while `failing` is above
/// zero; `one_per_read` gives one document per read (a trickle); `delivered` (shared with a
/// [`Slow`] sink) lets it record how many batches it has read ahead of delivery.
struct Scripted {
    inner: MemorySource,
    failing: u32,
    one_per_read: bool,
    read: u64,
    delivered: Arc<AtomicU64>,
    most_ahead: u64,
}

impl Scripted {
    fn new(data: &str) -> Scripted {
        Scripted {
            inner: MemorySource::from_jsonl(data.as_bytes()).unwrap(),
            failing: 0,
            one_per_read: false,
            read: 0,
            delivered: Arc::default(),
            most_ahead: 0,
        }
    }
}

#[async_trait]
impl Source for Scripted {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
    fn position(&self) -> Position {
        self.inner.position()
    }
    fn seek(&mut self, p: &Position) -> fluxion::Result<()> {
        self.inner.seek(p)
    }
    fn lag(&self) -> Option<u64> {
        self.inner.lag()
    }
    async fn next_batch(&mut self, max_rows: usize) -> fluxion::Result<Option<SourceBatch>> {
        if self.failing > 0 {
            self.failing -= 1;
            return Err(fluxion::Error::external(
                "flaky source",
                std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
            ));
        }
        let max_rows = if self.one_per_read { 1 } else { max_rows };
        let b = self.inner.next_batch(max_rows).await?;
        if b.is_some() {
            self.read += 1;
            let ahead = self.read - self.delivered.load(Ordering::SeqCst);
            self.most_ahead = self.most_ahead.max(ahead);
        }
        Ok(b)
    }
}

fn paid() -> Pipeline {
    Pipeline::from_value(&json!([{"$match": {"status": "PAID"}}, {"$project": {"orderValue": 1}}]))
        .unwrap()
}

async fn stream(
    source: &mut dyn Source,
    sink: &mut dyn Sink,
    dead: Option<&mut dyn Sink>,
    pipeline: &Pipeline,
    options: RuntimeOptions,
) -> fluxion::Result<RunStats> {
    run_with_dead_letters(
        &Engine::new(),
        pipeline,
        source,
        sink,
        dead,
        &mut MemoryCheckpoints::default(),
        &options,
    )
    .await
}

fn options(policy: ErrorPolicy) -> RuntimeOptions {
    RuntimeOptions {
        micro_batch_size: 10,
        error_policy: policy,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_retried_delivery_writes_nothing_twice() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let expected = common::batch_result(&data, &paid()).await;
    let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
    let mut sink = FlakySink {
        failing: 2,
        ..Default::default()
    };
    let stats = stream(
        &mut source,
        &mut sink,
        None,
        &paid(),
        options(quick_retry(3)),
    )
    .await
    .unwrap();
    assert_eq!((stats.retries, stats.failures), (2, 0));
    assert_eq!(to_documents(&sink.inner.committed).unwrap(), expected);
    // Out of attempts, failFast stops the run with the sink's error.
    let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
    let mut sink = FlakySink {
        failing: 3,
        ..Default::default()
    };
    let e = stream(
        &mut source,
        &mut sink,
        None,
        &paid(),
        options(quick_retry(3)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.to_string(), "flaky sink: connection reset");
    assert!(sink.inner.committed.is_empty());
}

#[tokio::test]
async fn a_batch_the_sink_refuses_is_skipped_or_dead_lettered_after_its_retries() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let expected = common::batch_result(&data, &paid()).await;
    // Every attempt at the first batch (orders 1 to 10) fails.
    let flaky = || FlakySink {
        failing: u32::MAX,
        only_ids_up_to: Some(10),
        ..Default::default()
    };
    let lost: Vec<Value> = expected
        .iter()
        .filter(|d| d["_id"].as_i64().unwrap() <= 10)
        .cloned()
        .collect();
    let kept: Vec<Value> = expected
        .iter()
        .filter(|d| d["_id"].as_i64().unwrap() > 10)
        .cloned()
        .collect();
    let mut sink = flaky();
    let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
    let stats = stream(
        &mut source,
        &mut sink,
        None,
        &paid(),
        options(quick_retry(2).then(OnFailure::Skip)),
    )
    .await
    .unwrap();
    assert_eq!(to_documents(&sink.inner.committed).unwrap(), kept);
    assert_eq!(
        (
            stats.undelivered,
            stats.output_rows,
            stats.retries,
            stats.failures
        ),
        (lost.len() as u64, kept.len() as u64, 1, 1)
    );
    assert_eq!(
        stats.input_rows, 80,
        "the documents went through the pipeline"
    );

    let mut sink = flaky();
    let mut dead = MemorySink::default();
    let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
    let stats = stream(
        &mut source,
        &mut sink,
        Some(&mut dead),
        &paid(),
        options(quick_retry(2).then(OnFailure::DeadLetter)),
    )
    .await
    .unwrap();
    assert_eq!(to_documents(&sink.inner.committed).unwrap(), kept);
    assert_eq!(stats.undelivered, lost.len() as u64);
    let letters = to_documents(&dead.committed).unwrap();
    assert_eq!(letters.len(), lost.len());
    for (letter, doc) in letters.iter().zip(&lost) {
        assert_eq!(letter["stage"], json!("sink"));
        assert_eq!(letter["reason"], json!("flaky sink: connection reset"));
        assert_eq!(
            letter["position"],
            json!({"from": {"offset": 0}, "to": {"offset": 10}})
        );
        let raw: Value = serde_json::from_str(letter["raw"].as_str().unwrap()).unwrap();
        assert_eq!(&raw, doc);
    }
}

#[tokio::test]
async fn a_failing_read_is_retried() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let expected = common::batch_result(&data, &paid()).await;
    let mut source = Scripted {
        failing: 2,
        ..Scripted::new(&data)
    };
    let mut sink = MemorySink::default();
    let stats = stream(
        &mut source,
        &mut sink,
        None,
        &paid(),
        options(quick_retry(5)),
    )
    .await
    .unwrap();
    assert_eq!(stats.retries, 2);
    assert_eq!(to_documents(&sink.committed).unwrap(), expected);
    let mut source = Scripted {
        failing: 2,
        ..Scripted::new(&data)
    };
    let e = stream(
        &mut source,
        &mut MemorySink::default(),
        None,
        &paid(),
        options(ErrorPolicy::skip()),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "flaky source: timed out",
        "nothing was read, so nothing can be skipped"
    );
}

/// Orders with `n` set: 2⁶² for the orders in `bad`, which makes `n * 2` overflow.
fn with_overflow(bad: &[i64]) -> (String, String) {
    let mut all = String::new();
    let mut good = String::new();
    for line in std::fs::read_to_string(ORDERS).unwrap().lines() {
        let mut d: Value = serde_json::from_str(line).unwrap();
        let id = d["_id"].as_i64().unwrap();
        let big = bad.contains(&id);
        d["n"] = json!(if big { 1i64 << 62 } else { id });
        all.push_str(&format!("{d}\n"));
        if !big {
            good.push_str(&format!("{d}\n"));
        }
    }
    (all, good)
}

#[tokio::test]
async fn documents_the_pipeline_fails_on_are_found_and_dead_lettered() {
    let bad = [7, 8, 33, 80];
    let (all, good) = with_overflow(&bad);
    for stages in [
        json!([{"$addFields": {"twice": {"$multiply": ["$n", 2]}}}, {"$match": {"twice": {"$gt": 10}}},
               {"$project": {"twice": 1, "customerId": 1}}]),
        json!([{"$addFields": {"twice": {"$multiply": ["$n", 2]}}},
               {"$group": {"_id": "$customerId", "total": {"$sum": "$twice"}, "n": {"$count": {}}}}]),
    ] {
        let pipeline = Pipeline::from_value(&stages).unwrap();
        let grouped = stages.to_string().contains("$group");
        let mut expected = common::batch_result(&good, &pipeline).await;
        let mut source = MemorySource::from_jsonl(all.as_bytes()).unwrap();
        let mut sink = MemorySink::default();
        let mut dead = MemorySink::default();
        let stats = stream(
            &mut source,
            &mut sink,
            Some(&mut dead),
            &pipeline,
            options(ErrorPolicy::dead_letter()),
        )
        .await
        .unwrap();
        assert_eq!(
            stats.dead_lettered,
            4,
            "{stats:?} {:?}",
            to_documents(&dead.committed)
        );
        assert_eq!(
            stats.input_rows + stats.dead_lettered + stats.skipped,
            80,
            "every record accounted for"
        );
        let mut got = to_documents(&sink.committed).unwrap();
        if grouped {
            // The last upsert per group is the group.
            got = common::last_per_id(got);
            expected.sort_by_key(|d| d["_id"].to_string());
        }
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert!(common::same_value(g, e), "{g}\n{e}");
        }
        let letters = to_documents(&dead.committed).unwrap();
        let ids: Vec<i64> = letters
            .iter()
            .map(|l| {
                let raw: Value = serde_json::from_str(l["raw"].as_str().unwrap()).unwrap();
                raw["_id"].as_i64().unwrap()
            })
            .collect();
        assert_eq!(ids, bad);
        for l in &letters {
            assert_eq!(l["stage"], json!("pipeline"));
            assert!(
                l["reason"].as_str().unwrap().contains("overflow"),
                "{}",
                l["reason"]
            );
        }
        // Order 33 is the third document of the batch that starts after order 30.
        assert_eq!(
            letters[2]["position"],
            json!({"from": {"offset": 30}, "document": 2})
        );
        // skip drops the failing batches whole; failFast stops at the first.
        let mut source = MemorySource::from_jsonl(all.as_bytes()).unwrap();
        let stats = stream(
            &mut source,
            &mut MemorySink::default(),
            None,
            &pipeline,
            options(ErrorPolicy::skip()),
        )
        .await
        .unwrap();
        assert_eq!(
            (stats.input_rows, stats.skipped, stats.failures),
            (50, 30, 3)
        );
        let mut source = MemorySource::from_jsonl(all.as_bytes()).unwrap();
        let e = stream(
            &mut source,
            &mut MemorySink::default(),
            None,
            &pipeline,
            options(ErrorPolicy::fail_fast()),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("overflow"), "{e}");
        // Overflow fails the same way every time: retry does not try it again.
        let mut source = MemorySource::from_jsonl(all.as_bytes()).unwrap();
        let stats = stream(
            &mut source,
            &mut MemorySink::default(),
            None,
            &pipeline,
            options(ErrorPolicy::retry(5).then(OnFailure::Skip)),
        )
        .await
        .unwrap();
        assert_eq!((stats.retries, stats.skipped), (0, 30), "{stats:?}");
    }
}

/// A sink that takes its time, counting its commits for a [`Scripted`] source.
struct Slow {
    inner: MemorySink,
    delivered: Arc<AtomicU64>,
}

#[async_trait]
impl Sink for Slow {
    async fn write(&mut self, batches: &[RecordBatch]) -> fluxion::Result<()> {
        tokio::time::sleep(Duration::from_millis(15)).await;
        self.inner.write(batches).await
    }
    async fn commit(&mut self) -> fluxion::Result<Value> {
        self.delivered.fetch_add(1, Ordering::SeqCst);
        self.inner.commit().await
    }
    async fn restore(&mut self, state: &Value) -> fluxion::Result<()> {
        self.inner.restore(state).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_queues_hold_the_source_back_when_the_sink_is_slow() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let expected = common::batch_result(&data, &paid()).await;
    let delivered = Arc::new(AtomicU64::new(0));
    let mut source = Scripted {
        delivered: delivered.clone(),
        ..Scripted::new(&data)
    };
    let mut sink = Slow {
        inner: MemorySink::default(),
        delivered,
    };
    let metrics = Arc::new(fluxion::runtime::metrics::PrometheusMetrics::default());
    let stats = run(
        &Engine::new(),
        &paid(),
        &mut source,
        &mut sink,
        &mut MemoryCheckpoints::default(),
        &RuntimeOptions {
            micro_batch_size: 2,
            queue_capacity: 1,
            source_queue_capacity: 1,
            listeners: vec![metrics.clone()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(stats.batches, 40);
    assert_eq!(to_documents(&sink.inner.committed).unwrap(), expected);
    // In flight at most: one being delivered, one queued for delivery, one transforming,
    // one queued for the transform step, one in the fetch step's hands.
    assert!(
        (3..=5).contains(&source.most_ahead),
        "read {} batches ahead of delivery",
        source.most_ahead
    );
    let totals = metrics.totals("stream").unwrap();
    assert!(totals.backpressure_seconds > 0.0, "{totals:?}");
    assert_eq!(totals.lag, 0.0, "the memory source was read to its end");
}

#[tokio::test]
async fn a_batch_delay_gathers_reads_into_full_micro_batches() {
    let data = std::fs::read_to_string(ORDERS).unwrap();
    let expected = common::batch_result(&data, &paid()).await;
    for (delay, batches) in [(None, 80), (Some(Duration::from_secs(3600)), 8)] {
        let mut source = Scripted {
            one_per_read: true,
            ..Scripted::new(&data)
        };
        let mut sink = MemorySink::default();
        let stats = stream(
            &mut source,
            &mut sink,
            None,
            &paid(),
            RuntimeOptions {
                micro_batch_size: 10,
                max_batch_delay: delay,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(stats.batches, batches, "{delay:?}");
        assert_eq!(to_documents(&sink.committed).unwrap(), expected);
    }
}
