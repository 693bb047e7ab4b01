//! Metrics of a stream: a listener interface called after every committed micro-batch, and a
//! built-in Prometheus registry (`fluxion run --metrics-addr HOST:PORT` serves it at
//! `/metrics`). Each batch also runs in a `tracing` span.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// What one committed micro-batch did.
#[derive(Debug, Clone, Default)]
pub struct BatchMetrics {
    /// The stream's id (a job's name).
    pub pipeline: String,
    /// Documents that went into the pipeline, and that came out.
    pub input_rows: u64,
    pub output_rows: u64,
    /// Unreadable records, by the error policy.
    pub dead_lettered: u64,
    pub skipped: u64,
    /// Fetch to checkpoint.
    pub duration: Duration,
    /// The pipeline's part of `duration`.
    pub transform_duration: Duration,
    /// Rows of operator state (a continuous `$group`'s groups) after the batch.
    pub state_rows: u64,
    /// How far the source was behind its end after this batch (bytes of a file), if known.
    pub lag: Option<u64>,
    /// Attempts repeated by the retry policy, and failures that used up their retries, since
    /// the previous batch.
    pub retries: u64,
    pub failures: u64,
    /// Time the steps spent waiting on a full queue since the previous batch (back-pressure).
    pub backpressure_wait: Duration,
}

/// Called after every committed micro-batch.
pub trait MetricsListener: Send + Sync {
    fn on_batch(&self, batch: &BatchMetrics);
}

/// A pipeline's metrics so far.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    pub batches: u64,
    pub input: u64,
    pub output: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    pub seconds: f64,
    pub last_batch_seconds: f64,
    pub transform_seconds: f64,
    pub state_rows: u64,
    /// The source's lag after the last batch (NaN if the source cannot tell).
    pub lag: f64,
    pub retries: u64,
    pub failures: u64,
    pub backpressure_seconds: f64,
}

/// A rendered metric: name, type, help text, and its value from the totals.
type Metric = (&'static str, &'static str, &'static str, fn(&Totals) -> f64);

/// Totals per pipeline, rendered in Prometheus' text format.
#[derive(Debug, Default)]
pub struct PrometheusMetrics {
    totals: Mutex<BTreeMap<String, Totals>>,
}

impl MetricsListener for PrometheusMetrics {
    fn on_batch(&self, b: &BatchMetrics) {
        let mut all = self.totals.lock().expect("metrics lock");
        let t = all.entry(b.pipeline.clone()).or_default();
        t.batches += 1;
        t.input += b.input_rows;
        t.output += b.output_rows;
        t.dead_lettered += b.dead_lettered;
        t.skipped += b.skipped;
        t.seconds += b.duration.as_secs_f64();
        t.last_batch_seconds = b.duration.as_secs_f64();
        t.state_rows = b.state_rows;
        t.transform_seconds += b.transform_duration.as_secs_f64();
        t.lag = b.lag.map_or(f64::NAN, |l| l as f64);
        t.retries += b.retries;
        t.failures += b.failures;
        t.backpressure_seconds += b.backpressure_wait.as_secs_f64();
    }
}

impl PrometheusMetrics {
    /// The totals of `pipeline` so far (`None` before its first batch).
    pub fn totals(&self, pipeline: &str) -> Option<Totals> {
        self.totals
            .lock()
            .expect("metrics lock")
            .get(pipeline)
            .cloned()
    }

    /// The metrics as Prometheus text.
    pub fn render(&self) -> String {
        let all = self.totals.lock().expect("metrics lock").clone();
        let mut out = String::new();
        let metrics: [Metric; 13] = [
            (
                "fluxion_batches_total",
                "counter",
                "Committed micro-batches.",
                |t| t.batches as f64,
            ),
            (
                "fluxion_input_records_total",
                "counter",
                "Documents into the pipeline.",
                |t| t.input as f64,
            ),
            (
                "fluxion_output_records_total",
                "counter",
                "Documents out of the pipeline.",
                |t| t.output as f64,
            ),
            (
                "fluxion_dead_lettered_total",
                "counter",
                "Unreadable records sent to the dead-letter sink.",
                |t| t.dead_lettered as f64,
            ),
            (
                "fluxion_skipped_total",
                "counter",
                "Unreadable records skipped by policy.",
                |t| t.skipped as f64,
            ),
            (
                "fluxion_batch_seconds_total",
                "counter",
                "Time spent in micro-batches, fetch to checkpoint.",
                |t| t.seconds,
            ),
            (
                "fluxion_last_batch_seconds",
                "gauge",
                "Duration of the last micro-batch.",
                |t| t.last_batch_seconds,
            ),
            (
                "fluxion_state_rows",
                "gauge",
                "Rows of operator state.",
                |t| t.state_rows as f64,
            ),
            (
                "fluxion_transform_seconds_total",
                "counter",
                "Time spent in the pipeline (the transform step).",
                |t| t.transform_seconds,
            ),
            (
                "fluxion_source_lag",
                "gauge",
                "How far the source is behind its end after the last batch (bytes of a file; NaN if unknown).",
                |t| t.lag,
            ),
            (
                "fluxion_retries_total",
                "counter",
                "Attempts repeated by the retry policy.",
                |t| t.retries as f64,
            ),
            (
                "fluxion_failures_total",
                "counter",
                "Failures that used up their retries.",
                |t| t.failures as f64,
            ),
            (
                "fluxion_backpressure_seconds_total",
                "counter",
                "Time the steps waited on a full queue.",
                |t| t.backpressure_seconds,
            ),
        ];
        for (name, kind, help, value) in metrics {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (pipeline, t) in &all {
                out.push_str(&format!("{name}{{pipeline=\"{pipeline}\"}} {}\n", value(t)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_totals_per_pipeline() {
        let m = PrometheusMetrics::default();
        for n in [3, 4] {
            m.on_batch(&BatchMetrics {
                pipeline: "p".into(),
                input_rows: n,
                output_rows: 1,
                duration: Duration::from_millis(500),
                ..Default::default()
            });
        }
        let text = m.render();
        assert!(
            text.contains("fluxion_input_records_total{pipeline=\"p\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("fluxion_batches_total{pipeline=\"p\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE fluxion_last_batch_seconds gauge"),
            "{text}"
        );
    }
}
