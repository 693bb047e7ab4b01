//! `/v1/pipelines`: submit, list, read, update, start, stop, restart and delete pipelines.
//! Submitting and updating validate the job first (a bad one is a 400 naming its JSON
//! path); commands may carry `If-Match: <version>` and fail with 409 when the pipeline
//! moved on.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Answer, ErrorBody, Reply, answer, bad_request, failure, path_of, query_of, typed};
use crate::Error;
use crate::service::auth::{Caller, allow};
use crate::service::events::{EventKind, PipelineView};
use crate::service::keys::Role;
use crate::service::state::{Service, exists};

/// The answer to a submit or an update.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Created {
    pub id: String,
    /// The pipeline's version after the change (for `If-Match`).
    pub version: u64,
}

/// Counters of a running pipeline.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub batches: u64,
    pub input: u64,
    pub output: u64,
    pub dead_lettered: u64,
    pub checkpoints: u64,
}

/// A pipeline as the service sees it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineState {
    pub id: String,
    pub version: u64,
    /// submitted, running, stopped, finished or failed.
    pub status: String,
    pub last_error: Option<String>,
    /// Since the pipeline last started in this process; null before its first batch.
    pub counters: Option<Counters>,
    /// How far the source is behind its end (null when it cannot tell).
    pub lag: Option<f64>,
    /// When the last checkpoint was saved (RFC 3339).
    pub last_checkpoint: Option<String>,
    /// The job file as submitted (only when reading one pipeline).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub job: Option<Value>,
}

/// Every pipeline.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PipelineList {
    pub pipelines: Vec<PipelineState>,
}

/// The answer to a command.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CommandDone {
    pub id: String,
    pub version: u64,
    pub status: String,
}

/// The body of a request, or the JSON 400/413 its rejection deserves.
pub fn body_of(
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<Bytes, Answer> {
    body.map_err(|r| {
        answer(
            r.status(),
            json!({"error": format!("the body: {}", r.body_text())}),
        )
    })
}

fn not_found(id: &str) -> Answer {
    failure(&Error::NotFound(format!("no pipeline \"{id}\"")))
}

/// The version a command was made against (`If-Match`), if the caller gave one.
fn if_match(headers: &HeaderMap) -> std::result::Result<Option<u64>, Answer> {
    match headers.get("if-match") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .map(|t| t.trim().trim_matches('"'))
            .and_then(|t| t.parse().ok())
            .map(Some)
            .ok_or_else(|| bad_request("If-Match: expected a pipeline version")),
    }
}

/// The job in a request body, validated.
fn job_in(s: &Service, id: &str, job: Value) -> std::result::Result<Value, Answer> {
    if !job.is_object() {
        return Err(bad_request("the body: expected a job file (a JSON object)"));
    }
    s.job_of(id, &job).map_err(|e| failure(&e))?;
    Ok(job)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Submit a job: the pipeline is named after the job's `name` (or numbered) and starts
/// stopped; start it with `POST /v1/pipelines/{id}/start`.
#[utoipa::path(post, path = "/v1/pipelines", tag = "pipelines",
    request_body(content = Object, description = "A job file"),
    responses(
        (status = 201, body = Created),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody),
    ))]
pub async fn submit(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    allow(&caller, Role::Admin)?;
    let body = body_of(body)?;
    let job: Value = super::json_body(&body)?;
    let id = match job.get("name") {
        Some(Value::String(n)) if valid_id(n) => n.clone(),
        Some(_) => {
            return Err(bad_request("name: 1 to 128 letters, digits, '-' and '_'"));
        }
        None => format!("p-{}", s.projection().seq + 1),
    };
    let job = job_in(&s, &id, job)?;
    let event = s
        .record(
            &id,
            None,
            EventKind::PipelineSubmitted { job },
            &caller.id,
            |p| {
                if p.pipelines.contains_key(&id) {
                    Err(Error::Conflict {
                        context: format!("pipeline {id}"),
                        message: "it exists: update it (PUT) or delete it first".into(),
                    })
                } else {
                    Ok(())
                }
            },
        )
        .await
        .map_err(|e| failure(&e))?;
    Ok(typed(
        StatusCode::CREATED,
        &Created {
            id,
            version: event.version,
        },
    ))
}

/// A pipeline of the projection as the API shows it, with its job if asked.
fn state_of(s: &Service, v: &PipelineView, with_job: bool) -> PipelineState {
    let (counters, lag, last_checkpoint) = s
        .pipeline_metrics
        .with_totals(&v.id, |t| {
            let counters = Counters {
                batches: t.batches,
                input: t.input,
                output: t.output,
                dead_lettered: t.dead_lettered,
                checkpoints: t.checkpoints,
            };
            (
                Some(counters),
                Some(t.lag).filter(|l| l.is_finite()),
                t.last_checkpoint_ms,
            )
        })
        .unwrap_or((None, None, None));
    PipelineState {
        id: v.id.clone(),
        version: v.version,
        status: v.status.name().to_string(),
        last_error: v.last_error.clone(),
        counters,
        lag,
        last_checkpoint: last_checkpoint
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        job: with_job.then(|| v.job.clone()),
    }
}

/// List the pipelines with their statuses and counters.
#[utoipa::path(get, path = "/v1/pipelines", tag = "pipelines",
    responses((status = 200, body = PipelineList), (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn list(State(s): State<Arc<Service>>, Extension(caller): Extension<Caller>) -> Reply {
    allow(&caller, Role::Viewer)?;
    let json = |bytes: Bytes| {
        (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response()
    };
    // The generation is read before the list is built: a batch committed meanwhile makes
    // the cached copy stale at once.
    let generation = s.pipeline_metrics.generation();
    let projection = s.projection();
    if let Some((seq, g, bytes)) = &*s.list_cache.lock().unwrap_or_else(|p| p.into_inner())
        && *seq == projection.seq
        && *g == generation
    {
        return Ok(json(bytes.clone()));
    }
    let pipelines = projection
        .pipelines
        .values()
        .map(|v| state_of(&s, v, false))
        .collect();
    let seq = projection.seq;
    drop(projection);
    let bytes = Bytes::from(serde_json::to_vec(&PipelineList { pipelines }).unwrap_or_default());
    *s.list_cache.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((seq, generation, bytes.clone()));
    Ok(json(bytes))
}

/// One pipeline, with its job file.
#[utoipa::path(get, path = "/v1/pipelines/{id}", tag = "pipelines",
    params(("id" = String, Path, description = "The pipeline's id")),
    responses((status = 200, body = PipelineState), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn one(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Reply {
    allow(&caller, Role::Viewer)?;
    let id = path_of(id)?;
    let state = s
        .projection()
        .pipelines
        .get(&id)
        .map(|v| state_of(&s, v, true));
    state
        .map(|v| typed(StatusCode::OK, &v))
        .ok_or_else(|| not_found(&id))
}

/// Options of an update.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct UpdateOptions {
    /// Start the new version from an empty checkpoint (needed when its state differs).
    #[serde(default)]
    pub reset_checkpoint: bool,
}

/// Replace a pipeline's job with a new version. A running pipeline stops gracefully, takes
/// the new job and resumes from its checkpoint.
#[utoipa::path(put, path = "/v1/pipelines/{id}", tag = "pipelines",
    params(("id" = String, Path, description = "The pipeline's id"),
           ("If-Match" = Option<u64>, Header, description = "The version this update was made against"),
           UpdateOptions),
    request_body(content = Object, description = "A job file"),
    responses(
        (status = 200, body = Created),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ))]
pub async fn update(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    id: std::result::Result<Path<String>, PathRejection>,
    options: std::result::Result<Query<UpdateOptions>, QueryRejection>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    allow(&caller, Role::Admin)?;
    let id = path_of(id)?;
    let options = query_of(options)?;
    let expected = if_match(&headers)?;
    let body = body_of(body)?;
    if !s.projection().pipelines.contains_key(&id) {
        return Err(not_found(&id));
    }
    let job = job_in(&s, &id, super::json_body(&body)?)?;
    let event = s
        .record(
            &id,
            expected,
            EventKind::Updated { job: job.clone() },
            &caller.id,
            exists(&id),
        )
        .await
        .map_err(|e| failure(&e))?;
    if s.is_running(&id) {
        s.halt(&id).await;
        let resumed = async {
            if options.reset_checkpoint {
                s.reset_checkpoint(&id, &job).await?;
            }
            s.launch(&id).await
        };
        if let Err(e) = resumed.await {
            s.record_failure(&id, &e).await;
            return Err(failure(&e));
        }
    } else if options.reset_checkpoint {
        s.reset_checkpoint(&id, &job)
            .await
            .map_err(|e| failure(&e))?;
    }
    Ok(typed(
        StatusCode::OK,
        &Created {
            id,
            version: event.version,
        },
    ))
}

/// Start, stop (gracefully: the batch in hand finishes and checkpoints) or restart a
/// pipeline.
#[utoipa::path(post, path = "/v1/pipelines/{id}/{action}", tag = "pipelines",
    params(("id" = String, Path, description = "The pipeline's id"),
           ("action" = String, Path, description = "start, stop or restart"),
           ("If-Match" = Option<u64>, Header, description = "The version this command was made against")),
    responses(
        (status = 200, body = CommandDone),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody),
    ))]
pub async fn command(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    id: std::result::Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Reply {
    allow(&caller, Role::Operator)?;
    let (id, action) = path_of(id)?;
    let expected = if_match(&headers)?;
    if !matches!(action.as_str(), "start" | "stop" | "restart") {
        return Err(answer(
            StatusCode::NOT_FOUND,
            json!({"error": format!("unknown command \"{action}\" (start, stop, restart)")}),
        ));
    }
    if !s.projection().pipelines.contains_key(&id) {
        return Err(not_found(&id));
    }
    let mut expected = expected;
    if action != "start" {
        let event = s
            .record(&id, expected, EventKind::Stopped, &caller.id, exists(&id))
            .await
            .map_err(|e| failure(&e))?;
        s.halt(&id).await;
        if action == "stop" {
            return Ok(typed(
                StatusCode::OK,
                &CommandDone {
                    id,
                    version: event.version,
                    status: "stopped".into(),
                },
            ));
        }
        expected = Some(event.version);
    }
    let event = s
        .start(&id, expected, &caller.id)
        .await
        .map_err(|e| failure(&e))?;
    Ok(typed(
        StatusCode::OK,
        &CommandDone {
            id,
            version: event.version,
            status: "running".into(),
        },
    ))
}

/// The answer to a delete.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
}

/// Delete a pipeline (it stops first; its checkpoint stays on disk).
#[utoipa::path(delete, path = "/v1/pipelines/{id}", tag = "pipelines",
    params(("id" = String, Path, description = "The pipeline's id"),
           ("If-Match" = Option<u64>, Header, description = "The version this delete was made against")),
    responses(
        (status = 200, body = Deleted),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody),
    ))]
pub async fn delete(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    id: std::result::Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Reply {
    allow(&caller, Role::Admin)?;
    let id = path_of(id)?;
    let expected = if_match(&headers)?;
    s.record(&id, expected, EventKind::Deleted, &caller.id, exists(&id))
        .await
        .map_err(|e| failure(&e))?;
    s.halt(&id).await;
    s.pipeline_metrics.forget(&id);
    Ok(typed(StatusCode::OK, &Deleted { id, deleted: true }))
}
