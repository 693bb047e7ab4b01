//! A PostgreSQL table or query as a streaming source: a snapshot of its rows, then — with a
//! `cursor` column (an id, an updated-at) — the rows whose cursor is past the last one read,
//! polled every `pollMs`, with the last cursor value in the checkpoint.
//!
//! Rows are read in cursor order, a page (a micro-batch) at a time, as JSON (`row_to_json`):
//! numbers, text and booleans as they are, `json`/`jsonb` columns as documents, timestamps
//! and dates as dates. The schema is declared, or inferred from the first rows.
//!
//! Without a cursor the source reads the query once and ends; its position is the count of
//! rows read, which a restart skips (`OFFSET`), so such a query needs an `ORDER BY` that
//! makes its order stable.

use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use deadpool_postgres::Pool;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_postgres::types::Type;

use super::{
    PgConnection, blocking, describe, is_time, pg_error, pool_error, quote_ident, quote_table,
};
use crate::connect::source::{Position, Rejected, Source, SourceBatch};
use crate::document::decode::{infer_schema, read_lines};
use crate::{Error, Result};

/// Rows read to infer a schema from.
const SAMPLE: usize = 1000;

/// The `source` object of a job reading PostgreSQL: `{"type": "postgres", …}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PostgresSourceConfig {
    /// A named connection of the job (resolved into `url` when the job loads).
    pub connection: Option<String>,
    /// `postgres://user:${PGPASSWORD}@host:port/db`.
    pub url: Option<String>,
    /// The table to read (`customers`, `schema.customers`) …
    pub from: Option<String>,
    /// … or a query.
    pub query: Option<String>,
    /// The column rows are read in the order of, and resumed after.
    pub cursor: Option<String>,
    /// With a cursor: keep polling for new rows (the default), or end once caught up.
    pub follow: Option<bool>,
    /// How often a caught-up source asks again (default 1 000 ms).
    pub poll_ms: Option<u64>,
    /// A declared document schema; inferred from the first rows when absent.
    pub schema: Option<Value>,
    /// The table name SQL uses (default `input`).
    pub table: Option<String>,
    /// The event time of each document, for windows.
    #[serde(rename = "timeField")]
    pub time_field: Option<Value>,
}

/// Where the source is.
#[derive(Debug, Clone, PartialEq)]
enum At {
    /// After the row whose cursor has this text (`None`: from the start).
    Cursor(Option<String>),
    /// After this many rows (no cursor).
    Rows(i64),
}

impl At {
    fn position(&self) -> Position {
        Position(match self {
            At::Cursor(c) => json!({ "cursor": c }),
            At::Rows(n) => json!({ "rows": n }),
        })
    }
}

/// The source.
pub struct PostgresSource {
    pool: Pool,
    schema: SchemaRef,
    declared: bool,
    at: At,
    /// Stop here: a replay's end or a logged batch's end.
    end: Option<At>,
    cut: Option<At>,
    follow: bool,
    poll: Duration,
    /// The page statement (`$1` after, `$2` up to, `$3` rows).
    statement: String,
    /// The columns whose values are dates.
    times: Vec<String>,
    done: bool,
    shown: String,
}

/// The statement reading a page of `from` (a parenthesised query), and the column types.
fn page_statement(from: &str, cursor: Option<&str>, cursor_type: Option<&str>) -> String {
    match (cursor, cursor_type) {
        (Some(c), Some(ty)) => {
            let c = quote_ident(c);
            format!(
                "SELECT row_to_json(t)::text, (t.{c})::text FROM {from} t \
                 WHERE ($1::text IS NULL OR t.{c} > $1::text::{ty}) \
                 AND ($2::text IS NULL OR t.{c} <= $2::text::{ty}) \
                 ORDER BY t.{c} LIMIT $3"
            )
        }
        _ => format!(
            "SELECT row_to_json(t)::text, NULL::text FROM {from} t \
             WHERE ($2::text IS NULL OR TRUE) OFFSET $1::text::int8 LIMIT $3"
        ),
    }
}

impl PostgresSource {
    /// Opens the source: asks the server for the columns (and, without a declared or
    /// checkpointed schema, a sample of rows to infer one from).
    pub fn open(
        config: &PostgresSourceConfig,
        checkpointed: Option<SchemaRef>,
        context: &str,
    ) -> Result<PostgresSource> {
        let url = config.url.as_deref().ok_or_else(|| {
            Error::config(
                context,
                "source: give a \"connection\" or a \"url\" (postgres://…)",
            )
        })?;
        let connection = PgConnection::new(url, "source.url", context)?;
        let from = match (&config.from, &config.query) {
            (Some(t), None) => quote_table(t),
            (None, Some(q)) => format!("({})", q.trim().trim_end_matches(';')),
            _ => {
                return Err(Error::config(
                    context,
                    "source: give exactly one of \"from\" (a table) or \"query\"",
                ));
            }
        };
        let declared = config
            .schema
            .as_ref()
            .map(|s| {
                crate::document::declared::parse_schema(s, context, "source.schema")
                    .map(std::sync::Arc::new)
            })
            .transpose()?;
        let cursor = config.cursor.clone();
        let sample_from = from.clone();
        let at = context.to_string();
        let need_sample = declared.is_none() && checkpointed.is_none();
        // The columns' types, and a sample when the schema must be inferred.
        let (columns, sample) = blocking(&connection, context, move |client| async move {
            let described = client
                .prepare(&format!("SELECT * FROM {sample_from} t LIMIT 0"))
                .await
                .map_err(|e| Error::config(&at, format!("source: {}", describe(&e))))?;
            let columns: Vec<(String, Type)> = described
                .columns()
                .iter()
                .map(|c| (c.name().to_string(), c.type_().clone()))
                .collect();
            let mut sample = Vec::new();
            if need_sample {
                let order = match &cursor {
                    Some(c) => format!(" ORDER BY t.{}", quote_ident(c)),
                    None => String::new(),
                };
                let rows = client
                    .query(
                        &format!(
                            "SELECT row_to_json(t)::text FROM {sample_from} t{order} LIMIT {SAMPLE}"
                        ),
                        &[],
                    )
                    .await
                    .map_err(|e| Error::config(&at, format!("source: {}", describe(&e))))?;
                sample = rows.iter().map(|r| r.get::<_, String>(0)).collect();
            }
            Ok((columns, sample))
        })?;
        let times: Vec<String> = columns
            .iter()
            .filter(|(_, t)| is_time(t))
            .map(|(n, _)| n.clone())
            .collect();
        let cursor_type = match &config.cursor {
            Some(c) => Some(
                columns
                    .iter()
                    .find(|(n, _)| n == c)
                    .map(|(_, t)| format!("{}.{}", quote_ident(t.schema()), quote_ident(t.name())))
                    .ok_or_else(|| {
                        Error::config(
                            context,
                            format!("source.cursor: the rows have no column {c:?}"),
                        )
                    })?,
            ),
            None => None,
        };
        let is_declared = declared.is_some();
        let schema = match declared.or(checkpointed) {
            Some(s) => s,
            None => {
                let mut text = Vec::new();
                for row in &sample {
                    text.extend_from_slice(document_line(row, &times).as_bytes());
                    text.push(b'\n');
                }
                if text.is_empty() {
                    return Err(Error::input(
                        connection.shown().to_string(),
                        "source: no rows to infer a schema from: declare the source's \"schema\"",
                    ));
                }
                infer_schema(&text, SAMPLE, 1)?
            }
        };
        let has_cursor = config.cursor.is_some();
        Ok(PostgresSource {
            pool: connection.pool(1, context)?,
            schema,
            declared: is_declared,
            at: if has_cursor {
                At::Cursor(None)
            } else {
                At::Rows(0)
            },
            end: None,
            cut: None,
            follow: has_cursor && config.follow.unwrap_or(true),
            poll: Duration::from_millis(config.poll_ms.unwrap_or(1000)),
            statement: page_statement(&from, config.cursor.as_deref(), cursor_type.as_deref()),
            times,
            done: false,
            shown: connection.shown().to_string(),
        })
    }

    fn parse_at(&self, p: &Position) -> Result<At> {
        let bad = || {
            Error::input(
                self.shown.clone(),
                format!("not a position of this source: {}", p.0),
            )
        };
        match (&self.at, p.0.get("cursor"), p.0.get("rows")) {
            (At::Cursor(_), Some(Value::Null), _) => Ok(At::Cursor(None)),
            (At::Cursor(_), Some(Value::String(c)), _) => Ok(At::Cursor(Some(c.clone()))),
            (At::Rows(_), _, Some(n)) => n.as_i64().map(At::Rows).ok_or_else(bad),
            _ => Err(bad()),
        }
    }

    /// The stop in force: the nearer of a replay's end and a logged batch's end.
    fn stop(&self) -> Option<&At> {
        self.cut.as_ref().or(self.end.as_ref())
    }
}

/// A row's JSON as a document line: the date columns' text as `{"$date": …}`.
fn document_line(row: &str, times: &[String]) -> String {
    if times.is_empty() {
        return row.to_string();
    }
    let Ok(Value::Object(mut doc)) = serde_json::from_str::<Value>(row) else {
        return row.to_string();
    };
    for t in times {
        if let Some(Value::String(s)) = doc.get(t) {
            // `timestamp` (no zone) and `date` are read as UTC.
            let text = match s.len() {
                10 => format!("{s}T00:00:00Z"),
                _ if s.ends_with('Z') || s.get(10..).is_some_and(|r| r.contains(['+', '-'])) => {
                    s.clone()
                }
                _ => format!("{s}Z"),
            };
            let mut date = Map::new();
            date.insert("$date".into(), Value::String(text));
            doc.insert(t.clone(), Value::Object(date));
        }
    }
    Value::Object(doc).to_string()
}

#[async_trait]
impl Source for PostgresSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn position(&self) -> Position {
        self.at.position()
    }

    fn seek(&mut self, position: &Position) -> Result<()> {
        self.at = self.parse_at(position)?;
        self.done = false;
        Ok(())
    }

    fn resume_schema(&mut self, schema: SchemaRef) {
        if !self.declared {
            self.schema = schema;
        }
    }

    fn end_at(&mut self, end: &Position) -> Result<()> {
        self.end = Some(self.parse_at(end)?);
        Ok(())
    }

    fn bound(&mut self, end: Option<&Position>) -> Result<()> {
        self.cut = end.map(|e| self.parse_at(e)).transpose()?;
        Ok(())
    }

    async fn next_batch(&mut self, max_rows: usize) -> Result<Option<SourceBatch>> {
        if self.done {
            return Ok(None);
        }
        let stop = self.stop().cloned();
        if stop.as_ref() == Some(&self.at) {
            // At a replay's end the source ends; at a logged batch's end it waits to be let on.
            if self.cut.is_none() {
                return Ok(None);
            }
            return Ok(Some(self.empty()));
        }
        let what = format!("reading {}", self.shown);
        let client = self.pool.get().await.map_err(|e| pool_error(&what, e))?;
        let (after, upto): (Option<String>, Option<String>) = match (&self.at, &stop) {
            (At::Cursor(c), s) => (
                c.clone(),
                match s {
                    Some(At::Cursor(e)) => e.clone(),
                    _ => None,
                },
            ),
            (At::Rows(n), _) => (Some(n.to_string()), None),
        };
        let mut limit = max_rows.max(1) as i64;
        if let (At::Rows(n), Some(At::Rows(e))) = (&self.at, &stop) {
            limit = limit.min(e - n);
        }
        let statement = client
            .prepare_cached(&self.statement)
            .await
            .map_err(|e| pg_error(&what, e))?;
        let rows = client
            .query(&statement, &[&after, &upto, &limit])
            .await
            .map_err(|e| pg_error(&what, e))?;
        if rows.is_empty() {
            if !self.follow || stop.is_some() && self.cut.is_none() {
                self.done = true;
                return Ok(None);
            }
            tokio::time::sleep(self.poll).await;
            return Ok(Some(self.empty()));
        }
        let mut text = Vec::new();
        let mut cursors = Vec::with_capacity(rows.len());
        for row in &rows {
            text.extend_from_slice(document_line(row.get(0), &self.times).as_bytes());
            text.push(b'\n');
            cursors.push(row.get::<_, Option<String>>(1));
        }
        let read = read_lines(&text, &self.schema, false, rows.len().max(1), false)?;
        let position_of = |i: usize| match &self.at {
            At::Cursor(_) => json!({ "cursor": cursors[i] }),
            At::Rows(n) => json!({ "rows": n + i as i64 + 1 }),
        };
        let rejected = read
            .invalid
            .iter()
            .map(|bad| Rejected {
                position: Position(position_of(bad.line)),
                reason: bad.reason.clone(),
                raw: String::from_utf8_lossy(&text[bad.offset..bad.offset + bad.len]).into_owned(),
            })
            .collect();
        let batch = concat_batches(&self.schema, &read.batches)?;
        self.at = match &self.at {
            At::Cursor(_) => At::Cursor(cursors.last().cloned().flatten()),
            At::Rows(n) => At::Rows(n + rows.len() as i64),
        };
        Ok(Some(SourceBatch {
            batch,
            position: self.position(),
            rejected,
            partitions: None,
        }))
    }
}

impl PostgresSource {
    fn empty(&self) -> SourceBatch {
        SourceBatch {
            batch: RecordBatch::new_empty(self.schema.clone()),
            position: self.position(),
            rejected: Vec::new(),
            partitions: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_become_extended_json() {
        let times = vec!["at".to_string(), "d".to_string(), "naive".to_string()];
        let line = document_line(
            r#"{"id":1,"at":"2026-01-02T03:04:05+00:00","d":"2026-01-02","naive":"2026-01-02T03:04:05.5"}"#,
            &times,
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["at"], json!({"$date": "2026-01-02T03:04:05+00:00"}));
        assert_eq!(v["d"], json!({"$date": "2026-01-02T00:00:00Z"}));
        assert_eq!(v["naive"], json!({"$date": "2026-01-02T03:04:05.5Z"}));
    }
}
