//! Connector configs resolved into streaming sources and sinks: the `source`, `sink` and
//! `deadLetter` objects of a job file ([`SourceConfig`], [`SinkConfig`]) become the
//! [`Source`] and [`Sink`] that read and write them, so the CLI and the library builder open
//! connectors the same way and swapping one is a change of config.
//!
//! Streams read local JSON-lines files (optionally followed), Kafka topics, PostgreSQL
//! tables, documents POSTed over HTTP or documents given in the config, and write local JSON-lines files (exactly once), Parquet directories
//! (exactly once), Kafka topics (exactly once), PostgreSQL tables (exactly once), HTTP
//! endpoints (once per idempotency key) or stdout (at least once).

use datafusion::arrow::datatypes::SchemaRef;
use serde::Deserialize;
use serde_json::Value;

use super::Format;
use super::http_sink::{HttpSink, HttpSinkConfig};
use super::http_source::{HttpIngestSource, HttpSourceConfig};
use super::jsonl_sink::JsonlFileSink;
use super::jsonl_source::JsonlFileSource;
use super::kafka::group::KafkaGroup;
use super::kafka::sink::KafkaSink;
use super::kafka::source::KafkaSource;
use super::kafka::{KafkaSinkConfig, KafkaSourceConfig};
use super::memory::{MemorySource, NullSink};
use super::nexmark::{NexmarkKind, NexmarkSource};
use super::parquet_sink::ParquetDirSink;
use super::postgres::sink::{PostgresSink, PostgresSinkConfig};
use super::postgres::source::{PostgresSource, PostgresSourceConfig};
use super::source::{PartitionedSource, Sink, Source, TaskPositions};
use super::stdout::StdoutSink;
use crate::document::declared::parse_schema;
use crate::{Error, Result};

/// Where documents come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// A file, directory or object-store URL.
    File {
        path: String,
        format: Option<Format>,
        /// The table name SQL uses (default `input`).
        table: Option<String>,
        /// A declared document schema (see `document::declared`); inferred when absent.
        schema: Option<Value>,
        /// Follow a growing JSON-lines file (a streaming job) instead of ending at its end.
        #[serde(default)]
        follow: bool,
        /// The event time of each document, for windows: an expression (`"$ts"`) giving a
        /// date, ISO-8601 text or epoch milliseconds.
        #[serde(rename = "timeField")]
        time_field: Option<Value>,
    },
    /// Nexmark events generated in process (`connect::nexmark`): `kind` (`"bid"`, the default,
    /// `"auction"` or `"person"`), `events` of them (or without end), at most `rate` per
    /// second (default: as fast as they come). Event time is `dateTime` unless `timeField`
    /// says otherwise.
    Nexmark {
        kind: Option<String>,
        events: Option<u64>,
        rate: Option<f64>,
        table: Option<String>,
        #[serde(rename = "timeField")]
        time_field: Option<Value>,
    },
    /// Records of Kafka topics (`connect::kafka`).
    Kafka(KafkaSourceConfig),
    /// Rows of a PostgreSQL table or query (`connect::postgres::source`).
    Postgres(PostgresSourceConfig),
    /// Documents POSTed to an HTTP endpoint this job serves (`connect::http_source`).
    Http(HttpSourceConfig),
    /// Documents given in the job itself (for tests, demos and embedding).
    Memory {
        documents: Vec<Value>,
        /// The table name SQL uses (default `input`).
        table: Option<String>,
        /// The event time of each document, for windows (see `File`).
        #[serde(rename = "timeField")]
        time_field: Option<Value>,
    },
}

impl SourceConfig {
    /// The `timeField` expression, if any.
    pub fn time_field(&self) -> Option<&Value> {
        match self {
            SourceConfig::File { time_field, .. } | SourceConfig::Memory { time_field, .. } => {
                time_field.as_ref()
            }
            SourceConfig::Postgres(p) => p.time_field.as_ref(),
            SourceConfig::Http(h) => h.time_field.as_ref(),
            SourceConfig::Kafka(k) => {
                static TIMESTAMP: std::sync::LazyLock<Value> =
                    std::sync::LazyLock::new(|| Value::String("$_timestamp".into()));
                Some(k.time_field.as_ref().unwrap_or(&TIMESTAMP))
            }
            SourceConfig::Nexmark { time_field, .. } => {
                static DATE_TIME: std::sync::LazyLock<Value> =
                    std::sync::LazyLock::new(|| Value::String("$dateTime".into()));
                Some(time_field.as_ref().unwrap_or(&DATE_TIME))
            }
        }
    }

    /// The table name the source is registered under (default `input`).
    pub fn table(&self) -> &str {
        match self {
            SourceConfig::File { table, .. }
            | SourceConfig::Memory { table, .. }
            | SourceConfig::Nexmark { table, .. }
            | SourceConfig::Kafka(KafkaSourceConfig { table, .. })
            | SourceConfig::Postgres(PostgresSourceConfig { table, .. })
            | SourceConfig::Http(HttpSourceConfig { table, .. }) => {
                table.as_deref().unwrap_or("input")
            }
        }
    }

    /// The documents of an in-memory source as JSON lines.
    pub fn memory_jsonl(&self) -> Option<Vec<u8>> {
        let SourceConfig::Memory { documents, .. } = self else {
            return None;
        };
        let mut text = Vec::new();
        for d in documents {
            text.extend_from_slice(d.to_string().as_bytes());
            text.push(b'\n');
        }
        Some(text)
    }
}

/// Where results go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// JSON lines on standard output.
    #[default]
    Stdout,
    /// Nowhere: documents are counted and dropped (for benchmarks).
    Null,
    /// One file (JSON lines, CSV or Parquet).
    File {
        path: String,
        format: Option<Format>,
    },
    /// Records of a Kafka topic (`connect::kafka`).
    Kafka(KafkaSinkConfig),
    /// Requests to an HTTP endpoint (`connect::http_sink`).
    Http(HttpSinkConfig),
    /// Rows of a PostgreSQL table, exactly once (`connect::postgres::sink`).
    Postgres(PostgresSinkConfig),
}

/// The source a config describes; `schema` (a checkpoint's) is read with when the config
/// declares none, which spares inferring one from the whole file.
pub fn open_source(
    config: &SourceConfig,
    schema: Option<SchemaRef>,
    context: &str,
) -> Result<Box<dyn Source>> {
    match config {
        SourceConfig::File {
            path,
            format,
            schema: declared,
            follow,
            ..
        } => {
            if !matches!(
                format.map_or_else(|| Format::from_path(path), Ok)?,
                Format::Jsonl
            ) || path.contains("://")
            {
                return Err(Error::config(
                    context,
                    format!("a stream reads local JSON-lines files (not {path})"),
                ));
            }
            let declared = declared
                .as_ref()
                .map(|s| parse_schema(s, context, "source.schema").map(std::sync::Arc::new))
                .transpose()?;
            Ok(Box::new(JsonlFileSource::open(
                path,
                declared.or(schema),
                *follow,
            )?))
        }
        SourceConfig::Nexmark {
            kind, events, rate, ..
        } => {
            let kind = NexmarkKind::parse(kind.as_deref().unwrap_or("bid"))?;
            Ok(Box::new(NexmarkSource::of(kind, *events).with_rate(*rate)))
        }
        SourceConfig::Kafka(k) => Ok(Box::new(KafkaSource::open(k, schema, context)?)),
        SourceConfig::Postgres(p) => Ok(Box::new(PostgresSource::open(p, schema, context)?)),
        SourceConfig::Http(h) => Ok(Box::new(HttpIngestSource::open(h, None, context)?)),
        SourceConfig::Memory { .. } => {
            let text = config.memory_jsonl().unwrap_or_default();
            Ok(Box::new(MemorySource::from_jsonl(&text)?))
        }
    }
}

/// The source a config describes, as partitions handed out to this process (a job with
/// `runtime.scaleOut`): only a Kafka source with a `groupId` has them.
pub fn open_partitioned(
    config: &SourceConfig,
    context: &str,
    positions: TaskPositions,
) -> Result<Box<dyn PartitionedSource>> {
    match config {
        SourceConfig::Kafka(k) => Ok(Box::new(KafkaGroup::open(k, context, positions)?)),
        _ => Err(Error::config(
            context,
            "runtime.scaleOut: only a Kafka source with a groupId is scaled out over its partitions",
        )),
    }
}

/// The sink a config describes.
pub fn open_sink(config: &SinkConfig, context: &str) -> Result<Box<dyn Sink>> {
    match config {
        SinkConfig::Stdout => Ok(Box::new(StdoutSink)),
        SinkConfig::Null => Ok(Box::new(NullSink::default())),
        SinkConfig::Kafka(k) => Ok(Box::new(KafkaSink::open(k, context)?)),
        SinkConfig::Http(h) => Ok(Box::new(HttpSink::open(h, context)?)),
        SinkConfig::Postgres(p) => Ok(Box::new(PostgresSink::open(p, context)?)),
        SinkConfig::File { path, .. } if path.contains("://") => Err(Error::config(
            context,
            format!("a stream writes local files (not {path})"),
        )),
        // A directory of Parquet parts, one per commit.
        SinkConfig::File {
            path,
            format: Some(Format::Parquet),
        } => Ok(Box::new(ParquetDirSink::open(path)?)),
        SinkConfig::File { path, format } => {
            match format.map_or_else(|| Format::from_path(path), Ok)? {
                Format::Jsonl => Ok(Box::new(JsonlFileSink::open(path)?)),
                _ => Err(Error::config(
                    context,
                    format!(
                        "a stream writes JSON-lines files or Parquet directories (\"format\": \"parquet\"), not {path}"
                    ),
                )),
            }
        }
    }
}
