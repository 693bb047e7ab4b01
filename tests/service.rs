//! `fluxion serve` as a user meets it: the real binary on a loopback port, driven through a
//! real HTTP client — submit, start, watch, update, restart, stop; keys, JWTs and roles on
//! every route; rate and body limits; the event log and its replay; the query side; metrics;
//! HTTPS; the CLI against the service; a service killed with SIGKILL while its pipeline runs
//! resumes it, output exactly once.

mod common;

use std::time::Duration;

use common::service::{
    ADMIN, Server, call, call_raw, lines, schemathesis, submit_and_start, wait_for,
};
use serde_json::{Value, json};

/// A job that doubles `n` of every line of `input` into `output`, following the file.
fn doubles_job(name: &str, input: &std::path::Path, output: &std::path::Path) -> Value {
    json!({"name": name, "source": {"type": "file", "path": input, "follow": true},
           "pipeline": [{"$project": {"_id": 0, "n": 1, "double": {"$multiply": ["$n", 2]}}}],
           "sink": {"type": "file", "path": output},
           "runtime": {"microBatchSize": 10, "maxBatchDelayMs": 20}})
}

fn numbers(range: std::ops::Range<i64>) -> String {
    range.map(|i| format!("{{\"n\": {i}}}\n")).collect()
}

#[tokio::test]
async fn submit_start_watch_stop_and_resume_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    std::fs::write(&input, numbers(0..60)).unwrap();
    let server = Server::start(&data);
    let url = |p: &str| server.url(p);

    assert_eq!(call("GET", url("/healthz"), None, None).await.0, 200);
    let (status, ready) = call("GET", url("/readyz"), None, None).await;
    assert_eq!((status, ready["status"].clone()), (200, json!("ready")));
    assert!(
        ready["checks"]["eventStore"]
            .as_str()
            .unwrap()
            .starts_with("ok (file")
    );

    let job = doubles_job("doubles", &input, &output);
    // A malformed job is refused with its path.
    let mut bad = job.clone();
    bad["pipeline"] = json!([{"$group": {"_id": "$n", "t": {"$summ": "$n"}}}]);
    let (status, err) = call("POST", url("/v1/pipelines"), Some(ADMIN), Some(bad)).await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("pipeline[0].$group.t"),
        "{err}"
    );
    let (status, _, err) = call_raw(
        "POST",
        url("/v1/pipelines"),
        Some(ADMIN),
        Some(b"{".to_vec()),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        err["error"].as_str().unwrap().starts_with("the body:"),
        "{err}"
    );

    let (status, made) = call("POST", url("/v1/pipelines"), Some(ADMIN), Some(job.clone())).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made, json!({"id": "doubles", "version": 1}));
    // The same name again conflicts.
    assert_eq!(
        call("POST", url("/v1/pipelines"), Some(ADMIN), Some(job))
            .await
            .0,
        409
    );
    let (status, got) = call("GET", url("/v1/pipelines/doubles"), Some(ADMIN), None).await;
    assert_eq!((status, got["status"].clone()), (200, json!("submitted")));
    assert_eq!(got["job"]["name"], "doubles");

    let (status, started) = call(
        "POST",
        url("/v1/pipelines/doubles/start"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(
        call(
            "POST",
            url("/v1/pipelines/doubles/start"),
            Some(ADMIN),
            None
        )
        .await
        .0,
        409,
        "a running pipeline does not start twice"
    );
    wait_for("60 documents", || lines(&output).len() == 60).await;
    let (_, got) = call("GET", url("/v1/pipelines/doubles"), Some(ADMIN), None).await;
    assert_eq!(got["status"], "running");
    assert_eq!(got["counters"]["input"], 60, "{got}");
    assert!(
        got["lastCheckpoint"].as_str().unwrap().ends_with('Z'),
        "{got}"
    );

    // SIGKILL while it runs; the restarted service resumes it from its checkpoint.
    server.kill();
    let server = Server::start(&data);
    let url = |p: &str| server.url(p);
    std::fs::write(&input, numbers(0..100)).unwrap();
    wait_for("100 documents", || lines(&output).len() >= 100).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected: Vec<Value> = (0..100).map(|i| json!({"n": i, "double": i * 2})).collect();
    assert_eq!(lines(&output), expected, "every document exactly once");

    let (status, stopped) =
        call("POST", url("/v1/pipelines/doubles/stop"), Some(ADMIN), None).await;
    assert_eq!((status, stopped["status"].clone()), (200, json!("stopped")));
    let (_, list) = call("GET", url("/v1/pipelines"), Some(ADMIN), None).await;
    assert_eq!(list["pipelines"][0]["status"], "stopped");
    assert!(list["pipelines"][0].get("job").is_none());

    // The log names every change and who made it, never the job itself.
    let (_, log) = call("GET", url("/v1/events?after=0"), Some(ADMIN), None).await;
    let kinds: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["PipelineSubmitted", "Started", "Stopped"]);
    assert!(log["events"][0].get("job").is_none());
    assert!(
        log["events"][0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("key-")
    );
    let (_, later) = call("GET", url("/v1/events?after=2"), Some(ADMIN), None).await;
    assert_eq!(later["events"].as_array().unwrap().len(), 1);
    let (_, page) = call("GET", url("/v1/events?limit=1"), Some(ADMIN), None).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);

    let (status, _) = call("DELETE", url("/v1/pipelines/doubles"), Some(ADMIN), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        call("GET", url("/v1/pipelines/doubles"), Some(ADMIN), None)
            .await
            .0,
        404
    );
}

fn jwt(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn every_route_checks_credentials_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, numbers(0..5)).unwrap();
    let secret = "a-shared-jwt-secret-for-tests";
    let server = Server::start_with(
        &data,
        Some(
            "rateLimit = { perSecond = 10000, burst = 10000 }\n\
             [jwt]\nhs256Secret = \"${TEST_JWT_SECRET}\"\n",
        ),
        &[("TEST_JWT_SECRET", secret)],
    );
    let url = |p: &str| server.url(p);
    let mut keys = vec![("admin", ADMIN.to_string())];
    for role in ["viewer", "operator"] {
        let (status, k) = call(
            "POST",
            url("/v1/keys"),
            Some(ADMIN),
            Some(json!({"role": role})),
        )
        .await;
        assert_eq!(status, 201, "{k}");
        assert_eq!(k["role"], role);
        keys.push((role, k["key"].as_str().unwrap().to_string()));
    }
    let now = chrono::Utc::now().timestamp();
    let tokens: Vec<(&str, String)> = ["viewer", "operator", "admin"]
        .iter()
        .map(|r| {
            (
                *r,
                jwt(
                    secret,
                    json!({"sub": format!("{r}-user"), "role": r, "exp": now + 600}),
                ),
            )
        })
        .collect();
    let bad: Vec<String> = vec![
        "flx_0000000000000000000000000000000000000000000000000000000000000000".into(),
        jwt(
            secret,
            json!({"sub": "late", "role": "admin", "exp": now - 10}),
        ),
        jwt(
            secret,
            json!({"sub": "early", "role": "admin", "exp": now + 600, "nbf": now + 300}),
        ),
        jwt(
            "another-secret-entirely",
            json!({"sub": "forged", "role": "admin", "exp": now + 600}),
        ),
    ];
    let rank = |r: &str| {
        ["viewer", "operator", "admin"]
            .iter()
            .position(|x| *x == r)
            .unwrap()
    };
    // Route, the role it needs, and a body; each run makes its own pipeline so deletes and
    // stops always find one.
    let mut n = 0;
    let routes: Vec<(&str, &str, &str, Option<Value>)> = vec![
        ("GET", "/v1/pipelines", "viewer", None),
        ("GET", "/v1/pipelines/{p}", "viewer", None),
        ("GET", "/v1/events", "viewer", None),
        ("GET", "/v1/tables", "viewer", None),
        (
            "POST",
            "/v1/query",
            "viewer",
            Some(json!({"sql": "SELECT 1 AS one"})),
        ),
        (
            "POST",
            "/v1/rules/evaluate",
            "viewer",
            Some(json!({"ruleSet": {"id": "r", "version": "1.0.0",
            "rules": [{"id": "a", "when": [{"$match": {"n": 1}}], "actions": [{"type": "tag", "tag": "one"}]}]},
            "documents": [{"n": 1}]})),
        ),
        ("POST", "/v1/pipelines/{p}/stop", "operator", None),
        ("POST", "/v1/pipelines/{p}/restart", "operator", None),
        ("POST", "/v1/pipelines/{p}/start", "operator", None),
        (
            "POST",
            "/v1/pipelines",
            "admin",
            Some(json!({"source": {"type": "file", "path": input},
            "pipeline": [], "sink": {"type": "null"}})),
        ),
        (
            "PUT",
            "/v1/pipelines/{p}",
            "admin",
            Some(json!({"source": {"type": "file", "path": input},
            "pipeline": [{"$match": {"n": 1}}], "sink": {"type": "null"}})),
        ),
        ("DELETE", "/v1/pipelines/{p}", "admin", None),
        ("POST", "/v1/keys", "admin", Some(json!({"role": "viewer"}))),
    ];
    for (method, path, needed, body) in &routes {
        let callers: Vec<(&str, &str)> = keys
            .iter()
            .map(|(r, k)| (*r, k.as_str()))
            .chain(tokens.iter().map(|(r, t)| (*r, t.as_str())))
            .collect();
        for (role, credential) in callers {
            n += 1;
            let id = format!("p{n}");
            let job = json!({"name": id, "source": {"type": "file", "path": input},
                             "pipeline": [], "sink": {"type": "null"}});
            assert_eq!(
                call("POST", url("/v1/pipelines"), Some(ADMIN), Some(job))
                    .await
                    .0,
                201
            );
            let path = path.replace("{p}", &id);
            for b in &bad {
                let (status, e) = call(method, url(&path), Some(b), body.clone()).await;
                assert_eq!(status, 401, "{method} {path} with a bad credential: {e}");
            }
            let (status, _) = call(method, url(&path), None, body.clone()).await;
            assert_eq!(status, 401, "{method} {path} without a credential");
            let (status, answer) = call(method, url(&path), Some(credential), body.clone()).await;
            if rank(role) < rank(needed) {
                assert_eq!(status, 403, "{method} {path} as {role}: {answer}");
                assert!(
                    answer["error"].as_str().unwrap().contains(needed),
                    "{answer}"
                );
            } else {
                assert!(
                    (200..300).contains(&status),
                    "{method} {path} as {role}: {status} {answer}"
                );
            }
        }
    }
    // A JWT caller is the actor of its commands in the log.
    let (_, log) = call("GET", url("/v1/events?limit=10000"), Some(ADMIN), None).await;
    assert!(
        log["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "jwt:operator-user")
    );
    // Anyone may read health and the API's description.
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/openapi.json",
        "/dashboard",
    ] {
        assert_eq!(call("GET", url(path), None, None).await.0, 200, "{path}");
    }
}

#[tokio::test]
async fn rate_and_body_limits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let server = Server::start_with(
        &data,
        Some("rateLimit = { perSecond = 1, burst = 5 }\nbodyLimit = 1000\n"),
        &[],
    );
    let url = |p: &str| server.url(p);
    for i in 0..5 {
        assert_eq!(
            call("GET", url("/v1/pipelines"), Some(ADMIN), None).await.0,
            200,
            "request {i}"
        );
    }
    let (status, headers, body) =
        call_raw("GET", url("/v1/pipelines"), Some(ADMIN), None, &[]).await;
    assert_eq!(status, 429, "{body}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert!(
        body["error"].as_str().unwrap().contains("rate limit"),
        "{body}"
    );
    // Health is not rate limited; a refill lets the caller back in.
    assert_eq!(call("GET", url("/healthz"), None, None).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, key) = call(
        "POST",
        url("/v1/keys"),
        Some(ADMIN),
        Some(json!({"role": "viewer", "rateLimit": {"perSecond": 1000, "burst": 50}})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    // A key with its own limit gets its own bucket.
    let key = key["key"].as_str().unwrap().to_string();
    for i in 0..40 {
        assert_eq!(
            call("GET", url("/v1/events"), Some(&key), None).await.0,
            200,
            "request {i}"
        );
    }
    // A body over the limit: 413 with a JSON error.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let big = format!("{{\"name\": \"x\", \"pad\": \"{}\"}}", "a".repeat(2000));
    let (status, _, body) = call_raw(
        "POST",
        url("/v1/pipelines"),
        Some(ADMIN),
        Some(big.into_bytes()),
        &[],
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("the body"),
        "{body}"
    );
}

#[tokio::test]
async fn update_restart_conflicts_and_replay_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    std::fs::write(&input, numbers(0..20)).unwrap();
    // A snapshot every 3 events: the restart below folds a snapshot and a tail.
    let server = Server::start_with(&data, Some("snapshotEvery = 3\n"), &[]);
    let url = |p: &str| server.url(p);
    let job = doubles_job("upd", &input, &output);
    assert_eq!(
        call("POST", url("/v1/pipelines"), Some(ADMIN), Some(job.clone()))
            .await
            .0,
        201
    );
    let (status, r) = call("POST", url("/v1/pipelines/upd/start"), Some(ADMIN), None).await;
    assert_eq!((status, r["version"].clone()), (200, json!(2)));
    wait_for("20 documents", || lines(&output).len() == 20).await;

    // A stale version is a conflict, and changes nothing.
    let mut v2 = job.clone();
    v2["pipeline"] = json!([{"$project": {"_id": 0, "n": 1, "triple": {"$multiply": ["$n", 3]}}}]);
    let (status, _, e) = call_raw(
        "PUT",
        url("/v1/pipelines/upd"),
        Some(ADMIN),
        Some(v2.to_string().into_bytes()),
        &[("if-match", "1")],
    )
    .await;
    assert_eq!(status, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("stale"), "{e}");
    let (status, _, e) = call_raw(
        "POST",
        url("/v1/pipelines/upd/stop"),
        Some(ADMIN),
        None,
        &[("if-match", "banana")],
    )
    .await;
    assert_eq!(status, 400, "{e}");
    // The right version: the running pipeline stops, takes the new job, resumes.
    let (status, _, r) = call_raw(
        "PUT",
        url("/v1/pipelines/upd"),
        Some(ADMIN),
        Some(v2.to_string().into_bytes()),
        &[("if-match", "\"2\"")],
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["version"], 3);
    let mut more = numbers(0..20);
    more.push_str(&numbers(20..30));
    std::fs::write(&input, more).unwrap();
    wait_for("30 documents", || lines(&output).len() == 30).await;
    let out = lines(&output);
    assert_eq!(out[19], json!({"n": 19, "double": 38}));
    assert_eq!(
        out[20],
        json!({"n": 20, "triple": 60}),
        "the new version took over where the old stopped"
    );
    let (_, got) = call("GET", url("/v1/pipelines/upd"), Some(ADMIN), None).await;
    assert_eq!(
        (got["status"].clone(), got["version"].clone()),
        (json!("running"), json!(3))
    );
    assert_eq!(got["job"]["pipeline"], v2["pipeline"]);

    let (status, r) = call("POST", url("/v1/pipelines/upd/restart"), Some(ADMIN), None).await;
    assert_eq!(
        (status, r["status"].clone(), r["version"].clone()),
        (200, json!("running"), json!(5))
    );
    assert_eq!(
        call("POST", url("/v1/pipelines/upd/jump"), Some(ADMIN), None)
            .await
            .0,
        404
    );
    assert_eq!(
        call("POST", url("/v1/pipelines/nope/start"), Some(ADMIN), None)
            .await
            .0,
        404
    );
    // A second pipeline that fails (its input is a directory that does not exist) does not
    // take the first down.
    let broken = json!({"name": "broken", "source": {"type": "file", "path": dir.path().join("missing/x.jsonl"), "follow": true},
                        "pipeline": [], "sink": {"type": "null"}});
    assert_eq!(
        call("POST", url("/v1/pipelines"), Some(ADMIN), Some(broken))
            .await
            .0,
        201
    );
    let _ = call("POST", url("/v1/pipelines/broken/start"), Some(ADMIN), None).await;
    let mut failed = Value::Null;
    for _ in 0..200 {
        failed = call("GET", url("/v1/pipelines/broken"), Some(ADMIN), None)
            .await
            .1;
        if failed["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["lastError"].as_str().unwrap().contains("missing"),
        "{failed}"
    );
    let (_, first) = call("GET", url("/v1/pipelines/upd"), Some(ADMIN), None).await;
    assert_eq!(first["status"], "running");

    // The projection rebuilt from the log (snapshot + tail) equals the live one.
    let (_, live) = call("GET", url("/v1/pipelines"), Some(ADMIN), None).await;
    let (_, live_log) = call("GET", url("/v1/events"), Some(ADMIN), None).await;
    assert!(data.join("snapshot.json").exists());
    let status = server.terminate();
    assert!(
        status.success(),
        "SIGTERM stops the service cleanly: {status}"
    );
    let server = Server::start(&data);
    let url = |p: &str| server.url(p);
    let (_, replayed) = call("GET", url("/v1/pipelines"), Some(ADMIN), None).await;
    let strip = |v: &Value| -> Vec<Value> {
        v["pipelines"].as_array().unwrap().iter()
            .map(|p| json!({"id": p["id"], "version": p["version"], "status": p["status"], "lastError": p["lastError"]}))
            .collect()
    };
    assert_eq!(strip(&replayed), strip(&live));
    let (_, log) = call("GET", url("/v1/events"), Some(ADMIN), None).await;
    assert_eq!(
        log, live_log,
        "the log reads the same, the events before the snapshot included"
    );
    // It resumed: new input is read, once.
    let mut more = numbers(0..30);
    more.push_str(&numbers(30..35));
    std::fs::write(&input, more).unwrap();
    wait_for("35 documents", || lines(&output).len() == 35).await;
    assert_eq!(lines(&output)[34], json!({"n": 34, "triple": 102}));
}

#[tokio::test]
async fn the_query_side_reads_registered_tables_and_judges_documents() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let orders = dir.path().join("orders.jsonl");
    std::fs::write(
        &orders,
        "{\"id\": 1, \"customer\": \"a\", \"total\": 10}\n{\"id\": 2, \"customer\": \"b\", \"total\": 25}\n\
         {\"id\": 3, \"customer\": \"a\", \"total\": 5}\n",
    )
    .unwrap();
    let settings = format!("[tables.orders]\npath = \"{}\"\n", orders.display());
    let server = Server::start_with(
        &data,
        Some(&settings),
        &[("TEST_SINK_TOKEN", "sink-token-value")],
    );
    let url = |p: &str| server.url(p);
    let (status, t) = call("GET", url("/v1/tables"), Some(ADMIN), None).await;
    assert_eq!(
        (status, t["tables"][0]["name"].clone()),
        (200, json!("orders"))
    );

    let (status, r) = call("POST", url("/v1/query"), Some(ADMIN), Some(json!({
        "sql": "SELECT customer, SUM(total) AS spent FROM orders GROUP BY customer ORDER BY customer"}))).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r,
        json!({"rows": [{"customer": "a", "spent": 15}, {"customer": "b", "spent": 25}], "truncated": false})
    );
    let (status, r) = call("POST", url("/v1/query"), Some(ADMIN), Some(json!({
        "table": "orders", "pipeline": [{"$match": {"total": {"$gte": 10}}}, {"$project": {"_id": 0, "id": 1}}]}))).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["rows"], json!([{"id": 1}, {"id": 2}]));
    let (_, r) = call(
        "POST",
        url("/v1/query"),
        Some(ADMIN),
        Some(json!({"sql": "SELECT id FROM orders ORDER BY id", "limit": 2})),
    )
    .await;
    assert_eq!(
        r,
        json!({"rows": [{"id": 1}, {"id": 2}], "truncated": true})
    );
    // The query side only reads, and a bad query is the caller's to fix.
    for sql in [
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE orders",
        "INSERT INTO orders VALUES (1)",
        "SET datafusion.execution.batch_size = 1",
        "SELEC 1",
        "SELECT nope FROM orders",
    ] {
        let (status, e) = call(
            "POST",
            url("/v1/query"),
            Some(ADMIN),
            Some(json!({"sql": sql})),
        )
        .await;
        assert_eq!(status, 400, "{sql}: {e}");
        assert!(e["error"].is_string());
    }
    let (status, e) = call(
        "POST",
        url("/v1/query"),
        Some(ADMIN),
        Some(json!({"table": "orders",
        "pipeline": [{"$group": {"_id": 1, "t": {"$summ": 1}}}]})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("pipeline[0].$group.t"),
        "{e}"
    );
    assert_eq!(
        call(
            "POST",
            url("/v1/query"),
            Some(ADMIN),
            Some(json!({"table": "nope", "pipeline": []}))
        )
        .await
        .0,
        400
    );

    // Secrets stay in the service's environment: a job names them, the API shows the name.
    let job = json!({"name": "secretive", "source": {"type": "file", "path": orders},
        "pipeline": [], "sink": {"type": "http", "endpoint": "http://127.0.0.1:9/x",
        "headers": {"Authorization": "Bearer ${TEST_SINK_TOKEN}"}}});
    assert_eq!(
        call("POST", url("/v1/pipelines"), Some(ADMIN), Some(job))
            .await
            .0,
        201
    );
    let (_, got) = call("GET", url("/v1/pipelines/secretive"), Some(ADMIN), None).await;
    assert_eq!(
        got["job"]["sink"]["headers"]["Authorization"],
        "Bearer ${TEST_SINK_TOKEN}"
    );
    let (_, list) = call("GET", url("/v1/pipelines"), Some(ADMIN), None).await;
    let (_, log) = call("GET", url("/v1/events"), Some(ADMIN), None).await;
    for answer in [&got, &list, &log] {
        assert!(!answer.to_string().contains("sink-token-value"), "{answer}");
    }

    // A rule set over posted documents, evaluated and executed.
    let rule_set = json!({"id": "big-orders", "version": "1.2.0", "hitPolicy": "first", "rules": [
        {"id": "big", "salience": 10, "when": [{"$match": {"total": {"$gte": 20}}}],
         "actions": [{"type": "set", "field": "review", "value": true}, {"type": "tag", "tag": "big"}]},
        {"id": "small", "when": [{"$match": {"total": {"$lt": 20}}}], "actions": [{"type": "tag", "tag": "small"}]}]});
    let docs = json!([{"id": 1, "total": 10}, {"id": 2, "total": 25}]);
    let (status, d) = call(
        "POST",
        url("/v1/rules/evaluate"),
        Some(ADMIN),
        Some(json!({"ruleSet": rule_set, "documents": docs})),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["ruleSet"], "big-orders@1.2.0");
    assert_eq!(d["decisions"][0]["passed"], json!(["small"]));
    assert_eq!(d["decisions"][1]["passed"], json!(["big"]));
    let actions = d["decisions"][1]["actions"].as_array().unwrap();
    assert!(
        actions
            .iter()
            .any(|a| a["type"] == "tag" && a["tag"] == "big"),
        "{d}"
    );
    let (_, d) = call(
        "POST",
        url("/v1/rules/evaluate"),
        Some(ADMIN),
        Some(json!({"ruleSet": rule_set, "documents": docs, "mode": "execute"})),
    )
    .await;
    assert_eq!(d["decisions"][1]["document"]["review"], true, "{d}");
    let (status, e) = call("POST", url("/v1/rules/evaluate"), Some(ADMIN),
        Some(json!({"ruleSet": {"id": "x", "version": "1.0.0", "rules": [{"id": "a", "when": [], "actions": [{"type": "shout"}]}]}, "documents": docs}))).await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().starts_with("ruleSet:"), "{e}");
    let (status, _) = call(
        "POST",
        url("/v1/rules/evaluate"),
        Some(ADMIN),
        Some(json!({"ruleSet": "big-orders@1", "documents": docs})),
    )
    .await;
    assert_eq!(status, 400, "no registry configured");
}

#[tokio::test]
async fn metrics_request_ids_and_the_command_line_client() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    std::fs::write(&input, numbers(0..30)).unwrap();
    let server = Server::start(&data);
    let job_file = dir.path().join("job.json");
    std::fs::write(&job_file, doubles_job("cli", &input, &output).to_string()).unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fluxion"))
            .args(["--server", &server.base])
            .args(args)
            .env("FLUXION_TOKEN", ADMIN)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, out, err) = cli(&["pipelines", "submit", job_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"id": "cli", "version": 1})
    );
    let (code, _, err) = cli(&["pipelines", "submit", job_file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("409") && err.contains("exists"), "{err}");
    assert_eq!(cli(&["pipelines", "start", "cli"]).0, 0);
    wait_for("30 documents", || lines(&output).len() == 30).await;
    let (code, out, _) = cli(&["pipelines", "list"]);
    assert_eq!(code, 0);
    let listed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "running");
    let (_, out, _) = cli(&["pipelines", "get", "cli"]);
    let got: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got["counters"]["input"], 30, "{got}");

    // Prometheus text: requests per route and status, the pipeline's metrics by name.
    let (status, headers, _) = call_raw(
        "GET",
        server.url("/v1/pipelines"),
        Some(ADMIN),
        None,
        &[("x-request-id", "trace-me-42")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-request-id"], "trace-me-42");
    let (_, headers, _) = call_raw("GET", server.url("/v1/pipelines"), None, None, &[]).await;
    assert!(
        headers["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req-")
    );
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "fluxion_http_requests_total{method=\"GET\",route=\"/v1/pipelines\",status=\"200\"} 2\n"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"/v1/pipelines\",status=\"401\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("fluxion_http_request_seconds_count{method=\"POST\",route=\"/v1/pipelines/{id}/{action}\"}"), "{metrics}");
    assert!(
        metrics.contains("fluxion_input_records_total{pipeline=\"cli\"} 30\n"),
        "{metrics}"
    );

    assert_eq!(cli(&["pipelines", "stop", "cli"]).0, 0);
    let (code, out, _) = cli(&["events"]);
    assert_eq!(code, 0);
    let kinds: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["PipelineSubmitted", "Started", "Stopped"]);
    let (_, out, _) = cli(&["events", "--after", "2"]);
    assert_eq!(out.lines().count(), 1);
    assert_eq!(cli(&["pipelines", "delete", "cli"]).0, 0);
    let (code, _, err) = cli(&["pipelines", "get", "cli"]);
    assert_eq!(code, 1);
    assert!(err.contains("no pipeline \"cli\""), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fluxion"))
        .args([
            "--server",
            &server.base,
            "--token",
            "wrong-wrong-wrong",
            "pipelines",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[tokio::test]
async fn https_with_a_certificate_and_rs256_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let rsa = dir.path().join("rsa.pem");
    let rsa_public = dir.path().join("rsa.pub.pem");
    let openssl = |args: &[&str]| {
        let s = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        rsa.to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-in",
        rsa.to_str().unwrap(),
        "-pubout",
        "-out",
        rsa_public.to_str().unwrap(),
    ]);
    let settings = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n[jwt]\nrs256PublicKey = \"{}\"\nissuer = \"fluxion-tests\"\n",
        cert.display(),
        key.display(),
        rsa_public.display()
    );
    let server = Server::start_with(&data, Some(&settings), &[]);
    assert!(server.base.starts_with("https://"));
    let (status, _) = call("GET", server.url("/v1/pipelines"), Some(ADMIN), None).await;
    assert_eq!(status, 200);
    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/healthz", server.port)).await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    let sign = |claims: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&rsa).unwrap()).unwrap(),
        )
        .unwrap()
    };
    let exp = chrono::Utc::now().timestamp() + 600;
    let good = sign(json!({"sub": "ops", "role": "viewer", "exp": exp, "iss": "fluxion-tests"}));
    assert_eq!(
        call("GET", server.url("/v1/pipelines"), Some(&good), None)
            .await
            .0,
        200
    );
    let other_issuer =
        sign(json!({"sub": "ops", "role": "viewer", "exp": exp, "iss": "someone-else"}));
    assert_eq!(
        call(
            "GET",
            server.url("/v1/pipelines"),
            Some(&other_issuer),
            None
        )
        .await
        .0,
        401
    );
    // HS256 is not configured: a token signed that way is refused.
    assert_eq!(
        call(
            "GET",
            server.url("/v1/pipelines"),
            Some(&jwt("x", json!({"sub": "a", "role": "admin", "exp": exp}))),
            None
        )
        .await
        .0,
        401
    );
}

#[tokio::test]
async fn the_event_log_in_postgres_survives_a_crash() {
    let pg = common::postgres::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    std::fs::write(&input, numbers(0..40)).unwrap();
    let settings = format!("eventStore = \"{}\"\nsnapshotEvery = 2\n", pg.url());
    let server = Server::start_with(&data, Some(&settings), &[]);
    let (_, ready) = call("GET", server.url("/readyz"), None, None).await;
    assert!(
        ready["checks"]["eventStore"]
            .as_str()
            .unwrap()
            .contains("postgres"),
        "{ready}"
    );
    assert!(!ready.to_string().contains("password"));
    let job = doubles_job("pg", &input, &output);
    submit_and_start(&server, job).await;
    let (status, _, _) = call_raw(
        "POST",
        server.url("/v1/pipelines/pg/stop"),
        Some(ADMIN),
        None,
        &[("if-match", "1")],
    )
    .await;
    assert_eq!(status, 409);
    wait_for("40 documents", || lines(&output).len() == 40).await;
    server.kill();
    assert!(
        !data.join("events.jsonl").exists(),
        "the log is in PostgreSQL"
    );
    let rows = pg
        .documents("SELECT subject, version FROM fluxion_events ORDER BY seq")
        .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let server = Server::start_with(&data, Some(&settings), &[]);
    let mut more = numbers(0..40);
    more.push_str(&numbers(40..50));
    std::fs::write(&input, more).unwrap();
    wait_for("50 documents", || lines(&output).len() >= 50).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected: Vec<Value> = (0..50).map(|i| json!({"n": i, "double": i * 2})).collect();
    assert_eq!(lines(&output), expected, "every document exactly once");
    let (_, got) = call("GET", server.url("/v1/pipelines/pg"), Some(ADMIN), None).await;
    assert_eq!(
        (got["status"].clone(), got["version"].clone()),
        (json!("running"), json!(2))
    );
    let (_, log) = call("GET", server.url("/v1/events"), Some(ADMIN), None).await;
    assert_eq!(log["events"].as_array().unwrap().len(), 2);
    // Without its event store the service is not ready, and says why; then it is again.
    pg.stop();
    let (status, ready) = call("GET", server.url("/readyz"), None, None).await;
    assert_eq!(
        (status, ready["status"].clone()),
        (503, json!("unavailable")),
        "{ready}"
    );
    let (status, e) = call(
        "POST",
        server.url("/v1/pipelines/pg/stop"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 503, "a store that is down is worth retrying: {e}");
    pg.start_again();
    let mut status = 0;
    for _ in 0..100 {
        status = call("GET", server.url("/readyz"), None, None).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_openapi_document_holds_under_fuzzing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let settings = format!(
        "rateLimit = {{ perSecond = 100000, burst = 100000 }}\n[tables.orders]\npath = \"{}/examples/data/orders.jsonl\"\n",
        env!("CARGO_MANIFEST_DIR")
    );
    let server = Server::start_with(&data, Some(&settings), &[]);
    let (_, doc) = call("GET", server.url("/v1/openapi.json"), None, None).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["paths"]["/v1/pipelines/{id}"]["put"].is_object(),
        "{doc}"
    );
    // schemathesis generates requests from the document (valid and invalid ones) and checks
    // that none is a 5xx and every answer matches its documented status, type and schema.
    let out = std::process::Command::new(schemathesis())
        .args(["run", &server.url("/v1/openapi.json")])
        .args(["-H", &format!("Authorization: Bearer {ADMIN}")])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
            "--max-examples", "25", "--seed", "7", "--no-color", "--workers", "2",
        ])
        .current_dir(dir.path())
        .output()
        .expect("schemathesis runs (the test setup installs it from PyPI)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("Tested: 14"), "{report}");
    // The service is still fine.
    assert_eq!(call("GET", server.url("/readyz"), None, None).await.0, 200);
}

#[tokio::test]
async fn the_example_settings_and_quickstart_job_run_as_documented() {
    // As docs/service.md shows: the example settings from the repository's root, the
    // quickstart job submitted with the CLI (its relative paths made absolute by the CLI).
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut settings = std::fs::read_to_string(root.join("examples/service/fluxion.toml")).unwrap();
    settings = settings
        .replace("\"examples/", &format!("\"{}/examples/", root.display()))
        .replace(
            "examples/out/service",
            &dir.path().join("unused").display().to_string(),
        );
    let data = dir.path().join("service");
    let server = Server::start_with(&data, Some(&settings), &[]);
    // The job writes next to a copy of itself, so the repository stays clean.
    std::fs::create_dir_all(dir.path().join("service-example")).unwrap();
    let job = dir.path().join("service-example/quickstart.json");
    let text = std::fs::read_to_string(root.join("examples/service/quickstart.json")).unwrap();
    std::fs::write(
        &job,
        text.replace(
            "../data/orders.jsonl",
            &root
                .join("examples/data/orders.jsonl")
                .display()
                .to_string(),
        ),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fluxion"))
            .args(["--server", &server.base, "--token", ADMIN])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    cli(&["pipelines", "submit", job.to_str().unwrap()]);
    cli(&["pipelines", "start", "orders-ltv"]);
    let out = dir.path().join("service-example/out/orders-ltv.jsonl");
    let expected: Vec<Value> =
        std::fs::read_to_string(root.join("examples/orders-ltv.expected.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    wait_for("every customer's total", || {
        common::last_per_id(lines(&out)).len() == expected.len()
    })
    .await;
    wait_for("the input read", || {
        let got: Value = serde_json::from_str(&cli(&["pipelines", "get", "orders-ltv"])).unwrap();
        got["counters"]["input"] == 600
    })
    .await;
    let got = common::last_per_id(lines(&out));
    common::same_documents(&got, &expected, false).unwrap();
    // The query side reads the configured table; the registry's rule set judges a document.
    let (status, r) = call(
        "POST",
        server.url("/v1/query"),
        Some(ADMIN),
        Some(json!({"sql": "SELECT COUNT(*) AS n FROM orders WHERE status = 'PAID'"})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let paid = std::fs::read_to_string(root.join("examples/data/orders.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["status"] == "PAID")
        .count();
    assert_eq!(r["rows"][0]["n"], paid);
    let (status, d) = call("POST", server.url("/v1/rules/evaluate"), Some(ADMIN),
        Some(json!({"ruleSet": "order-approval@1", "documents": [{"status": "CANCELLED", "orderValue": 10}]}))).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["decisions"][0]["passed"], json!(["cancelled"]), "{d}");
}
