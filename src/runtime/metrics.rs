//! Metrics of a stream: a listener interface called after every committed micro-batch, and a
//! built-in Prometheus registry (`fluxion run --metrics-addr HOST:PORT` serves it at
//! `/metrics`). Each batch also runs in a `tracing` span.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::DataFrame;
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
    /// Documents a window found late.
    pub late: u64,
    /// Fetch to checkpoint.
    pub duration: Duration,
    /// The pipeline's part of `duration`.
    pub transform_duration: Duration,
    /// Rows of operator state (a continuous `$group`'s groups) after the batch.
    pub state_rows: u64,
    /// Memory held by operator state after the batch.
    pub state_bytes: u64,
    /// How far the source was behind its end after this batch (bytes of a file), if known.
    pub lag: Option<u64>,
    /// The same per partition of the source (`"topic/partition"`), for sources that have them.
    pub partition_lag: Vec<(String, u64)>,
    /// Attempts repeated by the retry policy, and failures that used up their retries, since
    /// the previous batch.
    pub retries: u64,
    pub failures: u64,
    /// Time the steps spent waiting on a full queue since the previous batch (back-pressure).
    pub backpressure_wait: Duration,
    /// What each operator of the plan did in this batch.
    pub stages: Vec<StageMetrics>,
    /// How long the checkpoint after this batch took (`None`: none was due).
    pub checkpoint_duration: Option<Duration>,
}

/// What one operator of the compiled plan did in a micro-batch. The optimizer fuses and
/// reorders a pipeline's stages, so the unit measured is the physical operator (`fluxion
/// explain` prints the plan they come from), numbered in plan order: `"2 FilterExec"`; a
/// continuous `$group`'s merge of the touched groups is `"$group merge"`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageMetrics {
    pub stage: String,
    pub input_rows: u64,
    pub output_rows: u64,
    pub duration: Duration,
}

/// Runs `df` over a micro-batch of `batch_rows` documents and adds what each operator of its
/// physical plan did to `into`.
pub async fn collect_measured(
    df: DataFrame,
    batch_rows: usize,
    into: &mut Vec<StageMetrics>,
) -> crate::Result<Vec<RecordBatch>> {
    let task = std::sync::Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    let out = datafusion::physical_plan::collect(plan.clone(), task).await?;
    measure(&plan, batch_rows, into, &Measured::default());
    Ok(out)
}

/// The counts a run left in its plan's nodes (rows out, compute time), by node address: a plan
/// run again keeps some nodes (scans of static tables), whose counts go on growing, so a run's
/// own are the difference from the previous run's.
#[derive(Debug, Default)]
pub struct Measured(HashMap<usize, (u64, u64)>);

/// Adds what each operator of `plan`, just run over a micro-batch of `batch_rows` documents,
/// did to `into` — less what the nodes it shares with the previous run had counted then
/// (`before`); returns the counts now.
pub fn measure(
    plan: &Arc<dyn ExecutionPlan>,
    batch_rows: usize,
    into: &mut Vec<StageMetrics>,
    before: &Measured,
) -> Measured {
    // In-memory scans keep no row count: when the micro-batch's scan is the only such leaf,
    // its rows are the batch's.
    let mut unknown = 0;
    count_unknown_leaves(plan, &mut unknown);
    let leaf_rows = (unknown == 1).then_some(batch_rows as u64);
    let mut now = Measured::default();
    let mut n = 0;
    walk(plan, leaf_rows, &mut n, into, before, &mut now);
    now
}

fn address(p: &Arc<dyn ExecutionPlan>) -> usize {
    Arc::as_ptr(p) as *const () as usize
}

fn counted(p: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    p.metrics().and_then(|m| m.output_rows()).map(|r| r as u64)
}

fn count_unknown_leaves(plan: &Arc<dyn ExecutionPlan>, n: &mut usize) {
    if plan.children().is_empty() && counted(plan).is_none() {
        *n += 1;
    }
    for c in plan.children() {
        count_unknown_leaves(c, n);
    }
}

/// The rows `p` put out in this run: what it counted (less the last run's, for a node the runs
/// share), the micro-batch's for the one uncounted leaf, and a wrapper's that counts nothing
/// (`CooperativeExec`) its one input's.
fn rows_of(p: &Arc<dyn ExecutionPlan>, leaf_rows: Option<u64>, before: &Measured) -> u64 {
    if let Some(rows) = counted(p) {
        let r0 = before.0.get(&address(p)).map_or(0, |c| c.0);
        return rows.saturating_sub(r0);
    }
    match p.children().as_slice() {
        [] => leaf_rows.unwrap_or(0),
        [only] => rows_of(only, leaf_rows, before),
        _ => 0,
    }
}

fn walk(
    plan: &Arc<dyn ExecutionPlan>,
    leaf_rows: Option<u64>,
    n: &mut usize,
    into: &mut Vec<StageMetrics>,
    before: &Measured,
    now: &mut Measured,
) {
    // A node's counts in this run: what it has counted, less what it had after the last run.
    let own = |p: &Arc<dyn ExecutionPlan>| -> (u64, u64) {
        let nanos = p.metrics().and_then(|m| m.elapsed_compute()).unwrap_or(0) as u64;
        let t0 = before.0.get(&address(p)).map_or(0, |c| c.1);
        (rows_of(p, leaf_rows, before), nanos.saturating_sub(t0))
    };
    // Assumed leaf rows are not counts that grow from run to run: only counted ones are kept.
    let nanos = plan
        .metrics()
        .and_then(|m| m.elapsed_compute())
        .unwrap_or(0) as u64;
    now.0
        .insert(address(plan), (counted(plan).unwrap_or(0), nanos));
    let (output_rows, duration) = own(plan);
    let me = *n;
    *n += 1;
    into.push(StageMetrics {
        stage: format!("{me} {}", plan.name()),
        input_rows: plan.children().into_iter().map(|c| own(c).0).sum(),
        output_rows,
        duration: Duration::from_nanos(duration),
    });
    for child in plan.children() {
        walk(child, leaf_rows, n, into, before, now);
    }
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
    pub late: u64,
    pub seconds: f64,
    pub last_batch_seconds: f64,
    pub transform_seconds: f64,
    pub state_rows: u64,
    pub state_bytes: u64,
    /// The source's lag after the last batch (NaN if the source cannot tell).
    pub lag: f64,
    /// The lag of each source partition after the last batch.
    pub partition_lag: BTreeMap<String, u64>,
    pub retries: u64,
    pub failures: u64,
    pub backpressure_seconds: f64,
    pub checkpoints: u64,
    pub checkpoint_seconds: f64,
    /// When the last checkpoint was saved, in milliseconds since the Unix epoch.
    pub last_checkpoint_ms: Option<i64>,
    /// Per operator: invocations, documents in, documents out, seconds.
    pub stages: BTreeMap<String, StageTotals>,
}

/// An operator's totals.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StageTotals {
    pub invocations: u64,
    pub input: u64,
    pub output: u64,
    pub seconds: f64,
}

/// A rendered metric: name, type, help text, and its value from the totals.
type Metric = (&'static str, &'static str, &'static str, fn(&Totals) -> f64);

/// A rendered per-operator metric: name, help text, its value from an operator's totals.
type StageMetric = (&'static str, &'static str, fn(&StageTotals) -> f64);

/// Totals per pipeline, rendered in Prometheus' text format.
#[derive(Debug, Default)]
pub struct PrometheusMetrics {
    totals: Mutex<BTreeMap<String, Totals>>,
    /// Bumped whenever any totals change, so a reader can tell its copy is current.
    generation: std::sync::atomic::AtomicU64,
}

impl MetricsListener for PrometheusMetrics {
    fn on_batch(&self, b: &BatchMetrics) {
        let mut all = self.totals.lock().expect("metrics lock");
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let t = all.entry(b.pipeline.clone()).or_default();
        t.batches += 1;
        t.input += b.input_rows;
        t.output += b.output_rows;
        t.dead_lettered += b.dead_lettered;
        t.skipped += b.skipped;
        t.late += b.late;
        t.seconds += b.duration.as_secs_f64();
        t.last_batch_seconds = b.duration.as_secs_f64();
        t.state_rows = b.state_rows;
        t.state_bytes = b.state_bytes;
        t.transform_seconds += b.transform_duration.as_secs_f64();
        t.lag = b.lag.map_or(f64::NAN, |l| l as f64);
        t.partition_lag = b.partition_lag.iter().cloned().collect();
        t.retries += b.retries;
        t.failures += b.failures;
        t.backpressure_seconds += b.backpressure_wait.as_secs_f64();
        if let Some(took) = b.checkpoint_duration {
            t.checkpoints += 1;
            t.checkpoint_seconds += took.as_secs_f64();
            t.last_checkpoint_ms = Some(chrono::Utc::now().timestamp_millis());
        }
        for st in &b.stages {
            let s = t.stages.entry(st.stage.clone()).or_default();
            s.invocations += 1;
            s.input += st.input_rows;
            s.output += st.output_rows;
            s.seconds += st.duration.as_secs_f64();
        }
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

    /// `f` of the totals of `pipeline` (`None` before its first batch), without copying them.
    pub fn with_totals<R>(&self, pipeline: &str, f: impl FnOnce(&Totals) -> R) -> Option<R> {
        self.totals
            .lock()
            .expect("metrics lock")
            .get(pipeline)
            .map(f)
    }

    /// Drops what is known of `pipeline` (a pipeline deleted from a service).
    pub fn forget(&self, pipeline: &str) {
        self.totals.lock().expect("metrics lock").remove(pipeline);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// A number that changes whenever any totals change.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The metrics as Prometheus text.
    pub fn render(&self) -> String {
        let all = self.totals.lock().expect("metrics lock").clone();
        let mut out = String::new();
        let metrics: [Metric; 17] = [
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
                "fluxion_late_records_total",
                "counter",
                "Documents a window found behind the watermark.",
                |t| t.late as f64,
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
                "fluxion_state_bytes",
                "gauge",
                "Memory held by operator state.",
                |t| t.state_bytes as f64,
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
            (
                "fluxion_checkpoints_total",
                "counter",
                "Checkpoints saved after a micro-batch.",
                |t| t.checkpoints as f64,
            ),
            (
                "fluxion_checkpoint_seconds_total",
                "counter",
                "Time spent saving checkpoints.",
                |t| t.checkpoint_seconds,
            ),
        ];
        for (name, kind, help, value) in metrics {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (pipeline, t) in &all {
                let pipeline = escape(pipeline);
                out.push_str(&format!("{name}{{pipeline=\"{pipeline}\"}} {}\n", value(t)));
            }
        }
        let name = "fluxion_source_partition_lag";
        out.push_str(&format!(
            "# HELP {name} How far each source partition is behind its end after the last batch (messages).\n# TYPE {name} gauge\n"
        ));
        for (pipeline, t) in &all {
            let pipeline = escape(pipeline);
            for (partition, lag) in &t.partition_lag {
                out.push_str(&format!(
                    "{name}{{pipeline=\"{pipeline}\",partition=\"{}\"}} {lag}\n",
                    escape(partition)
                ));
            }
        }
        let per_stage: [StageMetric; 4] = [
            (
                "fluxion_stage_invocations_total",
                "Times an operator of the plan ran (once per micro-batch, more when retried or split).",
                |s| s.invocations as f64,
            ),
            (
                "fluxion_stage_input_records_total",
                "Documents into an operator of the plan.",
                |s| s.input as f64,
            ),
            (
                "fluxion_stage_output_records_total",
                "Documents out of an operator of the plan.",
                |s| s.output as f64,
            ),
            (
                "fluxion_stage_seconds_total",
                "Compute time of an operator of the plan.",
                |s| s.seconds,
            ),
        ];
        for (name, help, value) in per_stage {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (pipeline, t) in &all {
                let pipeline = escape(pipeline);
                for (stage, s) in &t.stages {
                    out.push_str(&format!(
                        "{name}{{pipeline=\"{pipeline}\",stage=\"{}\"}} {}\n",
                        escape(stage),
                        value(s)
                    ));
                }
            }
        }
        out
    }
}

/// A Prometheus label value, escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
                stages: vec![StageMetrics {
                    stage: "1 FilterExec".into(),
                    input_rows: n,
                    output_rows: 1,
                    duration: Duration::from_millis(2),
                }],
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
        assert!(
            text.contains(
                "fluxion_stage_input_records_total{pipeline=\"p\",stage=\"1 FilterExec\"} 7\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "fluxion_stage_invocations_total{pipeline=\"p\",stage=\"1 FilterExec\"} 2\n"
            ),
            "{text}"
        );
        assert_eq!(escape("a\"b\\"), "a\\\"b\\\\");
    }
}
