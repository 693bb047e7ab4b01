//! `$limit` and `$skip`.

use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};

use crate::Result;

/// Plans `$limit: n`.
pub fn plan_limit(input: LogicalPlan, n: u64) -> Result<LogicalPlan> {
    Ok(LogicalPlanBuilder::from(input)
        .limit(0, Some(n as usize))?
        .build()?)
}

/// Plans `$skip: n`.
pub fn plan_skip(input: LogicalPlan, n: u64) -> Result<LogicalPlan> {
    Ok(LogicalPlanBuilder::from(input)
        .limit(n as usize, None)?
        .build()?)
}
