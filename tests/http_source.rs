//! The HTTP ingest source through its real server on loopback: what each answer means
//! (200 only once durable; 400 naming the line, 401, 413, 503) and that a refused request
//! leaves nothing behind; HMAC signatures; and a job killed with SIGKILL while clients post,
//! which loses nothing it acknowledged.

mod common;

use std::time::Duration;

use fluxion::connect::http_source::{HttpIngestSource, HttpSourceConfig};
use fluxion::connect::source::Source;
use fluxion::document::encode::to_documents;
use hmac::Mac;
use serde_json::{Value, json};

fn config(extra: Value) -> HttpSourceConfig {
    let mut c = json!({"listen": "127.0.0.1:0", "path": "/ingest",
                       "schema": {"id": "long", "name": "string"}});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(c).unwrap()
}

/// Every document the source has (reading until it has nothing more).
async fn drain(source: &mut HttpIngestSource) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let b = source.next_batch(1000).await.unwrap().unwrap();
        if b.batch.num_rows() == 0 {
            return out;
        }
        out.extend(to_documents(&[b.batch]).unwrap());
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut r = client.post(url).body(body.to_string());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A bad token is 401, an oversized body 413, a malformed line or a document of the wrong
/// type 400 naming the line — and none of them leaves a document behind; NDJSON and JSON
/// arrays are 200 with the count, and exactly those documents are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_answer_says_what_happened_to_the_documents() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("FLUXION_TEST_INGEST_TOKEN", "t0ken") };
    let mut source = HttpIngestSource::open(
        &config(json!({"maxBodyBytes": 200, "auth": {"bearer": "${FLUXION_TEST_INGEST_TOKEN}"}})),
        Some(dir.path()),
        "test",
    )
    .unwrap();
    let url = format!("http://{}/ingest", source.local_addr);
    let client = reqwest::Client::new();
    let auth = [("authorization", "Bearer t0ken")];
    let (s, _) = post(&client, &url, "{\"id\": 1}\n", &[]).await;
    assert_eq!(s, 401);
    let (s, _) = post(
        &client,
        &url,
        "{\"id\": 1}\n",
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(s, 401);
    let big = "{\"id\": 1, \"name\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n".repeat(10);
    let (s, _) = post(&client, &url, &big, &auth).await;
    assert_eq!(s, 413);
    let (s, body) = post(
        &client,
        &url,
        "{\"id\": 1, \"name\": \"a\"}\n{\"id\": 2, \"name\": \"b\",,}\n",
        &auth,
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("line 2: not valid JSON"),
        "{body}"
    );
    let (s, body) = post(&client, &url, "{\"id\": \"one\"}\n", &auth).await;
    assert_eq!(s, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("line 1:"),
        "{body}"
    );
    assert!(drain(&mut source).await.is_empty());

    let (s, body) = post(
        &client,
        &url,
        "{\"id\": 1, \"name\": \"a\"}\n\n{\"id\": 2}\n",
        &auth,
    )
    .await;
    assert_eq!((s, body), (200, json!({"accepted": 2})));
    let (s, body) = post(
        &client,
        &url,
        "[{\"id\": 3, \"name\": \"c\"}]",
        &[auth[0], ("content-type", "application/json")],
    )
    .await;
    assert_eq!((s, body), (200, json!({"accepted": 1})));
    assert_eq!(
        drain(&mut source).await,
        vec![
            json!({"id": 1, "name": "a"}),
            json!({"id": 2}),
            json!({"id": 3, "name": "c"})
        ]
    );
}

/// With an HMAC secret, a request must carry the body's signature; and while the stream is
/// more than `maxPendingBytes` behind, requests get 503 with `Retry-After` until it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_and_back_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let mut source = HttpIngestSource::open(
        &config(json!({"maxPendingBytes": 10,
                       "auth": {"hmacSha256": {"secret": "shh", "header": "X-Hub-Signature-256"}}})),
        Some(dir.path()),
        "test",
    )
    .unwrap();
    let url = format!("http://{}/ingest", source.local_addr);
    let client = reqwest::Client::new();
    let sign = |body: &str| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"shh").unwrap();
        mac.update(body.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let body = "{\"id\": 1, \"name\": \"signed\"}\n";
    let (s, _) = post(
        &client,
        &url,
        body,
        &[("x-hub-signature-256", &sign("other"))],
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = post(&client, &url, body, &[]).await;
    assert_eq!(s, 401);
    let (s, _) = post(&client, &url, body, &[("x-hub-signature-256", &sign(body))]).await;
    assert_eq!(s, 200);
    // The stream has not read the 29 bytes yet.
    let resp = client
        .post(&url)
        .header("x-hub-signature-256", sign(body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(
        drain(&mut source).await,
        vec![json!({"id": 1, "name": "signed"})]
    );
    let (s, _) = post(&client, &url, body, &[("x-hub-signature-256", &sign(body))]).await;
    assert_eq!(s, 200);
}

/// Clients post while the job is killed with SIGKILL and started again: every document
/// acknowledged with 200 is in the output exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_through_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = dir.path().join("out.jsonl");
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        json!({
            "source": {"type": "http", "listen": format!("127.0.0.1:{port}"), "path": "/ingest",
                       "schema": {"id": "long"}},
            "pipeline": [{"$project": {"_id": 0, "id": 1}}],
            "sink": {"type": "file", "path": out},
            "runtime": {"microBatchSize": 50},
            "checkpoint": {"store": dir.path().join("cp"), "intervalMs": 100}
        })
        .to_string(),
    )
    .unwrap();
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fluxion"))
            .args(["run", job.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let url = format!("http://127.0.0.1:{port}/ingest");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut acknowledged: Vec<i64> = Vec::new();
    let mut next = 0i64;
    let mut child = start();
    for round in 0..3 {
        // Post for a while, then kill the job in the middle of it.
        let until = std::time::Instant::now() + Duration::from_millis(700);
        while std::time::Instant::now() < until {
            let ids: Vec<i64> = (next..next + 20).collect();
            next += 20;
            let body: String = ids.iter().map(|i| format!("{{\"id\": {i}}}\n")).collect();
            if let Ok(r) = client.post(&url).body(body).send().await
                && r.status().as_u16() == 200
            {
                acknowledged.extend(ids);
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if round < 2 {
            child.kill().unwrap();
            child.wait().unwrap();
            child = start();
        }
    }
    assert!(acknowledged.len() > 200, "too few posts got through");
    // Wait until the output has caught up, then stop the job gracefully.
    let read = || -> Vec<i64> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect()
    };
    for _ in 0..200 {
        if read().len() >= acknowledged.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(child.wait().unwrap().success());
    let mut got = read();
    got.sort();
    let before = got.len();
    got.dedup();
    assert_eq!(got.len(), before, "a document was written twice");
    let missing: Vec<&i64> = acknowledged
        .iter()
        .filter(|i| got.binary_search(i).is_err())
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}
