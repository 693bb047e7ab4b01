//! Document order: the hidden column [`SEQ`] numbers the documents in the order the
//! pipeline defines, so that order-sensitive operators (`$first`, `$last`, `$push`,
//! `$limit`, `$skip`) and the output itself follow it even though DataFusion runs partitions
//! in parallel and repartitions between operators.
//!
//! - A JSON-lines source numbers its documents in input order ([`register_ordered`]) and
//!   declares each partition sorted by the number, so keeping that order costs a streaming
//!   merge, not a sort. SQL sees the table without the column (a view over it).
//! - Stages that keep documents carry the column through; `$sort` and `$unwind` renumber
//!   (a `row_number()` window ordered by the new keys, then the old number); `$group` numbers
//!   its output by `_id`, so even an unsorted pipeline prints the same rows in the same order
//!   on every run.
//! - [`finish`] sorts by the number and drops it.
//!
//! Sources without the column (CSV, Parquet) keep DataFusion's order (README).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::view::ViewTable;
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, SortExpr, col,
};
use datafusion::prelude::SessionContext;

use crate::Result;
use crate::document::hidden;

/// The order column, the riders (hidden columns such as a stream document's event time that,
/// like the order column, every stage keeping documents carries through, whatever a
/// `$project` or `$replaceRoot` says), and the test for both.
pub use crate::document::hidden::{RIDER, SEQ, rides};

/// The name under which the numbered source of table `name` is registered.
pub fn source_name(name: &str) -> String {
    hidden::source_table(name)
}

/// True when `schema` carries the order column.
pub fn has_seq(schema: &DFSchema) -> bool {
    schema.has_column_with_unqualified_name(SEQ)
}

/// The order column, ascending.
pub fn by_seq() -> SortExpr {
    Expr::Column(Column::from_name(SEQ)).sort(true, false)
}

/// Registers `partitions` as table `name` for SQL, and as its numbered source for pipelines.
pub fn register_ordered(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    partitions: Vec<Vec<RecordBatch>>,
) -> Result<()> {
    register_ordered_from(ctx, name, schema, partitions, 0)
}

/// Like [`register_ordered`], numbering from `first` (a micro-batch continues the numbering
/// of the batches before it, so order-dependent stages see one sequence).
pub fn register_ordered_from(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    partitions: Vec<Vec<RecordBatch>>,
    first: i64,
) -> Result<()> {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(SEQ, DataType::Int64, false)));
    let numbered_schema = Arc::new(Schema::new(fields));
    let mut next = first;
    let mut numbered = Vec::with_capacity(partitions.len());
    for part in partitions {
        let mut batches = Vec::with_capacity(part.len());
        for b in part {
            let n = b.num_rows() as i64;
            let seq: ArrayRef = Arc::new(Int64Array::from_iter_values(next..next + n));
            next += n;
            let mut columns = b.columns().to_vec();
            columns.push(seq);
            batches.push(RecordBatch::try_new(numbered_schema.clone(), columns)?);
        }
        numbered.push(batches);
    }
    let source = Arc::new(
        MemTable::try_new(numbered_schema, numbered)?.with_sort_order(vec![vec![by_seq()]]),
    );
    register_numbered_source(ctx, name, &schema, source)
}

/// Registers `source` (rows of `schema` plus the order column) as `name`'s numbered source,
/// and `name` as a view of it without the column (what SQL reads).
pub fn register_numbered_source(
    ctx: &SessionContext,
    name: &str,
    schema: &Schema,
    source: Arc<dyn datafusion::datasource::TableProvider>,
) -> Result<()> {
    let source_name = source_name(name);
    ctx.deregister_table(&source_name)?;
    ctx.register_table(&source_name, source.clone())?;
    // SQL reads the same batches without the column.
    let visible: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|f| col(Column::from_name(f.name())))
        .collect();
    let view = LogicalPlanBuilder::scan(&source_name, provider_as_source(source), None)?
        .project(visible)?
        .build()?;
    ctx.deregister_table(name)?;
    ctx.register_table(name, Arc::new(ViewTable::new(view, None)))?;
    Ok(())
}

/// Renumbers the documents of `plan` in the order `keys` (ties keep their previous order).
/// A plan without the column is left as it is.
pub fn renumber(plan: LogicalPlan, keys: Vec<SortExpr>) -> Result<LogicalPlan> {
    if !has_seq(plan.schema()) {
        return Ok(plan);
    }
    number_by(plan, keys)
}

/// Makes sure `plan` carries the order column: after `$group`, whose output MongoDB leaves
/// unordered, documents are numbered by `_id` when a later stage depends on their order.
pub fn ensure(plan: LogicalPlan) -> Result<LogicalPlan> {
    if has_seq(plan.schema()) || !plan.schema().has_column_with_unqualified_name("_id") {
        return Ok(plan);
    }
    number_by(
        plan,
        vec![Expr::Column(Column::from_name("_id")).sort(true, true)],
    )
}

/// Numbers the documents of `plan` in the order `keys` (then their previous number, if any).
pub fn number_by(plan: LogicalPlan, keys: Vec<SortExpr>) -> Result<LogicalPlan> {
    const NEXT: &str = hidden::SEQ_NEXT;
    let mut order = keys;
    if has_seq(plan.schema()) {
        order.push(by_seq());
    }
    let rn = row_number().order_by(order).build()?.alias(NEXT);
    let b = LogicalPlanBuilder::from(plan).window(vec![rn])?;
    let exprs: Vec<Expr> = b
        .schema()
        .columns()
        .into_iter()
        .filter(|c| c.name != SEQ)
        .map(|c| {
            if c.name == NEXT {
                Expr::Column(c).alias(SEQ)
            } else {
                Expr::Column(c)
            }
        })
        .collect();
    Ok(b.project(exprs)?.build()?)
}

/// Puts the documents in their order and drops the order column.
pub fn finish(plan: LogicalPlan) -> Result<LogicalPlan> {
    if !has_seq(plan.schema()) {
        return Ok(plan);
    }
    let b = LogicalPlanBuilder::from(plan).sort(vec![by_seq()])?;
    let exprs: Vec<Expr> = b
        .schema()
        .columns()
        .into_iter()
        .filter(|c| c.name != SEQ)
        .map(Expr::Column)
        .collect();
    Ok(b.project(exprs)?.build()?)
}
