//! `$sqlQuery` and SQL's `sql_query(…)` against a real PostgreSQL server started by the
//! harness (`tests/common/postgres.rs`): one evaluation per distinct parameter tuple, the
//! answer's shapes and types, failures under `onError`, the cache across a stream's batches,
//! a server restarted in the middle of a run, and a job file's named connection whose
//! password never shows.

mod common;

use common::postgres::{PASSWORD, Postgres};
use fluxion::connect::memory::{MemorySink, MemorySource};
use fluxion::runtime::exec::micro_batch::{RuntimeOptions, run_with_dead_letters};
use fluxion::runtime::state::checkpoint::MemoryCheckpoints;
use fluxion::{Engine, Pipeline};
use serde_json::{Value, json};

/// Customers 1‥10 (even ids are gold), two orders each, and `tier_of(id)`, which counts how
/// often it is evaluated in `calls`.
async fn customers(pg: &Postgres) {
    pg.execute(
        "CREATE TABLE customers (id bigint PRIMARY KEY, tier text, region text,
                                 since timestamptz, prefs jsonb);
         INSERT INTO customers
           SELECT i, CASE WHEN i % 2 = 0 THEN 'gold' ELSE 'basic' END, 'r' || (i % 3),
                  timestamptz '2026-01-01 00:00:00+00' + i * interval '1 day',
                  jsonb_build_object('lang', 'en', 'n', i)
           FROM generate_series(1, 10) i;
         CREATE TABLE orders (customer bigint, amount double precision);
         INSERT INTO orders SELECT i, i * 10 FROM generate_series(1, 10) i;
         INSERT INTO orders SELECT i, i * 10 + 1 FROM generate_series(1, 10) i;
         CREATE TABLE calls (n bigint);
         INSERT INTO calls VALUES (0);
         CREATE FUNCTION tier_of(bigint) RETURNS text LANGUAGE sql VOLATILE AS $$
           UPDATE calls SET n = n + 1;
           SELECT tier FROM customers WHERE id = $1;
         $$;",
    )
    .await;
}

async fn calls(pg: &Postgres) -> i64 {
    pg.documents("SELECT n FROM calls").await[0]["n"]
        .as_i64()
        .unwrap()
}

fn documents(n: usize, distinct: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"i\": {i}, \"customerId\": {}}}\n", i % distinct + 1))
        .collect()
}

/// Thirty documents over five customers evaluate the query five times; each document gets
/// its customer's row as a document (typed from the server's columns), an unknown customer
/// and a missing parameter get null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_distinct_tuple_is_queried_once() {
    let pg = Postgres::start();
    customers(&pg).await;
    let mut docs = documents(30, 5);
    docs.push_str("{\"i\": 30, \"customerId\": 99}\n{\"i\": 31}\n");
    let out = common::run(
        &docs,
        json!([{"$addFields": {"c": {"$sqlQuery": {
                    "url": pg.url(),
                    "query": "SELECT tier_of(id) AS tier, region, since FROM customers WHERE id = $1",
                    "params": ["$customerId"], "expectSingle": true}}}},
               {"$project": {"_id": 0, "i": 1, "tier": "$c.tier", "region": "$c.region",
                             "year": {"$year": "$c.since"}}},
               {"$sort": {"i": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(out.len(), 32);
    for d in &out[..30] {
        let id = d["i"].as_i64().unwrap() % 5 + 1;
        let tier = if id % 2 == 0 { "gold" } else { "basic" };
        assert_eq!(
            d,
            &json!({"i": d["i"], "tier": tier, "region": format!("r{}", id % 3), "year": 2026})
        );
    }
    assert_eq!(out[30], json!({"i": 30}));
    assert_eq!(out[31], json!({"i": 31}));
    assert_eq!(calls(&pg).await, 5);
}

/// `"result": "value"` gives the single column's value, the default gives every row as an
/// array of documents, and `returns` reads a jsonb column as a document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_arrays_and_declared_documents() {
    let pg = Postgres::start();
    customers(&pg).await;
    let out = common::run(
        &documents(3, 3),
        json!([{"$addFields": {
                  "tier": {"$sqlQuery": {"url": pg.url(), "result": "value",
                           "query": "SELECT tier FROM customers WHERE id = $1", "params": ["$customerId"]}},
                  "orders": {"$sqlQuery": {"url": pg.url(),
                           "query": "SELECT amount FROM orders WHERE customer = $1 ORDER BY amount DESC",
                           "params": ["$customerId"]}},
                  "prefs": {"$sqlQuery": {"url": pg.url(), "result": "value", "returns": {"lang": "string", "n": "long"},
                           "query": "SELECT prefs FROM customers WHERE id = $1", "params": ["$customerId"]}}}},
               {"$project": {"_id": 0, "i": 1, "tier": 1, "total": {"$sum": "$orders.amount"},
                             "first": {"$first": "$orders.amount"}, "lang": "$prefs.lang", "n": "$prefs.n"}},
               {"$sort": {"i": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        vec![
            json!({"i": 0, "tier": "basic", "total": 21.0, "first": 11.0, "lang": "en", "n": 1}),
            json!({"i": 1, "tier": "gold", "total": 41.0, "first": 21.0, "lang": "en", "n": 2}),
            json!({"i": 2, "tier": "basic", "total": 61.0, "first": 31.0, "lang": "en", "n": 3}),
        ]
    );
}

/// Two rows where one was expected: null under `onError: "null"`, the run's failure under
/// `"fail"` — naming the server without its password. A query the server rejects is refused
/// when the pipeline is planned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_follow_on_error() {
    let pg = Postgres::start();
    customers(&pg).await;
    let call = |on_error: &str| {
        json!([{"$addFields": {"o": {"$sqlQuery": {"url": pg.url(), "expectSingle": true, "onError": on_error,
                "query": "SELECT amount FROM orders WHERE customer = $1", "params": ["$customerId"]}}}}])
    };
    let out = common::run(&documents(2, 2), call("null")).await.unwrap();
    assert!(out.iter().all(|d| d.get("o").is_none()), "{out:?}");
    let err = common::run(&documents(2, 2), call("fail"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected at most one row"), "{err}");
    assert!(
        err.contains("127.0.0.1") && !err.contains(PASSWORD),
        "{err}"
    );
    let err = common::run(
        &documents(1, 1),
        json!([{"$set": {"o": {"$sqlQuery": {"url": pg.url(), "query": "SELEC tier FROM customers WHERE id = $1",
                                              "params": ["$customerId"]}}}}]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("pipeline[0].$set.o.$sqlQuery") && err.contains("syntax error"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");
}

/// A stream's call site keeps its cache from batch to batch: forty documents over four
/// customers in batches of five evaluate the query four times, and forty times without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streams_cache_lasts_across_batches() {
    let pg = Postgres::start();
    customers(&pg).await;
    for (cache, expected) in [(Some(json!({"maxEntries": 100})), 4), (None, 32)] {
        pg.execute("UPDATE calls SET n = 0").await;
        let mut options = json!({"url": pg.url(), "result": "value",
                                 "query": "SELECT tier_of($1)", "params": ["$customerId"]});
        if let Some(c) = cache {
            options["cache"] = c;
        }
        let pipeline =
            Pipeline::from_value(&json!([{"$addFields": {"tier": {"$sqlQuery": options}}}]))
                .unwrap();
        let mut source = MemorySource::from_jsonl(documents(40, 4).as_bytes()).unwrap();
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
        for d in &docs {
            let gold = d["customerId"].as_i64().unwrap() % 2 == 0;
            assert_eq!(d["tier"], if gold { "gold" } else { "basic" }, "{d}");
        }
        // Without a cache each batch of five asks for its four distinct customers.
        assert_eq!(calls(&pg).await, expected);
    }
}

/// The server restarts while a stream is running: the queries that lose their connection
/// are retried on a new one, and every document is enriched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_in_the_middle_of_a_run() {
    let pg = std::sync::Arc::new(Postgres::start());
    customers(&pg).await;
    let pipeline = Pipeline::from_value(&json!([{"$addFields": {"tier": {"$sqlQuery": {
        "url": pg.url(), "result": "value",
        "query": "SELECT tier_of($1) FROM pg_sleep(0.02)", "params": ["$customerId"],
        "retry": {"maxAttempts": 60, "backoffMs": 100, "multiplier": 1.0}}}}}]))
    .unwrap();
    let restarted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let restarter = {
        let pg = pg.clone();
        let restarted = restarted.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(400));
            pg.restart();
            restarted.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let mut source = MemorySource::from_jsonl(documents(200, 7).as_bytes()).unwrap();
    let (mut sink, docs) = MemorySink::with_view();
    run_with_dead_letters(
        &Engine::new(),
        &pipeline,
        &mut source,
        &mut sink,
        None,
        &mut MemoryCheckpoints::default(),
        &RuntimeOptions {
            micro_batch_size: 4,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // The run outlasted the restart, so it met the lost connections.
    assert!(restarted.load(std::sync::atomic::Ordering::SeqCst));
    restarter.join().unwrap();
    let docs = docs.documents().unwrap();
    assert_eq!(docs.len(), 200);
    for d in &docs {
        let gold = d["customerId"].as_i64().unwrap() % 2 == 0;
        assert_eq!(d["tier"], if gold { "gold" } else { "basic" }, "{d}");
    }
}

/// SQL's `sql_query('<options>', params…)`, and a job file whose SQL names a connection
/// with the password in an environment variable: it never shows in `explain`, and a wrong
/// one fails without showing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_query_in_sql_and_a_named_connection() {
    let pg = Postgres::start();
    customers(&pg).await;
    let engine = Engine::new();
    engine
        .register_jsonl("orders", documents(6, 3).as_bytes())
        .unwrap();
    let options = json!({"url": pg.url(), "expectSingle": true,
                         "query": "SELECT tier, region FROM customers WHERE id = $1"})
    .to_string();
    let df = engine
        .sql(&format!(
            "SELECT i, sql_query('{options}', \"customerId\")['tier'] AS tier FROM orders ORDER BY i"
        ))
        .await
        .unwrap();
    let rows = common::collect(Ok(df)).await.unwrap();
    let tiers: Vec<&str> = rows.iter().map(|r| r["tier"].as_str().unwrap()).collect();
    assert_eq!(tiers, ["basic", "gold", "basic", "basic", "gold", "basic"]);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), documents(4, 2)).unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        json!({
            "source": {"type": "file", "path": dir.path().join("in.jsonl")},
            "connections": {"pg": {"type": "postgres", "url": pg.url_with_env("FLUXION_TEST_PG_PASSWORD")}},
            "sql": "SELECT i, sql_query('{\"connection\": \"pg\", \"result\": \"value\", \"query\": \"SELECT region FROM customers WHERE id = $1\"}', \"customerId\") AS region FROM input ORDER BY i",
            "sink": {"type": "file", "path": dir.path().join("out.jsonl")}
        })
        .to_string(),
    )
    .unwrap();
    let fluxion = |args: &[&str], password: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fluxion"))
            .args(args)
            .env("FLUXION_TEST_PG_PASSWORD", password)
            .output()
            .unwrap()
    };
    let out = fluxion(&["run", job.to_str().unwrap()], PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: Vec<Value> = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        written,
        vec![
            json!({"i": 0, "region": "r1"}),
            json!({"i": 1, "region": "r2"}),
            json!({"i": 2, "region": "r1"}),
            json!({"i": 3, "region": "r2"})
        ]
    );
    // The same SQL as a stream (micro-batches of two documents).
    let mut streaming: Value =
        serde_json::from_str(&std::fs::read_to_string(&job).unwrap()).unwrap();
    streaming["runtime"] = json!({"microBatchSize": 2});
    // A stream keeps its input's order (and refuses `ORDER BY`).
    let sql = streaming["sql"]
        .as_str()
        .unwrap()
        .replace(" ORDER BY i", "");
    streaming["sql"] = json!(sql);
    streaming["sink"]["path"] = json!(dir.path().join("streamed.jsonl"));
    let streamed_job = dir.path().join("streamed.json");
    std::fs::write(&streamed_job, streaming.to_string()).unwrap();
    let out = fluxion(&["run", streamed_job.to_str().unwrap()], PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let streamed: Vec<Value> = std::fs::read_to_string(dir.path().join("streamed.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(streamed, written);
    let out = fluxion(&["explain", job.to_str().unwrap()], PASSWORD);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("sql_query(") && !shown.contains(PASSWORD),
        "{shown}"
    );
    let out = fluxion(&["run", job.to_str().unwrap()], "wrong-password");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(
        !err.contains("wrong-password") && !err.contains(PASSWORD),
        "{err}"
    );
}

/// Under `onError: "deadLetter"` a document whose query fails goes to the dead-letter sink
/// with the reason and its source position; the others are enriched, and the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_documents_go_to_the_dead_letter_sink() {
    let pg = Postgres::start();
    customers(&pg).await;
    // Customer 3 has a second row in `twice`, so `expectSingle` fails for it.
    pg.execute("CREATE TABLE twice AS SELECT id, tier FROM customers; INSERT INTO twice VALUES (3, 'again')")
        .await;
    let pipeline = Pipeline::from_value(&json!([{"$addFields": {"tier": {"$sqlQuery": {
        "url": pg.url(), "result": "value", "onError": "deadLetter",
        "query": "SELECT tier FROM twice WHERE id = $1", "params": ["$customerId"]}}}}]))
    .unwrap();
    let mut source = MemorySource::from_jsonl(documents(20, 5).as_bytes()).unwrap();
    let (mut sink, docs) = MemorySink::with_view();
    let mut dead = MemorySink::default();
    let stats = run_with_dead_letters(
        &Engine::new(),
        &pipeline,
        &mut source,
        &mut sink,
        Some(&mut dead),
        &mut MemoryCheckpoints::default(),
        &RuntimeOptions {
            micro_batch_size: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let docs = docs.documents().unwrap();
    assert_eq!(docs.len(), 16);
    assert!(
        docs.iter()
            .all(|d| d["customerId"] != 3 && d["tier"].is_string())
    );
    let letters = fluxion::document::encode::to_documents(&dead.committed).unwrap();
    assert_eq!(letters.len(), 4);
    assert_eq!(stats.dead_lettered, 4);
    for l in &letters {
        assert_eq!(l["stage"], "enrich");
        let raw: Value = serde_json::from_str(l["raw"].as_str().unwrap()).unwrap();
        assert_eq!(raw["customerId"], 3);
        assert!(
            l["reason"]
                .as_str()
                .unwrap()
                .contains("expected at most one row"),
            "{l}"
        );
        assert!(l["position"]["document"].is_u64(), "{l}");
    }
}

/// The PostgreSQL enrich example: revenue per region and tier, the customer looked up in
/// the example's customers table through a named connection made of environment variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_enrich_example_gives_the_revenue_per_region_and_tier() {
    let pg = Postgres::start();
    pg.execute(&std::fs::read_to_string("examples/enrich/customers.sql").unwrap())
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut job: Value = serde_json::from_str(
        &std::fs::read_to_string("examples/enrich-region-tier-pg.json").unwrap(),
    )
    .unwrap();
    job["source"]["path"] = json!(std::fs::canonicalize("examples/data/orders.jsonl").unwrap());
    let out_path = dir.path().join("out.jsonl");
    job["sink"]["path"] = json!(out_path);
    let path = dir.path().join("job.json");
    std::fs::write(&path, job.to_string()).unwrap();
    let port = pg.port.to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fluxion"))
        .args(["run", path.to_str().unwrap()])
        .envs([
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", port.as_str()),
            ("PGUSER", common::postgres::USER),
            ("PGPASSWORD", PASSWORD),
            ("PGDATABASE", "postgres"),
        ])
        .output()
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
    // The same rule as customers.sql, as an expression of the customer's number.
    let n = json!({"$toInt": {"$substrCP": ["$customerId", 2, 5]}});
    let expected = common::run(
        &std::fs::read_to_string("examples/data/orders.jsonl").unwrap(),
        json!([{"$match": {"status": "PAID"}},
               {"$addFields": {"customer": {
                   "tier": {"$arrayElemAt": [["gold", "silver", "basic"], {"$mod": [n, 3]}]},
                   "region": {"$arrayElemAt": [["north", "east", "south", "west"], {"$mod": [n, 4]}]}}}},
               {"$group": {"_id": {"region": "$customer.region", "tier": "$customer.tier"},
                           "orders": {"$count": {}}, "revenue": {"$sum": "$orderValue"}}},
               {"$sort": {"_id.region": 1, "_id.tier": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(got.len(), 12);
    common::same_documents(&got, &expected, true).unwrap();
}
