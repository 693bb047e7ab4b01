//! The dead-letter record: what failed, why, where it came from.
//!
//! Every dead letter is one document `{reason, stage, position, raw}`: `stage` is where it
//! failed (`source` for a record that could not be read, `pipeline` for a document the
//! pipeline failed on, `sink` for output the sink refused), `position` the record's place in
//! the source (a JSON object: the source's own position, or `{"from": <position>, "document": i}`
//! for the i-th document read after a position; JSON sinks write it as an object, others as
//! its JSON text), `raw` the record as it was read (or the document, as JSON).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use serde_json::Value;

use crate::Result;
use crate::connect::source::Rejected;
use crate::document::encode::JSON_TEXT;

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub reason: String,
    pub stage: &'static str,
    pub position: Value,
    pub raw: String,
}

impl DeadLetter {
    /// A record the source could not read.
    pub fn unreadable(r: &Rejected) -> DeadLetter {
        DeadLetter {
            reason: r.reason.clone(),
            stage: "source",
            position: r.position.0.clone(),
            raw: r.raw.clone(),
        }
    }
}

/// The dead letters as one batch for the dead-letter sink.
pub fn to_batch(letters: &[DeadLetter]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("reason", DataType::Utf8, false),
        Field::new("stage", DataType::Utf8, false),
        Field::new("position", DataType::Utf8, false)
            .with_metadata([(JSON_TEXT.to_string(), "true".to_string())].into()),
        Field::new("raw", DataType::Utf8, false),
    ]));
    let col = |f: &dyn Fn(&DeadLetter) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(letters.iter().map(f)))
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![
            col(&|d| &d.reason),
            col(&|d| d.stage),
            Arc::new(StringArray::from_iter_values(
                letters.iter().map(|d| d.position.to_string()),
            )),
            col(&|d| &d.raw),
        ],
    )?)
}

/// The documents of `batch` as JSON lines (for `raw`), one string per row.
pub fn rows_as_json(batch: &RecordBatch) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let mut buf = Vec::new();
        crate::document::encode::write_batch(&mut buf, &batch.slice(i, 1))?;
        out.push(String::from_utf8_lossy(&buf).trim_end().to_string());
    }
    Ok(out)
}
