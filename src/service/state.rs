//! The service's state and its commands: the event store, the projection folded from it,
//! the keys, and the pipelines running in this process.
//!
//! Every command appends its event first and acts second, so the log never misses a change
//! the service made. Appends go one at a time (the projection folds them in log order, and a
//! command's check against the projection cannot race another command). At start the
//! projection is the latest snapshot with the events after it folded in, and every pipeline
//! it shows running starts again from its own checkpoint (one under the data directory unless
//! its job names another).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Value, json};

use super::auth::{Caller, JwtCheck, Limits};
use super::config::Config;
use super::events::{Event, EventKind, Projection, Snapshot};
use super::keys::{Keys, Role};
use super::observe::HttpMetrics;
use super::store::{self, EventStore};
use crate::job::Job;
use crate::rules::Registry;
use crate::runtime::builder::Stream;
use crate::runtime::metrics::PrometheusMetrics;
use crate::{Engine, Error, Result};

/// The environment variable whose key becomes an admin key on the first start.
pub const BOOTSTRAP_KEY: &str = "FLUXION_BOOTSTRAP_ADMIN_KEY";

/// A running pipeline: its stop flag and whether a stop was asked for.
struct Running {
    stop: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
}

/// What the writer of the log keeps: every subject's version (for snapshots) and how many
/// events came since the last snapshot.
#[derive(Default)]
struct Writer {
    versions: BTreeMap<String, u64>,
    since_snapshot: u64,
}

/// The service's state.
pub struct Service {
    pub(super) config: Config,
    data_dir: PathBuf,
    pub(super) store: Box<dyn EventStore>,
    writer: tokio::sync::Mutex<Writer>,
    projection: RwLock<Projection>,
    keys: Mutex<Keys>,
    jwt: Option<JwtCheck>,
    pub(super) limits: Limits,
    running: Mutex<BTreeMap<String, Running>>,
    /// Every pipeline's streaming metrics, labelled by pipeline.
    pub(super) pipeline_metrics: Arc<PrometheusMetrics>,
    pub(super) http: HttpMetrics,
    /// The tables of the query side, registered once.
    pub(super) tables: Engine,
    pub(super) rules: Option<Registry>,
    /// The last pipeline list served, as (projection seq, metrics generation, JSON): reads
    /// of an unchanged list send the same bytes again instead of building them anew.
    pub(super) list_cache: Mutex<Option<(u64, u64, bytes::Bytes)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the whole service down with a poisoned lock.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Service {
    /// Opens the service's state: the event store, the keys (with the bootstrap key on a
    /// first start), the projection, the query side's tables.
    pub async fn open(config: Config, data_dir: PathBuf) -> Result<Arc<Service>> {
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| Error::external(format!("creating {}", data_dir.display()), e))?;
        let store = store::open(config.event_store.as_deref(), &data_dir).await?;
        let mut keys = Keys::open(&data_dir)?;
        if keys.is_empty()
            && let Ok(k) = std::env::var(BOOTSTRAP_KEY)
        {
            keys.add(&k, Role::Admin)?;
        }
        let (snapshot, tail) = store.load().await?;
        let (start, mut versions) = snapshot
            .map(|s| (s.projection, s.versions))
            .unwrap_or_default();
        for e in &tail {
            versions.insert(e.pipeline.clone(), e.version);
        }
        let projection = Projection::from(start, &tail);
        let tables = Engine::new();
        for (name, spec) in &config.tables {
            let format = spec
                .format
                .as_deref()
                .map(crate::connect::Format::from_name)
                .transpose()?;
            tables
                .register_file(name, &spec.path, format)
                .await
                .map_err(|e| Error::config(format!("tables.{name}"), e.to_string()))?;
        }
        let rules = config.rules.as_ref().map(Registry::open).transpose()?;
        let jwt = config.jwt.as_ref().map(JwtCheck::new).transpose()?;
        Ok(Arc::new(Service {
            limits: Limits::new(config.rate_limit),
            config,
            data_dir,
            store,
            writer: tokio::sync::Mutex::new(Writer {
                versions,
                since_snapshot: tail.len() as u64,
            }),
            projection: RwLock::new(projection),
            keys: Mutex::new(keys),
            jwt,
            running: Mutex::new(BTreeMap::new()),
            pipeline_metrics: Arc::new(PrometheusMetrics::default()),
            http: HttpMetrics::default(),
            tables,
            rules,
            list_cache: Mutex::new(None),
        }))
    }

    /// Reads the projection.
    pub fn projection(&self) -> std::sync::RwLockReadGuard<'_, Projection> {
        self.projection.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The caller a bearer credential names: an API key, else a JWT (when configured).
    pub fn caller(&self, token: &str) -> Option<Caller> {
        if let Some(k) = lock(&self.keys).check(token) {
            return Some(Caller {
                id: k.id.clone(),
                role: k.role,
                rate: k.rate,
            });
        }
        self.jwt.as_ref()?.check(token)
    }

    /// Makes an API key.
    pub fn create_key(
        &self,
        role: Role,
        rate: Option<super::config::RateLimit>,
    ) -> Result<(String, super::keys::StoredKey)> {
        lock(&self.keys).create(role, rate)
    }

    /// Appends an event about `subject` once `check` passes against the projection, and
    /// folds it in; a snapshot is saved every `snapshotEvery` events.
    pub async fn record(
        &self,
        subject: &str,
        expected: Option<u64>,
        kind: EventKind,
        actor: &str,
        check: impl FnOnce(&Projection) -> Result<()>,
    ) -> Result<Event> {
        let mut writer = self.writer.lock().await;
        check(&self.projection())?;
        let event = self.store.append(subject, expected, kind, actor).await?;
        writer.versions.insert(subject.to_string(), event.version);
        self.projection
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(&event);
        writer.since_snapshot += 1;
        if writer.since_snapshot >= self.config.snapshot_every {
            let snapshot = Snapshot {
                projection: self.projection().clone(),
                versions: writer.versions.clone(),
            };
            // A snapshot only shortens the next start: failing to save one is not the
            // command's failure.
            match self.store.save_snapshot(&snapshot).await {
                Ok(()) => writer.since_snapshot = 0,
                Err(e) => tracing::warn!(error = %e, "saving a snapshot of the event log failed"),
            }
        }
        Ok(event)
    }

    /// Records that pipeline `id` failed, by the service.
    pub async fn record_failure(&self, id: &str, error: &Error) {
        let kind = EventKind::Failed {
            error: error.to_string(),
        };
        if let Err(e) = self.record(id, None, kind, "service", exists(id)).await {
            tracing::error!(pipeline = %id, error = %e, "recording a failure failed");
        }
    }

    /// Starts every pipeline the log shows running (after a restart of the service).
    pub async fn resume(self: &Arc<Self>) {
        let running: Vec<String> = self
            .projection()
            .running()
            .iter()
            .map(|p| p.id.clone())
            .collect();
        for id in running {
            if let Err(e) = self.launch(&id).await {
                self.record_failure(&id, &e).await;
            }
        }
    }

    /// The job of pipeline `id` as it runs: named `id`, with its checkpoint under the data
    /// directory unless it names one.
    pub fn job_of(&self, id: &str, job: &Value) -> Result<Job> {
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
        parsed.name = Some(id.to_string());
        Ok(parsed)
    }

    /// True while pipeline `id` runs in this process.
    pub fn is_running(&self, id: &str) -> bool {
        lock(&self.running).contains_key(id)
    }

    /// Runs pipeline `id`; when it ends by itself the log says how.
    pub async fn launch(self: &Arc<Self>, id: &str) -> Result<()> {
        let job = self
            .projection()
            .pipelines
            .get(id)
            .map(|v| v.job.clone())
            .ok_or_else(|| Error::config(id, "no such pipeline"))?;
        let job = self.job_of(id, &job)?;
        let handle = Stream::from_job(&job)
            .await?
            .listener(self.pipeline_metrics.clone())
            .on_current_runtime()
            .start()?;
        let stopping = Arc::new(AtomicBool::new(false));
        lock(&self.running).insert(
            id.to_string(),
            Running {
                stop: handle.stop_flag(),
                stopping: stopping.clone(),
            },
        );
        let service = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let result = handle.wait().await;
            lock(&service.running).remove(&id);
            // A stop asked for is in the log already.
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            match result {
                Ok(_) => {
                    let r = service
                        .record(&id, None, EventKind::Finished, "service", exists(&id))
                        .await;
                    if let Err(e) = r {
                        tracing::error!(pipeline = %id, error = %e, "recording the end of a pipeline failed");
                    }
                }
                Err(e) => service.record_failure(&id, &e).await,
            }
        });
        Ok(())
    }

    /// Starts pipeline `id` (recorded, then launched; a launch that fails is recorded too).
    pub async fn start(
        self: &Arc<Self>,
        id: &str,
        expected: Option<u64>,
        actor: &str,
    ) -> Result<Event> {
        let event = self
            .record(id, expected, EventKind::Started, actor, |p| {
                exists(id)(p)?;
                if self.is_running(id) {
                    return Err(Error::Conflict {
                        context: format!("pipeline {id}"),
                        message: "it is running".into(),
                    });
                }
                Ok(())
            })
            .await?;
        if let Err(e) = self.launch(id).await {
            self.record_failure(id, &e).await;
            return Err(e);
        }
        Ok(event)
    }

    /// Stops pipeline `id` if it runs and waits until it has (the batch in hand finishes and
    /// checkpoints).
    pub async fn halt(&self, id: &str) {
        if let Some(r) = lock(&self.running).get(id) {
            r.stopping.store(true, Ordering::SeqCst);
            r.stop.store(true, Ordering::SeqCst);
        }
        while self.is_running(id) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Stops every pipeline (the service is stopping; the log still shows them running, so
    /// they resume when it starts again).
    pub async fn halt_all(&self) {
        let ids: Vec<String> = lock(&self.running).keys().cloned().collect();
        for id in &ids {
            if let Some(r) = lock(&self.running).get(id) {
                r.stopping.store(true, Ordering::SeqCst);
                r.stop.store(true, Ordering::SeqCst);
            }
        }
        for id in &ids {
            self.halt(id).await;
        }
    }

    /// Clears pipeline `id`'s checkpoint store (an update that changes its state's shape).
    pub async fn reset_checkpoint(&self, id: &str, job: &Value) -> Result<()> {
        let job = self.job_of(id, job)?;
        if let Some(cp) = &job.checkpoint {
            crate::runtime::state::checkpoint::open_store(&cp.store)?
                .clear()
                .await?;
        }
        Ok(())
    }

    /// How many pipelines run in this process.
    pub fn running_count(&self) -> usize {
        lock(&self.running).len()
    }
}

/// A check for [`Service::record`]: pipeline `id` exists.
pub fn exists(id: &str) -> impl FnOnce(&Projection) -> Result<()> + '_ {
    move |p| {
        if p.pipelines.contains_key(id) {
            Ok(())
        } else {
            Err(Error::NotFound(format!("no pipeline \"{id}\"")))
        }
    }
}
