//! Where the event log is kept: a JSON-lines file in the data directory ([`file`], the
//! embedded default) or a PostgreSQL table ([`postgres`], `eventStore = "postgres://…"`).
//!
//! Both append an event durably before they answer, number events from 1 in the order they
//! were appended, and keep a version per subject: an append that names the version it was
//! made against fails with [`Error::Conflict`](crate::Error::Conflict) when another came
//! first. Both keep the latest [`Snapshot`] beside the log, so a start reads only the events
//! after it.

pub mod file;
pub mod postgres;

use async_trait::async_trait;

use super::events::{Event, EventKind, Snapshot};
use crate::Result;

/// An append-only event log with versions per subject.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends `kind` about `subject`, made by `actor`; with `expected`, only if the subject
    /// is still at that version.
    async fn append(
        &self,
        subject: &str,
        expected: Option<u64>,
        kind: EventKind,
        actor: &str,
    ) -> Result<Event>;

    /// Up to `limit` events after position `seq`, in order.
    async fn after(&self, seq: u64, limit: usize) -> Result<Vec<Event>>;

    /// The latest snapshot, if one was saved, and every event after it.
    async fn load(&self) -> Result<(Option<Snapshot>, Vec<Event>)>;

    /// Saves `snapshot` (of the projection as of its `seq`).
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<()>;

    /// Errors unless the store can be written now (for readiness).
    async fn check(&self) -> Result<()>;

    /// What the store is, for `/readyz` (no secrets).
    fn describe(&self) -> String;
}

/// Opens the store `location` names: `postgres://…` or, absent, the data directory's file.
pub async fn open(
    location: Option<&str>,
    data_dir: &std::path::Path,
) -> Result<Box<dyn EventStore>> {
    match location {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Box::new(postgres::PgEventStore::connect(url).await?))
        }
        Some(other) => Err(crate::Error::config(
            "eventStore",
            format!(
                "\"{}\" is not a postgres:// URL (leave it out to keep the log in the data directory)",
                crate::connect::postgres::redact(other)
            ),
        )),
        None => Ok(Box::new(file::FileEventStore::open(data_dir)?)),
    }
}
