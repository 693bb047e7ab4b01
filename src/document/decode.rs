//! JSON lines → Arrow record batches.
//!
//! The schema is inferred from the first `infer_records` documents, then the whole input is
//! decoded in parallel chunks by arrow-json's tape decoder in strict mode. If any document
//! disagrees with the sampled schema (a new field, a wider type), the schema is inferred again
//! from *every* document and decoding restarts — so a sample never loses data, and the common
//! case pays for one cheap sample. Inputs whose types conflict between objects and scalars go
//! through a slower path that rewrites those values into JSON text first. A declared schema
//! (`document::declared`) skips inference: fields it does not name are ignored.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::infer::{Shape, schema_of};
use crate::{Error, Result};

/// How JSON lines are read.
#[derive(Debug, Clone)]
pub struct JsonlOptions {
    /// Documents sampled for the first schema guess.
    pub infer_records: usize,
    /// Rows per record batch.
    pub batch_size: usize,
    /// Upper bound on parallel chunks (and so on output partitions).
    pub max_partitions: usize,
    /// A declared schema; `None` infers one from the documents.
    pub schema: Option<SchemaRef>,
}

impl Default for JsonlOptions {
    fn default() -> Self {
        JsonlOptions {
            infer_records: 10_000,
            batch_size: 8192,
            max_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            schema: None,
        }
    }
}

/// Decoded input: its schema and one list of batches per partition.
#[derive(Debug)]
pub struct Decoded {
    pub schema: SchemaRef,
    pub partitions: Vec<Vec<RecordBatch>>,
}

/// Decodes JSON lines `data` read from `source` (named in errors as `source:line`).
pub fn decode(data: &[u8], source: &str, opts: &JsonlOptions) -> Result<Decoded> {
    let chunks = split_lines(data, opts.max_partitions);
    if let Some(schema) = &opts.schema {
        // Declared dates may arrive as extended JSON objects, which the Arrow decoder does not
        // read: those inputs take the rewriting path (ISO text and numbers do not need it).
        let shape = Shape::of_type(&DataType::Struct(schema.fields().clone()));
        let rewrite = (shape.needs_rewrite() && memchr::memmem::find(data, b"\"$date\"").is_some())
            .then_some(&shape);
        return decode_chunks(schema.clone(), rewrite, data, &chunks, source, opts);
    }
    let (sample, complete) = infer_lines(data, source, opts.infer_records)?;
    match decode_with(&sample, data, &chunks, source, opts) {
        Ok(decoded) => return Ok(decoded),
        Err(e) if complete => return Err(e),
        Err(_) => {}
    }
    // The sample was not representative (or the data is malformed beyond it): infer from
    // every document, which also pins a malformed line to its line number.
    let full = infer_lines(data, source, usize::MAX)?.0;
    decode_with(&full, data, &chunks, source, opts)
}

/// Infers the shape of the first `limit` documents; reports whether that was all of them.
fn infer_lines(data: &[u8], source: &str, limit: usize) -> Result<(Shape, bool)> {
    let mut shape = Shape::Object(Default::default());
    let mut seen = 0usize;
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if seen == limit {
            return Ok((shape, false));
        }
        let v = parse_document(line, source, i + 1)?;
        shape = shape.merge(Shape::of(&v));
        seen += 1;
    }
    Ok((shape, true))
}

fn parse_document(line: &[u8], source: &str, line_no: usize) -> Result<Value> {
    let v: Value = serde_json::from_slice(line).map_err(|e| {
        Error::input(
            format!("{source}:{line_no}"),
            format!("not valid JSON: {e}"),
        )
    })?;
    if !v.is_object() {
        return Err(Error::input(
            format!("{source}:{line_no}"),
            "expected a JSON object (one document per line)",
        ));
    }
    Ok(v)
}

/// Splits `data` into at most `n` ranges that start and end on line boundaries.
fn split_lines(data: &[u8], n: usize) -> Vec<std::ops::Range<usize>> {
    // Small inputs are not worth a thread each.
    const MIN_CHUNK: usize = 1 << 20;
    let n = n.clamp(1, (data.len() / MIN_CHUNK).max(1));
    let mut ranges = Vec::with_capacity(n);
    let mut start = 0;
    for k in 1..=n {
        let mut end = if k == n {
            data.len()
        } else {
            data.len() * k / n
        };
        if end < start {
            end = start;
        }
        while end < data.len() && data[end - 1] != b'\n' {
            end += 1;
        }
        ranges.push(start..end);
        start = end;
    }
    ranges.retain(|r| !r.is_empty());
    if ranges.is_empty() {
        ranges.push(0..0);
    }
    ranges
}

fn decode_with(
    shape: &Shape,
    data: &[u8],
    chunks: &[std::ops::Range<usize>],
    source: &str,
    opts: &JsonlOptions,
) -> Result<Decoded> {
    let schema: SchemaRef = Arc::new(schema_of(shape));
    let rewrite = shape.needs_rewrite().then_some(shape);
    decode_chunks(schema, rewrite, data, chunks, source, opts)
}

/// Decodes every chunk in parallel with `schema`, rewriting values for `rewrite` when given.
/// Inferred schemas decode strictly (a field outside the schema means the sample was not
/// representative); declared ones ignore undeclared fields.
fn decode_chunks(
    schema: SchemaRef,
    rewrite: Option<&Shape>,
    data: &[u8],
    chunks: &[std::ops::Range<usize>],
    source: &str,
    opts: &JsonlOptions,
) -> Result<Decoded> {
    let strict = opts.schema.is_none();
    let results: Vec<Result<Vec<RecordBatch>>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|r| {
                let chunk = &data[r.clone()];
                let schema = schema.clone();
                s.spawn(move || match rewrite {
                    Some(shape) => decode_rewriting(shape, chunk, schema, opts.batch_size, strict),
                    None => decode_fast(chunk, schema, opts.batch_size, strict),
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("decoder thread panicked"))
            .collect()
    });
    let mut partitions = Vec::with_capacity(results.len());
    for (r, range) in results.into_iter().zip(chunks) {
        match r {
            Ok(batches) => partitions.push(batches),
            Err(e) => {
                // Pin the failure to its line: decode the chunk's lines one at a time.
                let first_line = data[..range.start].iter().filter(|b| **b == b'\n').count() + 1;
                let chunk = &data[range.clone()];
                for (i, line) in chunk.split(|b| *b == b'\n').enumerate() {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let one = match rewrite {
                        Some(shape) => decode_rewriting(shape, line, schema.clone(), 1, strict),
                        None => decode_fast(line, schema.clone(), 1, strict),
                    };
                    if let Err(e) = one {
                        return Err(Error::input(
                            format!("{source}:{}", first_line + i),
                            e.to_string(),
                        ));
                    }
                }
                return Err(Error::input(
                    format!("{source}:{first_line}"),
                    e.to_string(),
                ));
            }
        }
    }
    Ok(Decoded { schema, partitions })
}

fn decode_fast(
    chunk: &[u8],
    schema: SchemaRef,
    batch_size: usize,
    strict: bool,
) -> Result<Vec<RecordBatch>> {
    let mut decoder = ReaderBuilder::new(schema)
        .with_batch_size(batch_size)
        .with_strict_mode(strict)
        .with_coerce_primitive(true)
        .build_decoder()?;
    let mut out = Vec::new();
    let mut buf = chunk;
    while !buf.is_empty() {
        let n = decoder.decode(buf)?;
        buf = &buf[n..];
        if !buf.is_empty() {
            out.extend(decoder.flush()?);
        }
    }
    out.extend(decoder.flush()?);
    Ok(out)
}

fn decode_rewriting(
    shape: &Shape,
    chunk: &[u8],
    schema: SchemaRef,
    batch_size: usize,
    strict: bool,
) -> Result<Vec<RecordBatch>> {
    let mut decoder = ReaderBuilder::new(schema)
        .with_batch_size(batch_size)
        .with_strict_mode(strict)
        .with_coerce_primitive(true)
        .build_decoder()?;
    let mut out = Vec::new();
    let mut pending: Vec<Value> = Vec::with_capacity(batch_size);
    for line in chunk.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut v: Value = serde_json::from_slice(line)
            .map_err(|e| Error::input("line", format!("not valid JSON: {e}")))?;
        shape.conform(&mut v);
        pending.push(v);
        if pending.len() == batch_size {
            decoder.serialize(&pending)?;
            out.extend(decoder.flush()?);
            pending.clear();
        }
    }
    if !pending.is_empty() {
        decoder.serialize(&pending)?;
        out.extend(decoder.flush()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

    fn rows(d: &Decoded) -> usize {
        d.partitions
            .iter()
            .flatten()
            .map(RecordBatch::num_rows)
            .sum()
    }

    #[test]
    fn decodes_nested_documents() {
        let data = b"{\"a\": 1, \"b\": {\"c\": \"x\"}}\n\n{\"a\": 2, \"t\": [1,2]}\n";
        let d = decode(data, "t.jsonl", &JsonlOptions::default()).unwrap();
        assert_eq!(rows(&d), 2);
        assert_eq!(d.schema.fields().len(), 3);
    }

    #[test]
    fn a_late_new_field_or_wider_type_is_not_lost() {
        let mut data = String::new();
        for i in 0..50 {
            data.push_str(&format!("{{\"n\": {i}}}\n"));
        }
        data.push_str("{\"n\": 0.5, \"late\": \"here\"}\n");
        let opts = JsonlOptions {
            infer_records: 10,
            ..Default::default()
        };
        let d = decode(data.as_bytes(), "t.jsonl", &opts).unwrap();
        assert_eq!(rows(&d), 51);
        assert_eq!(d.schema.field(0).data_type(), &DataType::Float64);
        assert_eq!(d.schema.field(1).name(), "late");
    }

    #[test]
    fn objects_mixed_with_scalars_become_json_text() {
        let data = b"{\"v\": {\"k\": 1}}\n{\"v\": 7}\n{\"v\": \"s\"}\n";
        let d = decode(data, "t.jsonl", &JsonlOptions::default()).unwrap();
        assert_eq!(d.schema.field(0).data_type(), &DataType::Utf8);
        let col = d.partitions[0][0].column(0);
        let strings = col
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        assert_eq!(strings.value(0), "{\"k\":1}");
        assert_eq!(strings.value(1), "7");
        assert_eq!(strings.value(2), "s");
    }

    #[test]
    fn malformed_lines_are_reported_with_their_line_number() {
        let e = decode(
            b"{\"a\": 1}\n{\"a\": \n",
            "bad.jsonl",
            &JsonlOptions::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("bad.jsonl:2: not valid JSON"),
            "{e}"
        );
        let e = decode(b"[1, 2]\n", "bad.jsonl", &JsonlOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("bad.jsonl:1: expected a JSON object"),
            "{e}"
        );
    }

    #[test]
    fn a_declared_schema_is_used_as_is() {
        use datafusion::arrow::datatypes::{Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Float64, true)]));
        let opts = JsonlOptions {
            schema: Some(schema),
            ..Default::default()
        };
        let d = decode(
            b"{\"a\": 1, \"extra\": \"x\"}\n{\"b\": 2}\n",
            "t.jsonl",
            &opts,
        )
        .unwrap();
        assert_eq!(rows(&d), 2);
        assert_eq!(d.schema.fields().len(), 1);
        assert_eq!(d.schema.field(0).data_type(), &DataType::Float64);
        let e = decode(
            b"{\"a\": 1}\n{\"a\": 2}\n{\"a\": \"three\"}\n",
            "t.jsonl",
            &opts,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("t.jsonl:3: "), "{e}");
    }

    #[test]
    fn dates_decode_from_extended_json_iso_text_and_milliseconds() {
        use datafusion::arrow::array::{Array, TimestampMillisecondArray};
        use datafusion::arrow::datatypes::{Field, Schema};
        let inferred = decode(
            b"{\"at\": {\"$date\": \"1970-01-01T00:00:01.5Z\"}}\n{\"at\": {\"$date\": {\"$numberLong\": \"7\"}}}\n",
            "t.jsonl",
            &JsonlOptions::default(),
        )
        .unwrap();
        let declared = decode(
            b"{\"at\": \"1970-01-01T00:00:01.5Z\"}\n{\"at\": 7}\n{\"at\": {\"$date\": 9}}\n",
            "t.jsonl",
            &JsonlOptions {
                schema: Some(Arc::new(Schema::new(vec![Field::new(
                    "at",
                    crate::document::date::date_type(),
                    true,
                )]))),
                ..Default::default()
            },
        )
        .unwrap();
        for (d, want) in [(inferred, vec![1500, 7]), (declared, vec![1500, 7, 9])] {
            assert_eq!(
                d.schema.field(0).data_type(),
                &crate::document::date::date_type()
            );
            let col = d.partitions[0][0].column(0);
            let ts = col
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            assert_eq!(ts.values().to_vec(), want);
            assert_eq!(ts.null_count(), 0);
        }
    }

    #[test]
    fn chunks_split_on_line_boundaries() {
        let data = "{\"a\":1}\n".repeat(400_000);
        let ranges = split_lines(data.as_bytes(), 4);
        assert!(ranges.len() > 1);
        for r in &ranges {
            assert_eq!(data.as_bytes()[r.end - 1], b'\n');
        }
        assert_eq!(ranges.last().unwrap().end, data.len());
    }
}
