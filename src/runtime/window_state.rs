//! Event-time windows on a stream (`$tumblingWindow`, `$hoppingWindow`): documents are
//! buffered per open window, and when the watermark passes a window's end its inner pipeline
//! runs over the window's documents (any stages: `$group`, `$sort`, `$limit`, …) and the
//! results are emitted with `_stream_meta.window.start` / `.end`.
//!
//! Event time is the source's `timeField` (a date, ISO-8601 text or epoch milliseconds),
//! evaluated on the document as the source gave it, before any stage; the watermark
//! ([`watermark`](super::watermark)) follows it per source partition. A document whose windows
//! have all been passed by the watermark is late: it is counted, and dead-lettered with reason
//! `late` under the `deadLetter` policy. When a bounded source ends, the watermark moves to the
//! end of time and every open window is emitted. Processing-time windows take the stream's
//! clock instead. The open windows' documents and the watermarks are the operator's state,
//! saved with checkpoints.
//!
//! Windows hold their documents rather than partial aggregates (README).

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use super::dead_letters::{DeadLetter, rows_as_json};
use super::keyed_state::{Snapshot, read_ipc};
use super::metrics::{StageMetrics, collect_measured};
use super::session_state::SessionWindows;
use super::watermark::{Watermarks, partition_at, partitions_of};
use crate::dsl::path::JsonPath;
use crate::dsl::stream_window::{Boundary, StreamWindow};
use crate::dsl::{Pipeline, Stage, StageKind};
use crate::plan::order;
use crate::{Engine, Error, Result};

/// The event time of each document (a rider: it survives `$project`, `plan::order`).
pub(super) const TIME: &str = "__fluxion_ride_time";
const START: &str = "__fluxion_window_start";
const WINDOW: &str = "__fluxion_window";

/// What one step of the window operator gives.
#[derive(Debug, Default)]
pub struct WindowOutput {
    /// The emitted windows' results.
    pub output: Vec<RecordBatch>,
    /// Late documents (as dead letters; counted whatever the policy).
    pub late: Vec<DeadLetter>,
    /// Documents without an event time (dead letters too).
    pub untimed: Vec<DeadLetter>,
}

/// A stream's window operator: fixed windows (tumbling, hopping) or sessions.
pub enum WindowOperator {
    Fixed(ContinuousWindow),
    Session(SessionWindows),
}

impl WindowOperator {
    /// Takes the micro-batch registered as `table` in; emits the windows the watermark has
    /// passed (all of them when `end_of_input`).
    /// `now` is the processing time.
    pub async fn step(
        &mut self,
        engine: &Engine,
        table: &str,
        batch_rows: usize,
        end_of_input: bool,
        now: i64,
        stages: &mut Vec<StageMetrics>,
    ) -> Result<WindowOutput> {
        match self {
            WindowOperator::Fixed(w) => {
                w.step(engine, table, batch_rows, end_of_input, now, stages)
                    .await
            }
            WindowOperator::Session(s) => {
                s.step(engine, table, batch_rows, end_of_input, now, stages)
                    .await
            }
        }
    }

    /// Whether the clock alone can close windows (processing time, or an idle timeout), so
    /// the loop should step it while the source is quiet.
    pub fn needs_ticks(&self) -> bool {
        let marks = match self {
            WindowOperator::Fixed(w) => &w.marks,
            WindowOperator::Session(s) => s.marks(),
        };
        marks.processing() || marks.idle_timeout().is_some()
    }

    /// Whether windows follow the clock rather than event time (no replay then).
    pub fn processing_time(&self) -> bool {
        match self {
            WindowOperator::Fixed(w) => w.marks.processing(),
            WindowOperator::Session(s) => s.marks().processing(),
        }
    }

    /// The state, for a checkpoint.
    pub fn snapshot(&self) -> Snapshot {
        match self {
            WindowOperator::Fixed(w) => w.snapshot(),
            // Packing the open sessions can only fail on a broken invariant.
            WindowOperator::Session(s) => s.snapshot().expect("packing open sessions"),
        }
    }

    /// Back to a checkpoint's state.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            WindowOperator::Fixed(w) => w.restore_state(bytes),
            WindowOperator::Session(s) => s.restore_state(bytes),
        }
    }
}

impl WindowOutput {
    /// Dead letters for the late documents (index, event time, watermark) and the untimed
    /// ones (index) of `rows`, a window's input.
    pub(super) fn add_letters(
        &mut self,
        rows: &RecordBatch,
        late: &[(usize, i64, i64)],
        untimed: &[usize],
    ) -> Result<()> {
        if late.is_empty() && untimed.is_empty() {
            return Ok(());
        }
        let docs = rows_as_json(&visible(rows)?)?;
        let letter = |i: usize, reason: String| DeadLetter {
            reason,
            stage: "window",
            position: json!({"windowInput": i}).to_string(),
            raw: docs[i].clone(),
        };
        for &(i, t, w) in late {
            self.late.push(letter(
                i,
                format!("late: event time {t} ms is behind the watermark {w} ms"),
            ));
        }
        for &i in untimed {
            self.untimed.push(letter(
                i,
                "no event time: the source's timeField is missing or not a date".to_string(),
            ));
        }
        Ok(())
    }
}

/// The stages run over one window's documents: its pipeline, the window's bounds as
/// `_stream_meta.window`, then the stages after the window stage.
pub(super) fn window_stages(
    inner: &[Stage],
    start: i64,
    end: i64,
    after: &[Stage],
) -> Result<Pipeline> {
    let mut stages = inner.to_vec();
    stages.extend(
        Pipeline::parse_at(
            &json!([{"$addFields": {"_stream_meta": {"window": {
                "start": {"$toDate": start}, "end": {"$toDate": end}}}}}]),
            &JsonPath::root(),
        )?
        .stages,
    );
    stages.extend(after.iter().cloned());
    Ok(Pipeline { stages })
}

/// The state and plans of a stream's window stage.
pub struct ContinuousWindow {
    /// The stages before the window, then the event time as a column.
    before: Pipeline,
    window: StreamWindow,
    /// Stages after the window stage, run over each window's results.
    after: Vec<Stage>,
    schema: Option<SchemaRef>,
    buffer: Vec<RecordBatch>,
    marks: Watermarks,
    /// The SQL spelling: the query per window, and the table name it reads.
    inner_sql: Option<(String, String)>,
}

impl ContinuousWindow {
    /// The windowed form of `pipeline` when it has a window stage (`None` without one).
    /// `time_field` is the source's `timeField` expression.
    pub fn plan(pipeline: &Pipeline, time_field: Option<&Value>) -> Result<Option<WindowOperator>> {
        let Some(i) = pipeline
            .stages
            .iter()
            .position(|s| matches!(s.kind, StageKind::StreamWindow(_)))
        else {
            return Ok(None);
        };
        let stage = &pipeline.stages[i];
        let StageKind::StreamWindow(window) = &stage.kind else {
            unreachable!()
        };
        let processing = window.boundary == Boundary::ProcessingTime;
        let time_field = match time_field {
            Some(t) => Some(t),
            None if processing => None,
            None => {
                return Err(stage.path.err(
                    "an eventTime window needs the source's timeField (\"source\": {…, \"timeField\": \"$ts\"})",
                ));
            }
        };
        let before = Pipeline {
            stages: pipeline.stages[..i].to_vec(),
        };
        super::query::check_stages(&before)?;
        let after = Pipeline {
            stages: pipeline.stages[i + 1..].to_vec(),
        };
        super::query::check_stages(&after)?;
        if window
            .pipeline
            .stages
            .iter()
            .any(|s| matches!(s.kind, StageKind::StreamWindow(_)))
        {
            return Err(stage
                .path
                .err("a window's pipeline cannot hold another window"));
        }
        // The event time of the document as the source gave it; it rides through the stages.
        let mut stages = event_time(if processing { None } else { time_field })?;
        stages.extend(before.stages);
        if let crate::dsl::stream_window::WindowKind::Session { .. } = window.kind {
            return Ok(Some(WindowOperator::Session(SessionWindows::new(
                window,
                stages,
                after.stages,
            )?)));
        }
        Ok(Some(WindowOperator::Fixed(ContinuousWindow {
            before: Pipeline { stages },
            window: window.clone(),
            after: after.stages,
            schema: None,
            buffer: Vec::new(),
            marks: Watermarks::new(window),
            inner_sql: None,
        })))
    }

    /// The window operator of a windowed SQL query over `table`.
    pub fn plan_sql(
        w: &crate::runtime::sql_window::SqlWindow,
        table: &str,
    ) -> Result<WindowOperator> {
        let before = event_time(w.time_field.as_ref())?;
        if let crate::dsl::stream_window::WindowKind::Session { .. } = w.window.kind {
            let mut s = SessionWindows::new(&w.window, before, Vec::new())?;
            s.inner_sql = Some((w.inner.clone(), table.to_string()));
            return Ok(WindowOperator::Session(s));
        }
        Ok(WindowOperator::Fixed(ContinuousWindow {
            before: Pipeline { stages: before },
            window: w.window.clone(),
            after: Vec::new(),
            schema: None,
            buffer: Vec::new(),
            marks: Watermarks::new(&w.window),
            inner_sql: Some((w.inner.clone(), table.to_string())),
        }))
    }

    /// Takes the micro-batch registered as `table` in; emits the windows the watermark has
    /// passed (all of them when `end_of_input`).
    pub async fn step(
        &mut self,
        engine: &Engine,
        table: &str,
        batch_rows: usize,
        end_of_input: bool,
        now: i64,
        stages: &mut Vec<StageMetrics>,
    ) -> Result<WindowOutput> {
        // All or nothing: a failed step (retried, or split) leaves the state as it was.
        let saved = (self.buffer.clone(), self.marks.clone(), self.schema.clone());
        self.marks.begin(now);
        let stepped = self
            .try_step(engine, table, batch_rows, end_of_input, stages)
            .await;
        if stepped.is_err() {
            (self.buffer, self.marks, self.schema) = saved;
        }
        stepped
    }

    async fn try_step(
        &mut self,
        engine: &Engine,
        table: &str,
        batch_rows: usize,
        end_of_input: bool,
        stages: &mut Vec<StageMetrics>,
    ) -> Result<WindowOutput> {
        let mut out = WindowOutput::default();
        if batch_rows > 0 {
            let rows = collect_measured(
                engine.pipeline(table, &self.before).await?,
                batch_rows,
                stages,
            )
            .await?;
            if let Some(first) = rows.first() {
                let rows = concat_batches(&first.schema(), &rows)?;
                self.admit(&rows, &mut out)?;
            }
        }
        let size = self.window.size_ms;
        let buffer = &self.buffer;
        self.marks.settle(|| {
            buffer
                .iter()
                .filter_map(|b| start_column(b).values().iter().max().copied())
                .max()
                .map(|s| s.saturating_add(size))
        });
        let watermark = if end_of_input {
            i64::MAX
        } else {
            match self.marks.current() {
                Some(w) => w,
                None => return Ok(out),
            }
        };
        out.output = self.emit(engine, watermark).await?;
        Ok(out)
    }

    /// Assigns each document to its open windows (or finds it late) and buffers it.
    fn admit(&mut self, rows: &RecordBatch, out: &mut WindowOutput) -> Result<()> {
        let times = event_times(rows)?;
        let partitions = partitions_of(rows);
        let mut take = Vec::new();
        let mut starts = Vec::new();
        let mut late = Vec::new();
        let mut untimed = Vec::new();
        for i in 0..rows.num_rows() {
            let event = times
                .as_ref()
                .and_then(|t| t.is_valid(i).then(|| t.value(i)));
            let Some(t) = self.marks.time_of(event) else {
                untimed.push(i);
                continue;
            };
            let watermark = self.marks.current();
            let mut any = false;
            for s in self.window.starts(t) {
                if watermark.is_none_or(|w| s + self.window.size_ms > w) {
                    take.push(i as u32);
                    starts.push(s);
                    any = true;
                }
            }
            if !any {
                late.push((i, t, watermark.unwrap_or(i64::MIN)));
            }
            self.marks.observe(partition_at(partitions.as_ref(), i), t);
        }
        out.add_letters(rows, &late, &untimed)?;
        if take.is_empty() {
            return Ok(());
        }
        let kept = take_record_batch(rows, &UInt32Array::from(take))?;
        let mut fields: Vec<Arc<Field>> = kept.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(START, DataType::Int64, false)));
        let mut columns = kept.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(starts)) as ArrayRef);
        let schema = self
            .schema
            .get_or_insert_with(|| Arc::new(Schema::new(fields)))
            .clone();
        self.buffer.push(RecordBatch::try_new(schema, columns)?);
        Ok(())
    }

    /// Runs and removes the windows that end at or before `watermark`, earliest first.
    async fn emit(&mut self, engine: &Engine, watermark: i64) -> Result<Vec<RecordBatch>> {
        let size = self.window.size_ms;
        let ends = |s: i64| s.saturating_add(size) <= watermark;
        let mut due = BTreeSet::new();
        for b in &self.buffer {
            for s in start_column(b).values() {
                if ends(*s) {
                    due.insert(*s);
                }
            }
        }
        let Some(schema) = self.schema.clone() else {
            return Ok(Vec::new());
        };
        let mut output = Vec::new();
        for start in due {
            let mut parts = Vec::new();
            for b in &self.buffer {
                let mask = BooleanArray::from_iter(
                    start_column(b).values().iter().map(|s| Some(*s == start)),
                );
                let part = filter_record_batch(b, &mask)?;
                if part.num_rows() > 0 {
                    parts.push(visible(&part)?);
                }
            }
            let Some(first) = parts.first() else { continue };
            let docs = concat_batches(&first.schema(), &parts)?;
            if let Some((sql, table)) = &self.inner_sql {
                let docs = with_bounds(&docs, start, start + size)?;
                order::register_ordered(engine.context(), table, docs.schema(), vec![vec![docs]])?;
                let results = engine.sql(sql).await?.collect().await?;
                output.extend(results.into_iter().filter(|b| b.num_rows() > 0));
                continue;
            }
            order::register_ordered(engine.context(), WINDOW, docs.schema(), vec![vec![docs]])?;
            let stages = window_stages(
                &self.window.pipeline.stages,
                start,
                start + size,
                &self.after,
            )?;
            let results = engine.pipeline(WINDOW, &stages).await?.collect().await?;
            output.extend(results.into_iter().filter(|b| b.num_rows() > 0));
        }
        // Keep only the rows of windows still open.
        let mut kept = Vec::new();
        for b in &self.buffer {
            let mask =
                BooleanArray::from_iter(start_column(b).values().iter().map(|s| Some(!ends(*s))));
            let part = filter_record_batch(b, &mask)?;
            if part.num_rows() > 0 {
                kept.push(part);
            }
        }
        if kept.len() > 8 {
            kept = vec![concat_batches(&schema, &kept)?];
        }
        self.buffer = kept;
        Ok(output)
    }

    /// Documents held in open windows.
    pub fn state_rows(&self) -> u64 {
        self.buffer.iter().map(|b| b.num_rows() as u64).sum()
    }

    /// The open windows' documents and the watermarks, for a checkpoint.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::of(self.schema.clone(), self.buffer.clone(), self.marks.meta())
    }

    /// Back to a checkpoint's state.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        self.buffer.clear();
        self.marks.restore(&Default::default());
        if bytes.is_empty() {
            return Ok(());
        }
        let (schema, batches) = read_ipc(bytes)?;
        self.marks.restore(schema.metadata());
        let plain = Arc::new(Schema::new(schema.fields().clone()));
        for b in batches {
            self.buffer
                .push(RecordBatch::try_new(plain.clone(), b.columns().to_vec())?);
        }
        self.schema = Some(plain);
        Ok(())
    }
}

/// `docs` with the window's bounds as the columns `window_start` and `window_end`.
pub(super) fn with_bounds(docs: &RecordBatch, start: i64, end: i64) -> Result<RecordBatch> {
    use datafusion::arrow::array::TimestampMillisecondArray;
    let utc: Arc<str> = "UTC".into();
    let ty = DataType::Timestamp(
        datafusion::arrow::datatypes::TimeUnit::Millisecond,
        Some(utc),
    );
    let mut fields: Vec<Arc<Field>> = docs.schema().fields().iter().cloned().collect();
    let mut columns = docs.columns().to_vec();
    for (name, at) in [("window_start", start), ("window_end", end)] {
        fields.push(Arc::new(Field::new(name, ty.clone(), false)));
        columns.push(Arc::new(
            TimestampMillisecondArray::from(vec![at; docs.num_rows()]).with_timezone("UTC"),
        ) as ArrayRef);
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// The stages that put the event time of `time_field` (none: processing time) on each
/// document, as the hidden column [`TIME`].
pub(super) fn event_time(time_field: Option<&Value>) -> Result<Vec<Stage>> {
    let Some(time_field) = time_field else {
        return Ok(Vec::new());
    };
    Ok(Pipeline::parse_at(
        &json!([{"$addFields": {TIME: {"$toLong": {"$toDate": time_field}}}}]),
        &JsonPath::root().key("source").key("timeField"),
    )?
    .stages)
}

/// The event times of `rows` (`None` for processing-time windows, which have none).
pub(super) fn event_times(rows: &RecordBatch) -> Result<Option<Int64Array>> {
    rows.column_by_name(TIME)
        .map(|c| {
            c.as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .ok_or_else(|| {
                    Error::pipeline("source.timeField", "the event time is not a number")
                })
        })
        .transpose()
}

fn start_column(b: &RecordBatch) -> &Int64Array {
    b.column_by_name(START)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .expect("buffered rows carry their window start")
}

/// The documents without the window operators' own columns (named `__fluxion_…`).
pub(super) fn visible(b: &RecordBatch) -> Result<RecordBatch> {
    let keep: Vec<usize> = b
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.name().starts_with("__fluxion_"))
        .map(|(i, _)| i)
        .collect();
    Ok(b.project(&keep)?)
}
