//! Transform: the compiled pipeline over each micro-batch, as a bounded table (so no
//! DataFusion operator holds output back waiting for more input — apache/datafusion#24265
//! does not arise), with a continuous `$group`'s state carried from batch to batch.
//!
//! Runs as a task of its own between two bounded queues, so fetching the next batch and
//! delivering the last one overlap with it. A failing batch is retried by the error policy;
//! after that it is failed (`failFast`), dropped (`skip`), or — `deadLetter` — split in halves
//! until the documents the pipeline fails on are found: those go to the dead-letter sink with
//! the error, the others through the pipeline as usual.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::connect::source::Position;
use crate::plan::order;
use crate::runtime::exec::fetch::Fetched;
use crate::runtime::exec::options::Counters;
use crate::runtime::metrics::StageMetrics;
use crate::runtime::policy::dead_letters::{DeadLetter, rows_as_json};
use crate::runtime::policy::error_policy::{ErrorPolicy, OnFailure, with_retries};
use crate::runtime::prepared::{BoundTable, register_numbered};
use crate::runtime::query::{PreparedQuery, StreamQuery};
use crate::runtime::state::group::ContinuousGroup;
use crate::runtime::window::WindowOperator;
use crate::{Engine, Result};

/// The table each micro-batch is registered as.
const STREAM: &str = crate::document::hidden::STREAM_TABLE;

/// One micro-batch after the pipeline.
pub(super) struct Transformed {
    pub output: Vec<RecordBatch>,
    pub dead_letters: Vec<DeadLetter>,
    pub start: Position,
    pub position: Position,
    /// Documents the pipeline processed (output or filtered).
    pub input_rows: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    /// Documents a window found late.
    pub late: u64,
    pub lag: Option<u64>,
    pub partition_lag: Vec<(String, u64)>,
    /// The operator's state after this batch: taken when a checkpoint is due after it (a
    /// window's, for its metrics, after every batch).
    pub state: Option<crate::runtime::state::keyed::Snapshot>,
    /// Rows and memory of the operator's state after this batch.
    pub state_rows: u64,
    pub state_bytes: u64,
    /// Whether a checkpoint is due after this batch (the checkpoint interval has passed, or
    /// the input ended).
    pub checkpoint: bool,
    /// Not a batch: the operator's state after the last one, sent when the input ends so the
    /// run's last checkpoint has it.
    pub closing: bool,
    pub started: Instant,
    pub transform_time: Duration,
    /// What the plan's operators did.
    pub stages: Vec<StageMetrics>,
}

impl Transformed {
    /// Nothing transformed.
    fn empty() -> Transformed {
        Transformed {
            output: Vec::new(),
            dead_letters: Vec::new(),
            start: Position(serde_json::Value::Null),
            position: Position(serde_json::Value::Null),
            input_rows: 0,
            dead_lettered: 0,
            skipped: 0,
            late: 0,
            lag: None,
            partition_lag: Vec::new(),
            state: None,
            state_rows: 0,
            state_bytes: 0,
            checkpoint: false,
            closing: false,
            started: Instant::now(),
            transform_time: Duration::ZERO,
            stages: Vec::new(),
        }
    }
}

/// The transform step's own state.
pub(super) struct Transformer {
    pub engine: Engine,
    pub query: StreamQuery,
    pub operator: Option<Operator>,
    pub policy: ErrorPolicy,
    /// What happens to a record the stream cannot take ([`ErrorPolicy::for_records`]).
    pub records: OnFailure,
    /// The hidden document number of the next document (order is the source's).
    pub next_seq: i64,
    /// What the plan's operators did in the batch in hand.
    pub stages: Vec<StageMetrics>,
    /// Whether the batch in hand is the source's last (windows are flushed).
    pub end_of_input: bool,
    /// Late and untimed documents of the batch in hand (from a window).
    pub side: Vec<DeadLetter>,
    /// Processing time, for windows.
    pub clock: std::sync::Arc<dyn crate::runtime::window::clock::Clock>,
    /// The clock's time when the batch in hand arrived.
    pub now: i64,
    /// The query planned once over the micro-batches (a document-by-document pipeline).
    pub prepared: Option<PreparedQuery>,
    /// The table a continuous `$group`'s plans read the micro-batch from.
    pub bound: Option<std::sync::Arc<BoundTable>>,
    /// Checkpoint at most this often (`None`: after every batch), and when the last was due.
    pub checkpoint_interval: Option<Duration>,
    pub last_checkpoint: Instant,
    /// Where the last batch ended.
    pub last_position: Option<Position>,
}

/// The operator whose state a stream carries from batch to batch.
pub enum Operator {
    Group(ContinuousGroup),
    Window(WindowOperator),
}

impl Operator {
    /// What kind of operator it is, as a checkpoint records it.
    pub fn kind(&self) -> &'static str {
        match self {
            Operator::Group(_) => "continuous $group",
            Operator::Window(w) => w.kind(),
        }
    }

    /// Its state now, for a checkpoint.
    pub fn snapshot(&self) -> Result<crate::runtime::state::keyed::Snapshot> {
        match self {
            Operator::Group(g) => Ok(g.snapshot()),
            Operator::Window(w) => w.snapshot(),
        }
    }

    /// Back to a checkpoint's state.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Operator::Group(g) => g.restore_state(bytes),
            Operator::Window(w) => w.restore_state(bytes),
        }
    }

    /// Upserts a checkpoint's delta (the rows changed after the state restored last).
    pub fn apply_state_delta(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Operator::Group(g) => g.apply_state_delta(bytes),
            // Window state is always checkpointed whole.
            Operator::Window(_) => Err(crate::Error::input(
                "checkpoint",
                "it holds changes to window state, which is checkpointed whole: start with a new checkpoint store, or run with --reset-checkpoint",
            )),
        }
    }
}

impl Transformer {
    /// Transforms what arrives on `rx` into `tx` until `rx` ends or `tx` goes away; an error
    /// is passed on behind the batches before it.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Result<Fetched>>,
        tx: mpsc::Sender<Result<Transformed>>,
        counters: std::sync::Arc<Counters>,
    ) {
        let mut n = 0u64;
        while let Some(item) = rx.recv().await {
            n += 1;
            let mut marker = false;
            let out = match item {
                Ok(f) => {
                    marker = f.batch.num_rows() == 0 && f.rejected.is_empty();
                    let span =
                        tracing::debug_span!("transform", batch = n, rows = f.batch.num_rows());
                    self.transform(f, &counters).instrument(span).await
                }
                Err(e) => Err(e),
            };
            // The end-of-input marker is passed on only when flushing windows gave something.
            if marker
                && let Ok(t) = &out
                && t.output.is_empty()
                && t.dead_letters.is_empty()
            {
                continue;
            }
            let failed = out.is_err();
            let waiting = Instant::now();
            if tx.send(out).await.is_err() || failed {
                return;
            }
            counters.add_wait(waiting.elapsed());
        }
        // The run is stopping with aggregates of a continuous $group held: they are merged
        // and their upserts delivered as one more commit (at the last batch's position, no
        // input of its own), checkpointed with the state they give.
        if let Some(Operator::Group(g)) = &mut self.operator
            && g.held_rows() > 0
            && let Some(position) = self.last_position.clone()
        {
            self.stages.clear();
            let began = Instant::now();
            let out = g
                .merge(&self.engine, &mut self.stages)
                .await
                .map(|output| Transformed {
                    output,
                    start: position.clone(),
                    position,
                    state: Some(g.snapshot()),
                    state_rows: g.state_rows(),
                    state_bytes: g.state_bytes(),
                    checkpoint: true,
                    transform_time: began.elapsed(),
                    stages: std::mem::take(&mut self.stages),
                    ..Transformed::empty()
                });
            let failed = out.is_err();
            if tx.send(out).await.is_err() || failed {
                return;
            }
        }
        // The input ended (or the run is stopping): the state after the last batch, for the
        // closing checkpoint.
        if let Some(op) = &self.operator {
            let closing = op.snapshot().map(|s| Transformed {
                state_rows: s.rows(),
                state_bytes: s.bytes(),
                state: Some(s),
                closing: true,
                ..Transformed::empty()
            });
            let _ = tx.send(closing).await;
        }
    }

    async fn transform(&mut self, f: Fetched, counters: &Counters) -> Result<Transformed> {
        let began = Instant::now();
        self.stages.clear();
        let rows = f.batch.num_rows();
        let mut dead_letters: Vec<DeadLetter> = Vec::new();
        let mut skipped = 0u64;
        if self.records == OnFailure::Skip {
            skipped += f.rejected.len() as u64;
        } else {
            dead_letters.extend(f.rejected.iter().map(DeadLetter::unreadable));
        }
        let seq = self.next_seq;
        self.next_seq += rows as i64;
        let mut input_rows = rows as u64;
        let windowed = matches!(self.operator, Some(Operator::Window(_)));
        self.end_of_input = f.last;
        self.side.clear();
        self.now = self.clock.now_ms();
        // A window needs each document's source partition (for its watermark).
        let batch = if windowed {
            crate::runtime::window::watermark::with_partitions(&f.batch, f.partitions.as_deref())?
        } else {
            f.batch.clone()
        };
        let output = if rows == 0 && !(windowed && (f.last || f.tick)) {
            Vec::new()
        } else {
            let tried: Result<_> = with_retries!(
                self.policy,
                "micro-batch",
                counters.retries,
                self.once(&batch, seq).await
            );
            match tried {
                Ok(out) => out,
                // An enrich call that failed for some documents under `onError:
                // "deadLetter"`: those documents go to the dead-letter sink whatever the
                // policy for failing batches says.
                Err(e)
                    if e.is_document_failure()
                        && rows > 0
                        && self.records == OnFailure::DeadLetter =>
                {
                    let (out, bad) = self.isolate(&batch, seq).await;
                    let docs = rows_as_json(&f.batch)?;
                    input_rows -= bad.len() as u64;
                    for (i, err) in bad {
                        // Another failure met on the way fails the batch.
                        if !err.is_document_failure() {
                            return Err(err);
                        }
                        dead_letters.push(DeadLetter {
                            reason: one_line(&err.to_string()),
                            stage: "enrich",
                            position: json!({"from": f.start.0, "document": i}),
                            raw: docs[i].clone(),
                        });
                    }
                    out
                }
                Err(e) => {
                    counters.failures.fetch_add(1, Ordering::Relaxed);
                    match self.policy.on_failure {
                        OnFailure::FailFast => return Err(e),
                        OnFailure::Skip => {
                            tracing::warn!(error = %e, documents = rows, "micro-batch skipped");
                            skipped += rows as u64;
                            input_rows = 0;
                            Vec::new()
                        }
                        // No document to blame: closing windows on a tick or at the end of
                        // the input failed.
                        OnFailure::DeadLetter if rows == 0 => return Err(e),
                        OnFailure::DeadLetter => {
                            let (out, bad) = self.isolate(&batch, seq).await;
                            let docs = rows_as_json(&f.batch)?;
                            for (i, err) in &bad {
                                dead_letters.push(DeadLetter {
                                    reason: one_line(&err.to_string()),
                                    stage: "pipeline",
                                    position: json!({"from": f.start.0, "document": i}),
                                    raw: docs[*i].clone(),
                                });
                            }
                            input_rows -= bad.len() as u64;
                            out
                        }
                    }
                }
            }
        };
        // Late and untimed documents of a window: late ones are counted (and dead-lettered
        // under deadLetter); untimed ones follow the policy like unreadable records.
        let mut late = 0u64;
        let mut dead_lettered = dead_letters.len() as u64;
        let drop_late = matches!(&self.operator, Some(Operator::Window(w)) if w.drops_late());
        for letter in std::mem::take(&mut self.side) {
            let is_late = letter.reason.starts_with("late");
            let dead = self.records == OnFailure::DeadLetter && !(is_late && drop_late);
            if is_late {
                late += 1;
            } else {
                match self.records {
                    OnFailure::FailFast => {
                        return Err(crate::Error::input(
                            format!("window input {}", letter.position),
                            format!("{} (errorPolicy failFast)", letter.reason),
                        ));
                    }
                    OnFailure::Skip => skipped += 1,
                    OnFailure::DeadLetter => dead_lettered += 1,
                }
                input_rows -= 1;
            }
            if dead {
                dead_letters.push(letter);
            }
        }
        // The state is taken only when a checkpoint will save it: a continuous $group's groups
        // can be many. A window's is taken after every batch (its metrics come from it).
        let checkpoint = f.last
            || self
                .checkpoint_interval
                .is_none_or(|every| self.last_checkpoint.elapsed() >= every);
        if checkpoint {
            self.last_checkpoint = Instant::now();
        }
        // A continuous $group holding micro-batches' aggregates merges them when the state is
        // saved (a checkpoint has all of it), or when it holds many. Only a bug or memory
        // running out fails a merge: it is retried when that may help, else it fails the run
        // (the batches it held are read again from the last checkpoint).
        let mut output = output;
        if let Some(Operator::Group(g)) = &mut self.operator
            && g.held_rows() > 0
            && (checkpoint || g.held_rows() >= crate::runtime::exec::options::HELD_ROWS)
        {
            let stages = &mut self.stages;
            let merged: Result<_> = with_retries!(
                self.policy,
                "the $group merge",
                counters.retries,
                g.merge(&self.engine, stages).await
            );
            output.extend(merged?);
        }
        self.last_position = Some(f.position.clone());
        let state = match &self.operator {
            Some(Operator::Group(_)) if !checkpoint => None,
            Some(op) => Some(op.snapshot()?),
            None => None,
        };
        let (state_rows, state_bytes) = match (&state, &self.operator) {
            (Some(s), _) => (s.rows(), s.bytes()),
            (None, Some(Operator::Group(g))) => (g.state_rows(), g.state_bytes()),
            _ => (0, 0),
        };
        Ok(Transformed {
            output,
            dead_lettered,
            late,
            dead_letters,
            start: f.start,
            position: f.position,
            input_rows,
            skipped,
            lag: f.lag,
            partition_lag: f.partition_lag,
            state,
            state_rows,
            state_bytes,
            checkpoint,
            closing: false,
            started: f.started,
            transform_time: began.elapsed(),
            stages: std::mem::take(&mut self.stages),
        })
    }

    /// The pipeline over `batch`, whose first document is number `seq`. Plans are made at the
    /// first batch and kept (`runtime::prepared`); a batch of another schema plans again.
    async fn once(&mut self, batch: &RecordBatch, seq: i64) -> Result<Vec<RecordBatch>> {
        let stages = &mut self.stages;
        let schema = batch.schema();
        match &mut self.operator {
            Some(Operator::Group(g)) => {
                let bound = match &self.bound {
                    Some(t) if t.rows_schema() == &schema => t.clone(),
                    _ => {
                        let t = register_numbered(self.engine.context(), STREAM, schema)?;
                        self.bound = Some(t.clone());
                        t
                    }
                };
                bound.bind(vec![batch.clone()], seq);
                let out = g
                    .step(&self.engine, &bound, STREAM, batch.num_rows(), stages)
                    .await;
                bound.clear();
                out
            }
            Some(Operator::Window(w)) => {
                order::register_ordered_from(
                    self.engine.context(),
                    STREAM,
                    schema,
                    vec![vec![batch.clone()]],
                    seq,
                )?;
                let out = w
                    .step(
                        &self.engine,
                        STREAM,
                        batch.num_rows(),
                        self.end_of_input,
                        self.now,
                        stages,
                    )
                    .await?;
                self.side.extend(out.late);
                self.side.extend(out.untimed);
                Ok(out.output)
            }
            None => {
                if !self
                    .prepared
                    .as_ref()
                    .is_some_and(|p| p.schema() == &schema)
                {
                    self.prepared =
                        Some(PreparedQuery::new(&self.engine, &self.query, STREAM, schema).await?);
                }
                match self.prepared.as_mut() {
                    Some(p) => p.run(batch, seq, stages).await,
                    None => Err(crate::Error::internal("the stream's query was not planned")),
                }
            }
        }
    }

    /// Finds the documents of a failing batch that the pipeline fails on by halving it: the
    /// output of the others (in order), and each failing document's index with its error.
    async fn isolate(
        &mut self,
        batch: &RecordBatch,
        seq: i64,
    ) -> (Vec<RecordBatch>, Vec<(usize, crate::Error)>) {
        let mut output = Vec::new();
        let mut bad = Vec::new();
        // Left halves first, so the output keeps the source's order.
        let mut todo = vec![(0usize, batch.num_rows())];
        while let Some((offset, len)) = todo.pop() {
            match self
                .once(&batch.slice(offset, len), seq + offset as i64)
                .await
            {
                Ok(out) => output.extend(out),
                Err(e) if len == 1 => bad.push((offset, e)),
                Err(_) => {
                    let half = len / 2;
                    todo.push((offset + half, len - half));
                    todo.push((offset, half));
                }
            }
        }
        (output, bad)
    }
}

/// An error message on one line (dead letters are one JSON document each).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
