//! The CLI contract, exercised through the real binary: `run` (job file, --pipeline, --sql,
//! file sinks), `validate`, `explain`, and one-line errors.

mod common;

use std::process::{Command, Output};

use serde_json::Value;

fn fluxion(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fluxion"))
        .args(args)
        .output()
        .expect("run fluxion")
}

fn stdout_docs(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "fluxion failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn expected_quickstart() -> Vec<Value> {
    std::fs::read_to_string("examples/orders-ltv.expected.jsonl")
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn quickstart_job_matches_the_independent_expected_output() {
    let docs = stdout_docs(&fluxion(&["run", "examples/orders-ltv.json"]));
    let expected = expected_quickstart();
    assert_eq!(docs.len(), 50);
    // Exactly: doubles are summed compensated, as MongoDB does (the correctly rounded sum,
    // which generate.py computes with math.fsum).
    assert_eq!(docs, expected);
}

#[test]
fn pipeline_and_sql_flags_give_the_same_rows() {
    let pipeline = tempfile::NamedTempFile::with_suffix(".json").unwrap();
    std::fs::write(
        pipeline.path(),
        r#"{"pipeline": [{"$match": {"status": "PAID"}}, {"$group": {"_id": "$customerId", "orderCount": {"$count": {}}, "lifetimeValue": {"$sum": "$orderValue"}}}]}"#,
    )
    .unwrap();
    let json = stdout_docs(&fluxion(&[
        "run",
        "--pipeline",
        pipeline.path().to_str().unwrap(),
        "--input",
        "examples/data/orders.jsonl",
    ]));
    let sql = stdout_docs(&fluxion(&[
        "run",
        "--sql",
        "SELECT customerId AS _id, count(*) AS orderCount, sum(orderValue) AS lifetimeValue FROM orders WHERE status = 'PAID' GROUP BY customerId",
        "--input",
        "orders=examples/data/orders.jsonl",
    ]));
    common::same_documents(&json, &expected_quickstart(), false).unwrap();
    common::same_documents(&sql, &expected_quickstart(), false).unwrap();
}

#[test]
fn file_sinks_round_trip_through_csv_and_parquet_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.json");
    let data = std::fs::canonicalize("examples/data/orders.jsonl").unwrap();
    for (ext, fmt) in [("parquet", "parquet"), ("csv", "csv"), ("jsonl", "jsonl")] {
        std::fs::write(
            &job,
            format!(
                r#"{{"name": "t", "source": {{"type": "file", "path": "{}"}},
                   "pipeline": [{{"$match": {{"status": "PAID"}}}}, {{"$project": {{"orderId": 1, "customerId": 1, "orderValue": 1}}}}],
                   "sink": {{"type": "file", "path": "out/paid.{ext}", "format": "{fmt}"}}}}"#,
                data.display()
            ),
        )
        .unwrap();
        let out = fluxion(&["run", job.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{ext}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let written = dir.path().join(format!("out/paid.{ext}"));
        assert!(written.is_file(), "{ext}: no output file");
        // Read the written file back with the SQL path and re-aggregate it.
        let docs = stdout_docs(&fluxion(&[
            "run",
            "--sql",
            "SELECT customerId AS _id, count(*) AS orderCount, sum(orderValue) AS lifetimeValue FROM paid GROUP BY customerId",
            "--input",
            &format!("paid={}", written.display()),
        ]));
        common::same_documents(&docs, &expected_quickstart(), false)
            .unwrap_or_else(|e| panic!("{ext}: {e}"));
    }
}

#[test]
fn output_flag_writes_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("nested/dir/ltv.jsonl");
    let out = fluxion(&[
        "run",
        "--sql",
        "SELECT count(*) AS n FROM input",
        "--input",
        "examples/data/orders.jsonl",
        "--output",
        target.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(target).unwrap(), "{\"n\":600}\n");
}

#[test]
fn validate_accepts_good_files_and_prints_one_line_errors() {
    let ok = fluxion(&["validate", "examples/orders-ltv.json"]);
    assert!(ok.status.success());
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"[{"$match": {"status": "PAID"}}, {"$group": {"_id": "$c", "lifetimeValue": {"$summ": "$v"}}}]"#,
            "error: pipeline[1].$group.lifetimeValue: unknown accumulator \"$summ\"",
        ),
        (
            r#"[{"$sort": {"a": 2}}]"#,
            "error: pipeline[0].$sort.a: sort direction must be 1 or -1",
        ),
        (
            r#"[{"$project": {"a": {"$toUpper": ["$a", "$b"]}}}]"#,
            "error: pipeline[0].$project.a.$toUpper: $toUpper takes exactly 1 argument, got 2",
        ),
        (
            r#"[{"$match": {"a.": 1}}]"#,
            "error: pipeline[0].$match.a.: field path \"a.\" has an empty segment",
        ),
        (
            r#"{"stages": []}"#,
            "error: pipeline: expected an array of stages or an object {\"pipeline\": [...]}",
        ),
        (
            r#"[{"$limit": "ten"}]"#,
            "error: pipeline[0].$limit: $limit expects a positive integer",
        ),
        (
            r#"[{"$group": {"_id": null, "n": {"$sum": 1}}}, {"$lookupp": {}}]"#,
            "error: pipeline[1]: unknown stage \"$lookupp\"",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("p{i}.json"));
        std::fs::write(&p, text).unwrap();
        let out = fluxion(&["validate", p.to_str().unwrap()]);
        assert!(!out.status.success(), "{text} should fail");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with(expected), "{text}: got {stderr:?}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn bad_input_data_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.jsonl");
    std::fs::write(&data, "{\"a\": 1}\n{\"a\": 2,}\n").unwrap();
    let out = fluxion(&[
        "run",
        "--sql",
        "SELECT * FROM input",
        "--input",
        data.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("bad.jsonl:2: not valid JSON"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1);
}

#[test]
fn explain_prints_plans_and_sql() {
    let out = fluxion(&["explain", "examples/orders-ltv.json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for section in ["== Logical plan ==", "== Physical plan ==", "== SQL =="] {
        assert!(text.contains(section), "missing {section}:\n{text}");
    }
    assert!(text.contains("Aggregate"), "{text}");
    // Hidden columns are printed readably, not as raw NUL characters.
    assert!(!text.contains('\u{0}') && text.contains("␀seq"), "{text}");
    let sql = text.split("== SQL ==").nth(1).unwrap();
    assert!(sql.contains("SELECT") && sql.contains("GROUP BY"), "{sql}");
}

#[test]
fn a_job_can_declare_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let data = std::fs::canonicalize("examples/data/orders.jsonl").unwrap();
    let job = dir.path().join("job.json");
    let write_job = |schema: &str| {
        std::fs::write(
            &job,
            format!(
                r#"{{"name": "declared", "source": {{"type": "file", "path": "{}", "schema": {schema}}},
                   "pipeline": [{{"$match": {{"status": "PAID"}}}}, {{"$limit": 2}}]}}"#,
                data.display()
            ),
        )
        .unwrap();
    };
    // Only the declared fields are read, with the declared types.
    write_job(
        r#"{"customerId": "string", "status": "string", "orderValue": "double", "shipping": {"country": "string"}}"#,
    );
    let docs = stdout_docs(&fluxion(&["run", job.to_str().unwrap()]));
    assert_eq!(docs.len(), 2);
    for d in &docs {
        let keys: Vec<_> = d.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            ["customerId", "status", "orderValue", "shipping"],
            "{d}"
        );
        assert_eq!(d["shipping"].as_object().unwrap().len(), 1, "{d}");
        assert!(d["orderValue"].is_f64(), "{d}");
    }
    // A field declared as a date reads ISO-8601 text as dates: date operators apply, and the
    // output writes them as extended JSON.
    std::fs::write(
        &job,
        format!(
            r#"{{"name": "declared", "source": {{"type": "file", "path": "{}", "schema": {{"orderId": "string", "createdAt": "date"}}}},
               "pipeline": [{{"$limit": 1}}, {{"$project": {{"_id": 0, "createdAt": 1, "month": {{"$month": "$createdAt"}},
                 "week": {{"$dateTrunc": {{"date": "$createdAt", "unit": "week", "startOfWeek": "monday"}}}}}}}}]}}"#,
            data.display()
        ),
    )
    .unwrap();
    let docs = stdout_docs(&fluxion(&["run", job.to_str().unwrap()]));
    assert_eq!(
        docs,
        [
            serde_json::json!({"createdAt": {"$date": "2026-01-03T13:26:00.000Z"}, "month": 1,
            "week": {"$date": "2025-12-29T00:00:00.000Z"}})
        ]
    );
    // A bad declaration is a one-line error naming the field.
    write_job(r#"{"orderValue": "dbl"}"#);
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: declared: source.schema.orderValue: unknown type \"dbl\""),
        "{stderr}"
    );
    // A value that does not fit the declared type names its line.
    write_job(r#"{"orderValue": "bool"}"#);
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("orders.jsonl:1: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn file_urls_and_directories_are_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let parts = dir.path().join("parts");
    std::fs::create_dir(&parts).unwrap();
    std::fs::write(
        parts.join("a.jsonl"),
        "{\"k\": \"x\", \"v\": 1}\n{\"k\": \"y\", \"v\": 2}\n",
    )
    .unwrap();
    std::fs::write(parts.join("b.jsonl"), "{\"k\": \"x\", \"v\": 3}").unwrap();
    let url = format!("t=file://{}/", parts.display());
    let docs = stdout_docs(&fluxion(&[
        "run",
        "--sql",
        "SELECT k AS _id, sum(v) AS s FROM t GROUP BY k ORDER BY k",
        "--input",
        &url,
        "--input-format",
        "jsonl",
    ]));
    assert_eq!(
        docs,
        vec![
            serde_json::json!({"_id": "x", "s": 4}),
            serde_json::json!({"_id": "y", "s": 2})
        ]
    );
}

/// Lines of a JSON-lines file as documents (none when it does not exist yet).
fn file_docs(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits (boundedly) until `path` holds `n` documents.
fn wait_for_docs(path: &std::path::Path, n: usize) {
    for _ in 0..400 {
        if file_docs(path).len() >= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{} never reached {n} documents", path.display());
}

fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    child.wait().unwrap()
}

#[test]
fn a_streaming_job_follows_its_input_stops_on_sigterm_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = std::fs::read_to_string("tests/oracle/data/orders.jsonl").unwrap();
    let lines: Vec<&str> = data.lines().collect();
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    std::fs::write(&input, lines[..30].join("\n") + "\n").unwrap();
    let pipeline = r#"[{"$match": {"status": {"$in": ["PAID", "PENDING"]}}},
                       {"$project": {"customerId": 1, "orderValue": 1}}]"#;
    let job = dir.path().join("job.json");
    // Checkpoints through the object-store path (a file:// URL).
    let store = format!("file://{}/cp", dir.path().display());
    std::fs::write(
        &job,
        format!(
            r#"{{"name": "stream", "source": {{"type": "file", "path": "in.jsonl", "follow": true}},
               "pipeline": {pipeline}, "sink": {{"type": "file", "path": "out.jsonl"}},
               "checkpoint": {{"store": "{store}"}}, "runtime": {{"microBatchSize": 8}}}}"#
        ),
    )
    .unwrap();
    // The batch answer over the whole input, by the batch path of the same binary.
    let full = dir.path().join("full.jsonl");
    std::fs::write(&full, &data).unwrap();
    let p = dir.path().join("p.json");
    std::fs::write(&p, pipeline).unwrap();
    let expected = stdout_docs(&fluxion(&[
        "run",
        "--pipeline",
        p.to_str().unwrap(),
        "--input",
        full.to_str().unwrap(),
    ]));

    let start = || {
        Command::new(env!("CARGO_BIN_EXE_fluxion"))
            .args(["run", job.to_str().unwrap()])
            .spawn()
            .unwrap()
    };
    let mut child = start();
    // The rest of the input arrives while the job runs.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    std::io::Write::write_all(&mut f, (lines[30..].join("\n") + "\n").as_bytes()).unwrap();
    drop(f);
    wait_for_docs(&output, expected.len());
    assert!(terminate(&mut child).success(), "a graceful stop exits 0");
    assert_eq!(file_docs(&output), expected);
    let checkpoint: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cp/checkpoint.json")).unwrap())
            .unwrap();
    assert_eq!(checkpoint["source"]["offset"], data.len());

    // Restarted, it resumes at its checkpoint: nothing is written twice, and what arrives
    // while it runs again is read once.
    let mut child = start();
    let more = lines[..40].join("\n") + "\n";
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    std::io::Write::write_all(&mut f, more.as_bytes()).unwrap();
    drop(f);
    std::fs::write(&full, &more).unwrap();
    let mut expected = expected;
    expected.extend(stdout_docs(&fluxion(&[
        "run",
        "--pipeline",
        p.to_str().unwrap(),
        "--input",
        full.to_str().unwrap(),
    ])));
    wait_for_docs(&output, expected.len());
    let total = data.len() + more.len();
    let checkpointed = || -> u64 {
        std::fs::read(dir.path().join("cp/checkpoint.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|c| c["source"]["offset"].as_u64())
            .unwrap_or(0)
    };
    for _ in 0..400 {
        if checkpointed() == total as u64 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert_eq!(
        checkpointed(),
        total as u64,
        "the restarted job checkpointed the new input"
    );
    assert!(terminate(&mut child).success());
    assert_eq!(file_docs(&output), expected);
}

#[test]
fn a_streaming_job_dead_letters_unreadable_lines_and_failing_documents() {
    let dir = tempfile::tempdir().unwrap();
    let data = std::fs::read_to_string("tests/oracle/data/orders.jsonl").unwrap();
    let mut lines: Vec<&str> = data.lines().collect();
    lines.insert(5, "{\"_id\": \"broken\",");
    // Doubling this priority overflows: the pipeline fails on this document alone.
    lines.insert(30, "{\"_id\": 999, \"priority\": 4611686018427387904}");
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        r#"{"source": {"type": "file", "path": "in.jsonl"}, "checkpoint": {"store": "cp"},
            "pipeline": [{"$match": {"priority": {"$gte": 4}}},
                         {"$project": {"priority": 1, "double": {"$multiply": ["$priority", 2]}}}],
            "sink": {"type": "file", "path": "out.jsonl"},
            "runtime": {"microBatchSize": 7, "maxBatchDelayMs": 5, "queueCapacity": 1,
                        "sourceQueueCapacity": 1, "workerThreads": 1},
            "errorPolicy": {"retry": {"maxAttempts": 2, "initialBackoffMs": 1}, "then": "deadLetter"},
            "deadLetter": {"type": "file", "path": "dead.jsonl"}}"#,
    )
    .unwrap();
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = data
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|d| d["priority"].as_i64().unwrap() >= 4)
        .map(|d| {
            let p = d["priority"].as_i64().unwrap();
            serde_json::json!({"_id": d["_id"], "priority": p, "double": p * 2})
        })
        .collect::<Vec<_>>();
    assert_eq!(file_docs(&dir.path().join("out.jsonl")), expected);
    let dead = file_docs(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0]["raw"], "{\"_id\": \"broken\",");
    assert_eq!(dead[0]["stage"], "source");
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("not valid JSON")
    );
    assert_eq!(dead[1]["stage"], "pipeline");
    let raw: Value = serde_json::from_str(dead[1]["raw"].as_str().unwrap()).unwrap();
    assert_eq!(raw["_id"], 999);
    assert!(
        dead[1]["reason"]
            .as_str()
            .unwrap()
            .contains("integer overflow in $multiply"),
        "{}",
        dead[1]["reason"]
    );
    // The replay leaves out the same records: unreadable, and failing in the pipeline.
    let out = fluxion(&["replay", job.to_str().unwrap(), "--verify"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("1 unreadable and 1 failing left out") && said.ends_with("match\n"),
        "{said}"
    );
}

/// Runs a streaming job, killing it with SIGKILL at several points and restarting it, until a
/// run finishes; returns the committed output.
fn run_with_kills(job: &std::path::Path, output: &std::path::Path, kills_ms: &[u64]) -> Vec<Value> {
    for ms in kills_ms {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fluxion"))
            .args(["run", job.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(*ms));
        let _ = child.kill(); // SIGKILL: no chance to finish the batch or checkpoint
        let _ = child.wait();
    }
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    file_docs(output)
}

#[test]
fn sigkill_at_random_points_loses_and_doubles_nothing() {
    let data = std::fs::read_to_string("tests/oracle/data/orders.jsonl").unwrap();
    // 2 400 orders: the sample 30 times over, with fresh _ids.
    let mut big = String::new();
    for k in 0..30 {
        for l in data.lines() {
            let mut d: Value = serde_json::from_str(l).unwrap();
            d["_id"] = serde_json::json!(k * 1000 + d["_id"].as_i64().unwrap());
            big.push_str(&d.to_string());
            big.push('\n');
        }
    }
    let kills = [40, 90, 25, 140, 60, 200];
    for (pipeline, upserts) in [
        (
            r#"[{"$match": {"status": "PAID"}}, {"$project": {"orderValue": 1, "customerId": 1}}]"#,
            false,
        ),
        (
            r#"[{"$group": {"_id": "$customerId", "n": {"$sum": 1}, "total": {"$sum": "$orderValue"}}}]"#,
            true,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.jsonl"), &big).unwrap();
        let job = dir.path().join("job.json");
        std::fs::write(
            &job,
            format!(
                r#"{{"source": {{"type": "file", "path": "in.jsonl"}}, "checkpoint": {{"store": "cp"}},
                    "runtime": {{"microBatchSize": 13}}, "pipeline": {pipeline},
                    "sink": {{"type": "file", "path": "out.jsonl"}}}}"#
            ),
        )
        .unwrap();
        let p = dir.path().join("p.json");
        std::fs::write(&p, pipeline).unwrap();
        let batch = stdout_docs(&fluxion(&[
            "run",
            "--pipeline",
            p.to_str().unwrap(),
            "--input",
            dir.path().join("in.jsonl").to_str().unwrap(),
        ]));
        let got = run_with_kills(&job, &dir.path().join("out.jsonl"), &kills);
        if upserts {
            // The last upsert per _id is the group.
            let got = common::last_per_id(got);
            let mut expected: Vec<Value> = batch;
            expected.sort_by_key(|d| d["_id"].to_string());
            assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                assert_eq!(g["n"], e["n"], "{g} vs {e}");
                let (a, b) = (g["total"].as_f64().unwrap(), e["total"].as_f64().unwrap());
                assert!((a - b).abs() <= 1e-9 * a.abs().max(b.abs()), "{g} vs {e}");
            }
        } else {
            assert_eq!(got, batch);
        }
        // Replay: the batch run over what the last checkpoint covers gives the same answer.
        let out = fluxion(&["replay", job.to_str().unwrap(), "--verify"]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.starts_with("replayed 2400 documents"), "{said}");
        assert!(said.ends_with("\nmatch\n"), "{said}");
        if !upserts {
            // One committed value changed (same length, so the committed range still holds):
            // the replay names the document, and exits 1.
            let output = dir.path().join("out.jsonl");
            let text = std::fs::read_to_string(&output).unwrap();
            let at = text.find("\"orderValue\":").unwrap() + "\"orderValue\":".len();
            let digit = text.as_bytes()[at];
            let other = if digit == b'9' {
                '1'
            } else {
                (digit + 1) as char
            };
            let tampered = format!("{}{other}{}", &text[..at], &text[at + 1..]);
            std::fs::write(&output, tampered).unwrap();
            let out = fluxion(&["replay", job.to_str().unwrap(), "--verify"]);
            let said = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(1), "{said}");
            assert!(said.contains("\ndocument 0: committed {"), "{said}");
            assert!(
                String::from_utf8_lossy(&out.stderr)
                    .contains("differs from the batch run in 1 documents"),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// `GET /metrics` from `addr`, the response body.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: fluxion\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
}

#[test]
fn a_streaming_job_serves_prometheus_metrics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        "tests/oracle/data/orders.jsonl",
        dir.path().join("in.jsonl"),
    )
    .unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        r#"{"name": "metered", "source": {"type": "file", "path": "in.jsonl", "follow": true},
            "pipeline": [{"$match": {"status": "PAID"}}, {"$group": {"_id": "$customerId", "n": {"$sum": 1}}}],
            "sink": {"type": "file", "path": "out.jsonl"}, "runtime": {"microBatchSize": 20},
            "checkpoint": {"store": "cp"}}"#,
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fluxion"))
        .args(["run", job.to_str().unwrap(), "--metrics-addr", &addr])
        .spawn()
        .unwrap();
    // The four micro-batches of the file are in the counters once they are committed.
    let mut text = String::new();
    for _ in 0..200 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if std::net::TcpStream::connect(&addr).is_err() {
            continue;
        }
        text = scrape(&addr);
        if text.contains("fluxion_batches_total{pipeline=\"metered\"} 4\n") {
            break;
        }
    }
    assert!(terminate(&mut child).success());
    assert!(
        text.contains("fluxion_batches_total{pipeline=\"metered\"} 4\n"),
        "{text}"
    );
    assert!(
        text.contains("fluxion_input_records_total{pipeline=\"metered\"} 80\n"),
        "{text}"
    );
    let paid = std::fs::read_to_string(dir.path().join("in.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"status\":\"PAID\""))
        .count();
    assert!(text.contains("# TYPE fluxion_state_rows gauge"), "{text}");
    assert!(
        !text.contains("fluxion_state_bytes{pipeline=\"metered\"} 0\n")
            && text.contains("fluxion_state_bytes{pipeline=\"metered\"} "),
        "{text}"
    );
    assert!(
        text.contains(
            "fluxion_dead_lettered_total{pipeline=\"metered\"} 0
"
        ),
        "{text}"
    );
    // Every batch of 20 touches some groups: output counts upserts, at most one per PAID order.
    let out_line = text
        .lines()
        .find(|l| l.starts_with("fluxion_output_records_total{pipeline=\"metered\"}"))
        .unwrap();
    let out: u64 = out_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(out > 0 && out as usize <= paid, "{out_line}");
    // Per operator: the filter saw every document and let the PAID ones through; the merge
    // ran once per batch.
    let value = |prefix: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap() as u64
    };
    let filter = text
        .lines()
        .find(|l| {
            l.starts_with("fluxion_stage_output_records_total{pipeline=\"metered\",stage=\"")
                && l.contains("FilterExec")
        })
        .unwrap_or_else(|| panic!("{text}"));
    let stage = filter
        .split("stage=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(
        value(&format!(
            "fluxion_stage_input_records_total{{pipeline=\"metered\",stage=\"{stage}\"}}"
        )),
        80
    );
    assert_eq!(
        value(&format!(
            "fluxion_stage_output_records_total{{pipeline=\"metered\",stage=\"{stage}\"}}"
        )),
        paid as u64
    );
    assert_eq!(
        value("fluxion_stage_invocations_total{pipeline=\"metered\",stage=\"$group merge\"}"),
        4
    );
    assert!(
        text.contains("# TYPE fluxion_backpressure_seconds_total counter"),
        "{text}"
    );
    // A checkpoint after every batch.
    assert_eq!(value("fluxion_checkpoints_total{pipeline=\"metered\"}"), 4);
    assert!(
        text.contains("fluxion_source_lag{pipeline=\"metered\"} 0\n"),
        "{text}"
    );
}

#[test]
fn a_streaming_sql_job_gives_the_batch_answer_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        "tests/oracle/data/orders.jsonl",
        dir.path().join("in.jsonl"),
    )
    .unwrap();
    let sql = r#"SELECT _id, upper(status) AS status, "orderValue" * 2 AS twice FROM orders WHERE priority >= 3"#;
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        serde_json::json!({
            "source": {"type": "file", "path": "in.jsonl", "table": "orders"},
            "sql": sql,
            "sink": {"type": "file", "path": "out.jsonl"},
            "checkpoint": {"store": "cp"},
            "runtime": {"microBatchSize": 6}
        })
        .to_string(),
    )
    .unwrap();
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batch = stdout_docs(&fluxion(&[
        "run",
        "--sql",
        sql,
        "--input",
        &format!("orders={}", dir.path().join("in.jsonl").display()),
    ]));
    assert!(!batch.is_empty());
    assert_eq!(file_docs(&dir.path().join("out.jsonl")), batch);
    let out = fluxion(&["replay", job.to_str().unwrap(), "--verify"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.ends_with("match\n"), "{said}");
}

#[test]
fn a_streaming_job_writes_a_parquet_directory_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        "tests/oracle/data/orders.jsonl",
        dir.path().join("in.jsonl"),
    )
    .unwrap();
    let pipeline =
        r#"[{"$match": {"status": "PAID"}}, {"$project": {"customerId": 1, "orderValue": 1}}]"#;
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        format!(
            r#"{{"source": {{"type": "file", "path": "in.jsonl"}}, "pipeline": {pipeline},
                "sink": {{"type": "file", "path": "out", "format": "PARQUET"}},
                "checkpoint": {{"store": "cp"}}, "runtime": {{"microBatchSize": 25}}}}"#
        ),
    )
    .unwrap();
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parts: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
    assert_eq!(parts.len(), 4, "one part per committed micro-batch");
    let p = dir.path().join("p.json");
    std::fs::write(&p, pipeline).unwrap();
    let batch = stdout_docs(&fluxion(&[
        "run",
        "--pipeline",
        p.to_str().unwrap(),
        "--input",
        dir.path().join("in.jsonl").to_str().unwrap(),
    ]));
    // The parts, read back in order, are the batch answer.
    let mut streamed = stdout_docs(&fluxion(&[
        "run",
        "--sql",
        "SELECT * FROM input",
        "--input-format",
        "parquet",
        "--input",
        &format!("{}/", dir.path().join("out").display()),
    ]));
    streamed.sort_by_key(|d| d["_id"].as_i64());
    assert_eq!(streamed, batch);
    let out = fluxion(&["replay", job.to_str().unwrap(), "--verify"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.ends_with("match\n"), "{said}");
}

#[test]
fn a_job_can_carry_its_documents_in_memory_in_batch_and_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<Value> = (1..=7)
        .map(|i| serde_json::json!({"_id": i, "kind": if i % 2 == 0 { "even" } else { "odd" }, "v": i * 10}))
        .collect();
    let pipeline = serde_json::json!([{"$match": {"v": {"$gte": 20}}}, {"$group": {"_id": "$kind", "total": {"$sum": "$v"}}}]);
    let write = |name: &str, streaming: bool| {
        let mut job = serde_json::json!({
            "source": {"type": "memory", "documents": docs},
            "pipeline": pipeline,
        });
        if streaming {
            job["runtime"] = serde_json::json!({"microBatchSize": 2});
        }
        let path = dir.path().join(name);
        std::fs::write(&path, job.to_string()).unwrap();
        path
    };
    let mut batch = stdout_docs(&fluxion(&[
        "run",
        write("batch.json", false).to_str().unwrap(),
    ]));
    batch.sort_by_key(|d| d["_id"].to_string());
    assert_eq!(
        batch,
        [
            serde_json::json!({"_id": "even", "total": 120}),
            serde_json::json!({"_id": "odd", "total": 150})
        ]
    );
    // Streamed in micro-batches of 2, the last upsert per group is the batch group.
    let last = common::last_per_id(stdout_docs(&fluxion(&[
        "run",
        write("stream.json", true).to_str().unwrap(),
    ])));
    assert_eq!(last, batch);
}

#[test]
fn a_windowed_streaming_job_replays_to_the_same_windows() {
    let dir = tempfile::tempdir().unwrap();
    // Out-of-order events, one of them too late for its window.
    let mut lines = String::new();
    for (i, ts) in [
        0, 4_000, 2_000, 11_000, 9_500, 15_000, 3_000, 21_000, 26_000, 19_000, 40_000,
    ]
    .iter()
    .enumerate()
    {
        lines.push_str(&format!(
            "{{\"_id\": {i}, \"ts\": {{\"$date\": {ts}}}, \"v\": {}}}\n",
            i * 10
        ));
    }
    std::fs::write(dir.path().join("in.jsonl"), lines).unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        r#"{"source": {"type": "file", "path": "in.jsonl", "timeField": "$ts"},
            "pipeline": [{"$tumblingWindow": {"interval": {"size": 10, "unit": "second"},
                          "allowedLateness": {"size": 1, "unit": "second"},
                          "pipeline": [{"$group": {"_id": null, "n": {"$sum": 1}, "ids": {"$push": "$_id"}}}]}},
                         {"$project": {"_id": 0}}],
            "sink": {"type": "file", "path": "out.jsonl"}, "checkpoint": {"store": "cp"},
            "runtime": {"microBatchSize": 3}, "errorPolicy": "deadLetter",
            "deadLetter": {"type": "file", "path": "late.jsonl"}}"#,
    )
    .unwrap();
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let windows = file_docs(&dir.path().join("out.jsonl"));
    let ids: Vec<Value> = windows.iter().map(|w| w["ids"].clone()).collect();
    // The watermark trails the largest event time by 1 s: 9 500 arrives after 11 000 (the
    // watermark is 10 000, so [0, 10 s) has passed), 3 000 after 15 000, 19 000 after 26 000.
    assert_eq!(
        ids,
        [
            serde_json::json!([0, 1, 2]),
            serde_json::json!([3, 5]),
            serde_json::json!([7, 8]),
            serde_json::json!([10])
        ]
    );
    assert_eq!(
        windows[0]["_stream_meta"]["window"]["end"]["$date"],
        "1970-01-01T00:00:10.000Z"
    );
    let late: Vec<i64> = file_docs(&dir.path().join("late.jsonl"))
        .iter()
        .map(|l| {
            assert_eq!(l["stage"], "window");
            serde_json::from_str::<Value>(l["raw"].as_str().unwrap()).unwrap()["_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(late, [4, 6, 9]);
    let out = fluxion(&["replay", job.to_str().unwrap(), "--verify"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.ends_with("match\n"), "{said}");
}

#[test]
fn sql_session_windows_replay_and_processing_time_windows_say_they_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for (i, (ts, k)) in [
        (0, "a"),
        (1_000, "b"),
        (3_000, "a"),
        (9_000, "a"),
        (4_000, "b"),
        (20_000, "b"),
        (12_000, "a"),
        (30_000, "a"),
    ]
    .iter()
    .enumerate()
    {
        lines.push_str(&format!("{{\"id\": {i}, \"ts\": {ts}, \"k\": \"{k}\"}}\n"));
    }
    std::fs::write(dir.path().join("in.jsonl"), lines).unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        r#"{"source": {"type": "file", "path": "in.jsonl", "timeField": "$ts"},
            "sql": "SELECT k, count(*) AS n, window_start, window_end FROM input GROUP BY session(ts, INTERVAL '5' SECOND, allowed_lateness => INTERVAL '2' SECOND), k",
            "sink": {"type": "file", "path": "out.jsonl"}, "checkpoint": {"store": "cp"},
            "runtime": {"microBatchSize": 2}}"#,
    )
    .unwrap();
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sessions: Vec<(String, i64)> = file_docs(&dir.path().join("out.jsonl"))
        .iter()
        .map(|d| {
            (
                d["k"].as_str().unwrap().to_string(),
                d["n"].as_i64().unwrap(),
            )
        })
        .collect();
    // Watermark = largest time − 2 s, sessions closed at the end of each batch of two, in
    // order of their end: after 9 000 (watermark 7 000) b's {1 000} ends (6 000); so 4 000
    // starts a new b session; after 20 000 (watermark 18 000) a's {0, 3 000}, b's {4 000} and
    // a's {9 000} end; 12 000 is then late for a; b's {20 000}; at the end a's {30 000}.
    let expect = [("b", 1), ("a", 2), ("b", 1), ("a", 1), ("b", 1), ("a", 1)];
    assert_eq!(sessions, expect.map(|(k, n)| (k.to_string(), n)).to_vec());
    let out = fluxion(&["replay", job.to_str().unwrap(), "--verify"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.ends_with("match\n"), "{said}");
    // Processing time: the job runs (every window closes at the end of the file), and a
    // replay explains why it cannot reproduce it.
    let job2 = dir.path().join("proc.json");
    std::fs::write(
        &job2,
        r#"{"source": {"type": "file", "path": "in.jsonl"},
            "pipeline": [{"$tumblingWindow": {"interval": {"size": 1, "unit": "hour"}, "boundary": "processingTime",
                          "pipeline": [{"$group": {"_id": null, "n": {"$sum": 1}}}]}}],
            "sink": {"type": "file", "path": "proc.jsonl"}, "checkpoint": {"store": "cp2"}}"#,
    )
    .unwrap();
    let out = fluxion(&["run", job2.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: i64 = file_docs(&dir.path().join("proc.jsonl"))
        .iter()
        .map(|d| d["n"].as_i64().unwrap())
        .sum();
    assert_eq!(n, 8);
    let out = fluxion(&["replay", job2.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("processing-time windows cannot be replayed"),
        "{said}"
    );
}

#[test]
fn the_window_example_gives_the_windows_computed_in_python() {
    // examples/windows/generate.py computes the expected windows from the rule in plain Python.
    let dir = tempfile::tempdir().unwrap();
    for f in ["clicks-per-minute.json", "clicks.jsonl"] {
        std::fs::copy(format!("examples/windows/{f}"), dir.path().join(f)).unwrap();
    }
    let job = dir.path().join("clicks-per-minute.json");
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = std::fs::read_to_string(dir.path().join("out/clicks-per-minute.jsonl")).unwrap();
    let want =
        std::fs::read_to_string("examples/windows/clicks-per-minute.expected.jsonl").unwrap();
    assert_eq!(got, want);
    let late = file_docs(&dir.path().join("out/late.jsonl"));
    assert_eq!(late.len(), 7);
    let out = fluxion(&["replay", job.to_str().unwrap(), "--verify"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.ends_with("match\n"), "{said}");
}

/// The orders of `examples/data` repeated to `n` lines, with `bad` put in at line `at` (1-based).
fn orders_with_bad_line(n: usize, at: usize, bad: &str) -> String {
    let data = std::fs::read_to_string("examples/data/orders.jsonl").unwrap();
    let mut lines: Vec<&str> = data.lines().cycle().take(n).collect();
    lines.insert(at - 1, bad);
    lines.join("\n") + "\n"
}

#[test]
fn a_malformed_line_past_the_inference_sample_is_an_error_in_batch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("big.jsonl");
    // Past the 10 000 documents schema inference samples, where only the decoder looks.
    for bad in [
        r#"{"customerId": -1, "status": "PAID", "orderValue": 12.5,,}"#,
        r#"{"customerId": -1, "status": "PAID",, "orderValue": 12.5}"#,
        r#"{"customerId": -1 "status": "PAID"}"#,
    ] {
        std::fs::write(&data, orders_with_bad_line(12_000, 11_500, bad)).unwrap();
        for schema in [false, true] {
            let job = dir.path().join("job.json");
            let declared = if schema {
                r#", "schema": {"customerId": "string", "status": "string", "orderValue": "double"}"#
            } else {
                ""
            };
            std::fs::write(
                &job,
                format!(
                    r#"{{"source": {{"type": "file", "path": "big.jsonl"{declared}}},
                        "pipeline": [{{"$match": {{"status": "PAID"}}}}, {{"$count": "n"}}]}}"#
                ),
            )
            .unwrap();
            let out = fluxion(&["run", job.to_str().unwrap()]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{bad} was accepted: {stderr}");
            assert!(
                stderr.contains("big.jsonl:11500: not valid JSON"),
                "{bad}: {stderr}"
            );
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
        }
    }
}

#[test]
fn a_dead_letter_sink_takes_every_malformed_line_without_an_error_policy() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        r#"{"customerId": -1, "status": "PAID", "orderValue": 12.5,,}"#,
        r#"{"customerId": "c-x", "status": "PAID", "orderValue": "lots"}"#,
        r#"[1, 2]"#,
    ];
    let mut text = orders_with_bad_line(600, 100, bad[0]);
    text = text.replacen(
        "\n",
        &format!("\n{}\n", bad[1]),
        1, // after the first line
    );
    text.push_str(bad[2]);
    text.push('\n');
    std::fs::write(dir.path().join("in.jsonl"), &text).unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        r#"{"source": {"type": "file", "path": "in.jsonl",
                       "schema": {"customerId": "string", "status": "string", "orderValue": "double"}},
            "checkpoint": {"store": "cp"},
            "pipeline": [{"$match": {"status": "PAID"}}],
            "sink": {"type": "file", "path": "out.jsonl"},
            "runtime": {"microBatchSize": 50},
            "deadLetter": {"type": "file", "path": "dead.jsonl"}}"#,
    )
    .unwrap();
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dead = file_docs(&dir.path().join("dead.jsonl"));
    let raws: Vec<&str> = dead.iter().map(|d| d["raw"].as_str().unwrap()).collect();
    assert_eq!(raws, [bad[1], bad[0], bad[2]], "{dead:?}");
    for d in &dead {
        assert_eq!(d["stage"], "source");
        // The position is an object: the byte offset of the line.
        let offset = d["position"]["offset"].as_u64().unwrap() as usize;
        assert!(text[offset..].starts_with(d["raw"].as_str().unwrap()));
    }
    let paid = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|d| d.is_object() && d["status"] == "PAID" && d["orderValue"].is_number())
        .count();
    assert_eq!(file_docs(&dir.path().join("out.jsonl")).len(), paid);
}

#[test]
fn an_edited_pipeline_does_not_resume_from_another_pipelines_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        "examples/data/orders.jsonl",
        dir.path().join("orders.jsonl"),
    )
    .unwrap();
    let job = dir.path().join("job.json");
    let write_job = |pipeline: &str| {
        std::fs::write(
            &job,
            format!(
                r#"{{"source": {{"type": "file", "path": "orders.jsonl", "timeField": "$createdAt"}},
                    "checkpoint": {{"store": "cp"}}, "runtime": {{"microBatchSize": 100}},
                    "pipeline": {pipeline},
                    "sink": {{"type": "file", "path": "out.jsonl"}}}}"#
            ),
        )
        .unwrap()
    };
    let group = r#"[{"$group": {"_id": "$customerId", "n": {"$count": {}}}}]"#;
    write_job(group);
    let out = fluxion(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (edited, says) in [
        (
            r#"[{"$sessionWindow": {"gap": {"size": 1, "unit": "hour"}, "partitionBy": "$customerId",
                 "pipeline": [{"$group": {"_id": "$customerId", "n": {"$count": {}}}}]}}]"#,
            "it holds the state of a continuous $group, the pipeline now runs a session window",
        ),
        (
            r#"[{"$group": {"_id": "$status", "n": {"$count": {}}}}]"#,
            "another version of the pipeline",
        ),
        (
            r#"[{"$match": {"status": "PAID"}}]"#,
            "the pipeline now runs a document-by-document pipeline",
        ),
    ] {
        write_job(edited);
        let out = fluxion(&["run", job.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{edited}: {stderr}");
        assert!(
            stderr.contains("the checkpoint does not fit this pipeline")
                && stderr.contains(says)
                && stderr.contains("--reset-checkpoint"),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    // The way out: start over.
    let out = fluxion(&["run", job.to_str().unwrap(), "--reset-checkpoint"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paid = std::fs::read_to_string(dir.path().join("orders.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"PAID\""))
        .count();
    assert_eq!(file_docs(&dir.path().join("out.jsonl")).len(), paid);
}
