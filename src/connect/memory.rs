//! In-memory source and sink, for embedding and tests.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use super::source::{Position, Sink, Source, SourceBatch};
use crate::document::decode::{JsonlOptions, decode};
use crate::{Error, Result};

/// Documents held in memory, read in order; the position is the number of documents read.
pub struct MemorySource {
    rows: RecordBatch,
    offset: usize,
    /// Where to stop (a replay).
    end: Option<usize>,
}

impl MemorySource {
    /// A source over `batches` (all of `schema`).
    pub fn new(schema: SchemaRef, batches: &[RecordBatch]) -> Result<Self> {
        Ok(MemorySource {
            rows: concat_batches(&schema, batches)?,
            offset: 0,
            end: None,
        })
    }

    /// A source over JSON lines, with the schema rules of JSON-lines files.
    pub fn from_jsonl(data: &[u8]) -> Result<Self> {
        let decoded = decode(data, "memory", &JsonlOptions::default())?;
        let batches: Vec<RecordBatch> = decoded.partitions.into_iter().flatten().collect();
        MemorySource::new(decoded.schema, &batches)
    }
}

impl MemorySource {
    /// Documents up to the end (or the replay's end).
    fn len(&self) -> usize {
        self.end.unwrap_or(self.rows.num_rows())
    }
}

#[async_trait]
impl Source for MemorySource {
    fn schema(&self) -> SchemaRef {
        self.rows.schema()
    }

    fn position(&self) -> Position {
        Position(json!({ "offset": self.offset }))
    }

    fn seek(&mut self, position: &Position) -> Result<()> {
        match position.0.get("offset").and_then(Value::as_u64) {
            Some(o) if o as usize <= self.rows.num_rows() => {
                self.offset = o as usize;
                Ok(())
            }
            _ => Err(Error::input(
                "memory source",
                format!("cannot resume at {}", position.0),
            )),
        }
    }

    fn lag(&self) -> Option<u64> {
        Some((self.len() - self.offset) as u64)
    }

    fn end_at(&mut self, end: &Position) -> Result<()> {
        match end.0.get("offset").and_then(Value::as_u64) {
            Some(o) if o as usize <= self.rows.num_rows() => {
                self.end = Some(o as usize);
                Ok(())
            }
            _ => Err(Error::input(
                "memory source",
                format!("cannot end at {}", end.0),
            )),
        }
    }

    async fn next_batch(&mut self, max_rows: usize) -> Result<Option<SourceBatch>> {
        let left = self.len() - self.offset;
        if left == 0 {
            return Ok(None);
        }
        let n = left.min(max_rows.max(1));
        let batch = self.rows.slice(self.offset, n);
        self.offset += n;
        Ok(Some(SourceBatch {
            batch,
            position: self.position(),
            rejected: Vec::new(),
            partitions: None,
        }))
    }
}

/// Collects what it is given; `committed` is the output as of the last commit.
#[derive(Default)]
pub struct MemorySink {
    pending: Vec<RecordBatch>,
    /// Batches made durable by a commit.
    pub committed: Vec<RecordBatch>,
    view: Option<CommittedView>,
}

/// The committed output of a [`MemorySink`] that a running stream owns, read from outside.
#[derive(Clone, Default)]
pub struct CommittedView(Arc<Mutex<Vec<RecordBatch>>>);

impl CommittedView {
    /// The committed batches so far.
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.0.lock().expect("the view's lock").clone()
    }

    /// The committed documents so far, as JSON.
    pub fn documents(&self) -> Result<Vec<Value>> {
        crate::document::encode::to_documents(&self.batches())
    }
}

impl MemorySink {
    /// A sink whose committed output can be read while a stream runs into it.
    pub fn with_view() -> (MemorySink, CommittedView) {
        let view = CommittedView::default();
        (
            MemorySink {
                view: Some(view.clone()),
                ..MemorySink::default()
            },
            view,
        )
    }

    fn mirror(&self) {
        if let Some(v) = &self.view {
            *v.0.lock().expect("the view's lock") = self.committed.clone();
        }
    }
}

#[async_trait]
impl Sink for MemorySink {
    async fn write(&mut self, batches: &[RecordBatch]) -> Result<()> {
        self.pending.extend_from_slice(batches);
        Ok(())
    }

    async fn commit(&mut self) -> Result<Value> {
        self.committed.append(&mut self.pending);
        self.mirror();
        Ok(json!({ "batches": self.committed.len() }))
    }

    async fn restore(&mut self, state: &Value) -> Result<()> {
        self.pending.clear();
        let n = state.get("batches").and_then(Value::as_u64).unwrap_or(0) as usize;
        self.committed.truncate(n);
        self.mirror();
        Ok(())
    }
}

/// Counts what it is given and keeps nothing (benchmarks measure the pipeline, not a sink).
#[derive(Debug, Default)]
pub struct NullSink {
    /// Documents written so far.
    pub documents: u64,
}

#[async_trait]
impl Sink for NullSink {
    async fn write(&mut self, batches: &[RecordBatch]) -> Result<()> {
        self.documents += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        Ok(())
    }

    async fn commit(&mut self) -> Result<Value> {
        Ok(json!({ "documents": self.documents }))
    }

    async fn restore(&mut self, state: &Value) -> Result<()> {
        self.documents = state.get("documents").and_then(Value::as_u64).unwrap_or(0);
        Ok(())
    }
}
