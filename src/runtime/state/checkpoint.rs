//! Checkpoints: the source position, the sink's durable state and the operators' state (a
//! continuous `$group`'s groups, as Arrow IPC), saved together after each committed
//! micro-batch, so a restarted run resumes exactly where the committed output ends.
//!
//! Stores: in memory (embedding, tests), a local directory and an object store. Both of the
//! latter write state files first — `state-<batch>.arrow` with a whole state, or
//! `delta-<batch>.arrow` with the rows of the keys changed since the last checkpoint — then
//! `checkpoint.json` naming them with their checksums, replaced atomically (a temporary file
//! fsynced and renamed; a put): a crash leaves the old checkpoint or the new one, never half
//! of one. Files no checkpoint names any more are removed afterwards.
//!
//! A checkpoint with deltas is its base state with each delta upserted by key, in order. The
//! micro-batch loop writes a delta when the state can tell what changed (a continuous
//! `$group`'s keyed state) and the deltas are still small next to the base, and the whole
//! state otherwise (`runtime::exec::micro_batch`), so a checkpoint costs what the batches
//! since the last one changed, with a whole state written now and then to bound restore time.

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
    /// Operator state (Arrow IPC), if the pipeline keeps any: the whole state as of some
    /// checkpoint ...
    pub state: Option<Vec<u8>>,
    /// ... and, in order, the rows of the keys changed in each checkpoint since (upserts by
    /// key, [`CheckpointStore::save_delta`]); empty when `state` is the state now.
    pub deltas: Vec<Vec<u8>>,
    /// The schema the source read with: a restarted run (and a replay) reads with the same
    /// one, even if it was inferred from a file that has grown since.
    pub schema: Option<SchemaRef>,
    /// The operator whose state this is (`continuous $group`, `session window`, …, or
    /// `document by document`) and a fingerprint of the compiled pipeline: a restart with an
    /// edited pipeline is refused instead of reading state it cannot use. `None` in
    /// checkpoints of older versions (not checked).
    pub plan: Option<PlanMark>,
}

/// The operator kind of a pipeline that keeps no state between documents.
pub const STATELESS: &str = "document-by-document pipeline";

/// What wrote a checkpoint: the operator kind and a fingerprint of the compiled pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanMark {
    pub operator: String,
    pub fingerprint: String,
}

impl PlanMark {
    /// Refuses a checkpoint written by another pipeline, naming `store` and what changed.
    /// A stateless pipeline may change freely: its checkpoint holds only source offsets and
    /// the sink's progress, which any version can go on from.
    pub fn check(&self, written: &PlanMark, store: &str) -> Result<()> {
        let what = if self.operator != written.operator {
            format!(
                "it holds the state of a {}, the pipeline now runs a {}",
                written.operator, self.operator
            )
        } else if self.fingerprint != written.fingerprint && self.operator != STATELESS {
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
        Some(sum) if !sum.is_empty() && sum != checksum(bytes) => Err(Error::input(
            at,
            "the checkpoint's state file is damaged (its checksum does not match): start with a new checkpoint store, or run with --reset-checkpoint",
        )),
        _ => Ok(()),
    }
}

/// The state files a checkpoint names: the whole state, then the deltas since, each with
/// its checksum.
#[derive(Debug, Clone, Default, PartialEq)]
struct StateFiles {
    base: Option<(String, String)>,
    deltas: Vec<(String, String)>,
}

impl StateFiles {
    fn names(&self) -> Vec<String> {
        self.base
            .iter()
            .chain(&self.deltas)
            .map(|(f, _)| f.clone())
            .collect()
    }
}

impl Checkpoint {
    fn to_json(&self, files: &StateFiles) -> Value {
        let schema = self.schema.as_ref().and_then(|s| schema_to_hex(s).ok());
        let plan = self
            .plan
            .as_ref()
            .map(|p| json!({"operator": p.operator, "fingerprint": p.fingerprint}));
        let deltas: Vec<Value> = files
            .deltas
            .iter()
            .map(|(f, sum)| json!({"file": f, "checksum": sum}))
            .collect();
        json!({"version": 1, "source": self.source, "sink": self.sink, "batches": self.batches,
               "state": files.base.as_ref().map(|b| &b.0),
               "stateChecksum": files.base.as_ref().map(|b| &b.1),
               "deltas": deltas, "schema": schema, "plan": plan})
    }

    fn from_json(v: &Value, at: &str) -> Result<(Checkpoint, StateFiles)> {
        let bad = || Error::input(at, "not a Fluxion checkpoint (expected version 1)");
        if v.get("version").and_then(Value::as_u64) != Some(1) {
            return Err(bad());
        }
        let checkpoint = Checkpoint {
            source: v.get("source").cloned().ok_or_else(bad)?,
            sink: v.get("sink").cloned().ok_or_else(bad)?,
            batches: v.get("batches").and_then(Value::as_u64).ok_or_else(bad)?,
            state: None,
            deltas: Vec::new(),
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
        // State files sit beside the checkpoint: names, not paths.
        let file = |f: &str| -> Result<String> {
            if f.is_empty() || f.contains(['/', '\\']) || f.starts_with('.') {
                return Err(Error::input(
                    at,
                    format!(
                        "the checkpoint names \"{f}\" as a state file, which is not a file name"
                    ),
                ));
            }
            Ok(f.to_string())
        };
        let sum = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let mut files = StateFiles::default();
        if let Some(f) = v.get("state").and_then(Value::as_str) {
            files.base = Some((file(f)?, sum(v.get("stateChecksum"))));
        }
        match v.get("deltas") {
            None | Some(Value::Null) => {}
            Some(Value::Array(deltas)) if files.base.is_some() => {
                for d in deltas {
                    let f = d.get("file").and_then(Value::as_str).ok_or_else(bad)?;
                    files.deltas.push((file(f)?, sum(d.get("checksum"))));
                }
            }
            Some(Value::Array(deltas)) if deltas.is_empty() => {}
            Some(_) => return Err(bad()),
        }
        Ok((checkpoint, files))
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
    /// Replaces the last checkpoint, atomically, with `checkpoint` whose operator state is
    /// the last checkpoint's plus `delta` (Arrow IPC of the rows of the keys changed since;
    /// `checkpoint.state` is not used): what a checkpoint costs then follows what changed,
    /// not the whole state. Returns false, saving nothing, when the store cannot (it keeps
    /// no deltas, or holds no state this one could follow); the caller then saves the whole
    /// state.
    async fn save_delta(&mut self, checkpoint: &Checkpoint, delta: Vec<u8>) -> Result<bool> {
        let _ = (checkpoint, delta);
        Ok(false)
    }
    /// Removes every checkpoint: the next run starts over (`--reset-checkpoint`).
    async fn clear(&mut self) -> Result<()>;
    /// Where the checkpoints are, for messages.
    fn describe(&self) -> String {
        "the checkpoint store".to_string()
    }
    /// Records which input a micro-batch reads, before its output is written, so a restart
    /// can form the same batch again (for sinks that recognise output they already hold
    /// instead of taking it back). Kept until a checkpoint covers the batch.
    async fn log_batch(&mut self, batch: &LoggedBatch) -> Result<()> {
        let _ = batch;
        Err(Error::config(
            "checkpoint",
            "this checkpoint store cannot record micro-batches",
        ))
    }
    /// The batches logged with numbers above `after` (a checkpoint's `batches`), in order.
    async fn logged_batches(&mut self, after: u64) -> Result<Vec<LoggedBatch>> {
        let _ = after;
        Ok(Vec::new())
    }
}

/// A micro-batch's input, logged before its output is written.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedBatch {
    /// The batch's number (counting every batch of the job, over all runs).
    pub number: u64,
    /// The source position before its first record and after its last.
    pub start: Value,
    pub end: Value,
}

impl LoggedBatch {
    fn to_json(&self) -> Value {
        serde_json::json!({"batch": self.number, "start": self.start, "end": self.end})
    }

    fn from_json(v: &Value, at: &str) -> Result<LoggedBatch> {
        match (
            v.get("batch").and_then(Value::as_u64),
            v.get("start"),
            v.get("end"),
        ) {
            (Some(number), Some(start), Some(end)) => Ok(LoggedBatch {
                number,
                start: start.clone(),
                end: end.clone(),
            }),
            _ => Err(Error::input(
                at,
                "not a logged micro-batch (batch, start, end): start with a new checkpoint store, or run with --reset-checkpoint",
            )),
        }
    }
}

/// The number of a batch log file `batch-<n>.json`.
fn logged_number(name: &str) -> Option<u64> {
    name.strip_prefix("batch-")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

/// Checkpoints in memory (and the batches logged since the last).
#[derive(Debug, Default)]
pub struct MemoryCheckpoints(pub Option<Checkpoint>, pub Vec<LoggedBatch>);

#[async_trait::async_trait]
impl CheckpointStore for MemoryCheckpoints {
    async fn load(&mut self) -> Result<Option<Checkpoint>> {
        Ok(self.0.clone())
    }

    async fn save(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.0 = Some(checkpoint.clone());
        Ok(())
    }

    async fn save_delta(&mut self, checkpoint: &Checkpoint, delta: Vec<u8>) -> Result<bool> {
        let Some(held) = self.0.take_if(|c| c.state.is_some()) else {
            return Ok(false);
        };
        let mut deltas = held.deltas;
        deltas.push(delta);
        self.0 = Some(Checkpoint {
            state: held.state,
            deltas,
            ..checkpoint.clone()
        });
        Ok(true)
    }

    async fn clear(&mut self) -> Result<()> {
        self.0 = None;
        self.1.clear();
        Ok(())
    }

    async fn log_batch(&mut self, batch: &LoggedBatch) -> Result<()> {
        self.1.retain(|b| b.number < batch.number);
        self.1.push(batch.clone());
        Ok(())
    }

    async fn logged_batches(&mut self, after: u64) -> Result<Vec<LoggedBatch>> {
        Ok(self
            .1
            .iter()
            .filter(|b| b.number > after)
            .cloned()
            .collect())
    }
}

/// The files of a store: `checkpoint.json` and the state files it names, in a directory or
/// under an object-store prefix.
#[async_trait::async_trait]
pub trait StoreFiles: Send + Sync {
    /// The file's bytes, `None` if there is no such file.
    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Writes the file whole, durably: afterwards it holds the old bytes or the new ones.
    async fn write(&self, name: &str, bytes: Vec<u8>) -> Result<()>;
    /// The names of the files there.
    async fn list(&self) -> Result<Vec<String>>;
    /// Removes the file (gone already is fine).
    async fn remove(&self, name: &str) -> Result<()>;
    /// Where the files are, for messages.
    fn describe(&self) -> String;
}

/// The checkpoint protocol over [`StoreFiles`]: state files first (`state-<batch>.arrow` for
/// a whole state, `delta-<batch>.arrow` for the changes since), then `checkpoint.json`
/// naming them, with their checksums; files no checkpoint names are removed afterwards.
pub struct FileCheckpoints<F> {
    files: F,
    /// The state files the last checkpoint saved or loaded names.
    held: Option<StateFiles>,
}

/// Checkpoints in a local directory.
pub type DirCheckpoints = FileCheckpoints<LocalFiles>;

/// Checkpoints in an object store (`s3://bucket/prefix`, `gs://…`, `az://…`, `file://…`). A
/// put replaces an object whole or not at all (S3, GCS and Azure guarantee it; the local
/// store writes a temporary file and renames it), so a crash leaves the old checkpoint or the
/// new one.
pub type ObjectStoreCheckpoints = FileCheckpoints<ObjectFiles>;

const MANIFEST: &str = "checkpoint.json";

fn is_state_file(name: &str) -> bool {
    name.starts_with("state-") || name.starts_with("delta-")
}

impl<F: StoreFiles> FileCheckpoints<F> {
    /// Writes `bytes` as state file `name`; returns its name and checksum.
    async fn put_state(&self, name: String, bytes: Vec<u8>) -> Result<(String, String)> {
        let sum = checksum(&bytes);
        self.files.write(&name, bytes).await?;
        Ok((name, sum))
    }

    /// Writes `checkpoint.json` for `checkpoint` naming `files`, then removes state files no
    /// longer named.
    async fn commit(&mut self, checkpoint: &Checkpoint, files: StateFiles) -> Result<()> {
        let json = checkpoint.to_json(&files).to_string().into_bytes();
        self.files.write(MANIFEST, json).await?;
        let keep = files.names();
        self.held = Some(files);
        // A file left behind only costs space: removing is best effort.
        if let Ok(names) = self.files.list().await {
            for n in names {
                let covered = logged_number(&n).is_some_and(|b| b <= checkpoint.batches);
                if (is_state_file(&n) && !keep.contains(&n)) || covered {
                    let _ = self.files.remove(&n).await;
                }
            }
        }
        Ok(())
    }

    async fn read_state(&self, (name, sum): &(String, String)) -> Result<Vec<u8>> {
        let at = format!("{}/{name}", self.files.describe());
        let bytes = self.files.read(name).await?.ok_or_else(|| {
            Error::input(
                &at,
                "the checkpoint's state file is missing: start with a new checkpoint store, or run with --reset-checkpoint",
            )
        })?;
        check_state(&bytes, Some(sum), &at)?;
        Ok(bytes)
    }
}

#[async_trait::async_trait]
impl<F: StoreFiles> CheckpointStore for FileCheckpoints<F> {
    async fn load(&mut self) -> Result<Option<Checkpoint>> {
        let at = format!("{}/{MANIFEST}", self.files.describe());
        let Some(text) = self.files.read(MANIFEST).await? else {
            self.held = None;
            return Ok(None);
        };
        let v: Value = serde_json::from_slice(&text)
            .map_err(|e| Error::input(&at, format!("not valid JSON: {e}")))?;
        let (mut checkpoint, files) = Checkpoint::from_json(&v, &at)?;
        if let Some(base) = &files.base {
            checkpoint.state = Some(self.read_state(base).await?);
        }
        for d in &files.deltas {
            checkpoint.deltas.push(self.read_state(d).await?);
        }
        self.held = Some(files);
        Ok(Some(checkpoint))
    }

    async fn save(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let n = checkpoint.batches;
        let mut files = StateFiles::default();
        if let Some(bytes) = &checkpoint.state {
            files.base = Some(
                self.put_state(format!("state-{n}.arrow"), bytes.clone())
                    .await?,
            );
            for (i, d) in checkpoint.deltas.iter().enumerate() {
                let name = format!("delta-{n}-{i}.arrow");
                files.deltas.push(self.put_state(name, d.clone()).await?);
            }
        }
        self.commit(checkpoint, files).await
    }

    async fn save_delta(&mut self, checkpoint: &Checkpoint, delta: Vec<u8>) -> Result<bool> {
        let Some(mut files) = self.held.clone().filter(|f| f.base.is_some()) else {
            return Ok(false);
        };
        let name = format!("delta-{}.arrow", checkpoint.batches);
        // A delta of the same number (a run that stopped before its checkpoint) is replaced
        // only once the new checkpoint no longer names the old one.
        if files.names().contains(&name) {
            return Ok(false);
        }
        files.deltas.push(self.put_state(name, delta).await?);
        self.commit(checkpoint, files).await?;
        Ok(true)
    }

    async fn clear(&mut self) -> Result<()> {
        self.files.remove(MANIFEST).await?;
        self.held = None;
        for n in self.files.list().await? {
            if is_state_file(&n) || logged_number(&n).is_some() {
                self.files.remove(&n).await?;
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.files.describe()
    }

    async fn log_batch(&mut self, batch: &LoggedBatch) -> Result<()> {
        let name = format!("batch-{}.json", batch.number);
        self.files
            .write(&name, batch.to_json().to_string().into_bytes())
            .await
    }

    async fn logged_batches(&mut self, after: u64) -> Result<Vec<LoggedBatch>> {
        let mut numbers: Vec<u64> = self
            .files
            .list()
            .await?
            .iter()
            .filter_map(|n| logged_number(n))
            .filter(|n| *n > after)
            .collect();
        numbers.sort_unstable();
        let mut out = Vec::with_capacity(numbers.len());
        for n in numbers {
            let name = format!("batch-{n}.json");
            let at = format!("{}/{name}", self.files.describe());
            let Some(bytes) = self.files.read(&name).await? else {
                continue;
            };
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::input(&at, format!("not valid JSON: {e}")))?;
            out.push(LoggedBatch::from_json(&v, &at)?);
        }
        // Only an unbroken run of numbers is one run's batches.
        let mut expect = after + 1;
        out.retain(|b| {
            let next = b.number == expect;
            expect += u64::from(next);
            next
        });
        Ok(out)
    }
}

/// The files of a local directory: each written to a temporary file, fsynced, renamed over
/// the old one, and the directory synced, so a crash leaves the old file or the new one.
#[derive(Debug)]
pub struct LocalFiles {
    dir: PathBuf,
}

impl DirCheckpoints {
    /// A store in `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::external(format!("creating {}", dir.display()), e))?;
        Ok(FileCheckpoints {
            files: LocalFiles { dir },
            held: None,
        })
    }
}

#[async_trait::async_trait]
impl StoreFiles for LocalFiles {
    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::external(format!("reading {}", path.display()), e)),
        }
    }

    async fn write(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        use std::io::Write;
        let path = self.dir.join(name);
        let io = |e: std::io::Error| Error::external(format!("writing {}", path.display()), e);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::external(format!("listing {}", self.dir.display()), e))?;
        Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect())
    }

    async fn remove(&self, name: &str) -> Result<()> {
        let path = self.dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::external(format!("removing {}", path.display()), e)),
        }
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// The objects under a prefix of an object store.
pub struct ObjectFiles {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: object_store::path::Path,
    display: String,
}

impl ObjectStoreCheckpoints {
    /// A store at `url` (credentials from the environment, as for inputs).
    pub fn open(url: &str) -> Result<Self> {
        let loc = crate::connect::object_store::Location::parse(url)?;
        let store = crate::connect::object_store::store_for(&loc)?;
        Ok(FileCheckpoints {
            files: ObjectFiles {
                store,
                prefix: loc.path,
                display: url.to_string(),
            },
            held: None,
        })
    }

    /// A store inside `store`, under `prefix`.
    pub fn new(store: std::sync::Arc<dyn object_store::ObjectStore>, prefix: &str) -> Self {
        FileCheckpoints {
            files: ObjectFiles {
                store,
                prefix: object_store::path::Path::from(prefix),
                display: prefix.to_string(),
            },
            held: None,
        }
    }
}

impl ObjectFiles {
    fn object(&self, name: &str) -> object_store::path::Path {
        self.prefix.clone().join(name)
    }

    fn err(&self, what: &str, e: object_store::Error) -> Error {
        Error::external(format!("{what} {}", self.display), e)
    }
}

#[async_trait::async_trait]
impl StoreFiles for ObjectFiles {
    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        use object_store::ObjectStoreExt;
        match self.store.get(&self.object(name)).await {
            Ok(r) => Ok(Some(
                r.bytes()
                    .await
                    .map_err(|e| self.err(&format!("reading {name} in"), e))?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(&format!("reading {name} in"), e)),
        }
    }

    async fn write(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        use object_store::ObjectStoreExt;
        self.store
            .put(&self.object(name), bytes.into())
            .await
            .map_err(|e| self.err(&format!("writing {name} to"), e))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| self.err("listing", e))?;
        Ok(metas
            .iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .collect())
    }

    async fn remove(&self, name: &str) -> Result<()> {
        use object_store::ObjectStoreExt;
        match self.store.delete(&self.object(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(&format!("removing {name} in"), e)),
        }
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
            deltas: Vec::new(),
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

    #[test]
    fn only_a_pipeline_with_state_must_match_its_checkpoint() {
        let mark = |operator: &str, stages: &str| PlanMark {
            operator: operator.into(),
            fingerprint: fingerprint(stages),
        };
        let group = mark("continuous $group", "[1]");
        assert!(
            mark("continuous $group", "[2]")
                .check(&group, "cp")
                .is_err()
        );
        assert!(mark(STATELESS, "[1]").check(&group, "cp").is_err());
        assert!(group.check(&group, "cp").is_ok());
        // Offsets and sink progress carry over to any stateless version.
        assert!(
            mark(STATELESS, "[2]")
                .check(&mark(STATELESS, "[1]"), "cp")
                .is_ok()
        );
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

    /// A store keeps a whole state and the deltas after it, in order, and forgets the deltas
    /// when a whole state comes again; a store that has not seen a whole state refuses deltas.
    async fn keeps_deltas_after_a_whole_state(
        mut store: Box<dyn CheckpointStore>,
        mut again: impl FnMut() -> Box<dyn CheckpointStore>,
    ) {
        let one = first();
        let next = |n: u64| Checkpoint {
            batches: n,
            state: None,
            source: json!({"offset": n}),
            ..one.clone()
        };
        assert!(!store.save_delta(&next(2), vec![9]).await.unwrap());
        store.save(&one).await.unwrap();
        assert!(store.save_delta(&next(2), vec![4]).await.unwrap());
        assert!(store.save_delta(&next(3), vec![5, 6]).await.unwrap());
        let loaded = again().load().await.unwrap().unwrap();
        assert_eq!(loaded.source, json!({"offset": 3}));
        assert_eq!(loaded.state, one.state);
        assert_eq!(loaded.deltas, vec![vec![4], vec![5, 6]]);
        // A reopened store continues after what it loaded.
        let mut reopened = again();
        reopened.load().await.unwrap();
        assert!(reopened.save_delta(&next(4), vec![7]).await.unwrap());
        let loaded = again().load().await.unwrap().unwrap();
        assert_eq!(loaded.deltas.len(), 3);
        let whole = Checkpoint {
            batches: 5,
            state: Some(vec![8]),
            ..one.clone()
        };
        reopened.save(&whole).await.unwrap();
        assert_eq!(again().load().await.unwrap(), Some(whole));
    }

    #[tokio::test]
    async fn stores_keep_deltas_after_a_whole_state_and_forget_them_after_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let cp = dir.path().join("cp");
        let open = || Box::new(DirCheckpoints::new(&cp).unwrap()) as Box<dyn CheckpointStore>;
        keeps_deltas_after_a_whole_state(open(), open).await;
        let mut files: Vec<String> = std::fs::read_dir(&cp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        files.sort();
        assert_eq!(files, ["checkpoint.json", "state-5.arrow"]);
        let memory = std::sync::Arc::new(object_store::memory::InMemory::new());
        let open = || {
            Box::new(ObjectStoreCheckpoints::new(memory.clone(), "jobs/two"))
                as Box<dyn CheckpointStore>
        };
        keeps_deltas_after_a_whole_state(open(), open).await;
        let mut mem = MemoryCheckpoints::default();
        assert!(!mem.save_delta(&first(), vec![1]).await.unwrap());
        mem.save(&first()).await.unwrap();
        assert!(mem.save_delta(&first(), vec![1]).await.unwrap());
        assert_eq!(mem.load().await.unwrap().unwrap().deltas, vec![vec![1]]);
    }

    /// A damaged or missing delta is an error naming it, like a damaged state file.
    #[tokio::test]
    async fn a_damaged_delta_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cp = dir.path().join("cp");
        let mut store = DirCheckpoints::new(&cp).unwrap();
        store.save(&first()).await.unwrap();
        let next = Checkpoint {
            batches: 2,
            ..first()
        };
        assert!(store.save_delta(&next, vec![1, 2, 3, 4]).await.unwrap());
        std::fs::write(cp.join("delta-2.arrow"), [9, 9]).unwrap();
        let e = DirCheckpoints::new(&cp).unwrap().load().await.unwrap_err();
        assert!(
            e.to_string().contains("delta-2.arrow") && e.to_string().contains("damaged"),
            "{e}"
        );
        std::fs::remove_file(cp.join("delta-2.arrow")).unwrap();
        let e = DirCheckpoints::new(&cp).unwrap().load().await.unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
