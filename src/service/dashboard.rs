//! The dashboard: one page, built into the binary, that reads the same `/v1` API with the
//! key the user types in (kept in the browser's local storage): pipelines with status,
//! counters, throughput and lag over the last five minutes, the last error, start and stop
//! buttons, and the event log. It polls once a second; nothing is served but the page.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

use super::state::Service;

const PAGE: &str = include_str!("dashboard/index.html");

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        PAGE,
    )
}

/// The dashboard's routes: `/dashboard`, and `/` sending there.
pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard", get(page))
}
