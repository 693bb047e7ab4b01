//! The service's event log: every change to the control plane — a pipeline submitted,
//! started, stopped, failed, updated, deleted — appended as one event, with who and when.
//! The log is the audit trail and the source of truth; the pipeline list and statuses are
//! projections of it ([`Projection`]), rebuilt from it when the service starts.
//!
//! Where the log is kept is the store's business (`service::store`); a [`Snapshot`] of the
//! projection, saved now and then, bounds how much of the log a start folds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

impl Event {
    /// The event that follows a subject at version `current`, at position `seq`: refused
    /// with [`Error::Conflict`](crate::Error::Conflict) when the change was made against an
    /// `expected` version that is no longer the current one.
    pub fn next(
        seq: u64,
        subject: &str,
        current: u64,
        expected: Option<u64>,
        kind: EventKind,
        actor: &str,
    ) -> crate::Result<Event> {
        if let Some(v) = expected
            && v != current
        {
            return Err(crate::Error::Conflict {
                context: format!("pipeline {subject}"),
                message: format!("version {v} is stale: the pipeline is at version {current}"),
            });
        }
        Ok(Event {
            seq,
            pipeline: subject.to_string(),
            version: current + 1,
            kind,
            actor: actor.to_string(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    }
}

/// Where a pipeline stands, as the log says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Submitted,
    Running,
    Stopped,
    Finished,
    Failed,
}

impl Status {
    /// The status as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Submitted => "submitted",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Finished => "finished",
            Status::Failed => "failed",
        }
    }
}

/// One pipeline in the projection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineView {
    pub id: String,
    pub version: u64,
    pub status: Status,
    /// The job file as submitted (or last updated).
    pub job: Value,
    #[serde(rename = "lastError")]
    pub last_error: Option<String>,
}

/// The pipelines and their statuses, folded from the log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub pipelines: BTreeMap<String, PipelineView>,
    /// The last event folded in.
    pub seq: u64,
}

/// The projection as of event `seq`, with every subject's version (deleted pipelines
/// included: their names may come back, their versions go on).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub projection: Projection,
    pub versions: BTreeMap<String, u64>,
}

impl Projection {
    /// The projection of `events`, in order.
    pub fn of(events: &[Event]) -> Projection {
        Projection::from(Projection::default(), events)
    }

    /// The projection `start` becomes with `events` folded in.
    pub fn from(start: Projection, events: &[Event]) -> Projection {
        let mut p = start;
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
