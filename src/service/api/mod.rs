//! The `/v1` API: its routes, what every answer looks like (a status and a JSON body, an
//! error as `{"error": "…"}` on one line), and the OpenAPI document generated from the
//! handlers' annotations.

// Handlers and their helpers fail with a whole response (`Result<Response, Response>`, so `?`
// answers the caller); boxing it would cost an allocation per answer for nothing.
#![allow(clippy::result_large_err)]

mod health;
mod keys;
mod log;
mod pipelines;
mod query;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::OpenApi;

use super::auth::authenticate;
use super::observe::observe;
use super::state::Service;
use crate::Error;

/// An answer of the API: a status and a JSON body.
pub type Answer = axum::response::Response;

/// A handler's result: an answer either way (`Err` for the failures, so `?` works).
pub type Reply = std::result::Result<Answer, Answer>;

/// An answer with `body`.
pub fn answer(status: StatusCode, body: Value) -> Answer {
    (status, axum::Json(body)).into_response()
}

/// An answer with a typed body, serialized straight to bytes.
pub fn typed(status: StatusCode, body: &impl Serialize) -> Answer {
    (status, axum::Json(body)).into_response()
}

/// The body of every failure.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong and where, on one line.
    pub error: String,
}

/// A 400 with `message`.
pub fn bad_request(message: impl Into<String>) -> Answer {
    answer(StatusCode::BAD_REQUEST, json!({"error": message.into()}))
}

/// The API's answer for `e`: 400 for what the caller got wrong, 404 for what does not
/// exist, 409 for a conflict, 503 for an external system that failed (worth retrying), 500
/// for a bug.
pub fn failure(e: &Error) -> Answer {
    let status = match e {
        Error::Conflict { .. } => StatusCode::CONFLICT,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        e if e.is_user_error() => StatusCode::BAD_REQUEST,
        e if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let text = e
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    answer(status, json!({"error": text}))
}

/// The body as JSON, or a 400 saying why it is not.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, Answer> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("the body: {e}")))
}

/// A query string, or the JSON 400 its rejection deserves.
pub fn query_of<T>(
    q: std::result::Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> std::result::Result<T, Answer> {
    q.map(|q| q.0)
        .map_err(|r| answer(r.status(), json!({"error": r.body_text()})))
}

/// Path parameters, or the JSON 400 their rejection deserves.
pub fn path_of<T>(
    p: std::result::Result<axum::extract::Path<T>, axum::extract::rejection::PathRejection>,
) -> std::result::Result<T, Answer> {
    p.map(|p| p.0)
        .map_err(|r| answer(r.status(), json!({"error": r.body_text()})))
}

/// Adds the bearer scheme every `/v1` route needs to the document.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (flx_…) or a JWT (HS256/RS256)"))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of the service.
#[derive(OpenApi)]
#[openapi(
    info(title = "Fluxion service", description = "Run and watch Fluxion pipelines."),
    paths(
        pipelines::submit, pipelines::list, pipelines::one, pipelines::update,
        pipelines::delete, pipelines::command,
        log::events, keys::create, query::query, query::tables, query::evaluate,
        health::healthz, health::readyz, health::metrics,
    ),
    modifiers(&Bearer),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// The service's routes.
pub fn router(service: Arc<Service>) -> Router {
    let limit = service.config.body_limit;
    let api = Router::new()
        .route(
            "/v1/pipelines",
            post(pipelines::submit).get(pipelines::list),
        )
        .route(
            "/v1/pipelines/{id}",
            get(pipelines::one)
                .put(pipelines::update)
                .delete(pipelines::delete),
        )
        .route("/v1/pipelines/{id}/{action}", post(pipelines::command))
        .route("/v1/events", get(log::events))
        .route("/v1/keys", post(keys::create))
        .route("/v1/query", post(query::query))
        .route("/v1/tables", get(query::tables))
        .route("/v1/rules/evaluate", post(query::evaluate))
        .route_layer(middleware::from_fn_with_state(
            service.clone(),
            authenticate,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/v1/openapi.json", get(health::openapi))
        .merge(super::dashboard::routes())
        .merge(api)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(service.clone(), observe))
        .with_state(service)
}
