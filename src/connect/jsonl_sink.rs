//! A JSON-lines file as an exactly-once streaming sink: output is appended at each commit,
//! whose state is the file's committed length, and fsynced before each checkpoint (not at
//! every micro-batch: what follows the last checkpoint is written again after a crash anyway);
//! restoring a checkpoint truncates the
//! file to that length, discarding what a crashed run wrote after its last checkpoint. Without
//! a checkpoint the file starts empty.

use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use super::source::Sink;
use crate::document::encode::write_batch;
use crate::{Error, Result};

/// A JSON-lines file appended to in step with checkpoints.
pub struct JsonlFileSink {
    path: PathBuf,
    file: std::fs::File,
}

impl JsonlFileSink {
    /// Opens (or creates, with its directory) `path`; its content is settled by
    /// [`Sink::restore`].
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::external(format!("creating {}", dir.display()), e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::external(format!("opening {}", path.display()), e))?;
        Ok(JsonlFileSink { path, file })
    }

    fn io(&self, what: &str, e: std::io::Error) -> Error {
        Error::external(format!("{what} {}", self.path.display()), e)
    }
}

#[async_trait]
impl Sink for JsonlFileSink {
    async fn write(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let mut buf = Vec::new();
        for b in batches {
            write_batch(&mut buf, b)?;
        }
        self.file.write_all(&buf).map_err(|e| self.io("writing", e))
    }

    async fn commit(&mut self) -> Result<Value> {
        let len = self
            .file
            .metadata()
            .map_err(|e| self.io("reading the length of", e))?
            .len();
        Ok(json!({ "bytes": len }))
    }

    async fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| self.io("syncing", e))
    }

    async fn restore(&mut self, state: &Value) -> Result<()> {
        let len = state.get("bytes").and_then(Value::as_u64).unwrap_or(0);
        self.file
            .set_len(len)
            .map_err(|e| self.io("truncating", e))?;
        self.file.sync_data().map_err(|e| self.io("syncing", e))
    }
}
