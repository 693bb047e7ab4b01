//! `POST /v1/keys`: an admin makes an API key for a role, optionally with its own rate
//! limit. The key is in this answer only; the service keeps its hash.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::pipelines::body_of;
use super::{ErrorBody, Reply, bad_request, failure, json_body, typed};
use crate::service::auth::{Caller, allow};
use crate::service::config::RateLimit;
use crate::service::keys::Role;
use crate::service::state::Service;

/// What key to make.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyRequest {
    /// viewer, operator or admin.
    pub role: String,
    /// The key's own limit (the service's default when absent).
    #[schema(value_type = Option<Object>)]
    pub rate_limit: Option<RateLimit>,
}

/// A new key.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyCreated {
    /// The key: shown this once.
    pub key: String,
    /// Its id, as the event log names the caller.
    pub id: String,
    pub role: String,
}

/// Make an API key.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = KeyRequest,
    responses((status = 201, body = KeyCreated), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    allow(&caller, Role::Admin)?;
    let request: KeyRequest = json_body(&body_of(body)?)?;
    let role = Role::parse(&request.role).map_err(|e| failure(&e))?;
    if let Some(r) = request.rate_limit
        && (r.per_second == 0 || r.burst == 0)
    {
        return Err(bad_request(
            "rateLimit: perSecond and burst must be at least 1",
        ));
    }
    let (key, stored) = s
        .create_key(role, request.rate_limit)
        .map_err(|e| failure(&e))?;
    Ok(typed(
        StatusCode::CREATED,
        &KeyCreated {
            key,
            id: stored.id,
            role: role.name().into(),
        },
    ))
}
