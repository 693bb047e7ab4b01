//! Checkpoints: the source position, the sink's durable state and the operators' state (a
//! continuous `$group`'s groups, as Arrow IPC), saved together after each committed
//! micro-batch, so a restarted run resumes exactly where the committed output ends.
//!
//! Stores: in memory (embedding, tests), a local directory (`checkpoint.json`, written to a
//! temporary file, fsynced, then renamed over the old one: a crash leaves the old or the new
//! checkpoint, never half of one; operator state goes to `state-<batch>.arrow` first, which
//! the new `checkpoint.json` names, and older state files are removed after the rename), and
//! an object store (the same two objects; a put is atomic).

use std::path::PathBuf;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use serde_json::{Value, json};

use crate::{Error, Result};

/// One checkpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checkpoint {
    /// The source position after the last committed micro-batch.
    pub source: Value,
    /// The sink's state as of that batch.
    pub sink: Value,
    /// Micro-batches committed so far (over all runs).
    pub batches: u64,
    /// Operator state (Arrow IPC), if the pipeline keeps any.
    pub state: Option<Vec<u8>>,
    /// The schema the source read with: a restarted run (and a replay) reads with the same
    /// one, even if it was inferred from a file that has grown since.
    pub schema: Option<SchemaRef>,
    /// The operator whose state this is (`continuous $group`, `session window`, …, or
    /// `document by document`) and a fingerprint of the compiled pipeline: a restart with an
    /// edited pipeline is refused instead of reading state it cannot use. `None` in
    /// checkpoints of older versions (not checked).
    pub plan: Option<PlanMark>,
}

/// What wrote a checkpoint: the operator kind and a fingerprint of the compiled pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanMark {
    pub operator: String,
    pub fingerprint: String,
}

impl PlanMark {
    /// Refuses a checkpoint written by another pipeline, naming `store` and what changed.
    pub fn check(&self, written: &PlanMark, store: &str) -> Result<()> {
        let what = if self.operator != written.operator {
            format!(
                "it holds the state of a {}, the pipeline now runs a {}",
                written.operator, self.operator
            )
        } else if self.fingerprint != written.fingerprint {
            format!(
                "it was written by another version of the pipeline ({} {} → {})",
                self.operator, written.fingerprint, self.fingerprint
            )
        } else {
            return Ok(());
        };
        Err(Error::config(
            store,
            format!(
                "the checkpoint does not fit this pipeline: {what}; start with a new checkpoint store, or run with --reset-checkpoint"
            ),
        ))
    }
}

/// A stable 64-bit FNV-1a hash of `text`, in hex (stable across builds, unlike `std`'s).
pub fn fingerprint(text: &str) -> String {
    checksum(text.as_bytes())
}

/// The FNV-1a hash of `bytes`, in hex: the checksum a checkpoint keeps of its state file.
fn checksum(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Refuses state bytes whose checksum is not the one the checkpoint recorded.
fn check_state(bytes: &[u8], recorded: Option<&str>, at: &str) -> Result<()> {
    match recorded {
        Some(sum) if sum != checksum(bytes) => Err(Error::input(
            at,
            "the checkpoint's state file is damaged (its checksum does not match): start with a new checkpoint store, or run with --reset-checkpoint",
        )),
        _ => Ok(()),
    }
}

impl Checkpoint {
    fn to_json(&self, state_file: Option<&str>) -> Value {
        let schema = self.schema.as_ref().and_then(|s| schema_to_hex(s).ok());
        let plan = self
            .plan
            .as_ref()
            .map(|p| json!({"operator": p.operator, "fingerprint": p.fingerprint}));
        let state_checksum = self.state.as_deref().map(checksum);
        json!({"version": 1, "source": self.source, "sink": self.sink, "batches": self.batches,
               "state": state_file, "stateChecksum": state_checksum, "schema": schema,
               "plan": plan})
    }

    fn from_json(v: &Value, at: &str) -> Result<(Checkpoint, Option<String>)> {
        let bad = || Error::input(at, "not a Fluxion checkpoint (expected version 1)");
        if v.get("version").and_then(Value::as_u64) != Some(1) {
            return Err(bad());
        }
        let checkpoint = Checkpoint {
            source: v.get("source").cloned().ok_or_else(bad)?,
            sink: v.get("sink").cloned().ok_or_else(bad)?,
            batches: v.get("batches").and_then(Value::as_u64).ok_or_else(bad)?,
            state: None,
            schema: match v.get("schema").and_then(Value::as_str) {
                Some(hex) => Some(schema_from_hex(hex).map_err(|_| bad())?),
                None => None,
            },
            plan: match v.get("plan") {
                None | Some(Value::Null) => None,
                Some(p) => {
                    let field = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
                    Some(PlanMark {
                        operator: field("operator").ok_or_else(bad)?,
                        fingerprint: field("fingerprint").ok_or_else(bad)?,
                    })
                }
            },
        };
        let state_file = v.get("state").and_then(Value::as_str).map(str::to_string);
        // The state file sits beside the checkpoint: a name, not a path.
        if let Some(f) = &state_file
            && (f.is_empty() || f.contains(['/', '\\']) || f.starts_with('.'))
        {
            return Err(Error::input(
                at,
                format!("the checkpoint names \"{f}\" as its state file, which is not a file name"),
            ));
        }
        Ok((checkpoint, state_file))
    }
}

/// A schema as the hex digits of an Arrow IPC file without batches.
fn schema_to_hex(schema: &Schema) -> Result<String> {
    let mut buf = Vec::new();
    let mut w = datafusion::arrow::ipc::writer::FileWriter::try_new(&mut buf, schema)?;
    w.finish()?;
    drop(w);
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn schema_from_hex(hex: &str) -> Result<SchemaRef> {
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|e| Error::external("reading a checkpoint's schema", e))?;
    let reader =
        datafusion::arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)?;
    Ok(reader.schema())
}

/// Where checkpoints are kept.
#[async_trait::async_trait]
pub trait CheckpointStore: Send {
    /// The last checkpoint, if any.
    async fn load(&mut self) -> Result<Option<Checkpoint>>;
    /// Replaces the last checkpoint, atomically.
    async fn save(&mut self, checkpoint: &Checkpoint) -> Result<()>;
    /// Removes every checkpoint: the next run starts over (`--reset-checkpoint`).
    async fn clear(&mut self) -> Result<()>;
    /// Where the checkpoints are, for messages.
    fn describe(&self) -> String {
        "the checkpoint store".to_string()
    }
}

/// Checkpoints in memory.
#[derive(Debug, Default)]
pub struct MemoryCheckpoints(pub Option<Checkpoint>);

#[async_trait::async_trait]
impl CheckpointStore for MemoryCheckpoints {
    async fn load(&mut self) -> Result<Option<Checkpoint>> {
        Ok(self.0.clone())
    }

    async fn save(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.0 = Some(checkpoint.clone());
        Ok(())
    }

    async fn clear(&mut self) -> Result<()> {
        self.0 = None;
        Ok(())
    }
}

/// Checkpoints in a local directory.
#[derive(Debug)]
pub struct DirCheckpoints {
    dir: PathBuf,
}

impl DirCheckpoints {
    /// A store in `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::external(format!("creating {}", dir.display()), e))?;
        Ok(DirCheckpoints { dir })
    }

    fn file(&self) -> PathBuf {
        self.dir.join("checkpoint.json")
    }
}

#[async_trait::async_trait]
impl CheckpointStore for DirCheckpoints {
    async fn load(&mut self) -> Result<Option<Checkpoint>> {
        let path = self.file();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::external(format!("reading {}", path.display()), e)),
        };
        let at = path.display().to_string();
        let v: Value = serde_json::from_slice(&text)
            .map_err(|e| Error::input(&at, format!("not valid JSON: {e}")))?;
        let (mut checkpoint, state_file) = Checkpoint::from_json(&v, &at)?;
        if let Some(f) = state_file {
            let p = self.dir.join(&f);
            let bytes = std::fs::read(&p)
                .map_err(|e| Error::external(format!("reading {}", p.display()), e))?;
            check_state(
                &bytes,
                v.get("stateChecksum").and_then(Value::as_str),
                &p.display().to_string(),
            )?;
            checkpoint.state = Some(bytes);
        }
        Ok(Some(checkpoint))
    }

    async fn save(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        use std::io::Write;
        let io = |what: &str, e: std::io::Error| Error::external(what.to_string(), e);
        // Operator state first, in a file of its own that only the new checkpoint names.
        let state_file = match &checkpoint.state {
            Some(bytes) => {
                let name = format!("state-{}.arrow", checkpoint.batches);
                let mut f = std::fs::File::create(self.dir.join(&name))
                    .map_err(|e| io("writing checkpoint state", e))?;
                f.write_all(bytes)
                    .map_err(|e| io("writing checkpoint state", e))?;
                f.sync_all()
                    .map_err(|e| io("syncing checkpoint state", e))?;
                Some(name)
            }
            None => None,
        };
        let tmp = self.dir.join("checkpoint.json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("writing a checkpoint", e))?;
        f.write_all(
            checkpoint
                .to_json(state_file.as_deref())
                .to_string()
                .as_bytes(),
        )
        .map_err(|e| io("writing a checkpoint", e))?;
        f.sync_all().map_err(|e| io("syncing a checkpoint", e))?;
        std::fs::rename(&tmp, self.file()).map_err(|e| io("renaming a checkpoint", e))?;
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.remove_state_files(state_file.as_deref());
        Ok(())
    }

    async fn clear(&mut self) -> Result<()> {
        match std::fs::remove_file(self.file()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::external(
                    format!("removing {}", self.file().display()),
                    e,
                ));
            }
        }
        self.remove_state_files(None);
        Ok(())
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

impl DirCheckpoints {
    /// Removes the state files other than `keep` (no checkpoint names them any more).
    fn remove_state_files(&self, keep: Option<&str>) {
        let state_file = keep.map(str::to_string);
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n.starts_with("state-") && Some(&n) != state_file.as_ref() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Checkpoints in an object store (`s3://bucket/prefix`, `gs://…`, `az://…`, `file://…`):
/// the state object `state-<batch>.arrow` is put first, then `checkpoint.json` naming it. A
/// put replaces an object whole or not at all (S3, GCS and Azure guarantee it; the local
/// store writes a temporary file and renames it), so a crash leaves the old checkpoint or the
/// new one; state objects of older checkpoints are deleted afterwards.
pub struct ObjectStoreCheckpoints {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: object_store::path::Path,
    display: String,
}

impl ObjectStoreCheckpoints {
    /// A store at `url` (credentials from the environment, as for inputs).
    pub fn open(url: &str) -> Result<Self> {
        let loc = crate::connect::object_store::Location::parse(url)?;
        let store = crate::connect::object_store::store_for(&loc)?;
        Ok(ObjectStoreCheckpoints {
            store,
            prefix: loc.path,
            display: url.to_string(),
        })
    }

    /// A store inside `store`, under `prefix`.
    pub fn new(store: std::sync::Arc<dyn object_store::ObjectStore>, prefix: &str) -> Self {
        ObjectStoreCheckpoints {
            store,
            prefix: object_store::path::Path::from(prefix),
            display: prefix.to_string(),
        }
    }

    fn object(&self, name: &str) -> object_store::path::Path {
        self.prefix.clone().join(name)
    }

    fn err(&self, what: &str, e: object_store::Error) -> Error {
        Error::external(format!("{what} {}", self.display), e)
    }
}

#[async_trait::async_trait]
impl CheckpointStore for ObjectStoreCheckpoints {
    async fn load(&mut self) -> Result<Option<Checkpoint>> {
        use object_store::ObjectStoreExt;
        let at = format!("{}/checkpoint.json", self.display);
        let bytes = match self.store.get(&self.object("checkpoint.json")).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| self.err("reading the checkpoint in", e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("reading the checkpoint in", e)),
        };
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::input(&at, format!("not valid JSON: {e}")))?;
        let (mut checkpoint, state_file) = Checkpoint::from_json(&v, &at)?;
        if let Some(f) = state_file {
            let state = self
                .store
                .get(&self.object(&f))
                .await
                .map_err(|e| self.err("reading checkpoint state in", e))?
                .bytes()
                .await
                .map_err(|e| self.err("reading checkpoint state in", e))?;
            check_state(
                &state,
                v.get("stateChecksum").and_then(Value::as_str),
                &format!("{}/{f}", self.display),
            )?;
            checkpoint.state = Some(state.to_vec());
        }
        Ok(Some(checkpoint))
    }

    async fn save(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        use futures::TryStreamExt;
        use object_store::ObjectStoreExt;
        let state_file = match &checkpoint.state {
            Some(bytes) => {
                let name = format!("state-{}.arrow", checkpoint.batches);
                self.store
                    .put(&self.object(&name), bytes.clone().into())
                    .await
                    .map_err(|e| self.err("writing checkpoint state to", e))?;
                Some(name)
            }
            None => None,
        };
        let json = checkpoint.to_json(state_file.as_deref()).to_string();
        self.store
            .put(&self.object("checkpoint.json"), json.into_bytes().into())
            .await
            .map_err(|e| self.err("writing a checkpoint to", e))?;
        // State objects of older checkpoints are no longer named by any checkpoint.
        let old: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| self.err("listing", e))?;
        for meta in old {
            let name = meta.location.filename().unwrap_or_default();
            if name.starts_with("state-") && Some(name) != state_file.as_deref() {
                let _ = self.store.delete(&meta.location).await;
            }
        }
        Ok(())
    }

    async fn clear(&mut self) -> Result<()> {
        use futures::TryStreamExt;
        use object_store::ObjectStoreExt;
        match self.store.delete(&self.object("checkpoint.json")).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.err("removing the checkpoint in", e)),
        }
        let old: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| self.err("listing", e))?;
        for meta in old {
            if meta
                .location
                .filename()
                .is_some_and(|n| n.starts_with("state-"))
            {
                let _ = self.store.delete(&meta.location).await;
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.display.clone()
    }
}

/// The store for a job's `checkpoint.store`: a local directory for a plain path, an object
/// store for a URL.
pub fn open_store(location: &str) -> Result<Box<dyn CheckpointStore>> {
    if location.contains("://") {
        Ok(Box::new(ObjectStoreCheckpoints::open(location)?))
    } else {
        Ok(Box::new(DirCheckpoints::new(location)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first checkpoint with state, a schema and a plan mark.
    fn first() -> Checkpoint {
        Checkpoint {
            source: json!({"offset": 10}),
            sink: json!({"bytes": 3}),
            batches: 1,
            state: Some(vec![1, 2, 3]),
            schema: Some(std::sync::Arc::new(Schema::new(vec![
                datafusion::arrow::datatypes::Field::new(
                    "a",
                    datafusion::arrow::datatypes::DataType::Int64,
                    true,
                ),
            ]))),
            plan: Some(PlanMark {
                operator: "continuous $group".into(),
                fingerprint: fingerprint("[]"),
            }),
        }
    }

    #[tokio::test]
    async fn a_directory_store_round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DirCheckpoints::new(dir.path().join("cp")).unwrap();
        assert_eq!(store.load().await.unwrap(), None);
        let one = first();
        store.save(&one).await.unwrap();
        let two = Checkpoint {
            batches: 2,
            state: Some(vec![4, 5]),
            ..one.clone()
        };
        store.save(&two).await.unwrap();
        let mut again = DirCheckpoints::new(dir.path().join("cp")).unwrap();
        assert_eq!(again.load().await.unwrap(), Some(two));
        assert!(
            !dir.path().join("cp/state-1.arrow").exists(),
            "old state removed"
        );
        std::fs::write(dir.path().join("cp/checkpoint.json"), "{}").unwrap();
        assert!(again.load().await.is_err());
    }

    #[tokio::test]
    async fn an_object_store_keeps_the_last_checkpoint_and_its_state() {
        let memory = std::sync::Arc::new(object_store::memory::InMemory::new());
        let mut store = ObjectStoreCheckpoints::new(memory.clone(), "jobs/one");
        assert_eq!(store.load().await.unwrap(), None);
        let one = first();
        store.save(&one).await.unwrap();
        let two = Checkpoint {
            batches: 2,
            state: Some(vec![4, 5]),
            ..one.clone()
        };
        store.save(&two).await.unwrap();
        let mut again = ObjectStoreCheckpoints::new(memory.clone(), "jobs/one");
        assert_eq!(again.load().await.unwrap(), Some(two));
        use futures::TryStreamExt;
        let mut names: Vec<String> = object_store::ObjectStore::list(memory.as_ref(), None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        names.sort();
        assert_eq!(
            names,
            ["jobs/one/checkpoint.json", "jobs/one/state-2.arrow"]
        );
        // A file:// URL goes through the local object store.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/cp", dir.path().display());
        let mut local = open_store(&url).unwrap();
        local.save(&one).await.unwrap();
        assert!(dir.path().join("cp/checkpoint.json").exists());
        assert_eq!(open_store(&url).unwrap().load().await.unwrap(), Some(one));
    }
}
