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
