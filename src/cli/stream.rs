//! `fluxion run` of a streaming job (a followed source or checkpoints): the micro-batch loop
//! from a JSON-lines file into a JSON-lines file (exactly-once) or stdout, checkpointing into
//! a directory; SIGINT or SIGTERM stops it gracefully (the batch in hand is finished and
//! checkpointed, exit 0).

use std::sync::atomic::Ordering;

use crate::connect::Format;
use crate::connect::jsonl_sink::JsonlFileSink;
use crate::connect::jsonl_source::JsonlFileSource;
use crate::connect::parquet_sink::ParquetDirSink;
use crate::connect::source::Sink;
use crate::connect::stdout::StdoutSink;
use crate::engine::Engine;
use crate::job::{Job, Query, SinkConfig, SourceConfig};
use crate::runtime::checkpoint::{CheckpointStore, MemoryCheckpoints, open_store};
use crate::runtime::error_policy::ErrorPolicy;
use crate::runtime::metrics::PrometheusMetrics;
use crate::runtime::micro_batch::{RuntimeOptions, run_with_dead_letters};
use crate::runtime::query::StreamQuery;
use crate::{Error, Result};

pub(super) async fn run_job(job: Job, metrics_addr: Option<&str>) -> Result<()> {
    let name = job.name.clone().unwrap_or_else(|| "job".to_string());
    let query = match job.query()? {
        Query::Pipeline(p) => StreamQuery::Pipeline(p),
        Query::Sql(sql) => StreamQuery::Sql {
            sql,
            table: job.table().to_string(),
        },
    };
    let (location, options) = job.source_location()?;
    let SourceConfig::File { follow, .. } = &job.source;
    let jsonl = |path: &str, format: Option<Format>| -> Result<()> {
        match format.map_or_else(|| Format::from_path(path), Ok)? {
            Format::Jsonl if !path.contains("://") => Ok(()),
            _ => Err(Error::config(
                &name,
                format!(
                    "a streaming job reads local JSON-lines files and writes local JSON-lines files or Parquet directories (\"format\": \"parquet\"), not {path}"
                ),
            )),
        }
    };
    jsonl(&location, options.format)?;
    let mut source = JsonlFileSource::open(&location, options.schema.clone(), *follow)?;
    let mut sink: Box<dyn Sink> = match &job.sink {
        SinkConfig::Stdout => Box::new(StdoutSink),
        // A directory of Parquet parts, one per commit.
        SinkConfig::File { path, format }
            if format.as_deref() == Some("parquet") && !path.contains("://") =>
        {
            Box::new(ParquetDirSink::open(path)?)
        }
        SinkConfig::File { path, format } => {
            jsonl(path, format.as_deref().map(Format::from_name).transpose()?)?;
            Box::new(JsonlFileSink::open(path)?)
        }
    };
    let mut checkpoints: Box<dyn CheckpointStore> = match &job.checkpoint {
        Some(cp) => open_store(&cp.store)?,
        None => Box::new(MemoryCheckpoints::default()),
    };
    let mut dead_letter: Option<Box<dyn Sink>> = match &job.dead_letter {
        None => None,
        Some(SinkConfig::Stdout) => Some(Box::new(StdoutSink)),
        Some(SinkConfig::File { path, format }) => {
            jsonl(path, format.as_deref().map(Format::from_name).transpose()?)?;
            Some(Box::new(JsonlFileSink::open(path)?))
        }
    };
    let mut runtime = RuntimeOptions::default();
    if let Some(p) = &job.error_policy {
        runtime.error_policy = ErrorPolicy::from_json(p, "errorPolicy")?;
    }
    runtime.checkpoint_interval = match &job.checkpoint {
        Some(c) => c.interval_ms.map(std::time::Duration::from_millis),
        // Without a store there is nothing to resume from: checkpoint only at the end.
        None => Some(std::time::Duration::MAX),
    };
    if let Some(r) = &job.runtime {
        r.apply(&mut runtime);
    }
    runtime.pipeline_id = name.clone();
    if let Some(addr) = metrics_addr {
        let metrics = std::sync::Arc::new(PrometheusMetrics::default());
        runtime.listeners.push(metrics.clone());
        serve_metrics(addr, metrics).await?;
    }
    let stop = runtime.stop.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
        stop.store(true, Ordering::SeqCst);
    });
    let engine = Engine::new();
    let stats = run_with_dead_letters(
        &engine,
        query,
        &mut source,
        sink.as_mut(),
        dead_letter.as_mut().map(|d| d.as_mut() as &mut dyn Sink),
        checkpoints.as_mut(),
        &runtime,
    )
    .await?;
    tracing::info!(
        batches = stats.batches,
        input = stats.input_rows,
        output = stats.output_rows,
        dead_lettered = stats.dead_lettered,
        skipped = stats.skipped,
        "stream stopped"
    );
    Ok(())
}

/// Serves `metrics` at `http://addr/metrics` for as long as the process runs.
async fn serve_metrics(addr: &str, metrics: std::sync::Arc<PrometheusMetrics>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::external(format!("listening on {addr} for metrics"), e))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { metrics.render() }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(())
}
