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

pub use stages::combine::Tables;

/// Compiles `pipeline` on top of `input` (usually a table scan); `tables` holds the other
/// inputs that `$lookup` and `$unionWith` read. The result is in the pipeline's order,
/// without Fluxion's working columns.
pub fn compile(pipeline: &Pipeline, input: LogicalPlan, tables: &Tables) -> Result<LogicalPlan> {
    order::finish(compile_stages(pipeline, input, tables)?)
}

/// Compiles the stages of `pipeline`, keeping the order column for the caller.
pub fn compile_stages(
    pipeline: &Pipeline,
    input: LogicalPlan,
    tables: &Tables,
) -> Result<LogicalPlan> {
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
            StageKind::ReplaceRoot(e) => stages::reshape::plan_replace_root(plan, e, at)?,
            StageKind::Sample(s) => stages::reshape::plan_sample(plan, s, at)?,
            StageKind::BucketAuto(b) => stages::reshape::plan_bucket_auto(plan, b, at)?,
            StageKind::Densify(d) => stages::densify::plan(plan, d, at)?,
            StageKind::SampleRate(r) => stages::reshape::plan_sample_rate(plan, *r, at)?,
            StageKind::UnionWith(u) => stages::combine::plan_union(plan, u, tables, at)?,
            StageKind::Lookup(l) => stages::combine::plan_lookup(plan, l, tables, at)?,
            StageKind::Facet(facets) => stages::combine::plan_facet(plan, facets, tables, at)?,
            StageKind::SetWindowFields(w) => stages::set_window_fields::plan(plan, w, at)?,
            StageKind::Rules(r) => stages::rules::plan(plan, r, tables, at)?,
            StageKind::StreamWindow(_) => {
                return Err(at.err(
                    "window stages run on a stream: in a streaming job (fluxion run JOB.json), or over recorded input with fluxion replay",
                ));
            }
        };
    }
    Ok(plan)
}
