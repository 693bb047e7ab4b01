//! Watermarks: how far event time has got, per source partition.
//!
//! Each partition of the source (a Kafka partition; a source without partitions is one) keeps
//! the largest event time it has delivered. The watermark is the smallest of those, minus the
//! window's `allowedLateness`, and never goes back. It advances document by document in source
//! order, so which documents are late does not depend on where micro-batches end, and a replay
//! over the same input decides the same.
//!
//! A partition that has delivered nothing for `idleTimeout` (processing time, read from the
//! stream's [`Clock`](crate::runtime::window::clock::Clock)) stops holding the watermark back, and when every
//! partition is idle the open windows are closed — the watermark moves to the end of the
//! latest one — as Atlas Stream Processing closes the windows of an idle source. Idleness
//! depends on when records arrived, so a replay (which has no idle time) can only agree with a
//! stream whose idle timeouts closed no window that a later record would have joined.
//!
//! Processing-time windows (`boundary: "processingTime"`) use the clock instead: a document's
//! time is the clock when its micro-batch is transformed, and the watermark is the clock.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use crate::Result;
use crate::dsl::stream_window::{Boundary, StreamWindow};

pub use crate::runtime::window::shared::PARTITION;

/// The checkpoint metadata key of the watermarks.
const META: &str = "fluxion.watermarks";
/// The key of the first version's single largest event time (still read).
const MAX_TIME: &str = "fluxion.max_event_time";

#[derive(Debug, Clone, Copy)]
struct Part {
    /// The largest event time this partition delivered.
    max: i64,
    /// The processing time of its last document (`None` after a restart: the partition gets
    /// a fresh idle timeout from the first step).
    seen: Option<i64>,
}

/// The watermark of one window operator.
#[derive(Debug, Clone)]
pub struct Watermarks {
    lateness: i64,
    idle_timeout: Option<i64>,
    processing: bool,
    drop_late: bool,
    /// By partition number (few: a linear scan beats a map per document).
    parts: Vec<(u32, Part)>,
    current: Option<i64>,
    /// The processing time of the step in hand.
    now: i64,
}

impl Watermarks {
    /// The watermarks of `window`.
    pub fn new(window: &StreamWindow) -> Self {
        Watermarks {
            lateness: window.allowed_lateness_ms,
            idle_timeout: window.idle_timeout_ms,
            processing: window.boundary == Boundary::ProcessingTime,
            drop_late: window.drop_late,
            parts: Vec::new(),
            current: None,
            now: i64::MIN,
        }
    }

    /// Whether times are the clock's (processing-time windows).
    pub fn processing(&self) -> bool {
        self.processing
    }

    /// Whether late documents are dropped rather than dead-lettered (`lateData: "drop"`).
    pub fn drops_late(&self) -> bool {
        self.drop_late
    }

    /// The idle timeout, if any.
    pub fn idle_timeout(&self) -> Option<i64> {
        self.idle_timeout
    }

    /// Starts a step at processing time `now`.
    pub fn begin(&mut self, now: i64) {
        self.now = now;
        for (_, p) in &mut self.parts {
            p.seen.get_or_insert(now);
        }
        if self.processing {
            self.raise(now);
        }
    }

    /// The time of a document whose event time is `event` (`None`: it has none).
    pub fn time_of(&self, event: Option<i64>) -> Option<i64> {
        if self.processing {
            // Processing time never goes back, even when the clock does (or a restarted
            // stream's host is behind the checkpoint): no document is late.
            Some(self.current.map_or(self.now, |w| w.max(self.now)))
        } else {
            event
        }
    }

    /// The watermark (`None` before any document).
    pub fn current(&self) -> Option<i64> {
        self.current
    }

    /// Takes in a document of `partition` at time `t` (after deciding whether it was late).
    pub fn observe(&mut self, partition: u32, t: i64) {
        if self.processing {
            return;
        }
        let now = self.now;
        let Some(i) = self.parts.iter().position(|(k, _)| *k == partition) else {
            self.parts.push((
                partition,
                Part {
                    max: t,
                    seen: Some(now),
                },
            ));
            self.parts.sort_unstable_by_key(|(k, _)| *k);
            self.recompute();
            return;
        };
        let idle = self.idle_timeout;
        let single = self.parts.len() == 1;
        let part = &mut self.parts[i].1;
        let was_idle = idle.is_some_and(|d| part.seen.is_some_and(|s| now - s >= d));
        part.seen = Some(now);
        if t > part.max || was_idle {
            part.max = part.max.max(t);
            if single {
                // One partition (the common case): its largest time is the watermark's.
                let w = part.max.saturating_sub(self.lateness);
                self.raise(w);
            } else {
                self.recompute();
            }
        }
    }

    /// At the end of a step: idle partitions stop holding the watermark back, and when all
    /// are idle the watermark moves to `open_end()`, the end of the latest open window.
    pub fn settle(&mut self, open_end: impl FnOnce() -> Option<i64>) {
        if self.processing || self.idle_timeout.is_none() || self.parts.is_empty() {
            return;
        }
        self.recompute();
        if self.parts.iter().all(|(_, p)| self.is_idle(p))
            && let Some(end) = open_end()
        {
            self.raise(end);
        }
    }

    fn is_idle(&self, p: &Part) -> bool {
        self.idle_timeout
            .is_some_and(|d| p.seen.is_some_and(|s| self.now - s >= d))
    }

    fn recompute(&mut self) {
        let active = self
            .parts
            .iter()
            .filter(|(_, p)| !self.is_idle(p))
            .map(|(_, p)| p.max)
            .min();
        // All idle: the partitions that did deliver still count.
        let max = active.or_else(|| self.parts.iter().map(|(_, p)| p.max).max());
        if let Some(m) = max {
            self.raise(m.saturating_sub(self.lateness));
        }
    }

    fn raise(&mut self, w: i64) {
        self.current = Some(self.current.map_or(w, |c| c.max(w)));
    }

    /// The watermarks as checkpoint metadata.
    pub fn meta(&self) -> Vec<(String, String)> {
        if self.current.is_none() && self.parts.is_empty() {
            return Vec::new();
        }
        let parts: Vec<Value> = self.parts.iter().map(|(k, p)| json!([k, p.max])).collect();
        vec![(
            META.to_string(),
            json!({"watermark": self.current, "partitions": parts}).to_string(),
        )]
    }

    /// Back to the watermarks in checkpoint metadata.
    pub fn restore(&mut self, meta: &std::collections::HashMap<String, String>) {
        self.parts.clear();
        self.current = None;
        if let Some(v) = meta
            .get(META)
            .and_then(|m| serde_json::from_str::<Value>(m).ok())
        {
            self.current = v["watermark"].as_i64();
            for p in v["partitions"].as_array().into_iter().flatten() {
                if let (Some(k), Some(max)) = (p[0].as_u64(), p[1].as_i64()) {
                    self.parts.push((k as u32, Part { max, seen: None }));
                }
            }
        } else if let Some(max) = meta.get(MAX_TIME).and_then(|t| t.parse::<i64>().ok()) {
            self.parts.push((0, Part { max, seen: None }));
            self.current = Some(max.saturating_sub(self.lateness));
        }
    }
}

/// The partition of each row of `rows` (0 without the column).
pub fn partitions_of(rows: &RecordBatch) -> Option<UInt32Array> {
    rows.column_by_name(PARTITION)
        .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
        .cloned()
}

/// The partition of row `i` (0 when the source has none).
pub fn partition_at(partitions: Option<&UInt32Array>, i: usize) -> u32 {
    partitions.map_or(0, |p| if p.is_null(i) { 0 } else { p.value(i) })
}

/// `batch` with each document's source partition as the hidden column (0 for all when the
/// source gave none).
pub fn with_partitions(batch: &RecordBatch, partitions: Option<&[u32]>) -> Result<RecordBatch> {
    let values = match partitions {
        Some(p) => UInt32Array::from(p.to_vec()),
        None => UInt32Array::from(vec![0u32; batch.num_rows()]),
    };
    crate::runtime::window::shared::with_columns(
        batch,
        vec![(
            Field::new(PARTITION, DataType::UInt32, false),
            Arc::new(values) as ArrayRef,
        )],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsl::path::JsonPath;

    fn window(extra: Value) -> StreamWindow {
        let mut spec = json!({"interval": {"size": 10, "unit": "second"}, "pipeline": []});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        StreamWindow::parse("$tumblingWindow", &spec, &JsonPath::root()).unwrap()
    }

    #[test]
    fn the_slowest_partition_holds_the_watermark() {
        let mut w = Watermarks::new(&window(
            json!({"allowedLateness": {"size": 1, "unit": "second"}}),
        ));
        w.begin(0);
        w.observe(0, 10_000);
        assert_eq!(w.current(), Some(9_000));
        w.observe(1, 4_000);
        // Never back.
        assert_eq!(w.current(), Some(9_000));
        w.observe(0, 30_000);
        assert_eq!(w.current(), Some(9_000), "partition 1 is at 4 s");
        w.observe(1, 20_000);
        assert_eq!(w.current(), Some(19_000));
    }

    #[test]
    fn idle_partitions_stop_holding_it_back() {
        let mut w = Watermarks::new(&window(
            json!({"idleTimeout": {"size": 5, "unit": "second"}}),
        ));
        w.begin(1_000);
        w.observe(1, 2_000);
        w.observe(0, 10_000);
        assert_eq!(w.current(), Some(2_000));
        w.begin(4_000);
        w.observe(0, 15_000);
        w.settle(|| None);
        assert_eq!(w.current(), Some(2_000), "partition 1 idle for 3 s only");
        w.begin(6_000);
        w.settle(|| None);
        assert_eq!(w.current(), Some(15_000), "partition 1 idle for 5 s");
        // Everything idle: the open windows close.
        w.begin(9_000);
        w.settle(|| Some(20_000));
        assert_eq!(w.current(), Some(20_000));
        // A checkpoint keeps it.
        let meta: std::collections::HashMap<_, _> = w.meta().into_iter().collect();
        let mut back = Watermarks::new(&window(
            json!({"idleTimeout": {"size": 5, "unit": "second"}}),
        ));
        back.restore(&meta);
        assert_eq!(back.current(), Some(20_000));
    }
}
