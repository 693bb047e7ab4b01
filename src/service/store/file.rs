//! The embedded event store: `events.jsonl` in the service's data directory, one event per
//! line, each written and synced before `append` returns, so an acknowledged change survives
//! a crash; a last line cut short by one is dropped when the log is opened again.
//!
//! `snapshot.json` beside it holds the projection as of some event; opening reads the lines
//! after that event only (the ones before are skipped by counting newlines, not parsed), and
//! only those stay in memory. Older events are read from the file when asked for.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;

use super::EventStore;
use crate::service::events::{Event, EventKind, Snapshot};
use crate::{Error, Result};

struct Log {
    file: File,
    /// Events after `base`, in memory.
    tail: Vec<Event>,
    /// The seq of the last event a saved snapshot covers (0 without one).
    base: u64,
    /// Every subject's version.
    versions: BTreeMap<String, u64>,
    snapshot: Option<Snapshot>,
}

/// The JSON-lines event store.
pub struct FileEventStore {
    path: PathBuf,
    snapshot_path: PathBuf,
    log: Mutex<Log>,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::external(format!("{what} the event log {}", path.display()), e)
}

impl FileEventStore {
    /// Opens (or creates) the log `events.jsonl` in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileEventStore> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::external(format!("creating {}", dir.display()), e))?;
        let path = dir.join("events.jsonl");
        let snapshot_path = dir.join("snapshot.json");
        let io = |what: &str, e: std::io::Error| io_error(what, &path, e);
        let snapshot: Option<Snapshot> = match std::fs::read(&snapshot_path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                Error::input(
                    snapshot_path.display().to_string(),
                    format!("not a snapshot: {e} (delete it to fold the whole log)"),
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("reading the snapshot of", e)),
        };
        let base = snapshot.as_ref().map_or(0, |s| s.projection.seq);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("opening", e))?;
        let mut reader = BufReader::new(&file);
        // The lines the snapshot covers are skipped, not parsed.
        let mut good = skip_lines(&mut reader, base).map_err(|e| io("reading", e))?;
        if good.1 < base {
            return Err(Error::input(
                path.display().to_string(),
                format!(
                    "the log has {} events but its snapshot covers {base} (delete snapshot.json to fold the log)",
                    good.1
                ),
            ));
        }
        let mut tail = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(|e| io("reading", e))?;
            // A line without its newline was cut short by a crash: it was never acknowledged.
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            let seq = base + tail.len() as u64 + 1;
            let event: Event = serde_json::from_str(&line).map_err(|e| {
                Error::input(
                    format!("{}:{seq}", path.display()),
                    format!("not an event: {e}"),
                )
            })?;
            if event.seq != seq {
                return Err(Error::input(
                    format!("{}:{seq}", path.display()),
                    format!("event {} out of sequence", event.seq),
                ));
            }
            tail.push(event);
            good.0 += n as u64;
        }
        drop(reader);
        if file.metadata().map_err(|e| io("reading", e))?.len() != good.0 {
            file.set_len(good.0).map_err(|e| io("repairing", e))?;
            file.sync_data().map_err(|e| io("syncing", e))?;
        }
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| io("opening", e))?;
        let mut versions = snapshot
            .as_ref()
            .map(|s| s.versions.clone())
            .unwrap_or_default();
        for e in &tail {
            versions.insert(e.pipeline.clone(), e.version);
        }
        Ok(FileEventStore {
            path,
            snapshot_path,
            log: Mutex::new(Log {
                file,
                tail,
                base,
                versions,
                snapshot,
            }),
        })
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Events after `seq` read from the file (for the ones before the in-memory tail).
    fn read_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>> {
        let io = |e: std::io::Error| io_error("reading", &self.path, e);
        let mut reader = BufReader::new(File::open(&self.path).map_err(io)?);
        skip_lines(&mut reader, seq).map_err(io)?;
        let mut out = Vec::new();
        let mut line = String::new();
        while out.len() < limit {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            out.push(serde_json::from_str(&line).map_err(|e| {
                Error::input(
                    self.path.display().to_string(),
                    format!("not an event: {e}"),
                )
            })?);
        }
        Ok(out)
    }
}

/// Skips `n` lines; returns the bytes and lines skipped.
fn skip_lines(reader: &mut impl BufRead, n: u64) -> std::io::Result<(u64, u64)> {
    let (mut bytes, mut lines) = (0u64, 0u64);
    while lines < n {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let mut used = 0;
        for nl in memchr::memchr_iter(b'\n', buf) {
            lines += 1;
            used = nl + 1;
            if lines == n {
                break;
            }
        }
        if lines < n {
            used = buf.len();
        }
        bytes += used as u64;
        reader.consume(used);
    }
    Ok((bytes, lines))
}

#[async_trait]
impl EventStore for FileEventStore {
    async fn append(
        &self,
        subject: &str,
        expected: Option<u64>,
        kind: EventKind,
        actor: &str,
    ) -> Result<Event> {
        let mut log = self.log();
        let current = log.versions.get(subject).copied().unwrap_or(0);
        let seq = log.base + log.tail.len() as u64 + 1;
        let event = Event::next(seq, subject, current, expected, kind, actor)?;
        let mut line = serde_json::to_vec(&event)
            .map_err(|e| Error::internal(format!("an event that is not JSON: {e}")))?;
        line.push(b'\n');
        let io = |e| io_error("appending to", &self.path, e);
        log.file.write_all(&line).map_err(io)?;
        log.file.sync_data().map_err(io)?;
        log.versions.insert(event.pipeline.clone(), event.version);
        log.tail.push(event.clone());
        Ok(event)
    }

    async fn after(&self, seq: u64, limit: usize) -> Result<Vec<Event>> {
        let (base, mut out) = {
            let log = self.log();
            let from = seq.saturating_sub(log.base) as usize;
            let tail: Vec<Event> = log.tail.iter().skip(from).take(limit).cloned().collect();
            (log.base, tail)
        };
        if seq < base {
            let mut older = self.read_after(seq, limit.min((base - seq) as usize))?;
            older.extend(out);
            older.truncate(limit);
            out = older;
        }
        Ok(out)
    }

    async fn load(&self) -> Result<(Option<Snapshot>, Vec<Event>)> {
        let log = self.log();
        Ok((log.snapshot.clone(), log.tail.clone()))
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let text = serde_json::to_vec(snapshot)
            .map_err(|e| Error::internal(format!("a snapshot that is not JSON: {e}")))?;
        let tmp = self.snapshot_path.with_extension("json.tmp");
        let io = |e| io_error("writing the snapshot of", &self.path, e);
        std::fs::write(&tmp, text).map_err(io)?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &self.snapshot_path).map_err(io)?;
        // The events the snapshot covers leave memory; the file still has them.
        let mut log = self.log();
        let covered = snapshot.projection.seq.saturating_sub(log.base) as usize;
        let covered = covered.min(log.tail.len());
        log.tail.drain(..covered);
        log.base += covered as u64;
        log.snapshot = Some(snapshot.clone());
        Ok(())
    }

    async fn check(&self) -> Result<()> {
        let log = self.log();
        log.file
            .metadata()
            .map(|_| ())
            .map_err(|e| io_error("checking", &self.path, e))
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::events::Projection;
    use serde_json::json;
    use std::io::Read;

    fn read_all(path: &Path) -> Vec<u8> {
        let mut v = Vec::new();
        File::open(path).unwrap().read_to_end(&mut v).unwrap();
        v
    }

    #[tokio::test]
    async fn the_log_survives_reopening_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileEventStore::open(dir.path()).unwrap();
        let job = json!({"source": {"type": "memory", "documents": []}});
        store
            .append(
                "p1",
                Some(0),
                EventKind::PipelineSubmitted { job: job.clone() },
                "admin",
            )
            .await
            .unwrap();
        store
            .append("p1", Some(1), EventKind::Started, "ops")
            .await
            .unwrap();
        store
            .append("p2", None, EventKind::PipelineSubmitted { job }, "admin")
            .await
            .unwrap();
        drop(store);
        // A crash in the middle of writing a fourth event.
        let path = dir.path().join("events.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"seq":4,"pipeline":"p2","vers"#).unwrap();
        drop(f);
        let store = FileEventStore::open(dir.path()).unwrap();
        assert_eq!(store.after(0, 100).await.unwrap().len(), 3);
        let e = store
            .append("p2", Some(1), EventKind::Started, "ops")
            .await
            .unwrap();
        assert_eq!((e.seq, e.version), (4, 2));
        let live = Projection::of(&store.after(0, 100).await.unwrap());
        let reopened = FileEventStore::open(dir.path()).unwrap();
        let reopened = Projection::of(&reopened.after(0, 100).await.unwrap());
        assert_eq!(live, reopened);
        assert_eq!(live.running().len(), 2);
        assert_eq!(store.after(3, 100).await.unwrap().len(), 1);
        assert_eq!(store.after(99, 100).await.unwrap().len(), 0);
        assert!(!read_all(&path).ends_with(b"vers"));
    }

    #[tokio::test]
    async fn a_stale_version_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileEventStore::open(dir.path()).unwrap();
        store
            .append(
                "p",
                Some(0),
                EventKind::PipelineSubmitted { job: json!({}) },
                "a",
            )
            .await
            .unwrap();
        store
            .append("p", Some(1), EventKind::Started, "a")
            .await
            .unwrap();
        let e = store
            .append("p", Some(1), EventKind::Stopped, "b")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Conflict { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "pipeline p: version 1 is stale: the pipeline is at version 2"
        );
        assert_eq!(store.after(0, 100).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_snapshot_bounds_what_opening_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileEventStore::open(dir.path()).unwrap();
        let mut events = Vec::new();
        for i in 0..10 {
            let id = format!("p{i}");
            let job = json!({"n": i});
            events.push(
                store
                    .append(&id, Some(0), EventKind::PipelineSubmitted { job }, "a")
                    .await
                    .unwrap(),
            );
        }
        let projection = Projection::of(&events);
        let versions = events.iter().map(|e| (e.pipeline.clone(), 1)).collect();
        store
            .save_snapshot(&Snapshot {
                projection: projection.clone(),
                versions,
            })
            .await
            .unwrap();
        store
            .append("p3", Some(1), EventKind::Started, "a")
            .await
            .unwrap();
        drop(store);
        let store = FileEventStore::open(dir.path()).unwrap();
        let (snapshot, tail) = store.load().await.unwrap();
        assert_eq!(snapshot.unwrap().projection, projection);
        assert_eq!(tail.len(), 1);
        // Versions carried by the snapshot still guard appends.
        assert!(
            store
                .append("p5", Some(0), EventKind::Deleted, "a")
                .await
                .is_err()
        );
        // Events before the snapshot are read from the file.
        let all = store.after(0, 100).await.unwrap();
        assert_eq!(all.len(), 11);
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=11).collect::<Vec<_>>()
        );
        assert_eq!(store.after(8, 2).await.unwrap().len(), 2);
        assert_eq!(store.after(8, 2).await.unwrap()[1].seq, 10);
        assert_eq!(store.after(9, 5).await.unwrap().len(), 2);
    }
}
