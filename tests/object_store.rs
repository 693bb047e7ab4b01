//! Object stores against a real S3 API (moto's server on loopback, started by
//! `common::s3`): batch runs over JSON lines and Parquet in a bucket, a Parquet output written
//! to it, and a streaming job that checkpoints to `s3://…`, killed with SIGKILL and resumed.

mod common;

use std::process::{Command, Output, Stdio};

use common::s3::S3;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::Value;

fn fluxion(s3: &S3, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fluxion"))
        .args(args)
        .envs(s3.env())
        .output()
        .expect("run fluxion")
}

/// The documents printed, sorted by `_id` (the pipeline does not sort).
fn docs(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "fluxion failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut docs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    docs.sort_by_key(|d| d["_id"].to_string());
    docs
}

async fn put(store: &dyn ObjectStore, key: &str, bytes: Vec<u8>) {
    store
        .put(&ObjectPath::from(key), PutPayload::from(bytes))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_runs_read_and_write_a_bucket() {
    let s3 = S3::start();
    s3.create_bucket("data");
    let bucket = s3.bucket("data");
    let orders = std::fs::read("examples/data/orders.jsonl").unwrap();
    put(bucket.as_ref(), "in/orders.jsonl", orders).await;
    let pipeline = "examples/orders-ltv.pipeline.json";
    let expected: Vec<Value> = std::fs::read_to_string("examples/orders-ltv.expected.jsonl")
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    // JSON lines from the bucket.
    let got = docs(&fluxion(
        &s3,
        &[
            "run",
            "--pipeline",
            pipeline,
            "--input",
            "s3://data/in/orders.jsonl",
        ],
    ));
    assert_eq!(got, expected);

    // A Parquet output written to the bucket, then read back from it as input.
    let out = fluxion(
        &s3,
        &[
            "run",
            "--sql",
            "SELECT * FROM input",
            "--input",
            "s3://data/in/orders.jsonl",
            "--output",
            "s3://data/out/orders.parquet",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = bucket
        .head(&ObjectPath::from("out/orders.parquet"))
        .await
        .unwrap();
    assert!(head.size > 0);
    let got = docs(&fluxion(
        &s3,
        &[
            "run",
            "--pipeline",
            pipeline,
            "--input",
            "s3://data/out/orders.parquet",
        ],
    ));
    assert_eq!(got, expected);

    // A directory (prefix) of the bucket is every file under it.
    let count = docs(&fluxion(
        &s3,
        &[
            "run",
            "--sql",
            "SELECT count(*) AS n FROM input",
            "--input",
            "s3://data/in/",
            "--input-format",
            "jsonl",
        ],
    ));
    assert_eq!(count, vec![serde_json::json!({"n": 600})]);

    // A missing object is a one-line error naming it.
    let out = fluxion(
        &s3,
        &[
            "run",
            "--pipeline",
            pipeline,
            "--input",
            "s3://data/in/missing.jsonl",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("missing.jsonl"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_checkpointing_to_s3_survives_sigkill() {
    let s3 = S3::start();
    s3.create_bucket("state");
    let dir = tempfile::tempdir().unwrap();
    let data = std::fs::read_to_string("tests/oracle/data/orders.jsonl").unwrap();
    // 2 400 orders with fresh _ids, in micro-batches of 11: many checkpoints to kill between.
    let mut big = String::new();
    for k in 0..30 {
        for l in data.lines() {
            let mut d: Value = serde_json::from_str(l).unwrap();
            d["_id"] = serde_json::json!(k * 1000 + d["_id"].as_i64().unwrap());
            big.push_str(&d.to_string());
            big.push('\n');
        }
    }
    std::fs::write(dir.path().join("in.jsonl"), &big).unwrap();
    let pipeline = r#"[{"$group": {"_id": "$customerId", "n": {"$sum": 1}, "total": {"$sum": "$orderValue"}}}]"#;
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        format!(
            r#"{{"source": {{"type": "file", "path": "in.jsonl"}},
                "checkpoint": {{"store": "s3://state/jobs/ltv"}},
                "runtime": {{"microBatchSize": 11}}, "pipeline": {pipeline},
                "sink": {{"type": "file", "path": "out.jsonl"}}}}"#
        ),
    )
    .unwrap();
    let state = s3.bucket("state");
    let checkpoint = ObjectPath::from("jobs/ltv/checkpoint.json");
    let mut killed_after_a_checkpoint = 0;
    for ms in [150, 300, 450] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fluxion"))
            .args(["run", job.to_str().unwrap()])
            .envs(s3.env())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill(); // SIGKILL: no chance to finish the batch or checkpoint
        let _ = child.wait();
        if state.head(&checkpoint).await.is_ok() {
            killed_after_a_checkpoint += 1;
        }
    }
    assert!(
        killed_after_a_checkpoint > 0,
        "the stream checkpointed to the bucket before it was killed"
    );
    let resumed: Value =
        serde_json::from_slice(&state.get(&checkpoint).await.unwrap().bytes().await.unwrap())
            .unwrap();
    let resumed_at = resumed["source"]["offset"].as_u64().unwrap();
    assert!(resumed_at < big.len() as u64, "killed before the end");
    let out = fluxion(&s3, &["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: Value =
        serde_json::from_slice(&state.get(&checkpoint).await.unwrap().bytes().await.unwrap())
            .unwrap();
    assert_eq!(last["source"]["offset"], big.len());

    // The last upsert per customer is the batch answer: nothing lost, nothing counted twice.
    let upserts: Vec<Value> = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected = common::run(&big, serde_json::from_str(pipeline).unwrap())
        .await
        .unwrap();
    common::assert_same_groups(upserts, &expected);
}
