//! Health and self-description, open to anyone who can reach the port: `/healthz` (the
//! process answers), `/readyz` (the event store can be used; 503 when not), `/metrics`
//! (Prometheus text: the requests per route and status, and every pipeline's streaming
//! metrics labelled by pipeline) and `/v1/openapi.json`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::OpenApi;

use super::{Answer, ApiDoc, typed};
use crate::service::state::Service;

/// What `/readyz` checked.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checks {
    /// `ok (<store>)`, or why the store cannot be used.
    pub event_store: String,
    /// How many pipelines run.
    pub pipelines: String,
}

/// Whether the service can take commands.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// ready or unavailable.
    pub status: String,
    pub checks: Checks,
    /// Fluxion's version.
    pub version: String,
}

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, description = "ok", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Whether the service can take commands: its event store answers.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses((status = 200, body = Ready), (status = 503, body = Ready)))]
pub async fn readyz(State(s): State<Arc<Service>>) -> Answer {
    let (status, store) = match s.store.check().await {
        Ok(()) => (StatusCode::OK, format!("ok ({})", s.store.describe())),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    typed(
        status,
        &Ready {
            status: if status == StatusCode::OK {
                "ready"
            } else {
                "unavailable"
            }
            .into(),
            checks: Checks {
                event_store: store,
                pipelines: format!("{} running", s.running_count()),
            },
            version: env!("CARGO_PKG_VERSION").into(),
        },
    )
}

/// Prometheus metrics of the service and its pipelines.
#[utoipa::path(get, path = "/metrics", tag = "health", security(()),
    responses((status = 200, description = "Prometheus text format", body = String,
               content_type = "text/plain")))]
pub async fn metrics(State(s): State<Arc<Service>>) -> impl IntoResponse {
    let mut text = s.http.render();
    text.push_str(&s.pipeline_metrics.render());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// The OpenAPI document.
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi().to_json().unwrap_or_default(),
    )
}
