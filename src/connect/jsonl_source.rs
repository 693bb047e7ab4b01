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
use serde_json::{Value, json};

use super::source::{Position, Rejected, Source, SourceBatch};
use crate::document::decode::{JsonlOptions, infer_schema, read_lines_parallel};
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
    follow: bool,
    /// Whether the schema was declared (else inferred, and replaced by a checkpoint's).
    declared: bool,
    /// How long `next_batch` waits for new lines when following.
    pub poll: Duration,
    /// Average bytes per line read so far (how much to read for a micro-batch).
    line_bytes: f64,
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
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                infer_schema(&data, JsonlOptions::default().infer_records, threads)?
            }
        };
        Ok(JsonlFileSource {
            path,
            schema,
            offset: 0,
            end: None,
            follow,
            declared,
            poll: Duration::from_millis(50),
            line_bytes: 256.0,
        })
    }

    /// Complete lines from the offset, at most `max_rows` of them, and their length in bytes.
    fn read_lines(&mut self, max_rows: usize) -> Result<(Vec<u8>, u64)> {
        let io = |e: std::io::Error| Error::external(format!("reading {}", self.path.display()), e);
        let mut f = std::fs::File::open(&self.path).map_err(io)?;
        f.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let cap = match self.end {
            Some(end) => end.saturating_sub(self.offset).min(CHUNK as u64),
            None => CHUNK as u64,
        };
        // Read about what `max_rows` lines take (by the lines read so far), more if short:
        // a small micro-batch does not read megabytes it will not use.
        let guess = (max_rows as f64 * self.line_bytes * 1.25) as u64;
        let mut want = guess.clamp(64 << 10, CHUNK as u64);
        let mut buf = Vec::new();
        let (mut end, mut lines, mut scanned) = (0usize, 0usize, 0usize);
        loop {
            let room = cap.saturating_sub(buf.len() as u64).min(want);
            let got = (&mut f).take(room).read_to_end(&mut buf).map_err(io)?;
            for i in memchr::memchr_iter(b'\n', &buf[scanned..]) {
                end = scanned + i + 1;
                lines += 1;
                if lines == max_rows {
                    break;
                }
            }
            scanned = if lines == max_rows { end } else { buf.len() };
            if lines >= max_rows || got == 0 || buf.len() as u64 >= cap {
                break;
            }
            want = buf.len() as u64;
        }
        if lines == 0 && buf.len() >= CHUNK {
            return Err(Error::input(
                format!("{}@{}", self.path.display(), self.offset),
                format!(
                    "a line longer than {} MB (not read as a document)",
                    CHUNK >> 20
                ),
            ));
        }
        buf.truncate(end);
        if lines > 0 {
            self.line_bytes = end as f64 / lines as f64;
        }
        Ok((buf, end as u64))
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
                self.follow = false;
                Ok(())
            }
            None => Err(Error::input(
                self.path.display().to_string(),
                format!("cannot end at {}", end.0),
            )),
        }
    }

    async fn next_batch(&mut self, max_rows: usize) -> Result<Option<SourceBatch>> {
        let (text, consumed) = self.read_lines(max_rows.max(1))?;
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
        // A big micro-batch is read on every core (the pipeline runs beside it).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let read = read_lines_parallel(&text, &self.schema, false, 8192, threads)?;
        let rejected = read
            .invalid
            .into_iter()
            .map(|bad| Rejected {
                position: Position(json!({ "offset": self.offset + bad.offset as u64 })),
                reason: bad.reason,
                raw: String::from_utf8_lossy(&text[bad.offset..bad.offset + bad.len]).into_owned(),
            })
            .collect();
        let batch = concat_batches(&self.schema, &read.batches)?;
        self.offset += consumed;
        Ok(Some(SourceBatch {
            batch,
            position: self.position(),
            rejected,
            partitions: None,
        }))
    }
}
