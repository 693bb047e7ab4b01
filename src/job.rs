//! Job files: a source, a pipeline (JSON stages or SQL) and a sink in one JSON document.
//!
//! ```json
//! {"name": "orders-ltv",
//!  "source": {"type": "file", "path": "data/orders.jsonl", "format": "jsonl"},
//!  "pipeline": [{"$match": {"status": "PAID"}}],
//!  "sink": {"type": "stdout"}}
//! ```
//! Relative paths are resolved against the job file's directory, so a job runs the same from
//! any working directory.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use std::sync::Arc;

use crate::connect::Format;
use crate::connect::file::FileOptions;
use crate::document::declared::parse_schema;
use crate::dsl::Pipeline;
use crate::{Error, Result};

/// A parsed job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The job's name (used in logs and, later, metrics).
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
    /// (see `runtime::error_policy`).
    #[serde(rename = "errorPolicy")]
    pub error_policy: Option<Value>,
    /// Streaming: where `"deadLetter"` sends unreadable records (a JSON-lines file).
    #[serde(rename = "deadLetter")]
    pub dead_letter: Option<SinkConfig>,
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
}

impl RuntimeConfig {
    /// These settings over `options`.
    pub fn apply(&self, options: &mut crate::runtime::micro_batch::RuntimeOptions) {
        if let Some(n) = self.micro_batch_size {
            options.micro_batch_size = n.max(1);
        }
        if let Some(ms) = self.max_batch_delay_ms {
            options.max_batch_delay = (ms > 0).then(|| std::time::Duration::from_millis(ms));
        }
        if let Some(n) = self.queue_capacity {
            options.queue_capacity = n.max(1);
        }
        if let Some(n) = self.source_queue_capacity {
            options.source_queue_capacity = n.max(1);
        }
    }
}

/// Where documents come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// A file, directory or object-store URL.
    File {
        path: String,
        format: Option<String>,
        /// The table name SQL uses (default `input`).
        table: Option<String>,
        /// A declared document schema (see `document::declared`); inferred when absent.
        schema: Option<Value>,
        /// Follow a growing JSON-lines file (a streaming job) instead of ending at its end.
        #[serde(default)]
        follow: bool,
        /// The event time of each document, for windows: an expression (`"$ts"`) giving a
        /// date, ISO-8601 text or epoch milliseconds.
        #[serde(rename = "timeField")]
        time_field: Option<Value>,
    },
    /// Nexmark events generated in process (`connect::nexmark`): `kind` (`"bid"`, the default,
    /// `"auction"` or `"person"`), `events` of them (or without end), at most `rate` per
    /// second (default: as fast as they come). Event time is `dateTime` unless `timeField`
    /// says otherwise.
    Nexmark {
        kind: Option<String>,
        events: Option<u64>,
        rate: Option<f64>,
        table: Option<String>,
        #[serde(rename = "timeField")]
        time_field: Option<Value>,
    },
    /// Documents given in the job itself (for tests, demos and embedding).
    Memory {
        documents: Vec<Value>,
        /// The table name SQL uses (default `input`).
        table: Option<String>,
        /// The event time of each document, for windows (see `File`).
        #[serde(rename = "timeField")]
        time_field: Option<Value>,
    },
}

impl SourceConfig {
    /// The `timeField` expression, if any.
    pub fn time_field(&self) -> Option<&Value> {
        match self {
            SourceConfig::File { time_field, .. } | SourceConfig::Memory { time_field, .. } => {
                time_field.as_ref()
            }
            SourceConfig::Nexmark { time_field, .. } => {
                static DATE_TIME: std::sync::LazyLock<Value> =
                    std::sync::LazyLock::new(|| Value::String("$dateTime".into()));
                Some(time_field.as_ref().unwrap_or(&DATE_TIME))
            }
        }
    }

    /// The table name the source is registered under (default `input`).
    pub fn table(&self) -> &str {
        match self {
            SourceConfig::File { table, .. }
            | SourceConfig::Memory { table, .. }
            | SourceConfig::Nexmark { table, .. } => table.as_deref().unwrap_or("input"),
        }
    }

    /// The documents of an in-memory source as JSON lines.
    pub fn memory_jsonl(&self) -> Option<Vec<u8>> {
        let SourceConfig::Memory { documents, .. } = self else {
            return None;
        };
        let mut text = Vec::new();
        for d in documents {
            text.extend_from_slice(d.to_string().as_bytes());
            text.push(b'\n');
        }
        Some(text)
    }
}

/// Where results go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// JSON lines on standard output.
    #[default]
    Stdout,
    /// Nowhere: documents are counted and dropped (for benchmarks).
    Null,
    /// One file (JSON lines, CSV or Parquet).
    File {
        path: String,
        format: Option<String>,
    },
}

/// What a job runs: stages or SQL.
#[derive(Debug, Clone)]
pub enum Query {
    Pipeline(Pipeline),
    Sql(String),
}

impl Job {
    /// Reads and checks the job file at `path`.
    pub fn load(path: &Path) -> Result<Job> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(path.display().to_string(), e.to_string()))?;
        let mut job = Job::from_json_str(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new(""));
        job.resolve_paths(base);
        Ok(job)
    }

    /// Parses a job from JSON text; `name` is used in errors.
    pub fn from_json_str(text: &str, name: &str) -> Result<Job> {
        let job: Job =
            serde_json::from_str(text).map_err(|e| Error::config(name, e.to_string()))?;
        job.query_checked(name)?;
        Ok(job)
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
            (Some(p), None) => Ok(Query::Pipeline(Pipeline::from_value(p)?)),
            (None, Some(s)) => Ok(Query::Sql(s.clone())),
            _ => Err(Error::config(
                name,
                "a job needs exactly one of \"pipeline\" or \"sql\"",
            )),
        }
    }

    /// True for a streaming job: a followed source, checkpoints, or runtime settings.
    pub fn is_streaming(&self) -> bool {
        let follow = matches!(self.source, SourceConfig::File { follow: true, .. });
        follow || self.checkpoint.is_some() || self.runtime.is_some()
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
                let format = format.as_deref().map(Format::from_name).transpose()?;
                let schema = schema
                    .as_ref()
                    .map(|s| parse_schema(s, context, "source.schema").map(Arc::new))
                    .transpose()?;
                Ok((path.clone(), FileOptions { format, schema }))
            }
            SourceConfig::Memory { .. } | SourceConfig::Nexmark { .. } => Err(Error::config(
                context,
                "a generated or in-memory source has no location",
            )),
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
        if let SinkConfig::File { path, .. } = &mut self.sink {
            fix(path);
        }
        if let Some(cp) = &mut self.checkpoint {
            fix(&mut cp.store);
        }
        if let Some(SinkConfig::File { path, .. }) = &mut self.dead_letter {
            fix(path);
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
