//! A real HTTP server on loopback for the HTTP sink and enrich tests (axum): `POST /ingest`
//! receives, `GET /customers/{id}` answers a customer document. It records every request's
//! path, `Idempotency-Key`, headers and body, and answers each with the next scripted reply
//! (a status, a 429 with `Retry-After`, a slow answer, a hang-up mid-response), then
//! normally.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// 429 with `Retry-After: secs`.
    TooMany(u64),
    /// 200 after a wait.
    Slow(Duration),
    /// 200 and the start of a body, then the connection is dropped mid-response.
    HangUp,
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path and query asked for.
    pub path: String,
    pub key: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub status: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    received: Vec<Received>,
}

/// A running receiver.
pub struct Receiver {
    pub url: String,
    /// `http://host:port`.
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn ingest(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(inner, uri, headers, body, StatusCode::OK.into_response()).await
}

/// `GET /customers/{id}`: `{"name": "name-<id>", "tier": "gold" | "basic", "score": <id's
/// length>}` — gold for ids ending in an even digit.
async fn customer(
    State(inner): State<Arc<Mutex<Inner>>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let gold = id
        .chars()
        .last()
        .and_then(|c| c.to_digit(10))
        .is_some_and(|d| d % 2 == 0);
    let doc = serde_json::json!({"name": format!("name-{id}"), "tier": if gold { "gold" } else { "basic" },
                                 "score": id.len()});
    let ok = (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response();
    answer(inner, uri, headers, Bytes::new(), ok).await
}

/// Answers with the next scripted reply, or `ok`; records the request.
async fn answer(
    inner: Arc<Mutex<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
    ok: Response,
) -> Response {
    let at = std::time::Instant::now();
    let reply = inner.lock().unwrap().script.pop_front();
    let (status, response) = match reply {
        None => (200, ok),
        Some(Reply::Status(s)) => (s, StatusCode::from_u16(s).unwrap().into_response()),
        Some(Reply::TooMany(secs)) => (
            429,
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
            )
                .into_response(),
        ),
        Some(Reply::Slow(d)) => {
            tokio::time::sleep(d).await;
            (200, ok)
        }
        Some(Reply::HangUp) => {
            let parts: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from_static(b"{\"name\": \"cut")),
                Err(std::io::Error::other("hung up")),
            ];
            (
                200,
                axum::body::Body::from_stream(futures::stream::iter(parts)).into_response(),
            )
        }
    };
    inner.lock().unwrap().received.push(Received {
        path: uri.to_string(),
        key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        headers: headers.clone(),
        body: body.to_vec(),
        status,
        at,
    });
    response
}

impl Receiver {
    /// Starts a receiver on a free loopback port (on the calling test's runtime); requests go to
    /// `{url}` (path `/ingest`).
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/ingest", post(ingest))
            .route("/customers/{id}", axum::routing::get(customer))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let url = format!("{base}/ingest");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url,
            base,
            inner,
            task,
        }
    }

    /// Answers the next requests so, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    /// Every request received.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The documents of the accepted requests, each idempotency key counted once (the first
    /// accepted request with it), as a receiver that de-duplicates would keep them.
    pub fn documents_once(&self) -> Vec<Value> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for r in self.received() {
            if r.status != 200 || !seen.insert(r.key.clone()) {
                continue;
            }
            out.extend(body_documents(&r.body));
        }
        out
    }
}

/// The documents of a JSON-array or JSON-lines body.
pub fn body_documents(body: &[u8]) -> Vec<Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(docs)) => docs,
        _ => body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect(),
    }
}
