//! Planning: a parsed pipeline compiled onto a DataFusion [`LogicalPlan`].
//!
//! Each stage rewrites the plan built so far, so a pipeline is a chain of ordinary logical
//! operators (filter, projection, aggregate, sort, limit) that DataFusion's optimizer and
//! physical planner treat exactly like the plan of the equivalent SQL query.

pub mod expr;
pub mod field;
pub mod order;
pub mod stages;

use datafusion::logical_expr::LogicalPlan;

use crate::Result;
use crate::dsl::{Pipeline, StageKind};

/// Compiles `pipeline` on top of `input` (usually a table scan).
pub fn compile(pipeline: &Pipeline, input: LogicalPlan) -> Result<LogicalPlan> {
    let mut plan = input;
    let mut stages = pipeline.stages.iter().peekable();
    while let Some(stage) = stages.next() {
        let at = &stage.path;
        plan = match &stage.kind {
            StageKind::Match(q) => stages::match_stage::plan(plan, q, at)?,
            StageKind::Project(p) => stages::project::plan_project(plan, p, at)?,
            StageKind::AddFields(t) => stages::project::plan_add_fields(plan, t, at)?,
            StageKind::Unset(t) => stages::project::plan_unset(plan, t, at)?,
            StageKind::Group(g) => stages::group::plan(plan, g, at)?,
            StageKind::Sort(keys) => {
                // `$sort` + `$limit` is a top-n: only n documents are sorted and renumbered.
                let fetch = match stages.peek().map(|s| &s.kind) {
                    Some(StageKind::Limit(n)) => Some(*n),
                    _ => None,
                };
                stages::sort::plan(plan, keys, fetch, at)?
            }
            StageKind::Limit(n) => stages::limit::plan_limit(plan, *n)?,
            StageKind::Skip(n) => stages::limit::plan_skip(plan, *n)?,
            StageKind::Count(field) => stages::count::plan(plan, field)?,
            StageKind::Unwind(u) => stages::unwind::plan(plan, u, at)?,
        };
    }
    order::finish(plan)
}
