//! The Connect source interface: record batches with a resumable position.
//!
//! A source yields Arrow batches of documents and, with each, the position just after it
//! (a byte offset, Kafka offsets per partition, …) as JSON, so a checkpoint can store it and a
//! restarted run can [`Source::seek`] back to it.

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::Result;

/// Where a source is: opaque to the runtime, meaningful to the source that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Position(pub Value);

/// One micro-batch from a source.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    pub batch: RecordBatch,
    /// The position after this batch: resuming there reads the next document.
    pub position: Position,
    /// Records of this batch that could not be read, for the error policy.
    pub rejected: Vec<Rejected>,
    /// The source partition of each document (a Kafka partition, say), for per-partition
    /// watermarks; `None` for a source without partitions.
    pub partitions: Option<Vec<u32>>,
}

/// A record a source could not turn into a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Where it is in the source (e.g. `{"offset": 1234}`).
    pub position: Position,
    /// Why it was rejected.
    pub reason: String,
    /// The record as it was (lossy UTF-8 for bytes).
    pub raw: String,
}

/// A source of documents.
#[async_trait]
pub trait Source: Send {
    /// The schema of every batch.
    fn schema(&self) -> SchemaRef;
    /// The position of the next document.
    fn position(&self) -> Position;
    /// Continues from `position` (one this source returned).
    fn seek(&mut self, position: &Position) -> Result<()>;
    /// Up to `max_rows` documents, or `None` at the end of a bounded source.
    async fn next_batch(&mut self, max_rows: usize) -> Result<Option<SourceBatch>>;
    /// Reads with `schema` from now on — the schema of the checkpoint a run resumes from, so
    /// a restarted stream reads as the first run did. A source whose schema was declared keeps
    /// its own (the default does nothing).
    fn resume_schema(&mut self, _schema: SchemaRef) {}
    /// Ends at `end` (a position this source returned) instead of reading on: for replaying
    /// what a checkpoint covers.
    fn end_at(&mut self, end: &Position) -> Result<()> {
        Err(crate::Error::config(
            "replay",
            format!("this source cannot stop at {}", end.0),
        ))
    }
    /// How far the source is behind what is available (bytes of a file, messages of a
    /// topic), if it can tell.
    fn lag(&self) -> Option<u64> {
        None
    }
    /// The lag of each partition (`"orders.v1/2"` → messages behind its end), for a source
    /// with partitions that knows them.
    fn partition_lag(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    /// Reads nothing past `end` (a position this source returned) until called with `None`:
    /// how a restart forms a logged micro-batch again, record for record.
    fn bound(&mut self, end: Option<&Position>) -> Result<()> {
        let _ = end;
        Err(crate::Error::config(
            "stream",
            "this source cannot read a micro-batch again exactly",
        ))
    }
    /// What to tell the source's system after each checkpoint, with the checkpointed position
    /// (a Kafka source commits its offsets to its consumer group); asked once, before the run.
    fn on_checkpoint(&self) -> Option<CheckpointHook> {
        None
    }
}

/// Called with the position of each checkpoint once it is saved; must not block.
pub type CheckpointHook = std::sync::Arc<dyn Fn(&Position) + Send + Sync>;

/// The Connect sink interface: accepts batches, and makes what it accepted durable in step
/// with the checkpoint.
///
/// `commit` returns the sink's durable state (say, the length of the file it appends to),
/// which the runtime stores in the checkpoint beside the source position; after a crash,
/// `restore` goes back to that state, discarding output written after it, so committed output
/// holds every document once.
#[async_trait]
pub trait Sink: Send {
    /// Writes the output of one micro-batch.
    async fn write(&mut self, batches: &[RecordBatch]) -> Result<()>;
    /// Ends the micro-batch's output (what was written is complete and visible); returns the
    /// state a checkpoint would name.
    async fn commit(&mut self) -> Result<Value>;
    /// Makes everything committed so far durable. Called before each checkpoint, so the state
    /// it names survives a crash of the machine; output committed after the last checkpoint
    /// need not (a restart discards and writes it again). Nothing to do by default.
    async fn sync(&mut self) -> Result<()> {
        Ok(())
    }
    /// Returns to a checkpointed state (output after it is discarded).
    async fn restore(&mut self, state: &Value) -> Result<()>;
    /// True for a sink that cannot discard output on `restore` and instead recognises the
    /// output it already holds by each batch's [`BatchId`] (Kafka): the runtime then logs
    /// every batch's input before writing it, and a restart forms the same batches again.
    fn recognises_output(&self) -> bool {
        false
    }
    /// Called before a micro-batch's output is written, with the batch's identity — again
    /// before each retry of it, which writes the same output anew.
    fn begin(&mut self, batch: &BatchId) {
        let _ = batch;
    }
    /// After `restore` when output written past `state` may be there (a crashed run, a failed
    /// attempt): learns which batches' output it holds, so writing them again adds nothing.
    async fn recover(&mut self, state: &Value) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

/// A micro-batch's identity: the same when a restarted run forms the batch again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchId {
    /// The job's name.
    pub job: String,
    /// The batch's number (counting every batch of the job, over all runs).
    pub number: u64,
}

/// The position a task's last checkpoint names, looked up by task id (`None`: the task has
/// no checkpoint yet). Given to a [`PartitionedSource`] so it can place a partition it is
/// handed where that partition's task stopped.
pub type TaskPositions = std::sync::Arc<dyn Fn(&str) -> Option<Position> + Send + Sync>;

/// A change in the partitions a [`PartitionedSource`] holds.
pub enum PartitionChange {
    /// Partitions now held: each with its task id (`orders.v1-3`) and a source of its own.
    Assigned(Vec<(String, Box<dyn Source>)>),
    /// Partitions being taken away: their tasks finish the batch in hand and checkpoint,
    /// then `done` is called, and only then do the partitions move.
    Revoked(Vec<String>, Box<dyn FnOnce() + Send>),
}

/// A source whose partitions a coordinator (a Kafka consumer group) hands to this process
/// and takes away again. Each partition runs as a task of its own, with its own checkpoint,
/// so several processes can share the partitions and move them between each other.
#[async_trait]
pub trait PartitionedSource: Send {
    /// The next change; `None` once the source is closed.
    async fn next_change(&mut self) -> Result<Option<PartitionChange>>;
    /// True when every partition's task ends by itself (`endAt`): the process then stops
    /// once the tasks it holds have ended and no change has come for [`Self::linger`].
    fn bounded(&self) -> bool;
    /// How long a process whose tasks have ended stays for more partitions: long enough for
    /// the coordinator to notice a member that died and hand its partitions out again.
    fn linger(&self) -> std::time::Duration;
}
