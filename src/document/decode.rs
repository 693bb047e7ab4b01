//! JSON lines → Arrow record batches.
//!
//! The schema is inferred from the first `infer_records` documents, then the whole input is
//! read in parallel chunks, each in one strict pass straight into Arrow columns
//! ([`lines`](super::lines)). If any document disagrees with the sampled schema (a new field,
//! a wider type), the schema is inferred again from *every* document and reading restarts — so
//! a sample never loses data, and the common case pays for one cheap sample. A declared schema
//! (`document::declared`) skips inference: fields it does not name are ignored.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::infer::{Shape, schema_of};
use super::lines::{self, Invalid, ReadOptions};
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

/// The cores this process may use, asked of the system once: asking reads the cgroup files
/// each time, which a stream of small micro-batches would do for every batch.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl Default for JsonlOptions {
    fn default() -> Self {
        JsonlOptions {
            infer_records: 10_000,
            batch_size: 8192,
            max_partitions: cores().max(2),
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

/// Decodes JSON lines `data` read from `source` (named in errors as `source:line`). Every line
/// is checked strictly ([`lines`](super::lines)): the first that is not a JSON object, or does
/// not fit a declared schema, is an error naming its line.
pub fn decode(data: &[u8], source: &str, opts: &JsonlOptions) -> Result<Decoded> {
    let chunks = split_lines(data, opts.max_partitions);
    if let Some(schema) = &opts.schema {
        let shape = Shape::of_type(&DataType::Struct(schema.fields().clone()));
        return decode_chunks(schema.clone(), &shape, data, &chunks, source, opts)
            .map_err(Failure::into_error);
    }
    let (sample, complete) = infer_lines(data, source, opts.infer_records)?;
    match decode_with(&sample, data, &chunks, source, opts) {
        Ok(decoded) => return Ok(decoded),
        Err(Failure::Malformed(e)) => return Err(e),
        Err(Failure::Unfit(e)) if complete => return Err(e),
        Err(Failure::Unfit(_)) => {}
    }
    // The sample was not representative: infer from every document.
    let full = infer_lines(data, source, usize::MAX)?.0;
    decode_with(&full, data, &chunks, source, opts).map_err(Failure::into_error)
}

/// Lines decoded with a schema: the batches of those that read, and the others.
pub type ReadLines = lines::Read;

/// Decodes the JSON lines of `data` with `schema`, leaving out (and listing) every line that
/// is not a JSON object or does not fit the schema. `strict` also refuses fields the schema
/// lacks (an inferred schema); a declared one ignores them. With `first_only` it stops at the
/// first such line.
pub fn read_lines(
    data: &[u8],
    schema: &SchemaRef,
    strict: bool,
    batch_size: usize,
    first_only: bool,
) -> Result<ReadLines> {
    let shape = Shape::of_type(&DataType::Struct(schema.fields().clone()));
    read_lines_shaped(data, schema, &shape, strict, batch_size, first_only)
}

/// Like [`read_lines`] (without `first_only`), reading chunks of `data` on up to `threads`
/// threads when it is large enough to be worth it (a stream's big micro-batches); the batches
/// and the lines left out come in input order, their offsets and line numbers in `data`.
pub fn read_lines_parallel(
    data: &[u8],
    schema: &SchemaRef,
    strict: bool,
    batch_size: usize,
    threads: usize,
) -> Result<ReadLines> {
    let chunks = split_lines(data, threads);
    if chunks.len() < 2 {
        return read_lines(data, schema, strict, batch_size, false);
    }
    let shape = Shape::of_type(&DataType::Struct(schema.fields().clone()));
    let results = read_chunks(data, &chunks, schema, &shape, strict, batch_size, false);
    let mut out = ReadLines::default();
    for (r, range) in results.into_iter().zip(&chunks) {
        let read = r?;
        out.documents += read.documents;
        out.batches.extend(read.batches);
        if !read.invalid.is_empty() {
            let before = memchr::memchr_iter(b'\n', &data[..range.start]).count();
            out.invalid
                .extend(read.invalid.into_iter().map(|bad| Invalid {
                    line: before + bad.line,
                    offset: range.start + bad.offset,
                    ..bad
                }));
        }
    }
    Ok(out)
}

/// [`read_lines_shaped`] over each chunk of `data`, one thread each, results in order.
fn read_chunks(
    data: &[u8],
    chunks: &[std::ops::Range<usize>],
    schema: &SchemaRef,
    shape: &Shape,
    strict: bool,
    batch_size: usize,
    first_only: bool,
) -> Vec<Result<ReadLines>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|r| {
                let chunk = &data[r.clone()];
                s.spawn(move || {
                    read_lines_shaped(chunk, schema, shape, strict, batch_size, first_only)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::internal("a JSON decoder thread panicked")))
            })
            .collect()
    })
}

fn read_lines_shaped(
    data: &[u8],
    schema: &SchemaRef,
    shape: &Shape,
    strict: bool,
    batch_size: usize,
    first_only: bool,
) -> Result<ReadLines> {
    let opts = ReadOptions {
        strict,
        batch_size,
        first_only,
        keep: true,
    };
    lines::read(data, schema, shape, opts)
}

/// The schema of the object lines of `data`, lines that are not JSON objects left out (a
/// stream's error policy deals with them when it reads them). It is inferred from the first
/// `sample` documents and then confirmed by reading every line against it, strictly, on up to
/// `threads` threads; only if some line does not fit is every line's shape merged — so the
/// answer is the schema of all the documents, and in the common case costs one fast pass.
pub fn infer_schema(data: &[u8], sample: usize, threads: usize) -> Result<SchemaRef> {
    let mut shape = Shape::Object(Default::default());
    let mut seen = 0usize;
    let mut complete = true;
    for line in data.split(|b| *b == b'\n') {
        if seen == sample {
            complete = false;
            break;
        }
        if let Ok(v @ Value::Object(_)) = serde_json::from_slice::<Value>(line) {
            shape = shape.merge(Shape::of_document(&v));
            seen += 1;
        }
    }
    let schema: SchemaRef = Arc::new(schema_of(&shape));
    if complete {
        return Ok(schema);
    }
    let chunks = split_lines(data, threads);
    let opts = ReadOptions {
        strict: true,
        batch_size: 8192,
        first_only: false,
        keep: false,
    };
    let fits = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|r| {
                let chunk = &data[r.clone()];
                let (schema, shape) = (&schema, &shape);
                s.spawn(move || lines::read(chunk, schema, shape, opts))
            })
            .collect();
        handles.into_iter().try_fold(true, |fits, h| {
            let read = h
                .join()
                .unwrap_or_else(|_| Err(Error::internal("a JSON reader thread panicked")))?;
            Ok::<_, Error>(fits && read.invalid.iter().all(|bad| bad.malformed))
        })
    })?;
    if fits {
        return Ok(schema);
    }
    Ok(Arc::new(schema_of(&infer_all(data, &chunks))))
}

/// The merged shape of every object line of `data`, one thread per chunk.
fn infer_all(data: &[u8], chunks: &[std::ops::Range<usize>]) -> Shape {
    let fold = |chunk: &[u8]| {
        let mut shape = Shape::Object(Default::default());
        for line in chunk.split(|b| *b == b'\n') {
            if let Ok(v @ Value::Object(_)) = serde_json::from_slice::<Value>(line) {
                shape = shape.merge(Shape::of_document(&v));
            }
        }
        shape
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|r| {
                let chunk = &data[r.clone()];
                s.spawn(move || fold(chunk))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Shape::Null))
            .fold(Shape::Object(Default::default()), Shape::merge)
    })
}

/// Why a decode failed: a line that is not JSON (final), or one that does not fit the
/// schema (a sampled schema is then inferred again from every document).
enum Failure {
    Malformed(Error),
    Unfit(Error),
}

impl Failure {
    fn into_error(self) -> Error {
        match self {
            Failure::Malformed(e) | Failure::Unfit(e) => e,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Malformed(e)
    }
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
        shape = shape.merge(Shape::of_document(&v));
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

/// Splits `data` into at most `n` ranges that start and end on line boundaries (the one
/// chunker of JSON lines, for decoding and for inference).
pub(crate) fn split_lines(data: &[u8], n: usize) -> Vec<std::ops::Range<usize>> {
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
        if end > start && end < data.len() && data[end - 1] != b'\n' {
            end = memchr::memchr(b'\n', &data[end..]).map_or(data.len(), |i| end + i + 1);
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
) -> std::result::Result<Decoded, Failure> {
    let schema: SchemaRef = Arc::new(schema_of(shape));
    decode_chunks(schema, shape, data, chunks, source, opts)
}

/// Decodes every chunk in parallel with `schema` (of `shape`); the first line that does not
/// read is the error. Inferred schemas decode strictly (a field outside the schema means the
/// sample was not representative); declared ones ignore undeclared fields.
fn decode_chunks(
    schema: SchemaRef,
    shape: &Shape,
    data: &[u8],
    chunks: &[std::ops::Range<usize>],
    source: &str,
    opts: &JsonlOptions,
) -> std::result::Result<Decoded, Failure> {
    let strict = opts.schema.is_none();
    let results = read_chunks(data, chunks, &schema, shape, strict, opts.batch_size, true);
    let mut partitions = Vec::with_capacity(results.len());
    for (r, range) in results.into_iter().zip(chunks) {
        let read = r?;
        if let Some(bad) = read.invalid.into_iter().next() {
            let before = memchr::memchr_iter(b'\n', &data[..range.start]).count();
            let e = Error::input(format!("{source}:{}", before + bad.line + 1), bad.reason);
            return Err(match bad.malformed {
                true => Failure::Malformed(e),
                false => Failure::Unfit(e),
            });
        }
        partitions.push(read.batches);
    }
    Ok(Decoded { schema, partitions })
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

    /// A schema confirmed by reading every line is the schema of all the documents: what the
    /// sample missed (a late field, a plain number beside dates, an empty sub-document beside
    /// objects) widens it as full inference does; unreadable lines and empty documents do not.
    #[test]
    fn a_sampled_schema_is_confirmed_against_every_line() {
        let mut data = String::new();
        for i in 0..50 {
            data.push_str(&format!(
                "{{\"n\": {i}, \"at\": {{\"$date\": {i}}}, \"o\": {{\"k\": 1}}}}\n"
            ));
        }
        data.push_str("{}\n{\"n\": 1,,}\nnot json\n");
        let types = |data: &str| {
            let schema = infer_schema(data.as_bytes(), 10, 3).unwrap();
            schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect::<Vec<_>>()
        };
        let base = types(&data);
        assert_eq!(base.len(), 3, "{base:?}");
        assert_eq!(base[1].1, crate::document::date::date_type());
        assert!(matches!(base[2].1, DataType::Struct(_)), "{base:?}");
        for (late, field, want) in [
            ("{\"late\": \"x\"}", "late", DataType::Utf8),
            ("{\"at\": 5}", "at", DataType::Utf8),
            ("{\"o\": {}}", "o", DataType::Utf8),
            ("{\"n\": 0.5}", "n", DataType::Float64),
        ] {
            let got = types(&format!("{data}{late}\n"));
            let ty = got.iter().find(|(n, _)| n == field).map(|(_, t)| t.clone());
            assert_eq!(ty, Some(want), "after {late}: {got:?}");
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

    /// Read in chunks on several threads, a big input gives the same batches and the same
    /// left-out lines (offsets and line numbers in the whole input) as read on one.
    #[test]
    fn reading_in_parallel_reads_as_one_thread_does() {
        let mut data = String::new();
        for i in 0..60_000 {
            match i {
                17 | 45_001 => data.push_str("{\"a\": 1,,}\n"),
                30_000 => data.push_str("{\"a\": \"text\"}\n"),
                _ => data.push_str(&format!(
                    "{{\"a\": {i}, \"pad\": \"xxxxxxxxxxxxxxxxxxxx\"}}\n"
                )),
            }
        }
        let schema: SchemaRef = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new("a", DataType::Int64, true),
        ]));
        let one = read_lines(data.as_bytes(), &schema, false, 8192, false).unwrap();
        let many = read_lines_parallel(data.as_bytes(), &schema, false, 8192, 3).unwrap();
        assert!(
            split_lines(data.as_bytes(), 3).len() > 1,
            "big enough to split"
        );
        let count = |r: &ReadLines| r.batches.iter().map(|b| b.num_rows()).sum::<usize>();
        assert_eq!(count(&one), 59_997);
        assert_eq!(count(&many), count(&one));
        let at = |r: &ReadLines| {
            r.invalid
                .iter()
                .map(|i| (i.line, i.offset))
                .collect::<Vec<_>>()
        };
        assert_eq!(at(&many), at(&one));
        assert_eq!(
            at(&one).iter().map(|x| x.0).collect::<Vec<_>>(),
            [17, 30_000, 45_001]
        );
        let (line, offset) = at(&many)[2];
        assert!(data[offset..].starts_with("{\"a\": 1,,}"), "line {line}");
    }
}
