//! A PostgreSQL table as a streaming sink, exactly once.
//!
//! Each micro-batch's documents become rows in one transaction: one column per top-level
//! field, named exactly as the field (quoted: `"orderCount"`, `"_id"`), nested values as
//! `jsonb`. The rows travel as one JSON parameter that the server unpacks with
//! `jsonb_to_recordset` into the table's own column types, so a batch is one round trip.
//! `"mode": "upsert"` makes it `INSERT … ON CONFLICT (keyColumns) DO UPDATE` (keys `_id` by
//! default, which is how a continuous `$group`'s updates land: one row per group, kept
//! current); within a batch the last document of a key wins.
//!
//! Exactly once: the same transaction records the micro-batch's number in
//! `fluxion_sink_progress` (job, table) — the marker. The runtime logs each batch's input
//! before writing it and, after a crash, forms the unfinished batches again; the sink reads
//! the marker and skips the batches the table already holds.

use std::collections::HashMap;

use async_trait::async_trait;
use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::json::{ArrayWriter, WriterBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use deadpool_postgres::Pool;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{PgConnection, column_type, pg_error, pool_error, quote_ident, quote_table};
use crate::connect::source::{BatchId, Sink};
use crate::document::encode::column_texts;
use crate::document::hidden::is_hidden;
use crate::{Error, Result};

/// The table markers are kept in.
const PROGRESS: &str = "fluxion_sink_progress";

/// How rows are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Every document is a new row.
    #[default]
    Insert,
    /// A document replaces the row with its key.
    Upsert,
}

/// The `sink` object of a job writing to PostgreSQL: `{"type": "postgres", …}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PostgresSinkConfig {
    /// A named connection of the job (resolved into `url` when the job loads).
    pub connection: Option<String>,
    /// `postgres://user:${PGPASSWORD}@host:port/db`.
    pub url: Option<String>,
    /// The table (`orders` or `schema.orders`).
    pub table: String,
    #[serde(default)]
    pub mode: WriteMode,
    /// The key of an upsert (default `["_id"]`).
    pub key_columns: Option<Vec<String>>,
    /// Create the table from the first batch's fields when it does not exist (with the key
    /// columns as its primary key, for an upsert).
    #[serde(default)]
    pub create_table: bool,
}

/// The sink.
pub struct PostgresSink {
    pool: Pool,
    /// The table, quoted.
    table: String,
    /// The table as the user wrote it (the marker's key).
    target: String,
    mode: WriteMode,
    keys: Vec<String>,
    create: bool,
    /// Column name → type (`format_type`) of the table, once known.
    columns: Option<HashMap<String, String>>,
    /// Output of the micro-batch being written.
    pending: Vec<RecordBatch>,
    batch: Option<BatchId>,
    /// After a crash: look up the marker before the next commit.
    recovering: bool,
    /// This run resumed a crashed one, or has committed a batch itself: only then is the
    /// marker this run's to trust (a fresh run may find an old job's of the same name).
    trusted: bool,
    /// Batches up to this number are in the table already.
    done_upto: Option<u64>,
    /// Rows written, over all runs (the state).
    rows: u64,
    shown: String,
}

impl PostgresSink {
    /// A sink for `config` (its `url` resolved); connects when the first batch is written.
    pub fn open(config: &PostgresSinkConfig, context: &str) -> Result<PostgresSink> {
        let url = config.url.as_deref().ok_or_else(|| {
            Error::config(
                context,
                "sink: give a \"connection\" or a \"url\" (postgres://…)",
            )
        })?;
        let connection = PgConnection::new(url, "sink.url", context)?;
        let keys = match (config.mode, &config.key_columns) {
            (WriteMode::Upsert, Some(k)) if k.is_empty() => {
                return Err(Error::config(
                    context,
                    "sink.keyColumns: an upsert needs at least one key column",
                ));
            }
            (WriteMode::Upsert, Some(k)) => k.clone(),
            (WriteMode::Upsert, None) => vec!["_id".to_string()],
            (WriteMode::Insert, Some(_)) => {
                return Err(Error::config(
                    context,
                    "sink.keyColumns: only an upsert (\"mode\": \"upsert\") has keys",
                ));
            }
            (WriteMode::Insert, None) => Vec::new(),
        };
        Ok(PostgresSink {
            pool: connection.pool(2, context)?,
            table: quote_table(&config.table),
            target: config.table.clone(),
            mode: config.mode,
            keys,
            create: config.create_table,
            columns: None,
            pending: Vec::new(),
            batch: None,
            recovering: false,
            trusted: false,
            done_upto: None,
            rows: 0,
            shown: format!("{} table {}", connection.shown(), config.table),
        })
    }

    fn what(&self) -> String {
        format!("writing to {}", self.shown)
    }

    /// The table's columns, creating the table first if asked to.
    async fn ensure_table(
        &mut self,
        client: &deadpool_postgres::Client,
        schema: &Schema,
    ) -> Result<()> {
        if self.columns.is_some() {
            return Ok(());
        }
        let what = self.what();
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {PROGRESS} (job text NOT NULL, target text NOT NULL, \
                 batch bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), \
                 PRIMARY KEY (job, target))"
            ))
            .await
            .map_err(|e| pg_error(&what, e))?;
        if self.create {
            let mut columns: Vec<String> = schema
                .fields()
                .iter()
                .filter(|f| !is_hidden(f.name()))
                .map(|f| format!("{} {}", quote_ident(f.name()), column_type(f.data_type())))
                .collect();
            if self.mode == WriteMode::Upsert {
                let keys: Vec<String> = self.keys.iter().map(|k| quote_ident(k)).collect();
                columns.push(format!("PRIMARY KEY ({})", keys.join(", ")));
            }
            client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {} ({})",
                    self.table,
                    columns.join(", ")
                ))
                .await
                .map_err(|e| pg_error(&what, e))?;
        }
        let rows = client
            .query(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
                &[&self.table],
            )
            .await
            .map_err(|e| pg_error(&what, e))?;
        self.columns = Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect());
        Ok(())
    }

    /// The statement writing documents with `fields` (given as a JSON array in `$1`).
    fn statement(&self, fields: &[String]) -> Result<String> {
        let columns = self.columns.as_ref().ok_or_else(|| {
            Error::Internal("the PostgreSQL sink wrote before learning its table's columns".into())
        })?;
        for k in &self.keys {
            if !fields.contains(k) {
                return Err(Error::config(
                    self.shown.clone(),
                    format!("the documents have no key field {k:?} (sink.keyColumns)"),
                ));
            }
        }
        let mut definitions = Vec::with_capacity(fields.len());
        for f in fields {
            let ty = columns.get(f).ok_or_else(|| {
                Error::config(
                    self.shown.clone(),
                    format!(
                        "the table has no column {} for the documents' field {f:?}",
                        quote_ident(f)
                    ),
                )
            })?;
            definitions.push(format!("{} {ty}", quote_ident(f)));
        }
        let names: Vec<String> = fields.iter().map(|f| quote_ident(f)).collect();
        let mut sql = format!(
            "INSERT INTO {} ({}) SELECT {} FROM jsonb_to_recordset($1::text::jsonb) AS x({})",
            self.table,
            names.join(", "),
            names.join(", "),
            definitions.join(", ")
        );
        if self.mode == WriteMode::Upsert {
            let keys: Vec<String> = self.keys.iter().map(|k| quote_ident(k)).collect();
            let updates: Vec<String> = names
                .iter()
                .filter(|n| !keys.contains(n))
                .map(|n| format!("{n} = EXCLUDED.{n}"))
                .collect();
            sql.push_str(&format!(" ON CONFLICT ({}) DO ", keys.join(", ")));
            if updates.is_empty() {
                sql.push_str("NOTHING");
            } else {
                sql.push_str(&format!("UPDATE SET {}", updates.join(", ")));
            }
        }
        Ok(sql)
    }

    /// `batch` without hidden columns and, for an upsert, with only the last document of
    /// each key.
    fn rows_of(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let keep: Vec<usize> = (0..batch.num_columns())
            .filter(|&i| !is_hidden(batch.schema().field(i).name()))
            .collect();
        let batch = batch.project(&keep)?;
        if self.mode == WriteMode::Insert {
            return Ok(batch);
        }
        let mut keys: Vec<Vec<Option<Vec<u8>>>> = Vec::new();
        for k in &self.keys {
            if let Ok(i) = batch.schema().index_of(k) {
                keys.push(column_texts(batch.column(i))?);
            }
        }
        let mut last: HashMap<Vec<Option<&[u8]>>, u32> = HashMap::new();
        for row in 0..batch.num_rows() {
            let key = keys.iter().map(|k| k[row].as_deref()).collect();
            last.insert(key, row as u32);
        }
        if last.len() == batch.num_rows() {
            return Ok(batch);
        }
        let mut rows: Vec<u32> = last.into_values().collect();
        rows.sort_unstable();
        Ok(take_record_batch(&batch, &UInt32Array::from(rows))?)
    }
}

/// The documents of `batch` as a JSON array, dates as ISO-8601 text (which PostgreSQL reads
/// into its date types), missing fields left out (NULL, or the column's default).
fn json_rows(batch: &RecordBatch) -> Result<String> {
    let mut out = Vec::new();
    {
        let mut w: ArrayWriter<&mut Vec<u8>> = WriterBuilder::new()
            .with_explicit_nulls(false)
            .build(&mut out);
        w.write(batch)?;
        w.finish()?;
    }
    if out.is_empty() {
        out.extend_from_slice(b"[]");
    }
    String::from_utf8(out).map_err(|e| Error::internal(format!("JSON rows: {e}")))
}

#[async_trait]
impl Sink for PostgresSink {
    async fn write(&mut self, batches: &[RecordBatch]) -> Result<()> {
        self.pending
            .extend(batches.iter().filter(|b| b.num_rows() > 0).cloned());
        Ok(())
    }

    async fn commit(&mut self) -> Result<Value> {
        let pending = std::mem::take(&mut self.pending);
        let batch = self.batch.clone();
        let rows: u64 = pending.iter().map(|b| b.num_rows() as u64).sum();
        if rows == 0 {
            return Ok(json!({"rows": self.rows}));
        }
        let what = self.what();
        let mut client = self.pool.get().await.map_err(|e| pool_error(&what, e))?;
        if self.recovering && !self.trusted {
            // A fresh run's failed attempt: nothing of this run is in the table yet.
            self.recovering = false;
        }
        if self.recovering {
            if let Some(b) = &batch {
                let found = client
                    .query_opt(
                        &format!("SELECT batch FROM {PROGRESS} WHERE job = $1 AND target = $2"),
                        &[&b.job, &self.target],
                    )
                    .await;
                match found {
                    Ok(row) => {
                        self.done_upto = row.map(|r| r.get::<_, i64>(0) as u64);
                    }
                    // No marker table yet: nothing was written.
                    Err(e)
                        if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) =>
                    {
                        self.done_upto = None;
                    }
                    Err(e) => return Err(pg_error(&what, e)),
                }
                tracing::info!(table = %self.target, upto = ?self.done_upto, "postgres sink: batches already in the table");
            }
            self.recovering = false;
        }
        if let (Some(b), Some(upto)) = (&batch, self.done_upto)
            && b.number <= upto
        {
            // Written before a crash, in the transaction that recorded the marker.
            return Ok(json!({"rows": self.rows}));
        }
        self.ensure_table(&client, &pending[0].schema()).await?;
        let transaction = client.transaction().await.map_err(|e| pg_error(&what, e))?;
        for b in &pending {
            let b = self.rows_of(b)?;
            let fields: Vec<String> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let sql = self.statement(&fields)?;
            let statement = transaction
                .prepare_cached(&sql)
                .await
                .map_err(|e| pg_error(&what, e))?;
            let json = json_rows(&b)?;
            transaction
                .execute(&statement, &[&json])
                .await
                .map_err(|e| pg_error(&what, e))?;
        }
        if let Some(b) = &batch {
            transaction
                .execute(
                    &format!(
                        "INSERT INTO {PROGRESS} (job, target, batch) VALUES ($1, $2, $3) \
                         ON CONFLICT (job, target) DO UPDATE SET batch = EXCLUDED.batch, updated_at = now()"
                    ),
                    &[&b.job, &self.target, &(b.number as i64)],
                )
                .await
                .map_err(|e| pg_error(&what, e))?;
        }
        transaction.commit().await.map_err(|e| pg_error(&what, e))?;
        self.trusted = true;
        self.rows += rows;
        Ok(json!({"rows": self.rows}))
    }

    async fn restore(&mut self, state: &Value) -> Result<()> {
        self.pending.clear();
        self.rows = state.get("rows").and_then(Value::as_u64).unwrap_or(0);
        Ok(())
    }

    fn recognises_output(&self) -> bool {
        true
    }

    fn begin(&mut self, batch: &BatchId) {
        self.batch = Some(batch.clone());
        self.pending.clear();
    }

    async fn recover(&mut self, _state: &Value) -> Result<()> {
        // Called before any batch when the run forms a crashed run's batches again.
        if self.batch.is_none() {
            self.trusted = true;
        }
        self.recovering = true;
        Ok(())
    }
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("table", &self.shown)
            .finish()
    }
}
