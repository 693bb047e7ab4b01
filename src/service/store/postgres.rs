//! The event log in PostgreSQL (`eventStore = "postgres://…"`): table `fluxion_events`, one
//! row per event (its JSON as text, so a job's key order survives), and
//! `fluxion_snapshots`. An append runs in one transaction that locks the table, so events
//! are numbered without gaps in commit order and a subject's version cannot be taken twice;
//! the commit returns before the event is acknowledged.

use async_trait::async_trait;
use deadpool_postgres::Pool;

use super::EventStore;
use crate::connect::postgres::{PgConnection, pg_error, pool_error};
use crate::service::events::{Event, EventKind, Snapshot};
use crate::{Error, Result};

/// The PostgreSQL event store.
pub struct PgEventStore {
    pool: Pool,
    shown: String,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS fluxion_events (
        seq bigint PRIMARY KEY,
        subject text NOT NULL,
        version bigint NOT NULL,
        event text NOT NULL,
        UNIQUE (subject, version));
    CREATE TABLE IF NOT EXISTS fluxion_snapshots (
        seq bigint PRIMARY KEY,
        snapshot text NOT NULL)";

fn parse(text: &str) -> Result<Event> {
    serde_json::from_str(text)
        .map_err(|e| Error::input("fluxion_events", format!("not an event: {e}")))
}

impl PgEventStore {
    /// Connects to `url` and makes the tables if they are missing.
    pub async fn connect(url: &str) -> Result<PgEventStore> {
        let connection = PgConnection::new(url, "eventStore", "event store")?;
        let shown = connection.shown().to_string();
        let pool = connection.pool(4, "event store")?;
        let store = PgEventStore { pool, shown };
        let client = store.client().await?;
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(|e| pg_error(&format!("making the event tables in {}", store.shown), e))?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| pool_error(&format!("event store {}", self.shown), e))
    }

    fn failed(&self, what: &str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        let what = format!("{what} (event store {})", self.shown);
        move |e| pg_error(&what, e)
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn append(
        &self,
        subject: &str,
        expected: Option<u64>,
        kind: EventKind,
        actor: &str,
    ) -> Result<Event> {
        let mut client = self.client().await?;
        let failed = self.failed("appending an event");
        let tx = client.transaction().await.map_err(&failed)?;
        tx.batch_execute("LOCK TABLE fluxion_events IN EXCLUSIVE MODE")
            .await
            .map_err(&failed)?;
        let row = tx
            .query_one(
                "SELECT coalesce((SELECT max(seq) FROM fluxion_events), 0),
                        coalesce((SELECT max(version) FROM fluxion_events WHERE subject = $1), 0)",
                &[&subject],
            )
            .await
            .map_err(&failed)?;
        let (seq, current): (i64, i64) = (row.get(0), row.get(1));
        let event = Event::next(
            seq as u64 + 1,
            subject,
            current as u64,
            expected,
            kind,
            actor,
        )?;
        let text = serde_json::to_string(&event)
            .map_err(|e| Error::internal(format!("an event that is not JSON: {e}")))?;
        tx.execute(
            "INSERT INTO fluxion_events (seq, subject, version, event) VALUES ($1, $2, $3, $4)",
            &[
                &(event.seq as i64),
                &subject,
                &(event.version as i64),
                &text,
            ],
        )
        .await
        .map_err(&failed)?;
        tx.commit().await.map_err(&failed)?;
        Ok(event)
    }

    async fn after(&self, seq: u64, limit: usize) -> Result<Vec<Event>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT event FROM fluxion_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&(seq as i64), &(limit as i64)],
            )
            .await
            .map_err(self.failed("reading events"))?;
        rows.iter().map(|r| parse(r.get(0))).collect()
    }

    async fn load(&self) -> Result<(Option<Snapshot>, Vec<Event>)> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT snapshot FROM fluxion_snapshots ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await
            .map_err(self.failed("reading the snapshot"))?;
        let snapshot: Option<Snapshot> =
            match row {
                None => None,
                Some(r) => Some(serde_json::from_str(r.get(0)).map_err(|e| {
                    Error::input("fluxion_snapshots", format!("not a snapshot: {e}"))
                })?),
            };
        let from = snapshot.as_ref().map_or(0, |s| s.projection.seq);
        let rows = client
            .query(
                "SELECT event FROM fluxion_events WHERE seq > $1 ORDER BY seq",
                &[&(from as i64)],
            )
            .await
            .map_err(self.failed("reading events"))?;
        let tail = rows
            .iter()
            .map(|r| parse(r.get(0)))
            .collect::<Result<_>>()?;
        Ok((snapshot, tail))
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let text = serde_json::to_string(snapshot)
            .map_err(|e| Error::internal(format!("a snapshot that is not JSON: {e}")))?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO fluxion_snapshots (seq, snapshot) VALUES ($1, $2)
                 ON CONFLICT (seq) DO UPDATE SET snapshot = excluded.snapshot",
                &[&(snapshot.projection.seq as i64), &text],
            )
            .await
            .map_err(self.failed("saving a snapshot"))?;
        // Older snapshots are never read again.
        client
            .execute(
                "DELETE FROM fluxion_snapshots WHERE seq < $1",
                &[&(snapshot.projection.seq as i64)],
            )
            .await
            .map_err(self.failed("saving a snapshot"))?;
        Ok(())
    }

    async fn check(&self) -> Result<()> {
        let client = self.client().await?;
        client
            .query_one("SELECT 1", &[])
            .await
            .map_err(self.failed("checking"))?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("postgres {}", self.shown)
    }
}
