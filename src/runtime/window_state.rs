//! Event-time windows on a stream (`$tumblingWindow`, `$hoppingWindow`): documents are
//! buffered per open window, and when the watermark passes a window's end its inner pipeline
//! runs over the window's documents (any stages: `$group`, `$sort`, `$limit`, …) and the
//! results are emitted with `_stream_meta.window.start` / `.end`.
//!
//! Event time is the source's `timeField` (a date, ISO-8601 text or epoch milliseconds). The
//! watermark is the largest event time seen minus `allowedLateness`, advanced document by
//! document in source order, so which documents are late does not depend on where micro-batches
//! end — a replay over the same input decides the same. A document whose windows have all been
//! passed by the watermark is late: it is counted, and dead-lettered with reason `late` under
//! the `deadLetter` policy. When a bounded source ends, the watermark moves to the end of time
//! and every open window is emitted. The open windows' documents and the largest event time are
//! the operator's state, saved with checkpoints.
//!
//! First version: one watermark per source (no per-partition watermarks or idle timeouts yet),
//! event time only, and windows hold their documents rather than partial aggregates.

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
use crate::dsl::path::JsonPath;
use crate::dsl::stream_window::StreamWindow;
use crate::dsl::{Pipeline, Stage, StageKind};
use crate::plan::order;
use crate::{Engine, Error, Result};

const TIME: &str = "__fluxion_event_time";
const START: &str = "__fluxion_window_start";
const WINDOW: &str = "__fluxion_window";
const MAX_TIME: &str = "fluxion.max_event_time";

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
    pub async fn step(
        &mut self,
        engine: &Engine,
        table: &str,
        batch_rows: usize,
        end_of_input: bool,
        stages: &mut Vec<StageMetrics>,
    ) -> Result<WindowOutput> {
        match self {
            WindowOperator::Fixed(w) => {
                w.step(engine, table, batch_rows, end_of_input, stages)
                    .await
            }
            WindowOperator::Session(s) => {
                s.step(engine, table, batch_rows, end_of_input, stages)
                    .await
            }
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
    max_time: Option<i64>,
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
        let Some(time_field) = time_field else {
            return Err(stage.path.err(
                "an eventTime window needs the source's timeField (\"source\": {…, \"timeField\": \"$ts\"})",
            ));
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
        let time = Pipeline::parse_at(
            &json!([{"$addFields": {TIME: {"$toLong": {"$toDate": time_field}}}}]),
            &JsonPath::root().key("source").key("timeField"),
        )?;
        if let crate::dsl::stream_window::WindowKind::Session { .. } = window.kind {
            return Ok(Some(WindowOperator::Session(SessionWindows::new(
                window,
                before.stages,
                after.stages,
                time_field,
            )?)));
        }
        let mut stages = before.stages;
        stages.extend(time.stages);
        Ok(Some(WindowOperator::Fixed(ContinuousWindow {
            before: Pipeline { stages },
            window: window.clone(),
            after: after.stages,
            schema: None,
            buffer: Vec::new(),
            max_time: None,
            inner_sql: None,
        })))
    }

    /// The window operator of a windowed SQL query over `table`.
    pub fn plan_sql(
        w: &crate::runtime::sql_window::SqlWindow,
        table: &str,
    ) -> Result<WindowOperator> {
        let before = Pipeline::parse_at(
            &json!([{"$addFields": {TIME: {"$toLong": {"$toDate": w.time_field}}}}]),
            &JsonPath::root().key("sql"),
        )?;
        Ok(WindowOperator::Fixed(ContinuousWindow {
            before,
            window: w.window.clone(),
            after: Vec::new(),
            schema: None,
            buffer: Vec::new(),
            max_time: None,
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
        stages: &mut Vec<StageMetrics>,
    ) -> Result<WindowOutput> {
        // All or nothing: a failed step (retried, or split) leaves the state as it was.
        let saved = (self.buffer.clone(), self.max_time, self.schema.clone());
        let stepped = self
            .try_step(engine, table, batch_rows, end_of_input, stages)
            .await;
        if stepped.is_err() {
            (self.buffer, self.max_time, self.schema) = saved;
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
        let watermark = if end_of_input {
            i64::MAX
        } else {
            match self.max_time {
                Some(t) => t.saturating_sub(self.window.allowed_lateness_ms),
                None => return Ok(out),
            }
        };
        out.output = self.emit(engine, watermark).await?;
        Ok(out)
    }

    /// Assigns each document to its open windows (or finds it late) and buffers it.
    fn admit(&mut self, rows: &RecordBatch, out: &mut WindowOutput) -> Result<()> {
        let times = rows
            .column_by_name(TIME)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| Error::pipeline("source.timeField", "the event time is not a number"))?
            .clone();
        let mut take = Vec::new();
        let mut starts = Vec::new();
        let mut late = Vec::new();
        let mut untimed = Vec::new();
        for i in 0..rows.num_rows() {
            if times.is_null(i) {
                untimed.push(i);
                continue;
            }
            let t = times.value(i);
            let watermark = self
                .max_time
                .map(|m| m.saturating_sub(self.window.allowed_lateness_ms));
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
            self.max_time = Some(self.max_time.map_or(t, |m| m.max(t)));
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

    /// The open windows' documents and the largest event time, for a checkpoint.
    pub fn snapshot(&self) -> Snapshot {
        let meta = self
            .max_time
            .map(|t| vec![(MAX_TIME.to_string(), t.to_string())])
            .unwrap_or_default();
        Snapshot::of(self.schema.clone(), self.buffer.clone(), meta)
    }

    /// Back to a checkpoint's state.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        self.buffer.clear();
        self.max_time = None;
        if bytes.is_empty() {
            return Ok(());
        }
        let (schema, batches) = read_ipc(bytes)?;
        self.max_time = schema.metadata().get(MAX_TIME).and_then(|t| t.parse().ok());
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
fn with_bounds(docs: &RecordBatch, start: i64, end: i64) -> Result<RecordBatch> {
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
