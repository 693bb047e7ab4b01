//! Continuous `$group` on a stream: each micro-batch updates the groups' state, and the
//! groups it changed are emitted as upserts keyed by `_id` (the last document per `_id` is the
//! group's current value; after the whole input it equals a batch `$group`).
//!
//! Each accumulator is split in two `$group`s: a *partial* one over the micro-batch (`$sum`,
//! `$count`, `$min`, `$max`, `$first`, `$last`, `$push`, `$addToSet`; `$avg` as a sum and a
//! count) and a *merge* one over the state's rows followed by the batch's partial rows
//! (`$unionWith`, so `$first` keeps the earliest and `$last` takes the latest). The merged rows
//! are the new state, saved with every checkpoint (Arrow IPC), so a restarted stream
//! continues with the groups as they were.

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Column;
use datafusion::functions_nested::expr_fn::{array_distinct, flatten};
use datafusion::logical_expr::{Expr, cast, lit, when};

use super::keyed_state::{KeyedState, Snapshot};
use crate::dsl::expression::{Expression, Family, Operator};
use crate::dsl::group::{Accumulator, Group};
use crate::dsl::reshape::UnionWith;
use crate::dsl::{FieldPath, Pipeline, Stage, StageKind};
use crate::plan::order;
use crate::{Engine, Result};

const STATE: &str = "__fluxion_group_state";

/// A column by its exact name (`col` would fold an unquoted camelCase name to lower case).
fn col(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}
const PARTIAL: &str = "__fluxion_group_partial";

/// How one output field is kept.
#[derive(Debug, Clone)]
enum Kept {
    /// One state column, merged by the same kind of accumulator (`$sum` for counts).
    Plain,
    /// Arrays merged by concatenation (`$push`), or as a set (`$addToSet`).
    Arrays { distinct: bool },
    /// `$avg`: a sum and a count of numbers.
    Average,
}

/// The state and plans of a continuous `$group`.
pub struct ContinuousGroup {
    /// The stages before `$group`, then the partial `$group`.
    partial: Pipeline,
    /// `$unionWith` the partial rows, then the merge `$group`.
    merge: Pipeline,
    fields: Vec<(String, Kept)>,
    state: KeyedState,
}

impl ContinuousGroup {
    /// The continuous form of `pipeline` when it ends in `$group` (`None` without one).
    pub fn plan(pipeline: &Pipeline) -> Result<Option<ContinuousGroup>> {
        let Some((last, before)) = pipeline.stages.split_last() else {
            return Ok(None);
        };
        let StageKind::Group(g) = &last.kind else {
            return Ok(None);
        };
        let at = &last.path;
        let field = |name: &str| Expression::Field(FieldPath::parse(name, at).expect("plain"));
        let acc = |name: String, op: &'static str, arg: Expression| Accumulator {
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
        for a in &g.fields {
            let kept = match a.op {
                "$sum" | "$min" | "$max" | "$first" | "$last" => {
                    partial.push(acc(a.name.clone(), a.op, a.arg.clone()));
                    merge.push(acc(a.name.clone(), a.op, field(&a.name)));
                    Kept::Plain
                }
                "$count" => {
                    partial.push(acc(a.name.clone(), "$count", a.arg.clone()));
                    merge.push(acc(a.name.clone(), "$sum", field(&a.name)));
                    Kept::Plain
                }
                "$push" | "$addToSet" => {
                    partial.push(acc(a.name.clone(), a.op, a.arg.clone()));
                    merge.push(acc(a.name.clone(), "$push", field(&a.name)));
                    Kept::Arrays {
                        distinct: a.op == "$addToSet",
                    }
                }
                "$avg" => {
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
                    partial.push(acc(s.clone(), "$sum", a.arg.clone()));
                    partial.push(acc(n.clone(), "$sum", one_if));
                    merge.push(acc(s.clone(), "$sum", field(&s)));
                    merge.push(acc(n.clone(), "$sum", field(&n)));
                    Kept::Average
                }
                other => {
                    return Err(a.path.key(other).err(format!(
                        "{other} is not supported in a $group over a stream yet (supported: $sum $count $min $max $avg $first $last $push $addToSet)"
                    )));
                }
            };
            fields.push((a.name.clone(), kept));
        }
        let mut partial_stages = before.to_vec();
        partial_stages.push(Stage {
            kind: StageKind::Group(Group {
                id: g.id.clone(),
                fields: partial,
            }),
            path: at.clone(),
        });
        let merge_stages = vec![
            Stage {
                kind: StageKind::UnionWith(UnionWith {
                    coll: PARTIAL.to_string(),
                    pipeline: None,
                }),
                path: at.clone(),
            },
            Stage {
                kind: StageKind::Group(Group {
                    id: field("_id"),
                    fields: merge,
                }),
                path: at.clone(),
            },
        ];
        Ok(Some(ContinuousGroup {
            partial: Pipeline {
                stages: partial_stages,
            },
            merge: Pipeline {
                stages: merge_stages,
            },
            fields,
            state: KeyedState::new("_id"),
        }))
    }

    /// Folds the micro-batch registered as `table` into the state; returns the upserts of the
    /// groups it changed.
    pub async fn step(&mut self, engine: &Engine, table: &str) -> Result<Vec<RecordBatch>> {
        let partial = engine
            .pipeline(table, &self.partial)
            .await?
            .collect()
            .await?;
        let Some(first) = partial.first() else {
            return Ok(Vec::new());
        };
        let schema = first.schema();
        if partial.iter().all(|b| b.num_rows() == 0) {
            return Ok(Vec::new());
        }
        let ctx = engine.context();
        // Only the groups this batch touches are read from the state and merged; the state
        // is changed only when the whole step succeeds (a failed batch can be retried, or
        // split, against the state as it was).
        let partial_rows = concat_batches(&schema, &partial)?;
        let touched = self.state.rows_for(&partial_rows)?;
        let touched = match touched {
            Some(t) => vec![RecordBatch::try_new(schema.clone(), t.columns().to_vec())?],
            None => Vec::new(),
        };
        order::register_ordered(ctx, STATE, schema.clone(), vec![touched])?;
        order::register_ordered(ctx, PARTIAL, schema.clone(), vec![vec![partial_rows]])?;
        let merged = engine.pipeline(STATE, &self.merge).await?;
        // Arrays merged as arrays of arrays: flatten them (and drop repeats for sets).
        let mut exprs = vec![col("_id")];
        for (name, kept) in &self.fields {
            match kept {
                Kept::Arrays { distinct } => {
                    let flat = flatten(col(name.as_str()));
                    let e = if *distinct {
                        array_distinct(flat)
                    } else {
                        flat
                    };
                    exprs.push(e.alias(name));
                }
                Kept::Average => {
                    for part in ["__sum", "__n"] {
                        let n = format!("{name}{part}");
                        exprs.push(col(n.as_str()).alias(&n));
                    }
                }
                Kept::Plain => exprs.push(col(name.as_str()).alias(name)),
            }
        }
        let new_rows = merged.select(exprs)?.collect().await?;
        // The upserts: the merged groups in their output form.
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
                _ => col(name.as_str()).alias(name),
            });
        }
        let upserts = ctx
            .read_batches(new_rows.clone())?
            .select(out)?
            .collect()
            .await?;
        for rows in new_rows {
            self.state.upsert(rows)?;
        }
        Ok(upserts)
    }
}

impl ContinuousGroup {
    /// How many groups there are.
    pub fn state_rows(&self) -> u64 {
        self.state.len() as u64
    }

    /// The groups now, for a checkpoint.
    pub fn snapshot(&self) -> Snapshot {
        self.state.snapshot()
    }

    /// Takes the groups back from checkpointed bytes.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        self.state.restore(bytes)
    }
}

/// Errors when the stages before a streaming `$group` cannot stream.
pub fn check_prefix(pipeline: &Pipeline) -> Result<()> {
    let before = Pipeline {
        stages: pipeline.stages[..pipeline.stages.len().saturating_sub(1)].to_vec(),
    };
    super::query::check_stages(&before)
}
