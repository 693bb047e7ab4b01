//! Session windows on a stream (`$sessionWindow`): per `partitionBy` value, documents less
//! than `gap` apart in event time form a session; a document that falls between two sessions
//! merges them. A session closes when the watermark reaches its last event time plus the gap;
//! then the inner pipeline runs over its documents, and the results carry
//! `_stream_meta.window.start` (its first event time) and `.end` (last + gap).
//!
//! As for the fixed windows (`window::fixed`), the watermark advances document by document in
//! source order: before a document joins a session, the sessions of its partition that the
//! watermark has passed are closed, so neither lateness nor merging depends on where
//! micro-batches end. Closed sessions are emitted at the end of the micro-batch in order of
//! their end, then partition, then start. The open sessions' documents (with their session
//! number) and the watermarks are the checkpointed state. With `boundary: "processingTime"` a
//! document's time is the clock's when it is processed.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use serde_json::{Value, json};

use crate::dsl::expression::Expression;
use crate::dsl::group::Group;
use crate::dsl::path::JsonPath;
use crate::dsl::stream_window::{StreamWindow, WindowKind};
use crate::dsl::{FieldPath, Pipeline, Stage, StageKind};
use crate::plan::order;
use crate::runtime::metrics::{StageMetrics, collect_measured};
use crate::runtime::state::keyed::{Snapshot, read_ipc};
use crate::runtime::window::shared::{
    TIME, WindowOutput, conform, current_names, event_times, visible, window_stages, with_bounds,
    with_columns, with_row_bounds,
};
use crate::runtime::window::watermark::{Watermarks, partition_at, partitions_of};
use crate::{Engine, Error, Result};

use crate::document::hidden::{
    RIDE_SESSION as RIDE_N, RIDE_SESSION_END as RIDE_END, RIDE_SESSION_START as RIDE_START,
    SESSION, SESSION_KEY as KEY, SESSION_TABLE as WINDOW, SESSIONS_ALIAS,
};

#[derive(Clone)]
struct Session {
    key: Box<[u8]>,
    start: i64,
    last: i64,
    /// (buffer batch, row) of its documents, in arrival order.
    rows: Vec<(usize, usize)>,
}

/// The state and plans of a stream's session window.
pub struct SessionWindows {
    before: Pipeline,
    gap: i64,
    inner: Vec<Stage>,
    after: Vec<Stage>,
    buffer: Vec<RecordBatch>,
    open: HashMap<Box<[u8]>, Vec<Session>>,
    closed: Vec<Session>,
    marks: Watermarks,
    /// The SQL spelling: the query per session, and the table name it reads.
    pub(super) inner_sql: Option<(String, String)>,
    /// The SQL spelling's partition columns (to sort sessions run together).
    pub(super) sql_keys: Option<Vec<String>>,
    /// The stages that run many closed sessions at once (see `emit_together`).
    together: Option<Pipeline>,
    converter: Option<RowConverter>,
}

impl SessionWindows {
    /// The session operator of `window` (a `$sessionWindow`), after the `before` stages
    /// (which put the event time on the documents).
    pub fn new(window: &StreamWindow, before: Vec<Stage>, after: Vec<Stage>) -> Result<Self> {
        let WindowKind::Session { gap_ms } = window.kind else {
            unreachable!("a session window")
        };
        let key = window.partition_by.clone().unwrap_or(Value::Null);
        let extra = Pipeline::parse_at(
            &json!([{"$addFields": {KEY: key}}]),
            &JsonPath::root().key("partitionBy"),
        )?;
        let mut stages = before;
        stages.extend(extra.stages);
        let together = together(&window.pipeline, &after)?;
        Ok(SessionWindows {
            before: Pipeline { stages },
            gap: gap_ms,
            inner: window.pipeline.stages.clone(),
            after,
            buffer: Vec::new(),
            open: HashMap::new(),
            closed: Vec::new(),
            marks: Watermarks::new(window),
            inner_sql: None,
            sql_keys: None,
            together,
            converter: None,
        })
    }

    /// The watermarks.
    pub fn marks(&self) -> &Watermarks {
        &self.marks
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
                let rows = datafusion::arrow::compute::concat_batches(&first.schema(), &rows)?;
                self.admit(rows, &mut out)?;
            }
        }
        let gap = self.gap;
        let open = &self.open;
        self.marks.settle(|| {
            open.values()
                .flatten()
                .map(|s| s.last.saturating_add(gap))
                .max()
        });
        let watermark = if end_of_input {
            i64::MAX
        } else {
            match self.marks.current() {
                Some(w) => w,
                None => return Ok(out),
            }
        };
        for sessions in self.open.values_mut() {
            let (done, open): (Vec<Session>, Vec<Session>) = std::mem::take(sessions)
                .into_iter()
                .partition(|s| s.last.saturating_add(self.gap) <= watermark);
            *sessions = open;
            self.closed.extend(done);
        }
        self.open.retain(|_, v| !v.is_empty());
        out.output = self.emit(engine).await?;
        self.compact()?;
        Ok(out)
    }

    /// The partition keys of `rows`, in Arrow's row format.
    fn keys(&mut self, rows: &RecordBatch) -> Result<datafusion::arrow::row::Rows> {
        let column = rows
            .column_by_name(KEY)
            .ok_or_else(|| state_mismatch("the partition key"))?
            .clone();
        let converter = match &mut self.converter {
            Some(c) => c,
            None => self.converter.insert(RowConverter::new(vec![SortField::new(
                column.data_type().clone(),
            )])?),
        };
        Ok(converter.convert_columns(&[column])?)
    }

    fn admit(&mut self, rows: RecordBatch, out: &mut WindowOutput) -> Result<()> {
        // Processing time: the clock's time is each document's, kept for a restart.
        let rows = if self.marks.processing() {
            let now = self.marks.time_of(None).expect("the clock");
            stamped(&rows, now)?
        } else {
            rows
        };
        // Rows of an older checkpoint (without the partition column, say): to the new layout,
        // so the sessions' rows can be gathered across batches.
        if self
            .buffer
            .first()
            .is_some_and(|b| b.schema().fields() != rows.schema().fields())
        {
            let schema = rows.schema();
            self.buffer = self
                .buffer
                .iter()
                .map(|b| conform(b, &schema))
                .collect::<Result<_>>()?;
        }
        let times = event_times(&rows)?
            .ok_or_else(|| Error::pipeline("source.timeField", "no event time"))?;
        let partitions = partitions_of(&rows);
        let keys = self.keys(&rows)?;
        let b = self.buffer.len();
        let mut late = Vec::new();
        let mut untimed = Vec::new();
        for i in 0..rows.num_rows() {
            if times.is_null(i) {
                untimed.push(i);
                continue;
            }
            let t = times.value(i);
            let watermark = self.marks.current();
            let key: Box<[u8]> = keys.row(i).as_ref().into();
            let sessions = self.open.entry(key.clone()).or_default();
            if let Some(w) = watermark {
                let (done, open): (Vec<Session>, Vec<Session>) = std::mem::take(sessions)
                    .into_iter()
                    .partition(|s| s.last.saturating_add(self.gap) <= w);
                *sessions = open;
                self.closed.extend(done);
            }
            let gap = self.gap;
            let (touching, rest): (Vec<Session>, Vec<Session>) = std::mem::take(sessions)
                .into_iter()
                .partition(|s| t > s.start - gap && t < s.last + gap);
            *sessions = rest;
            if touching.is_empty() && watermark.is_some_and(|w| t.saturating_add(gap) <= w) {
                late.push((i, t, watermark.unwrap_or(i64::MIN)));
            } else {
                let mut merged = Session {
                    key,
                    start: t,
                    last: t,
                    rows: Vec::new(),
                };
                let merging = touching.len() > 1;
                for s in touching {
                    merged.start = merged.start.min(s.start);
                    merged.last = merged.last.max(s.last);
                    merged.rows.extend(s.rows);
                }
                // Arrival order: the new row comes last; only merged sessions interleave.
                if merging {
                    merged.rows.sort_unstable();
                }
                merged.rows.push((b, i));
                sessions.push(merged);
            }
            self.marks.observe(partition_at(partitions.as_ref(), i), t);
        }
        out.add_letters(&rows, &late, &untimed)?;
        self.buffer.push(rows);
        Ok(())
    }

    /// Runs the closed sessions, in order of their end, partition, start.
    async fn emit(&mut self, engine: &Engine) -> Result<Vec<RecordBatch>> {
        let mut closed = std::mem::take(&mut self.closed);
        closed.sort_by(|a, b| {
            (a.last + self.gap, &a.key, a.start).cmp(&(b.last + self.gap, &b.key, b.start))
        });
        let sources: Vec<&RecordBatch> = self.buffer.iter().collect();
        // One query over all of them, when the pipeline allows (whatever their number, so the
        // output does not depend on how many close at once).
        if !closed.is_empty()
            && let Some(out) = self.emit_together(engine, &sources, &closed).await?
        {
            return Ok(out);
        }
        let mut output = Vec::new();
        for s in closed {
            let docs = visible(&interleave_record_batch(&sources, &s.rows)?)?;
            if let Some((sql, table)) = &self.inner_sql {
                let docs = with_bounds(&docs, s.start, s.last + self.gap)?;
                order::register_ordered(engine.context(), table, docs.schema(), vec![vec![docs]])?;
                let results = engine.sql(sql).await?.collect().await?;
                output.extend(results.into_iter().filter(|b| b.num_rows() > 0));
                continue;
            }
            order::register_ordered(engine.context(), WINDOW, docs.schema(), vec![vec![docs]])?;
            let stages = window_stages(&self.inner, s.start, s.last + self.gap, &self.after)?;
            let results = engine.pipeline(WINDOW, &stages).await?.collect().await?;
            output.extend(results.into_iter().filter(|b| b.num_rows() > 0));
        }
        Ok(output)
    }

    /// The closed sessions run as one query: their documents together, each with its
    /// session's number and bounds (riders), grouped by session as well as by the pipeline's
    /// `_id` — possible when the session pipeline is document-by-document stages, a `$group`,
    /// and document-by-document stages (or, in SQL, when the query sorted by session plans).
    /// `None` when it is not possible.
    async fn emit_together(
        &self,
        engine: &Engine,
        sources: &[&RecordBatch],
        closed: &[Session],
    ) -> Result<Option<Vec<RecordBatch>>> {
        let mut at = Vec::new();
        let (mut n, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for (i, s) in closed.iter().enumerate() {
            at.extend(s.rows.iter().copied());
            n.extend(std::iter::repeat_n(i as i64, s.rows.len()));
            a.extend(std::iter::repeat_n(s.start, s.rows.len()));
            b.extend(std::iter::repeat_n(s.last + self.gap, s.rows.len()));
        }
        let docs = visible(&interleave_record_batch(sources, &at)?)?;
        if let Some((sql, table)) = &self.inner_sql {
            let Some(keys) = &self.sql_keys else {
                return Ok(None);
            };
            let docs = with_row_bounds(&docs, a, b)?;
            order::register_ordered(engine.context(), table, docs.schema(), vec![vec![docs]])?;
            let keys: String = keys
                .iter()
                .map(|k| format!("\"{k}\" NULLS FIRST, "))
                .collect();
            let sorted = format!(
                "SELECT * FROM ({sql}) AS {SESSIONS_ALIAS} ORDER BY window_end, {keys}window_start"
            );
            // A query whose output lacks the bounds or the keys cannot be sorted by session.
            let Ok(frame) = engine.sql(&sorted).await else {
                return Ok(None);
            };
            let results = frame.collect().await?;
            return Ok(Some(
                results.into_iter().filter(|b| b.num_rows() > 0).collect(),
            ));
        }
        let Some(together) = &self.together else {
            return Ok(None);
        };
        let docs = with_columns(
            &docs,
            [(RIDE_N, n), (RIDE_START, a), (RIDE_END, b)]
                .into_iter()
                .map(|(name, values)| {
                    (
                        Field::new(name, DataType::Int64, false),
                        Arc::new(Int64Array::from(values)) as ArrayRef,
                    )
                })
                .collect(),
        )?;
        order::register_ordered(engine.context(), WINDOW, docs.schema(), vec![vec![docs]])?;
        let results = engine.pipeline(WINDOW, together).await?.collect().await?;
        let mut out = Vec::new();
        for r in results {
            if r.num_rows() > 0 {
                out.push(visible(&r)?);
            }
        }
        Ok(Some(out))
    }

    /// The open sessions' documents as one batch with their session number.
    fn packed(&self) -> Result<Option<RecordBatch>> {
        let sources: Vec<&RecordBatch> = self.buffer.iter().collect();
        let mut at = Vec::new();
        let mut ids = Vec::new();
        let mut all: Vec<&Session> = self.open.values().flatten().collect();
        all.sort_by(|a, b| (&a.key, a.start).cmp(&(&b.key, b.start)));
        for (n, s) in all.into_iter().enumerate() {
            at.extend(s.rows.iter().copied());
            ids.extend(std::iter::repeat_n(n as i64, s.rows.len()));
        }
        if at.is_empty() {
            return Ok(None);
        }
        let rows = interleave_record_batch(&sources, &at)?;
        let mut fields: Vec<Arc<Field>> = rows.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(SESSION, DataType::Int64, false)));
        let mut columns = rows.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(ids)) as ArrayRef);
        Ok(Some(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?))
    }

    /// Keeps only the open sessions' documents, in one batch.
    fn compact(&mut self) -> Result<()> {
        if self.open.is_empty() {
            self.buffer.clear();
            return Ok(());
        }
        if self.buffer.len() < 16 {
            return Ok(());
        }
        let packed = self
            .packed()?
            .ok_or_else(|| Error::internal("open sessions without documents"))?;
        self.load(&packed)
    }

    /// Rebuilds the sessions from packed rows.
    fn load(&mut self, packed: &RecordBatch) -> Result<()> {
        let ids = packed
            .column_by_name(SESSION)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| state_mismatch("session numbers"))?
            .clone();
        let keep: Vec<usize> = (0..packed.num_columns())
            .filter(|&i| packed.schema().field(i).name() != SESSION)
            .collect();
        let rows = packed.project(&keep)?;
        let rows = RecordBatch::try_new(
            Arc::new(Schema::new(rows.schema().fields().clone())),
            rows.columns().to_vec(),
        )?;
        let times = rows
            .column_by_name(TIME)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| state_mismatch("event times"))?
            .clone();
        let keys = self.keys(&rows)?;
        let mut sessions: Vec<Session> = Vec::new();
        for i in 0..rows.num_rows() {
            let id = ids.value(i) as usize;
            let t = times.value(i);
            if id == sessions.len() {
                sessions.push(Session {
                    key: keys.row(i).as_ref().into(),
                    start: t,
                    last: t,
                    rows: Vec::new(),
                });
            }
            let s = &mut sessions[id];
            s.start = s.start.min(t);
            s.last = s.last.max(t);
            s.rows.push((0, i));
        }
        self.buffer = vec![rows];
        self.open.clear();
        for s in sessions {
            self.open.entry(s.key.clone()).or_default().push(s);
        }
        Ok(())
    }

    /// The open sessions' documents and the watermarks, for a checkpoint.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let meta = self.marks.meta();
        Ok(match self.packed()? {
            Some(b) => Snapshot::of(Some(b.schema()), vec![b], meta),
            None => Snapshot::of(None::<SchemaRef>, Vec::new(), meta),
        })
    }

    /// Back to a checkpoint's state.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        self.buffer.clear();
        self.open.clear();
        self.closed.clear();
        self.marks.restore(&Default::default());
        if bytes.is_empty() {
            return Ok(());
        }
        let (schema, batches) = read_ipc(bytes)?;
        self.marks.restore(schema.metadata());
        if schema.fields().is_empty() || batches.is_empty() {
            return Ok(());
        }
        let all = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
        let all = RecordBatch::try_new(current_names(&schema), all.columns().to_vec())?;
        self.load(&all)
    }
}

/// `rows` with the event-time column set to `now` for every document.
fn stamped(rows: &RecordBatch, now: i64) -> Result<RecordBatch> {
    let keep: Vec<usize> = (0..rows.num_columns())
        .filter(|&i| rows.schema().field(i).name() != TIME)
        .collect();
    let rows = rows.project(&keep)?;
    let n = rows.num_rows();
    with_columns(
        &rows,
        vec![(
            Field::new(TIME, DataType::Int64, true),
            Arc::new(Int64Array::from(vec![now; n])) as ArrayRef,
        )],
    )
}

/// The stages that run closed sessions together, for a session `pipeline` of
/// document-by-document stages, a `$group` and document-by-document stages (then `after`).
fn together(pipeline: &Pipeline, after: &[Stage]) -> Result<Option<Pipeline>> {
    let Some((pre, group, rest)) = crate::runtime::state::group::split_at_group(pipeline) else {
        return Ok(None);
    };
    let StageKind::Group(g) = &group.kind else {
        unreachable!("split at a $group")
    };
    let document_by_document = |stages: &[Stage]| {
        crate::runtime::query::check_stages(&Pipeline {
            stages: stages.to_vec(),
        })
        .is_ok()
    };
    if !document_by_document(pre) || !document_by_document(rest) {
        return Ok(None);
    }
    let at = &group.path;
    let ride = |name: &str| Expression::Field(FieldPath::parse(name, at).expect("plain"));
    let mut stages = pre.to_vec();
    stages.push(Stage {
        kind: StageKind::Group(Group {
            id: Expression::Document(vec![
                ("n".to_string(), ride(RIDE_N)),
                ("a".to_string(), ride(RIDE_START)),
                ("b".to_string(), ride(RIDE_END)),
                ("k".to_string(), g.id.clone()),
            ]),
            fields: g.fields.clone(),
        }),
        path: at.clone(),
    });
    let parse = |v: Value| Pipeline::parse_at(&v, at).map(|p| p.stages);
    // Sessions in the order they closed; a session's groups by `_id`.
    stages.extend(parse(json!([
        {"$sort": {"_id.n": 1, "_id.k": 1}},
        {"$addFields": {"_id": "$_id.k", RIDE_START: "$_id.a", RIDE_END: "$_id.b"}}]))?);
    stages.extend(rest.iter().cloned());
    stages.extend(parse(json!([{"$addFields": {"_stream_meta": {"window": {
        "start": {"$toDate": format!("${RIDE_START}")},
        "end": {"$toDate": format!("${RIDE_END}")}}}}}]))?);
    stages.extend(after.iter().cloned());
    Ok(Some(Pipeline { stages }))
}

/// Session state that lacks a column this operator keeps: a checkpoint of another pipeline.
fn state_mismatch(what: &str) -> Error {
    Error::input(
        "checkpoint",
        format!(
            "the session state has no {what}: it was written by another pipeline (start with a new checkpoint store, or run with --reset-checkpoint)"
        ),
    )
}

#[async_trait::async_trait]
impl super::Windowing for SessionWindows {
    fn kind(&self) -> &'static str {
        "session window"
    }

    async fn step(
        &mut self,
        engine: &Engine,
        table: &str,
        batch_rows: usize,
        end_of_input: bool,
        now: i64,
        stages: &mut Vec<StageMetrics>,
    ) -> Result<WindowOutput> {
        // A failed step must leave the sessions as they were: work on a copy of the index.
        let saved_buffer = self.buffer.len();
        let saved_marks = self.marks.clone();
        let saved_open = self.open.clone();
        self.marks.begin(now);
        let stepped = self
            .try_step(engine, table, batch_rows, end_of_input, stages)
            .await;
        if stepped.is_err() {
            self.buffer.truncate(saved_buffer);
            self.marks = saved_marks;
            self.closed.clear();
            self.open = saved_open;
        }
        stepped
    }

    fn marks(&self) -> &Watermarks {
        SessionWindows::marks(self)
    }

    fn state(&self) -> Result<Snapshot> {
        SessionWindows::snapshot(self)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        SessionWindows::restore_state(self, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::decode::{JsonlOptions, decode};
    use crate::document::encode::to_documents;
    use crate::runtime::window::WindowOperator;
    use crate::runtime::window::Windowing;

    #[tokio::test]
    async fn checkpoints_of_the_first_session_version_are_read() {
        let engine = Engine::new();
        let mut text = String::new();
        for i in 0..20 {
            text.push_str(&format!("{{\"ts\": {}, \"k\": \"k{}\"}}\n", i * 500, i % 2));
        }
        let d = decode(text.as_bytes(), "t", &JsonlOptions::default()).unwrap();
        order::register_ordered(engine.context(), "t", d.schema, d.partitions).unwrap();
        let plan = || {
            let p = Pipeline::from_value(&json!([{"$sessionWindow": {
                "gap": {"size": 3, "unit": "second"}, "partitionBy": "$k",
                "pipeline": [{"$group": {"_id": "$k", "n": {"$sum": 1}}}]}}]))
            .unwrap();
            match WindowOperator::plan(&p, Some(&json!("$ts"))).unwrap() {
                Some(WindowOperator::Session(s)) => s,
                _ => panic!("sessions"),
            }
        };
        let mut first = plan();
        first
            .step(&engine, "t", 20, false, 0, &mut Vec::new())
            .await
            .unwrap();
        // As the first version wrote it: the event time under its old name, no partition
        // column, the largest event time.
        let packed = first.packed().unwrap().unwrap();
        let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = packed
            .schema()
            .fields()
            .iter()
            .zip(packed.columns())
            .filter(|(f, _)| f.name() != crate::runtime::window::watermark::PARTITION)
            .map(|(f, c)| {
                let name = if f.name() == TIME {
                    crate::document::hidden::legacy::EVENT_TIME
                } else {
                    f.name().as_str()
                };
                (f.as_ref().clone().with_name(name), c.clone())
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let old = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let meta = vec![("fluxion.max_event_time".to_string(), "9500".to_string())];
        let bytes = Snapshot::of(Some(schema), vec![old], meta)
            .to_ipc()
            .unwrap();
        let finish = |mut s: SessionWindows| {
            let engine = engine.clone();
            async move {
                s.step(&engine, "t", 20, false, 0, &mut Vec::new())
                    .await
                    .unwrap();
                let out = s
                    .step(&engine, "t", 0, true, 0, &mut Vec::new())
                    .await
                    .unwrap();
                to_documents(&out.output).unwrap()
            }
        };
        let mut resumed = plan();
        resumed.restore_state(&bytes).unwrap();
        let want = finish(first).await;
        assert_eq!(finish(resumed).await, want);
        // One session per key, every document twice.
        assert_eq!(want.len(), 2);
        assert_eq!(want[0]["n"], json!(20), "{want:?}");
    }
}
