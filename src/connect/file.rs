//! Files as sources and sinks: JSON lines, CSV and Parquet, at any `object_store` location.
//!
//! JSON lines go through Fluxion's own decoder (`document::decode`) because documents need
//! Fluxion's schema rules; CSV and Parquet use DataFusion's listing tables directly, which
//! read directories and remote stores lazily and in parallel.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{CsvReadOptions, DataFrame, ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use super::object_store::{Location, register};
use crate::document::decode::{JsonlOptions, decode};
use crate::document::encode::write_batch;
use crate::{Error, Result};

/// A file format, as a job file (`"format": "parquet"`, any case) or a CLI flag names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Format {
    Jsonl,
    Csv,
    Parquet,
}

impl TryFrom<String> for Format {
    type Error = String;

    fn try_from(name: String) -> std::result::Result<Format, String> {
        Format::parse_flag(&name)
    }
}

impl Format {
    /// The format named in a job file or CLI flag.
    pub fn from_name(name: &str) -> Result<Format> {
        match name.to_ascii_lowercase().as_str() {
            "json" | "jsonl" | "ndjson" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            "parquet" => Ok(Format::Parquet),
            other => Err(Error::config(
                "format",
                format!("unknown format \"{other}\" (expected jsonl, csv or parquet)"),
            )),
        }
    }

    /// The format named by a CLI flag (for clap's `value_parser`).
    pub fn parse_flag(name: &str) -> std::result::Result<Format, String> {
        Format::from_name(name).map_err(|e| match e {
            Error::Config { message, .. } => message,
            other => other.to_string(),
        })
    }

    /// The format implied by a file name's extension.
    pub fn from_path(path: &str) -> Result<Format> {
        let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        match ext.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            "parquet" => Ok(Format::Parquet),
            _ => Err(Error::config(
                path,
                "cannot tell the format from the extension (.jsonl/.ndjson/.json, .csv, .parquet); give it explicitly",
            )),
        }
    }

    fn extension(path: &str) -> String {
        match path.rsplit('/').next().and_then(|f| f.rsplit_once('.')) {
            Some((_, e)) => format!(".{e}"),
            None => String::new(),
        }
    }
}

/// How a file source is read.
#[derive(Debug, Clone, Default)]
pub struct FileOptions {
    /// The format; `None` tells it from the extension.
    pub format: Option<Format>,
    /// A declared schema; `None` infers it (JSON lines) or reads it (CSV header, Parquet).
    pub schema: Option<SchemaRef>,
}

/// Registers the file(s) at `location` as table `name`.
pub async fn register_source(
    ctx: &SessionContext,
    name: &str,
    location: &str,
    options: &FileOptions,
) -> Result<()> {
    let loc = Location::parse(location)?;
    let format = match options.format {
        Some(f) => f,
        None => Format::from_path(location)?,
    };
    let store = register(ctx, &loc)?;
    let url = loc.url.as_str();
    match format {
        Format::Jsonl => {
            let data = read_all(store.as_ref(), &loc).await?;
            let source = loc.display.clone();
            let opts = JsonlOptions {
                schema: options.schema.clone(),
                ..JsonlOptions::default()
            };
            let decoded = tokio::task::spawn_blocking(move || decode(&data, &source, &opts))
                .await
                .map_err(|e| Error::external("decoding JSON lines", e))??;
            crate::plan::order::register_ordered(ctx, name, decoded.schema, decoded.partitions)?;
        }
        Format::Csv => {
            let ext = Format::extension(location);
            let mut read = CsvReadOptions::new().file_extension(&ext);
            if let Some(schema) = &options.schema {
                read = read.schema(schema);
            }
            ctx.register_csv(name, url, read)
                .await
                .map_err(|e| source_error(&loc, e))?;
        }
        Format::Parquet => {
            let ext = Format::extension(location);
            let mut read = ParquetReadOptions::default().file_extension(&ext);
            if let Some(schema) = &options.schema {
                read = read.schema(schema);
            }
            ctx.register_parquet(name, url, read)
                .await
                .map_err(|e| source_error(&loc, e))?;
        }
    }
    if format != Format::Jsonl {
        // A header or a Parquet column may hold any text: refuse what could pass for a hidden
        // column's name.
        let table = ctx.table_provider(name).await?;
        if let Err(e) = crate::document::hidden::check_columns(&table.schema(), &loc.display) {
            ctx.deregister_table(name)?;
            return Err(e);
        }
    }
    Ok(())
}

fn source_error(loc: &Location, e: datafusion::error::DataFusionError) -> Error {
    Error::input(&loc.display, e.to_string())
}

/// Reads one object, or every object under a directory prefix in name order.
async fn read_all(store: &dyn ObjectStore, loc: &Location) -> Result<Vec<u8>> {
    match store.get(&loc.path).await {
        Ok(r) => {
            let bytes = r
                .bytes()
                .await
                .map_err(|e| Error::external(format!("reading {}", loc.display), e))?;
            Ok(bytes.to_vec())
        }
        Err(object_store::Error::NotFound { .. }) => {
            let mut objects: Vec<_> = store
                .list(Some(&loc.path))
                .try_collect()
                .await
                .map_err(|e| Error::external(format!("listing {}", loc.display), e))?;
            if objects.is_empty() {
                return Err(Error::input(&loc.display, "no such file or directory"));
            }
            objects.sort_by(|a, b| a.location.cmp(&b.location));
            let mut all = Vec::new();
            for o in objects {
                let reading = |e| Error::external(format!("reading {}", o.location), e);
                let bytes = store.get(&o.location).await.map_err(reading)?;
                let bytes = bytes.bytes().await.map_err(reading)?;
                all.extend_from_slice(&bytes);
                if !all.ends_with(b"\n") {
                    all.push(b'\n');
                }
            }
            Ok(all)
        }
        Err(e) => Err(Error::external(format!("reading {}", loc.display), e)),
    }
}

/// Writes the result of `df` to one file at `location`; returns the number of documents.
pub async fn write_file(
    ctx: &SessionContext,
    df: DataFrame,
    location: &str,
    format: Option<Format>,
) -> Result<u64> {
    let loc = Location::parse(location)?;
    let format = match format {
        Some(f) => f,
        None => Format::from_path(location)?,
    };
    let store = register(ctx, &loc)?;
    if loc.url.scheme() == "file"
        && let Some(parent) = loc
            .url
            .to_file_path()
            .ok()
            .and_then(|p| p.parent().map(|p| p.to_path_buf()))
    {
        std::fs::create_dir_all(&parent)
            .map_err(|e| Error::external(format!("creating {}", parent.display()), e))?;
    }
    let options = DataFrameWriteOptions::new().with_single_file_output(true);
    let counted = match format {
        Format::Jsonl => {
            let mut w = object_store::buffered::BufWriter::new(store, loc.path.clone());
            let mut stream = df.execute_stream().await?;
            let mut rows = 0u64;
            let mut buf = Vec::new();
            while let Some(batch) = stream.try_next().await? {
                rows += batch.num_rows() as u64;
                buf.clear();
                write_batch(&mut buf, &batch)?;
                w.write_all(&buf)
                    .await
                    .map_err(|e| Error::external(format!("writing {}", loc.display), e))?;
            }
            w.shutdown()
                .await
                .map_err(|e| Error::external(format!("writing {}", loc.display), e))?;
            return Ok(rows);
        }
        Format::Csv => df.write_csv(loc.url.as_str(), options, None).await?,
        Format::Parquet => df.write_parquet(loc.url.as_str(), options, None).await?,
    };
    Ok(written_rows(&counted))
}

/// DataFusion's writers return one batch with a `count` column.
fn written_rows(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> u64 {
    use datafusion::arrow::array::{Array, UInt64Array};
    batches
        .iter()
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .map(|a| (0..a.len()).map(|i| a.value(i)).sum::<u64>())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_extensions() {
        assert_eq!(Format::from_path("a/b.ndjson").unwrap(), Format::Jsonl);
        assert_eq!(Format::from_path("b.CSV").unwrap(), Format::Csv);
        assert_eq!(
            Format::from_path("s3://x/b.parquet").unwrap(),
            Format::Parquet
        );
        assert!(Format::from_path("b.txt").is_err());
        assert_eq!(Format::extension("dir/x.csv"), ".csv");
        assert_eq!(Format::extension("dir.d/x"), "");
    }

    /// A CSV header can name a column anything: one holding NUL could pass for a hidden
    /// column, so the table is refused (and not left registered); `__fluxion_…` is fine.
    #[tokio::test]
    async fn a_csv_column_named_with_nul_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "a,b\u{0}c\n1,2\n").unwrap();
        let good = dir.path().join("good.csv");
        std::fs::write(&good, "a,__fluxion_seq\n1,2\n").unwrap();
        let ctx = SessionContext::new();
        let opts = FileOptions::default();
        let e = register_source(&ctx, "t", bad.to_str().unwrap(), &opts)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
        assert!(!ctx.table_exist("t").unwrap());
        register_source(&ctx, "t", good.to_str().unwrap(), &opts)
            .await
            .unwrap();
        let n = ctx.table("t").await.unwrap().count().await.unwrap();
        assert_eq!(n, 1);
    }
}
