//! A table whose rows are bound anew before every run of a prepared plan: the micro-batch a
//! stream is working on, or the rows an operator merges. The plan scanning it is built once;
//! each execution reads whatever was bound last.
//!
//! A numbered table adds the order column (`plan::order::SEQ`) when it is read, counting from
//! the number bound with the rows, and declares its one partition sorted by it, as
//! `plan::order::register_ordered_from` does for a table registered per batch. It reports no
//! statistics, so nothing about one batch (its row count) is planned into the plan that runs
//! them all.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, Partitioning, PhysicalExpr, PhysicalSortExpr,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use datafusion::prelude::SessionContext;

use crate::Result;
use crate::plan::order::{self, SEQ};

/// What is bound: the rows, and the number of the first (numbered tables).
#[derive(Debug, Default)]
struct Bound {
    batches: Vec<RecordBatch>,
    first: i64,
}

/// A table of fixed schema whose rows are replaced by [`BoundTable::bind`].
#[derive(Debug)]
pub struct BoundTable {
    /// The rows' schema (without the order column).
    rows: SchemaRef,
    /// The table's schema: the rows', plus the order column when numbered.
    schema: SchemaRef,
    numbered: bool,
    slot: Arc<Mutex<Bound>>,
}

impl BoundTable {
    /// A table of rows of `rows`' schema; `numbered` adds the order column.
    pub fn new(rows: SchemaRef, numbered: bool) -> Arc<BoundTable> {
        let schema = if numbered {
            let mut fields: Vec<Arc<Field>> = rows.fields().iter().cloned().collect();
            fields.push(Arc::new(Field::new(SEQ, DataType::Int64, false)));
            Arc::new(Schema::new(fields))
        } else {
            rows.clone()
        };
        Arc::new(BoundTable {
            rows,
            schema,
            numbered,
            slot: Arc::default(),
        })
    }

    /// The rows' schema (without the order column).
    pub fn rows_schema(&self) -> &SchemaRef {
        &self.rows
    }

    /// Binds `batches` (of the rows' schema), numbered from `first`, for the next runs.
    pub fn bind(&self, batches: Vec<RecordBatch>, first: i64) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Bound { batches, first };
    }

    /// Lets go of the bound rows (they are not needed until the next bind).
    pub fn clear(&self) {
        self.bind(Vec::new(), 0);
    }
}

/// Registers a numbered bound table as `name`'s numbered source (what pipelines read) and
/// `name` as a view of it without the order column (what SQL reads), like
/// `plan::order::register_ordered` does with a table of fixed rows.
pub fn register_numbered(
    ctx: &SessionContext,
    name: &str,
    rows: SchemaRef,
) -> Result<Arc<BoundTable>> {
    let table = BoundTable::new(rows.clone(), true);
    order::register_numbered_source(ctx, name, &rows, table.clone())?;
    Ok(table)
}

#[async_trait::async_trait]
impl TableProvider for BoundTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        // Sorted by the order column, when it is read.
        let mut eq = EquivalenceProperties::new(schema.clone());
        if self.numbered
            && let Ok(i) = schema.index_of(SEQ)
        {
            let seq: Arc<dyn PhysicalExpr> =
                Arc::new(datafusion::physical_expr::expressions::Column::new(SEQ, i));
            if let Some(ordering) = LexOrdering::new([PhysicalSortExpr::new_default(seq)]) {
                eq.add_ordering(ordering);
            }
        }
        let properties = PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(BoundExec {
            slot: self.slot.clone(),
            table: self.schema.clone(),
            numbered: self.numbered,
            projection: projection.cloned(),
            schema,
            properties: Arc::new(properties),
        }))
    }
}

/// The scan of a [`BoundTable`]: the rows bound when it is executed.
#[derive(Debug)]
struct BoundExec {
    slot: Arc<Mutex<Bound>>,
    /// The table's schema, and the scan's (after `projection`).
    table: SchemaRef,
    numbered: bool,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for BoundExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "BoundExec")
    }
}

impl ExecutionPlan for BoundExec {
    fn name(&self) -> &str {
        "BoundExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::common::Result<TreeNodeRecursion>,
    ) -> datafusion::common::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> datafusion::common::Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(datafusion::common::DataFusionError::Internal(format!(
                "a bound table has one partition (asked for {partition})"
            )));
        }
        let (batches, first) = {
            let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            (slot.batches.clone(), slot.first)
        };
        let mut next = first;
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            let b = if self.numbered {
                let n = b.num_rows() as i64;
                let seq: ArrayRef = Arc::new(Int64Array::from_iter_values(next..next + n));
                next += n;
                let mut columns = b.columns().to_vec();
                columns.push(seq);
                RecordBatch::try_new(self.table.clone(), columns)?
            } else {
                b
            };
            out.push(match &self.projection {
                Some(p) => b.project(p)?,
                None => b,
            });
        }
        Ok(Box::pin(MemoryStream::try_new(
            out,
            self.schema.clone(),
            None,
        )?))
    }
}
