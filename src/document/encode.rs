//! Arrow record batches → JSON lines, one document per line.
//!
//! Null fields are omitted, because in a columnar engine a null usually stands for a field the
//! document did not have; `_id` is always written (MongoDB shows `"_id": null` after grouping
//! everything together).

use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Schema, TimeUnit, TimestampMillisecondType,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::WriterBuilder;
use datafusion::arrow::json::writer::{
    Encoder, EncoderFactory, EncoderOptions, LineDelimited, NullableEncoder,
};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::Result;

/// Field metadata key marking a `Utf8` column that holds JSON text (a dead letter's
/// `position`): JSON sinks write its values as JSON, not as strings.
pub const JSON_TEXT: &str = "fluxion.json";

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
            .with_encoder_factory(Arc::new(Dates))
            .build::<_, LineDelimited>(out);
        w.write(batch)?;
        w.finish()?;
        return Ok(());
    };
    let mut buf = Vec::new();
    {
        let mut w = WriterBuilder::new()
            .with_explicit_nulls(false)
            .with_encoder_factory(Arc::new(Dates))
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

/// Writes timestamps as extended JSON dates (`{"$date": "…Z"}`) instead of Arrow's bare text.
#[derive(Debug)]
struct Dates;

impl EncoderFactory for Dates {
    fn make_default_encoder<'a>(
        &self,
        field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        if field.metadata().contains_key(JSON_TEXT)
            && let Some(text) = array.as_string_opt::<i32>()
        {
            return Ok(Some(NullableEncoder::new(
                Box::new(RawJson(text)),
                array.logical_nulls(),
            )));
        }
        if let Some(bytes) = array.as_binary_opt::<i32>() {
            return Ok(Some(NullableEncoder::new(
                Box::new(BinaryEncoder(bytes)),
                array.logical_nulls(),
            )));
        }
        let DataType::Timestamp(unit, tz) = array.data_type() else {
            return Ok(None);
        };
        let millis = match unit {
            TimeUnit::Millisecond => array.slice(0, array.len()),
            _ => cast(
                array,
                &DataType::Timestamp(TimeUnit::Millisecond, tz.clone()),
            )?,
        };
        let nulls = millis.logical_nulls();
        Ok(Some(NullableEncoder::new(
            Box::new(DateEncoder(millis)),
            nulls,
        )))
    }
}

struct DateEncoder(datafusion::arrow::array::ArrayRef);

/// JSON text written as it is.
struct RawJson<'a>(&'a datafusion::arrow::array::StringArray);

impl Encoder for RawJson<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.value(idx).as_bytes());
    }
}

/// Binary data as MongoDB's extended JSON: `{"$binary": {"base64": "…", "subType": "00"}}`.
struct BinaryEncoder<'a>(&'a datafusion::arrow::array::BinaryArray);

impl Encoder for BinaryEncoder<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        use base64::Engine;
        out.extend_from_slice(b"{\"$binary\":{\"base64\":\"");
        out.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(self.0.value(idx))
                .as_bytes(),
        );
        out.extend_from_slice(b"\",\"subType\":\"00\"}}");
    }
}

impl Encoder for DateEncoder {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let ms = self.0.as_primitive::<TimestampMillisecondType>().value(idx);
        super::date::write_date(out, ms);
    }
}

/// Each value of `column` as bytes: text as it is, anything else as JSON; `None` for null
/// (a missing field).
pub fn column_texts(column: &ArrayRef) -> Result<Vec<Option<Vec<u8>>>> {
    if let Some(s) = column.as_string_opt::<i32>() {
        return Ok((0..s.len())
            .map(|i| s.is_valid(i).then(|| s.value(i).as_bytes().to_vec()))
            .collect());
    }
    column_json(column)
}

/// Each value of `column` as JSON (text quoted); `None` for null (a missing field).
pub fn column_json(column: &ArrayRef) -> Result<Vec<Option<Vec<u8>>>> {
    if column.data_type() == &DataType::Null {
        return Ok(vec![None; column.len()]);
    }
    // Through the document encoder: `{"v":…}` per row, `{}` for none.
    let one = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "v",
            column.data_type().clone(),
            true,
        )])),
        vec![column.clone()],
    )?;
    let mut text = Vec::new();
    write_batch(&mut text, &one)?;
    Ok(text
        .split(|b| *b == b'\n')
        .take(column.len())
        .map(|line| {
            line.strip_prefix(b"{\"v\":")
                .and_then(|l| l.strip_suffix(b"}"))
                .map(<[u8]>::to_vec)
        })
        .collect())
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

    #[test]
    fn binary_values_are_extended_json() {
        use datafusion::arrow::array::BinaryArray;
        let schema = Arc::new(Schema::new(vec![Field::new(
            "value",
            DataType::Binary,
            true,
        )]));
        let values = BinaryArray::from_iter(vec![Some(&b"\x00\xffhi"[..]), None, Some(&b""[..])]);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap();
        let mut out = Vec::new();
        write_batch(&mut out, &batch).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"value\":{\"$binary\":{\"base64\":\"AP9oaQ==\",\"subType\":\"00\"}}}\n{}\n{\"value\":{\"$binary\":{\"base64\":\"\",\"subType\":\"00\"}}}\n"
        );
    }

    #[test]
    fn dates_are_extended_json() {
        use datafusion::arrow::array::TimestampMillisecondArray;
        let schema = Arc::new(Schema::new(vec![Field::new(
            "at",
            crate::document::date::date_type(),
            true,
        )]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(
                TimestampMillisecondArray::from(vec![Some(1500), None]).with_timezone("UTC"),
            )],
        )
        .unwrap();
        let docs = to_documents(&[batch]).unwrap();
        assert_eq!(
            docs,
            vec![
                json!({"at": {"$date": "1970-01-01T00:00:01.500Z"}}),
                json!({})
            ]
        );
    }

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
