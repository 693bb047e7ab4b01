//! `$limit` and `$skip`: the first documents in the pipeline's order (`plan::order`).

use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};

use crate::Result;
use crate::plan::order;

/// Plans `$limit: n`.
pub fn plan_limit(input: LogicalPlan, n: u64) -> Result<LogicalPlan> {
    let input = ordered(order::ensure(input)?, Some(n))?;
    Ok(LogicalPlanBuilder::from(input)
        .limit(0, Some(n as usize))?
        .build()?)
}

/// Plans `$skip: n`.
pub fn plan_skip(input: LogicalPlan, n: u64) -> Result<LogicalPlan> {
    let input = ordered(order::ensure(input)?, None)?;
    Ok(LogicalPlanBuilder::from(input)
        .limit(n as usize, None)?
        .build()?)
}

/// `input` sorted by the order column (each partition already is, so this is a merge), keeping
/// the first `fetch` documents when given.
fn ordered(input: LogicalPlan, fetch: Option<u64>) -> Result<LogicalPlan> {
    if !order::has_seq(input.schema()) {
        return Ok(input);
    }
    Ok(LogicalPlanBuilder::from(input)
        .sort_with_limit(vec![order::by_seq()], fetch.map(|n| n as usize))?
        .build()?)
}
