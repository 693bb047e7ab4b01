//! Fetch: the first step of the loop. Reads micro-batches from the source and queues them
//! for the transform step (a bounded queue: when the pipeline falls behind, fetching waits —
//! back-pressure, not unbounded memory).
//!
//! A micro-batch closes when it holds `micro_batch_size` documents, when `max_batch_delay`
//! has passed since its first document arrived, or — without a delay — as soon as the source
//! has nothing more to give right now. A failing read is retried by the error policy; when the
//! retries are used up the run fails (there is no record to skip or dead-letter yet). Records
//! the source could not read travel with the batch; under `records: failFast` (no dead-letter
//! sink, policy failFast) the first one stops the run.
//!
//! The rows of a batch from a partitioned source go partition by partition (each in the
//! order read), so the order depends on the batch's input range only.
//!
//! While the source is quiet, a window that the clock alone can close (processing time, idle
//! timeouts) gets an empty micro-batch every `ticks` — a tick — so it can.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;

use crate::connect::source::{Position, Rejected, Source, SourceBatch};
use crate::runtime::exec::options::{Counters, RuntimeOptions};
use crate::runtime::policy::error_policy::{OnFailure, with_retries};
use crate::{Error, Result};

/// One micro-batch as read.
pub(super) struct Fetched {
    pub batch: RecordBatch,
    /// The position before the batch's first record.
    pub start: Position,
    /// The position after it.
    pub position: Position,
    pub rejected: Vec<Rejected>,
    /// How far the source is behind its end after this batch, if it knows.
    pub lag: Option<u64>,
    /// The same per partition.
    pub partition_lag: Vec<(String, u64)>,
    pub started: Instant,
    /// The source's last batch (a bounded source ended after it).
    pub last: bool,
    /// The source partition of each document, if the source has partitions.
    pub partitions: Option<Vec<u32>>,
    /// An empty batch sent only so the clock can close windows.
    pub tick: bool,
}

/// Reads batches into `tx` until the source ends, the run is stopped, `max_batches` have been
/// read, or the transform step goes away. Errors are queued too, behind the batches read
/// before them, so everything read before a failure is still delivered. With `ticks`, an
/// empty batch goes out that often while the source has nothing.
pub(super) async fn fetch(
    source: &mut dyn Source,
    tx: mpsc::Sender<Result<Fetched>>,
    options: &RuntimeOptions,
    counters: &Counters,
    ticks: Option<Duration>,
    records: OnFailure,
    mut again: VecDeque<Position>,
) {
    let mut sent = 0u64;
    let mut bounded = false;
    let schema = source.schema();
    let mut last_sent = Instant::now();
    loop {
        if options.max_batches.is_some_and(|m| sent >= m) || options.stop.load(Ordering::SeqCst) {
            return;
        }
        // A logged batch of a crashed run is formed again exactly: read to its end, no
        // further, however long it takes.
        let bound = again.pop_front();
        let set = match &bound {
            Some(end) => source.bound(Some(end)),
            None if bounded => source.bound(None),
            None => Ok(()),
        };
        if let Err(e) = set {
            let _ = tx.send(Err(e)).await;
            return;
        }
        bounded = bound.is_some();
        let started = Instant::now();
        let start = source.position();
        let mut parts = Vec::new();
        let mut partitions: Vec<u32> = Vec::new();
        let mut partitioned = false;
        let mut rejected = Vec::new();
        let mut rows = 0usize;
        let mut position = start.clone();
        let mut first_at: Option<Instant> = None;
        let mut ended = false;
        loop {
            if bound.as_ref().is_some_and(|end| position == *end) {
                break;
            }
            let want = options.micro_batch_size.saturating_sub(rows).max(1);
            let read = match read(source, want, options, counters).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let Some(SourceBatch {
                batch,
                position: at,
                rejected: bad,
                partitions: parts_of,
            }) = read
            else {
                if let Some(end) = &bound {
                    let e = Error::input(
                        format!("source position {}", position.0),
                        format!(
                            "the source ended before {}, where a micro-batch of the last run ended: it cannot be formed again (start with a new checkpoint store, or run with --reset-checkpoint)",
                            end.0
                        ),
                    );
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                ended = true;
                break;
            };
            let got = batch.num_rows() > 0 || !bad.is_empty();
            rows += batch.num_rows();
            match parts_of {
                Some(p) => {
                    partitioned = true;
                    partitions.extend(p);
                }
                None => partitions.extend(std::iter::repeat_n(0, batch.num_rows())),
            }
            if batch.num_rows() > 0 {
                parts.push(batch);
            }
            rejected.extend(bad);
            position = at;
            if got && first_at.is_none() {
                first_at = Some(Instant::now());
            }
            let full = rows >= options.micro_batch_size;
            let waited_enough = match (options.max_batch_delay, first_at) {
                // Nothing yet: hand back so a stop is noticed.
                (_, None) => true,
                (None, Some(_)) => true,
                (Some(delay), Some(t)) => t.elapsed() >= delay,
            };
            if let Some(end) = &bound {
                if position == *end || options.stop.load(Ordering::SeqCst) {
                    break;
                }
                continue;
            }
            if full || waited_enough || options.stop.load(Ordering::SeqCst) {
                break;
            }
        }
        let formed_again = bound.as_ref().is_some_and(|end| position == *end);
        if bound.is_some() && !formed_again {
            // Stopped part way: a shorter batch under the logged one's number would be taken
            // for it. The next run forms it again.
            return;
        }
        if rows == 0 && rejected.is_empty() && !formed_again {
            // The end of a bounded source (an empty last batch, so windows can flush), or a
            // tick while it is quiet.
            let tick = !ended && ticks.is_some_and(|every| last_sent.elapsed() >= every);
            if ended || tick {
                let empty = Fetched {
                    batch: RecordBatch::new_empty(schema.clone()),
                    start: position.clone(),
                    position,
                    rejected,
                    lag: source.lag(),
                    partition_lag: source.partition_lag(),
                    started,
                    last: ended,
                    partitions: None,
                    tick,
                };
                if tx.send(Ok(empty)).await.is_err() || ended {
                    return;
                }
                last_sent = Instant::now();
            }
            continue;
        }
        if records == OnFailure::FailFast
            && let Some(r) = rejected.first()
        {
            let e = Error::input(
                format!("source position {}", r.position.0),
                format!("{} (errorPolicy failFast)", r.reason),
            );
            let _ = tx.send(Err(e)).await;
            return;
        }
        // One read is the batch as it is (concatenating would copy it).
        let joined = match parts.as_slice() {
            [one] if one.schema() == schema => Ok(one.clone()),
            _ => concat_batches(&schema, &parts),
        };
        let batch = match joined {
            Ok(b) if partitioned => match by_partition(b, &mut partitions) {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            },
            Ok(b) => b,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let fetched = Fetched {
            batch,
            start,
            position,
            rejected,
            lag: source.lag(),
            partition_lag: source.partition_lag(),
            started,
            last: ended,
            partitions: partitioned.then_some(partitions),
            tick: false,
        };
        let waiting = Instant::now();
        if tx.send(Ok(fetched)).await.is_err() {
            return;
        }
        counters.add_wait(waiting.elapsed());
        last_sent = Instant::now();
        sent += 1;
        if ended {
            return;
        }
    }
}

/// The batch's rows partition by partition (each partition's in the order read): an order
/// the batch's input range alone decides, whatever order the source's reads interleaved
/// partitions in — so a batch formed again after a crash gives the same output in the same
/// order.
fn by_partition(batch: RecordBatch, partitions: &mut Vec<u32>) -> Result<RecordBatch> {
    if partitions.is_sorted() {
        return Ok(batch);
    }
    let mut order: Vec<u32> = (0..partitions.len() as u32).collect();
    order.sort_by_key(|&i| partitions[i as usize]);
    *partitions = order.iter().map(|&i| partitions[i as usize]).collect();
    let indices = datafusion::arrow::array::UInt32Array::from(order);
    Ok(datafusion::arrow::compute::take_record_batch(
        &batch, &indices,
    )?)
}

/// One read, retried by the error policy.
async fn read(
    source: &mut dyn Source,
    max_rows: usize,
    options: &RuntimeOptions,
    counters: &Counters,
) -> Result<Option<SourceBatch>> {
    let read: Result<_> = with_retries!(
        options.error_policy,
        "source read",
        counters.retries,
        source.next_batch(max_rows.max(1)).await
    );
    read.inspect_err(|_| {
        counters.failures.fetch_add(1, Ordering::Relaxed);
    })
}
