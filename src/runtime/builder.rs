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
use crate::connect::config::{open_partitioned, open_sink, open_source};
use crate::connect::source::{Position, Sink, Source, TaskPositions};
use crate::job::{Job, Query, RuntimeConfig};
use crate::runtime::exec::micro_batch::{
    GroupUpserts, RunStats, RuntimeOptions, run_with_dead_letters,
};
use crate::runtime::exec::tasks::{OpenTask, TaskParts, run_tasks};
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
            scale_out: None,
        }
    }
}

/// A job scaled out over its source's partitions: what each partition's task is made of.
struct ScaleOut {
    source: SourceConfig,
    sink: SinkConfig,
    dead_letter: Option<SinkConfig>,
    /// The job's checkpoint store; each task's is under it.
    store: String,
}

/// Where the task `task` of a scaled-out job keeps its checkpoints.
fn task_store(store: &str, task: &str) -> String {
    format!("{}/tasks/{task}", store.trim_end_matches('/'))
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
        if job.runtime.as_ref().is_some_and(|r| r.scale_out) {
            return Self::scaled_out(job, b, &name);
        }
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
        if !job.routes.is_empty() {
            let main = b
                .sink
                .take()
                .ok_or_else(|| Error::Internal("no sink".into()))?;
            let routes = job
                .routes
                .iter()
                .map(|(route, c)| {
                    Ok((
                        route.clone(),
                        open_sink(c, &format!("{name} routes.{route}"))?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let field = job
                .route_field
                .as_deref()
                .unwrap_or(crate::connect::routed::DEFAULT_FIELD);
            b.sink = Some(Box::new(crate::connect::routed::RoutedSink::new(
                main, routes, field, &name,
            )));
        }
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

impl Stream {
    /// The builder of a job with `runtime.scaleOut`: its parts are opened per task.
    fn scaled_out(job: &Job, mut b: StreamBuilder, name: &str) -> Result<StreamBuilder> {
        let Some(cp) = &job.checkpoint else {
            return Err(Error::config(
                name,
                "runtime.scaleOut: give a checkpoint.store, which the job's processes share",
            ));
        };
        if !matches!(job.source, SourceConfig::Kafka(_)) {
            return Err(Error::config(
                name,
                "runtime.scaleOut: only a Kafka source with a groupId is scaled out over its partitions",
            ));
        }
        if !job.routes.is_empty() {
            return Err(Error::config(
                name,
                "runtime.scaleOut: a job with routes runs in one process",
            ));
        }
        // The sinks open per task; opened once here, their settings are checked up front.
        drop(open_sink(&job.sink, name)?);
        if let Some(d) = &job.dead_letter {
            drop(open_sink(d, name)?);
        }
        if let Some(ms) = cp.interval_ms {
            b = b.checkpoint_interval(std::time::Duration::from_millis(ms));
        }
        b.options.time_field = job.source.time_field().cloned();
        if let Some(p) = &job.error_policy {
            b = b.error_policy(ErrorPolicy::from_json(p, "errorPolicy")?);
        }
        if let Some(r) = &job.runtime {
            b = b.runtime_config(r);
        }
        b.scale_out = Some(ScaleOut {
            source: job.source.clone(),
            sink: job.sink.clone(),
            dead_letter: job.dead_letter.clone(),
            store: cp.store.clone(),
        });
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
    scale_out: Option<ScaleOut>,
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

    /// When a continuous `$group` merges micro-batches into its groups and emits their
    /// upserts (default [`GroupUpserts::EveryBatch`]).
    pub fn group_upserts(mut self, when: GroupUpserts) -> Self {
        self.options.group_upserts = when;
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
        let pipeline = self.pipeline;
        let engine = self.engine.unwrap_or_default();
        let metrics = Arc::new(PrometheusMetrics::default());
        let mut options = self.options;
        options.listeners.push(metrics.clone());
        let stop = options.stop.clone();
        let run: std::pin::Pin<Box<dyn std::future::Future<Output = Result<RunStats>> + Send>> =
            match self.scale_out {
                Some(so) => {
                    let pipeline = pipeline.ok_or_else(|| missing("pipeline"))?;
                    // Each task plans in a session of its own.
                    drop(engine);
                    Box::pin(run_scaled_out(pipeline, so, self.id.clone(), options))
                }
                None => {
                    let mut source = self.source.ok_or_else(|| missing("source"))?;
                    let pipeline = pipeline.ok_or_else(|| missing("pipeline"))?;
                    let mut sink = self.sink.ok_or_else(|| missing("sink"))?;
                    let mut dead_letter = self.dead_letter;
                    let mut checkpoints = self
                        .checkpoints
                        .unwrap_or_else(|| Box::new(MemoryCheckpoints::default()));
                    Box::pin(async move {
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
                    })
                }
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

/// Runs a scaled-out job: joins its source's coordinator and runs a task per partition held.
async fn run_scaled_out(
    pipeline: StreamQuery,
    so: ScaleOut,
    id: String,
    options: RuntimeOptions,
) -> Result<RunStats> {
    // Called by the consumer's own thread in a rebalance, outside the runtime: it waits for
    // the store's answer on the runtime's handle.
    let handle = tokio::runtime::Handle::current();
    let store = so.store.clone();
    let positions: TaskPositions = Arc::new(move |task: &str| {
        let mut s = open_store(&task_store(&store, task)).ok()?;
        let loaded = handle.block_on(s.load());
        match loaded {
            Ok(c) => c.map(|c| Position(c.source)),
            Err(e) => {
                tracing::warn!(task, error = %e, "reading the task's checkpoint failed");
                None
            }
        }
    });
    let source = open_partitioned(&so.source, &id, positions)?;
    let (store, job) = (so.store, id);
    let open: OpenTask = Arc::new(move |task: &str| {
        let context = format!("{job}/{task}");
        Ok(TaskParts {
            sink: open_sink(&so.sink, &context)?,
            dead_letter: so
                .dead_letter
                .as_ref()
                .map(|d| open_sink(d, &context))
                .transpose()?,
            checkpoints: open_store(&task_store(&store, task))?,
        })
    });
    run_tasks(pipeline, source, open, &options).await
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
    if let Some(when) = config.group_upserts {
        options.group_upserts = when;
    }
}
