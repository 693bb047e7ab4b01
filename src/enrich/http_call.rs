//! `$httpCall`: an HTTP request per document, evaluated as an async scalar UDF over a whole
//! micro-batch. Per batch the requests are built from the placeholders' and the body's
//! columns, identical ones are made once, the distinct ones run with bounded concurrency
//! (`maxConcurrency`), answers come from the call site's cache when it has them, and each
//! answer's value at `responsePath` becomes the document's, typed by `returns`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::ScalarUDF;
use futures::StreamExt;
use serde_json::Value;

use super::breaker::Breaker;
use super::limit;
use super::lookup::{
    Answer, Calls, Retry, Texts, cache, call_site, failures, gather, returns_schema, typed,
};
use crate::connect::http_sink::expand_env;
use crate::document::encode::column_json;
use crate::dsl::enrich::{EnrichCall, HttpCallOptions, OnError, placeholders_in};
use crate::{Error, Result};

/// Requests in flight at once per call site, unless `maxConcurrency` says otherwise.
const DEFAULT_CONCURRENCY: usize = 16;
/// A request's whole time, unless `timeoutMs` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What a placeholder's value keeps unencoded in a URL: RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A URL or query value with `{{path}}` placeholders: literal text and placeholder indexes.
#[derive(Debug)]
enum Part {
    Text(String),
    Input(usize),
}

fn template(text: &str, placeholders: &[String]) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut at = 0;
    for (range, path) in placeholders_in(text) {
        if range.start > at {
            parts.push(Part::Text(text[at..range.start].to_string()));
        }
        let i = placeholders
            .iter()
            .position(|p| *p == path)
            .expect("placeholders come from the same text");
        parts.push(Part::Input(i));
        at = range.end;
    }
    if at < text.len() {
        parts.push(Part::Text(text[at..].to_string()));
    }
    parts
}

/// One distinct request of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Request {
    url: String,
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

/// What a call site holds: its options made ready, its client and its cache.
#[derive(Debug)]
struct Site {
    client: reqwest::Client,
    method: reqwest::Method,
    base: String,
    url: Vec<Part>,
    query: Vec<(String, Vec<Part>)>,
    headers: reqwest::header::HeaderMap,
    placeholders: usize,
    has_body: bool,
    pointer: Option<String>,
    retry: Retry,
    cache: Option<moka::future::Cache<Request, Arc<Value>>>,
    /// Requests that failed lately (`onError: "deadLetter"`).
    failed: Option<moka::future::Cache<Request, String>>,
    breaker: Option<Breaker>,
    /// The connection's token bucket (or the call site's own).
    bucket: Option<Arc<governor::DefaultDirectRateLimiter>>,
    on_error: OnError,
    concurrency: usize,
    returns: DataType,
    /// `{"v": returns}`, to read typed answers with.
    schema: SchemaRef,
    /// The URL as written (no secrets), for errors.
    shown: String,
}

/// The UDF for `call` (whose options are `o`); its arguments are `call.inputs`, compiled,
/// in order.
pub fn udf(call: &EnrichCall, o: &HttpCallOptions) -> Result<(ScalarUDF, DataType)> {
    let at = &call.path;
    let context = at.to_string();
    let method = match &o.method {
        Some(m) => reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| at.key("method").err(format!("{m:?} is no HTTP method")))?,
        None if o.body.is_some() => reqwest::Method::POST,
        None => reqwest::Method::GET,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &o.headers {
        let what = format!("headers.{name}");
        let value = expand_env(value, &what, &context)?;
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| at.key("headers").err(format!("{name:?} is no header name")))?;
        // The value may hold a secret: the error does not show it, and neither does the
        // value's `Debug` (a plan printed with `{:?}`).
        let mut value = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|_| at.key(&what).err("not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let base = o.base_url.clone().unwrap_or_default();
    let whole = format!("{base}{}", o.url);
    reqwest::Url::parse(&placeholders_in(&whole).iter().rev().fold(
        whole.clone(),
        |mut u, (r, _)| {
            u.replace_range(r.clone(), "x");
            u
        },
    ))
    .map_err(|e| at.key("url").err(format!("{e}: {whole:?}")))?;
    let mut client = reqwest::Client::builder()
        .timeout(o.timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis));
    if let Some(ms) = o.connect_timeout_ms {
        client = client.connect_timeout(Duration::from_millis(ms));
    }
    let client = client
        .build()
        .map_err(|e| Error::external(format!("{at}: starting an HTTP client"), e))?;
    let retry = Retry::new(o.retry.as_ref());
    let cache = cache(o.cache.as_ref());
    let returns_json = o.returns.clone().unwrap_or(Value::String("string".into()));
    let (returns, schema) = returns_schema(&returns_json, at)?;
    let site = Site {
        client,
        method,
        base,
        url: template(&o.url, &call.placeholders),
        query: o
            .query
            .iter()
            .map(|(k, v)| (k.clone(), template(v, &call.placeholders)))
            .collect(),
        headers,
        placeholders: call.placeholders.len(),
        has_body: o.body.is_some(),
        pointer: o.response_path.clone(),
        retry,
        cache,
        failed: (o.on_error == OnError::DeadLetter).then(failures),
        breaker: o.circuit_breaker.as_ref().map(Breaker::new),
        bucket: o
            .rate_limit
            .as_ref()
            .map(|r| limit::bucket(o.connection.as_deref(), r)),
        on_error: o.on_error,
        concurrency: o.max_concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1),
        returns: returns.clone(),
        schema,
        shown: whole,
    };
    let name = format!("http_call({})", site.shown);
    Ok((call_site(name, returns.clone(), site), returns))
}

#[async_trait]
impl Calls for Site {
    async fn call(&self, arrays: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        self.answers(arrays, rows).await
    }
}

impl Site {
    /// The answers for `rows` documents whose inputs are `arrays`.
    async fn answers(&self, arrays: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let inputs = arrays[..self.placeholders]
            .iter()
            .map(Texts::of)
            .collect::<Result<Vec<_>>>()?;
        let bodies = match self.has_body {
            true => Some(column_json(&arrays[self.placeholders])?),
            false => None,
        };
        // Documents with the same placeholder values (and body) make one request per batch;
        // only the first of them builds it.
        let mut distinct: HashMap<Vec<Option<&[u8]>>, usize> = HashMap::new();
        let mut firsts: Vec<usize> = Vec::new();
        let mut of_row: Vec<Option<usize>> = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut key: Vec<Option<&[u8]>> = Vec::with_capacity(inputs.len() + 1);
            key.extend(inputs.iter().map(|t| t.get(row)));
            if key.iter().any(Option::is_none) {
                // A missing placeholder: no request, a null answer.
                of_row.push(None);
                continue;
            }
            if let Some(b) = &bodies {
                key.push(b[row].as_deref());
            }
            let i = *distinct.entry(key).or_insert_with(|| {
                firsts.push(row);
                firsts.len() - 1
            });
            of_row.push(Some(i));
        }
        let requests: Vec<Request> = firsts
            .iter()
            .filter_map(|&row| self.request(&inputs, bodies.as_deref(), row))
            .collect();
        let answers: Vec<Answer> = futures::stream::iter(requests)
            .map(|r| async move { self.answer(&r).await })
            .buffered(self.concurrency)
            .collect()
            .await;
        let values = gather(&of_row, &answers, self.on_error, &self.operator())?;
        typed(
            &values,
            &self.returns,
            &self.schema,
            self.on_error,
            &self.operator(),
        )
    }

    fn operator(&self) -> String {
        format!("$httpCall {}", self.shown)
    }

    /// The request of document `row`, or `None` if a placeholder has no value.
    fn request(
        &self,
        inputs: &[Texts<'_>],
        bodies: Option<&[Option<Vec<u8>>]>,
        row: usize,
    ) -> Option<Request> {
        let fill = |parts: &[Part], encode: bool| -> Option<String> {
            let mut s = String::new();
            for p in parts {
                match p {
                    Part::Text(t) => s.push_str(t),
                    Part::Input(i) => {
                        let v = inputs[*i].get(row)?;
                        let v = String::from_utf8_lossy(v);
                        if encode {
                            s.extend(percent_encoding::utf8_percent_encode(&v, SEGMENT));
                        } else {
                            s.push_str(&v);
                        }
                    }
                }
            }
            Some(s)
        };
        let url = format!("{}{}", self.base, fill(&self.url, true)?);
        let query = self
            .query
            .iter()
            .map(|(k, parts)| Some((k.clone(), fill(parts, false)?)))
            .collect::<Option<Vec<_>>>()?;
        let body = bodies.map(|b| b[row].clone().unwrap_or_else(|| b"null".to_vec()));
        Some(Request { url, query, body })
    }

    /// The value a request answers with: from the cache, else asked (with retries). Calls for
    /// one request that miss the cache at the same time (two partitions of a plan) are one.
    async fn answer(&self, r: &Request) -> Answer {
        if let Some(failed) = &self.failed
            && let Some(why) = failed.get(r).await
        {
            return Err(why);
        }
        let answer = self.asked(r).await;
        if let (Some(failed), Err(why)) = (&self.failed, &answer) {
            failed.insert(r.clone(), why.clone()).await;
        }
        answer
    }

    async fn asked(&self, r: &Request) -> Answer {
        match &self.cache {
            Some(cache) => cache
                .try_get_with(r.clone(), async { self.guarded(r).await.map(Arc::new) })
                .await
                .map_err(|e: Arc<String>| e.as_ref().clone()),
            None => self.guarded(r).await.map(Arc::new),
        }
    }

    /// Asks, unless the circuit breaker is open; tells the breaker how it went.
    async fn guarded(&self, r: &Request) -> std::result::Result<Value, String> {
        if let Some(b) = &self.breaker
            && !b.allow(Instant::now())
        {
            return Err(format!(
                "{}: not called, the circuit breaker is open after too many failures",
                r.url
            ));
        }
        let asked = self.ask(r).await;
        if let Some(b) = &self.breaker {
            b.record(asked.is_ok(), Instant::now());
        }
        asked
    }

    async fn ask(&self, r: &Request) -> std::result::Result<Value, String> {
        let mut wait = self.retry.backoff;
        let mut attempt = 1;
        loop {
            if let Some(bucket) = &self.bucket {
                bucket.until_ready().await;
            }
            let mut req = self
                .client
                .request(self.method.clone(), &r.url)
                .headers(self.headers.clone());
            if !r.query.is_empty() {
                req = req.query(&r.query);
            }
            if let Some(b) = &r.body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let (why, after) = match req.send().await {
                // An answer cut off mid-way (the server hung up) is worth another attempt.
                Ok(resp) if resp.status().is_success() => match resp.text().await {
                    Ok(text) => return Ok(self.value_of(&text)),
                    Err(e) => (
                        format!("{} (the answer was cut off: {})", r.url, without_url(&e)),
                        None,
                    ),
                },
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                    let why = format!("HTTP {status} from {}", r.url);
                    if !self.retry.on.contains(&status) {
                        return Err(why);
                    }
                    (why, after)
                }
                // Timeouts and lost connections are worth another attempt.
                Err(e) => (format!("{} ({})", r.url, without_url(&e)), None),
            };
            if attempt >= self.retry.attempts {
                return Err(format!("{why}, after {attempt} attempts"));
            }
            tokio::time::sleep(after.unwrap_or(wait)).await;
            wait = wait.mul_f64(self.retry.multiplier);
            attempt += 1;
        }
    }

    /// The answer's value at `responsePath` (JSON; text that is not JSON stays text).
    fn value_of(&self, text: &str) -> Value {
        let whole = serde_json::from_str::<Value>(text).unwrap_or(Value::String(text.into()));
        match &self.pointer {
            Some(p) => whole.pointer(p).cloned().unwrap_or(Value::Null),
            None => whole,
        }
    }
}

/// A request error's text without its URL (the caller names the URL once).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let inner = std::error::Error::source(e).map(|s| s.to_string());
    match inner {
        Some(s) => format!("{kind}: {s}"),
        None => kind.to_string(),
    }
}
