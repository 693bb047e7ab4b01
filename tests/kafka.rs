//! Kafka in and out, against a real Kafka-protocol broker (Tansu) started on loopback by the
//! harness: records read with their own fields, bad records dead-lettered with their
//! position, a job from topic to topic through the CLI, resumed from its checkpoint, with the
//! offsets committed to the consumer group.

mod common;

use std::process::Command;

use common::kafka::Broker;
use fluxion::connect::kafka::KafkaSourceConfig;
use fluxion::connect::kafka::source::KafkaSource;
use fluxion::connect::memory::MemorySink;
use fluxion::runtime::exec::micro_batch::{RuntimeOptions, run_with_dead_letters};
use fluxion::runtime::metrics::PrometheusMetrics;
use fluxion::runtime::state::checkpoint::MemoryCheckpoints;
use fluxion::{Engine, Pipeline};
use serde_json::{Value, json};

fn orders(n: usize, from: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| {
            json!({"customerId": format!("c-{}", i % 7), "status": if i % 3 == 0 { "NEW" } else { "PAID" },
                   "orderValue": (i % 50) as f64 + 0.25})
            .to_string()
        })
        .collect()
}

/// Writes `job` as `job.json` in `dir`; its path.
fn write_job(dir: &std::path::Path, job: Value) -> std::path::PathBuf {
    let path = dir.join("job.json");
    std::fs::write(&path, job.to_string()).unwrap();
    path
}

/// Produces `values` to `topic` without keys.
async fn produce_all(broker: &Broker, topic: &str, values: &[String]) {
    for chunk in values.chunks(5000) {
        let records: Vec<(Option<&str>, &str)> = chunk.iter().map(|v| (None, v.as_str())).collect();
        broker.produce(topic, &records).await;
    }
}

/// The order fields of each document as JSON text, sorted (a multiset to compare).
fn order_texts<'a>(docs: impl Iterator<Item = &'a Value>) -> Vec<String> {
    let mut out: Vec<String> = docs
        .map(|v| {
            json!({"customerId": v["customerId"], "status": v["status"], "orderValue": v["orderValue"]})
                .to_string()
        })
        .collect();
    out.sort();
    out
}

/// The PAID orders of `input`, as [`order_texts`] gives them.
fn paid_texts(input: &[String]) -> Vec<String> {
    let docs: Vec<Value> = input
        .iter()
        .map(|v| serde_json::from_str::<Value>(v).unwrap())
        .filter(|v| v["status"] == "PAID")
        .collect();
    order_texts(docs.iter())
}

fn source_config(broker: &Broker, topic: &str, extra: Value) -> KafkaSourceConfig {
    let mut c = json!({"bootstrapServers": broker.servers, "topic": topic, "endAt": "latest"});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(c).unwrap()
}

/// Every record of a 3-partition topic becomes a document with its partition, offset, key
/// and timestamp; the records that are no JSON object go to the dead-letter sink with their
/// topic, partition and offset, and the source ends where the topic ended when it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_become_documents_and_bad_ones_dead_letters() {
    let broker = Broker::start();
    broker.create_topic("orders", 3).await;
    let good = orders(40, 0);
    let mut records: Vec<(Option<&str>, &str)> = good
        .iter()
        .enumerate()
        .map(|(i, v)| (Some(["k0", "k1", "k2"][i % 3]), v.as_str()))
        .collect();
    records.insert(
        5,
        (
            Some("k0"),
            "{\"customerId\": \"c-1\",, \"status\": \"PAID\"}",
        ),
    );
    records.insert(17, (Some("k1"), "[1, 2]"));
    records.insert(30, (Some("k2"), "   "));
    broker.produce("orders", &records).await;

    let engine = Engine::new();
    let pipeline = Pipeline::from_value(&json!([{"$match": {}}])).unwrap();
    for schema in [
        Some(json!({"customerId": "string", "status": "string", "orderValue": "double"})),
        None,
    ] {
        let extra = match &schema {
            Some(s) => json!({"schema": s}),
            None => json!({}),
        };
        let mut source =
            KafkaSource::open(&source_config(&broker, "orders", extra), None, "test").unwrap();
        let (mut sink, docs) = MemorySink::with_view();
        let (mut dead, dead_docs) = MemorySink::with_view();
        let metrics = std::sync::Arc::new(PrometheusMetrics::default());
        let options = RuntimeOptions {
            micro_batch_size: 8,
            pipeline_id: "orders-in".into(),
            listeners: vec![metrics.clone()],
            ..Default::default()
        };
        let stats = run_with_dead_letters(
            &engine,
            &pipeline,
            &mut source,
            &mut sink,
            Some(&mut dead),
            &mut MemoryCheckpoints::default(),
            &options,
        )
        .await
        .unwrap();
        let docs = docs.documents().unwrap();
        assert_eq!(docs.len(), 40, "schema {schema:?}");
        assert_eq!(stats.dead_lettered, 3);
        // Each partition's offsets run from 0 without a gap (bad records included), and a
        // document carries what its record had.
        let mut seen: Vec<(i64, i64)> = docs
            .iter()
            .map(|d| {
                (
                    d["_partition"].as_i64().unwrap(),
                    d["_offset"].as_i64().unwrap(),
                )
            })
            .chain(dead_docs.documents().unwrap().iter().map(|d| {
                (
                    d["position"]["partition"].as_i64().unwrap(),
                    d["position"]["offset"].as_i64().unwrap(),
                )
            }))
            .collect();
        seen.sort();
        for p in 0..3 {
            let offsets: Vec<i64> = seen.iter().filter(|s| s.0 == p).map(|s| s.1).collect();
            assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
        }
        assert_eq!(seen.len(), 43);
        let mut values: Vec<String> = docs
            .iter()
            .map(|d| {
                json!({"customerId": d["customerId"], "status": d["status"], "orderValue": d["orderValue"]})
                    .to_string()
            })
            .collect();
        values.sort();
        let mut expected: Vec<String> = good
            .iter()
            .map(|v| serde_json::from_str::<Value>(v).unwrap().to_string())
            .collect();
        expected.sort();
        assert_eq!(values, expected);
        assert!(
            docs.iter()
                .all(|d| d["_key"].as_str().is_some_and(|k| k.starts_with('k'))
                    && d["_topic"] == "orders"
                    && d["_timestamp"].is_object())
        );
        let reasons: Vec<String> = dead_docs
            .documents()
            .unwrap()
            .iter()
            .map(|d| d["reason"].as_str().unwrap().to_string())
            .collect();
        assert!(
            reasons.iter().any(|r| r.contains("not valid JSON")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("a JSON object")),
            "{reasons:?}"
        );
        assert!(reasons.iter().any(|r| r.contains("empty")), "{reasons:?}");
        // Every partition's lag is a metric of its own.
        let text = metrics.render();
        for p in 0..3 {
            let line = format!(
                "fluxion_source_partition_lag{{pipeline=\"orders-in\",partition=\"orders/{p}\"}} 0\n"
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }
}

fn fluxion(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fluxion"))
        .args(args)
        .env("RUST_LOG", "fluxion=warn")
        .output()
        .expect("run fluxion")
}

/// `fluxion run` from a topic through the quickstart stages to another topic: the output's
/// last upsert per customer is the batch answer; a second run after more records resumes from
/// the checkpoint (no input read twice), and the group's committed offsets are the topic's
/// ends, so its lag is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_streams_topic_to_topic_and_resumes_from_its_checkpoint() {
    let broker = Broker::start();
    broker.create_topic("orders.v1", 3).await;
    broker.create_topic("ltv", 1).await;
    let first = orders(300, 0);
    produce_all(&broker, "orders.v1", &first).await;

    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        json!({
            "name": "kafka-ltv",
            "source": {"type": "kafka", "bootstrapServers": broker.servers, "topic": "orders.v1",
                       "groupId": "fluxion-ltv", "endAt": "latest",
                       "schema": {"customerId": "string", "status": "string", "orderValue": "double"},
                       "properties": {"session.timeout.ms": 6000}},
            "pipeline": [{"$match": {"status": "PAID"}},
                         {"$group": {"_id": "$customerId", "orderCount": {"$count": {}},
                                     "lifetimeValue": {"$sum": "$orderValue"}}}],
            "sink": {"type": "kafka", "bootstrapServers": broker.servers, "topic": "ltv",
                     "key": "$_id",
                     "headers": {"orders": "$orderCount",
                                 "tier": {"$cond": [{"$gte": ["$lifetimeValue", 100]}, "gold", "basic"]}}},
            "runtime": {"microBatchSize": 50},
            "checkpoint": {"store": dir.path().join("cp")}
        }),
    );
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let output = broker.consume_all("ltv");
    assert!(
        output
            .iter()
            .all(|r| r.key.as_deref() == r.value["_id"].as_str())
    );
    assert!(output.iter().all(|r| {
        r.headers
            .iter()
            .any(|h| h.0 == "orders" && h.1.parse::<i64>().ok() == r.value["orderCount"].as_i64())
    }));
    // A header computed by an expression over the output document.
    assert!(output.iter().all(|r| {
        let tier = if r.value["lifetimeValue"].as_f64().unwrap() >= 100.0 {
            "gold"
        } else {
            "basic"
        };
        r.headers.iter().any(|h| h.0 == "tier" && h.1 == tier)
    }));
    common::assert_same_groups(
        output.iter().map(|r| r.value.clone()),
        &expected(&first).await,
    );
    let upserts = output.len();

    // More orders; the second run reads only those.
    let second = orders(120, 300);
    produce_all(&broker, "orders.v1", &second).await;
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let output = broker.consume_all("ltv");
    assert!(output.len() > upserts);
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    common::assert_same_groups(
        output.iter().map(|r| r.value.clone()),
        &expected(&all).await,
    );
    // The group's committed offsets are each partition's end: a lag of 0.
    let committed: i64 = broker.committed("fluxion-ltv", "orders.v1", 3).iter().sum();
    assert_eq!(committed, 420);
}

/// The batch answer of the quickstart stages over `docs`.
async fn expected(docs: &[String]) -> Vec<Value> {
    let data: String = docs.iter().map(|d| format!("{d}\n")).collect();
    let p = Pipeline::from_value(&json!([{"$match": {"status": "PAID"}},
        {"$group": {"_id": "$customerId", "orderCount": {"$count": {}},
                    "lifetimeValue": {"$sum": "$orderValue"}}}]))
    .unwrap();
    common::batch_result(&data, &p).await
}

/// The `fluxion-id` of every record of `output` (of topic `topic`), asserting none is there
/// twice.
fn identities_once(output: &[common::kafka::Record], topic: &str) -> Vec<String> {
    let mut ids: Vec<String> = output
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .find(|h| h.0 == "fluxion-id")
                .map(|h| h.1.clone())
                .unwrap()
        })
        .collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "{topic}: a record was written twice");
    ids
}

/// With `"format": "bytes"` a record's value is its bytes as they are (any bytes, empty
/// ones included), written out as extended JSON; a tombstone is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_values_are_kept_as_they_are() {
    let broker = Broker::start();
    broker.create_topic("raw", 1).await;
    let records: Vec<(Option<&str>, Option<&[u8]>)> = vec![
        (Some("a"), Some(&[0x00, 0xff, b'h', b'i'][..])),
        (Some("b"), Some(&b""[..])),
        (Some("c"), None),
        (Some("d"), Some(&b"{\"not\": \"parsed\"}"[..])),
    ];
    broker.produce_bytes("raw", &records).await;
    let mut source = KafkaSource::open(
        &source_config(&broker, "raw", json!({"format": "bytes"})),
        None,
        "test",
    )
    .unwrap();
    let (mut sink, docs) = MemorySink::with_view();
    let (mut dead, dead_docs) = MemorySink::with_view();
    run_with_dead_letters(
        &Engine::new(),
        &Pipeline::from_value(&json!([{"$project": {"_id": 0, "value": 1, "_key": 1}}])).unwrap(),
        &mut source,
        &mut sink,
        Some(&mut dead),
        &mut MemoryCheckpoints::default(),
        &RuntimeOptions::default(),
    )
    .await
    .unwrap();
    let docs = docs.documents().unwrap();
    let b64 = |d: &Value| {
        d["value"]["$binary"]["base64"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(docs.len(), 3);
    assert_eq!(b64(&docs[0]), "AP9oaQ==");
    assert_eq!(b64(&docs[1]), "");
    assert_eq!(b64(&docs[2]), "eyJub3QiOiAicGFyc2VkIn0=");
    let dead = dead_docs.documents().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["position"]["offset"], 2);
    assert!(dead[0]["reason"].as_str().unwrap().contains("tombstone"));
}

/// Kafka to Kafka through `fluxion run`, killed with SIGKILL at random points and restarted
/// until it finishes: a consumer reading the output topic from the beginning sees every
/// record exactly once — one per PAID order for `$match`, and for the continuous `$group`
/// upserts whose last per customer is the batch answer, none of them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_jobs_write_every_record_exactly_once() {
    let broker = Broker::start();
    broker.create_topic("orders", 3).await;
    let input = orders(20_000, 0);
    produce_all(&broker, "orders", &input).await;
    let schema = json!({"customerId": "string", "status": "string", "orderValue": "double"});
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut kills = || {
        (0..6)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                300 + seed % 500
            })
            .collect::<Vec<u64>>()
    };
    let jobs = [
        (
            "paid",
            json!([{"$match": {"status": "PAID"}}]),
            "$customerId",
        ),
        // The same in Kafka transactions, read by a `read_committed` consumer.
        (
            "paid-txn",
            json!([{"$match": {"status": "PAID"}}]),
            "$customerId",
        ),
        // Upserts keyed by `_id`, so each customer's are in one partition, in order.
        (
            "ltv",
            json!([{"$match": {"status": "PAID"}},
                       {"$group": {"_id": "$customerId", "orderCount": {"$count": {}},
                                   "lifetimeValue": {"$sum": "$orderValue"}}}]),
            "$_id",
        ),
    ];
    for (out, pipeline, key) in jobs {
        broker.create_topic(out, 2).await;
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("job.json");
        std::fs::write(
            &job,
            json!({
                "name": out,
                "source": {"type": "kafka", "bootstrapServers": broker.servers, "topic": "orders",
                           "endAt": "latest", "schema": schema},
                "pipeline": pipeline,
                "sink": {"type": "kafka", "bootstrapServers": broker.servers, "topic": out,
                         "key": key,
                         "delivery": if out.ends_with("-txn") { "transactional" } else { "idempotent" }},
                "runtime": {"microBatchSize": 100},
                "checkpoint": {"store": dir.path().join("cp"), "intervalMs": 150}
            })
            .to_string(),
        )
        .unwrap();
        let killed = common::run_with_kills(&job, &kills());
        assert!(killed > 0, "{out}: the job finished before the first kill");
        let paid = paid_texts(&input).len();
        let output = if out.ends_with("-txn") {
            broker.consume_committed(out, paid)
        } else if out == "paid" {
            broker.consume_expecting(out, paid)
        } else {
            broker.consume_all(out)
        };
        identities_once(&output, out);
        if out.starts_with("paid") {
            let got = order_texts(output.iter().map(|r| &r.value));
            let expected = paid_texts(&input);
            assert_eq!(got.len(), expected.len(), "{out}: after {killed} kills");
            assert_eq!(got, expected);
        } else {
            common::assert_same_groups(
                output.iter().map(|r| r.value.clone()),
                &expected(&input).await,
            );
        }
    }
}

/// Kafka to an HTTP endpoint through `fluxion run`, killed with SIGKILL at random points and
/// restarted until it finishes: a receiver keeping one request per `Idempotency-Key` has every
/// PAID order exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_jobs_post_every_document_once_per_key() {
    let broker = Broker::start();
    broker.create_topic("orders", 3).await;
    let input = orders(20_000, 0);
    produce_all(&broker, "orders", &input).await;
    let receiver = common::http::Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        json!({
            "name": "to-http",
            "source": {"type": "kafka", "bootstrapServers": broker.servers, "topic": "orders",
                       "endAt": "latest",
                       "schema": {"customerId": "string", "status": "string", "orderValue": "double"}},
            "pipeline": [{"$match": {"status": "PAID"}},
                         {"$project": {"_id": 0, "customerId": 1, "status": 1, "orderValue": 1}}],
            "sink": {"type": "http", "endpoint": receiver.url, "batchSize": 30},
            "runtime": {"microBatchSize": 100},
            "checkpoint": {"store": dir.path().join("cp"), "intervalMs": 150}
        }),
    );
    let kills = vec![350, 400, 600, 300, 500, 450];
    let killed = tokio::task::spawn_blocking(move || common::run_with_kills(&job, &kills))
        .await
        .unwrap();
    assert!(killed > 0, "the job finished before the first kill");
    let got = order_texts(receiver.documents_once().iter());
    let expected = paid_texts(&input);
    assert_eq!(got.len(), expected.len(), "after {killed} kills");
    assert_eq!(got, expected);
    // A document sent twice came with a key it had before.
    let all: usize = receiver
        .received()
        .iter()
        .map(|r| common::http::body_documents(&r.body).len())
        .sum();
    assert!(all >= expected.len());
}

/// The Kafka quick start of `examples/`: the sample orders produced to `orders.v1` by
/// `examples/kafka/produce-orders.json`, then `examples/kafka-orders-ltv.json` (Kafka, group
/// `fluxion-ltv` → `$match` / `$group` → HTTP) — the receiver's last upsert per customer is
/// `examples/orders-ltv.expected.jsonl`, computed independently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_quick_start_gives_the_expected_lifetime_values() {
    let broker = Broker::start();
    broker.create_topic("orders.v1", 3).await;
    let receiver = common::http::Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let example = |path: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let mut produce = example("examples/kafka/produce-orders.json");
    produce["source"]["path"] = json!(std::fs::canonicalize("examples/data/orders.jsonl").unwrap());
    produce["sink"]["bootstrapServers"] = json!(broker.servers);
    let mut ltv = example("examples/kafka-orders-ltv.json");
    ltv["source"]["bootstrapServers"] = json!(broker.servers);
    ltv["source"]["properties"] = json!({"session.timeout.ms": 6000});
    ltv["sink"]["endpoint"] = json!(receiver.url);
    ltv["checkpoint"]["store"] = json!(dir.path().join("cp"));
    for (name, job) in [("produce.json", produce), ("ltv.json", ltv)] {
        let path = dir.path().join(name);
        std::fs::write(&path, job.to_string()).unwrap();
        let out = tokio::task::spawn_blocking(move || fluxion(&["run", path.to_str().unwrap()]))
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let expected: Vec<Value> = std::fs::read_to_string("examples/orders-ltv.expected.jsonl")
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    common::assert_same_groups(receiver.documents_once(), &expected);
}

/// A Kafka topic as the dead-letter sink: a record that is no document goes there with the
/// reason, the stage and its topic, partition and offset, and its raw value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_go_to_a_dead_letter_topic() {
    let broker = Broker::start();
    broker.create_topic("in", 1).await;
    broker.create_topic("out", 1).await;
    broker.create_topic("in.dlq", 1).await;
    let good = orders(5, 0);
    let mut records: Vec<(Option<&str>, &str)> = good.iter().map(|v| (None, v.as_str())).collect();
    records.insert(2, (None, "{\"customerId\": \"c-9\", \"status\": PAID}"));
    broker.produce("in", &records).await;
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        json!({
            "name": "with-dlq",
            "source": {"type": "kafka", "bootstrapServers": broker.servers, "topic": "in",
                       "endAt": "latest",
                       "schema": {"customerId": "string", "status": "string", "orderValue": "double"}},
            "pipeline": [{"$match": {}}],
            "sink": {"type": "kafka", "bootstrapServers": broker.servers, "topic": "out"},
            "deadLetter": {"type": "kafka", "bootstrapServers": broker.servers, "topic": "in.dlq"},
            "checkpoint": {"store": dir.path().join("cp")}
        }),
    );
    let out = tokio::task::spawn_blocking(move || fluxion(&["run", job.to_str().unwrap()]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(broker.consume_all("out").len(), 5);
    let dlq = broker.consume_all("in.dlq");
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let letter = &dlq[0].value;
    assert_eq!(
        letter["position"],
        json!({"topic": "in", "partition": 0, "offset": 2})
    );
    assert_eq!(letter["raw"], "{\"customerId\": \"c-9\", \"status\": PAID}");
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{letter}"
    );
    assert!(letter["stage"].is_string(), "{letter}");
}

/// A transactional sink's records become visible to a `read_committed` consumer when the
/// checkpoint after them commits their transaction, not when their micro-batch ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_records_appear_at_the_checkpoint() {
    use fluxion::connect::kafka::sink::KafkaSink;
    use fluxion::connect::source::{BatchId, Sink};
    let broker = Broker::start();
    broker.create_topic("txn-out", 1).await;
    let config = serde_json::from_value(json!({
        "bootstrapServers": broker.servers, "topic": "txn-out", "delivery": "transactional"
    }))
    .unwrap();
    let mut sink = KafkaSink::open(&config, "txn-test").unwrap();
    let text: String = (0..10).map(|i| format!("{{\"n\": {i}}}\n")).collect();
    let decoded = fluxion::document::decode::decode(
        text.as_bytes(),
        "test",
        &fluxion::document::decode::JsonlOptions::default(),
    )
    .unwrap();
    let batch = datafusion::arrow::compute::concat_batches(
        &decoded.schema,
        decoded.partitions.iter().flatten(),
    )
    .unwrap();
    sink.begin(&BatchId {
        job: "txn-test".into(),
        number: 1,
    });
    sink.write(&[batch]).await.unwrap();
    sink.commit().await.unwrap();
    let before = broker.consume_committed("txn-out", 0).len();
    sink.sync().await.unwrap();
    let after = broker.consume_committed("txn-out", 10);
    assert_eq!((before, after.len()), (0, 10));
}

/// Two processes of one job share a 6-partition topic through their consumer group and one
/// checkpoint store (`runtime.scaleOut`), each partition a task of its own. One process is
/// killed with SIGKILL mid-run and started again; its partitions move to the other and back.
/// A consumer of the output topic sees every PAID order exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_partitions_and_survive_a_kill() {
    let broker = Broker::start();
    broker.create_topic("orders6", 6).await;
    broker.create_topic("scaled", 3).await;
    let input = orders(30_000, 0);
    // Keyed by customer, so every partition gets records.
    for chunk in input.chunks(5000) {
        let keys: Vec<String> = chunk
            .iter()
            .map(|v| serde_json::from_str::<Value>(v).unwrap()["customerId"].to_string())
            .collect();
        let records: Vec<(Option<&str>, &str)> = chunk
            .iter()
            .zip(&keys)
            .map(|(v, k)| (Some(k.as_str()), v.as_str()))
            .collect();
        broker.produce("orders6", &records).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("cp");
    let job = write_job(
        dir.path(),
        json!({
            "name": "scaled",
            "source": {"type": "kafka", "bootstrapServers": broker.servers, "topic": "orders6",
                       "groupId": "fluxion-scaled", "endAt": "latest",
                       "schema": {"customerId": "string", "status": "string", "orderValue": "double"},
                       "properties": {"session.timeout.ms": 3000, "heartbeat.interval.ms": 300}},
            "pipeline": [{"$match": {"status": "PAID"}}],
            "sink": {"type": "kafka", "bootstrapServers": broker.servers, "topic": "scaled",
                     "key": "$customerId"},
            "runtime": {"microBatchSize": 100, "scaleOut": true},
            "checkpoint": {"store": store, "intervalMs": 100}
        }),
    );
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_fluxion"))
            .args(["run", job.to_str().unwrap()])
            .env("RUST_LOG", "fluxion=info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = start();
    let mut b = start();
    // Once the second process holds partitions and has read some of them, SIGKILL it.
    let (assigned, on_assigned) = std::sync::mpsc::channel();
    let lines = std::io::BufReader::new(b.stderr.take().unwrap());
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in lines.lines().map_while(Result::ok) {
            if line.contains("task started") {
                let _ = assigned.send(());
            }
        }
    });
    on_assigned
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the second process was given no partition");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(b.try_wait().unwrap().is_none(), "it ended before the kill");
    b.kill().unwrap();
    b.wait().unwrap();
    // Started again: the group gives out the partitions anew, and whichever process gets the
    // killed one's resumes them from their checkpoints.
    let b = start();
    for (name, p) in [("a", a), ("b", b)] {
        let out = p.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "process {name}: {log}");
        eprintln!("process {name}:\n{log}");
    }
    let output = broker.consume_expecting("scaled", paid_texts(&input).len());
    let ids = identities_once(&output, "scaled");
    let (got, expected) = (
        order_texts(output.iter().map(|r| &r.value)),
        paid_texts(&input),
    );
    assert_eq!(got.len(), expected.len(), "records out");
    assert!(got == expected, "the records out are not the PAID orders");
    // Each partition's task has its checkpoints in the shared store, under its own name
    // (which the identities of its records carry).
    for p in 0..6 {
        let wrote = ids
            .iter()
            .any(|id| id.starts_with(&format!("scaled/orders6-{p}:")));
        let checkpointed = store
            .join(format!("tasks/orders6-{p}/checkpoint.json"))
            .exists();
        assert!(!wrote || checkpointed, "partition {p}");
    }
    assert!(ids.iter().any(|id| id.starts_with("scaled/orders6-")));
}
