//! `$sort`: null and missing values sort first ascending and last descending, as in MongoDB.

use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};

use crate::Result;
use crate::dsl::JsonPath;
use crate::dsl::sort::SortKey;
use crate::plan::field;

/// Plans a `$sort` stage.
pub fn plan(input: LogicalPlan, keys: &[SortKey], at: &JsonPath) -> Result<LogicalPlan> {
    let exprs = keys
        .iter()
        .map(|k| {
            let (e, _) = field::resolve(input.schema(), &k.field, &at.key(&k.field.to_string()))?;
            Ok(e.sort(k.ascending, k.ascending))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(LogicalPlanBuilder::from(input).sort(exprs)?.build()?)
}
