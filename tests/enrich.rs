//! `$httpCall` against a real HTTP server on loopback (`tests/common/http.rs`): lookups per
//! distinct request, typed answers, retries, errors, the cache across a stream's batches,
//! and a job file's named connection with a secret header.

mod common;

use common::http::{Receiver, Reply};
use fluxion::connect::memory::{MemorySink, MemorySource};
use fluxion::runtime::exec::micro_batch::{RuntimeOptions, run_with_dead_letters};
use fluxion::runtime::state::checkpoint::MemoryCheckpoints;
use fluxion::{Engine, Pipeline};
use serde_json::{Value, json};

fn customers(n: usize, distinct: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"i\": {i}, \"customerId\": \"c-{}\"}}\n", i % distinct))
        .collect()
}

/// Each document gets its customer's name; identical requests of a batch are made once, and
/// a document without the placeholder's field makes none and gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_distinct_request_of_a_batch_is_made_once() {
    let server = Receiver::start().await;
    let mut docs = customers(30, 5);
    docs.push_str("{\"i\": 30}\n");
    let out = common::run(
        &docs,
        json!([{"$addFields": {"name": {"$httpCall": {
            "url": format!("{}/customers/{{{{customerId}}}}", server.base), "responsePath": "/name"}}}},
               {"$sort": {"i": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(out.len(), 31);
    for d in &out[..30] {
        let id = d["customerId"].as_str().unwrap();
        assert_eq!(d["name"], format!("name-{id}"));
    }
    assert!(out[30].get("name").is_none(), "{}", out[30]);
    let mut paths: Vec<String> = server.received().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(
        paths,
        (0..5)
            .map(|k| format!("/customers/c-{k}"))
            .collect::<Vec<_>>()
    );
}

/// A declared `returns` type makes the answer a document later stages read; 5xx and 429
/// answers are retried (after the 429's `Retry-After`); a 404 is `null` under `onError: "null"` and fails the run under `"fail"`, with an
/// error naming the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_answers_retries_and_failures() {
    let server = Receiver::start().await;
    server.script([Reply::Status(500), Reply::TooMany(1), Reply::Status(503)]);
    let call = |on_error: &str| {
        json!({"$httpCall": {"url": format!("{}/customers/{{{{customerId}}}}", server.base),
                              "returns": {"tier": "string", "score": "long"},
                              "retry": {"maxAttempts": 3, "backoffMs": 5}, "onError": on_error}})
    };
    let out = common::run(
        &customers(4, 4),
        json!([{"$addFields": {"customer": call("fail")}},
               {"$match": {"customer.tier": "gold"}},
               {"$project": {"_id": 0, "customerId": 1, "score": "$customer.score"}},
               {"$sort": {"customerId": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        vec![
            json!({"customerId": "c-0", "score": 3}),
            json!({"customerId": "c-2", "score": 3})
        ]
    );
    let statuses: Vec<u16> = server.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s >= 429).count(), 3);
    assert_eq!(statuses.len(), 7, "four lookups, three of them retried");
    // The 429's `Retry-After: 1` was waited, not the 5 ms backoff.
    let received = server.received();
    let after_429 = received.iter().position(|r| r.status == 429).unwrap();
    let waited = received[after_429 + 1..]
        .iter()
        .map(|r| r.at.duration_since(received[after_429].at))
        .max()
        .unwrap();
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "{waited:?}"
    );

    // A path the server does not have answers 404, which is not retried.
    let missing = json!({"$httpCall": {"url": format!("{}/nothing/{{{{customerId}}}}", server.base),
                                        "onError": "null"}});
    let out = common::run(&customers(2, 2), json!([{"$addFields": {"x": missing}}]))
        .await
        .unwrap();
    assert!(out.iter().all(|d| d.get("x").is_none()), "{out:?}");
    let failing = json!({"$httpCall": {"url": format!("{}/nothing/{{{{customerId}}}}", server.base),
                                        "onError": "fail"}});
    let err = common::run(&customers(2, 2), json!([{"$addFields": {"x": failing}}]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 404") && err.contains("/nothing/c-"),
        "{err}"
    );
}

/// In a stream the plan is made once, so its cache lasts from batch to batch: with a cache,
/// four customers over eight batches are asked for four times; without, once per batch each
/// appears in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streams_cache_lasts_across_batches() {
    for (cache, expected) in [
        (Some(json!({"maxEntries": 100, "ttlMs": 60000})), 4),
        (None, 32),
    ] {
        let server = Receiver::start().await;
        let mut options = json!({"url": format!("{}/customers/{{{{customerId}}}}", server.base),
                                 "responsePath": "/name"});
        if let Some(c) = cache {
            options["cache"] = c;
        }
        let pipeline =
            Pipeline::from_value(&json!([{"$addFields": {"name": {"$httpCall": options}}}]))
                .unwrap();
        let mut source = MemorySource::from_jsonl(customers(40, 4).as_bytes()).unwrap();
        let (mut sink, docs) = MemorySink::with_view();
        run_with_dead_letters(
            &Engine::new(),
            &pipeline,
            &mut source,
            &mut sink,
            None,
            &mut MemoryCheckpoints::default(),
            &RuntimeOptions {
                micro_batch_size: 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let docs = docs.documents().unwrap();
        assert_eq!(docs.len(), 40);
        assert!(
            docs.iter().all(|d| d["name"]
                == Value::String(format!("name-{}", d["customerId"].as_str().unwrap())))
        );
        assert_eq!(server.received().len(), expected);
    }
}

/// A job file's named connection gives the call its base URL and a header whose value comes
/// from the environment; the secret reaches the server and stays out of the output and the
/// errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_connection_with_a_secret_header() {
    let server = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), customers(6, 3)).unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        json!({
            "source": {"type": "file", "path": dir.path().join("in.jsonl")},
            "connections": {"crm": {"type": "http", "baseUrl": server.base,
                                    "headers": {"Authorization": "Bearer ${FLUXION_TEST_CRM_TOKEN}"}}},
            "pipeline": [{"$set": {"name": {"$httpCall": {"connection": "crm",
                                                          "url": "/customers/{{customerId}}",
                                                          "responsePath": "/name"}}}}],
            "sink": {"type": "file", "path": dir.path().join("out.jsonl")}
        })
        .to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fluxion"))
        .args(["run", job.to_str().unwrap()])
        .env("FLUXION_TEST_CRM_TOKEN", "s3cr3t-t0ken")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(written.lines().count(), 6);
    assert!(written.contains("\"name\":\"name-c-1\""));
    assert!(!written.contains("s3cr3t"));
    let received = server.received();
    assert_eq!(received.len(), 3);
    assert!(
        received
            .iter()
            .all(|r| r.headers["authorization"] == "Bearer s3cr3t-t0ken")
    );

    // `explain` shows the call by its URL, not its headers.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fluxion"))
        .args(["explain", job.to_str().unwrap()])
        .env("FLUXION_TEST_CRM_TOKEN", "s3cr3t-t0ken")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("http_call(") && !shown.contains("s3cr3t"),
        "{shown}"
    );

    // Without the variable the job stops before running, naming it — and no secret.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fluxion"))
        .args(["run", job.to_str().unwrap()])
        .env_remove("FLUXION_TEST_CRM_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("FLUXION_TEST_CRM_TOKEN is not set"), "{err}");
}

/// After enough failures the breaker opens and the rest of the batch is not called at all
/// (each document gets null under `onError: "null"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_breaker_stops_calling() {
    let server = Receiver::start().await;
    server.script((0..10).map(|_| Reply::Status(500)));
    let out = common::run(
        &customers(20, 20),
        json!([{"$addFields": {"name": {"$httpCall": {
            "url": format!("{}/customers/{{{{customerId}}}}", server.base), "responsePath": "/name",
            "retry": {"maxAttempts": 1}, "maxConcurrency": 1,
            "circuitBreaker": {"failureRate": 0.5, "minimumCalls": 3, "openMs": 60000}}}}}]),
    )
    .await
    .unwrap();
    assert_eq!(out.len(), 20);
    assert!(out.iter().all(|d| d.get("name").is_none()));
    assert_eq!(server.received().len(), 3, "three failures opened it");
}

/// Two call sites on one connection share its token bucket: six requests at 10 a second
/// (bursts of 1) take half a second or more, where either site's three alone would take 0.2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_sites_of_one_connection_share_its_rate_limit() {
    let server = Receiver::start().await;
    let call = |field: &str| {
        json!({"$httpCall": {"connection": "limited-crm", "baseUrl": server.base,
                              "url": format!("/customers/{{{{{field}}}}}"), "responsePath": "/name",
                              "rateLimit": {"perSecond": 10, "burst": 1}}})
    };
    let docs: String = (0..3)
        .map(|i| format!("{{\"a\": \"a-{i}\", \"b\": \"b-{i}\"}}\n"))
        .collect();
    let out = common::run(
        &docs,
        json!([{"$addFields": {"x": call("a"), "y": call("b")}}]),
    )
    .await
    .unwrap();
    assert!(
        out.iter()
            .all(|d| d["x"].as_str().unwrap().starts_with("name-a-")
                && d["y"].as_str().unwrap().starts_with("name-b-"))
    );
    let received = server.received();
    assert_eq!(received.len(), 6);
    let first = received.iter().map(|r| r.at).min().unwrap();
    let last = received.iter().map(|r| r.at).max().unwrap();
    assert!(
        last.duration_since(first) >= std::time::Duration::from_millis(450),
        "{:?}",
        last.duration_since(first)
    );
}

/// A call inside `$match` (through `$expr`) filters on the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_can_decide_a_match() {
    let server = Receiver::start().await;
    let out = common::run(
        &customers(8, 4),
        json!([{"$match": {"$expr": {"$eq": [{"$httpCall": {
            "url": format!("{}/customers/{{{{customerId}}}}", server.base), "responsePath": "/tier"}}, "gold"]}}},
               {"$project": {"_id": 0, "customerId": 1}}, {"$sort": {"customerId": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        vec![
            json!({"customerId": "c-0"}),
            json!({"customerId": "c-0"}),
            json!({"customerId": "c-2"}),
            json!({"customerId": "c-2"})
        ]
    );
}

/// The example job (`examples/enrich-customer-tier.json`), pointed at the test server (which
/// answers tiers by the same rule as `examples/enrich/crm.py`), gives the revenue per tier a
/// plain pipeline computes with the rule written as an expression.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enrich_example_gives_the_revenue_per_tier() {
    let server = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut job: Value = serde_json::from_str(
        &std::fs::read_to_string("examples/enrich-customer-tier.json").unwrap(),
    )
    .unwrap();
    job["source"]["path"] = json!(std::fs::canonicalize("examples/data/orders.jsonl").unwrap());
    job["connections"]["crm"]["baseUrl"] = json!(server.base);
    let out_path = dir.path().join("out.jsonl");
    job["sink"]["path"] = json!(out_path);
    let path = dir.path().join("job.json");
    std::fs::write(&path, job.to_string()).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fluxion"))
            .args(["run", path.to_str().unwrap()])
            .env("CRM_TOKEN", "demo")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<Value> = std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let orders = std::fs::read_to_string("examples/data/orders.jsonl").unwrap();
    let tier = json!({"$cond": [{"$in": [{"$substrCP": ["$customerId", {"$subtract": [{"$strLenCP": "$customerId"}, 1]}, 1]},
                                         ["0", "2", "4", "6", "8"]]}, "gold", "basic"]});
    let expected = common::run(
        &orders,
        json!([{"$match": {"status": "PAID"}}, {"$addFields": {"tier": tier}},
               {"$group": {"_id": "$tier", "orders": {"$count": {}}, "revenue": {"$sum": "$orderValue"}}},
               {"$sort": {"_id": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(got.len(), 2);
    common::same_documents(&got, &expected, true).unwrap();
    // The cache asked for each customer once.
    let customers: std::collections::HashSet<String> =
        server.received().into_iter().map(|r| r.path).collect();
    assert_eq!(customers.len(), server.received().len());
}

/// In SQL the same call is `http_call('<options>', placeholder arguments…)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_calls_http_call_with_options_and_arguments() {
    let server = Receiver::start().await;
    let engine = Engine::new();
    engine
        .register_jsonl("orders", customers(6, 3).as_bytes())
        .unwrap();
    let options = json!({"url": format!("{}/customers/{{{{id}}}}", server.base),
                         "returns": {"tier": "string", "score": "long"},
                         "cache": {"maxEntries": 100}})
    .to_string();
    let df = engine
        .sql(&format!(
            "SELECT \"customerId\", http_call('{options}', \"customerId\")['tier'] AS tier \
             FROM orders ORDER BY i"
        ))
        .await
        .unwrap();
    let rows = common::collect(Ok(df)).await.unwrap();
    assert_eq!(rows.len(), 6);
    for r in &rows {
        let gold = r["customerId"].as_str().unwrap().ends_with(['0', '2']);
        assert_eq!(r["tier"], if gold { "gold" } else { "basic" }, "{r}");
    }
    assert_eq!(server.received().len(), 3);
    // A call whose arguments do not match its placeholders is refused at planning.
    let err = engine
        .sql(&format!("SELECT http_call('{options}') FROM orders"))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("give 1 argument(s)"), "{err}");
}

/// Under `onError: "deadLetter"` the documents whose request failed go to the dead-letter
/// sink (the failed request is not made again while the batch is narrowed down); the
/// others are enriched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_documents_go_to_the_dead_letter_sink() {
    let server = Receiver::start().await;
    server.script([Reply::Status(404)]);
    let pipeline = Pipeline::from_value(&json!([{"$addFields": {"name": {"$httpCall": {
        "url": format!("{}/customers/{{{{customerId}}}}", server.base), "responsePath": "/name",
        "onError": "deadLetter", "retry": {"maxAttempts": 1}, "maxConcurrency": 1}}}}]))
    .unwrap();
    let mut source = MemorySource::from_jsonl(customers(5, 2).as_bytes()).unwrap();
    let (mut sink, docs) = MemorySink::with_view();
    let mut dead = MemorySink::default();
    run_with_dead_letters(
        &Engine::new(),
        &pipeline,
        &mut source,
        &mut sink,
        Some(&mut dead),
        &mut MemoryCheckpoints::default(),
        &RuntimeOptions::default(),
    )
    .await
    .unwrap();
    let letters = fluxion::document::encode::to_documents(&dead.committed).unwrap();
    let raws: Vec<Value> = letters
        .iter()
        .map(|l| serde_json::from_str(l["raw"].as_str().unwrap()).unwrap())
        .collect();
    // The first request made failed: every document of its customer is a dead letter.
    let failed = raws[0]["customerId"].clone();
    assert!(raws.iter().all(|r| r["customerId"] == failed), "{raws:?}");
    assert!(
        letters
            .iter()
            .all(|l| l["reason"].as_str().unwrap().contains("HTTP 404"))
    );
    let docs = docs.documents().unwrap();
    assert_eq!(docs.len() + letters.len(), 5);
    assert!(
        docs.iter()
            .all(|d| d["customerId"] != failed && d["name"].is_string())
    );
    // The failed request is not made again while the batch is narrowed down (the other
    // one is, for each run of the half it is in: it has no cache).
    let failures = server.received().iter().filter(|r| r.status == 404).count();
    assert_eq!(failures, 1);
}

/// A server that hangs up in the middle of its answer is asked again; one too slow for
/// `timeoutMs` is given up on (and asked again, while attempts are left).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_up_and_a_timeout_are_retried() {
    let server = Receiver::start().await;
    let call = |attempts: u32| {
        json!([{"$addFields": {"name": {"$httpCall": {
            "url": format!("{}/customers/{{{{customerId}}}}", server.base), "responsePath": "/name",
            "timeoutMs": 200, "retry": {"maxAttempts": attempts, "backoffMs": 10}, "onError": "fail"}}}}])
    };
    server.script([Reply::HangUp]);
    let out = common::run(&customers(1, 1), call(2)).await.unwrap();
    assert_eq!(out[0]["name"], "name-c-0");
    assert_eq!(server.received().len(), 2);
    server.script([
        Reply::HangUp,
        Reply::Slow(std::time::Duration::from_secs(5)),
    ]);
    let err = common::run(&customers(1, 1), call(2))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("timed out") && err.contains("after 2 attempts"),
        "{err}"
    );
}
