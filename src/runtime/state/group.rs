//! Continuous `$group` on a stream: each micro-batch updates the groups' state, and the
//! groups it changed are emitted as upserts keyed by `_id` (the last document per `_id` is the
//! group's current value; after the whole input it equals a batch `$group`).
//!
//! Each accumulator is split in two `$group`s: a *partial* one over the micro-batch and a
//! *merge* one over the touched groups' state rows followed by the batch's partial rows (one
//! table in that order, so `$first` keeps the earliest and `$last` takes the latest, and the
//! upserts come out in the same order whenever a batch is merged). The merge groups by the
//! number of the partial row a row belongs to (its slot) rather than by `_id` again: a number
//! hashes cheaply whatever the key's type, and the slot tells the state where each merged row
//! goes without looking its key up a second time. `$sum`
//! `$count` `$min` `$max` `$first` `$last` merge as themselves (`$count` as a `$sum`);
//! `$push` `$addToSet` `$firstN` `$lastN` `$maxN` `$minN` keep arrays, concatenated and then
//! cut (first / last n, n largest / smallest, without repeats); `$mergeObjects` merges the
//! batches' merged objects in order; `$avg` keeps a sum and a count
//! of numbers, `$stdDevPop` / `$stdDevSamp` a sum, a sum of squares and a count. Only the
//! groups a batch touches are read from the state ([`KeyedState`]) and merged, so a batch
//! costs what it holds, not what the state holds. The state is saved with checkpoints (Arrow
//! IPC), so a restarted stream continues with the groups as they were.
//!
//! When every field merges elementwise (`$sum` `$count` `$avg` `$stdDevPop` `$stdDevSamp`
//! `$first` `$last`), one batch's partial rows are merged without the merge query: each is
//! combined with its key's state row ([`crate::runtime::state::row_merge`]), with the query's
//! results, at a fraction of its cost for a small batch.
//!
//! The partial rows of several micro-batches can be held and merged at once
//! ([`ContinuousGroup::hold`], the runtime's `groupUpserts: "atCheckpoint"`): then a group
//! several of them touched is read, merged and emitted once, and the per-merge work (locating
//! keys, the merge plan, the state's writes) is paid once for them all. A key may then come in
//! several partial rows: the slots number the keys, not the rows, and the rows of a key merge
//! in the order their batches came.
//!
//! Stages after the `$group` may change each upsert on its own — `$project`, `$addFields` /
//! `$set`, `$unset` that leave `_id` alone; a `$match` there could not take back an upsert it
//! drops, so it is rejected (as are stages that need every group).

use datafusion::arrow::compute::concat_batches;
use std::sync::Arc;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Column;
use datafusion::functions::expr_fn::{greatest, sqrt};
use datafusion::functions_nested::expr_fn::{
    array_distinct, array_length, array_slice, array_sort, flatten,
};
use datafusion::logical_expr::{Expr, cast, lit, when};

use crate::document::hidden;
use crate::dsl::accumulator::Acc;
use crate::dsl::expression::{Expression, Family, Operator};
use crate::dsl::group::{Accumulator, Group};
use crate::dsl::{FieldPath, Pipeline, Stage, StageKind};
use crate::plan::order;
use crate::runtime::metrics::StageMetrics;
use crate::runtime::prepared::{BoundTable, Prepared, register_numbered};
use crate::runtime::state::keyed::{KeyedState, Snapshot};
use crate::runtime::state::row_merge::{self, RowMerge};
use crate::{Engine, Result};

const STATE: &str = hidden::GROUP_STATE_TABLE;

/// A column by its exact name (`col` would fold an unquoted camelCase name to lower case).
fn col(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}
const UPSERTS: &str = hidden::GROUP_UPSERTS_TABLE;

/// How one output field is kept.
#[derive(Debug, Clone)]
enum Kept {
    /// One state column, merged by the same kind of accumulator (`$sum` for counts).
    Plain,
    /// Arrays merged by concatenation, then kept as `post` says.
    Arrays(Post),
    /// `$sum`: the sum and what its rounding left out (compensated summation).
    Sum,
    /// `$avg`: a sum and a count of numbers.
    Average,
    /// `$stdDevPop` / `$stdDevSamp`: a sum, a sum of squares and a count of numbers.
    StdDev { sample: bool },
}

/// What becomes of concatenated arrays.
#[derive(Debug, Clone, Copy)]
enum Post {
    /// `$push`: all of them.
    All,
    /// `$addToSet`: without repeats.
    Distinct,
    /// `$firstN` / `$lastN`: the first or last n.
    First(u64),
    Last(u64),
    /// `$maxN` / `$minN`: the n largest (descending) or smallest (ascending).
    Max(u64),
    Min(u64),
}

/// The state and plans of a continuous `$group`.
pub struct ContinuousGroup {
    /// The stages before `$group`, then the partial `$group`.
    partial: Pipeline,
    /// Stages after `$group` (they keep `_id`), applied to the upserts.
    after: Pipeline,
    /// The merge `$group` over the touched state rows followed by the partial rows.
    merge: Pipeline,
    parts: GroupParts,
    state: KeyedState,
    /// The plans, made at the first batch and kept while the tables they read stay the same.
    plans: Box<Plans>,
    /// Micro-batches' aggregates not merged into the state yet, and their rows.
    held: Vec<RecordBatch>,
    held_rows: usize,
    /// Whether aggregates are held until [`ContinuousGroup::merge`] (else merged at once).
    hold: bool,
}

/// The plans of a continuous `$group`: the partial `$group` over the stream's table, the
/// merge, and the upserts' output form.
#[derive(Default)]
struct Plans {
    partial: Option<(Arc<BoundTable>, Prepared)>,
    merge: Option<MergePlans>,
    output: Option<(Arc<BoundTable>, Prepared)>,
}

/// A `$group` taken apart for incremental work: partial accumulators over some documents,
/// merge accumulators over partial rows (grouped by `_id` again), and how each field's kept
/// state becomes its value. Partial rows and merged rows have the same form (the *state*
/// form), so merging can go on batch after batch.
#[derive(Debug, Clone)]
pub struct GroupParts {
    /// The partial `$group`'s accumulators (the group's `_id` is the caller's).
    pub partial: Vec<Accumulator>,
    merge: Vec<Accumulator>,
    fields: Vec<(String, Kept)>,
    /// How each field merges row by row, when every one can (`runtime::state::row_merge`).
    row_merges: Option<Vec<RowMerge>>,
    at: crate::dsl::JsonPath,
}

impl ContinuousGroup {
    /// The continuous form of `pipeline` when it has a `$group` (`None` without one).
    pub fn plan(pipeline: &Pipeline) -> Result<Option<ContinuousGroup>> {
        let Some((before, last, after)) = split_at_group(pipeline) else {
            return Ok(None);
        };
        let StageKind::Group(g) = &last.kind else {
            unreachable!("split at a $group")
        };
        check_after(after)?;
        let at = &last.path;
        let parts = GroupParts::of(g, at)?;
        let mut partial_stages = before.to_vec();
        partial_stages.push(Stage {
            kind: StageKind::Group(Group {
                id: g.id.clone(),
                fields: parts.partial.clone(),
            }),
            path: at.clone(),
        });
        // The touched groups' state rows and then the batch's partial rows are one table
        // read in one partition: their order (and so the upserts') is the same every time the
        // batch is merged, which re-forming a batch after a crash relies on.
        let merge_stages = vec![parts.merge_stage_by(hidden::GROUP_SLOT)];
        Ok(Some(ContinuousGroup {
            partial: Pipeline {
                stages: partial_stages,
            },
            after: Pipeline {
                stages: after.to_vec(),
            },
            merge: Pipeline {
                stages: merge_stages,
            },
            parts,
            state: KeyedState::new("_id"),
            plans: Box::default(),
            held: Vec::new(),
            held_rows: 0,
            hold: false,
        }))
    }

    /// Aggregates the micro-batch bound to `stream` (registered as `table`, `batch_rows`
    /// documents) and, unless its aggregates are held for later ([`ContinuousGroup::hold`]),
    /// merges them into the state; returns the upserts of the groups that changed.
    pub async fn step(
        &mut self,
        engine: &Engine,
        stream: &Arc<BoundTable>,
        table: &str,
        batch_rows: usize,
        stages: &mut Vec<StageMetrics>,
    ) -> Result<Vec<RecordBatch>> {
        let mut upserts = Vec::new();
        // The partial plan reads the stream's table: planned again only when that changed.
        if !self
            .plans
            .partial
            .as_ref()
            .is_some_and(|(t, _)| Arc::ptr_eq(t, stream))
        {
            // Aggregates held from the old plan are merged first: the new plan's may have
            // another form.
            upserts = self.merge(engine, stages).await?;
            let df = engine.pipeline(table, &self.partial).await?;
            self.plans.partial = Some((stream.clone(), Prepared::new(engine.context(), df).await?));
            self.plans.merge = None;
        }
        let Some((_, partial_plan)) = self.plans.partial.as_mut() else {
            return Err(crate::Error::internal("the partial $group was not planned"));
        };
        let partial = partial_plan.run(batch_rows, stages).await?;
        let mut partial: Vec<RecordBatch> =
            partial.into_iter().filter(|b| b.num_rows() > 0).collect();
        if partial.is_empty() {
            return Ok(upserts);
        }
        let partial = if partial.len() == 1 {
            partial.swap_remove(0)
        } else {
            concat_batches(&partial[0].schema(), &partial)?
        };
        if self
            .held
            .first()
            .is_some_and(|h| h.schema() != partial.schema())
        {
            upserts.extend(self.merge(engine, stages).await?);
        }
        self.held_rows += partial.num_rows();
        self.held.push(partial);
        if !self.hold {
            match self.merge(engine, stages).await {
                Ok(merged) => upserts.extend(merged),
                // Nothing was held before this batch: it is let go, so the batch can be tried
                // again (or split) against the state as it was.
                Err(e) => {
                    self.held.clear();
                    self.held_rows = 0;
                    return Err(e);
                }
            }
        }
        Ok(upserts)
    }

    /// Holds each micro-batch's aggregates until [`ContinuousGroup::merge`] instead of
    /// merging them at once (see [`crate::runtime::exec::options::GroupUpserts`]).
    pub fn hold(&mut self, hold: bool) {
        self.hold = hold;
    }

    /// Aggregate rows held, not merged into the state yet.
    pub fn held_rows(&self) -> usize {
        self.held_rows
    }

    /// Merges the aggregates held into the state; returns the upserts of the groups they
    /// changed (each group once). The state and what is held change only when the whole merge
    /// succeeds, so a failed merge can be tried again.
    pub async fn merge(
        &mut self,
        engine: &Engine,
        stages: &mut Vec<StageMetrics>,
    ) -> Result<Vec<RecordBatch>> {
        let Some(first) = self.held.first() else {
            return Ok(Vec::new());
        };
        let merging = std::time::Instant::now();
        let schema = first.schema();
        // Only the groups the aggregates touch are read from the state and merged.
        let partial_rows = if self.held.len() == 1 {
            first.clone()
        } else {
            concat_batches(&schema, &self.held)?
        };
        let partial_count = partial_rows.num_rows();
        // Each partial row and the state row of its key (if any) are merged by the number of
        // the key (a slot), not by `_id`: grouping by a number is cheaper than by a key of any
        // type, and the numbers say which located key each merged row is. One batch's
        // aggregates have each key once; several batches' may repeat a key.
        let id = partial_rows.schema().index_of("_id")?;
        let (mut located, slots, ids) = if self.held.len() == 1 {
            let located = self.state.locate(&partial_rows)?;
            let slots = UInt32Array::from_iter_values(0..partial_count as u32);
            (located, slots, partial_rows.column(id).clone())
        } else {
            let (located, slots) = self.state.locate_grouped(&partial_rows)?;
            let firsts = UInt32Array::from(located.first_rows().unwrap_or_default().to_vec());
            let ids = datafusion::arrow::compute::take(partial_rows.column(id), &firsts, None)?;
            (located, UInt32Array::from(slots), ids)
        };
        let touched = self.state.rows_at(&located)?;
        let touched_rows = touched.as_ref().map_or(0, |t| t.0.num_rows());
        let touched = match touched {
            Some((t, of)) if t.num_columns() == schema.fields().len() => Some((
                RecordBatch::try_new(schema.clone(), t.columns().to_vec())?,
                of,
            )),
            // State of an older version, without the columns added since (a sum's residual):
            // by name, the missing ones null.
            Some((t, of)) => Some((by_name(&t, &schema)?, of)),
            None => None,
        };
        // One batch's aggregates (each key once) whose fields all merge row by row need no
        // merge query: each is combined with its key's state row.
        let by_rows = match (&self.parts.row_merges, self.held.len()) {
            (Some(merges), 1) => {
                let mut at = vec![None; partial_count];
                for (j, &i) in touched.iter().flat_map(|(_, of)| of.iter().enumerate()) {
                    at[i as usize] = Some(j as u32);
                }
                let state = touched.as_ref().map(|(t, _)| t);
                row_merge::merge(merges, &partial_rows, state, &at)?
            }
            _ => None,
        };
        let (new_rows, slots) = match by_rows {
            Some(rows) => (vec![rows], vec![slots]),
            None => {
                self.merge_by_query(engine, touched, &partial_rows, slots, ids)
                    .await?
            }
        };
        // The upserts: the merged groups in their output form, then the stages after $group.
        let merged_rows: usize = new_rows.iter().map(|b| b.num_rows()).sum();
        let upserts = match new_rows.first() {
            // Every field's value is a state column as it is: the upserts are those columns.
            Some(first) if self.after.stages.is_empty() && self.parts.output_is_state() => {
                let schema = first.schema();
                let columns = self
                    .parts
                    .output_names()
                    .iter()
                    .map(|n| schema.index_of(n))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                new_rows
                    .iter()
                    .map(|b| b.project(&columns))
                    .collect::<std::result::Result<Vec<_>, _>>()?
            }
            Some(first) => {
                if !self
                    .plans
                    .output
                    .as_ref()
                    .is_some_and(|(t, _)| t.rows_schema() == &first.schema())
                {
                    self.plans.output = Some(self.plan_output(engine, first.schema()).await?);
                }
                let Some((merged_table, output)) = self.plans.output.as_mut() else {
                    return Err(crate::Error::internal("the $group output was not planned"));
                };
                merged_table.bind(new_rows.clone(), 0);
                let out = output.run_unmeasured().await;
                merged_table.clear();
                out?
            }
            None => Vec::new(),
        };
        for (rows, slots) in new_rows.into_iter().zip(&slots) {
            self.state
                .upsert_located(rows, slots.values(), &mut located)?;
        }
        self.held.clear();
        self.held_rows = 0;
        stages.push(StageMetrics {
            stage: "$group merge".to_string(),
            input_rows: (touched_rows + partial_count) as u64,
            output_rows: merged_rows as u64,
            duration: merging.elapsed(),
        });
        Ok(upserts)
    }

    /// The merge query over the touched groups' state rows (`touched`, in the partial rows'
    /// schema, with the slot of each) followed by the aggregates `partial_rows` (with theirs):
    /// the merged rows keyed by `_id` (`ids`, one per slot), and the slot of each.
    async fn merge_by_query(
        &mut self,
        engine: &Engine,
        touched: Option<(RecordBatch, Vec<u32>)>,
        partial_rows: &RecordBatch,
        slots: UInt32Array,
        ids: datafusion::arrow::array::ArrayRef,
    ) -> Result<(Vec<RecordBatch>, Vec<UInt32Array>)> {
        let schema = partial_rows.schema();
        let id_field = schema.field_with_name("_id")?.clone();
        let id_field = Arc::new(id_field);
        let mut rows = Vec::with_capacity(2);
        if let Some((t, of)) = touched {
            rows.push(with_slots(&t, UInt32Array::from(of))?);
        }
        rows.push(with_slots(partial_rows, slots)?);
        if !self.plans.merge.as_ref().is_some_and(|m| m.rows == schema) {
            self.plans.merge = Some(self.plan_merge(engine, schema.clone()).await?);
        }
        let Some(plans) = self.plans.merge.as_mut() else {
            return Err(crate::Error::internal("the $group merge was not planned"));
        };
        plans.state.bind(rows, 0);
        let merged = plans.merge.run_unmeasured().await;
        plans.state.clear();
        // The merged rows come keyed by slot: their `_id`s are the located keys'.
        let mut new_rows = Vec::new();
        let mut slots = Vec::new();
        for b in merged? {
            let (b, s) = keyed_by_id(b, &id_field, &ids)?;
            new_rows.push(b);
            slots.push(s);
        }
        Ok((new_rows, slots))
    }

    /// The merge plan over partial rows of `schema`: the touched groups' state rows, then
    /// the batch's partial rows, each with its slot, grouped by slot, in state form (the
    /// slot as `_id`).
    async fn plan_merge(&self, engine: &Engine, schema: SchemaRef) -> Result<MergePlans> {
        let ctx = engine.context();
        let mut fields = schema.fields().to_vec();
        fields.push(slot_field());
        let state = register_numbered(ctx, STATE, Arc::new(Schema::new(fields)))?;
        let df = engine
            .pipeline(STATE, &self.merge)
            .await?
            .select(self.parts.state_exprs())?;
        Ok(MergePlans {
            rows: schema,
            state,
            merge: Prepared::new(ctx, df).await?,
        })
    }

    /// The plan turning merged state rows of `schema` into upserts: their output form, then
    /// the stages after the `$group`.
    async fn plan_output(
        &self,
        engine: &Engine,
        schema: SchemaRef,
    ) -> Result<(Arc<BoundTable>, Prepared)> {
        let ctx = engine.context();
        let merged = register_numbered(ctx, UPSERTS, schema)?;
        let mut exprs = self.parts.output_exprs()?;
        exprs.push(col(order::SEQ));
        let scan = ctx
            .table(order::source_name(UPSERTS).as_str())
            .await?
            .select(exprs)?
            .into_unoptimized_plan();
        let plan = crate::plan::compile(&self.after, scan, &crate::plan::Tables::new())?;
        let df = datafusion::prelude::DataFrame::new(ctx.state(), plan);
        Ok((merged, Prepared::new(ctx, df).await?))
    }
}

/// The plans merging a batch's partial rows into the touched groups, and the tables they read.
struct MergePlans {
    /// The partial rows' schema it was planned for.
    rows: SchemaRef,
    state: Arc<BoundTable>,
    merge: Prepared,
}

impl ContinuousGroup {
    /// How many groups there are.
    pub fn state_rows(&self) -> u64 {
        self.state.len() as u64
    }

    /// Memory the groups hold.
    pub fn state_bytes(&self) -> u64 {
        self.state.bytes()
    }

    /// The groups now, for a checkpoint.
    pub fn snapshot(&self) -> Snapshot {
        self.state.snapshot()
    }

    /// Takes the groups back from checkpointed bytes.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        self.state.restore(bytes)
    }

    /// Upserts the groups a checkpoint's delta holds (changed after the state restored last).
    pub fn apply_state_delta(&mut self, bytes: &[u8]) -> Result<()> {
        self.state.apply(bytes)
    }
}

impl GroupParts {
    /// `g` taken apart (`at` is its path, for errors).
    pub fn of(g: &Group, at: &crate::dsl::JsonPath) -> Result<GroupParts> {
        let field = |name: &str| Expression::Field(FieldPath::parse(name, at).expect("plain"));
        let acc = |name: String, op: Acc, arg: Expression| Accumulator {
            name,
            op,
            arg,
            n: None,
            sort_by: Vec::new(),
            percentiles: Vec::new(),
            path: at.clone(),
        };
        let mut partial = Vec::new();
        let mut merge = Vec::new();
        let mut fields = Vec::new();
        let mut row_merges = Some(Vec::new());
        for a in &g.fields {
            let row_merge = match a.op {
                Acc::Sum => vec![RowMerge::Sum],
                Acc::Count => vec![RowMerge::Add],
                Acc::First => vec![RowMerge::First],
                Acc::Last => vec![RowMerge::Last],
                Acc::Avg => vec![RowMerge::Add; 2],
                Acc::StdDevPop | Acc::StdDevSamp => vec![RowMerge::Add; 3],
                _ => Vec::new(),
            };
            if row_merge.is_empty() {
                row_merges = None;
            } else if let Some(m) = &mut row_merges {
                m.extend(row_merge);
            }
            let kept = match a.op {
                // `$mergeObjects` merges partial objects in order as it merges documents.
                // Sums keep what rounding left out, so batches merge without losing it.
                Acc::Sum => {
                    let lo = format!("{}__lo", a.name);
                    partial.push(acc(a.name.clone(), Acc::Sum, a.arg.clone()));
                    partial.push(acc(lo.clone(), Acc::SumResidual, a.arg.clone()));
                    let both = Expression::Array(vec![field(&a.name), field(&lo)]);
                    merge.push(acc(a.name.clone(), Acc::SumMerge, both.clone()));
                    merge.push(acc(lo, Acc::SumMergeResidual, both));
                    Kept::Sum
                }
                Acc::Min | Acc::Max | Acc::First | Acc::Last | Acc::MergeObjects => {
                    partial.push(acc(a.name.clone(), a.op, a.arg.clone()));
                    merge.push(acc(a.name.clone(), a.op, field(&a.name)));
                    Kept::Plain
                }
                Acc::Count => {
                    partial.push(acc(a.name.clone(), Acc::Count, a.arg.clone()));
                    merge.push(acc(a.name.clone(), Acc::Sum, field(&a.name)));
                    Kept::Plain
                }
                Acc::Push | Acc::AddToSet | Acc::FirstN | Acc::LastN | Acc::MaxN | Acc::MinN => {
                    partial.push(Accumulator {
                        n: a.n,
                        ..acc(a.name.clone(), a.op, a.arg.clone())
                    });
                    merge.push(acc(a.name.clone(), Acc::Push, field(&a.name)));
                    let n = a.n.unwrap_or(1);
                    Kept::Arrays(match a.op {
                        Acc::Push => Post::All,
                        Acc::AddToSet => Post::Distinct,
                        Acc::FirstN => Post::First(n),
                        Acc::LastN => Post::Last(n),
                        Acc::MaxN => Post::Max(n),
                        _ => Post::Min(n),
                    })
                }
                Acc::StdDevPop | Acc::StdDevSamp => {
                    // The value as a double when it is a number, else null (ignored by $sum).
                    let op = |name: &'static str, family, args| {
                        Expression::Operator(Operator {
                            name,
                            family,
                            args,
                            path: a.path.clone(),
                        })
                    };
                    let number = op(
                        "$cond",
                        Family::Conditional,
                        vec![
                            op("$isNumber", Family::Type, vec![a.arg.clone()]),
                            op("$toDouble", Family::Type, vec![a.arg.clone()]),
                            Expression::Literal(serde_json::Value::Null),
                        ],
                    );
                    let one_if = op(
                        "$cond",
                        Family::Conditional,
                        vec![
                            op("$isNumber", Family::Type, vec![a.arg.clone()]),
                            Expression::Literal(1.into()),
                            Expression::Literal(0.into()),
                        ],
                    );
                    let square = op(
                        "$multiply",
                        Family::Arithmetic,
                        vec![number.clone(), number.clone()],
                    );
                    for (suffix, arg) in [("__sum", number), ("__sq", square), ("__n", one_if)] {
                        let part = format!("{}{suffix}", a.name);
                        partial.push(acc(part.clone(), Acc::Sum, arg));
                        merge.push(acc(part.clone(), Acc::Sum, field(&part)));
                    }
                    Kept::StdDev {
                        sample: a.op == Acc::StdDevSamp,
                    }
                }
                Acc::Avg => {
                    let (s, n) = (format!("{}__sum", a.name), format!("{}__n", a.name));
                    let is_number = Expression::Operator(Operator {
                        name: "$isNumber",
                        family: Family::Type,
                        args: vec![a.arg.clone()],
                        path: a.path.clone(),
                    });
                    let one_if = Expression::Operator(Operator {
                        name: "$cond",
                        family: Family::Conditional,
                        args: vec![
                            is_number,
                            Expression::Literal(1.into()),
                            Expression::Literal(0.into()),
                        ],
                        path: a.path.clone(),
                    });
                    partial.push(acc(s.clone(), Acc::Sum, a.arg.clone()));
                    partial.push(acc(n.clone(), Acc::Sum, one_if));
                    merge.push(acc(s.clone(), Acc::Sum, field(&s)));
                    merge.push(acc(n.clone(), Acc::Sum, field(&n)));
                    Kept::Average
                }
                other => {
                    return Err(a.path.key(other.name()).err(format!(
                        "{other} is not supported in a $group over a stream yet (supported: $sum $count $min $max $avg $first $last $push $addToSet $firstN $lastN $maxN $minN $stdDevPop $stdDevSamp $mergeObjects)"
                    )));
                }
            };
            fields.push((a.name.clone(), kept));
        }
        Ok(GroupParts {
            partial,
            merge,
            fields,
            row_merges,
            at: at.clone(),
        })
    }

    /// The merge `$group`: partial (or merged) rows grouped by `_id` again.
    pub fn merge_stage(&self) -> Stage {
        self.merge_stage_by("_id")
    }

    /// The merge `$group` with the rows grouped by the field `key`.
    fn merge_stage_by(&self, key: &str) -> Stage {
        Stage {
            kind: StageKind::Group(Group {
                id: Expression::Field(FieldPath::parse(key, &self.at).expect("plain")),
                fields: self.merge.clone(),
            }),
            path: self.at.clone(),
        }
    }

    /// The merge `$group`'s rows in state form: arrays, merged as arrays of arrays, flattened
    /// (and cut, and without repeats for sets).
    pub fn state_exprs(&self) -> Vec<Expr> {
        let mut exprs = vec![col("_id")];
        for (name, kept) in &self.fields {
            match kept {
                Kept::Arrays(post) => {
                    exprs.push(post.apply(flatten(col(name.as_str()))).alias(name))
                }
                Kept::Sum => {
                    let lo = format!("{name}__lo");
                    exprs.push(col(name.as_str()).alias(name));
                    exprs.push(col(lo.as_str()).alias(&lo));
                }
                Kept::Average | Kept::StdDev { .. } => {
                    for part in kept.parts() {
                        let n = format!("{name}{part}");
                        exprs.push(col(n.as_str()).alias(&n));
                    }
                }
                Kept::Plain => exprs.push(col(name.as_str()).alias(name)),
            }
        }
        exprs
    }

    /// True when each output field is one state column as it is (no average or deviation
    /// to compute from parts).
    pub fn output_is_state(&self) -> bool {
        self.fields
            .iter()
            .all(|(_, k)| !matches!(k, Kept::Average | Kept::StdDev { .. }))
    }

    /// The output's fields: `_id`, then the accumulators' in order.
    pub fn output_names(&self) -> Vec<&str> {
        std::iter::once("_id")
            .chain(self.fields.iter().map(|(n, _)| n.as_str()))
            .collect()
    }

    /// State rows in the group's output form (averages and deviations computed).
    pub fn output_exprs(&self) -> Result<Vec<Expr>> {
        let mut out = vec![col("_id")];
        for (name, kept) in &self.fields {
            out.push(match kept {
                Kept::Average => {
                    let (s, n) = (
                        col(format!("{name}__sum").as_str()),
                        col(format!("{name}__n").as_str()),
                    );
                    when(
                        n.clone().gt(lit(0i64)),
                        cast(s, DataType::Float64) / cast(n, DataType::Float64),
                    )
                    .otherwise(lit(datafusion::common::ScalarValue::Float64(None)))?
                    .alias(name)
                }
                Kept::StdDev { sample } => {
                    let part = |p: &str| col(format!("{name}{p}").as_str());
                    let n = cast(part("__n"), DataType::Float64);
                    let (sum, sq) = (part("__sum"), part("__sq"));
                    // Σx² − (Σx)²/n, never below 0 (rounding), over n or n − 1.
                    let m2 = greatest(vec![sq - sum.clone() * sum / n.clone(), lit(0.0f64)]);
                    let (divisor, least) = if *sample {
                        (n.clone() - lit(1.0f64), 1.0f64)
                    } else {
                        (n.clone(), 0.0f64)
                    };
                    when(n.gt(lit(least)), sqrt(m2 / divisor))
                        .otherwise(lit(datafusion::common::ScalarValue::Float64(None)))?
                        .alias(name)
                }
                Kept::Plain | Kept::Sum | Kept::Arrays(_) => col(name.as_str()).alias(name),
            });
        }
        Ok(out)
    }
}

/// The column of a merge row's slot.
fn slot_field() -> Arc<Field> {
    Arc::new(Field::new(hidden::GROUP_SLOT, DataType::UInt32, false))
}

/// `rows` with their slots as one more column.
fn with_slots(rows: &RecordBatch, slots: UInt32Array) -> Result<RecordBatch> {
    let mut fields = rows.schema().fields().to_vec();
    fields.push(slot_field());
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(slots));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Merged rows whose `_id` is their slot, with the `_id`s of those slots (`ids`, a column of
/// `id_field`) instead; and the slots.
fn keyed_by_id(
    merged: RecordBatch,
    id_field: &Arc<Field>,
    ids: &datafusion::arrow::array::ArrayRef,
) -> Result<(RecordBatch, UInt32Array)> {
    let schema = merged.schema();
    let at = schema.index_of("_id")?;
    let slots = datafusion::arrow::compute::cast(merged.column(at), &DataType::UInt32)?;
    let slots = slots
        .as_any()
        .downcast_ref::<UInt32Array>()
        .cloned()
        .ok_or_else(|| crate::Error::internal("the $group merge lost its slots"))?;
    let mut fields = schema.fields().to_vec();
    fields[at] = id_field.clone();
    let mut columns = merged.columns().to_vec();
    columns[at] = datafusion::arrow::compute::take(ids, &slots, None)?;
    Ok((
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?,
        slots,
    ))
}

/// `batch`'s columns in the layout of `schema`, by name; the ones it lacks null.
fn by_name(
    batch: &RecordBatch,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => datafusion::arrow::array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

impl Kept {
    /// The suffixes of the state columns of a field kept in parts.
    fn parts(&self) -> &'static [&'static str] {
        match self {
            Kept::Average => &["__sum", "__n"],
            Kept::StdDev { .. } => &["__sum", "__sq", "__n"],
            _ => &[],
        }
    }
}

impl Post {
    /// The kept form of the concatenated arrays `flat`.
    fn apply(self, flat: Expr) -> Expr {
        let len = || cast(array_length(flat.clone()), DataType::Int64);
        let first = |n: u64, arr: Expr| array_slice(arr, lit(1i64), lit(n as i64), None);
        match self {
            Post::All => flat,
            Post::Distinct => array_distinct(flat),
            Post::First(n) => first(n, flat),
            Post::Last(n) => array_slice(
                flat.clone(),
                greatest(vec![len() - lit(n as i64 - 1), lit(1i64)]),
                len(),
                None,
            ),
            Post::Max(n) => first(n, array_sort(flat, lit("DESC"), lit("NULLS LAST"))),
            Post::Min(n) => first(n, array_sort(flat, lit("ASC"), lit("NULLS LAST"))),
        }
    }
}

/// The stages before a pipeline's first `$group`, the `$group`, and the stages after it.
pub fn split_at_group(pipeline: &Pipeline) -> Option<(&[Stage], &Stage, &[Stage])> {
    let i = pipeline
        .stages
        .iter()
        .position(|s| matches!(s.kind, StageKind::Group(_)))?;
    Some((
        &pipeline.stages[..i],
        &pipeline.stages[i],
        &pipeline.stages[i + 1..],
    ))
}

/// Errors unless the stages after a streaming `$group` keep each upsert's `_id` and work on
/// it alone: `$project`, `$addFields` / `$set`, `$unset` that leave `_id` as it is.
fn check_after(after: &[Stage]) -> Result<()> {
    for stage in after {
        let touches_id = match &stage.kind {
            StageKind::Project(p) => p
                .tree
                .get("_id")
                .is_some_and(|n| !matches!(n, crate::dsl::project::Node::Include)),
            StageKind::AddFields(t) | StageKind::Unset(t) => t.contains_key("_id"),
            _ => {
                return Err(stage.path.err(
                    "cannot follow a $group on a stream yet: after a streaming $group come only $project, $addFields/$set and $unset (each upsert is changed alone; a $match could not take back an upsert it drops)",
                ));
            }
        };
        if touches_id {
            return Err(stage
                .path
                .err("cannot change _id after a streaming $group: _id is the key of its upserts"));
        }
    }
    Ok(())
}

/// Errors when the stages before a streaming `$group` cannot stream.
pub fn check_prefix(pipeline: &Pipeline) -> Result<()> {
    let before = split_at_group(pipeline).map_or(&[][..], |(b, _, _)| b);
    crate::runtime::query::check_stages(&Pipeline {
        stages: before.to_vec(),
    })
}
