//! `GET /v1/events`: the event log, the service's audit trail, oldest first. Job files are
//! left out (they may name secrets' variables and are large); `GET /v1/pipelines/{id}` shows
//! the current one.

use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{ErrorBody, Reply, failure, query_of, typed};
use crate::service::auth::{Caller, allow};
use crate::service::events::{Event, EventKind};
use crate::service::keys::Role;
use crate::service::state::Service;

/// Which events to read.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Events after this position (0: from the start).
    pub after: Option<u64>,
    /// At most this many (1 000 unless given; at most 10 000).
    pub limit: Option<u32>,
}

/// One event.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventOut {
    /// Position in the log, from 1.
    pub seq: u64,
    pub pipeline: String,
    /// The pipeline's version after the event.
    pub version: u64,
    /// PipelineSubmitted, Updated, Started, Stopped, Finished, Failed or Deleted.
    #[serde(rename = "type")]
    pub kind: String,
    /// Who: a key's id, `jwt:<sub>`, or `service`.
    pub actor: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A page of the log.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Events {
    pub events: Vec<EventOut>,
}

impl From<Event> for EventOut {
    fn from(e: Event) -> EventOut {
        let (kind, error) = match e.kind {
            EventKind::PipelineSubmitted { .. } => ("PipelineSubmitted", None),
            EventKind::Updated { .. } => ("Updated", None),
            EventKind::Started => ("Started", None),
            EventKind::Stopped => ("Stopped", None),
            EventKind::Finished => ("Finished", None),
            EventKind::Failed { error } => ("Failed", Some(error)),
            EventKind::Deleted => ("Deleted", None),
        };
        EventOut {
            seq: e.seq,
            pipeline: e.pipeline,
            version: e.version,
            kind: kind.to_string(),
            actor: e.actor,
            at: e.at,
            error,
        }
    }
}

/// Read the event log.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(Page),
    responses((status = 200, body = Events), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn events(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    page: std::result::Result<Query<Page>, QueryRejection>,
) -> Reply {
    allow(&caller, Role::Viewer)?;
    let page = query_of(page)?;
    let limit = page.limit.unwrap_or(1000).clamp(1, 10_000) as usize;
    let events = s
        .store
        .after(page.after.unwrap_or(0), limit)
        .await
        .map_err(|e| failure(&e))?;
    Ok(typed(
        StatusCode::OK,
        &Events {
            events: events.into_iter().map(EventOut::from).collect(),
        },
    ))
}
