//! The library API for streams: a builder that reads like the seed's Java quickstart —
//! a source, stages from JSON, a sink, a pipeline id, runtime settings, checkpoints — started
//! as a task that returns a handle (stop, wait for the run's counts).
//!
//! ```no_run
//! # async fn demo() -> fluxion::Result<()> {
//! use fluxion::connect::jsonl_sink::JsonlFileSink;
//! use fluxion::connect::jsonl_source::JsonlFileSource;
//! use fluxion::runtime::builder::Stream;
//! use fluxion::runtime::state::checkpoint::DirCheckpoints;
//!
//! let handle = Stream::builder("orders-ltv")
//!     .source(JsonlFileSource::open("orders.jsonl", None, true)?)
//!     .stages_json(r#"[{"$match": {"status": "PAID"}},
//!                      {"$group": {"_id": "$customerId", "lifetimeValue": {"$sum": "$orderValue"}}}]"#)?
//!     .sink(JsonlFileSink::open("ltv.jsonl")?)
//!     .checkpoints(DirCheckpoints::new("checkpoints")?)
//!     .micro_batch_size(1000)
//!     .start()?;
//! // … later:
//! handle.stop();
//! let stats = handle.wait().await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::connect::config::{SinkConfig, SourceConfig};
use crate::connect::config::{open_sink, open_source};
use crate::connect::source::{Sink, Source};
use crate::job::{Job, Query, RuntimeConfig};
use crate::runtime::exec::micro_batch::{RunStats, RuntimeOptions, run_with_dead_letters};
use crate::runtime::metrics::{MetricsListener, PrometheusMetrics, Totals};
use crate::runtime::policy::error_policy::{ErrorPolicy, OnFailure};
use crate::runtime::query::StreamQuery;
use crate::runtime::state::checkpoint::{CheckpointStore, MemoryCheckpoints, open_store};
use crate::{Engine, Error, Pipeline, Result};

/// Entry point of the builder.
pub struct Stream;

impl Stream {
    /// A stream named `id` (used in errors and logs).
    pub fn builder(id: &str) -> StreamBuilder {
        StreamBuilder {
            id: id.to_string(),
            source: None,
            pipeline: None,
            sink: None,
            dead_letter: None,
            checkpoints: None,
            options: RuntimeOptions {
                pipeline_id: id.to_string(),
                ..RuntimeOptions::default()
            },
            engine: None,
            worker_threads: None,
        }
    }
}

impl Stream {
    /// A builder with everything a job file says: its source, query, sink, dead letters,
    /// error policy, checkpoint store and interval, and runtime settings (the CLI's `fluxion
    /// run` of a streaming job is this and `start`). A job resuming from a checkpoint reads
    /// with the checkpoint's schema (no inference over the whole file).
    pub async fn from_job(job: &Job) -> Result<StreamBuilder> {
        let name = job.name.clone().unwrap_or_else(|| "job".to_string());
        let mut b = Stream::builder(&name);
        b = match job.query()? {
            Query::Pipeline(p) => b.pipeline(p),
            Query::Sql(sql) => b.sql(&sql, job.table()),
        };
        let mut hint = None;
        match &job.checkpoint {
            Some(cp) => {
                let mut store = open_store(&cp.store)?;
                hint = store.load().await?.and_then(|c| c.schema);
                b.checkpoints = Some(store);
                if let Some(ms) = cp.interval_ms {
                    b = b.checkpoint_interval(std::time::Duration::from_millis(ms));
                }
            }
            // Without a store there is nothing to resume from: checkpoint only at the end.
            None => b = b.checkpoint_interval(std::time::Duration::MAX),
        }
        b.source = Some(open_source(&job.source, hint, &name)?);
        b.options.time_field = job.source.time_field().cloned();
        b = b.sink_config(&job.sink)?;
        if let Some(p) = &job.error_policy {
            b = b.error_policy(ErrorPolicy::from_json(p, "errorPolicy")?);
        }
        if let Some(d) = &job.dead_letter {
            b.dead_letter = Some(open_sink(d, &name)?);
        }
        if let Some(r) = &job.runtime {
            b = b.runtime_config(r);
        }
        Ok(b)
    }
}

/// Collects a stream's parts; [`StreamBuilder::start`] runs them.
pub struct StreamBuilder {
    id: String,
    source: Option<Box<dyn Source>>,
    pipeline: Option<StreamQuery>,
    sink: Option<Box<dyn Sink>>,
    dead_letter: Option<Box<dyn Sink>>,
    checkpoints: Option<Box<dyn CheckpointStore>>,
    options: RuntimeOptions,
    engine: Option<Engine>,
    worker_threads: Option<usize>,
}

impl StreamBuilder {
    /// Where documents come from.
    pub fn source(mut self, source: impl Source + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The source a connector config describes (a job file's `source`).
    pub fn source_config(mut self, config: &SourceConfig) -> Result<Self> {
        self.source = Some(open_source(config, None, &self.id)?);
        if let Some(t) = config.time_field() {
            self.options.time_field = Some(t.clone());
        }
        Ok(self)
    }

    /// The event time of each document (an expression such as `"$ts"`), for windows.
    pub fn time_field(mut self, expression: serde_json::Value) -> Self {
        self.options.time_field = Some(expression);
        self
    }

    /// The sink a connector config describes (a job file's `sink`).
    pub fn sink_config(mut self, config: &SinkConfig) -> Result<Self> {
        self.sink = Some(open_sink(config, &self.id)?);
        Ok(self)
    }

    /// Runtime settings as a job file's `runtime` spells them (micro-batch size, batch delay,
    /// queue capacities, worker threads).
    pub fn runtime_config(mut self, config: &RuntimeConfig) -> Self {
        apply_runtime(config, &mut self.options);
        if let Some(n) = config.worker_threads {
            self = self.worker_threads(n);
        }
        self
    }

    /// The stages, from a JSON pipeline file (errors name the file and the JSON path).
    pub fn stages_file(mut self, path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::external(format!("reading {}", path.display()), e))?;
        self.pipeline = Some(Pipeline::from_json_str(&text)?.into());
        Ok(self)
    }

    /// Runs on the caller's tokio runtime (undoes `worker_threads`).
    pub fn on_current_runtime(mut self) -> Self {
        self.worker_threads = None;
        self
    }

    /// The stages, as a JSON pipeline (errors name their JSON path).
    pub fn stages_json(mut self, json: &str) -> Result<Self> {
        self.pipeline = Some(Pipeline::from_json_str(json)?.into());
        Ok(self)
    }

    /// The stages, already parsed.
    pub fn pipeline(mut self, pipeline: Pipeline) -> Self {
        self.pipeline = Some(pipeline.into());
        self
    }

    /// SQL instead of stages: each micro-batch is the table `table` (it must work row by row:
    /// no aggregates, `ORDER BY`, `LIMIT`, window functions, `DISTINCT`, `UNION`).
    pub fn sql(mut self, sql: &str, table: &str) -> Self {
        self.pipeline = Some(StreamQuery::Sql {
            sql: sql.to_string(),
            table: table.to_string(),
        });
        self
    }

    /// Where results go.
    pub fn sink(mut self, sink: impl Sink + 'static) -> Self {
        self.sink = Some(Box::new(sink));
        self
    }

    /// Where unreadable records go (sets the `deadLetter` policy).
    pub fn dead_letter(mut self, sink: impl Sink + 'static) -> Self {
        self.dead_letter = Some(Box::new(sink));
        self.options.error_policy = self.options.error_policy.then(OnFailure::DeadLetter);
        self
    }

    /// What happens to unreadable records.
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.options.error_policy = policy;
        self
    }

    /// Where checkpoints go (default: in memory).
    pub fn checkpoints(mut self, store: impl CheckpointStore + 'static) -> Self {
        self.checkpoints = Some(Box::new(store));
        self
    }

    /// Documents per micro-batch.
    pub fn micro_batch_size(mut self, n: usize) -> Self {
        self.options.micro_batch_size = n.max(1);
        self
    }

    /// Checkpoint at most this often (default: after every micro-batch).
    pub fn checkpoint_interval(mut self, every: std::time::Duration) -> Self {
        self.options.checkpoint_interval = Some(every);
        self
    }

    /// How long a micro-batch may wait for more documents after its first one (default: it
    /// closes as soon as the source has nothing more right now).
    pub fn max_batch_delay(mut self, delay: std::time::Duration) -> Self {
        self.options.max_batch_delay = Some(delay);
        self
    }

    /// Transformed micro-batches waiting for delivery (default 2).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.options.queue_capacity = n.max(1);
        self
    }

    /// Micro-batches read ahead of the pipeline (default 2).
    pub fn source_queue_capacity(mut self, n: usize) -> Self {
        self.options.source_queue_capacity = n.max(1);
        self
    }

    /// Runs the stream on a runtime of its own with `n` threads (default: the caller's).
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = Some(n.max(1));
        self
    }

    /// Reads processing time from `clock` (processing-time windows, idle timeouts) instead of
    /// the system clock — a [`ManualClock`](crate::runtime::window::clock::ManualClock) in tests.
    pub fn clock(mut self, clock: Arc<dyn crate::runtime::window::clock::Clock>) -> Self {
        self.options.clock = clock;
        self
    }

    /// How often windows the clock alone can close are stepped while the source is quiet
    /// (100 ms by default).
    pub fn tick_interval(mut self, every: std::time::Duration) -> Self {
        self.options.tick_interval = every;
        self
    }

    /// Told about every committed micro-batch (the handle's own metrics are always kept).
    pub fn listener(mut self, listener: Arc<dyn MetricsListener>) -> Self {
        self.options.listeners.push(listener);
        self
    }

    /// The session to run in (for `$lookup` tables registered on it).
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Starts the stream on the current tokio runtime.
    pub fn start(self) -> Result<StreamHandle> {
        let missing = |what: &str| Error::config(&self.id, format!("the stream needs a {what}"));
        let mut source = self.source.ok_or_else(|| missing("source"))?;
        let pipeline = self.pipeline.ok_or_else(|| missing("pipeline"))?;
        let mut sink = self.sink.ok_or_else(|| missing("sink"))?;
        let mut dead_letter = self.dead_letter;
        let mut checkpoints = self
            .checkpoints
            .unwrap_or_else(|| Box::new(MemoryCheckpoints::default()));
        let engine = self.engine.unwrap_or_default();
        let metrics = Arc::new(PrometheusMetrics::default());
        let mut options = self.options;
        options.listeners.push(metrics.clone());
        let stop = options.stop.clone();
        let run = async move {
            run_with_dead_letters(
                &engine,
                pipeline,
                source.as_mut(),
                sink.as_mut(),
                dead_letter.as_mut().map(|d| d.as_mut() as &mut dyn Sink),
                checkpoints.as_mut(),
                &options,
            )
            .await
        };
        let (done, wait) = tokio::sync::oneshot::channel();
        match self.worker_threads {
            None => {
                tokio::spawn(async move {
                    let _ = done.send(run.await);
                });
            }
            Some(n) => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n)
                    .thread_name(format!("fluxion-{}", self.id))
                    .enable_all()
                    .build()
                    .map_err(|e| Error::external(format!("starting {}'s threads", self.id), e))?;
                std::thread::Builder::new()
                    .name(format!("fluxion-{}", self.id))
                    .spawn(move || {
                        let _ = done.send(runtime.block_on(run));
                    })
                    .map_err(|e| Error::external(format!("starting {}", self.id), e))?;
            }
        }
        Ok(StreamHandle {
            id: self.id,
            stop,
            wait,
            metrics,
        })
    }
}

/// A running stream.
pub struct StreamHandle {
    id: String,
    stop: Arc<AtomicBool>,
    wait: tokio::sync::oneshot::Receiver<Result<RunStats>>,
    metrics: Arc<PrometheusMetrics>,
}

impl StreamHandle {
    /// Asks the stream to stop after the batch in hand (it checkpoints first).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// A flag that stops the stream when set (for a signal handler that outlives `wait`).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// The stream's metrics so far (`None` before its first committed batch).
    pub fn metrics(&self) -> Option<Totals> {
        self.metrics.totals(&self.id)
    }

    /// The stream's metrics as a registry (Prometheus text with `render`).
    pub fn registry(&self) -> Arc<PrometheusMetrics> {
        self.metrics.clone()
    }

    /// Waits for the stream to end; its counts, or the error that stopped it.
    pub async fn wait(self) -> Result<RunStats> {
        self.wait
            .await
            .map_err(|e| Error::external("the stream's task", e))?
    }
}

/// A job file's `runtime` settings over `options`.
fn apply_runtime(config: &RuntimeConfig, options: &mut RuntimeOptions) {
    if let Some(n) = config.micro_batch_size {
        options.micro_batch_size = n.max(1);
    }
    if let Some(ms) = config.max_batch_delay_ms {
        options.max_batch_delay = (ms > 0).then(|| std::time::Duration::from_millis(ms));
    }
    if let Some(n) = config.queue_capacity {
        options.queue_capacity = n.max(1);
    }
    if let Some(n) = config.source_queue_capacity {
        options.source_queue_capacity = n.max(1);
    }
}
