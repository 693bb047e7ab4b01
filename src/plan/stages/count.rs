//! `$count`: one document holding the number of input documents — none for empty input.

use datafusion::common::Column;
use datafusion::functions_aggregate::count::count_all;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, lit};

use crate::Result;

/// Plans `$count: field`.
pub fn plan(input: LogicalPlan, field: &str) -> Result<LogicalPlan> {
    Ok(LogicalPlanBuilder::from(input)
        .aggregate(Vec::<Expr>::new(), vec![count_all().alias(field)])?
        .filter(Expr::Column(Column::from_name(field)).gt(lit(0i64)))?
        .build()?)
}
