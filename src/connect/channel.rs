//! A push source for embedding: the application hands documents to a [`ChannelSender`] and
//! the stream reads them from the [`ChannelSource`], each batch tagged with the source
//! partition it came from (so windows keep a watermark per partition, as they would over
//! Kafka). The source ends when every sender is dropped.
//!
//! The position counts the documents read. Nothing is kept once read, so after a restart the
//! application sends again from the checkpointed position (as a producer re-sends what was
//! not acknowledged).

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::source::{Position, Source, SourceBatch};
use crate::document::decode::{JsonlOptions, decode};
use crate::{Error, Result};

/// The sending half: cheap to clone.
#[derive(Clone)]
pub struct ChannelSender {
    schema: SchemaRef,
    tx: mpsc::UnboundedSender<(RecordBatch, u32)>,
}

/// The stream's half.
pub struct ChannelSource {
    schema: SchemaRef,
    rx: mpsc::UnboundedReceiver<(RecordBatch, u32)>,
    pending: VecDeque<(RecordBatch, u32)>,
    offset: u64,
    /// How long a read waits for documents before handing back an empty batch.
    wait: Duration,
}

/// A source of documents of `schema` and the sender that feeds it.
pub fn channel(schema: SchemaRef) -> (ChannelSender, ChannelSource) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        ChannelSender {
            schema: schema.clone(),
            tx,
        },
        ChannelSource {
            schema,
            rx,
            pending: VecDeque::new(),
            offset: 0,
            wait: Duration::from_millis(20),
        },
    )
}

impl ChannelSender {
    /// Sends `batch` (of the source's schema) as documents of `partition`.
    pub fn send(&self, batch: RecordBatch, partition: u32) -> Result<()> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(Error::input(
                "channel source",
                "the batch does not have the source's schema",
            ));
        }
        self.tx
            .send((batch, partition))
            .map_err(|_| Error::input("channel source", "the stream has stopped reading"))
    }

    /// Sends JSON documents (read with the source's schema) as documents of `partition`.
    pub fn send_json(&self, documents: &[Value], partition: u32) -> Result<()> {
        let mut lines = Vec::new();
        for d in documents {
            serde_json::to_writer(&mut lines, d)
                .map_err(|e| Error::input("channel source", e.to_string()))?;
            lines.push(b'\n');
        }
        let opts = JsonlOptions {
            schema: Some(self.schema.clone()),
            ..JsonlOptions::default()
        };
        let decoded = decode(&lines, "channel", &opts)?;
        let batches: Vec<RecordBatch> = decoded.partitions.into_iter().flatten().collect();
        self.send(concat_batches(&self.schema, &batches)?, partition)
    }
}

#[async_trait]
impl Source for ChannelSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn position(&self) -> Position {
        Position(json!({ "offset": self.offset }))
    }

    fn seek(&mut self, position: &Position) -> Result<()> {
        match position.0.get("offset").and_then(Value::as_u64) {
            Some(o) => {
                self.offset = o;
                Ok(())
            }
            None => Err(Error::input(
                "channel source",
                format!("cannot resume at {}", position.0),
            )),
        }
    }

    async fn next_batch(&mut self, max_rows: usize) -> Result<Option<SourceBatch>> {
        if self.pending.is_empty() {
            match tokio::time::timeout(self.wait, self.rx.recv()).await {
                Ok(Some(sent)) => self.pending.push_back(sent),
                Ok(None) => return Ok(None),
                Err(_) => {
                    return Ok(Some(SourceBatch {
                        batch: RecordBatch::new_empty(self.schema.clone()),
                        position: self.position(),
                        rejected: Vec::new(),
                        partitions: None,
                    }));
                }
            }
        }
        while let Ok(sent) = self.rx.try_recv() {
            self.pending.push_back(sent);
        }
        let mut batches = Vec::new();
        let mut partitions = Vec::new();
        let mut rows = 0;
        while rows < max_rows.max(1)
            && let Some((batch, partition)) = self.pending.pop_front()
        {
            let take = batch.num_rows().min(max_rows.max(1) - rows);
            if take < batch.num_rows() {
                self.pending
                    .push_front((batch.slice(take, batch.num_rows() - take), partition));
            }
            partitions.extend(std::iter::repeat_n(partition, take));
            batches.push(batch.slice(0, take));
            rows += take;
        }
        self.offset += rows as u64;
        Ok(Some(SourceBatch {
            batch: concat_batches(&self.schema, &batches)?,
            position: self.position(),
            rejected: Vec::new(),
            partitions: Some(partitions),
        }))
    }
}
