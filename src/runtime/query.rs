//! What a stream runs — JSON stages or SQL over the source's table — and the check that it
//! can run on a stream: micro-batch by micro-batch, each batch's answer final when it is
//! delivered.
//!
//! Stages that work document by document stream, and a `$group` at the end of a pipeline runs
//! continuously (`runtime::state::group`). SQL streams when it works row by row: projections,
//! filters, `UNNEST`, joins against static tables. Aggregates, `ORDER BY`, `LIMIT`, window
//! functions, `DISTINCT` and `UNION` need every row first and are rejected, naming the clause.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;

use crate::dsl::{Pipeline, StageKind};
use crate::plan::order;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::runtime::metrics::{StageMetrics, collect_measured};
use crate::runtime::prepared::{BoundTable, Prepared, register_numbered};
use crate::{Engine, Error, Result};

/// A stream's query.
#[derive(Debug, Clone)]
pub enum StreamQuery {
    /// JSON stages.
    Pipeline(Pipeline),
    /// SQL over `table` (each micro-batch is registered under that name).
    Sql { sql: String, table: String },
}

impl StreamQuery {
    /// A fingerprint of the compiled query: of the parsed stages (so layout and key order of
    /// the JSON do not matter), or of the SQL text with its whitespace collapsed.
    pub fn fingerprint(&self) -> String {
        match self {
            StreamQuery::Pipeline(p) => {
                crate::runtime::state::checkpoint::fingerprint(&format!("{:?}", p.stages))
            }
            StreamQuery::Sql { sql, table } => {
                let words: Vec<&str> = sql.split_whitespace().collect();
                crate::runtime::state::checkpoint::fingerprint(&format!(
                    "{table}\n{}",
                    words.join(" ")
                ))
            }
        }
    }
}

impl From<&Pipeline> for StreamQuery {
    fn from(p: &Pipeline) -> Self {
        StreamQuery::Pipeline(p.clone())
    }
}

impl From<Pipeline> for StreamQuery {
    fn from(p: Pipeline) -> Self {
        StreamQuery::Pipeline(p)
    }
}

/// Errors unless every stage of `pipeline` can run on a stream (document by document).
pub fn check_stages(pipeline: &Pipeline) -> Result<()> {
    for stage in &pipeline.stages {
        let ok = matches!(
            stage.kind,
            StageKind::Match(_)
                | StageKind::Project(_)
                | StageKind::AddFields(_)
                | StageKind::Unset(_)
                | StageKind::ReplaceRoot(_)
                | StageKind::Unwind(_)
                | StageKind::Lookup(_)
        );
        // A rule set judges each document on its own, and a rule's stages must too.
        if let StageKind::Rules(r) = &stage.kind {
            for rule in &r.rule_set.rules {
                if let crate::dsl::rule_set::When::Stages(p) = &rule.when {
                    check_stages(p)?;
                }
            }
            continue;
        }
        if !ok {
            return Err(stage.path.err(
                "cannot run on a stream yet: it needs every document before it can emit (streaming runs stages that work document by document)",
            ));
        }
    }
    Ok(())
}

/// Errors unless `sql` over `table` (registered, with the stream's schema) works row by row
/// and reads the stream once.
pub async fn check_sql(engine: &Engine, sql: &str, table: &str) -> Result<()> {
    let plan = engine.sql(sql).await?.into_unoptimized_plan();
    let mut problem: Option<&'static str> = None;
    let mut scans = 0;
    // The table is a view over the numbered batches; a plan may show either name.
    let hidden = order::source_name(table);
    plan.apply_with_subqueries(|node| {
        problem = problem.or(match node {
            LogicalPlan::Aggregate(_) => Some("GROUP BY and aggregate functions"),
            LogicalPlan::Sort(_) => Some("ORDER BY"),
            LogicalPlan::Limit(_) => Some("LIMIT and OFFSET"),
            LogicalPlan::Window(_) => Some("window functions (OVER)"),
            LogicalPlan::Distinct(_) => Some("DISTINCT"),
            LogicalPlan::Union(_) => Some("UNION"),
            LogicalPlan::RecursiveQuery(_) => Some("recursive queries"),
            _ => None,
        });
        if let LogicalPlan::TableScan(scan) = node
            && (scan.table_name.table() == table || scan.table_name.table() == hidden)
        {
            scans += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if let Some(what) = problem {
        return Err(Error::config(
            "sql",
            format!(
                "{what} cannot run on a stream yet: they need every row first (streaming SQL runs queries that work row by row; a JSON pipeline can end in a continuous $group)"
            ),
        ));
    }
    if scans != 1 {
        return Err(Error::config(
            "sql",
            format!(
                "a streaming query reads its stream \"{table}\" exactly once (it reads it {scans} times)"
            ),
        ));
    }
    Ok(())
}

/// A stream's query planned once over a bound table: each micro-batch is bound to the table
/// and the same plan runs again (`runtime::prepared`).
pub(crate) struct PreparedQuery {
    table: Arc<BoundTable>,
    plan: Prepared,
}

impl PreparedQuery {
    /// Plans `query` over micro-batches of `schema`, bound as `stream` for stages or under
    /// the SQL's table name.
    pub async fn new(
        engine: &Engine,
        query: &StreamQuery,
        stream: &str,
        schema: SchemaRef,
    ) -> Result<PreparedQuery> {
        let name = match query {
            StreamQuery::Pipeline(_) => stream,
            StreamQuery::Sql { table, .. } => table.as_str(),
        };
        let table = register_numbered(engine.context(), name, schema)?;
        let df = match query {
            StreamQuery::Pipeline(p) => engine.pipeline(stream, p).await?,
            StreamQuery::Sql { sql, .. } => engine.sql(sql).await?,
        };
        let plan = Prepared::new(engine.context(), df).await?;
        Ok(PreparedQuery { table, plan })
    }

    /// The schema of the micro-batches it runs over.
    pub fn schema(&self) -> &SchemaRef {
        self.table.rows_schema()
    }

    /// Runs the query over `batch` (whose first document is number `seq`); what each operator
    /// did is added to `stages`.
    pub async fn run(
        &mut self,
        batch: &RecordBatch,
        seq: i64,
        stages: &mut Vec<StageMetrics>,
    ) -> Result<Vec<RecordBatch>> {
        self.table.bind(vec![batch.clone()], seq);
        let out = self.plan.run(batch.num_rows(), stages).await;
        self.table.clear();
        out
    }
}

/// Runs `query` over `batch` (whose first document is number `seq`): registered as `stream`
/// for stages, or under the SQL's table name; what each operator did is added to `stages`.
pub(crate) async fn run_once(
    engine: &Engine,
    query: &StreamQuery,
    stream: &str,
    batch: &RecordBatch,
    seq: i64,
    stages: &mut Vec<StageMetrics>,
) -> Result<Vec<RecordBatch>> {
    let table = match query {
        StreamQuery::Pipeline(_) => stream,
        StreamQuery::Sql { table, .. } => table.as_str(),
    };
    order::register_ordered_from(
        engine.context(),
        table,
        batch.schema(),
        vec![vec![batch.clone()]],
        seq,
    )?;
    let df = match query {
        StreamQuery::Pipeline(p) => engine.pipeline(stream, p).await?,
        StreamQuery::Sql { sql, .. } => engine.sql(sql).await?,
    };
    collect_measured(df, batch.num_rows(), stages).await
}
