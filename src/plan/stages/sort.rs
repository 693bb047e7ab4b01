//! `$sort`: null and missing values sort first ascending and last descending, as in MongoDB.
//! Ties keep the order they had (a stable sort), and the documents are renumbered in the new
//! order so later stages follow it (`plan::order`).

use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};

use crate::Result;
use crate::dsl::JsonPath;
use crate::dsl::sort::SortKey;
use crate::plan::{field, order};

/// Plans a `$sort` stage; `fetch` is the `$limit` that follows it, if any.
pub fn plan(
    input: LogicalPlan,
    keys: &[SortKey],
    fetch: Option<u64>,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    let exprs = keys
        .iter()
        .map(|k| {
            let (e, _) = field::resolve(input.schema(), &k.field, &at.key(&k.field.to_string()))?;
            Ok(e.sort(k.ascending, k.ascending))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut all = exprs.clone();
    if order::has_seq(input.schema()) {
        all.push(order::by_seq());
    }
    let sorted = LogicalPlanBuilder::from(input)
        .sort_with_limit(all, fetch.map(|n| n as usize))?
        .build()?;
    // Number the documents in their new order, also when they had no number (after
    // `$group`, or from a CSV / Parquet source).
    order::number_by(sorted, exprs)
}
