//! The micro-batch loop: fetch → transform → deliver → checkpoint → observe.
//!
//! Three steps joined by bounded queues ([`fetch`](crate::runtime::exec::fetch) reads micro-batches from the
//! source; [`transform`](crate::runtime::exec::transform) runs the compiled pipeline over each, as a task of
//! its own; [`deliver`](crate::runtime::exec::deliver) writes and commits the output), then the checkpoint —
//! source position, sink state, operator state — and the metrics listeners. When a step falls
//! behind, the queue before it fills and the step before it waits (back-pressure, counted in
//! the metrics), so memory stays bounded by the queue capacities.
//!
//! Each micro-batch is bounded input to DataFusion, so no operator holds output back waiting
//! for more (the unbounded-input pitfall of apache/datafusion#24265 does not arise). The
//! hidden document numbering continues across batches, so document order is that of the
//! source. Stages that work document by document stream, and a `$group` at the end runs
//! continuously (upserts keyed by `_id`, `runtime::state::group`); the others need every
//! document first and are rejected naming their path.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::connect::source::{CheckpointHook, Position, Sink, Source};
use crate::runtime::exec::deliver::Deliverer;
use crate::runtime::exec::options::Counters;
pub use crate::runtime::exec::options::{GroupUpserts, RuntimeOptions};
use crate::runtime::exec::transform::{Operator, Transformer};
use crate::runtime::metrics::BatchMetrics;
use crate::runtime::policy::error_policy::{ErrorPolicy, OnFailure, with_retries};
use crate::runtime::query::{StreamQuery, check_sql, check_stages};
use crate::runtime::state::checkpoint::{Checkpoint, CheckpointStore, LoggedBatch, PlanMark};
use crate::runtime::state::group::ContinuousGroup;
use crate::runtime::state::keyed::{Mark, Snapshot};
use crate::runtime::window::WindowOperator;
use crate::{Engine, Error, Result};

/// What a run did. Every record read is accounted for: `input_rows` documents went through
/// the pipeline (which output or filtered them); `dead_lettered` records (unreadable, or
/// failing in the pipeline) went to the dead-letter sink; `skipped` ones were dropped by the
/// policy. Of the output, `output_rows` documents were delivered and `undelivered` ones were
/// refused by a failing sink and then dropped or dead-lettered by the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    pub batches: u64,
    pub input_rows: u64,
    pub output_rows: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    pub undelivered: u64,
    /// Documents a window found late (counted among `input_rows`; dead-lettered under the
    /// `deadLetter` policy).
    pub late: u64,
    /// Attempts repeated by the retry policy.
    pub retries: u64,
    /// Failures that used up their retries (then handled by the policy).
    pub failures: u64,
    /// Checkpoints saved, the time they took together, and the longest.
    pub checkpoints: u64,
    pub checkpoint_time: Duration,
    pub slowest_checkpoint: Duration,
}

impl RunStats {
    /// Adds `other`'s counts (another task's of the same stream).
    pub fn add(&mut self, other: &RunStats) {
        self.batches += other.batches;
        self.input_rows += other.input_rows;
        self.output_rows += other.output_rows;
        self.dead_lettered += other.dead_lettered;
        self.skipped += other.skipped;
        self.undelivered += other.undelivered;
        self.late += other.late;
        self.retries += other.retries;
        self.failures += other.failures;
        self.checkpoints += other.checkpoints;
        self.checkpoint_time += other.checkpoint_time;
        self.slowest_checkpoint = self.slowest_checkpoint.max(other.slowest_checkpoint);
    }

    fn checkpointed(&mut self, took: Duration) {
        self.checkpoints += 1;
        self.checkpoint_time += took;
        self.slowest_checkpoint = self.slowest_checkpoint.max(took);
    }
}

/// What the checkpoints so far wrote of the operator state, to decide what the next writes.
#[derive(Debug, Default)]
struct StateWrites {
    /// Where the state stood at the last checkpoint (`None`: write the whole state).
    mark: Option<Mark>,
    /// Rows of the whole state last written, and of the deltas written since.
    base_rows: u64,
    delta_rows: u64,
    deltas: usize,
}

/// Deltas after a whole state, at most: restoring reads them all.
const MAX_DELTAS: usize = 256;

impl StateWrites {
    /// After a checkpoint of the whole `state`.
    fn whole(state: &Snapshot, deltas: usize) -> StateWrites {
        StateWrites {
            mark: state.mark(),
            base_rows: state.rows(),
            delta_rows: 0,
            deltas,
        }
    }

    /// The rows of `state` changed since the last checkpoint, when writing only those is
    /// right: the state can tell, and the deltas (which a restore upserts one after the other)
    /// stay fewer than [`MAX_DELTAS`] and smaller than the whole state last written.
    fn delta(&self, state: &Snapshot) -> Option<Snapshot> {
        let delta = state.since(self.mark?)?;
        (self.deltas < MAX_DELTAS && self.delta_rows + delta.rows() <= self.base_rows)
            .then_some(delta)
    }
}

/// Saves a checkpoint (with the operator state, if any: the rows changed since the last
/// checkpoint, or all of them), retried by the error policy; returns how long it took.
async fn save(
    checkpoints: &mut dyn CheckpointStore,
    (mut checkpoint, state): (Checkpoint, Option<Snapshot>),
    policy: &ErrorPolicy,
    counters: &Counters,
    writes: &mut StateWrites,
    hook: Option<&CheckpointHook>,
) -> Result<Duration> {
    let began = Instant::now();
    let position = Position(checkpoint.source.clone());
    let told = || {
        if let Some(h) = hook {
            h(&position);
        }
    };
    let fail = |e: Error| {
        counters.failures.fetch_add(1, Ordering::Relaxed);
        e
    };
    if let Some(s) = &state
        && let Some(delta) = writes.delta(s)
    {
        let bytes = delta.to_ipc()?;
        let saved: Result<bool> = with_retries!(
            policy,
            "checkpoint",
            counters.retries,
            checkpoints.save_delta(&checkpoint, bytes.clone()).await
        );
        if saved.map_err(fail)? {
            writes.mark = s.mark();
            writes.delta_rows += delta.rows();
            writes.deltas += 1;
            told();
            return Ok(began.elapsed());
        }
    }
    checkpoint.state = state.as_ref().map(Snapshot::to_ipc).transpose()?;
    let saved: Result<()> = with_retries!(
        policy,
        "checkpoint",
        counters.retries,
        checkpoints.save(&checkpoint).await
    );
    saved.map_err(fail)?;
    *writes = state
        .as_ref()
        .map_or_else(StateWrites::default, |s| StateWrites::whole(s, 0));
    told();
    Ok(began.elapsed())
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

/// Runs `pipeline` over `source` into `sink` until the source ends, `max_batches`, or a stop;
/// resumes from the last checkpoint in `checkpoints`, and checkpoints every committed batch.
pub async fn run(
    engine: &Engine,
    pipeline: impl Into<StreamQuery>,
    source: &mut dyn Source,
    sink: &mut dyn Sink,
    checkpoints: &mut dyn CheckpointStore,
    options: &RuntimeOptions,
) -> Result<RunStats> {
    run_with_dead_letters(engine, pipeline, source, sink, None, checkpoints, options).await
}

/// [`run`], with a dead-letter sink for [`ErrorPolicy::DeadLetter`] (committed and
/// checkpointed in step with the main sink).
#[allow(clippy::too_many_arguments)]
pub async fn run_with_dead_letters(
    engine: &Engine,
    query: impl Into<StreamQuery>,
    source: &mut dyn Source,
    sink: &mut dyn Sink,
    dead_letter: Option<&mut dyn Sink>,
    checkpoints: &mut dyn CheckpointStore,
    options: &RuntimeOptions,
) -> Result<RunStats> {
    if options.error_policy.on_failure == OnFailure::DeadLetter && dead_letter.is_none() {
        return Err(Error::config(
            "stream",
            "errorPolicy \"deadLetter\" needs a deadLetter sink",
        ));
    }
    let records = options.error_policy.for_records(dead_letter.is_some());
    let query = query.into();
    // A `$group` at the end runs continuously; everything else document by document.
    let mut operator = match &query {
        StreamQuery::Pipeline(pipeline) => {
            if let Some(w) = WindowOperator::plan(pipeline, options.time_field.as_ref())? {
                Some(Operator::Window(w))
            } else {
                let group = ContinuousGroup::plan(pipeline)?;
                match &group {
                    Some(_) => crate::runtime::state::group::check_prefix(pipeline)?,
                    None => check_stages(pipeline)?,
                }
                group.map(Operator::Group)
            }
        }
        StreamQuery::Sql { sql, table } => match crate::runtime::window::sql::parse(sql)? {
            Some(w) => Some(Operator::Window(WindowOperator::plan_sql(&w, table)?)),
            None => {
                let empty =
                    datafusion::arrow::record_batch::RecordBatch::new_empty(source.schema());
                run_once_check(engine, sql, table, &empty).await?;
                None
            }
        },
    };
    let plan = PlanMark {
        operator: operator
            .as_ref()
            .map_or(crate::runtime::state::checkpoint::STATELESS, Operator::kind)
            .to_string(),
        fingerprint: query.fingerprint(),
    };
    let mut committed = 0u64;
    let mut sink_state = (Value::Null, Value::Null);
    let mut writes = StateWrites::default();
    // Back to the last checkpoint: the source where it was, the sink without anything written
    // after it (a fresh run starts the sink empty).
    if let Some(cp) = checkpoints.load().await? {
        if let Some(written) = &cp.plan {
            plan.check(written, &checkpoints.describe())?;
        }
        sink_state = split_sink_state(&cp.sink, dead_letter.is_some());
        if let Some(g) = operator.as_mut() {
            match &cp.state {
                Some(bytes) => {
                    g.restore_state(bytes)?;
                    for delta in &cp.deltas {
                        g.apply_state_delta(delta)?;
                    }
                    // What the store holds is the state now: the next checkpoint can follow it.
                    writes = StateWrites::whole(&g.snapshot()?, cp.deltas.len());
                }
                None => {
                    return Err(Error::config(
                        "stream",
                        "the checkpoint holds no operator state (it was written by a pipeline without $group or window): remove it to start over",
                    ));
                }
            }
        }
        if let Some(schema) = &cp.schema {
            source.resume_schema(schema.clone());
        }
        source.seek(&Position(cp.source))?;
        committed = cp.batches;
    }
    // A sink that recognises its output instead of discarding it gets the batches of a
    // crashed run formed again, input for input, from the batches logged before them.
    let recognises = sink.recognises_output();
    let mut again = std::collections::VecDeque::new();
    if recognises {
        let logged = checkpoints.logged_batches(committed).await?;
        let here = source.position();
        match logged.first() {
            Some(first) if first.start != here.0 => tracing::warn!(
                "the logged micro-batches start at {}, not where the checkpoint left off ({}): not formed again",
                first.start,
                here.0
            ),
            _ => again.extend(logged.into_iter().map(|b| Position(b.end))),
        }
    }
    let mut deliverer = Deliverer {
        sink,
        dead_letter,
        committed: sink_state,
        policy: options.error_policy,
        job: options.pipeline_id.clone(),
    };
    deliverer.restore().await?;
    if !again.is_empty() {
        deliverer.recover().await?;
    }
    // A continuous $group holds micro-batches' aggregates until a checkpoint when
    // checkpoints are spaced out — unless the sink recognises its output after a crash: the
    // batches formed again must then give the same output each, which merges at times chosen
    // by the clock would not.
    if let Some(Operator::Group(g)) = operator.as_mut() {
        g.hold(
            options.checkpoint_interval.is_some()
                && options.group_upserts == GroupUpserts::AtCheckpoint
                && !recognises,
        );
    }
    let counters = Arc::new(Counters::default());
    let schema = source.schema();
    let hook = source.on_checkpoint();
    let ticks = match &operator {
        Some(Operator::Window(w)) if w.needs_ticks() => Some(options.tick_interval),
        _ => None,
    };
    let (fetched_tx, fetched_rx) = mpsc::channel(options.source_queue_capacity.max(1));
    let (done_tx, mut done_rx) = mpsc::channel(options.queue_capacity.max(1));
    let stateful = operator.is_some();
    let transformer = Transformer {
        engine: engine.clone(),
        query,
        operator,
        policy: options.error_policy,
        records,
        next_seq: 0,
        stages: Vec::new(),
        end_of_input: false,
        side: Vec::new(),
        clock: options.clock.clone(),
        now: 0,
        prepared: None,
        bound: None,
        checkpoint_interval: options.checkpoint_interval,
        last_checkpoint: Instant::now(),
        last_position: None,
    };
    // The transform step runs on a thread of its own (driven there, on the runtime, by
    // `Handle::block_on`), not as a task: a task woken by a task is run next by the same
    // worker thread (tokio's LIFO slot, which other workers cannot steal from), so passing
    // every micro-batch from step to step would run the steps one after the other on one
    // core instead of side by side.
    let runtime = tokio::runtime::Handle::current();
    let counted = counters.clone();
    let transform = tokio::task::spawn_blocking(move || {
        runtime.block_on(transformer.run(fetched_rx, done_tx, counted))
    });
    let fetching = crate::runtime::exec::fetch::fetch(
        source, fetched_tx, options, &counters, ticks, records, again,
    );
    let delivering = async {
        let mut stats = RunStats::default();
        let mut pending: Option<(Checkpoint, Option<Snapshot>)> = None;
        let mut seen = (0u64, 0u64, 0u64);
        let result: Result<()> = async {
            while let Some(item) = done_rx.recv().await {
                let t = item?;
                if t.closing {
                    // The state after the last batch, for the closing checkpoint.
                    if let Some(p) = pending.as_mut()
                        && p.1.is_none()
                    {
                        p.1 = t.state;
                    }
                    continue;
                }
                let span = tracing::debug_span!(
                    "deliver",
                    pipeline = %options.pipeline_id,
                    batch = committed + 1,
                    rows = t.input_rows
                );
                if recognises {
                    let logged = LoggedBatch {
                        number: committed + 1,
                        start: t.start.0.clone(),
                        end: t.position.0.clone(),
                    };
                    let saved: Result<()> = with_retries!(
                        options.error_policy,
                        "checkpoint",
                        counters.retries,
                        checkpoints.log_batch(&logged).await
                    );
                    saved?;
                }
                let delivered = deliverer
                    .deliver(&t, committed + 1, &counters)
                    .instrument(span)
                    .await?;
                stats.batches += 1;
                stats.input_rows += t.input_rows;
                stats.output_rows += delivered.output_rows;
                stats.undelivered += delivered.undelivered;
                stats.dead_lettered += t.dead_lettered;
                stats.skipped += t.skipped;
                stats.late += t.late;
                committed += 1;
                let (state_rows, state_bytes) = (t.state_rows, t.state_bytes);
                // The operator state is serialized only when a checkpoint is saved.
                pending = Some((
                    Checkpoint {
                        schema: Some(schema.clone()),
                        source: t.position.0.clone(),
                        sink: deliverer.state(),
                        batches: committed,
                        state: None,
                        deltas: Vec::new(),
                        plan: Some(plan.clone()),
                    },
                    t.state,
                ));
                let due = t.checkpoint;
                let mut checkpoint_duration = None;
                if due && let Some(cp) = pending.take() {
                    let syncing: Result<()> = with_retries!(
                        options.error_policy,
                        "checkpoint",
                        counters.retries,
                        deliverer.sync().await
                    );
                    syncing?;
                    let took = save(
                        checkpoints,
                        cp,
                        &options.error_policy,
                        &counters,
                        &mut writes,
                        hook.as_ref(),
                    )
                    .await?;
                    stats.checkpointed(took);
                    checkpoint_duration = Some(took);
                }
                let now = (
                    counters.retries.load(Ordering::Relaxed),
                    counters.failures.load(Ordering::Relaxed),
                    counters.waited_ns.load(Ordering::Relaxed),
                );
                let metrics = BatchMetrics {
                    pipeline: options.pipeline_id.clone(),
                    input_rows: t.input_rows,
                    output_rows: delivered.output_rows,
                    dead_lettered: t.dead_lettered,
                    skipped: t.skipped,
                    late: t.late,
                    duration: t.started.elapsed(),
                    transform_duration: t.transform_time,
                    state_rows,
                    state_bytes,
                    lag: t.lag,
                    partition_lag: t.partition_lag.clone(),
                    retries: now.0 - seen.0,
                    failures: now.1 - seen.1,
                    backpressure_wait: Duration::from_nanos(now.2 - seen.2),
                    stages: t.stages,
                    checkpoint_duration,
                };
                seen = now;
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
            Ok(())
        }
        .await;
        // Stop the steps before this one (if this one failed), then checkpoint what was
        // committed since the last checkpoint.
        drop(done_rx);
        let closing = match pending.take() {
            // Without the operator's state (the transform step failed) there is no checkpoint
            // to save: the last one stands.
            Some((_, None)) if stateful => Ok(()),
            Some(cp) => match deliverer.sync().await {
                Ok(()) => save(
                    checkpoints,
                    cp,
                    &options.error_policy,
                    &counters,
                    &mut writes,
                    hook.as_ref(),
                )
                .await
                .map(|took| stats.checkpointed(took)),
                Err(e) => Err(e),
            },
            None => Ok(()),
        };
        stats.retries = counters.retries.load(Ordering::Relaxed);
        stats.failures = counters.failures.load(Ordering::Relaxed);
        result.and(closing).map(|()| stats)
    };
    let ((), delivered) = tokio::join!(fetching, delivering);
    transform
        .await
        .map_err(|e| Error::external("the transform step", e))?;
    delivered
}

/// Registers an empty batch under the SQL's table, so the query can be planned and checked.
async fn run_once_check(
    engine: &Engine,
    sql: &str,
    table: &str,
    empty: &datafusion::arrow::record_batch::RecordBatch,
) -> Result<()> {
    crate::plan::order::register_ordered(
        engine.context(),
        table,
        empty.schema(),
        vec![vec![empty.clone()]],
    )?;
    check_sql(engine, sql, table).await
}
