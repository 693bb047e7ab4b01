//! Connector configs resolved into streaming sources and sinks: the `source`, `sink` and
//! `deadLetter` objects of a job file (`job::SourceConfig`, `job::SinkConfig`) become the
//! [`Source`] and [`Sink`] that read and write them, so the CLI and the library builder open
//! connectors the same way and swapping one is a change of config.
//!
//! Streams read local JSON-lines files (optionally followed) or documents given in the
//! config, and write local JSON-lines files (exactly once), Parquet directories (exactly
//! once) or stdout (at least once).

use datafusion::arrow::datatypes::SchemaRef;

use super::Format;
use super::jsonl_sink::JsonlFileSink;
use super::jsonl_source::JsonlFileSource;
use super::memory::{MemorySource, NullSink};
use super::nexmark::{NexmarkKind, NexmarkSource};
use super::parquet_sink::ParquetDirSink;
use super::source::{Sink, Source};
use super::stdout::StdoutSink;
use crate::document::declared::parse_schema;
use crate::job::{SinkConfig, SourceConfig};
use crate::{Error, Result};

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
            let format = format.as_deref().map(Format::from_name).transpose()?;
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
        SourceConfig::Memory { .. } => {
            let text = config.memory_jsonl().expect("a memory source");
            Ok(Box::new(MemorySource::from_jsonl(&text)?))
        }
    }
}

/// The sink a config describes.
pub fn open_sink(config: &SinkConfig, context: &str) -> Result<Box<dyn Sink>> {
    match config {
        SinkConfig::Stdout => Ok(Box::new(StdoutSink)),
        SinkConfig::Null => Ok(Box::new(NullSink::default())),
        SinkConfig::File { path, .. } if path.contains("://") => Err(Error::config(
            context,
            format!("a stream writes local files (not {path})"),
        )),
        // A directory of Parquet parts, one per commit.
        SinkConfig::File { path, format } if format.as_deref() == Some("parquet") => {
            Ok(Box::new(ParquetDirSink::open(path)?))
        }
        SinkConfig::File { path, format } => {
            match format
                .as_deref()
                .map(Format::from_name)
                .transpose()?
                .map_or_else(|| Format::from_path(path), Ok)?
            {
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
