//! HTTP ingest as a streaming source: clients POST JSON (`application/json`: a document or
//! an array of documents) or NDJSON (anything else: one document per line) to `listen` +
//! `path`, and the documents enter the stream.
//!
//! A request is answered 200 only once its documents are durable: checked (every line must
//! be a JSON document of the declared schema, else 400 naming the line and why, and nothing
//! of the request is kept), appended to the source's write-ahead log and fsynced. The stream
//! reads that log as a followed JSON-lines file whose byte offset is the checkpointed
//! position, so a crash loses nothing that was acknowledged, and nothing is read twice.
//! Other answers: 401 for a bad bearer token or HMAC signature, 413 for a body over
//! `maxBodyBytes`, 503 (with `Retry-After`) while the log holds more than `maxPendingBytes`
//! the stream has not read yet.
//!
//! The log is not compacted: it keeps every request's documents until the job's checkpoint
//! store is cleared.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::datatypes::SchemaRef;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::http_sink::expand_env;
use super::jsonl_source::JsonlFileSource;
use super::source::{Position, Source, SourceBatch};
use crate::document::decode::read_lines;
use crate::{Error, Result};

/// The largest body accepted unless `maxBodyBytes` says otherwise (10 MiB).
const DEFAULT_MAX_BODY: usize = 10 << 20;
/// Unread bytes of the log past which requests are refused with 503 (64 MiB).
const DEFAULT_MAX_PENDING: u64 = 64 << 20;
/// The log's file name in its directory.
const LOG: &str = "ingest.jsonl";

/// How requests prove who sent them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngestAuth {
    /// `Authorization: Bearer <token>`; the token may name environment variables (`${TOKEN}`).
    pub bearer: Option<String>,
    /// An HMAC-SHA256 of the body under `secret`, hex in `header` (`X-Signature` by
    /// default, an optional `sha256=` prefix allowed).
    pub hmac_sha256: Option<HmacAuth>,
}

/// The HMAC a request carries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HmacAuth {
    pub secret: String,
    pub header: Option<String>,
}

/// The `source` object of a job receiving HTTP posts: `{"type": "http", …}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpSourceConfig {
    /// `127.0.0.1:8080`.
    pub listen: String,
    /// The path posts go to (default `/`).
    pub path: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub max_pending_bytes: Option<u64>,
    pub auth: Option<IngestAuth>,
    /// The documents' schema (posts are checked against it).
    pub schema: Value,
    /// The log's directory; `<checkpoint store>/http-ingest` when the job has a local
    /// checkpoint store.
    pub log_dir: Option<String>,
    /// The table name SQL uses (default `input`).
    pub table: Option<String>,
    /// The event time of each document, for windows.
    #[serde(rename = "timeField")]
    pub time_field: Option<Value>,
}

/// What the request handler shares with the source.
struct Ingest {
    schema: SchemaRef,
    log: tokio::sync::Mutex<tokio::fs::File>,
    /// The log's length (what has been acknowledged).
    written: AtomicU64,
    /// Where the stream has read to.
    read: Arc<AtomicU64>,
    max_body: usize,
    max_pending: u64,
    bearer: Option<String>,
    hmac: Option<(Vec<u8>, String)>,
}

/// The source: the log, read as a followed JSON-lines file, behind the server that fills it.
pub struct HttpIngestSource {
    log: JsonlFileSource,
    read: Arc<AtomicU64>,
    server: tokio::task::JoinHandle<()>,
    /// The address the server listens on (the port, when `listen` asked for port 0).
    pub local_addr: std::net::SocketAddr,
}

impl Drop for HttpIngestSource {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Cuts a torn last line (a crash in the middle of an append that was never acknowledged).
fn repair(path: &Path) -> Result<u64> {
    let io = |e: std::io::Error| Error::external(format!("opening {}", path.display()), e);
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(e)),
    };
    let keep = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    if keep < data.len() {
        f.set_len(keep as u64).map_err(io)?;
    }
    f.sync_all().map_err(io)?;
    Ok(keep as u64)
}

impl HttpIngestSource {
    /// Opens the log in `log_dir` (repairing a torn last line) and starts listening.
    pub fn open(
        config: &HttpSourceConfig,
        log_dir: Option<&Path>,
        context: &str,
    ) -> Result<HttpIngestSource> {
        let dir: PathBuf = match (&config.log_dir, log_dir) {
            (Some(d), _) => PathBuf::from(d),
            (None, Some(d)) => d.to_path_buf(),
            (None, None) => {
                return Err(Error::config(
                    context,
                    "source: an HTTP source keeps what it acknowledges in a log under the job's checkpoint store: give the job a local \"checkpoint\" store (or the source a \"logDir\")",
                ));
            }
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::external(format!("creating {}", dir.display()), e))?;
        let path = dir.join(LOG);
        let length = repair(&path)?;
        let schema = Arc::new(crate::document::declared::parse_schema(
            &config.schema,
            context,
            "source.schema",
        )?);
        let auth = config.auth.clone().unwrap_or(IngestAuth {
            bearer: None,
            hmac_sha256: None,
        });
        let bearer = auth
            .bearer
            .as_deref()
            .map(|t| expand_env(t, "source.auth.bearer", context))
            .transpose()?;
        let hmac = auth
            .hmac_sha256
            .as_ref()
            .map(|h| -> Result<(Vec<u8>, String)> {
                let secret = expand_env(&h.secret, "source.auth.hmacSha256.secret", context)?;
                let header = h.header.clone().unwrap_or_else(|| "x-signature".into());
                Ok((secret.into_bytes(), header.to_ascii_lowercase()))
            })
            .transpose()?;
        let listener = std::net::TcpListener::bind(&config.listen).map_err(|e| {
            Error::external(format!("{context}: listening on {}", config.listen), e)
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::external("listening", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::external("listening", e))?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                context,
                "source: an HTTP source runs inside a Tokio runtime",
            )
        })?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::external(format!("opening {}", path.display()), e))?;
        let read = Arc::new(AtomicU64::new(0));
        let ingest = Arc::new(Ingest {
            schema: schema.clone(),
            log: tokio::sync::Mutex::new(tokio::fs::File::from_std(file)),
            written: AtomicU64::new(length),
            read: read.clone(),
            max_body: config.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
            max_pending: config.max_pending_bytes.unwrap_or(DEFAULT_MAX_PENDING),
            bearer,
            hmac,
        });
        let route = config.path.clone().unwrap_or_else(|| "/".into());
        let app = axum::Router::new()
            .route(&route, axum::routing::post(accept))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(ingest);
        let server = runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                tracing::error!("http source: the listener could not be registered");
                return;
            };
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("http source: the server stopped: {e}");
            }
        });
        tracing::info!(addr = %local_addr, path = %route, "http source listening");
        Ok(HttpIngestSource {
            log: JsonlFileSource::open(&path, Some(schema), true)?,
            read,
            server,
            local_addr,
        })
    }
}

/// An answer with a JSON body.
fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn refuse(status: StatusCode, why: impl Into<String>) -> Response {
    answer(status, json!({ "error": why.into() }))
}

/// Decodes hex (`sha256=` prefix allowed).
fn signature(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    let text = text.strip_prefix("sha256=").unwrap_or(text);
    hex::decode(text).ok()
}

/// Compares without stopping at the first difference, so timing says nothing of a token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The handler: authenticate, bound, check, log durably, acknowledge.
async fn accept(State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    if let Some(token) = &ingest.bearer {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), token.as_bytes()) {
            return refuse(StatusCode::UNAUTHORIZED, "a missing or wrong bearer token");
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > ingest.max_body) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {} bytes", ingest.max_body),
        );
    }
    let body = match axum::body::to_bytes(body, ingest.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {} bytes", ingest.max_body),
            );
        }
    };
    if let Some((secret, name)) = &ingest.hmac {
        let Some(given) = headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(signature)
        else {
            return refuse(StatusCode::UNAUTHORIZED, format!("no {name} signature"));
        };
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the HMAC secret is unusable",
            );
        };
        mac.update(&body);
        if mac.verify_slice(&given).is_err() {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "the signature does not match the body",
            );
        }
    }
    let written = ingest.written.load(Ordering::SeqCst);
    if written.saturating_sub(ingest.read.load(Ordering::SeqCst)) > ingest.max_pending {
        let mut r = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the stream is behind: try again shortly",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let lines = match lines_of(&body, json) {
        Ok(l) => l,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    if lines.is_empty() {
        return answer(StatusCode::OK, json!({"accepted": 0}));
    }
    // Each document must be one of the schema, or the whole request is refused.
    match read_lines(&lines, &ingest.schema, false, 8192, false) {
        Ok(read) => {
            if let Some(bad) = read.invalid.first() {
                let n = if json { "document" } else { "line" };
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("{n} {}: {}", bad.line + 1, bad.reason),
                );
            }
        }
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    }
    let count = lines.iter().filter(|b| **b == b'\n').count();
    let mut log = ingest.log.lock().await;
    let durable = async {
        log.write_all(&lines).await?;
        log.sync_data().await
    }
    .await;
    if let Err(e) = durable {
        tracing::error!("http source: writing the log: {e}");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the documents could not be made durable: try again",
        );
    }
    ingest
        .written
        .fetch_add(lines.len() as u64, Ordering::SeqCst);
    drop(log);
    answer(StatusCode::OK, json!({ "accepted": count }))
}

/// The documents of a body as JSON lines: a JSON document or array of documents, or
/// NDJSON. Blank lines are skipped; anything else that is not a document is an error naming
/// its line.
fn lines_of(body: &[u8], json: bool) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(body.len() + 1);
    if json {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("not valid JSON: {e}"))?;
        let docs = match v {
            Value::Array(items) => items,
            doc @ Value::Object(_) => vec![doc],
            _ => return Err("expected a document or an array of documents".into()),
        };
        for (i, d) in docs.iter().enumerate() {
            if !d.is_object() {
                return Err(format!("document {}: not a JSON object", i + 1));
            }
            out.extend_from_slice(d.to_string().as_bytes());
            out.push(b'\n');
        }
        return Ok(out);
    }
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(_)) => {}
            Ok(_) => return Err(format!("line {}: not a JSON object", i + 1)),
            Err(e) => return Err(format!("line {}: not valid JSON: {e}", i + 1)),
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    Ok(out)
}

#[async_trait]
impl Source for HttpIngestSource {
    fn schema(&self) -> SchemaRef {
        self.log.schema()
    }

    fn position(&self) -> Position {
        self.log.position()
    }

    fn seek(&mut self, position: &Position) -> Result<()> {
        self.log.seek(position)?;
        self.note_read();
        Ok(())
    }

    fn end_at(&mut self, end: &Position) -> Result<()> {
        self.log.end_at(end)
    }

    fn bound(&mut self, end: Option<&Position>) -> Result<()> {
        self.log.bound(end)
    }

    fn lag(&self) -> Option<u64> {
        self.log.lag()
    }

    async fn next_batch(&mut self, max_rows: usize) -> Result<Option<SourceBatch>> {
        let got = self.log.next_batch(max_rows).await?;
        self.note_read();
        Ok(got)
    }
}

impl HttpIngestSource {
    fn note_read(&self) {
        if let Some(o) = self.log.position().0.get("offset").and_then(Value::as_u64) {
            self.read.store(o, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_become_lines_or_say_which_line_is_wrong() {
        assert_eq!(
            lines_of(b"{\"a\":1}\n\n{\"a\":2}\r\n", false).unwrap(),
            b"{\"a\":1}\n{\"a\":2}\n"
        );
        assert_eq!(
            lines_of(b"[{\"a\":1},{\"a\":2}]", true).unwrap(),
            b"{\"a\":1}\n{\"a\":2}\n"
        );
        let err = lines_of(b"{\"a\":1}\n{\"a\":2,,}\n", false).unwrap_err();
        assert!(err.starts_with("line 2: not valid JSON"), "{err}");
        assert_eq!(
            lines_of(b"[1]", true).unwrap_err(),
            "document 1: not a JSON object"
        );
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
        assert_eq!(signature("sha256=0aff"), Some(vec![0x0a, 0xff]));
    }
}
