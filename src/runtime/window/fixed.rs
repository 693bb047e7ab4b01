//! Event-time windows on a stream (`$tumblingWindow`, `$hoppingWindow`): documents are
//! buffered per open window, and when the watermark passes a window's end its inner pipeline
//! runs over the window's documents (any stages: `$group`, `$sort`, `$limit`, …) and the
//! results are emitted with `_stream_meta.window.start` / `.end`.
//!
//! Event time is the source's `timeField` (a date, ISO-8601 text or epoch milliseconds),
//! evaluated on the document as the source gave it, before any stage; the watermark
//! ([`watermark`](crate::runtime::window::watermark)) follows it per source partition. A document whose windows
//! have all been passed by the watermark is late: it is counted, and dead-lettered with reason
//! `late` under the `deadLetter` policy. When a bounded source ends, the watermark moves to the
//! end of time and every open window is emitted. Processing-time windows take the stream's
//! clock instead. The open windows' documents and the watermarks are the operator's state,
//! saved with checkpoints.
//!
//! When the window's pipeline starts with a `$group` (after document-by-document stages) whose
//! accumulators merge (those of the continuous `$group`, `state::group`), the window keeps
//! partial aggregates instead of documents: each micro-batch's documents are grouped by
//! (window, `_id`) as they arrive, and when the window closes its partial rows are merged and
//! the rest of its pipeline runs over the groups. Other pipelines (and the SQL spelling) keep
//! the window's documents until it closes.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::json;

use crate::dsl::expression::Expression;
use crate::dsl::group::Group;
use crate::dsl::stream_window::StreamWindow;
use crate::dsl::{FieldPath, Pipeline, Stage, StageKind};
use crate::plan::order;
use crate::runtime::metrics::{StageMetrics, collect_measured};
use crate::runtime::state::group::{GroupParts, split_at_group};
use crate::runtime::state::keyed::{Snapshot, read_ipc};
use crate::runtime::window::shared::{
    START, WindowOutput, conform, current_names, event_times, visible, window_stages, with_bounds,
    with_columns,
};
use crate::runtime::window::watermark::{Watermarks, partition_at, partitions_of};
use crate::{Engine, Error, Result};

use crate::document::hidden::{
    WINDOW_GROUPS_TABLE as GROUPS, WINDOW_IN_TABLE as WINDOW_IN, WINDOW_TABLE as WINDOW,
};
/// Checkpoint metadata: what the buffered rows are (`partial` aggregates, or documents).
const FORM: &str = "fluxion.window_rows";

/// The state and plans of a stream's window stage.
pub struct ContinuousWindow {
    /// The stages before the window, then the event time as a column.
    before: Pipeline,
    pub(crate) window: StreamWindow,
    /// Stages after the window stage, run over each window's results.
    after: Vec<Stage>,
    schema: Option<SchemaRef>,
    buffer: Vec<RecordBatch>,
    marks: Watermarks,
    /// The SQL spelling: the query per window, and the table name it reads.
    inner_sql: Option<(String, String)>,
    /// Partial aggregation of a leading `$group`, when the window's pipeline has one.
    aggregate: Option<WindowAggregate>,
    /// Documents restored from a checkpoint of a version that kept documents, to be
    /// aggregated at the next step.
    restored_documents: Vec<RecordBatch>,
}

/// The window pipeline's leading `$group`, aggregated as documents arrive.
struct WindowAggregate {
    parts: GroupParts,
    /// The stages before the `$group`, then the partial `$group` keyed by (window start,
    /// `_id`), then the key taken apart again (`_id` and the window start column).
    partial: Pipeline,
    /// The window pipeline's stages after its `$group`.
    rest: Vec<Stage>,
}

impl WindowAggregate {
    /// The partial aggregation of `inner`, if it starts with a `$group` that merges.
    fn of(inner: &Pipeline) -> Result<Option<WindowAggregate>> {
        let Some((pre, group, rest)) = split_at_group(inner) else {
            return Ok(None);
        };
        let StageKind::Group(g) = &group.kind else {
            unreachable!("split at a $group")
        };
        let pre = Pipeline {
            stages: pre.to_vec(),
        };
        // Accumulators that do not merge ($top, $median, …) run over the documents instead.
        let (Ok(()), Ok(parts)) = (
            crate::runtime::query::check_stages(&pre),
            GroupParts::of(g, &group.path),
        ) else {
            return Ok(None);
        };
        let keyed = Group {
            id: Expression::Document(vec![
                (
                    "w".to_string(),
                    Expression::Field(FieldPath::parse(START, &group.path)?),
                ),
                ("k".to_string(), g.id.clone()),
            ]),
            fields: parts.partial.clone(),
        };
        let mut stages = pre.stages;
        stages.push(Stage {
            kind: StageKind::Group(keyed),
            path: group.path.clone(),
        });
        stages.extend(
            Pipeline::parse_at(
                &json!([{"$addFields": {START: "$_id.w", "_id": "$_id.k"}}]),
                &group.path,
            )?
            .stages,
        );
        Ok(Some(WindowAggregate {
            parts,
            partial: Pipeline { stages },
            rest: rest.to_vec(),
        }))
    }
}

impl ContinuousWindow {
    /// Fixed windows of `window`: `before` (the event time, then the stages before the window
    /// stage), the window's own pipeline, then `after`.
    pub(super) fn new(
        window: &StreamWindow,
        before: Vec<Stage>,
        after: Vec<Stage>,
    ) -> Result<Self> {
        Ok(ContinuousWindow {
            before: Pipeline { stages: before },
            window: window.clone(),
            after,
            schema: None,
            buffer: Vec::new(),
            marks: Watermarks::new(window),
            inner_sql: None,
            aggregate: WindowAggregate::of(&window.pipeline)?,
            restored_documents: Vec::new(),
        })
    }

    /// Fixed windows of a windowed SQL query: `inner` runs over each window's rows of `table`.
    pub(super) fn new_sql(
        window: &StreamWindow,
        before: Vec<Stage>,
        inner: String,
        table: String,
    ) -> Self {
        ContinuousWindow {
            before: Pipeline { stages: before },
            window: window.clone(),
            after: Vec::new(),
            schema: None,
            buffer: Vec::new(),
            marks: Watermarks::new(window),
            inner_sql: Some((inner, table)),
            aggregate: None,
            restored_documents: Vec::new(),
        }
    }

    pub(super) fn marks(&self) -> &Watermarks {
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
        if !self.restored_documents.is_empty() {
            let docs = std::mem::take(&mut self.restored_documents);
            for d in docs {
                self.keep(engine, d).await?;
            }
        }
        if batch_rows > 0 {
            let rows = collect_measured(
                engine.pipeline(table, &self.before).await?,
                batch_rows,
                stages,
            )
            .await?;
            if let Some(first) = rows.first() {
                let rows = concat_batches(&first.schema(), &rows)?;
                if let Some(kept) = self.admit(&rows, &mut out)? {
                    self.keep(engine, kept).await?;
                }
            }
        }
        let size = self.window.size_ms;
        let buffer = &self.buffer;
        // Computed only when every partition is idle (the start column is there by
        // construction: a missing one only leaves the windows open).
        self.marks.settle(|| {
            buffer
                .iter()
                .filter_map(|b| start_column(b).ok()?.values().iter().max().copied())
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

    /// Buffers documents assigned to windows (with their window start): as they are, or
    /// aggregated by (window, `_id`).
    async fn keep(&mut self, engine: &Engine, kept: RecordBatch) -> Result<()> {
        let rows = match &self.aggregate {
            None => kept,
            Some(agg) => {
                order::register_ordered(
                    engine.context(),
                    WINDOW_IN,
                    kept.schema(),
                    vec![vec![kept]],
                )?;
                let partial = engine
                    .pipeline(WINDOW_IN, &agg.partial)
                    .await?
                    .collect()
                    .await?;
                let Some(first) = partial.first() else {
                    return Ok(());
                };
                concat_batches(&first.schema(), &partial)?
            }
        };
        if rows.num_rows() == 0 {
            return Ok(());
        }
        // One schema for all buffered rows (every column nullable: batches may differ there).
        let schema = Arc::new(Schema::new(
            rows.schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        if self
            .schema
            .as_ref()
            .is_some_and(|s| s.fields() != schema.fields())
        {
            // Rows of an older checkpoint (without the partition column, say): to the new
            // layout.
            self.buffer = self
                .buffer
                .iter()
                .map(|b| conform(b, &schema))
                .collect::<Result<_>>()?;
        }
        self.schema = Some(schema.clone());
        self.buffer.push(
            RecordBatch::try_new(schema, rows.columns().to_vec()).map_err(|e| {
                Error::pipeline(
                    "window",
                    format!("a micro-batch's window rows changed shape ({e})"),
                )
            })?,
        );
        Ok(())
    }

    /// Assigns each document to its open windows (or finds it late); returns the documents
    /// kept, with their window start.
    fn admit(&mut self, rows: &RecordBatch, out: &mut WindowOutput) -> Result<Option<RecordBatch>> {
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
            return Ok(None);
        }
        let kept = take_record_batch(rows, &UInt32Array::from(take))?;
        Ok(Some(with_columns(
            &kept,
            vec![(
                Field::new(START, DataType::Int64, false),
                Arc::new(Int64Array::from(starts)) as ArrayRef,
            )],
        )?))
    }

    /// Runs and removes the windows that end at or before `watermark`, earliest first.
    async fn emit(&mut self, engine: &Engine, watermark: i64) -> Result<Vec<RecordBatch>> {
        let size = self.window.size_ms;
        let ends = |s: i64| s.saturating_add(size) <= watermark;
        let mut due = BTreeSet::new();
        for b in &self.buffer {
            for s in start_column(b)?.values() {
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
                    start_column(b)?.values().iter().map(|s| Some(*s == start)),
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
            let (docs, inner) = match &self.aggregate {
                None => (docs, &self.window.pipeline.stages),
                // The window's partial rows merged into its groups.
                Some(agg) => {
                    order::register_ordered(
                        engine.context(),
                        GROUPS,
                        docs.schema(),
                        vec![vec![docs]],
                    )?;
                    let merge = Pipeline {
                        stages: vec![agg.parts.merge_stage()],
                    };
                    let groups = engine
                        .pipeline(GROUPS, &merge)
                        .await?
                        .select(agg.parts.state_exprs())?
                        .select(agg.parts.output_exprs()?)?
                        .collect()
                        .await?;
                    let Some(first) = groups.first() else {
                        continue;
                    };
                    (concat_batches(&first.schema(), &groups)?, &agg.rest)
                }
            };
            order::register_ordered(engine.context(), WINDOW, docs.schema(), vec![vec![docs]])?;
            let stages = window_stages(inner, start, start + size, &self.after)?;
            let results = engine.pipeline(WINDOW, &stages).await?.collect().await?;
            output.extend(results.into_iter().filter(|b| b.num_rows() > 0));
        }
        // Keep only the rows of windows still open.
        let mut kept = Vec::new();
        for b in &self.buffer {
            let mask =
                BooleanArray::from_iter(start_column(b)?.values().iter().map(|s| Some(!ends(*s))));
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

    /// The open windows' documents (or partial aggregates) and the watermarks, for a
    /// checkpoint.
    pub fn snapshot(&self) -> Snapshot {
        let mut meta = self.marks.meta();
        // Documents of an older checkpoint not aggregated yet (a step failed since): as read.
        if let Some(first) = self.restored_documents.first() {
            return Snapshot::of(Some(first.schema()), self.restored_documents.clone(), meta);
        }
        if self.aggregate.is_some() {
            meta.push((FORM.to_string(), "partial".to_string()));
        }
        Snapshot::of(self.schema.clone(), self.buffer.clone(), meta)
    }

    /// Back to a checkpoint's state.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        self.buffer.clear();
        self.restored_documents.clear();
        self.marks.restore(&Default::default());
        if bytes.is_empty() {
            return Ok(());
        }
        let (schema, batches) = read_ipc(bytes)?;
        self.marks.restore(schema.metadata());
        let partial = schema.metadata().get(FORM).map(String::as_str) == Some("partial");
        let plain = current_names(&schema);
        let rows = batches
            .into_iter()
            .map(|b| RecordBatch::try_new(plain.clone(), b.columns().to_vec()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if self.aggregate.is_some() && !partial && !plain.fields().is_empty() {
            // Written when windows kept documents: aggregated at the next step.
            self.restored_documents = rows;
            self.schema = None;
            return Ok(());
        }
        self.buffer = rows;
        self.schema = Some(plain);
        Ok(())
    }
}

fn start_column(b: &RecordBatch) -> Result<&Int64Array> {
    b.column_by_name(START)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| Error::internal("buffered window rows without their window start"))
}

#[async_trait::async_trait]
impl super::Windowing for ContinuousWindow {
    fn kind(&self) -> &'static str {
        match self.window.kind {
            crate::dsl::stream_window::WindowKind::Tumbling => "tumbling window",
            crate::dsl::stream_window::WindowKind::Hopping { .. } => "hopping window",
            crate::dsl::stream_window::WindowKind::Session { .. } => "session window",
        }
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
        // All or nothing: a failed step (retried, or split) leaves the state as it was.
        let saved = (
            self.buffer.clone(),
            self.marks.clone(),
            self.schema.clone(),
            self.restored_documents.clone(),
        );
        self.marks.begin(now);
        let stepped = self
            .try_step(engine, table, batch_rows, end_of_input, stages)
            .await;
        if stepped.is_err() {
            (
                self.buffer,
                self.marks,
                self.schema,
                self.restored_documents,
            ) = saved;
        }
        stepped
    }

    fn marks(&self) -> &Watermarks {
        ContinuousWindow::marks(self)
    }

    fn state(&self) -> Result<Snapshot> {
        Ok(ContinuousWindow::snapshot(self))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        ContinuousWindow::restore_state(self, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::decode::{JsonlOptions, decode};
    use crate::document::encode::to_documents;
    use crate::document::hidden::legacy::WINDOW_START as OLD_START;
    use crate::runtime::window::WindowOperator;
    use crate::runtime::window::Windowing;
    use serde_json::Value;

    /// 90 documents of three keys in the window [0, 10 s), registered as table `t`.
    fn input(engine: &Engine) -> usize {
        let mut text = String::new();
        for i in 0..90 {
            text.push_str(&format!(
                "{{\"id\": {i}, \"ts\": {}, \"k\": \"k{}\", \"v\": {i}}}\n",
                i * 100,
                i % 3
            ));
        }
        let d = decode(text.as_bytes(), "t", &JsonlOptions::default()).unwrap();
        order::register_ordered(engine.context(), "t", d.schema, d.partitions).unwrap();
        90
    }

    fn window(group: Value) -> ContinuousWindow {
        window_after(json!([]), group)
    }

    /// A window whose pipeline is `pre`, then `$group: group`, then a sort by `_id`.
    fn window_after(pre: Value, group: Value) -> ContinuousWindow {
        let mut inner = pre.as_array().unwrap().clone();
        inner.push(json!({"$group": group}));
        inner.push(json!({"$sort": {"_id": 1}}));
        let p = Pipeline::from_value(&json!([{"$tumblingWindow": {
            "interval": {"size": 10, "unit": "second"},
            "pipeline": inner}}]))
        .unwrap();
        match WindowOperator::plan(&p, Some(&json!("$ts"))).unwrap() {
            Some(WindowOperator::Fixed(w)) => w,
            _ => panic!("a fixed window"),
        }
    }

    async fn flush(w: &mut ContinuousWindow, engine: &Engine) -> Vec<Value> {
        let out = w
            .step(engine, "t", 0, true, 0, &mut Vec::new())
            .await
            .unwrap();
        to_documents(&out.output)
            .unwrap()
            .into_iter()
            .map(|mut d| {
                d.as_object_mut().unwrap().remove("_stream_meta");
                d
            })
            .collect()
    }

    #[tokio::test]
    async fn a_leading_group_keeps_partial_aggregates_not_documents() {
        let engine = Engine::new();
        let n = input(&engine);
        let spec =
            json!({"_id": "$k", "n": {"$sum": 1}, "v": {"$avg": "$v"}, "ids": {"$push": "$id"}});
        let mut w = window(spec.clone());
        assert!(w.aggregate.is_some());
        w.step(&engine, "t", n, false, 0, &mut Vec::new())
            .await
            .unwrap();
        assert_eq!(w.state_rows(), 3, "one partial row per key");
        // Through a checkpoint.
        let bytes = w.snapshot().to_ipc().unwrap();
        let mut back = window(spec.clone());
        back.restore_state(&bytes).unwrap();
        let out = flush(&mut back, &engine).await;
        let ids = |k: i64| (0..90).filter(|i| i % 3 == k).collect::<Vec<i64>>();
        assert_eq!(
            out,
            (0..3)
                .map(
                    |k| json!({"_id": format!("k{k}"), "n": 30, "v": 43.5 + k as f64,
                                "ids": ids(k)})
                )
                .collect::<Vec<_>>()
        );
        // A checkpoint of documents (an earlier version's) is aggregated when read.
        let mut documents = window(spec.clone());
        documents.aggregate = None;
        documents
            .step(&engine, "t", n, false, 0, &mut Vec::new())
            .await
            .unwrap();
        assert_eq!(documents.state_rows(), 90);
        // (Then the window start column had another name.)
        let renamed = Arc::new(Schema::new(
            documents.buffer[0]
                .schema()
                .fields()
                .iter()
                .map(|f| match f.name().as_str() {
                    START => f.as_ref().clone().with_name(OLD_START),
                    _ => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        ));
        let old: Vec<RecordBatch> = documents
            .buffer
            .iter()
            .map(|b| RecordBatch::try_new(renamed.clone(), b.columns().to_vec()).unwrap())
            .collect();
        let old = Snapshot::of(Some(renamed), old, documents.marks.meta());
        let mut upgraded = window(spec.clone());
        upgraded.restore_state(&old.to_ipc().unwrap()).unwrap();
        assert_eq!(flush(&mut upgraded, &engine).await, out);
        // Stages before the `$group` that drop fields keep the window start (a rider).
        let mut reshaped = window_after(
            json!([{"$project": {"id": 1, "k": 1, "v": 1}}, {"$match": {"v": {"$gte": 0}}}]),
            spec,
        );
        assert!(reshaped.aggregate.is_some());
        reshaped
            .step(&engine, "t", n, false, 0, &mut Vec::new())
            .await
            .unwrap();
        assert_eq!(flush(&mut reshaped, &engine).await, out);
        // Whole documents pushed: no hidden column shows, as when the documents are kept.
        let roots = json!({"_id": "$k", "docs": {"$push": "$$ROOT"}, "last": {"$last": "$$ROOT"}});
        let mut partial = window(roots.clone());
        let mut kept = window(roots);
        kept.aggregate = None;
        for w in [&mut partial, &mut kept] {
            w.step(&engine, "t", n, false, 0, &mut Vec::new())
                .await
                .unwrap();
        }
        let (a, b) = (
            flush(&mut partial, &engine).await,
            flush(&mut kept, &engine).await,
        );
        assert_eq!(a, b);
        assert_eq!(
            a[0]["last"],
            json!({"id": 87, "ts": 8_700, "k": "k0", "v": 87})
        );
        // An accumulator that does not merge: the window keeps its documents.
        let mut median = window(
            json!({"_id": "$k", "m": {"$median": {"input": "$v", "method": "approximate"}}}),
        );
        assert!(median.aggregate.is_none());
        median
            .step(&engine, "t", n, false, 0, &mut Vec::new())
            .await
            .unwrap();
        assert_eq!(median.state_rows(), 90);
        assert_eq!(flush(&mut median, &engine).await.len(), 3);
    }
}

#[cfg(test)]
mod processing_tests {
    use super::*;
    use crate::document::decode::{JsonlOptions, decode};
    use crate::document::encode::to_documents;
    use crate::runtime::window::WindowOperator;
    use crate::runtime::window::Windowing;

    #[tokio::test]
    async fn processing_time_windows_resume_and_never_go_back() {
        let engine = Engine::new();
        let d = decode(b"{\"v\": 1}\n{\"v\": 2}\n", "t", &JsonlOptions::default()).unwrap();
        order::register_ordered(engine.context(), "t", d.schema, d.partitions).unwrap();
        let plan = || {
            let p = Pipeline::from_value(&json!([{"$tumblingWindow": {
                "interval": {"size": 10, "unit": "second"}, "boundary": "processingTime",
                "pipeline": [{"$group": {"_id": null, "n": {"$sum": 1}}}]}}]))
            .unwrap();
            // No timeField needed.
            match WindowOperator::plan(&p, None).unwrap() {
                Some(WindowOperator::Fixed(w)) => w,
                _ => panic!("a fixed window"),
            }
        };
        let mut w = plan();
        let out = w
            .step(&engine, "t", 2, false, 9_000, &mut Vec::new())
            .await
            .unwrap();
        assert!(out.output.is_empty());
        // A restart on a host whose clock is behind: the documents still join [0, 10 s).
        let mut back = plan();
        back.restore_state(&w.snapshot().to_ipc().unwrap()).unwrap();
        let out = back
            .step(&engine, "t", 2, false, 4_000, &mut Vec::new())
            .await
            .unwrap();
        assert!(out.output.is_empty() && out.late.is_empty());
        // The clock passes 10 s: the window closes with all four.
        let out = back
            .step(&engine, "t", 0, false, 10_000, &mut Vec::new())
            .await
            .unwrap();
        let docs = to_documents(&out.output).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["n"], json!(4));
    }
}

#[cfg(test)]
mod upgrade_tests {
    use super::*;
    use crate::document::decode::{JsonlOptions, decode};
    use crate::document::encode::to_documents;
    use crate::document::hidden::legacy::{EVENT_TIME as OLD_TIME, WINDOW_START as OLD_START};
    use crate::runtime::window::WindowOperator;
    use crate::runtime::window::Windowing;
    use crate::runtime::window::shared::TIME;

    #[tokio::test]
    async fn checkpoints_of_the_first_window_version_are_read() {
        let engine = Engine::new();
        let mut text = String::new();
        for i in 0..30 {
            text.push_str(&format!("{{\"ts\": {}, \"k\": \"k{}\"}}\n", i * 300, i % 2));
        }
        let d = decode(text.as_bytes(), "t", &JsonlOptions::default()).unwrap();
        order::register_ordered(engine.context(), "t", d.schema, d.partitions).unwrap();
        let plan = || {
            let p = Pipeline::from_value(&json!([{"$tumblingWindow": {
                "interval": {"size": 10, "unit": "second"},
                "pipeline": [{"$sort": {"k": 1}}, {"$group": {"_id": "$k", "n": {"$sum": 1}}}]}}]))
            .unwrap();
            match WindowOperator::plan(&p, Some(&json!("$ts"))).unwrap() {
                Some(WindowOperator::Fixed(w)) => w,
                _ => panic!("a fixed window"),
            }
        };
        let twice = |mut w: ContinuousWindow| {
            let engine = engine.clone();
            async move {
                w.step(&engine, "t", 30, false, 0, &mut Vec::new())
                    .await
                    .unwrap();
                let out = w
                    .step(&engine, "t", 0, true, 0, &mut Vec::new())
                    .await
                    .unwrap();
                to_documents(&out.output).unwrap()
            }
        };
        // The state after the input once, as the first version wrote it: the event time and
        // window start under their old names, no partition column, the largest event time.
        let mut first = plan();
        assert!(first.aggregate.is_none(), "$sort first: documents are kept");
        first
            .step(&engine, "t", 30, false, 0, &mut Vec::new())
            .await
            .unwrap();
        let batch = &first.buffer[0];
        let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| f.name() != crate::runtime::window::watermark::PARTITION)
            .map(|(f, c)| {
                let name = match f.name().as_str() {
                    TIME => OLD_TIME,
                    START => OLD_START,
                    other => other,
                };
                (f.as_ref().clone().with_name(name), c.clone())
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let old = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let meta = vec![("fluxion.max_event_time".to_string(), "8700".to_string())];
        let bytes = Snapshot::of(Some(schema), vec![old], meta)
            .to_ipc()
            .unwrap();
        let mut resumed = plan();
        resumed.restore_state(&bytes).unwrap();
        assert_eq!(resumed.marks.current(), Some(8_700));
        // Then the input once more, and the end.
        let mut expected = plan();
        expected
            .step(&engine, "t", 30, false, 0, &mut Vec::new())
            .await
            .unwrap();
        let want = twice(expected).await;
        assert_eq!(twice(resumed).await, want);
        assert_eq!(want[0]["n"], json!(30), "{want:?}");
    }
}
