//! What the window operators share: the hidden columns their rows carry (event time, window
//! start), what one step gives ([`WindowOutput`]), and the helpers that add or remove those
//! columns.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use crate::document::hidden;
use crate::dsl::path::JsonPath;
use crate::dsl::{Pipeline, Stage};
use crate::runtime::policy::dead_letters::{DeadLetter, rows_as_json};
use crate::{Error, Result};

/// The event time of each document (a rider: it survives `$project`, `plan::order`).
pub(super) const TIME: &str = hidden::RIDE_TIME;
/// Each buffered row's window start (a rider, so the stages before a window pipeline's `$group`
/// keep it).
pub(super) const START: &str = hidden::RIDE_WINDOW_START;
/// The hidden column holding each document's source partition (a rider, `plan::order`).
pub const PARTITION: &str = hidden::RIDE_PARTITION;

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
            position: json!({"windowInput": i}),
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

/// `docs` with the window's bounds as the columns `window_start` and `window_end`.
pub(super) fn with_bounds(docs: &RecordBatch, start: i64, end: i64) -> Result<RecordBatch> {
    let n = docs.num_rows();
    with_row_bounds(docs, vec![start; n], vec![end; n])
}

/// `docs` with each row's window bounds as the columns `window_start` and `window_end`.
pub(super) fn with_row_bounds(
    docs: &RecordBatch,
    start: Vec<i64>,
    end: Vec<i64>,
) -> Result<RecordBatch> {
    use datafusion::arrow::array::TimestampMillisecondArray;
    let ty = DataType::Timestamp(
        datafusion::arrow::datatypes::TimeUnit::Millisecond,
        Some("UTC".into()),
    );
    let column = |at: Vec<i64>| {
        Arc::new(TimestampMillisecondArray::from(at).with_timezone("UTC")) as ArrayRef
    };
    with_columns(
        docs,
        vec![
            (Field::new("window_start", ty.clone(), false), column(start)),
            (Field::new("window_end", ty, false), column(end)),
        ],
    )
}

/// `schema` with the hidden columns' names of older checkpoints changed to today's.
pub(super) fn current_names(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match hidden::legacy::current(f.name()) {
                Some(name) => f.as_ref().clone().with_name(name),
                None => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ))
}

/// `batch` in the layout of `target`: columns by name, in its order (cast where the type
/// differs); a column it lacks — the partition column, added after a checkpoint was written —
/// as zeros (partition 0) or nulls.
pub(super) fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let columns = target
        .fields()
        .iter()
        .map(|f| -> Result<ArrayRef> {
            Ok(match batch.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => c.clone(),
                Some(c) => datafusion::arrow::compute::cast(c, f.data_type())?,
                None if f.name() == PARTITION => Arc::new(UInt32Array::from(vec![0u32; n])),
                None => datafusion::arrow::array::new_null_array(f.data_type(), n),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(target.clone(), columns)?)
}

/// `batch` with `extra` columns after its own.
pub(super) fn with_columns(
    batch: &RecordBatch,
    extra: Vec<(Field, ArrayRef)>,
) -> Result<RecordBatch> {
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    let mut columns = batch.columns().to_vec();
    for (field, column) in extra {
        fields.push(Arc::new(field));
        columns.push(column);
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

/// The documents without the window operators' own (hidden) columns.
pub(super) fn visible(b: &RecordBatch) -> Result<RecordBatch> {
    let keep: Vec<usize> = b
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !hidden::is_hidden(f.name()))
        .map(|(i, _)| i)
        .collect();
    Ok(b.project(&keep)?)
}
