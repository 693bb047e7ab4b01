//! The dashboard in a real browser: the service serves the page, Debian's headless Chromium
//! (driven by Playwright) loads it, enters a key, sees a submitted pipeline and its counters
//! move while the test feeds it, clicks Stop and sees it stopped — in the page and in the log.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::service::{ADMIN, Server, browser_scripts, call, submit_and_start};
use serde_json::{Value, json};

#[tokio::test]
async fn the_dashboard_shows_a_pipeline_move_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"n\": 0}\n").unwrap();
    let server = Server::start(&data);
    let job = json!({"name": "watched", "source": {"type": "file", "path": input, "follow": true},
                     "pipeline": [{"$match": {"n": {"$gte": 0}}}], "sink": {"type": "null"},
                     "runtime": {"microBatchSize": 50, "maxBatchDelayMs": 20}});
    submit_and_start(&server, job).await;

    let script = browser_scripts().join("dashboard.cjs");
    let mut browser = Command::new("node")
        .arg(script)
        .args([&server.base, ADMIN, "watched"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (the test setup installs it with playwright-core and chromium)");
    // Feed the pipeline until the browser is done.
    let mut n = 1;
    let started = std::time::Instant::now();
    while browser.try_wait().unwrap().is_none() {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&input)
            .unwrap();
        for _ in 0..20 {
            writeln!(f, "{{\"n\": {n}}}").unwrap();
            n += 1;
        }
        drop(f);
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the browser test hangs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = browser.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser script failed: {stderr}");
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["status"], "running", "{seen}");
    assert!(
        seen["later"].as_u64().unwrap() > seen["first"].as_u64().unwrap(),
        "{seen}"
    );
    assert_eq!(seen["stopped"], "stopped", "{seen}");
    assert_eq!(
        seen["startButton"], 1,
        "a stopped pipeline offers Start: {seen}"
    );
    assert!(seen["chartPoints"].as_u64().unwrap() >= 2, "{seen}");
    assert!(
        seen["events"][0].as_str().unwrap().contains("Stopped"),
        "newest event first: {seen}"
    );
    // The page's click went through the API: the service says stopped, by the admin key.
    let (_, got) = call(
        "GET",
        server.url("/v1/pipelines/watched"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(got["status"], "stopped");
    let (_, log) = call("GET", server.url("/v1/events"), Some(ADMIN), None).await;
    let last = log["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (
            last["type"].clone(),
            last["actor"].as_str().unwrap().starts_with("key-")
        ),
        (json!("Stopped"), true)
    );
}
