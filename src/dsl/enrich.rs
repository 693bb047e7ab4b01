//! The DSL's form of the enrich operators: `{"$httpCall": {…options…}}` and
//! `{"$sqlQuery": {…options…}}` inside an expression. Parsing checks the options and finds
//! the expressions a call is made from — the `{{field}}` placeholders of a URL and query and
//! a `body`, or a query's `params` — which the planner passes to the operator's UDF
//! (`enrich::http_call`, `enrich::sql_query`) as arguments.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::expression::Expression;
use super::path::{FieldPath, JsonPath};
use crate::Result;

/// An enrich operator in an expression.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichCall {
    pub operator: EnrichOperator,
    /// `$httpCall`: the `{{path}}` placeholders' fields, in order of first appearance, then
    /// the body. `$sqlQuery`: the params, in order.
    pub inputs: Vec<Expression>,
    /// The placeholders' paths as written (`customerId`, `a.b`), in the same order.
    pub placeholders: Vec<String>,
    pub path: JsonPath,
}

/// Which operator, with its options.
#[derive(Debug, Clone, PartialEq)]
pub enum EnrichOperator {
    Http(HttpCallOptions),
    Sql(SqlQueryOptions),
}

/// `$sqlQuery`'s options (`docs/enrich.md`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SqlQueryOptions {
    /// A named connection of the job (resolved into `url` when it loads).
    pub connection: Option<String>,
    /// `postgres://user:${PGPASSWORD}@host:port/db`.
    pub url: Option<String>,
    /// The query, with parameters `$1` … `$n`.
    pub query: String,
    /// The parameters' expressions, in order.
    #[serde(default)]
    pub params: Vec<Value>,
    /// One row expected: the answer is that row as a document (null for none; more than one
    /// is the call's failure).
    #[serde(default)]
    pub expect_single: bool,
    /// `"document"`, `"value"` (the single row's single column) or `"array"` (every row, as
    /// documents); `"document"` with `expectSingle`, else `"array"`.
    pub result: Option<SqlResult>,
    /// The answer's type, as a source schema declares types; by default from the columns the
    /// server says the query returns.
    pub returns: Option<Value>,
    pub timeout_ms: Option<u64>,
    pub retry: Option<RetryOptions>,
    pub cache: Option<CacheOptions>,
    #[serde(default)]
    pub on_error: OnError,
    /// Queries in flight at once, and the size of the call site's connection pool.
    pub max_concurrency: Option<usize>,
    pub circuit_breaker: Option<CircuitBreakerOptions>,
}

/// The shape of a `$sqlQuery` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SqlResult {
    Document,
    Value,
    Array,
}

impl SqlQueryOptions {
    /// The answer's shape.
    pub fn shape(&self) -> SqlResult {
        match (self.result, self.expect_single) {
            (Some(r), _) => r,
            (None, true) => SqlResult::Document,
            (None, false) => SqlResult::Array,
        }
    }
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
    /// The document goes to the dead-letter sink (a streaming job with one; elsewhere the
    /// run fails as under `Fail`).
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
            operator: EnrichOperator::Http(options),
            inputs,
            placeholders,
            path: at.clone(),
        })
    }

    /// Parses `{"$sqlQuery": operand}` found at `at`.
    pub fn parse_sql_query(operand: &Value, at: &JsonPath) -> Result<EnrichCall> {
        let options: SqlQueryOptions =
            serde_json::from_value(operand.clone()).map_err(|e| at.err(format!("{e}")))?;
        check_sql_query(&options, at)?;
        let inputs = options
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| Expression::parse(p, &at.key("params").index(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(EnrichCall {
            operator: EnrichOperator::Sql(options),
            inputs,
            placeholders: Vec::new(),
            path: at.clone(),
        })
    }
}

/// The checks of `$sqlQuery`'s options that need no server (the DSL's and SQL's spelling).
pub fn check_sql_query(options: &SqlQueryOptions, at: &JsonPath) -> Result<()> {
    match (&options.connection, &options.url) {
        (Some(_), None) => {
            return Err(at
                .key("connection")
                .err("a named connection needs the job file that declares it (\"connections\")"));
        }
        (None, None) => {
            return Err(at.err("give a \"connection\" or a \"url\" (postgres://…)"));
        }
        _ => {}
    }
    let wanted = highest_parameter(&options.query);
    if wanted != options.params.len() {
        return Err(at.key("params").err(format!(
            "the query uses {wanted} parameter(s) ($1 … ${wanted}) but {} are given",
            options.params.len()
        )));
    }
    if options.expect_single && options.shape() == SqlResult::Array {
        return Err(at
            .key("result")
            .err("\"array\" contradicts \"expectSingle\": true"));
    }
    Ok(())
}

/// The highest `$n` parameter of a SQL text (outside quotes, comments and dollar quoting).
pub fn highest_parameter(sql: &str) -> usize {
    sql_parameters(sql)
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
}

/// Each `$n` parameter of a SQL text, as (byte range, n), skipping string literals, quoted
/// identifiers, comments and dollar-quoted strings.
pub fn sql_parameters(sql: &str) -> Vec<(std::ops::Range<usize>, usize)> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        // A doubled quote stays inside.
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            }
            b'$' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let start = i;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if let Ok(n) = sql[start + 1..i].parse() {
                    out.push((start..i, n));
                }
            }
            b'$' => {
                // `$tag$ … $tag$` (or `$$ … $$`).
                let tag_end = sql[i + 1..].find('$').map(|e| i + 1 + e).filter(|&e| {
                    sql[i + 1..e]
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_')
                });
                match tag_end {
                    Some(e) => {
                        let tag = &sql[i..=e];
                        i = sql[e + 1..]
                            .find(tag)
                            .map_or(b.len(), |c| e + 1 + c + tag.len());
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    out
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
    fn sql_parameters_skip_quotes_comments_and_dollar_quoting() {
        let q = "SELECT '$9', \"$8\", $$ $7 $$, $t$ $6 $t$ -- $5\n /* $4 */ FROM c WHERE a = $1 AND b = $12";
        let found: Vec<usize> = sql_parameters(q).into_iter().map(|(_, n)| n).collect();
        assert_eq!(found, vec![1, 12]);
        assert_eq!(highest_parameter("SELECT 1"), 0);
    }

    #[test]
    fn sql_query_options_are_checked() {
        let at = JsonPath::root().key("$sqlQuery");
        let err = EnrichCall::parse_sql_query(
            &json!({"url": "postgres://h/db", "query": "SELECT $1, $2", "params": ["$a"]}),
            &at,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("uses 2 parameter(s)"), "{err}");
        let err = EnrichCall::parse_sql_query(&json!({"query": "SELECT 1"}), &at)
            .unwrap_err()
            .to_string();
        assert!(err.contains("give a \"connection\" or a \"url\""), "{err}");
        let ok = EnrichCall::parse_sql_query(
            &json!({"url": "postgres://h/db", "query": "SELECT t FROM c WHERE id = $1",
                    "params": [{"$toString": "$id"}], "expectSingle": true}),
            &at,
        )
        .unwrap();
        assert_eq!(ok.inputs.len(), 1);
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
