//! The HTTP sink against a real HTTP server on loopback (`tests/common/http.rs`): documents
//! posted in requests of `batchSize`, 5xx and 429 (after its `Retry-After`) sent again with
//! the same `Idempotency-Key`, a refused batch to the dead-letter sink, secrets from the
//! environment in headers and never in errors.

mod common;

use std::time::Duration;

use common::http::{Receiver, Reply, body_documents};
use fluxion::connect::http_sink::HttpSink;
use fluxion::connect::memory::{MemorySink, MemorySource};
use fluxion::runtime::exec::micro_batch::{RuntimeOptions, run_with_dead_letters};
use fluxion::runtime::policy::error_policy::ErrorPolicy;
use fluxion::runtime::state::checkpoint::MemoryCheckpoints;
use fluxion::{Engine, Pipeline};
use serde_json::{Value, json};

fn docs(n: usize) -> (Vec<Value>, String) {
    let docs: Vec<Value> = (0..n)
        .map(|i| json!({"n": i, "even": i % 2 == 0}))
        .collect();
    let text = docs.iter().map(|d| format!("{d}\n")).collect();
    (docs, text)
}

fn sink(receiver: &Receiver, extra: Value) -> HttpSink {
    let mut c = json!({"endpoint": receiver.url, "batchSize": 40,
                       "retry": {"maxAttempts": 4, "backoffMs": 10}});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    HttpSink::open(&serde_json::from_value(c).unwrap(), "test").unwrap()
}

/// 250 documents in micro-batches of 100 go as requests of at most 40; a 500, a 429 asking for
/// a second and a 503 are sent again with the same key, after the second the 429 asked for;
/// every request has the header whose value came from the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_posted_and_failed_requests_sent_again() {
    // SAFETY: no other test of this file reads or writes this variable.
    unsafe { std::env::set_var("FLUXION_HTTP_TEST_TOKEN", "tok-123") };
    let receiver = Receiver::start().await;
    receiver.script([Reply::Status(500), Reply::TooMany(1), Reply::Status(503)]);
    let (expected, text) = docs(250);
    let mut source = MemorySource::from_jsonl(text.as_bytes()).unwrap();
    let mut sink = sink(
        &receiver,
        json!({"headers": {"Authorization": "Bearer ${FLUXION_HTTP_TEST_TOKEN}"}}),
    );
    let options = RuntimeOptions {
        micro_batch_size: 100,
        ..Default::default()
    };
    run_with_dead_letters(
        &Engine::new(),
        &Pipeline::from_value(&json!([{"$match": {}}])).unwrap(),
        &mut source,
        &mut sink,
        None,
        &mut MemoryCheckpoints::default(),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(receiver.documents_once(), expected);
    let got = receiver.received();
    // 3 + 3 + 2 accepted requests, and the three that failed.
    assert_eq!(got.iter().filter(|r| r.status == 200).count(), 8);
    assert_eq!(got.len(), 11);
    assert!(
        got.iter()
            .filter(|r| r.status == 200)
            .all(|r| body_documents(&r.body).len() <= 40)
    );
    // The failed ones and the one that passed share the first request's key.
    assert!(
        got[..4]
            .iter()
            .all(|r| r.key == got[0].key && r.key.is_some())
    );
    assert!(
        got[2].at - got[1].at >= Duration::from_millis(950),
        "Retry-After was not honoured"
    );
    let mut keys: Vec<_> = got
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.key.clone())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 8);
    assert!(
        got.iter()
            .all(|r| r.headers["authorization"] == "Bearer tok-123")
    );
}

/// A request the endpoint refuses (400) is not sent again: the batch goes to the dead-letter
/// sink, whose reason names the status and not the secret header, and the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_goes_to_the_dead_letter_sink() {
    // SAFETY: no other test of this file reads or writes this variable.
    unsafe { std::env::set_var("FLUXION_HTTP_TEST_SECRET", "very-secret-value") };
    let receiver = Receiver::start().await;
    receiver.script([Reply::Status(400)]);
    let (expected, text) = docs(120);
    let mut source = MemorySource::from_jsonl(text.as_bytes()).unwrap();
    let mut sink = sink(
        &receiver,
        json!({"batchSize": 1000, "format": "ndjson",
               "headers": {"X-Api-Key": "${FLUXION_HTTP_TEST_SECRET}"}}),
    );
    let (mut dead, letters) = MemorySink::with_view();
    let options = RuntimeOptions {
        micro_batch_size: 50,
        error_policy: ErrorPolicy::from_json(&json!("deadLetter"), "test").unwrap(),
        ..Default::default()
    };
    run_with_dead_letters(
        &Engine::new(),
        &Pipeline::from_value(&json!([{"$match": {}}])).unwrap(),
        &mut source,
        &mut sink,
        Some(&mut dead),
        &mut MemoryCheckpoints::default(),
        &options,
    )
    .await
    .unwrap();
    let letters = letters.documents().unwrap();
    assert_eq!(letters.len(), 50);
    assert!(letters.iter().all(|l| l["stage"] == "sink"));
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(reason.contains("400"), "{reason}");
    assert!(!reason.contains("very-secret-value"), "{reason}");
    assert_eq!(receiver.documents_once(), expected[50..]);
    assert_eq!(
        receiver.received().len(),
        3,
        "the refused request was sent again"
    );
}
