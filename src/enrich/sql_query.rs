//! `$sqlQuery`: a PostgreSQL query per document, evaluated as an async scalar UDF over a
//! whole micro-batch. Per batch the documents' parameter tuples are de-duplicated, those the
//! call site's cache holds are answered from it, and the rest go to the server as one
//! statement per chunk of tuples — the user's query run once per tuple inside a `LATERAL`
//! subquery over `unnest` of the tuples — so a batch of a thousand distinct customers is one
//! round trip, not a thousand, and each tuple still gets exactly the rows its own query
//! would (`LIMIT`, aggregates and all).
//!
//! The rows come back as JSON (`json_agg`), shaped into a document, a value or an array, and
//! are read as a column of the answer's type: `returns` when given, else the type of the
//! columns the server says the query has (asked once, when the call is planned).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::ScalarUDF;
use deadpool_postgres::Pool;
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio_postgres::types::Type;

use super::breaker::Breaker;
use super::lookup::{
    Answer, Calls, Retry, Texts, cache, call_site, failures, gather, returns_schema, typed,
};
use crate::connect::postgres::{
    PgConnection, blocking, declared_type, describe, is_transient, pool_error,
};
use crate::dsl::enrich::{EnrichCall, OnError, SqlQueryOptions, SqlResult, sql_parameters};
use crate::{Error, Result};

/// Queries in flight at once per call site (and its pool's size), unless `maxConcurrency`
/// says otherwise.
const DEFAULT_CONCURRENCY: usize = 4;
/// Parameter tuples sent in one statement.
const CHUNK: usize = 1000;
/// A statement's whole time, unless `timeoutMs` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A document's parameters, as text (`None`: SQL NULL).
type Key = Vec<Option<String>>;

/// What a call site holds.
#[derive(Debug)]
struct Site {
    pool: Pool,
    /// The query as written, without a trailing `;`.
    query: String,
    params: usize,
    /// The statement that answers a chunk of tuples (made once the parameters' types are
    /// known).
    batched: tokio::sync::OnceCell<String>,
    shape: SqlResult,
    retry: Retry,
    timeout: Duration,
    cache: Option<moka::future::Cache<Key, Arc<Value>>>,
    /// Tuples that failed lately (`onError: "deadLetter"`).
    failed: Option<moka::future::Cache<Key, String>>,
    breaker: Option<Breaker>,
    on_error: OnError,
    concurrency: usize,
    returns: DataType,
    schema: SchemaRef,
    /// The server, without a password, for messages.
    shown: String,
}

/// The UDF for `call` (whose options are `o`); its arguments are the params, compiled.
pub fn udf(call: &EnrichCall, o: &SqlQueryOptions) -> Result<(ScalarUDF, DataType)> {
    let at = &call.path;
    let context = at.to_string();
    let url = o
        .url
        .as_deref()
        .ok_or_else(|| at.err("give a \"connection\" or a \"url\" (postgres://…)"))?;
    let connection = PgConnection::new(url, &format!("{at}.url"), &context)?;
    let concurrency = o.max_concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1);
    let pool = connection.pool(concurrency, &context)?;
    let query = o.query.trim().trim_end_matches(';').trim_end().to_string();
    let shape = o.shape();
    let returns_json = match &o.returns {
        Some(r) => r.clone(),
        None => returns_of(&connection, &query, shape, at)?,
    };
    let (returns, schema) = returns_schema(&returns_json, at)?;
    let cache = cache(o.cache.as_ref());
    let site = Site {
        pool,
        params: o.params.len(),
        batched: tokio::sync::OnceCell::new(),
        shape,
        retry: Retry::new(o.retry.as_ref()),
        timeout: o.timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
        cache,
        failed: (o.on_error == OnError::DeadLetter).then(failures),
        breaker: o.circuit_breaker.as_ref().map(Breaker::new),
        on_error: o.on_error,
        concurrency,
        returns: returns.clone(),
        schema,
        shown: connection.shown().to_string(),
        query,
    };
    let name = format!("sql_query({})", site.query);
    Ok((call_site(name, returns.clone(), site), returns))
}

/// The declared type of the query's answers, from the columns the server says it returns.
fn returns_of(
    connection: &PgConnection,
    query: &str,
    shape: SqlResult,
    at: &crate::dsl::JsonPath,
) -> Result<Value> {
    let columns = describe_query(connection, query, &at.to_string())?;
    let mut doc = Map::new();
    for (name, ty) in &columns {
        // A json column's documents have no one type: they are read as their JSON text
        // unless `returns` says otherwise.
        doc.insert(
            name.clone(),
            Value::String(declared_type(ty).unwrap_or("string").into()),
        );
    }
    match shape {
        SqlResult::Value => match columns.as_slice() {
            [(_, ty)] => Ok(Value::String(declared_type(ty).unwrap_or("string").into())),
            _ => Err(at.key("result").err(format!(
                "\"value\" needs a query of one column, this one has {}",
                columns.len()
            ))),
        },
        _ if doc.is_empty() => Err(at.key("query").err("the query returns no columns")),
        SqlResult::Document => Ok(Value::Object(doc)),
        SqlResult::Array => Ok(Value::Array(vec![Value::Object(doc)])),
    }
}

/// The (name, type) of each column `query` returns, asked of the server.
fn describe_query(
    connection: &PgConnection,
    query: &str,
    context: &str,
) -> Result<Vec<(String, Type)>> {
    let query = query.to_string();
    let at = context.to_string();
    blocking(connection, context, move |client| async move {
        let statement = client
            .prepare(&query)
            .await
            .map_err(|e| Error::config(&at, format!("the query: {}", describe(&e))))?;
        Ok(statement
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), c.type_().clone()))
            .collect())
    })
}

/// A parameter's text: a date's `{"$date": …}` becomes the date's text, which PostgreSQL
/// casts to its date types.
fn parameter_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.starts_with("{\"$date\":")
        && let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&text)
        && let Some(Value::String(d)) = m.get("$date")
    {
        return d.clone();
    }
    text.into_owned()
}

#[async_trait]
impl Calls for Site {
    async fn call(&self, arrays: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        self.answers(arrays, rows).await
    }
}

impl Site {
    /// The answers for `rows` documents whose parameters are `arrays`.
    async fn answers(&self, arrays: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let params = arrays[..self.params]
            .iter()
            .map(Texts::of)
            .collect::<Result<Vec<_>>>()?;
        // Documents with the same parameters are looked up once; only the first of them
        // makes the parameters' text.
        let mut distinct: HashMap<Vec<Option<&[u8]>>, usize> = HashMap::new();
        let mut keys: Vec<Key> = Vec::new();
        let mut of_row: Vec<Option<usize>> = Vec::with_capacity(rows);
        for row in 0..rows {
            let raw: Vec<Option<&[u8]>> = params.iter().map(|p| p.get(row)).collect();
            let i = *distinct.entry(raw).or_insert_with_key(|raw| {
                keys.push(raw.iter().map(|v| v.map(parameter_text)).collect());
                keys.len() - 1
            });
            of_row.push(Some(i));
        }
        let mut answers: Vec<Option<Answer>> = vec![None; keys.len()];
        let mut missing: Vec<usize> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if let Some(failed) = &self.failed
                && let Some(why) = failed.get(key).await
            {
                answers[i] = Some(Err(why));
                continue;
            }
            match &self.cache {
                Some(cache) => match cache.get(key).await {
                    Some(v) => answers[i] = Some(Ok(v)),
                    None => missing.push(i),
                },
                None => missing.push(i),
            }
        }
        let chunks: Vec<Vec<usize>> = missing.chunks(CHUNK).map(<[usize]>::to_vec).collect();
        let keys = &keys;
        let asked: Vec<(Vec<usize>, Vec<Answer>)> = futures::stream::iter(chunks)
            .map(|chunk| async move {
                let tuples: Vec<&Key> = chunk.iter().map(|&i| &keys[i]).collect();
                let got = self.guarded(&tuples).await;
                (chunk, got)
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        for (chunk, got) in asked {
            for (i, answer) in chunk.into_iter().zip(got) {
                match (&self.cache, &self.failed, &answer) {
                    (Some(cache), _, Ok(v)) => cache.insert(keys[i].clone(), v.clone()).await,
                    (_, Some(failed), Err(why)) => {
                        failed.insert(keys[i].clone(), why.clone()).await
                    }
                    _ => {}
                }
                answers[i] = Some(answer);
            }
        }
        let answers: Vec<Answer> = answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err("not asked".into())))
            .collect();
        let operator = format!("$sqlQuery on {}", self.shown);
        let values = gather(&of_row, &answers, self.on_error, &operator)?;
        typed(
            &values,
            &self.returns,
            &self.schema,
            self.on_error,
            &operator,
        )
    }

    /// Asks for a chunk of tuples, unless the circuit breaker is open; tells the breaker
    /// how it went (one statement, one call).
    async fn guarded(&self, tuples: &[&Key]) -> Vec<Answer> {
        if let Some(b) = &self.breaker
            && !b.allow(Instant::now())
        {
            let why = format!(
                "{}: not queried, the circuit breaker is open after too many failures",
                self.shown
            );
            return vec![Err(why); tuples.len()];
        }
        let asked = self.ask(tuples).await;
        if let Some(b) = &self.breaker {
            b.record(asked.is_ok(), Instant::now());
        }
        match asked {
            Ok(answers) => answers,
            Err(why) => vec![Err(why); tuples.len()],
        }
    }

    /// Runs the chunk's statement, retrying lost connections and other transient failures.
    async fn ask(&self, tuples: &[&Key]) -> std::result::Result<Vec<Answer>, String> {
        let mut attempt = 1;
        loop {
            let why = match tokio::time::timeout(self.timeout, self.run(tuples)).await {
                Ok(Ok(rows)) => return Ok(rows),
                Ok(Err((why, false))) => return Err(why),
                Ok(Err((why, true))) => why,
                Err(_) => format!("{}: no answer within {:?}", self.shown, self.timeout),
            };
            if attempt >= self.retry.attempts {
                return Err(format!("{why}, after {attempt} attempts"));
            }
            tokio::time::sleep(self.retry.wait(attempt)).await;
            attempt += 1;
        }
    }

    /// One try: the answers, or why not and whether another try may help.
    async fn run(&self, tuples: &[&Key]) -> std::result::Result<Vec<Answer>, (String, bool)> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| (pool_error(&self.shown, e).to_string(), true))?;
        let failed = |e: tokio_postgres::Error| {
            (
                format!("{}: {}", self.shown, describe(&e)),
                is_transient(&e),
            )
        };
        let batched = self
            .batched
            .get_or_try_init(|| async {
                let statement = client.prepare(&self.query).await.map_err(failed)?;
                Ok::<_, (String, bool)>(batched_query(&self.query, statement.params()))
            })
            .await?;
        let statement = client.prepare_cached(batched).await.map_err(failed)?;
        let columns: Vec<Vec<Option<String>>> = (0..self.params)
            .map(|p| tuples.iter().map(|t| t[p].clone()).collect())
            .collect();
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = match self.params {
            // With no parameters, the count of tuples (one) still drives `generate_series`.
            0 => vec![],
            _ => columns
                .iter()
                .map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect(),
        };
        let rows = client.query(&statement, &params).await.map_err(failed)?;
        let mut answers: Vec<Answer> = vec![Ok(Arc::new(Value::Null)); tuples.len()];
        if self.params == 0 {
            let text: &str = rows.first().map(|r| r.get(1)).unwrap_or("[]");
            let answer = self.shaped(text);
            answers.iter_mut().for_each(|a| *a = answer.clone());
            return Ok(answers);
        }
        for row in rows {
            let i: i64 = row.get(0);
            let text: &str = row.get(1);
            if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| answers.get_mut(i)) {
                *slot = self.shaped(text);
            }
        }
        Ok(answers)
    }

    /// A tuple's rows (a JSON array of documents) in the answer's shape.
    fn shaped(&self, rows: &str) -> Answer {
        let rows: Vec<Value> = serde_json::from_str(rows).map_err(|e| e.to_string())?;
        let single = || match rows.len() {
            0 => Ok(None),
            1 => Ok(rows.first().cloned()),
            n => Err(format!(
                "expected at most one row (\"expectSingle\"), the query returned {n}"
            )),
        };
        let value = match self.shape {
            SqlResult::Array => Value::Array(rows.clone()),
            SqlResult::Document => single()?.unwrap_or(Value::Null),
            SqlResult::Value => match single()? {
                None => Value::Null,
                Some(Value::Object(m)) if m.len() == 1 => {
                    m.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null)
                }
                Some(_) => {
                    return Err("\"value\" needs a query of one column".into());
                }
            },
        };
        Ok(Arc::new(value))
    }
}

/// The statement answering many tuples at once: `query` run for each tuple of the text
/// arrays `$1` … `$n` (one per parameter, cast back to the parameter's type), its rows
/// gathered as a JSON array, one answer row per tuple, numbered from 1.
fn batched_query(query: &str, types: &[Type]) -> String {
    let mut body = String::with_capacity(query.len() + 16);
    let mut at = 0;
    for (range, n) in sql_parameters(query) {
        body.push_str(&query[at..range.start]);
        let ty = types.get(n - 1).map_or("text".to_string(), type_name);
        body.push_str(&format!("(k.p{n}::{ty})"));
        at = range.end;
    }
    body.push_str(&query[at..]);
    let answer = format!("(SELECT coalesce(json_agg(s), '[]'::json) FROM ({body}) s)::text");
    if types.is_empty() {
        return format!("SELECT 1::int8, {answer}");
    }
    let arrays: Vec<String> = (1..=types.len()).map(|n| format!("${n}::text[]")).collect();
    let names: Vec<String> = (1..=types.len()).map(|n| format!("p{n}")).collect();
    format!(
        "SELECT k.i, {answer} FROM unnest({}) WITH ORDINALITY AS k({}, i) ORDER BY k.i",
        arrays.join(", "),
        names.join(", ")
    )
}

/// A type's name as a cast target (`"pg_catalog"."int8"`, `"pg_catalog"."int4"[]`).
fn type_name(ty: &Type) -> String {
    let quoted = |t: &Type| {
        format!(
            "{}.{}",
            crate::connect::postgres::quote_ident(t.schema()),
            crate::connect::postgres::quote_ident(t.name())
        )
    };
    match ty.kind() {
        tokio_postgres::types::Kind::Array(inner) => format!("{}[]", quoted(inner)),
        _ => quoted(ty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batched_statement_runs_the_query_per_tuple() {
        let q = batched_query(
            "SELECT tier FROM customers WHERE id = $1 AND region = $2 LIMIT 1",
            &[Type::INT8, Type::TEXT],
        );
        assert_eq!(
            q,
            "SELECT k.i, (SELECT coalesce(json_agg(s), '[]'::json) FROM (SELECT tier FROM customers \
             WHERE id = (k.p1::\"pg_catalog\".\"int8\") AND region = (k.p2::\"pg_catalog\".\"text\") LIMIT 1) s)::text \
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(p1, p2, i) ORDER BY k.i"
        );
        assert_eq!(
            parameter_text(br#"{"$date":"2026-01-01T00:00:00.000Z"}"#),
            "2026-01-01T00:00:00.000Z"
        );
        assert_eq!(parameter_text(b"42"), "42");
    }
}
