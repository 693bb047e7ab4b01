//! An HTTP endpoint as a streaming sink: each micro-batch's output is sent as requests of at
//! most `batchSize` documents — a JSON array (`"format": "json"`) or JSON lines (`"ndjson"`).
//!
//! A request that fails with a 5xx status, a 429 (after its `Retry-After`), a timeout or a lost
//! connection is sent again with backoff; past the retries, or on any other status, the batch
//! fails and the job's error policy decides (a dead-letter sink keeps the batch). Every request
//! carries an `Idempotency-Key` naming the job, the micro-batch and the request's place in it:
//! the runtime forms the batches of a crashed run again exactly, so a request sent again after
//! a crash has the key it had, and a receiver that remembers keys sees each document once.
//!
//! Header values may name environment variables (`${TOKEN}`); their values are never written
//! to logs or errors, and neither is a password in the endpoint's URL.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use serde::Deserialize;
use serde_json::{Value, json};

use super::source::{BatchId, Sink};
use crate::document::encode::write_batch;
use crate::{Error, Result};

/// How requests are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRetry {
    /// Attempts in all, the first included (default 5).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// The wait before the second attempt (default 200 ms) …
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// … multiplied by this for each one after (default 2).
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
}

fn default_attempts() -> u32 {
    5
}
fn default_backoff() -> u64 {
    200
}
fn default_multiplier() -> f64 {
    2.0
}

impl Default for HttpRetry {
    fn default() -> Self {
        HttpRetry {
            max_attempts: default_attempts(),
            backoff_ms: default_backoff(),
            multiplier: default_multiplier(),
        }
    }
}

/// A request body's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// A JSON array of the documents.
    #[default]
    Json,
    /// One document per line.
    Ndjson,
}

/// The `sink` object of a job posting to HTTP: `{"type": "http", …}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpSinkConfig {
    /// The URL requests go to.
    pub endpoint: String,
    /// `POST` (default), `PUT` or `PATCH`.
    pub method: Option<String>,
    /// Request headers; a value may name environment variables as `${NAME}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub format: BodyFormat,
    /// Documents per request at most (default: a micro-batch's output in one request).
    pub batch_size: Option<usize>,
    /// Send a request for a micro-batch without output too (an empty array).
    #[serde(default)]
    pub allow_empty: bool,
    /// How long one request may take (default 30 s).
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub retry: HttpRetry,
}

/// Output documents sent to an HTTP endpoint.
pub struct HttpSink {
    client: reqwest::Client,
    method: reqwest::Method,
    url: reqwest::Url,
    /// The URL as messages show it (without a password).
    shown: String,
    headers: reqwest::header::HeaderMap,
    credentials: Option<(String, Option<String>)>,
    format: BodyFormat,
    batch_size: usize,
    allow_empty: bool,
    retry: HttpRetry,
    batch: Option<BatchId>,
    /// Requests sent for the batch so far (the last part of the idempotency key).
    requests: u64,
    sent: u64,
}

/// `text` with every `${NAME}` replaced by the environment variable's value.
pub fn expand_env(text: &str, what: &str, context: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            return Err(Error::config(
                context,
                format!("{what}: \"${{\" without a closing \"}}\""),
            ));
        };
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| {
            Error::config(
                context,
                format!("{what}: the environment variable {name} is not set"),
            )
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl HttpSink {
    /// A sink for `config`; fails on a bad URL, method or header.
    pub fn open(config: &HttpSinkConfig, context: &str) -> Result<Self> {
        let mut url = reqwest::Url::parse(&config.endpoint)
            .map_err(|e| Error::config(context, format!("sink.endpoint: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::config(
                context,
                "sink.endpoint: an http:// or https:// URL",
            ));
        }
        let mut shown_url = url.clone();
        if shown_url.password().is_some() {
            let _ = shown_url.set_password(Some("***"));
        }
        let method = match config.method.as_deref().unwrap_or("POST") {
            m @ ("POST" | "PUT" | "PATCH") => reqwest::Method::from_bytes(m.as_bytes())
                .map_err(|e| Error::config(context, format!("sink.method: {e}")))?,
            other => {
                return Err(Error::config(
                    context,
                    format!("sink.method: {other:?} is not POST, PUT or PATCH"),
                ));
            }
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &config.headers {
            let what = format!("sink.headers.{name}");
            let value = expand_env(value, &what, context)?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::config(context, format!("{what}: not a header name")))?;
            let mut value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| Error::config(context, format!("{what}: not a header value")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if config.batch_size == Some(0) {
            return Err(Error::config(context, "sink.batchSize: at least 1"));
        }
        if config.retry.max_attempts == 0
            || config.retry.multiplier.is_nan()
            || config.retry.multiplier < 1.0
        {
            return Err(Error::config(
                context,
                "sink.retry: maxAttempts at least 1 and a multiplier of at least 1",
            ));
        }
        let timeout = Duration::from_millis(config.timeout_ms.unwrap_or(30_000));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::config(context, format!("sink: {e}")))?;
        // Credentials in the URL go as basic auth, so the URL itself never carries them.
        let credentials = if !url.username().is_empty() || url.password().is_some() {
            let c = (
                url.username().to_string(),
                url.password().map(str::to_string),
            );
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some(c)
        } else {
            None
        };
        Ok(HttpSink {
            client,
            method,
            url,
            shown: shown_url.to_string(),
            headers,
            credentials,
            format: config.format,
            batch_size: config.batch_size.unwrap_or(usize::MAX),
            allow_empty: config.allow_empty,
            retry: config.retry.clone(),
            batch: None,
            requests: 0,
            sent: 0,
        })
    }

    /// The request bodies for `docs` (JSON lines, one per document).
    fn bodies(&self, lines: &[&[u8]]) -> Vec<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        let chunks: Vec<&[&[u8]]> = if lines.is_empty() {
            vec![&[]]
        } else {
            lines.chunks(self.batch_size.min(lines.len())).collect()
        };
        for chunk in chunks {
            let mut body = Vec::new();
            match self.format {
                BodyFormat::Json => {
                    body.push(b'[');
                    for (i, l) in chunk.iter().enumerate() {
                        if i > 0 {
                            body.push(b',');
                        }
                        body.extend_from_slice(l);
                    }
                    body.push(b']');
                }
                BodyFormat::Ndjson => {
                    for l in chunk {
                        body.extend_from_slice(l);
                        body.push(b'\n');
                    }
                }
            }
            out.push((body, chunk.len()));
        }
        out
    }

    /// Sends one body, retrying what may pass.
    async fn send(&self, body: Vec<u8>, key: &str) -> Result<()> {
        let content_type = match self.format {
            BodyFormat::Json => "application/json",
            BodyFormat::Ndjson => "application/x-ndjson",
        };
        let mut wait = Duration::from_millis(self.retry.backoff_ms);
        let mut attempt = 1u32;
        loop {
            let mut request = self
                .client
                .request(self.method.clone(), self.url.clone())
                .headers(self.headers.clone())
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .header("Idempotency-Key", key)
                .body(body.clone());
            if let Some((user, pass)) = &self.credentials {
                request = request.basic_auth(user, pass.as_ref());
            }
            let sent = request.send().await;
            let (again, why, after) = match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let status = r.status();
                    let after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = r.text().await.unwrap_or_default();
                    let text: String = text.chars().take(200).collect();
                    let again = status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                    (again, format!("{status}: {}", text.trim()), after)
                }
                Err(e) => {
                    let again = e.is_timeout() || e.is_connect() || e.is_request();
                    // reqwest's message names the URL: ours is the one without a password.
                    (again, without_url(&e), None)
                }
            };
            if !again {
                return Err(Error::input(
                    format!("sink {}", self.shown),
                    format!("the endpoint refused the request ({why})"),
                ));
            }
            if attempt >= self.retry.max_attempts {
                return Err(Error::external(
                    format!("sink {}", self.shown),
                    std::io::Error::other(format!("{why}, after {attempt} attempts")),
                ));
            }
            tracing::debug!(endpoint = %self.shown, attempt, "http sink: {why}; sending again");
            tokio::time::sleep(after.unwrap_or(wait)).await;
            wait = wait.mul_f64(self.retry.multiplier);
            attempt += 1;
        }
    }
}

/// A reqwest error's message without the URL it carries.
fn without_url(e: &reqwest::Error) -> String {
    let mut kind = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        kind = format!("{kind}: {s}");
        source = s.source();
    }
    kind
}

#[async_trait]
impl Sink for HttpSink {
    async fn write(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let mut text = Vec::new();
        for b in batches.iter().filter(|b| b.num_rows() > 0) {
            write_batch(&mut text, b)?;
        }
        let lines: Vec<&[u8]> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() && !self.allow_empty {
            return Ok(());
        }
        let (job, number) = match &self.batch {
            Some(b) => (b.job.clone(), b.number),
            None => ("fluxion".to_string(), 0),
        };
        for (body, docs) in self.bodies(&lines) {
            let key = format!("{job}:{number}:{}", self.requests);
            self.requests += 1;
            self.send(body, &key).await?;
            self.sent += docs as u64;
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<Value> {
        Ok(json!({ "documents": self.sent }))
    }

    async fn restore(&mut self, state: &Value) -> Result<()> {
        self.sent = state.get("documents").and_then(Value::as_u64).unwrap_or(0);
        // A batch sent again starts its keys over, so each request has the key it had.
        self.requests = 0;
        Ok(())
    }

    fn recognises_output(&self) -> bool {
        true
    }

    fn begin(&mut self, batch: &BatchId) {
        self.batch = Some(batch.clone());
        self.requests = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_variables_are_put_into_header_values() {
        // SAFETY: tests of this module set only this variable.
        unsafe { std::env::set_var("FLUXION_TEST_TOKEN", "s3cr3t") };
        assert_eq!(
            expand_env("Bearer ${FLUXION_TEST_TOKEN}!", "h", "job").unwrap(),
            "Bearer s3cr3t!"
        );
        let e = expand_env("${FLUXION_NO_SUCH_VAR}", "sink.headers.x", "job").unwrap_err();
        assert!(
            e.to_string().contains("FLUXION_NO_SUCH_VAR is not set"),
            "{e}"
        );
        assert!(expand_env("${OPEN", "h", "job").is_err());
    }

    #[test]
    fn bad_configs_are_refused_naming_the_option() {
        let open = |v: Value| {
            HttpSink::open(&serde_json::from_value(v).unwrap(), "job")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(open(json!({"endpoint": "ftp://x"})).contains("sink.endpoint"));
        assert!(open(json!({"endpoint": "http://x", "method": "GET"})).contains("sink.method"));
        assert!(open(json!({"endpoint": "http://x", "batchSize": 0})).contains("sink.batchSize"));
        assert!(
            open(json!({"endpoint": "http://x", "headers": {"bad name": "v"}}))
                .contains("sink.headers")
        );
    }
}
