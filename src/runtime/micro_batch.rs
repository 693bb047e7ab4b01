//! The micro-batch loop: fetch up to `micro_batch_size` documents, run the compiled pipeline
//! over them as a bounded table, deliver the output, commit it with the source position.
//!
//! Each micro-batch is bounded input to DataFusion, so no operator holds output back waiting
//! for more (the unbounded-input pitfall of apache/datafusion#24265 does not arise). The
//! hidden document numbering continues across batches, so document order is that of the
//! source. Stages that work document by document stream, and a `$group` at the end runs
//! continuously (upserts keyed by `_id`, `runtime::group_state`); the others need every
//! document first and are rejected naming their path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use super::checkpoint::{Checkpoint, CheckpointStore};
use super::group_state::ContinuousGroup;
use super::metrics::{BatchMetrics, MetricsListener};
use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use crate::connect::source::{Position, Rejected, Sink, Source};
use crate::dsl::{Pipeline, StageKind};
use crate::plan::order;
use crate::{Engine, Error, Result};

/// How the loop runs.
#[derive(Clone)]
pub struct RuntimeOptions {
    /// Documents per micro-batch (at most).
    pub micro_batch_size: usize,
    /// Stop after this many micro-batches in this run (a graceful stop: the last one is
    /// committed).
    pub max_batches: Option<u64>,
    /// Set to stop gracefully: the loop finishes the batch in hand, checkpoints, and returns.
    pub stop: Arc<AtomicBool>,
    /// What happens to records the source cannot read.
    pub error_policy: ErrorPolicy,
    /// Checkpoint at most this often (`None`: after every micro-batch). The last batch of a
    /// run is always checkpointed.
    pub checkpoint_interval: Option<std::time::Duration>,
    /// The stream's id, for metrics and logs.
    pub pipeline_id: String,
    /// Told about every committed micro-batch.
    pub listeners: Vec<Arc<dyn MetricsListener>>,
}

/// What happens to a record the source cannot read (malformed JSON, a value that does not
/// fit the schema).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Stop the run with an error naming the record's position (the default).
    #[default]
    FailFast,
    /// Count it as skipped and go on.
    Skip,
    /// Write it, with the reason and its position, to the dead-letter sink, and go on.
    DeadLetter,
}

impl ErrorPolicy {
    /// Parses a job file's `errorPolicy`.
    pub fn parse(s: &str) -> Option<ErrorPolicy> {
        Some(match s {
            "failFast" => ErrorPolicy::FailFast,
            "skip" | "skipAndContinue" => ErrorPolicy::Skip,
            "deadLetter" => ErrorPolicy::DeadLetter,
            _ => return None,
        })
    }
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            micro_batch_size: 8192,
            max_batches: None,
            stop: Arc::new(AtomicBool::new(false)),
            error_policy: ErrorPolicy::FailFast,
            checkpoint_interval: None,
            pipeline_id: "stream".to_string(),
            listeners: Vec::new(),
        }
    }
}

/// What a run did. Every record read is accounted for: `input_rows` documents went into the
/// pipeline (which output or filtered them), `dead_lettered` and `skipped` records did not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    pub batches: u64,
    pub input_rows: u64,
    pub output_rows: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
}

/// The table each micro-batch is registered as.
const STREAM: &str = "__fluxion_stream";

/// Saves a checkpoint (with the `$group` state, if any).
fn save(
    checkpoints: &mut dyn CheckpointStore,
    group: Option<&ContinuousGroup>,
    source: Value,
    sink: Value,
    batches: u64,
) -> Result<()> {
    let state = group.map(|g| g.state_bytes()).transpose()?;
    checkpoints.save(&Checkpoint {
        source,
        sink,
        batches,
        state,
    })
}

/// The main sink's and the dead-letter sink's states in a checkpoint's `sink`.
fn split_sink_state(state: &Value, with_dead_letters: bool) -> (Value, Value) {
    if with_dead_letters {
        (
            state.get("out").cloned().unwrap_or(Value::Null),
            state.get("deadLetter").cloned().unwrap_or(Value::Null),
        )
    } else {
        (state.clone(), Value::Null)
    }
}

/// Errors unless every stage of `pipeline` can run on a stream (document by document).
pub fn check_streamable(pipeline: &Pipeline) -> Result<()> {
    for stage in &pipeline.stages {
        let ok = matches!(
            stage.kind,
            StageKind::Match(_)
                | StageKind::Project(_)
                | StageKind::AddFields(_)
                | StageKind::Unset(_)
                | StageKind::ReplaceRoot(_)
                | StageKind::Unwind(_)
                | StageKind::Lookup(_)
        );
        if !ok {
            return Err(stage.path.err(
                "cannot run on a stream yet: it needs every document before it can emit (streaming runs stages that work document by document)",
            ));
        }
    }
    Ok(())
}

/// Runs `pipeline` over `source` into `sink` until the source ends, `max_batches`, or a stop;
/// resumes from the last checkpoint in `checkpoints`, and checkpoints every committed batch.
pub async fn run(
    engine: &Engine,
    pipeline: &Pipeline,
    source: &mut dyn Source,
    sink: &mut dyn Sink,
    checkpoints: &mut dyn CheckpointStore,
    options: &RuntimeOptions,
) -> Result<RunStats> {
    run_with_dead_letters(engine, pipeline, source, sink, None, checkpoints, options).await
}

/// The dead-letter record of `r` from `source`.
fn dead_letter_batch(rejected: &[Rejected], source: &str) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("reason", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("position", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]));
    let col = |f: &dyn Fn(&Rejected) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rejected.iter().map(f)))
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![
            col(&|r| r.reason.clone()),
            col(&|_| source.to_string()),
            col(&|r| r.position.0.to_string()),
            col(&|r| r.raw.clone()),
        ],
    )?)
}

/// [`run`], with a dead-letter sink for [`ErrorPolicy::DeadLetter`] (committed and
/// checkpointed in step with the main sink).
#[allow(clippy::too_many_arguments)]
pub async fn run_with_dead_letters(
    engine: &Engine,
    pipeline: &Pipeline,
    source: &mut dyn Source,
    sink: &mut dyn Sink,
    mut dead_letter: Option<&mut dyn Sink>,
    checkpoints: &mut dyn CheckpointStore,
    options: &RuntimeOptions,
) -> Result<RunStats> {
    if options.error_policy == ErrorPolicy::DeadLetter && dead_letter.is_none() {
        return Err(Error::config(
            "stream",
            "errorPolicy \"deadLetter\" needs a deadLetter sink",
        ));
    }
    // A `$group` at the end runs continuously; everything else document by document.
    let mut group = ContinuousGroup::plan(pipeline)?;
    match &group {
        Some(_) => super::group_state::check_prefix(pipeline)?,
        None => check_streamable(pipeline)?,
    }
    let mut committed = 0u64;
    // Back to the last checkpoint: the source where it was, the sink without anything written
    // after it (a fresh run starts the sink empty).
    match checkpoints.load()? {
        Some(cp) => {
            let (main, dead) = split_sink_state(&cp.sink, dead_letter.is_some());
            sink.restore(&main).await?;
            if let Some(d) = dead_letter.as_deref_mut() {
                d.restore(&dead).await?;
            }
            if let Some(g) = group.as_mut() {
                match &cp.state {
                    Some(bytes) => g.restore_state(bytes)?,
                    None => {
                        return Err(Error::config(
                            "stream",
                            "the checkpoint holds no $group state (it was written by a pipeline without $group): remove it to start over",
                        ));
                    }
                }
            }
            source.seek(&Position(cp.source))?;
            committed = cp.batches;
        }
        None => {
            sink.restore(&Value::Null).await?;
            if let Some(d) = dead_letter.as_deref_mut() {
                d.restore(&Value::Null).await?;
            }
        }
    }
    let schema = source.schema();
    let mut stats = RunStats::default();
    let mut pending: Option<(Value, Value, u64)> = None;
    let mut last_checkpoint = std::time::Instant::now();
    let mut next_seq = 0i64;
    while options.max_batches.is_none_or(|m| stats.batches < m)
        && !options.stop.load(Ordering::SeqCst)
    {
        let started = std::time::Instant::now();
        let before = stats.clone();
        let Some(input) = source.next_batch(options.micro_batch_size).await? else {
            break;
        };
        let rows = input.batch.num_rows();
        if !input.rejected.is_empty() {
            match options.error_policy {
                ErrorPolicy::FailFast => {
                    let r = &input.rejected[0];
                    return Err(Error::input(
                        format!("source position {}", r.position.0),
                        format!("{} (errorPolicy failFast)", r.reason),
                    ));
                }
                ErrorPolicy::Skip => stats.skipped += input.rejected.len() as u64,
                ErrorPolicy::DeadLetter => {
                    let d = dead_letter.as_deref_mut().expect("checked above");
                    d.write(&[dead_letter_batch(&input.rejected, "source")?])
                        .await?;
                    stats.dead_lettered += input.rejected.len() as u64;
                }
            }
        }
        if rows == 0 && input.rejected.is_empty() {
            // A following source with nothing new.
            continue;
        }
        order::register_ordered_from(
            engine.context(),
            STREAM,
            schema.clone(),
            vec![vec![input.batch]],
            next_seq,
        )?;
        next_seq += rows as i64;
        let output = match &mut group {
            Some(g) => g.step(engine, STREAM).await?,
            None => engine.pipeline(STREAM, pipeline).await?.collect().await?,
        };
        stats.batches += 1;
        stats.input_rows += rows as u64;
        stats.output_rows += output.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        sink.write(&output).await?;
        let mut sink_state = sink.commit().await?;
        if let Some(d) = dead_letter.as_deref_mut() {
            let dead = d.commit().await?;
            sink_state = serde_json::json!({ "out": sink_state, "deadLetter": dead });
        }
        committed += 1;
        pending = Some((input.position.0, sink_state, committed));
        let due = options
            .checkpoint_interval
            .is_none_or(|every| last_checkpoint.elapsed() >= every);
        if due && let Some((source_at, sink_at, batches)) = pending.take() {
            save(checkpoints, group.as_ref(), source_at, sink_at, batches)?;
            last_checkpoint = std::time::Instant::now();
        }
        let metrics = BatchMetrics {
            pipeline: options.pipeline_id.clone(),
            input_rows: stats.input_rows - before.input_rows,
            output_rows: stats.output_rows - before.output_rows,
            dead_lettered: stats.dead_lettered - before.dead_lettered,
            skipped: stats.skipped - before.skipped,
            duration: started.elapsed(),
            state_rows: group.as_ref().map_or(0, |g| g.state_rows()),
        };
        tracing::debug!(
            pipeline = %metrics.pipeline,
            input = metrics.input_rows,
            output = metrics.output_rows,
            ms = metrics.duration.as_millis() as u64,
            "micro-batch committed"
        );
        for l in &options.listeners {
            l.on_batch(&metrics);
        }
    }
    // Whatever was committed since the last checkpoint is checkpointed before returning.
    if let Some((source_at, sink_at, batches)) = pending.take() {
        save(checkpoints, group.as_ref(), source_at, sink_at, batches)?;
    }
    Ok(stats)
}
