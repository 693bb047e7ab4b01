//! The service's event log: every change to the control plane — a pipeline submitted,
//! started, stopped, failed, updated, deleted — appended as one event, with who and when.
//! The log is the audit trail and the source of truth; the pipeline list and statuses are
//! projections of it ([`Projection`]), rebuilt from it when the service starts.
//!
//! The embedded store is a JSON-lines file in the service's data directory. An event is
//! written and synced before `append` returns, so an acknowledged change survives a crash;
//! a last line cut short by one is dropped when the log is opened again. Each pipeline has a
//! version (the number of events about it): a change that names the version it was made
//! against fails with [`Error::Conflict`] when another change came first.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventKind {
    /// A new pipeline, with its job file.
    PipelineSubmitted {
        job: Value,
    },
    /// A new version of a pipeline's job file.
    Updated {
        job: Value,
    },
    Started,
    /// Stopped on request (gracefully: the batch in hand finished and checkpointed).
    Stopped,
    /// A stream that read all its input.
    Finished,
    Failed {
        error: String,
    },
    Deleted,
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log, from 1.
    pub seq: u64,
    /// The pipeline it is about.
    pub pipeline: String,
    /// The pipeline's version after this event.
    pub version: u64,
    #[serde(flatten)]
    pub kind: EventKind,
    /// Who made the change (a key's id, or `service` for the service's own events).
    pub actor: String,
    /// When, as RFC 3339 in UTC.
    pub at: String,
}

/// The embedded event store: a JSON-lines file.
pub struct FileEventStore {
    path: PathBuf,
    file: File,
    events: Vec<Event>,
    versions: BTreeMap<String, u64>,
}

impl FileEventStore {
    /// Opens (or creates) the log `events.jsonl` in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileEventStore> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::external(format!("creating {}", dir.display()), e))?;
        let path = dir.join("events.jsonl");
        let io = |what: &str, e: std::io::Error| {
            Error::external(format!("{what} the event log {}", path.display()), e)
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("opening", e))?;
        let mut events = Vec::new();
        let mut good = 0u64;
        let mut reader = BufReader::new(&file);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(|e| io("reading", e))?;
            if n == 0 {
                break;
            }
            // A line without its newline was cut short by a crash: it was never acknowledged.
            if !line.ends_with('\n') {
                break;
            }
            let event: Event = serde_json::from_str(&line).map_err(|e| {
                Error::input(
                    format!("{}:{}", path.display(), events.len() + 1),
                    format!("not an event: {e}"),
                )
            })?;
            if event.seq != events.len() as u64 + 1 {
                return Err(Error::input(
                    format!("{}:{}", path.display(), events.len() + 1),
                    format!("event {} out of sequence", event.seq),
                ));
            }
            events.push(event);
            good += n as u64;
        }
        drop(reader);
        if file.metadata().map_err(|e| io("reading", e))?.len() != good {
            file.set_len(good).map_err(|e| io("repairing", e))?;
            file.sync_data().map_err(|e| io("syncing", e))?;
        }
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| io("opening", e))?;
        let mut versions = BTreeMap::new();
        for e in &events {
            versions.insert(e.pipeline.clone(), e.version);
        }
        Ok(FileEventStore {
            path,
            file,
            events,
            versions,
        })
    }

    /// The pipeline's version (0 before its first event).
    pub fn version(&self, pipeline: &str) -> u64 {
        self.versions.get(pipeline).copied().unwrap_or(0)
    }

    /// Appends `kind` about `pipeline`, made by `actor`. With `expected`, the change was
    /// made against that version of the pipeline: another change since is a conflict.
    pub fn append(
        &mut self,
        pipeline: &str,
        expected: Option<u64>,
        kind: EventKind,
        actor: &str,
    ) -> Result<Event> {
        let current = self.version(pipeline);
        if let Some(v) = expected
            && v != current
        {
            return Err(Error::Conflict {
                context: format!("pipeline {pipeline}"),
                message: format!("version {v} is stale: the pipeline is at version {current}"),
            });
        }
        let event = Event {
            seq: self.events.len() as u64 + 1,
            pipeline: pipeline.to_string(),
            version: current + 1,
            kind,
            actor: actor.to_string(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let mut line = serde_json::to_vec(&event)
            .map_err(|e| Error::internal(format!("an event that is not JSON: {e}")))?;
        line.push(b'\n');
        let io = |e: std::io::Error| {
            Error::external(
                format!("appending to the event log {}", self.path.display()),
                e,
            )
        };
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.versions.insert(event.pipeline.clone(), event.version);
        self.events.push(event.clone());
        Ok(event)
    }

    /// The events after position `seq` (all of them for 0).
    pub fn after(&self, seq: u64) -> &[Event] {
        let from = (seq as usize).min(self.events.len());
        &self.events[from..]
    }
}

/// Where a pipeline stands, as the log says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Submitted,
    Running,
    Stopped,
    Finished,
    Failed,
}

/// One pipeline in the projection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineView {
    pub id: String,
    pub version: u64,
    pub status: Status,
    /// The job file as submitted (or last updated).
    #[serde(skip)]
    pub job: Value,
    #[serde(rename = "lastError")]
    pub last_error: Option<String>,
}

/// The pipelines and their statuses, folded from the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    pub pipelines: BTreeMap<String, PipelineView>,
    /// The last event folded in.
    pub seq: u64,
}

impl Projection {
    /// The projection of `events`, in order.
    pub fn of(events: &[Event]) -> Projection {
        let mut p = Projection::default();
        events.iter().for_each(|e| p.apply(e));
        p
    }

    /// Folds one event in.
    pub fn apply(&mut self, e: &Event) {
        self.seq = e.seq;
        match &e.kind {
            EventKind::PipelineSubmitted { job } => {
                self.pipelines.insert(
                    e.pipeline.clone(),
                    PipelineView {
                        id: e.pipeline.clone(),
                        version: e.version,
                        status: Status::Submitted,
                        job: job.clone(),
                        last_error: None,
                    },
                );
                return;
            }
            EventKind::Deleted => {
                self.pipelines.remove(&e.pipeline);
                return;
            }
            _ => {}
        }
        let Some(view) = self.pipelines.get_mut(&e.pipeline) else {
            return;
        };
        view.version = e.version;
        match &e.kind {
            EventKind::Updated { job } => view.job = job.clone(),
            EventKind::Started => {
                view.status = Status::Running;
                view.last_error = None;
            }
            EventKind::Stopped => view.status = Status::Stopped,
            EventKind::Finished => view.status = Status::Finished,
            EventKind::Failed { error } => {
                view.status = Status::Failed;
                view.last_error = Some(error.clone());
            }
            EventKind::PipelineSubmitted { .. } | EventKind::Deleted => {}
        }
    }

    /// The pipelines that were running when the log ends: the ones to resume.
    pub fn running(&self) -> Vec<&PipelineView> {
        self.pipelines
            .values()
            .filter(|p| p.status == Status::Running)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_log_survives_reopening_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileEventStore::open(dir.path()).unwrap();
        let job = json!({"source": {"type": "memory", "documents": []}});
        store
            .append(
                "p1",
                Some(0),
                EventKind::PipelineSubmitted { job: job.clone() },
                "admin",
            )
            .unwrap();
        store
            .append("p1", Some(1), EventKind::Started, "ops")
            .unwrap();
        store
            .append("p2", None, EventKind::PipelineSubmitted { job }, "admin")
            .unwrap();
        drop(store);
        // A crash in the middle of writing a fourth event.
        let path = dir.path().join("events.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"seq":4,"pipeline":"p2","vers"#).unwrap();
        drop(f);
        let mut store = FileEventStore::open(dir.path()).unwrap();
        assert_eq!(store.after(0).len(), 3);
        assert_eq!(store.version("p1"), 2);
        let e = store
            .append("p2", Some(1), EventKind::Started, "ops")
            .unwrap();
        assert_eq!((e.seq, e.version), (4, 2));
        let live = Projection::of(store.after(0));
        let reopened = Projection::of(FileEventStore::open(dir.path()).unwrap().after(0));
        assert_eq!(live, reopened);
        assert_eq!(live.running().len(), 2);
        assert_eq!(store.after(3).len(), 1);
        assert_eq!(store.after(99).len(), 0);
    }

    #[test]
    fn a_stale_version_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileEventStore::open(dir.path()).unwrap();
        store
            .append(
                "p",
                Some(0),
                EventKind::PipelineSubmitted { job: json!({}) },
                "a",
            )
            .unwrap();
        store.append("p", Some(1), EventKind::Started, "a").unwrap();
        let e = store
            .append("p", Some(1), EventKind::Stopped, "b")
            .unwrap_err();
        assert!(matches!(e, Error::Conflict { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "pipeline p: version 1 is stale: the pipeline is at version 2"
        );
        assert_eq!(store.after(0).len(), 2);
    }

    #[test]
    fn the_projection_follows_the_statuses() {
        let mk = |seq, pipeline: &str, version, kind| Event {
            seq,
            pipeline: pipeline.into(),
            version,
            kind,
            actor: "t".into(),
            at: String::new(),
        };
        let events = vec![
            mk(
                1,
                "a",
                1,
                EventKind::PipelineSubmitted {
                    job: json!({"v": 1}),
                },
            ),
            mk(2, "a", 2, EventKind::Started),
            mk(
                3,
                "a",
                3,
                EventKind::Failed {
                    error: "boom".into(),
                },
            ),
            mk(4, "b", 1, EventKind::PipelineSubmitted { job: json!({}) }),
            mk(
                5,
                "a",
                4,
                EventKind::Updated {
                    job: json!({"v": 2}),
                },
            ),
            mk(6, "b", 2, EventKind::Deleted),
        ];
        let p = Projection::of(&events);
        assert_eq!(p.seq, 6);
        assert_eq!(p.pipelines.len(), 1);
        let a = &p.pipelines["a"];
        assert_eq!((a.status, a.version), (Status::Failed, 4));
        assert_eq!(a.last_error.as_deref(), Some("boom"));
        assert_eq!(a.job, json!({"v": 2}));
        assert!(p.running().is_empty());
    }
}
