//! A JSON-lines file as a streaming source: documents are read from a byte offset (the
//! position), complete lines only; with `follow`, the source waits for lines appended to a
//! growing file instead of ending at its end.
//!
//! The schema is declared, or inferred from the documents in the file when the source opens;
//! later documents are read with it (fields it does not name are ignored).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use super::source::{Position, Rejected, Source, SourceBatch};
use crate::document::decode::{JsonlOptions, ReadLines, infer_schema, read_lines_parallel};
use crate::{Error, Result};

/// Bytes read per attempt (a micro-batch never waits for more than this much text).
const CHUNK: usize = 8 << 20;

/// A JSON-lines file read from a byte offset.
pub struct JsonlFileSource {
    path: PathBuf,
    schema: SchemaRef,
    offset: u64,
    /// Where to stop (a replay), if anywhere.
    end: Option<u64>,
    /// Where to pause: the end of a logged micro-batch formed again (`Source::bound`).
    cut: Option<u64>,
    follow: bool,
    /// Whether the schema was declared (else inferred, and replaced by a checkpoint's).
    declared: bool,
    /// How long `next_batch` waits for new lines when following.
    pub poll: Duration,
    /// Average bytes per line read so far (how much to read for a micro-batch).
    line_bytes: f64,
    /// Bytes of the file from `offset` on, read but not yet made into documents: what a read
    /// took past a micro-batch's last line is not read again, and the buffer is reused.
    buf: Vec<u8>,
}

impl JsonlFileSource {
    /// Opens `path`; `schema` declared, or inferred from the file as it is now.
    pub fn open(path: impl Into<PathBuf>, schema: Option<SchemaRef>, follow: bool) -> Result<Self> {
        let path = path.into();
        let declared = schema.is_some();
        let schema = match schema {
            Some(s) => s,
            None => {
                let data = std::fs::read(&path)
                    .map_err(|e| Error::external(format!("reading {}", path.display()), e))?;
                if data.iter().all(u8::is_ascii_whitespace) {
                    return Err(Error::input(
                        path.display().to_string(),
                        "the file is empty: declare the source's schema to follow it from the start",
                    ));
                }
                // Inferred from the lines that parse: the unreadable ones are for the error
                // policy to deal with when they are read.
                let threads = crate::document::decode::cores();
                infer_schema(&data, JsonlOptions::default().infer_records, threads)?
            }
        };
        Ok(JsonlFileSource {
            path,
            schema,
            offset: 0,
            end: None,
            cut: None,
            follow,
            declared,
            poll: Duration::from_millis(50),
            line_bytes: 256.0,
            buf: Vec::new(),
        })
    }

    /// Reads until `buf` holds `max_rows` complete lines from the offset (or all there are);
    /// gives the length in bytes of those lines, which start `buf`.
    fn read_lines(&mut self, max_rows: usize) -> Result<usize> {
        let io = |e: std::io::Error| Error::external(format!("reading {}", self.path.display()), e);
        let stop = match (self.end, self.cut) {
            (Some(e), Some(c)) => Some(e.min(c)),
            (e, c) => e.or(c),
        };
        let cap = match stop {
            Some(end) => end.saturating_sub(self.offset).min(CHUNK as u64),
            None => CHUNK as u64,
        } as usize;
        let (mut end, mut lines) = (0usize, 0usize);
        let mut scanned = 0usize;
        let mut file = None;
        let mut eof = false;
        // Read about what `max_rows` lines take (by the lines read so far), more if short:
        // a small micro-batch does not read megabytes it will not use.
        let guess = (max_rows as f64 * self.line_bytes * 1.25) as usize;
        let mut want = guess.clamp(64 << 10, CHUNK);
        loop {
            for i in memchr::memchr_iter(b'\n', &self.buf[scanned..]) {
                end = scanned + i + 1;
                lines += 1;
                if lines == max_rows {
                    break;
                }
            }
            scanned = if lines == max_rows {
                end
            } else {
                self.buf.len()
            };
            if lines >= max_rows {
                break;
            }
            // The end of what is to be read: a last line without a newline is a line, unless
            // the file is followed (its writer may not have finished it).
            let last = stop.is_some_and(|e| self.offset + self.buf.len() as u64 >= e);
            if last || (eof && !self.follow) {
                if end < self.buf.len() {
                    end = self.buf.len();
                    lines += 1;
                }
                break;
            }
            if eof || self.buf.len() >= cap {
                break;
            }
            let f = match &mut file {
                Some(f) => f,
                None => {
                    let mut f = std::fs::File::open(&self.path).map_err(io)?;
                    f.seek(SeekFrom::Start(self.offset + self.buf.len() as u64))
                        .map_err(io)?;
                    file.insert(f)
                }
            };
            let room = cap.saturating_sub(self.buf.len()).min(want);
            self.buf.reserve(room);
            let got = f.take(room as u64).read_to_end(&mut self.buf).map_err(io)?;
            eof = got < room;
            want = self.buf.len().max(want);
        }
        if lines == 0 && self.buf.len() >= CHUNK {
            return Err(Error::input(
                format!("{}@{}", self.path.display(), self.offset),
                format!(
                    "a line longer than {} MB (not read as a document)",
                    CHUNK >> 20
                ),
            ));
        }
        if lines > 0 {
            self.line_bytes = end as f64 / lines as f64;
        }
        Ok(end)
    }
}

/// Text from which a micro-batch is decoded on threads of its own rather than on the async
/// task: the step that fetches also delivers, so the last batch's output is written while
/// the next one is read.
const DECODE_APART: usize = 1 << 20;

/// The documents in `buf[..len]`, read into one batch of `schema`; gives `buf` back. A big
/// micro-batch is read on every core, off the async task.
async fn decode(
    buf: Vec<u8>,
    len: usize,
    schema: &SchemaRef,
) -> (Vec<u8>, Result<(ReadLines, RecordBatch)>) {
    let threads = crate::document::decode::cores();
    let read = move |buf: Vec<u8>, schema: SchemaRef| {
        let read = read_lines_parallel(&buf[..len], &schema, false, 8192, threads).and_then(|r| {
            // One batch is taken as it is (concatenating would copy it).
            let batch = match r.batches.as_slice() {
                [one] => one.clone(),
                many => concat_batches(&schema, many)?,
            };
            Ok((r, batch))
        });
        (buf, read)
    };
    if len < DECODE_APART {
        return read(buf, schema.clone());
    }
    let schema = schema.clone();
    match tokio::task::spawn_blocking(move || read(buf, schema)).await {
        Ok(done) => done,
        // The buffer went with the thread: it is read from the file again.
        Err(e) => (Vec::new(), Err(Error::external("decoding JSON lines", e))),
    }
}

#[async_trait]
impl Source for JsonlFileSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn position(&self) -> Position {
        Position(json!({ "offset": self.offset }))
    }

    fn seek(&mut self, position: &Position) -> Result<()> {
        match position.0.get("offset").and_then(Value::as_u64) {
            Some(o) => {
                self.offset = o;
                self.buf.clear();
                Ok(())
            }
            None => Err(Error::input(
                self.path.display().to_string(),
                format!("cannot resume at {}", position.0),
            )),
        }
    }

    fn lag(&self) -> Option<u64> {
        let len = std::fs::metadata(&self.path).ok()?.len();
        Some(self.end.unwrap_or(len).min(len).saturating_sub(self.offset))
    }

    fn resume_schema(&mut self, schema: SchemaRef) {
        if !self.declared {
            self.schema = schema;
        }
    }

    fn end_at(&mut self, end: &Position) -> Result<()> {
        match end.0.get("offset").and_then(Value::as_u64) {
            Some(o) => {
                self.end = Some(o);
                self.buf
                    .truncate(o.saturating_sub(self.offset).min(usize::MAX as u64) as usize);
                self.follow = false;
                Ok(())
            }
            None => Err(Error::input(
                self.path.display().to_string(),
                format!("cannot end at {}", end.0),
            )),
        }
    }

    fn bound(&mut self, end: Option<&Position>) -> Result<()> {
        self.cut = match end {
            None => None,
            Some(p) => Some(p.0.get("offset").and_then(Value::as_u64).ok_or_else(|| {
                Error::input(
                    self.path.display().to_string(),
                    format!("cannot stop at {}", p.0),
                )
            })?),
        };
        // What was read past the cut is read again once the cut is lifted.
        if let Some(c) = self.cut {
            self.buf
                .truncate(c.saturating_sub(self.offset).min(usize::MAX as u64) as usize);
        }
        Ok(())
    }

    async fn next_batch(&mut self, max_rows: usize) -> Result<Option<SourceBatch>> {
        let consumed = self.read_lines(max_rows.max(1))?;
        if consumed == 0 {
            if !self.follow || self.end.is_some_and(|e| self.offset >= e) {
                return Ok(None);
            }
            // Nothing new yet: an empty batch after a short wait, so the caller can stop.
            tokio::time::sleep(self.poll).await;
            return Ok(Some(SourceBatch {
                batch: datafusion::arrow::record_batch::RecordBatch::new_empty(self.schema.clone()),
                position: self.position(),
                rejected: Vec::new(),
                partitions: None,
            }));
        }
        // Every line is checked strictly; the ones that are not documents of the schema go
        // to the error policy with their byte offset and why.
        let (buf, decoded) = decode(std::mem::take(&mut self.buf), consumed, &self.schema).await;
        self.buf = buf;
        let (read, batch) = decoded?;
        let text = &self.buf[..consumed];
        let rejected = read
            .invalid
            .into_iter()
            .map(|bad| Rejected {
                position: Position(json!({ "offset": self.offset + bad.offset as u64 })),
                reason: bad.reason,
                raw: String::from_utf8_lossy(&text[bad.offset..bad.offset + bad.len]).into_owned(),
            })
            .collect();
        self.buf.drain(..consumed);
        self.offset += consumed as u64;
        Ok(Some(SourceBatch {
            batch,
            position: self.position(),
            rejected,
            partitions: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn values(b: &SourceBatch) -> Vec<i64> {
        let a = b.batch.column(0);
        let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
        (0..a.len()).map(|i| a.value(i)).collect()
    }

    async fn drain(source: &mut JsonlFileSource, rows: usize) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some(b) = source.next_batch(rows).await.unwrap() {
            if b.batch.num_rows() == 0 {
                break;
            }
            assert!(b.rejected.is_empty(), "{:?}", b.rejected);
            out.extend(values(&b));
        }
        out
    }

    /// A micro-batch of more text than is decoded on the async task is decoded apart, with
    /// the same documents, rejections and positions; what was read ahead stays for the next.
    #[tokio::test]
    async fn a_big_batch_is_decoded_apart_with_its_bad_lines_placed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let mut text = String::new();
        let mut bad_at = 0;
        for i in 0..120_000i64 {
            if i == 70_000 {
                bad_at = text.len();
                text.push_str("{\"a\": 1,,}\n");
            } else {
                // Fields the schema does not name are ignored (here, to make the text long).
                text.push_str(&format!("{{\"a\": {i}, \"pad\": \"................\"}}\n"));
            }
        }
        assert!(
            text.len() / 2 > DECODE_APART,
            "the first batch is decoded apart"
        );
        std::fs::write(&path, &text).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let mut s = JsonlFileSource::open(&path, Some(schema), false).unwrap();
        let first = s.next_batch(100_000).await.unwrap().unwrap();
        assert_eq!(first.batch.num_rows(), 99_999);
        assert_eq!(first.rejected.len(), 1);
        assert_eq!(first.rejected[0].position.0, json!({ "offset": bad_at }));
        assert_eq!(first.rejected[0].raw, "{\"a\": 1,,}");
        let v = values(&first);
        assert_eq!((v[0], v[69_999], v[70_000]), (0, 69_999, 70_001));
        let rest = s.next_batch(100_000).await.unwrap().unwrap();
        assert_eq!(values(&rest), (100_000..120_000).collect::<Vec<_>>());
        assert_eq!(s.position().0, json!({ "offset": text.len() }));
        assert!(s.next_batch(100_000).await.unwrap().is_none());
    }

    /// A file read to its end gives its last line even without a newline after it; a followed
    /// file gives it only once the line is finished.
    #[tokio::test]
    async fn the_last_line_is_read_without_a_newline_unless_the_file_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        for rows in [1, 2, 10] {
            let mut s = JsonlFileSource::open(&path, Some(schema.clone()), false).unwrap();
            assert_eq!(drain(&mut s, rows).await, [1, 2, 3], "{rows} per batch");
            assert_eq!(s.position().0, json!({"offset": 23}));
        }
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":3").unwrap();
        let mut s = JsonlFileSource::open(&path, Some(schema.clone()), true).unwrap();
        s.poll = Duration::from_millis(1);
        assert_eq!(drain(&mut s, 10).await, [1, 2]);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"0}\n{\"a\":4}\n").unwrap();
        assert_eq!(drain(&mut s, 10).await, [30, 4]);
        // Read again from a position: what was read ahead is not reused.
        s.seek(&Position(json!({"offset": 8}))).unwrap();
        assert_eq!(drain(&mut s, 1).await, [2, 30, 4]);
        // Up to a position that ends in the middle of the file.
        let mut s = JsonlFileSource::open(&path, Some(schema), false).unwrap();
        s.end_at(&Position(json!({"offset": 16}))).unwrap();
        assert_eq!(drain(&mut s, 10).await, [1, 2]);
    }
}
