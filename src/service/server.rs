//! The service's HTTP server: the `/v1` API over the event log, its projection and the
//! running pipelines, behind API keys.
//!
//! Every command appends its event first and acts second, so the log never misses a change
//! the service made; at start the projection is folded from the log and every pipeline it
//! shows as running starts again, from its own checkpoint (each pipeline gets one under the
//! data directory unless its job names another).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::events::{EventKind, FileEventStore, Projection, Status};
use super::keys::{Keys, Role, StoredKey};
use crate::job::Job;
use crate::runtime::builder::Stream;
use crate::runtime::metrics::PrometheusMetrics;
use crate::{Error, Result};

/// The environment variable whose key becomes an admin key on the first start.
pub const BOOTSTRAP_KEY: &str = "FLUXION_BOOTSTRAP_ADMIN_KEY";

/// A running pipeline: its stop flag, metrics, and whether a stop was asked for.
struct Running {
    stop: Arc<AtomicBool>,
    metrics: Arc<PrometheusMetrics>,
    stopping: Arc<AtomicBool>,
}

/// The service's state.
pub struct Service {
    data_dir: PathBuf,
    store: Mutex<FileEventStore>,
    projection: Mutex<Projection>,
    keys: Mutex<Keys>,
    running: Mutex<BTreeMap<String, Running>>,
}

/// An answer of the API: a status and a JSON body.
type Answer = (StatusCode, axum::Json<Value>);

fn answer(status: StatusCode, body: Value) -> Answer {
    (status, axum::Json(body))
}

/// The API's answer for `e`: 400 for what the caller got wrong, 409 for a conflict, 500 else.
fn failure(e: &Error) -> Answer {
    let status = match e {
        Error::Conflict { .. } => StatusCode::CONFLICT,
        e if e.is_user_error() => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let text = e
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    answer(status, json!({"error": text}))
}

fn not_found(id: &str) -> Answer {
    answer(
        StatusCode::NOT_FOUND,
        json!({"error": format!("no pipeline \"{id}\"")}),
    )
}

impl Service {
    /// Opens the service's state in `data_dir`: the log, the keys (with the bootstrap key on a
    /// first start), the projection.
    pub fn open(data_dir: &Path) -> Result<Arc<Service>> {
        let store = FileEventStore::open(data_dir)?;
        let mut keys = Keys::open(data_dir)?;
        if keys.is_empty()
            && let Ok(k) = std::env::var(BOOTSTRAP_KEY)
        {
            keys.add(&k, Role::Admin)?;
        }
        let projection = Projection::of(store.after(0));
        Ok(Arc::new(Service {
            data_dir: data_dir.to_path_buf(),
            store: Mutex::new(store),
            projection: Mutex::new(projection),
            keys: Mutex::new(keys),
            running: Mutex::new(BTreeMap::new()),
        }))
    }

    fn lock<'a, T>(m: &'a Mutex<T>) -> std::sync::MutexGuard<'a, T> {
        // A panic elsewhere must not take the whole service down with a poisoned lock.
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an event and folds it into the projection.
    fn record(
        &self,
        pipeline: &str,
        expected: Option<u64>,
        kind: EventKind,
        actor: &str,
    ) -> Result<u64> {
        let event = Self::lock(&self.store).append(pipeline, expected, kind, actor)?;
        Self::lock(&self.projection).apply(&event);
        Ok(event.version)
    }

    /// Starts every pipeline the log shows running (after a restart of the service).
    pub async fn resume(self: &Arc<Self>) {
        let running: Vec<String> = Self::lock(&self.projection)
            .running()
            .iter()
            .map(|p| p.id.clone())
            .collect();
        for id in running {
            if let Err(e) = self.launch(&id).await {
                let _ = self.record(
                    &id,
                    None,
                    EventKind::Failed {
                        error: e.to_string(),
                    },
                    "service",
                );
            }
        }
    }

    /// The job of pipeline `id` as it runs: its checkpoint under the data directory unless
    /// it names one.
    fn job_of(&self, id: &str, job: &Value) -> Result<Job> {
        let mut job = job.clone();
        if job.get("checkpoint").is_none()
            && let Value::Object(m) = &mut job
        {
            let dir = self.data_dir.join("pipelines").join(id).join("checkpoint");
            m.insert(
                "checkpoint".into(),
                json!({"store": dir.display().to_string()}),
            );
        }
        let mut parsed = Job::from_json_str(&job.to_string(), id)?;
        if parsed.name.is_none() {
            parsed.name = Some(id.to_string());
        }
        Ok(parsed)
    }

    /// Runs pipeline `id`; when it ends by itself the log says how.
    async fn launch(self: &Arc<Self>, id: &str) -> Result<()> {
        let job = {
            let p = Self::lock(&self.projection);
            let view = p
                .pipelines
                .get(id)
                .ok_or_else(|| Error::config(id, "no such pipeline"))?;
            view.job.clone()
        };
        let job = self.job_of(id, &job)?;
        let handle = Stream::from_job(&job).await?.on_current_runtime().start()?;
        let stopping = Arc::new(AtomicBool::new(false));
        Self::lock(&self.running).insert(
            id.to_string(),
            Running {
                stop: handle.stop_flag(),
                metrics: handle.registry(),
                stopping: stopping.clone(),
            },
        );
        let service = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let result = handle.wait().await;
            Self::lock(&service.running).remove(&id);
            // A stop asked for is in the log already.
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            let kind = match result {
                Ok(_) => EventKind::Finished,
                Err(e) => EventKind::Failed {
                    error: e.to_string(),
                },
            };
            if let Err(e) = service.record(&id, None, kind, "service") {
                tracing::error!(pipeline = %id, error = %e, "recording the end of a pipeline failed");
            }
        });
        Ok(())
    }

    fn view(&self, id: &str) -> Option<Value> {
        let p = Self::lock(&self.projection);
        let v = p.pipelines.get(id)?;
        let running = Self::lock(&self.running);
        let totals = running.get(id).and_then(|r| r.metrics.totals(id));
        let counters = totals.as_ref().map(|t| {
            json!({"batches": t.batches, "input": t.input, "output": t.output,
                   "deadLettered": t.dead_lettered, "checkpoints": t.checkpoints})
        });
        let lag = totals.as_ref().map(|t| t.lag).filter(|l| l.is_finite());
        Some(json!({
            "id": v.id, "version": v.version, "status": v.status,
            "lastError": v.last_error, "counters": counters, "lag": lag,
        }))
    }
}

/// The caller's key, put on the request by [`authenticate`].
#[derive(Clone)]
struct Caller(StoredKey);

async fn authenticate(State(s): State<Arc<Service>>, mut req: Request, next: Next) -> Response {
    let key = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let stored = key.and_then(|k| Service::lock(&s.keys).check(k).cloned());
    match stored {
        Some(k) => {
            req.extensions_mut().insert(Caller(k));
            next.run(req).await
        }
        None => answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "a valid API key is needed: Authorization: Bearer <key>"}),
        )
        .into_response(),
    }
}

/// Refuses the caller unless its role allows `needed`.
fn allow(caller: &Caller, needed: Role) -> std::result::Result<(), Answer> {
    if caller.0.role.allows(needed) {
        Ok(())
    } else {
        Err(answer(
            StatusCode::FORBIDDEN,
            json!({"error": format!("this needs the {needed:?} role", needed = needed).to_lowercase()}),
        ))
    }
}

type Reply = std::result::Result<Answer, Answer>;

async fn submit(
    State(s): State<Arc<Service>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: axum::body::Bytes,
) -> Reply {
    allow(&caller, Role::Admin)?;
    let job: Value = serde_json::from_slice(&body).map_err(|e| {
        answer(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("the body is not JSON: {e}")}),
        )
    })?;
    let id = match job.get("name").and_then(Value::as_str) {
        Some(n)
            if !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            n.to_string()
        }
        Some(_) => {
            return Err(answer(
                StatusCode::BAD_REQUEST,
                json!({"error": "name: letters, digits, '-' and '_' only"}),
            ));
        }
        None => format!("p-{}", Service::lock(&s.store).after(0).len() + 1),
    };
    s.job_of(&id, &job).map_err(|e| failure(&e))?;
    let version = s
        .record(
            &id,
            Some(0),
            EventKind::PipelineSubmitted { job },
            &caller.0.id,
        )
        .map_err(|e| failure(&e))?;
    Ok(answer(
        StatusCode::CREATED,
        json!({"id": id, "version": version}),
    ))
}

async fn list(
    State(s): State<Arc<Service>>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Reply {
    allow(&caller, Role::Viewer)?;
    let ids: Vec<String> = Service::lock(&s.projection)
        .pipelines
        .keys()
        .cloned()
        .collect();
    let views: Vec<Value> = ids.iter().filter_map(|id| s.view(id)).collect();
    Ok(answer(StatusCode::OK, json!({"pipelines": views})))
}

async fn one(
    State(s): State<Arc<Service>>,
    axum::Extension(caller): axum::Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Reply {
    allow(&caller, Role::Viewer)?;
    s.view(&id)
        .map(|v| answer(StatusCode::OK, v))
        .ok_or_else(|| not_found(&id))
}

/// The version a command was made against (`If-Match`), if the caller gave one.
fn if_match(headers: &HeaderMap) -> std::result::Result<Option<u64>, Answer> {
    match headers.get("if-match") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .map(|t| t.trim_matches('"'))
            .and_then(|t| t.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                answer(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "If-Match: a pipeline version"}),
                )
            }),
    }
}

async fn command(
    State(s): State<Arc<Service>>,
    axum::Extension(caller): axum::Extension<Caller>,
    UrlPath((id, action)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Reply {
    allow(&caller, Role::Operator)?;
    let expected = if_match(&headers)?;
    let status = Service::lock(&s.projection)
        .pipelines
        .get(&id)
        .map(|p| p.status)
        .ok_or_else(|| not_found(&id))?;
    let is_running = Service::lock(&s.running).contains_key(&id);
    match action.as_str() {
        "start" => {
            if is_running {
                return Err(answer(
                    StatusCode::CONFLICT,
                    json!({"error": format!("pipeline {id} is running")}),
                ));
            }
            let version = s
                .record(&id, expected, EventKind::Started, &caller.0.id)
                .map_err(|e| failure(&e))?;
            if let Err(e) = s.launch(&id).await {
                let _ = s.record(
                    &id,
                    None,
                    EventKind::Failed {
                        error: e.to_string(),
                    },
                    "service",
                );
                return Err(failure(&e));
            }
            Ok(answer(
                StatusCode::OK,
                json!({"id": id, "version": version, "status": Status::Running}),
            ))
        }
        "stop" => {
            let version = s
                .record(&id, expected, EventKind::Stopped, &caller.0.id)
                .map_err(|e| failure(&e))?;
            stop(&s, &id).await;
            let _ = status;
            Ok(answer(
                StatusCode::OK,
                json!({"id": id, "version": version, "status": Status::Stopped}),
            ))
        }
        other => Err(answer(
            StatusCode::NOT_FOUND,
            json!({"error": format!("unknown command \"{other}\" (start, stop)")}),
        )),
    }
}

/// Stops pipeline `id` if it runs and waits until it has (the batch in hand finishes and
/// checkpoints).
async fn stop(s: &Arc<Service>, id: &str) {
    if let Some(r) = Service::lock(&s.running).get(id) {
        r.stopping.store(true, Ordering::SeqCst);
        r.stop.store(true, Ordering::SeqCst);
    }
    while Service::lock(&s.running).contains_key(id) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn delete(
    State(s): State<Arc<Service>>,
    axum::Extension(caller): axum::Extension<Caller>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Reply {
    allow(&caller, Role::Admin)?;
    let expected = if_match(&headers)?;
    if !Service::lock(&s.projection).pipelines.contains_key(&id) {
        return Err(not_found(&id));
    }
    s.record(&id, expected, EventKind::Deleted, &caller.0.id)
        .map_err(|e| failure(&e))?;
    stop(&s, &id).await;
    Ok(answer(StatusCode::OK, json!({"id": id, "deleted": true})))
}

#[derive(serde::Deserialize)]
struct After {
    after: Option<u64>,
}

async fn events(
    State(s): State<Arc<Service>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(q): Query<After>,
) -> Reply {
    allow(&caller, Role::Viewer)?;
    let store = Service::lock(&s.store);
    let events: Vec<Value> = store
        .after(q.after.unwrap_or(0))
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            // Job files may hold secrets: the log's API shows that a job changed, not the job.
            if let Some(m) = v.as_object_mut() {
                m.remove("job");
            }
            v
        })
        .collect();
    Ok(answer(StatusCode::OK, json!({"events": events})))
}

async fn create_key(
    State(s): State<Arc<Service>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: axum::body::Bytes,
) -> Reply {
    allow(&caller, Role::Admin)?;
    let role = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("role").and_then(Value::as_str).map(str::to_string))
        .ok_or_else(|| {
            answer(
                StatusCode::BAD_REQUEST,
                json!({"error": "expected {\"role\": \"viewer\" | \"operator\" | \"admin\"}"}),
            )
        })?;
    let role = Role::parse(&role).map_err(|e| failure(&e))?;
    let (key, stored) = Service::lock(&s.keys)
        .create(role)
        .map_err(|e| failure(&e))?;
    Ok(answer(
        StatusCode::CREATED,
        json!({"key": key, "id": stored.id, "role": stored.role}),
    ))
}

async fn readyz(State(s): State<Arc<Service>>) -> Answer {
    let running = Service::lock(&s.running).len();
    let seq = Service::lock(&s.projection).seq;
    answer(
        StatusCode::OK,
        json!({"status": "ready", "version": env!("CARGO_PKG_VERSION"),
               "checks": {"eventStore": format!("ok ({seq} events)"), "pipelines": format!("{running} running")}}),
    )
}

/// The service's routes.
pub fn router(service: Arc<Service>) -> Router {
    let api = Router::new()
        .route("/v1/pipelines", post(submit).get(list))
        .route("/v1/pipelines/{id}", get(one).delete(delete))
        .route("/v1/pipelines/{id}/{action}", post(command))
        .route("/v1/events", get(events))
        .route("/v1/keys", post(create_key))
        .route_layer(middleware::from_fn_with_state(
            service.clone(),
            authenticate,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(api)
        .layer(axum::extract::DefaultBodyLimit::max(8 * 1024 * 1024))
        .with_state(service)
}

/// Runs the service on `listen` with its state in `data_dir` until the process is stopped.
pub async fn serve(listen: &str, data_dir: &Path) -> Result<()> {
    let service = Service::open(data_dir)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::external(format!("listening on {listen}"), e))?;
    service.resume().await;
    tracing::info!(%listen, "fluxion serve is listening");
    let app = router(service.clone());
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::external("serving", e))?;
    // Running pipelines stop with the service and resume when it starts again: the log
    // still shows them running.
    let ids: Vec<String> = Service::lock(&service.running).keys().cloned().collect();
    for id in ids {
        if let Some(r) = Service::lock(&service.running).get(&id) {
            r.stopping.store(true, Ordering::SeqCst);
            r.stop.store(true, Ordering::SeqCst);
        }
    }
    while !Service::lock(&service.running).is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}
