//! A directory of Parquet files as an exactly-once streaming sink: each commit writes the
//! output since the last one as `part-<n>.parquet` (to a temporary name, then renamed; the
//! parts are fsynced before each checkpoint), and its state is the number of the last part. Restoring a checkpoint deletes the
//! parts after it and any temporary file, so committed output holds every document once.
//!
//! Parquet files cannot be appended to, hence one file per commit: with small micro-batches
//! and a checkpoint per batch that makes many small files (a checkpoint interval makes fewer).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use serde_json::{Value, json};

use super::source::Sink;
use crate::{Error, Result};

/// Parquet parts in a directory, one per commit.
pub struct ParquetDirSink {
    dir: PathBuf,
    pending: Vec<RecordBatch>,
    /// The number of the last committed part.
    parts: u64,
    /// Parts committed since the last sync (reopened to sync: many may wait for one checkpoint).
    unsynced: Vec<PathBuf>,
}

impl ParquetDirSink {
    /// Writes into `dir` (created if missing); its content is settled by [`Sink::restore`].
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::external(format!("creating {}", dir.display()), e))?;
        Ok(ParquetDirSink {
            dir,
            pending: Vec::new(),
            parts: 0,
            unsynced: Vec::new(),
        })
    }

    /// The committed parts of `dir` up to `parts` (a sink state's), in order.
    pub fn committed_parts(dir: &Path, parts: u64) -> Result<Vec<PathBuf>> {
        let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(|e| Error::external(format!("reading {}", dir.display()), e))?
            .flatten()
            .filter_map(|e| part_number(&e.file_name().to_string_lossy()).map(|n| (n, e.path())))
            .filter(|(n, _)| *n <= parts)
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }

    /// The number of the last committed part, from a sink state.
    pub fn parts_of(state: &Value) -> u64 {
        state.get("parts").and_then(Value::as_u64).unwrap_or(0)
    }
}

/// `n` of `part-<n>.parquet`.
fn part_number(name: &str) -> Option<u64> {
    name.strip_prefix("part-")?
        .strip_suffix(".parquet")?
        .parse()
        .ok()
}

#[async_trait]
impl Sink for ParquetDirSink {
    async fn write(&mut self, batches: &[RecordBatch]) -> Result<()> {
        self.pending
            .extend(batches.iter().filter(|b| b.num_rows() > 0).cloned());
        Ok(())
    }

    async fn commit(&mut self) -> Result<Value> {
        let next = self.parts + 1;
        if let Some(first) = self.pending.first() {
            let io = |what: &str, e: std::io::Error| {
                Error::external(format!("{what} {}", self.dir.display()), e)
            };
            let tmp = self.dir.join(format!(".part-{next}.parquet.tmp"));
            let file = std::fs::File::create(&tmp).map_err(|e| io("writing in", e))?;
            let mut w = ArrowWriter::try_new(file, first.schema(), None)?;
            for b in &self.pending {
                w.write(b)?;
            }
            w.into_inner()?;
            let part = self.dir.join(format!("part-{next}.parquet"));
            std::fs::rename(&tmp, &part).map_err(|e| io("renaming in", e))?;
            // Made durable before the next checkpoint (`sync`).
            self.unsynced.push(part);
        }
        self.pending.clear();
        self.parts = next;
        Ok(json!({ "parts": next }))
    }

    async fn sync(&mut self) -> Result<()> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        for part in self.unsynced.drain(..) {
            std::fs::File::open(&part)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::external(format!("syncing {}", part.display()), e))?;
        }
        // The renames are durable once the directory is synced.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::external(format!("syncing {}", self.dir.display()), e))
    }

    async fn restore(&mut self, state: &Value) -> Result<()> {
        self.pending.clear();
        self.unsynced.clear();
        self.parts = Self::parts_of(state);
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::external(format!("reading {}", self.dir.display()), e))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let stale = match part_number(&name) {
                Some(n) => n > self.parts,
                None => name.starts_with(".part-") && name.ends_with(".tmp"),
            };
            if stale {
                std::fs::remove_file(e.path()).map_err(|err| {
                    Error::external(format!("removing {}", e.path().display()), err)
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(v: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(v.to_vec()))]).unwrap()
    }

    #[tokio::test]
    async fn parts_after_the_checkpoint_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = ParquetDirSink::open(dir.path()).unwrap();
        sink.restore(&Value::Null).await.unwrap();
        sink.write(&[batch(&[1, 2])]).await.unwrap();
        let one = sink.commit().await.unwrap();
        sink.write(&[]).await.unwrap();
        assert_eq!(sink.commit().await.unwrap(), json!({"parts": 2}));
        sink.write(&[batch(&[3])]).await.unwrap();
        sink.commit().await.unwrap();
        std::fs::write(dir.path().join(".part-4.parquet.tmp"), b"torn").unwrap();
        assert_eq!(
            ParquetDirSink::committed_parts(dir.path(), 3)
                .unwrap()
                .len(),
            2
        );
        // A restart at the first checkpoint.
        let mut again = ParquetDirSink::open(dir.path()).unwrap();
        again.restore(&one).await.unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, ["part-1.parquet"]);
        again.write(&[batch(&[9])]).await.unwrap();
        assert_eq!(again.commit().await.unwrap(), json!({"parts": 2}));
    }
}
