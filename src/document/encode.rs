//! Arrow record batches → JSON lines, one document per line.
//!
//! Null fields are omitted, because in a columnar engine a null usually stands for a field the
//! document did not have; `_id` is always written (MongoDB shows `"_id": null` after grouping
//! everything together).

use std::io::Write;

use datafusion::arrow::array::Array;
use datafusion::arrow::json::WriterBuilder;
use datafusion::arrow::json::writer::LineDelimited;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::Result;

/// Appends `batch` to `out` as JSON lines.
pub fn write_batch(out: &mut Vec<u8>, batch: &RecordBatch) -> Result<()> {
    // `logical_nulls`, not `nulls`: an all-null `_id` (from `{_id: null}`) is a `NullArray`,
    // which has no validity buffer.
    let id_nulls = batch
        .schema()
        .index_of("_id")
        .ok()
        .and_then(|i| batch.column(i).logical_nulls())
        .filter(|n| n.null_count() > 0);
    let Some(id) = id_nulls else {
        let mut w = WriterBuilder::new()
            .with_explicit_nulls(false)
            .build::<_, LineDelimited>(out);
        w.write(batch)?;
        w.finish()?;
        return Ok(());
    };
    let mut buf = Vec::new();
    {
        let mut w = WriterBuilder::new()
            .with_explicit_nulls(false)
            .build::<_, LineDelimited>(&mut buf);
        w.write(batch)?;
        w.finish()?;
    }
    for (row, line) in buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if id.is_null(row) {
            out.extend_from_slice(b"{\"_id\":null");
            if line.len() > 2 {
                out.push(b',');
            }
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
        out.push(b'\n');
    }
    Ok(())
}

/// Writes `batches` as JSON lines to `w`.
pub fn write_batches<W: Write>(w: &mut W, batches: &[RecordBatch]) -> Result<()> {
    let mut buf = Vec::new();
    for b in batches {
        buf.clear();
        write_batch(&mut buf, b)?;
        w.write_all(&buf)
            .map_err(|e| crate::Error::external("writing JSON lines", e))?;
    }
    Ok(())
}

/// The documents in `batches` as JSON values (for tests and the embedding API).
pub fn to_documents(batches: &[RecordBatch]) -> Result<Vec<Value>> {
    let mut buf = Vec::new();
    for b in batches {
        write_batch(&mut buf, b)?;
    }
    buf.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .map_err(|e| crate::Error::input("encoded output", e.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn omits_nulls_but_keeps_id() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("_id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None, None])),
                Arc::new(Int64Array::from(vec![None, Some(2), None])),
            ],
        )
        .unwrap();
        let docs = to_documents(&[batch]).unwrap();
        assert_eq!(
            docs,
            vec![
                json!({"_id": "a"}),
                json!({"_id": null, "n": 2}),
                json!({"_id": null})
            ]
        );
    }
}
