//! Plans prepared once per stream and run again over every micro-batch.
//!
//! Planning a query — the DSL compiled to a logical plan, the optimizer, the physical planner
//! — takes milliseconds; running it over a micro-batch of a thousand documents takes less. So
//! a stream plans its query once, over [`BoundTable`]s whose rows are bound anew before each
//! run, and then resets the physical plan's run state (`reset_plan_states`, as DataFusion's
//! recursive queries do: every operator is rebuilt from its parts, with fresh run state and
//! metrics — re-running operators as they are would let their metric sets grow with every
//! run) and runs it again, batch after batch.
//!
//! What a plan could learn from one batch and keep is kept out of it: bound tables report no
//! statistics, and dynamic filters (bounds a join or a top-k learns while it runs and pushes
//! into scans that outlive the run) are off in prepared plans. A query that calls a *stable*
//! function — `$$NOW`, SQL `now()`, whose value a query fixes when it is planned — is
//! optimized and planned again for every batch (from the same logical plan), so each batch
//! sees its own time, as before.
//!
//! The operators' metrics are per run: nodes the reset builds anew start from zero, and for
//! nodes it keeps (scans of static tables) the previous run's counts are subtracted.

pub mod bound_table;

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::{SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::prelude::{DataFrame, SessionContext};

pub use bound_table::{BoundTable, register_numbered};

use crate::Result;
use crate::runtime::metrics::{Measured, StageMetrics, measure};

/// A query planned once, run over whatever its bound tables hold.
pub struct Prepared {
    /// Boxed: operators hold several prepared plans.
    logical: Box<LogicalPlan>,
    ctx: SessionContext,
    /// The physical plan and the context it runs in; `None` when the query is planned for
    /// every run (it calls a stable function).
    physical: Option<(Arc<dyn ExecutionPlan>, Arc<TaskContext>)>,
    /// The plan of the last run, kept so its nodes' counts can be subtracted from the nodes
    /// the next run shares with it (and their addresses are not reused meanwhile).
    last: Option<Arc<dyn ExecutionPlan>>,
    measured: Measured,
}

impl Prepared {
    /// Prepares `df` (planned in `ctx`, over bound tables).
    pub async fn new(ctx: &SessionContext, df: DataFrame) -> Result<Prepared> {
        let logical = df.into_unoptimized_plan();
        let physical = if calls_stable_function(&logical)? {
            None
        } else {
            Some(plan(ctx, &logical).await?)
        };
        Ok(Prepared {
            logical: Box::new(logical),
            ctx: ctx.clone(),
            physical,
            last: None,
            measured: Measured::default(),
        })
    }

    /// Runs the plan over what its tables hold now (`batch_rows` documents in the micro-batch,
    /// for the metrics); what each operator did is added to `stages`.
    pub async fn run(
        &mut self,
        batch_rows: usize,
        stages: &mut Vec<StageMetrics>,
    ) -> Result<Vec<RecordBatch>> {
        let (out, plan) = self.execute().await?;
        self.measured = measure(&plan, batch_rows, stages, &self.measured);
        self.last = Some(plan);
        Ok(out)
    }

    /// Runs the plan like [`Prepared::run`], for a step whose operators are not reported
    /// (a plan always run this way: the counts it would subtract are not kept).
    pub async fn run_unmeasured(&mut self) -> Result<Vec<RecordBatch>> {
        let (out, plan) = self.execute().await?;
        self.last = Some(plan);
        Ok(out)
    }

    async fn execute(&mut self) -> Result<(Vec<RecordBatch>, Arc<dyn ExecutionPlan>)> {
        let (plan, task) = match &self.physical {
            Some((plan, task)) => (reset(plan)?, task.clone()),
            None => plan(&self.ctx, &self.logical).await?,
        };
        let out = datafusion::physical_plan::collect(plan.clone(), task).await?;
        Ok((out, plan))
    }
}

/// `plan` ready to run again: every operator rebuilt with fresh run state and metrics
/// (`reset_plan_states`), scans of static tables too (which it keeps as they are, so their
/// metric sets would grow with every run).
fn reset(plan: &Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::datasource::source::DataSourceExec;
    let plan = reset_plan_states(plan.clone())?;
    let fresh = plan
        .transform_up(|node| {
            Ok(match node.downcast_ref::<DataSourceExec>() {
                Some(scan) => {
                    Transformed::yes(Arc::new(DataSourceExec::new(scan.data_source().clone()))
                        as Arc<dyn ExecutionPlan>)
                }
                None => Transformed::no(node),
            })
        })?
        .data;
    Ok(fresh)
}

/// The physical plan of `logical`, with the session's settings but no dynamic filters and one
/// partition, and the context to run it in.
async fn plan(
    ctx: &SessionContext,
    logical: &LogicalPlan,
) -> Result<(Arc<dyn ExecutionPlan>, Arc<TaskContext>)> {
    let state = ctx.state();
    let mut config = state.config().clone();
    config
        .options_mut()
        .optimizer
        .enable_dynamic_filter_pushdown = false;
    config
        .options_mut()
        .optimizer
        .enable_join_dynamic_filter_pushdown = false;
    config
        .options_mut()
        .optimizer
        .enable_topk_dynamic_filter_pushdown = false;
    config
        .options_mut()
        .optimizer
        .enable_aggregate_dynamic_filter_pushdown = false;
    // One partition: a micro-batch is one partition already, and the plan runs beside the
    // decoding of the next batch and the delivery of the last, so repartitioning it across
    // cores buys nothing and costs tasks and channels at every run (measured: 1 000-document
    // batches of a continuous $group 1.8× faster, 100 000-document ones no slower).
    config.options_mut().execution.target_partitions = 1;
    let state = SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build();
    let physical = state.create_physical_plan(logical).await?;
    Ok((physical, Arc::new(TaskContext::from(&state))))
}

/// True when `plan` calls a function whose value is fixed when the query is planned.
fn calls_stable_function(plan: &LogicalPlan) -> Result<bool> {
    let mut stable = false;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility == Volatility::Stable
                {
                    stable = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if stable {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(stable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;

    fn rows(ids: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(ids.to_vec()))]).unwrap()
    }

    fn text(out: &[RecordBatch]) -> String {
        pretty_format_batches(out).unwrap().to_string()
    }

    /// One plan, run over three bindings, answers for each — also for a join with a static
    /// table, whichever side the planner builds from (no bounds from one run kept for the next).
    #[tokio::test]
    async fn a_prepared_plan_answers_for_whatever_is_bound() {
        let engine = crate::Engine::new();
        let ctx = engine.context();
        let table = register_numbered(ctx, "s", rows(&[]).schema()).unwrap();
        let names = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let static_rows = RecordBatch::try_new(
            names.clone(),
            vec![
                Arc::new(Int64Array::from((0..50).collect::<Vec<i64>>())),
                Arc::new(StringArray::from(
                    (0..50).map(|i| format!("n{i}")).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        engine
            .register_batches("names", names, vec![static_rows])
            .unwrap();
        let df = engine
            .sql("SELECT s.id, n.name FROM s JOIN names n ON s.id = n.id WHERE s.id % 2 = 1 ORDER BY s.id")
            .await
            .unwrap();
        let mut plan = Prepared::new(ctx, df).await.unwrap();
        assert!(plan.physical.is_some(), "planned once");
        for (ids, expected) in [
            (vec![1, 2, 3], vec!["n1", "n3"]),
            (vec![40, 41, 49, 7], vec!["n7", "n41", "n49"]),
            (vec![2, 4], vec![]),
        ] {
            table.bind(vec![rows(&ids)], 0);
            let out = plan.run(ids.len(), &mut Vec::new()).await.unwrap();
            let got: Vec<String> = out
                .iter()
                .flat_map(|b| {
                    let c = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
                    c.iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(got, expected, "{}", text(&out));
        }
    }

    /// A numbered table numbers from what is bound with the rows; the counts of a run are its
    /// own, not the sum of the runs so far.
    #[tokio::test]
    async fn numbering_and_metrics_are_per_run() {
        let engine = crate::Engine::new();
        let ctx = engine.context();
        let table = register_numbered(ctx, "s", rows(&[]).schema()).unwrap();
        let pipeline =
            crate::Pipeline::from_value(&serde_json::json!([{"$match": {"id": {"$gt": 10}}}]))
                .unwrap();
        let source = ctx
            .table(crate::plan::order::source_name("s").as_str())
            .await
            .unwrap();
        let seq = source.select_columns(&[crate::plan::order::SEQ]).unwrap();
        let mut numbers = Prepared::new(ctx, seq).await.unwrap();
        table.bind(vec![rows(&[5, 6, 7])], 100);
        let out = numbers.run(3, &mut Vec::new()).await.unwrap();
        let n = out[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(n.values(), &[100, 101, 102]);
        let mut filter = Prepared::new(ctx, engine.pipeline("s", &pipeline).await.unwrap())
            .await
            .unwrap();
        for (ids, kept) in [(vec![1, 20, 30], 2u64), (vec![11, 2, 3, 4], 1)] {
            table.bind(vec![rows(&ids)], 0);
            let mut stages = Vec::new();
            filter.run(ids.len(), &mut stages).await.unwrap();
            let f = stages
                .iter()
                .find(|s| s.stage.ends_with("FilterExec"))
                .expect("a filter");
            assert_eq!((f.input_rows, f.output_rows), (ids.len() as u64, kept));
        }
    }

    /// `$$NOW` is fixed when a query is planned: a query calling it is planned for every run,
    /// so each batch sees its own time.
    #[tokio::test]
    async fn a_query_with_now_is_planned_for_every_run() {
        let engine = crate::Engine::new();
        let ctx = engine.context();
        let table = register_numbered(ctx, "s", rows(&[]).schema()).unwrap();
        let pipeline =
            crate::Pipeline::from_value(&serde_json::json!([{"$addFields": {"t": "$$NOW"}}]))
                .unwrap();
        let mut plan = Prepared::new(ctx, engine.pipeline("s", &pipeline).await.unwrap())
            .await
            .unwrap();
        assert!(plan.physical.is_none());
        let mut times = Vec::new();
        for _ in 0..2 {
            table.bind(vec![rows(&[1])], 0);
            let out = plan.run(1, &mut Vec::new()).await.unwrap();
            times.push(text(&out));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_ne!(times[0], times[1]);
    }
}
