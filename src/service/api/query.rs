//! The query side: read-only SQL or a JSON pipeline over the tables the settings register
//! (`GET /v1/tables` lists them), and a rule set's decisions for posted documents. Answers
//! are capped at `limit` rows (10 000 unless given), read as they stream, so a large result
//! costs no more than its first rows.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use datafusion::execution::context::SQLOptions;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::pipelines::body_of;
use super::{Answer, ErrorBody, Reply, bad_request, failure, json_body, typed};
use crate::dsl::Pipeline;
use crate::rules::{Options, RuleEngine, lint};
use crate::service::auth::{Caller, allow};
use crate::service::keys::Role;
use crate::service::state::Service;
use crate::{Engine, Error};

/// A query: `sql`, or `pipeline` over `table`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// A SQL query (read-only: no DDL, DML or SET).
    pub sql: Option<String>,
    /// JSON stages, run over `table`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub pipeline: Option<Value>,
    pub table: Option<String>,
    /// At most this many rows (10 000 unless given).
    pub limit: Option<u32>,
}

/// A query's rows.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Rows {
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Value>,
    /// True when the query had more rows than `limit`.
    pub truncated: bool,
}

/// A table of the query side.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TableOut {
    pub name: String,
    pub path: String,
    pub format: Option<String>,
}

/// The tables.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Tables {
    pub tables: Vec<TableOut>,
}

/// Errors of a query are the caller's unless a system failed or Fluxion has a bug: a query
/// that does not parse, names a missing column or divides by zero is a 400.
fn query_failure(e: Error) -> Answer {
    use datafusion::error::DataFusionError as D;
    let e = match e {
        Error::DataFusion(d) => match d.find_root() {
            D::SQL(..)
            | D::Plan(_)
            | D::SchemaError(..)
            | D::NotImplemented(_)
            | D::Execution(_)
            | D::ArrowError(..) => Error::config("query", d.to_string()),
            _ => Error::DataFusion(d),
        },
        other => other,
    };
    failure(&e)
}

/// Run read-only SQL or a JSON pipeline over the registered tables.
#[utoipa::path(post, path = "/v1/query", tag = "query", request_body = QueryRequest,
    responses((status = 200, body = Rows), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn query(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    allow(&caller, Role::Viewer)?;
    let q: QueryRequest = json_body(&body_of(body)?)?;
    let limit = q.limit.unwrap_or(10_000).clamp(1, 1_000_000) as usize;
    let df = match (&q.sql, &q.pipeline) {
        (Some(sql), None) => {
            let options = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            s.tables
                .context()
                .sql_with_options(sql, options)
                .await
                .map_err(|e| query_failure(e.into()))?
        }
        (None, Some(stages)) => {
            let table = q
                .table
                .as_deref()
                .ok_or_else(|| bad_request("table: name the table the pipeline reads"))?;
            if !s.config.tables.contains_key(table) {
                return Err(bad_request(format!(
                    "table: no table \"{table}\" (GET /v1/tables lists them)"
                )));
            }
            let pipeline = Pipeline::from_value(stages).map_err(|e| failure(&e))?;
            s.tables
                .pipeline(table, &pipeline)
                .await
                .map_err(query_failure)?
        }
        _ => return Err(bad_request("give \"sql\", or \"pipeline\" with \"table\"")),
    };
    let mut stream = df
        .limit(0, Some(limit + 1))
        .map_err(|e| query_failure(e.into()))?
        .execute_stream()
        .await
        .map_err(|e| query_failure(e.into()))?;
    let mut batches = Vec::new();
    let mut rows = 0;
    while rows <= limit {
        match stream.try_next().await {
            Ok(Some(b)) => {
                rows += b.num_rows();
                batches.push(b);
            }
            Ok(None) => break,
            Err(e) => return Err(query_failure(e.into())),
        }
    }
    let mut documents = crate::document::encode::to_documents(&batches).map_err(|e| failure(&e))?;
    let truncated = documents.len() > limit;
    documents.truncate(limit);
    Ok(typed(
        StatusCode::OK,
        &Rows {
            rows: documents,
            truncated,
        },
    ))
}

/// List the tables queries can read.
#[utoipa::path(get, path = "/v1/tables", tag = "query",
    responses((status = 200, body = Tables), (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn tables(State(s): State<Arc<Service>>, Extension(caller): Extension<Caller>) -> Reply {
    allow(&caller, Role::Viewer)?;
    let tables = s
        .config
        .tables
        .iter()
        .map(|(name, t)| TableOut {
            name: name.clone(),
            path: t.path.clone(),
            format: t.format.clone(),
        })
        .collect();
    Ok(typed(StatusCode::OK, &Tables { tables }))
}

/// Documents to judge with a rule set.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvaluateRequest {
    /// A rule set, or `id@version` / `id@^1.2` in the service's rule registry.
    #[schema(value_type = Object)]
    pub rule_set: Value,
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<Value>,
    /// evaluate (which rules pass) or execute (also run their actions).
    pub mode: Option<String>,
    /// Say for every rule and condition what it found.
    #[serde(default)]
    pub trace: bool,
}

/// A rule set's decisions, one per document in order.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decisions {
    /// id@version of the rule set.
    pub rule_set: String,
    #[schema(value_type = Vec<Object>)]
    pub decisions: Vec<Value>,
}

/// Evaluate a rule set over posted documents.
#[utoipa::path(post, path = "/v1/rules/evaluate", tag = "rules", request_body = EvaluateRequest,
    responses((status = 200, body = Decisions), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn evaluate(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    allow(&caller, Role::Viewer)?;
    let request: EvaluateRequest = json_body(&body_of(body)?)?;
    let execute = match request.mode.as_deref() {
        None | Some("evaluate") => false,
        Some("execute") => true,
        Some(other) => {
            return Err(bad_request(format!(
                "mode: \"{other}\" is not evaluate or execute"
            )));
        }
    };
    let written = match &request.rule_set {
        Value::String(reference) => {
            let registry = s.rules.as_ref().ok_or_else(|| {
                bad_request("ruleSet: the service has no rule registry; post the rule set itself")
            })?;
            let (_, v) = registry.get(reference).map_err(|e| failure(&e))?;
            v.clone()
        }
        v => v.clone(),
    };
    let (parsed, lints) = lint::lint(&written, &[]);
    let parsed = match parsed {
        Some(p) if !lint::has_errors(&lints) => p,
        _ => {
            let first = lints
                .iter()
                .find(|l| l.severity == crate::rules::Severity::Error)
                .map(ToString::to_string)
                .unwrap_or_else(|| "not a rule set".into());
            return Err(bad_request(format!("ruleSet: {first}")));
        }
    };
    if request.documents.iter().any(|d| !d.is_object()) {
        return Err(bad_request("documents: expected JSON objects"));
    }
    let engine = Engine::new();
    let mut lines = Vec::new();
    for d in &request.documents {
        lines.extend(serde_json::to_vec(d).unwrap_or_default());
        lines.push(b'\n');
    }
    let rules = RuleEngine::new(parsed);
    let label = rules.rule_set().label();
    if request.documents.is_empty() {
        return Ok(typed(
            StatusCode::OK,
            &Decisions {
                rule_set: label,
                decisions: vec![],
            },
        ));
    }
    engine
        .register_jsonl("input", &lines)
        .map_err(|e| failure(&e))?;
    let decisions = if execute {
        rules.execute(&engine, "input", request.trace).await
    } else {
        let options = Options {
            execute: false,
            trace: request.trace,
        };
        rules.evaluate(&engine, "input", &options).await
    }
    .map_err(query_failure)?;
    Ok(typed(
        StatusCode::OK,
        &Decisions {
            rule_set: label,
            decisions: decisions.iter().map(|d| d.to_json()).collect(),
        },
    ))
}
