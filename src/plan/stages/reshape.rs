//! `$replaceRoot` / `$replaceWith` and `$sample`.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, lit};

use super::project;
use crate::Result;
use crate::dsl::JsonPath;
use crate::dsl::expression::Expression;
use crate::dsl::reshape::Sample;
use crate::plan::expr::ExprCompiler;
use crate::plan::order;

/// Plans `$replaceRoot`: the fields of the new root become the document's fields.
pub fn plan_replace_root(
    input: LogicalPlan,
    root: &Expression,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    // Errors name the operand: `$replaceRoot.newRoot`, or `$replaceWith` itself.
    let schema = input.schema().clone();
    let c = ExprCompiler::new(&schema);
    let t = c.typed(root, at)?;
    let DataType::Struct(fields) = &t.ty else {
        return Err(at.err(format!(
            "the new root must be a document, not {}",
            t.kind().name()
        )));
    };
    let out = fields
        .iter()
        .map(|f| {
            (
                f.name().clone(),
                get_field(t.expr.clone(), f.name().as_str()),
            )
        })
        .collect();
    project::project_fields(input, out, at)
}

/// Plans `$sample`: the `size` documents with the smallest seeded hash of their position.
pub fn plan_sample(input: LogicalPlan, s: &Sample, at: &JsonPath) -> Result<LogicalPlan> {
    let input = order::ensure(input)?;
    if !order::has_seq(input.schema()) {
        return Err(at.err(
            "$sample needs documents in a known order (a JSON-lines input, or a $sort before it)",
        ));
    }
    // A multiplicative hash modulo a prime, with a multiplier picked by the seed (so each
    // seed orders the documents differently); fits in 64 bits for up to 2e9 documents.
    const P: u64 = 4_294_967_291;
    let multiplier = 1_000_003 + s.seed.wrapping_mul(2_654_435_761) % P;
    let seq = Expr::Column(Column::from_name(order::SEQ));
    let key = (seq * lit(multiplier as i64) + lit(12_345i64)) % lit(P as i64);
    let sampled = LogicalPlanBuilder::from(input)
        .sort_with_limit(
            vec![key.sort(true, false), order::by_seq()],
            Some(s.size as usize),
        )?
        .build()?;
    Ok(sampled)
}
