//! Starting and stopping the service: the settings, the state, the pipelines that were
//! running, the listener (HTTPS when the settings give a certificate), and on SIGINT or
//! SIGTERM a graceful stop — requests in flight are answered, pipelines finish their batch
//! and checkpoint, and the log still shows them running so they resume at the next start.

use std::path::PathBuf;

use super::api::router;
use super::config::Config;
use super::state::Service;
use crate::{Error, Result};

/// What `fluxion serve` was told on its command line (it wins over the settings file).
#[derive(Debug, Default, Clone)]
pub struct ServeArgs {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Runs the service until the process is told to stop.
pub async fn serve(args: ServeArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    let data_dir = args
        .data_dir
        .or_else(|| config.data_dir.clone())
        .ok_or_else(|| {
            Error::config(
                "serve",
                "give --data-dir DIR (or dataDir in the settings file)",
            )
        })?;
    let listen = config.listen.clone();
    let tls = config.tls.clone();
    let service = Service::open(config, data_dir).await?;
    let listener = std::net::TcpListener::bind(&listen)
        .map_err(|e| Error::external(format!("listening on {listen}"), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::external(format!("listening on {listen}"), e))?;
    service.resume().await;
    let app = router(service.clone());
    match tls {
        None => {
            tracing::info!(%listen, "fluxion serve is listening (http)");
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| Error::external(format!("listening on {listen}"), e))?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .map_err(|e| Error::external("serving", e))?;
        }
        Some(tls) => {
            // One process-wide TLS provider: ring, the one reqwest already builds.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(|e| {
                    Error::config(
                        "tls",
                        format!(
                            "cannot use {} and {}: {e}",
                            tls.cert.display(),
                            tls.key.display()
                        ),
                    )
                })?;
            tracing::info!(%listen, "fluxion serve is listening (https)");
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            axum_server::from_tcp_rustls(listener, rustls)
                .map_err(|e| Error::external(format!("listening on {listen}"), e))?
                .handle(handle)
                .serve(app.into_make_service())
                .await
                .map_err(|e| Error::external("serving", e))?;
        }
    }
    service.halt_all().await;
    Ok(())
}
