//! `fluxion run` of a streaming job (a followed source, checkpoints or runtime settings): the
//! job's stream (`runtime::builder::Stream::from_job`) on this process's runtime, its metrics
//! served at `--metrics-addr`; SIGINT or SIGTERM stops it gracefully (the batches in hand are
//! finished and checkpointed, exit 0).

use std::sync::atomic::Ordering;

use crate::job::Job;
use crate::runtime::builder::Stream;
use crate::runtime::metrics::PrometheusMetrics;
use crate::{Error, Result};

pub(super) async fn run_job(job: Job, metrics_addr: Option<&str>) -> Result<()> {
    // `workerThreads` already sized this process's runtime (`Cli::worker_threads`).
    let handle = Stream::from_job(&job).await?.on_current_runtime().start()?;
    if let Some(addr) = metrics_addr {
        serve_metrics(addr, handle.registry()).await?;
    }
    let stop = handle.stop_flag();
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
    let stats = handle.wait().await?;
    tracing::info!(
        batches = stats.batches,
        input = stats.input_rows,
        output = stats.output_rows,
        dead_lettered = stats.dead_lettered,
        skipped = stats.skipped,
        checkpoints = stats.checkpoints,
        checkpoint_mean_ms = %format!(
            "{:.3}",
            stats.checkpoint_time.as_secs_f64() * 1e3 / stats.checkpoints.max(1) as f64
        ),
        checkpoint_max_ms = %format!("{:.3}", stats.slowest_checkpoint.as_secs_f64() * 1e3),
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
