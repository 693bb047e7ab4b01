//! Operator state kept by key: rows of Arrow batches with an index from each row's key (its
//! `_id`, in Arrow's row format) to where the row is, so a micro-batch reads and replaces only
//! the rows of the keys it touches — the cost of a batch follows the batch, not the state.
//!
//! Replaced rows are marked dead and new ones appended as a batch; when dead rows outnumber
//! live ones, the live rows are packed into one batch again. A [`Snapshot`] (cheap: shared
//! batches and copies of the live bitmaps) is what a checkpoint serializes, as Arrow IPC of
//! the live rows — all of them, or only those of the batches appended since an earlier
//! snapshot's [`Mark`] ([`Snapshot::since`]): the rows of every key changed since, which
//! upserted into the earlier state give this one.

use std::collections::HashMap;
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{ArrayRef, BooleanArray, BooleanBufferBuilder};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, interleave_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};

use crate::{Error, Result};

/// Rows by key.
pub struct KeyedState {
    /// Which column holds the key.
    key: String,
    schema: Option<SchemaRef>,
    converter: Option<RowConverter>,
    batches: Vec<RecordBatch>,
    live: Vec<BooleanBufferBuilder>,
    /// Each batch's generation: the number of the upsert that appended it.
    generations: Vec<u64>,
    next_generation: u64,
    /// Changes when the batches are packed or replaced: a mark of another epoch cannot be
    /// followed.
    epoch: u64,
    /// Each key's entry: the number of its place in `places`. Entries stay as long as the
    /// state, so a [`Located`] batch can be upserted without hashing its keys again.
    index: HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
    /// Where each entry's live row is: (batch, row).
    places: Vec<(u32, u32)>,
    dead: usize,
}

/// Where the keys of a batch are in a [`KeyedState`] ([`KeyedState::locate`]): their
/// converted form and, for each, its entry if the state has it.
pub struct Located {
    keys: datafusion::arrow::row::Rows,
    at: Vec<Option<u32>>,
    /// Which of `keys` each key is, when the batch had keys more than once
    /// ([`KeyedState::locate_grouped`]); `None`: key `k` is `keys.row(k)`.
    rows: Option<Vec<u32>>,
}

impl Located {
    /// Key `k` in its converted form.
    fn key(&self, k: usize) -> datafusion::arrow::row::Row<'_> {
        self.keys
            .row(self.rows.as_ref().map_or(k, |r| r[k] as usize))
    }

    /// For each key, the first row of the located batch that has it (`None` when each row
    /// was a key of its own).
    pub fn first_rows(&self) -> Option<&[u32]> {
        self.rows.as_deref()
    }

    /// How many of the keys the state has.
    pub fn found(&self) -> usize {
        self.at.iter().filter(|e| e.is_some()).count()
    }
}

/// Where a keyed state stood at a snapshot: later snapshots of the same state can give the
/// rows changed since ([`Snapshot::since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    epoch: u64,
    generation: u64,
}

/// A number no other state of this process has had.
fn new_epoch() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The live rows at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    batches: Vec<RecordBatch>,
    live: Vec<BooleanArray>,
    rows: u64,
    /// The rows' schema, and metadata saved with it (an operator's own numbers).
    schema: Option<SchemaRef>,
    meta: Vec<(String, String)>,
    /// Of a keyed state: each batch's generation, and where the state stood.
    generations: Vec<u64>,
    mark: Option<Mark>,
}

impl Snapshot {
    /// A snapshot of rows that are all live, with `meta` saved in the schema's metadata.
    pub fn of(
        schema: Option<SchemaRef>,
        batches: Vec<RecordBatch>,
        meta: Vec<(String, String)>,
    ) -> Snapshot {
        let live = batches
            .iter()
            .map(|b| BooleanArray::from(vec![true; b.num_rows()]))
            .collect();
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        Snapshot {
            batches,
            live,
            rows,
            schema,
            meta,
            generations: Vec::new(),
            mark: None,
        }
    }

    /// Where the state stood (`None` for state that is not kept by key).
    pub fn mark(&self) -> Option<Mark> {
        self.mark
    }

    /// The live rows of the batches appended after `mark` (an earlier snapshot's of the same
    /// state): the rows of every key changed since. `None` when this snapshot cannot tell
    /// (state not kept by key, or packed since).
    pub fn since(&self, mark: Mark) -> Option<Snapshot> {
        let now = self.mark?;
        if now.epoch != mark.epoch || now.generation < mark.generation {
            return None;
        }
        let mut out = Snapshot {
            schema: self.schema.clone(),
            ..Snapshot::default()
        };
        for ((b, live), g) in self.batches.iter().zip(&self.live).zip(&self.generations) {
            if *g >= mark.generation {
                out.rows += live.true_count() as u64;
                out.batches.push(b.clone());
                out.live.push(live.clone());
            }
        }
        Some(out)
    }

    /// How many live rows.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Memory held by the state's batches (dead rows included, until they are packed away).
    pub fn bytes(&self) -> u64 {
        self.batches
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum()
    }

    /// The live rows as batches.
    pub fn batches(&self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::with_capacity(self.batches.len());
        for (b, live) in self.batches.iter().zip(&self.live) {
            let kept = if live.true_count() == b.num_rows() {
                b.clone()
            } else {
                filter_record_batch(b, live)?
            };
            if kept.num_rows() > 0 {
                out.push(kept);
            }
        }
        Ok(out)
    }

    /// The live rows as Arrow IPC bytes (empty for no rows), for a checkpoint.
    pub fn to_ipc(&self) -> Result<Vec<u8>> {
        let batches = self.batches()?;
        let schema = match (batches.first(), &self.schema) {
            (Some(first), _) => first.schema(),
            (None, Some(s)) if !self.meta.is_empty() => s.clone(),
            _ if self.meta.is_empty() => return Ok(Vec::new()),
            // Metadata to keep but no rows yet: an empty schema carries it.
            _ => Arc::new(datafusion::arrow::datatypes::Schema::empty()),
        };
        let schema = schema
            .as_ref()
            .clone()
            .with_metadata(self.meta.iter().cloned().collect());
        let mut buf = Vec::new();
        let mut w = datafusion::arrow::ipc::writer::FileWriter::try_new(&mut buf, &schema)?;
        for b in &batches {
            w.write(&RecordBatch::try_new(
                Arc::new(schema.clone()),
                b.columns().to_vec(),
            )?)?;
        }
        w.finish()?;
        drop(w);
        Ok(buf)
    }
}

impl KeyedState {
    /// No rows yet; `key` names the key column.
    pub fn new(key: &str) -> Self {
        KeyedState {
            key: key.to_string(),
            schema: None,
            converter: None,
            batches: Vec::new(),
            live: Vec::new(),
            generations: Vec::new(),
            next_generation: 0,
            epoch: new_epoch(),
            index: HashMap::default(),
            places: Vec::new(),
            dead: 0,
        }
    }

    /// How many live rows.
    pub fn len(&self) -> usize {
        self.places.len()
    }

    /// Memory held by the batches (dead rows included, until they are packed away).
    pub fn bytes(&self) -> u64 {
        self.batches
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum()
    }

    /// True without live rows.
    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    fn keys(&mut self, batch: &RecordBatch) -> Result<datafusion::arrow::row::Rows> {
        let column: ArrayRef = batch
            .column_by_name(&self.key)
            .ok_or_else(|| {
                Error::external(
                    "keyed state",
                    std::io::Error::other(format!("no key column {}", self.key)),
                )
            })?
            .clone();
        if self.converter.is_none() {
            self.converter = Some(RowConverter::new(vec![SortField::new(
                column.data_type().clone(),
            )])?);
        }
        let converter = self.converter.as_ref().expect("just made");
        Ok(converter.convert_columns(&[column])?)
    }

    /// Where the keys in `batch`'s key column are (each key once in `batch`).
    pub fn locate(&mut self, batch: &RecordBatch) -> Result<Located> {
        let keys = self.keys(batch)?;
        let at = if self.index.is_empty() {
            vec![None; keys.num_rows()]
        } else {
            keys.iter()
                .map(|k| self.index.get(k.as_ref()).copied())
                .collect()
        };
        Ok(Located {
            keys,
            at,
            rows: None,
        })
    }

    /// Where the keys in `batch`'s key column are, when a key may come more than once: each
    /// key once (in the order of their first rows), and for each row the number of its key.
    /// A key the state has is told apart by its entry (a number: no second hash of its
    /// bytes); only keys new to the state are compared by their bytes.
    pub fn locate_grouped(&mut self, batch: &RecordBatch) -> Result<(Located, Vec<u32>)> {
        let keys = self.keys(batch)?;
        let mut by_entry = vec![u32::MAX; self.places.len()];
        let mut new_keys: HashMap<&[u8], u32, foldhash::fast::RandomState> = HashMap::default();
        let mut of_row = Vec::with_capacity(keys.num_rows());
        let mut rows = Vec::new();
        let mut at = Vec::new();
        for i in 0..keys.num_rows() {
            let k: &[u8] = keys.row(i).data();
            let entry = self.index.get(k).copied();
            let known = match entry {
                Some(e) => by_entry[e as usize],
                None => new_keys.get(k).copied().unwrap_or(u32::MAX),
            };
            let n = if known != u32::MAX {
                known
            } else {
                let n = rows.len() as u32;
                match entry {
                    Some(e) => by_entry[e as usize] = n,
                    None => {
                        new_keys.insert(k, n);
                    }
                }
                rows.push(i as u32);
                at.push(entry);
                n
            };
            of_row.push(n);
        }
        drop(new_keys);
        Ok((
            Located {
                keys,
                at,
                rows: Some(rows),
            },
            of_row,
        ))
    }

    /// The live rows of the keys `located` found, in the order of its keys, and for each the
    /// number of its key; `None` if it found none.
    pub fn rows_at(&self, located: &Located) -> Result<Option<(RecordBatch, Vec<u32>)>> {
        let mut at = Vec::new();
        let mut of = Vec::new();
        for (i, e) in located.at.iter().enumerate() {
            if let Some(e) = e {
                let (b, r) = self.places[*e as usize];
                at.push((b as usize, r as usize));
                of.push(i as u32);
            }
        }
        if at.is_empty() {
            return Ok(None);
        }
        let sources: Vec<&RecordBatch> = self.batches.iter().collect();
        Ok(Some((interleave_record_batch(&sources, &at)?, of)))
    }

    /// The live rows whose keys are in `keys`' key column (in that order; keys without a row
    /// are left out), or `None` if there are none.
    pub fn rows_for(&mut self, keys: &RecordBatch) -> Result<Option<RecordBatch>> {
        let located = self.locate(keys)?;
        Ok(self.rows_at(&located)?.map(|(rows, _)| rows))
    }

    /// Puts `rows` in, replacing the rows of their keys (each key once in `rows`).
    pub fn upsert(&mut self, rows: RecordBatch) -> Result<()> {
        let mut located = self.locate(&rows)?;
        let order: Vec<u32> = (0..rows.num_rows() as u32).collect();
        self.upsert_located(rows, &order, &mut located)
    }

    /// Puts `rows` in, replacing the rows of their keys, where row `i`'s key is key
    /// `order[i]` of `located` (located in this state: entries stay, so upserts since do not
    /// matter, and `located` learns the entries of keys new to the state): the keys are not
    /// converted or looked up again.
    pub fn upsert_located(
        &mut self,
        rows: RecordBatch,
        order: &[u32],
        located: &mut Located,
    ) -> Result<()> {
        if order.len() != rows.num_rows() || order.iter().any(|&k| k as usize >= located.at.len()) {
            return Err(Error::internal(
                "keyed state: upserted rows do not match their located keys",
            ));
        }
        if rows.num_rows() == 0 {
            return Ok(());
        }
        // Rows of the state's first schema, so every batch can be read together.
        let rows = match &self.schema {
            Some(s) if s != &rows.schema() => {
                RecordBatch::try_new(s.clone(), rows.columns().to_vec())?
            }
            Some(_) => rows,
            None => {
                self.schema = Some(rows.schema());
                rows
            }
        };
        let b = self.batches.len() as u32;
        let mut live = BooleanBufferBuilder::new(rows.num_rows());
        live.append_n(rows.num_rows(), true);
        self.live.push(live);
        self.batches.push(rows);
        self.generations.push(self.next_generation);
        self.next_generation += 1;
        for (i, &k) in order.iter().enumerate() {
            let k = k as usize;
            let entry = match located.at[k] {
                Some(e) => Some(e),
                // Not there when located; there now if the same key came earlier in `rows`.
                None => self.index.get(located.key(k).as_ref()).copied(),
            };
            match entry {
                // A key already there keeps its entry (no new allocation): most upserts replace.
                Some(e) => {
                    let (ob, or) = std::mem::replace(&mut self.places[e as usize], (b, i as u32));
                    self.live[ob as usize].set_bit(or as usize, false);
                    self.dead += 1;
                    located.at[k] = Some(e);
                }
                None => {
                    let e = self.places.len() as u32;
                    self.places.push((b, i as u32));
                    self.index.insert(located.key(k).as_ref().into(), e);
                    located.at[k] = Some(e);
                }
            }
        }
        if self.dead > self.places.len() {
            self.compact()?;
        }
        Ok(())
    }

    /// Packs the live rows into one batch. The index keeps its keys; only where each row is
    /// changes (its rank among the live rows), so packing costs no hashing.
    fn compact(&mut self) -> Result<()> {
        let Some(schema) = self.schema.clone() else {
            return Ok(());
        };
        let rows = self.snapshot().batches()?;
        let mut new_at: Vec<Vec<u32>> = Vec::with_capacity(self.live.len());
        let mut next = 0u32;
        for live in &self.live {
            let mut at = vec![u32::MAX; live.len()];
            for (r, slot) in at.iter_mut().enumerate() {
                if live.get_bit(r) {
                    *slot = next;
                    next += 1;
                }
            }
            new_at.push(at);
        }
        for at in &mut self.places {
            *at = (0, new_at[at.0 as usize][at.1 as usize]);
        }
        let all = concat_batches(&schema, &rows)?;
        let mut live = BooleanBufferBuilder::new(all.num_rows());
        live.append_n(all.num_rows(), true);
        self.batches = vec![all];
        self.live = vec![live];
        self.generations = vec![self.next_generation];
        self.next_generation += 1;
        self.dead = 0;
        self.epoch = new_epoch();
        Ok(())
    }

    /// The live rows now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            batches: self.batches.clone(),
            live: self
                .live
                .iter()
                .map(|l| BooleanArray::new(l.finish_cloned(), None))
                .collect(),
            rows: self.places.len() as u64,
            schema: self.schema.clone(),
            meta: Vec::new(),
            generations: self.generations.clone(),
            mark: Some(Mark {
                epoch: self.epoch,
                generation: self.next_generation,
            }),
        }
    }

    /// Back to the rows of a checkpoint (IPC bytes from [`Snapshot::to_ipc`]).
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        *self = KeyedState::new(&self.key);
        if bytes.is_empty() {
            return Ok(());
        }
        self.apply(bytes)
    }

    /// Upserts checkpointed rows (IPC bytes from [`Snapshot::to_ipc`]): a delta saved after
    /// the state restored last.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let (schema, batches) = read_ipc(bytes)?;
        self.upsert(concat_batches(&schema, &batches)?)
    }
}

/// The schema (with its metadata) and batches of checkpointed state (from
/// [`Snapshot::to_ipc`]).
pub fn read_ipc(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let read = || -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let reader = datafusion::arrow::ipc::reader::FileReader::try_new(
            std::io::Cursor::new(bytes.to_vec()),
            None,
        )?;
        let schema = reader.schema();
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        Ok((schema, batches))
    };
    // Arrow's IPC reader trusts the lengths it reads and can panic on a damaged file; a
    // checkpoint's checksum catches damage first, this catches it in checkpoints without one.
    std::panic::catch_unwind(read).unwrap_or_else(|_| {
        Err(Error::input(
            "checkpoint state",
            "the state file is damaged (not readable as Arrow IPC): start with a new checkpoint store, or run with --reset-checkpoint",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn rows(ids: &[&str], n: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("_id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Int64Array::from(n.to_vec())),
            ],
        )
        .unwrap()
    }

    fn ns(b: &RecordBatch) -> Vec<i64> {
        b.column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    /// Rows upserted by located keys, in another order than the keys were located in, land
    /// under the right keys; a key new to the state and repeated is kept once (its last row);
    /// the located entries stay right across a packing.
    #[test]
    fn rows_upserted_by_located_keys_land_under_their_keys() {
        let mut s = KeyedState::new("_id");
        s.upsert(rows(&["a", "b", "c"], &[1, 2, 3])).unwrap();
        let asked = rows(&["c", "x", "a"], &[0, 0, 0]);
        let mut located = s.locate(&asked).unwrap();
        assert_eq!(located.found(), 2);
        let (found, of) = s.rows_at(&located).unwrap().unwrap();
        assert_eq!((ns(&found), of), (vec![3, 1], vec![0, 2]));
        // Merged rows for a, x, c and x again, in that order.
        s.upsert_located(
            rows(&["a", "x", "c", "x"], &[10, 60, 30, 61]),
            &[2, 1, 0, 1],
            &mut located,
        )
        .unwrap();
        assert_eq!(s.len(), 4);
        // Packed now (more dead rows than live would be), then upserted by the same entries.
        s.upsert(rows(&["b"], &[20])).unwrap();
        s.upsert(rows(&["b"], &[21])).unwrap();
        s.upsert_located(rows(&["x"], &[62]), &[1], &mut located)
            .unwrap();
        let all = rows(&["a", "b", "c", "x"], &[0, 0, 0, 0]);
        assert_eq!(ns(&s.rows_for(&all).unwrap().unwrap()), [10, 21, 30, 62]);
        assert_eq!(s.len(), 4);
        // Rows that do not match their keys are refused, the state left as it was.
        assert!(
            s.upsert_located(rows(&["a"], &[0]), &[7], &mut located)
                .is_err()
        );
        assert!(
            s.upsert_located(rows(&["a"], &[0]), &[], &mut located)
                .is_err()
        );
        assert_eq!(ns(&s.rows_for(&all).unwrap().unwrap()), [10, 21, 30, 62]);
    }

    #[test]
    fn replaces_rows_by_key_reads_only_those_asked_for_and_survives_a_checkpoint() {
        let mut s = KeyedState::new("_id");
        s.upsert(rows(&["a", "b", "c"], &[1, 2, 3])).unwrap();
        s.upsert(rows(&["b"], &[20])).unwrap();
        s.upsert(rows(&["c", "d"], &[30, 4])).unwrap();
        assert_eq!(s.len(), 4);
        let got = s
            .rows_for(&rows(&["d", "x", "b"], &[0, 0, 0]))
            .unwrap()
            .unwrap();
        assert_eq!(ns(&got), [4, 20]);
        // Five dead rows against four live: packed into one batch.
        s.upsert(rows(&["a", "b", "c"], &[10, 21, 31])).unwrap();
        assert_eq!(s.batches.len(), 1);
        let snap = s.snapshot();
        let mut all: Vec<i64> = snap.batches().unwrap().iter().flat_map(ns).collect();
        all.sort();
        assert_eq!(all, [4, 10, 21, 31]);
        let mut back = KeyedState::new("_id");
        back.restore(&snap.to_ipc().unwrap()).unwrap();
        assert_eq!(back.len(), 4);
        let got = back.rows_for(&rows(&["a"], &[0])).unwrap().unwrap();
        assert_eq!(ns(&got), [10]);
        assert!(
            KeyedState::new("_id")
                .rows_for(&rows(&["a"], &[0]))
                .unwrap()
                .is_none()
        );
    }

    /// The rows changed since a snapshot, upserted into that snapshot's state, give the state
    /// now; once packed, a state cannot tell what changed since a mark of before.
    #[test]
    fn a_snapshot_gives_the_rows_changed_since_an_earlier_one() {
        let all = |s: &KeyedState| {
            let mut v: Vec<i64> = s
                .snapshot()
                .batches()
                .unwrap()
                .iter()
                .flat_map(ns)
                .collect();
            v.sort();
            v
        };
        let mut s = KeyedState::new("_id");
        s.upsert(rows(&["a", "b", "c", "d", "e"], &[1, 2, 3, 4, 5]))
            .unwrap();
        let first = s.snapshot();
        let mark = first.mark().unwrap();
        s.upsert(rows(&["b", "x"], &[20, 6])).unwrap();
        s.upsert(rows(&["x"], &[60])).unwrap();
        let delta = s.snapshot().since(mark).unwrap();
        let mut changed: Vec<i64> = delta.batches().unwrap().iter().flat_map(ns).collect();
        changed.sort();
        assert_eq!(changed, [20, 60], "b and x, each once, as they are now");
        assert_eq!(delta.rows(), 2);
        let mut back = KeyedState::new("_id");
        back.restore(&first.to_ipc().unwrap()).unwrap();
        back.apply(&delta.to_ipc().unwrap()).unwrap();
        assert_eq!(all(&back), all(&s));
        // Nothing changed: an empty delta.
        let now = s.snapshot();
        assert_eq!(now.since(now.mark().unwrap()).unwrap().rows(), 0);
        // Packed (more dead rows than live): the old mark cannot be followed.
        s.upsert(rows(&["a", "c", "d", "e", "x"], &[7, 8, 9, 10, 11]))
            .unwrap();
        assert_eq!(s.batches.len(), 1);
        assert!(s.snapshot().since(mark).is_none());
        // Nor can another state's, or one of state not kept by key.
        assert!(back.snapshot().since(mark).is_none());
        assert!(Snapshot::of(None, Vec::new(), Vec::new()).mark().is_none());
    }
}
