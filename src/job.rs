//! Job files: a source, a pipeline (JSON stages or SQL) and a sink in one JSON document.
//!
//! ```json
//! {"name": "orders-ltv",
//!  "source": {"type": "file", "path": "data/orders.jsonl", "format": "jsonl"},
//!  "pipeline": [{"$match": {"status": "PAID"}}],
//!  "sink": {"type": "stdout"}}
//! ```
//! Relative paths are resolved against the job file's directory, so a job runs the same from
//! any working directory. The connector parts (`source`, `sink`, `deadLetter`) are
//! [`connect::config`](crate::connect::config)'s; the runtime applies `runtime` and
//! `errorPolicy` ([`runtime::builder`](crate::runtime::builder)).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use std::sync::Arc;

use crate::connect::config::{SinkConfig, SourceConfig};
use crate::connect::file::FileOptions;
use crate::connect::http_source::HttpSourceConfig;
use crate::document::declared::parse_schema;
use crate::dsl::Pipeline;
use crate::{Error, Result};

/// A parsed job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The job's name (in logs, errors and metrics).
    pub name: Option<String>,
    pub source: SourceConfig,
    /// JSON stages; exclusive with `sql`.
    pub pipeline: Option<Value>,
    /// A SQL query over the source's table; exclusive with `pipeline`.
    pub sql: Option<String>,
    #[serde(default)]
    pub sink: SinkConfig,
    /// Streaming: where checkpoints go (`{"store": "<directory>"}`).
    pub checkpoint: Option<CheckpointConfig>,
    /// Streaming: runtime settings.
    pub runtime: Option<RuntimeConfig>,
    /// Streaming: what happens on failures and to unreadable records — `"failFast"`
    /// (default), `"retry"`, `"skip"`, `"deadLetter"`, or `{"retry": {…}, "then": …}`
    /// (see `runtime::policy::error_policy`).
    #[serde(rename = "errorPolicy")]
    pub error_policy: Option<Value>,
    /// Streaming: where unreadable records and refused batches go: any sink (a JSON-lines
    /// file, a Kafka topic, …).
    #[serde(rename = "deadLetter")]
    pub dead_letter: Option<SinkConfig>,
    /// Named connections the enrich operators use (`{"crm": {"type": "http", …}}`).
    #[serde(default)]
    pub connections: std::collections::BTreeMap<String, crate::enrich::connections::Connection>,
    /// A directory of rule sets, where `$rules` stages look `id@version` up.
    pub rules: Option<String>,
    /// Named sinks a document goes to instead of `sink` when its route list (`routeField`)
    /// names them: `{"review": {"type": "file", …}}`.
    #[serde(default)]
    pub routes: std::collections::BTreeMap<String, SinkConfig>,
    /// Where each output document's route names are (default `decision.routes`).
    #[serde(rename = "routeField")]
    pub route_field: Option<String>,
}

/// `checkpoint` of a streaming job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointConfig {
    /// A local directory (created if missing) or an object-store URL (`s3://…`, `file://…`).
    pub store: String,
    /// Checkpoint at most every this many milliseconds (default: after every micro-batch).
    pub interval_ms: Option<u64>,
}

/// `runtime` of a streaming job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// Documents per micro-batch (default 8192).
    pub micro_batch_size: Option<usize>,
    /// How long a micro-batch may wait for more documents after its first (default 0: it
    /// closes when the source has nothing more right now).
    pub max_batch_delay_ms: Option<u64>,
    /// Transformed micro-batches waiting for delivery (default 2).
    pub queue_capacity: Option<usize>,
    /// Micro-batches read ahead of the pipeline (default 2).
    pub source_queue_capacity: Option<usize>,
    /// Threads the job runs on (default: one per core).
    pub worker_threads: Option<usize>,
    /// When a continuous `$group` emits upserts: `"everyBatch"` (default) or `"atCheckpoint"`.
    pub group_upserts: Option<crate::runtime::exec::options::GroupUpserts>,
    /// Run each partition of the source as a task with its own checkpoint, so processes of
    /// the job sharing a consumer group (and the checkpoint store) share the partitions.
    #[serde(default)]
    pub scale_out: bool,
}

/// What a job runs: stages or SQL.
#[derive(Debug, Clone)]
pub enum Query {
    Pipeline(Pipeline),
    Sql(String),
}

/// Makes the job's `rules` directory and its `$rules` stages' rule set files relative to
/// `base` (the job file's directory).
fn rule_paths(job: &mut Value, base: &Path) {
    let fix = |v: &mut Value, file_only: bool| {
        if let Value::String(p) = v
            && !p.contains("://")
            && Path::new(p.as_str()).is_relative()
            && (!file_only || p.ends_with(".json"))
        {
            *p = base.join(p.as_str()).display().to_string();
        }
    };
    fn stages(v: &mut Value, fix: &dyn Fn(&mut Value, bool)) {
        match v {
            Value::Array(items) => items.iter_mut().for_each(|i| stages(i, fix)),
            Value::Object(m) => {
                if let Some(Value::Object(r)) = m.get_mut("$rules")
                    && let Some(rs) = r.get_mut("ruleSet")
                {
                    fix(rs, true);
                }
                m.values_mut().for_each(|i| stages(i, fix));
            }
            _ => {}
        }
    }
    if let Value::Object(m) = job {
        if let Some(r) = m.get_mut("rules") {
            fix(r, false);
        }
        if let Some(p) = m.get_mut("pipeline") {
            stages(p, &fix);
        }
    }
}

/// Makes every relative file path of a job file's JSON relative to `base` (the job file's
/// directory), before the job is sent somewhere else to run (`fluxion pipelines submit`).
pub fn resolve_json_paths(job: &mut Value, base: &Path) {
    rule_paths(job, base);
    let fix = |v: Option<&mut Value>| {
        if let Some(Value::String(p)) = v
            && !p.contains("://")
            && Path::new(p.as_str()).is_relative()
        {
            *p = base.join(p.as_str()).display().to_string();
        }
    };
    let Value::Object(m) = job else { return };
    if let Some(Value::Object(source)) = m.get_mut("source") {
        if source.get("type").and_then(Value::as_str) == Some("file") {
            fix(source.get_mut("path"));
        }
        fix(source.get_mut("logDir"));
    }
    for key in ["sink", "deadLetter"] {
        if let Some(Value::Object(sink)) = m.get_mut(key)
            && sink.get("type").and_then(Value::as_str) == Some("file")
        {
            fix(sink.get_mut("path"));
        }
    }
    if let Some(Value::Object(cp)) = m.get_mut("checkpoint") {
        fix(cp.get_mut("store"));
    }
    if let Some(Value::Object(routes)) = m.get_mut("routes") {
        for sink in routes.values_mut() {
            if let Value::Object(sink) = sink
                && sink.get("type").and_then(Value::as_str) == Some("file")
            {
                fix(sink.get_mut("path"));
            }
        }
    }
}

impl Job {
    /// Reads and checks the job file at `path`.
    pub fn load(path: &Path) -> Result<Job> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(path.display().to_string(), e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new(""));
        // Rule sets are read while the pipeline is parsed: their paths are made relative to
        // the job file first.
        let text = match serde_json::from_str::<Value>(&text) {
            Ok(mut v) => {
                rule_paths(&mut v, base);
                v.to_string()
            }
            Err(_) => text,
        };
        let mut job = Job::from_json_str(&text, &path.display().to_string())?;
        job.resolve_paths(base);
        Ok(job)
    }

    /// Parses a job from JSON text; `name` is used in errors.
    pub fn from_json_str(text: &str, name: &str) -> Result<Job> {
        let mut job: Job =
            serde_json::from_str(text).map_err(|e| Error::config(name, e.to_string()))?;
        job.resolve_connections(name)?;
        job.query_checked(name)?;
        Ok(job)
    }

    /// Gives the PostgreSQL sources and sinks that name a connection its URL, and an HTTP
    /// source its log under a local checkpoint store.
    fn resolve_connections(&mut self, name: &str) -> Result<()> {
        if let SourceConfig::Http(h) = &mut self.source
            && h.log_dir.is_none()
            && let Some(cp) = &self.checkpoint
        {
            let local = cp.store.strip_prefix("file://").unwrap_or(&cp.store);
            if !local.contains("://") {
                h.log_dir = Some(format!("{}/http-ingest", local.trim_end_matches('/')));
            }
        }
        use crate::enrich::connections::postgres_url;
        let connections = &self.connections;
        if let SourceConfig::Postgres(p) = &mut self.source
            && let Some(c) = &p.connection
        {
            p.url = Some(postgres_url(connections, c, "source.connection", name)?.to_string());
        }
        let mut sinks = vec![
            (Some(&mut self.sink), "sink".to_string()),
            (self.dead_letter.as_mut(), "deadLetter".to_string()),
        ];
        for (route, sink) in self.routes.iter_mut() {
            sinks.push((Some(sink), format!("routes.{route}")));
        }
        for (sink, what) in sinks {
            if let Some(SinkConfig::Postgres(p)) = sink
                && let Some(c) = &p.connection
            {
                p.url = Some(
                    postgres_url(connections, c, &format!("{what}.connection"), name)?.to_string(),
                );
            }
        }
        Ok(())
    }

    /// Errors when a rule set routes to a sink the job does not declare under `routes`.
    fn check_routes(&self, pipeline: &Pipeline, name: &str) -> Result<()> {
        if self.routes.is_empty() {
            return Ok(());
        }
        for stage in &pipeline.stages {
            let crate::dsl::StageKind::Rules(r) = &stage.kind else {
                continue;
            };
            for rule in &r.rule_set.rules {
                for a in rule.actions.iter().filter(|a| a.kind == "route") {
                    if let Some(Value::String(sink)) = a.params.get("sink")
                        && !self.routes.contains_key(sink)
                    {
                        return Err(Error::config(
                            name,
                            format!(
                                "{}: routes to \"{sink}\", which is not under the job's \"routes\" ({})",
                                a.path,
                                self.routes.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// True when `v` looks like a job file rather than a bare pipeline.
    pub fn is_job(v: &Value) -> bool {
        v.as_object().is_some_and(|m| m.contains_key("source"))
    }

    /// The job's query, parsed.
    pub fn query(&self) -> Result<Query> {
        self.query_checked(self.name.as_deref().unwrap_or("job"))
    }

    fn query_checked(&self, name: &str) -> Result<Query> {
        match (&self.pipeline, &self.sql) {
            (Some(p), None) => {
                let mut p = p.clone();
                crate::enrich::connections::resolve(&mut p, &self.connections, name)?;
                if let Some(dir) = &self.rules {
                    crate::rules::Registry::open(dir)?.resolve_pipeline(&mut p)?;
                }
                let pipeline = Pipeline::from_value(&p)?;
                self.check_routes(&pipeline, name)?;
                Ok(Query::Pipeline(pipeline))
            }
            (None, Some(s)) => Ok(Query::Sql(crate::enrich::connections::resolve_sql(
                s,
                &self.connections,
                name,
            )?)),
            _ => Err(Error::config(
                name,
                "a job needs exactly one of \"pipeline\" or \"sql\"",
            )),
        }
    }

    /// True for a streaming job: a followed source, a Kafka source or sink, an HTTP sink,
    /// checkpoints, or runtime settings.
    pub fn is_streaming(&self) -> bool {
        let follow = matches!(
            self.source,
            SourceConfig::File { follow: true, .. }
                | SourceConfig::Kafka(_)
                | SourceConfig::Postgres(_)
                | SourceConfig::Http(_)
        ) || matches!(
            self.sink,
            SinkConfig::Kafka(_) | SinkConfig::Http(_) | SinkConfig::Postgres(_)
        );
        follow || self.checkpoint.is_some() || self.runtime.is_some() || !self.routes.is_empty()
    }

    /// The table name the source is registered under.
    pub fn table(&self) -> &str {
        self.source.table()
    }

    /// The source's location and how to read it.
    pub fn source_location(&self) -> Result<(String, FileOptions)> {
        let context = self.name.as_deref().unwrap_or("job");
        match &self.source {
            SourceConfig::File {
                path,
                format,
                schema,
                ..
            } => {
                let format = *format;
                let schema = schema
                    .as_ref()
                    .map(|s| parse_schema(s, context, "source.schema").map(Arc::new))
                    .transpose()?;
                Ok((path.clone(), FileOptions { format, schema }))
            }
            SourceConfig::Memory { .. }
            | SourceConfig::Nexmark { .. }
            | SourceConfig::Kafka(_)
            | SourceConfig::Postgres(_)
            | SourceConfig::Http(_) => {
                Err(Error::config(context, "only a file source has a location"))
            }
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut String| {
            let is_url = p.contains("://");
            if !is_url && Path::new(p.as_str()).is_relative() {
                *p = base.join(p.as_str()).display().to_string();
            }
        };
        if let SourceConfig::File { path, .. } = &mut self.source {
            fix(path);
        }
        if let SourceConfig::Http(HttpSourceConfig {
            log_dir: Some(dir), ..
        }) = &mut self.source
        {
            fix(dir);
        }
        if let SinkConfig::File { path, .. } = &mut self.sink {
            fix(path);
        }
        if let Some(cp) = &mut self.checkpoint {
            fix(&mut cp.store);
        }
        if let Some(SinkConfig::File { path, .. }) = &mut self.dead_letter {
            fix(path);
        }
        for sink in self.routes.values_mut() {
            if let SinkConfig::File { path, .. } = sink {
                fix(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_job_and_resolves_relative_paths() {
        let text = r#"{"name": "x", "source": {"type": "file", "path": "data/o.jsonl"},
                       "pipeline": [{"$limit": 1}], "sink": {"type": "file", "path": "out/r.parquet"}}"#;
        let mut job = Job::from_json_str(text, "job.json").unwrap();
        job.resolve_paths(Path::new("/jobs"));
        assert_eq!(job.source_location().unwrap().0, "/jobs/data/o.jsonl");
        assert!(matches!(job.query().unwrap(), Query::Pipeline(_)));
        assert!(
            matches!(&job.sink, SinkConfig::File { path, .. } if path == "/jobs/out/r.parquet")
        );
    }

    #[test]
    fn rejects_bad_jobs_with_their_name() {
        let e = Job::from_json_str(r#"{"source": {"type": "file", "path": "x"}}"#, "j.json")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "j.json: a job needs exactly one of \"pipeline\" or \"sql\""
        );
        let e = Job::from_json_str(r#"{"source": {"type": "kafkaa"}, "sql": "x"}"#, "j.json")
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("j.json: unknown variant `kafkaa`"),
            "{e}"
        );
        let e = Job::from_json_str(
            r#"{"source": {"type": "file", "path": "x"}, "pipeline": [{"$bad": 1}]}"#,
            "j.json",
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("pipeline[0]: unknown stage"),
            "{e}"
        );
    }
}
