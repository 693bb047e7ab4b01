//! The DSL's form of the enrich operators: `{"$httpCall": {…options…}}` inside an
//! expression. Parsing checks the options and finds the expressions a call is made from — the
//! `{{field}}` placeholders of its URL and query, and its `body` — which the planner passes to
//! the operator's UDF (`enrich::http_call`) as arguments.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::expression::Expression;
use super::path::{FieldPath, JsonPath};
use crate::Result;

/// An enrich operator in an expression.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichCall {
    pub options: HttpCallOptions,
    /// The `{{path}}` placeholders' fields, in order of first appearance, then the body.
    pub inputs: Vec<Expression>,
    /// The placeholders' paths as written (`customerId`, `a.b`), in the same order.
    pub placeholders: Vec<String>,
    pub path: JsonPath,
}

/// `$httpCall`'s options (`docs/enrich.md`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpCallOptions {
    /// A named connection of the job (resolved into `baseUrl` and `headers` when it loads).
    pub connection: Option<String>,
    pub base_url: Option<String>,
    /// The URL (after `baseUrl`), with `{{path}}` placeholders filled from the document,
    /// URL-encoded.
    pub url: String,
    /// `GET` by default, `POST` when there is a body.
    pub method: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters; values may hold placeholders.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// An expression: the request's JSON body.
    pub body: Option<Value>,
    /// A JSON Pointer into the response (`/name`); the whole response by default.
    pub response_path: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub retry: Option<RetryOptions>,
    pub cache: Option<CacheOptions>,
    #[serde(default)]
    pub on_error: OnError,
    pub max_concurrency: Option<usize>,
    /// The result's type, as a source schema declares types (`"string"`, `"long"`,
    /// `{"tier": "string"}`); `"string"` by default.
    pub returns: Option<Value>,
    pub circuit_breaker: Option<CircuitBreakerOptions>,
    /// Requests per second, shared by every call site of the same connection.
    pub rate_limit: Option<RateLimitOptions>,
}

/// When a call site stops calling for a while.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CircuitBreakerOptions {
    /// The share of failed calls (after retries) that opens the breaker (default 0.5).
    pub failure_rate: Option<f64>,
    /// Calls in the window before it judges (default 10).
    pub minimum_calls: Option<u32>,
    /// The window calls are counted in (default 10 000 ms).
    pub window_ms: Option<u64>,
    /// How long it stays open (default 5 000 ms).
    pub open_ms: Option<u64>,
    /// Trial calls once the wait is over (default 1).
    pub half_open_calls: Option<u32>,
}

/// A token bucket: `perSecond` requests a second, bursts of up to `burst` (default
/// `perSecond`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitOptions {
    pub per_second: u32,
    pub burst: Option<u32>,
}

/// How failed requests are retried.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryOptions {
    pub max_attempts: Option<u32>,
    pub backoff_ms: Option<u64>,
    pub multiplier: Option<f64>,
    /// Statuses worth another attempt (default 429, 500, 502, 503, 504); timeouts and lost
    /// connections always are.
    pub retry_on: Option<Vec<u16>>,
}

/// An LRU cache of answers, per call site.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CacheOptions {
    pub max_entries: u64,
    pub ttl_ms: Option<u64>,
}

/// What a document gets when its call fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnError {
    /// `null`, and the stream goes on.
    #[default]
    Null,
    /// The micro-batch fails (then the job's error policy decides).
    Fail,
    /// The document goes to the dead-letter sink.
    DeadLetter,
}

/// The `{{path}}` placeholders of `text`, as (byte range, path).
pub fn placeholders_in(text: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find("{{") {
        let start = from + open;
        let Some(close) = text[start + 2..].find("}}") else {
            break;
        };
        let end = start + 2 + close + 2;
        out.push((start..end, text[start + 2..end - 2].trim().to_string()));
        from = end;
    }
    out
}

impl EnrichCall {
    /// Parses `{"$httpCall": operand}` found at `at`.
    pub fn parse_http_call(operand: &Value, at: &JsonPath) -> Result<EnrichCall> {
        let options: HttpCallOptions =
            serde_json::from_value(operand.clone()).map_err(|e| at.err(format!("{e}")))?;
        if options
            .rate_limit
            .as_ref()
            .is_some_and(|r| r.per_second == 0)
        {
            return Err(at.key("rateLimit").err("perSecond must be at least 1"));
        }
        if options.on_error == OnError::DeadLetter {
            return Err(at
                .key("onError")
                .err("\"deadLetter\" is not supported yet: use \"null\" or \"fail\""));
        }
        if options.connection.is_some() && options.base_url.is_none() {
            return Err(at
                .key("connection")
                .err("a named connection needs the job file that declares it (\"connections\")"));
        }
        let mut placeholders: Vec<String> = Vec::new();
        for text in std::iter::once(&options.url).chain(options.query.values()) {
            for (_, p) in placeholders_in(text) {
                if !placeholders.contains(&p) {
                    placeholders.push(p);
                }
            }
        }
        let mut inputs = placeholders
            .iter()
            .map(|p| FieldPath::parse(p, &at.key("url")).map(Expression::Field))
            .collect::<Result<Vec<_>>>()?;
        if let Some(body) = &options.body {
            inputs.push(Expression::parse(body, &at.key("body"))?);
        }
        Ok(EnrichCall {
            options,
            inputs,
            placeholders,
            path: at.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_are_found_in_the_url_and_the_query() {
        let c = EnrichCall::parse_http_call(
            &json!({"url": "http://h/c/{{customerId}}/{{ a.b }}", "query": {"q": "{{customerId}}", "r": "{{x}}"},
                    "body": {"n": "$n"}}),
            &JsonPath::root(),
        )
        .unwrap();
        assert_eq!(c.placeholders, vec!["customerId", "a.b", "x"]);
        assert_eq!(c.inputs.len(), 4);
    }

    #[test]
    fn bad_options_name_their_path() {
        let at = JsonPath::root().key("$httpCall");
        let err = EnrichCall::parse_http_call(&json!({"url": "http://h", "retries": 3}), &at)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("pipeline.$httpCall: unknown field `retries`"),
            "{err}"
        );
        let err = EnrichCall::parse_http_call(
            &json!({"url": "http://h", "rateLimit": {"perSecond": 0}}),
            &at,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("rateLimit: perSecond must be at least 1"),
            "{err}"
        );
    }
}
