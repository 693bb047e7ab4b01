//! `fluxion serve` as a user meets it: the real binary on a loopback port, driven through a
//! real HTTP client — submit, start, watch, stop; keys and roles; the event log; a service
//! killed with SIGKILL while its pipeline runs resumes it, output exactly once.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const ADMIN: &str = "test-admin-key-0123456789";

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data: &std::path::Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_fluxion"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data)
            .env("FLUXION_BOOTSTRAP_ADMIN_KEY", ADMIN)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Dropping the server kills and waits for the process, also when it never answers.
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("fluxion serve did not start");
    }

    /// SIGKILL, as a crash would.
    fn kill(self) {
        drop(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(method: &str, url: String, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn submit_start_watch_stop_and_resume_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    let docs: Vec<String> = (0..100).map(|i| format!("{{\"n\": {i}}}")).collect();
    std::fs::write(&input, docs[..60].join("\n") + "\n").unwrap();
    let server = Server::start(&data);
    let url = |p: &str| format!("{}{p}", server.base);

    assert_eq!(call("GET", url("/healthz"), None, None).await.0, 200);
    let (status, ready) = call("GET", url("/readyz"), None, None).await;
    assert_eq!((status, ready["status"].clone()), (200, json!("ready")));
    // Without a key, or with a wrong one: 401.
    assert_eq!(call("GET", url("/v1/pipelines"), None, None).await.0, 401);
    assert_eq!(
        call(
            "GET",
            url("/v1/pipelines"),
            Some("nope-nope-nope-nope"),
            None
        )
        .await
        .0,
        401
    );

    let job = json!({"name": "doubles", "source": {"type": "file", "path": input, "follow": true},
                     "pipeline": [{"$project": {"_id": 0, "n": 1, "double": {"$multiply": ["$n", 2]}}}],
                     "sink": {"type": "file", "path": output},
                     "runtime": {"microBatchSize": 10, "maxBatchDelayMs": 20}});
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

    // A viewer may read but not start.
    let (_, viewer) = call(
        "POST",
        url("/v1/keys"),
        Some(ADMIN),
        Some(json!({"role": "viewer"})),
    )
    .await;
    let viewer = viewer["key"].as_str().unwrap().to_string();
    assert_eq!(
        call(
            "POST",
            url("/v1/pipelines/doubles/start"),
            Some(&viewer),
            None
        )
        .await
        .0,
        403
    );
    let (status, got) = call("GET", url("/v1/pipelines/doubles"), Some(&viewer), None).await;
    assert_eq!((status, got["status"].clone()), (200, json!("submitted")));

    let (status, started) = call(
        "POST",
        url("/v1/pipelines/doubles/start"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{started}");
    wait_for("60 documents", || lines(&output).len() == 60).await;
    let (_, got) = call("GET", url("/v1/pipelines/doubles"), Some(&viewer), None).await;
    assert_eq!(got["status"], "running");
    assert_eq!(got["counters"]["input"], 60, "{got}");

    // SIGKILL while it runs; the restarted service resumes it from its checkpoint.
    server.kill();
    let server = Server::start(&data);
    let url = |p: &str| format!("{}{p}", server.base);
    std::fs::write(&input, docs.join("\n") + "\n").unwrap();
    wait_for("100 documents", || lines(&output).len() >= 100).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = lines(&output);
    let expected: Vec<Value> = (0..100).map(|i| json!({"n": i, "double": i * 2})).collect();
    assert_eq!(out, expected, "every document exactly once");

    let (status, stopped) =
        call("POST", url("/v1/pipelines/doubles/stop"), Some(ADMIN), None).await;
    assert_eq!((status, stopped["status"].clone()), (200, json!("stopped")));
    let (_, list) = call("GET", url("/v1/pipelines"), Some(&viewer), None).await;
    assert_eq!(list["pipelines"][0]["status"], "stopped");

    // The log names every change and who made it, never the job itself.
    let (_, log) = call("GET", url("/v1/events?after=0"), Some(&viewer), None).await;
    let kinds: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["PipelineSubmitted", "Started", "Stopped"]);
    assert!(log["events"][0].get("job").is_none());
    let (_, later) = call("GET", url("/v1/events?after=2"), Some(&viewer), None).await;
    assert_eq!(later["events"].as_array().unwrap().len(), 1);

    let (status, _) = call("DELETE", url("/v1/pipelines/doubles"), Some(ADMIN), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        call("GET", url("/v1/pipelines/doubles"), Some(ADMIN), None)
            .await
            .0,
        404
    );
}
