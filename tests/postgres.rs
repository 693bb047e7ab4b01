//! The PostgreSQL sink and source against a real PostgreSQL server started by the harness
//! (`tests/common/postgres.rs`): rows named and typed from the documents' fields, a
//! continuous `$group`'s upserts, rows exactly once through SIGKILLs of the job and a server
//! restart, clear errors; the source's snapshot, its cursor in the checkpoint, its types.

mod common;

use common::postgres::{PASSWORD, Postgres};
use serde_json::{Value, json};

fn fluxion(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fluxion"))
        .args(args)
        .env("FLUXION_TEST_PG_PASSWORD", PASSWORD)
        .output()
        .unwrap()
}

fn run_ok(job: &std::path::Path) -> String {
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write_job(dir: &std::path::Path, job: Value) -> std::path::PathBuf {
    let path = dir.join("job.json");
    std::fs::write(&path, job.to_string()).unwrap();
    path
}

/// A stream's documents become rows of a table it creates: a column per top-level field,
/// named exactly as the field, typed from it (nested values as jsonb, dates as timestamptz).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_become_rows_named_as_their_fields() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let docs: String = (0..5)
        .map(|i| {
            json!({"_id": i, "orderValue": 10.5 * i as f64, "paid": i % 2 == 0,
                   "customer": {"name": format!("c{i}")}, "items": [i, i + 1],
                   "at": {"$date": format!("2026-03-0{}T10:00:00Z", i + 1)}})
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), docs).unwrap();
    let job = write_job(
        dir.path(),
        json!({
            "source": {"type": "file", "path": dir.path().join("in.jsonl")},
            "connections": {"pg": {"type": "postgres", "url": pg.url_with_env("FLUXION_TEST_PG_PASSWORD")}},
            "pipeline": [{"$match": {"_id": {"$gte": 1}}}],
            "sink": {"type": "postgres", "connection": "pg", "table": "orders", "createTable": true},
            "runtime": {"microBatchSize": 2}
        }),
    );
    run_ok(&job);
    let columns = pg
        .documents(
            "SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute \
             WHERE attrelid = 'orders'::regclass AND attnum > 0 ORDER BY attnum",
        )
        .await;
    assert_eq!(
        columns,
        vec![
            json!({"name": "_id", "type": "bigint"}),
            json!({"name": "orderValue", "type": "double precision"}),
            json!({"name": "paid", "type": "boolean"}),
            json!({"name": "customer", "type": "jsonb"}),
            json!({"name": "items", "type": "jsonb"}),
            json!({"name": "at", "type": "timestamp with time zone"}),
        ]
    );
    let rows = pg
        .documents(
            "SELECT \"_id\", \"orderValue\", paid, customer->>'name' AS name, items, \
             to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS at FROM orders ORDER BY 1",
        )
        .await;
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows[0],
        json!({"_id": 1, "orderValue": 10.5, "paid": false, "name": "c1", "items": [1, 2], "at": "2026-03-02 10:00"})
    );
}

/// A continuous `$group` upserts on `_id`: the table holds one row per group, with the same
/// values as the batch `$group` over all documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_group_lands_as_upserts() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let docs: String = (0..300)
        .map(|i| format!("{{\"customer\": \"c{}\", \"amount\": {}}}\n", i % 7, i))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), &docs).unwrap();
    let pipeline = json!([{"$group": {"_id": "$customer", "total": {"$sum": "$amount"},
                                      "orderCount": {"$sum": 1}}}]);
    let job = write_job(
        dir.path(),
        json!({
            "source": {"type": "file", "path": dir.path().join("in.jsonl")},
            "pipeline": pipeline,
            "sink": {"type": "postgres", "url": pg.url(), "table": "totals", "mode": "upsert",
                     "createTable": true},
            "runtime": {"microBatchSize": 25},
            "checkpoint": {"store": dir.path().join("cp")}
        }),
    );
    run_ok(&job);
    let rows = pg
        .documents("SELECT \"_id\", total, \"orderCount\" FROM totals ORDER BY 1")
        .await;
    let expected =
        common::batch_result(&docs, &fluxion::Pipeline::from_value(&pipeline).unwrap()).await;
    common::assert_same_groups(rows, &expected);
}

/// SIGKILLs in the middle of a run, and restarts from the checkpoint: every document is a
/// row exactly once, because each batch's rows and its marker commit together and a
/// restarted run skips the batches the marker covers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_land_exactly_once_through_kill_9() {
    let pg = Postgres::start();
    pg.execute("CREATE TABLE events (id bigint, v text)").await;
    let dir = tempfile::tempdir().unwrap();
    // Enough batches (1 500) that a run outlasts the first kill on a fast machine.
    let n = 60_000;
    let docs: String = (0..n)
        .map(|i| format!("{{\"id\": {i}, \"v\": \"value-{i}\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), docs).unwrap();
    let job = write_job(
        dir.path(),
        json!({
            "source": {"type": "file", "path": dir.path().join("in.jsonl")},
            "pipeline": [{"$project": {"_id": 0, "id": 1, "v": 1}}],
            "sink": {"type": "postgres", "url": pg.url(), "table": "events"},
            "runtime": {"microBatchSize": 40},
            "checkpoint": {"store": dir.path().join("cp"), "intervalMs": 300}
        }),
    );
    let count = |pg: &Postgres| {
        let url = pg.url();
        async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            c.query_one("SELECT count(*), count(DISTINCT id) FROM events", &[])
                .await
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
                .unwrap()
        }
    };
    let killed =
        tokio::task::spawn_blocking(move || common::run_with_kills(&job, &[400, 700, 1000]))
            .await
            .unwrap();
    assert!(killed >= 1, "no run was killed: the test proves nothing");
    assert_eq!(count(&pg).await, (n, n));
}

/// The server restarts while a job writes: the failed batch is retried (the job's error
/// policy) on a new connection, and still every document lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_while_writing() {
    let pg = std::sync::Arc::new(Postgres::start());
    pg.execute("CREATE TABLE events (id bigint PRIMARY KEY)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let n = 6_000;
    let docs: String = (0..n).map(|i| format!("{{\"id\": {i}}}\n")).collect();
    std::fs::write(dir.path().join("in.jsonl"), docs).unwrap();
    let job = write_job(
        dir.path(),
        json!({
            "source": {"type": "file", "path": dir.path().join("in.jsonl")},
            "pipeline": [{"$project": {"_id": 0, "id": 1}}],
            "sink": {"type": "postgres", "url": pg.url(), "table": "events"},
            "runtime": {"microBatchSize": 10},
            "errorPolicy": {"retry": {"maxAttempts": 50, "initialBackoffMs": 100, "maxBackoffMs": 200}},
            "checkpoint": {"store": dir.path().join("cp")}
        }),
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_fluxion"))
        .args(["run", job.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    pg.restart();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The restart did meet the job (a primary key would have refused a row twice).
    assert!(err.contains("retry") || err.contains("retrying"), "{err}");
    let rows = pg.documents("SELECT count(*) AS n FROM events").await;
    assert_eq!(rows[0]["n"], n);
}

/// A field the table has no column for, an upsert whose documents lack the key, a wrong
/// password: errors that say so, and never show the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_errors_say_what_is_wrong() {
    let pg = Postgres::start();
    pg.execute("CREATE TABLE narrow (id bigint)").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"id\": 1, \"extra\": \"x\"}\n",
    )
    .unwrap();
    let job_with = |sink: Value| {
        write_job(
            dir.path(),
            json!({
                "source": {"type": "file", "path": dir.path().join("in.jsonl")},
                "pipeline": [{"$project": {"_id": 0}}],
                "sink": sink,
                "runtime": {"microBatchSize": 10}
            }),
        )
    };
    let err_of = |job: &std::path::Path| {
        let out = fluxion(&["run", job.to_str().unwrap()]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = err_of(&job_with(
        json!({"type": "postgres", "url": pg.url(), "table": "narrow"}),
    ));
    assert!(err.contains("no column \"extra\""), "{err}");
    let err = err_of(&job_with(
        json!({"type": "postgres", "url": pg.url(), "table": "narrow", "mode": "upsert", "keyColumns": ["key"]}),
    ));
    assert!(err.contains("no key field \"key\""), "{err}");
    let wrong = pg.url().replace(PASSWORD, "not-the-password");
    let err = err_of(&job_with(
        json!({"type": "postgres", "url": wrong, "table": "narrow"}),
    ));
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}

/// A table's snapshot, then only its new rows: the cursor is in the checkpoint, so a second
/// run reads the rows inserted since the first. Timestamps read as dates, jsonb as
/// documents, numeric as numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_reads_a_snapshot_then_new_rows_by_cursor() {
    let pg = Postgres::start();
    pg.execute(
        "CREATE TABLE customers (id bigserial PRIMARY KEY, name text, since timestamptz,
                                 prefs jsonb, balance numeric(10, 2));
         INSERT INTO customers (name, since, prefs, balance)
           SELECT 'c' || i, timestamptz '2025-12-31 12:00:00+00' + i * interval '1 day',
                  jsonb_build_object('lang', CASE WHEN i % 2 = 0 THEN 'en' ELSE 'fr' END), i * 1.5
           FROM generate_series(1, 5) i;",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let job = write_job(
        dir.path(),
        json!({
            "source": {"type": "postgres", "connection": "pg", "from": "customers", "cursor": "id",
                       "follow": false},
            "connections": {"pg": {"type": "postgres", "url": pg.url_with_env("FLUXION_TEST_PG_PASSWORD")}},
            "pipeline": [{"$project": {"_id": 0, "id": 1, "name": 1, "year": {"$year": "$since"},
                                       "lang": "$prefs.lang", "balance": 1}}],
            "sink": {"type": "file", "path": out},
            "runtime": {"microBatchSize": 2},
            "checkpoint": {"store": dir.path().join("cp")}
        }),
    );
    run_ok(&job);
    let read = || -> Vec<Value> {
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let first = read();
    assert_eq!(first.len(), 5);
    assert_eq!(
        first[0],
        json!({"id": 1, "name": "c1", "year": 2026, "lang": "fr", "balance": 1.5})
    );
    assert_eq!(first[4]["lang"], "fr");
    pg.execute("INSERT INTO customers (name, since, prefs, balance) VALUES ('late', now(), '{\"lang\": \"de\"}', 2)")
        .await;
    run_ok(&job);
    let second = read();
    assert_eq!(second.len(), 6, "{second:?}");
    assert_eq!(&second[..5], &first[..]);
    assert_eq!(second[5]["name"], "late");
    assert_eq!(second[5]["lang"], "de");
}

/// PostgreSQL to PostgreSQL with SIGKILLs: the source resumes after the checkpointed cursor,
/// the batches after it are formed again from the log, and the copy holds every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_postgres_exactly_once_through_kill_9() {
    let pg = Postgres::start();
    let n = 15_000;
    pg.execute(&format!(
        "CREATE TABLE src (id bigint PRIMARY KEY, v text);
         INSERT INTO src SELECT i, 'v' || i FROM generate_series(1, {n}) i;
         CREATE TABLE dst (id bigint, v text, doubled bigint);"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        json!({
            "source": {"type": "postgres", "url": pg.url(), "query": "SELECT id, v FROM src",
                       "cursor": "id", "follow": false},
            "pipeline": [{"$project": {"_id": 0, "id": 1, "v": 1, "doubled": {"$multiply": ["$id", 2]}}}],
            "sink": {"type": "postgres", "url": pg.url(), "table": "dst"},
            "runtime": {"microBatchSize": 30},
            "checkpoint": {"store": dir.path().join("cp"), "intervalMs": 250}
        }),
    );
    let killed =
        tokio::task::spawn_blocking(move || common::run_with_kills(&job, &[800, 1000, 1200]))
            .await
            .unwrap();
    assert!(killed >= 1, "no run was killed: the test proves nothing");
    let rows = pg
        .documents(
            "SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(doubled) - 2 * sum(id) AS off FROM dst",
        )
        .await;
    assert_eq!(rows[0], json!({"n": n, "ids": n, "off": 0}));
}
