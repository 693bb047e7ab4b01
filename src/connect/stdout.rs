//! The stdout sink: JSON lines, written as batches arrive. A closed pipe (`| head`) ends the
//! output quietly.

use std::io::Write;

use datafusion::prelude::DataFrame;
use futures::TryStreamExt;

use crate::document::encode::write_batch;
use crate::{Error, Result};

/// Streams the result of `df` to stdout; returns the number of documents written.
pub async fn write_stdout(df: DataFrame) -> Result<u64> {
    let mut stream = df.execute_stream().await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut buf = Vec::new();
    let mut rows = 0u64;
    while let Some(batch) = stream.try_next().await? {
        buf.clear();
        write_batch(&mut buf, &batch)?;
        rows += batch.num_rows() as u64;
        match out.write_all(&buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(rows),
            other => other.map_err(|e| Error::external("writing to stdout", e))?,
        }
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(rows),
        other => other
            .map(|_| rows)
            .map_err(|e| Error::external("writing to stdout", e)),
    }
}

/// The stdout sink for streaming jobs: each micro-batch's documents, flushed at commit. What
/// is printed cannot be taken back, so after a crash the batches since the last checkpoint
/// print again (at-least-once); use a file sink for exactly-once output.
#[derive(Debug, Default)]
pub struct StdoutSink;

#[async_trait::async_trait]
impl crate::connect::source::Sink for StdoutSink {
    async fn write(
        &mut self,
        batches: &[datafusion::arrow::record_batch::RecordBatch],
    ) -> Result<()> {
        let mut buf = Vec::new();
        for b in batches {
            write_batch(&mut buf, b)?;
        }
        std::io::stdout()
            .write_all(&buf)
            .map_err(|e| Error::external("writing to stdout", e))
    }

    async fn commit(&mut self) -> Result<serde_json::Value> {
        std::io::stdout()
            .flush()
            .map_err(|e| Error::external("writing to stdout", e))?;
        Ok(serde_json::json!({}))
    }

    async fn restore(&mut self, _state: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}
