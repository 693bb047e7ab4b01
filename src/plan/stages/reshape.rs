//! `$replaceRoot` / `$replaceWith`, `$sample` and `$sampleRate`.

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

/// The modulus of the sampling hash.
const P: u64 = 4_294_967_291;

/// A hash of each document's position, uniform in `0..P`: a multiplicative hash modulo a prime,
/// with a multiplier picked by `seed` (so each seed orders the documents differently); fits in
/// 64 bits for up to 2.5e9 documents.
fn position_hash(
    input: LogicalPlan,
    seed: u64,
    stage: &str,
    at: &JsonPath,
) -> Result<(LogicalPlan, Expr)> {
    let input = order::ensure(input)?;
    if !order::has_seq(input.schema()) {
        return Err(at.err(format!(
            "{stage} needs documents in a known order (a JSON-lines input, or a $sort before it)"
        )));
    }
    // Near P times the golden ratio's fraction, so consecutive positions land far apart.
    let multiplier = 2_654_435_761 + seed.wrapping_mul(40_503) % 1_000_000_000;
    let seq = Expr::Column(Column::from_name(order::SEQ));
    Ok((
        input,
        (seq * lit(multiplier as i64) + lit(12_345i64)) % lit(P as i64),
    ))
}

/// Plans `$sampleRate`: the documents whose hash falls below `rate` of the range (MongoDB's
/// is random; this one is repeatable).
pub fn plan_sample_rate(input: LogicalPlan, rate: f64, at: &JsonPath) -> Result<LogicalPlan> {
    let (input, key) = position_hash(input, 0, "$sampleRate", at)?;
    let bound = (rate * P as f64) as i64;
    Ok(LogicalPlanBuilder::from(input)
        .filter(key.lt(lit(bound)))?
        .build()?)
}

/// Plans `$sample`: the `size` documents with the smallest seeded hash of their position.
pub fn plan_sample(input: LogicalPlan, s: &Sample, at: &JsonPath) -> Result<LogicalPlan> {
    let (input, key) = position_hash(input, s.seed, "$sample", at)?;
    let sampled = LogicalPlanBuilder::from(input)
        .sort_with_limit(
            vec![key.sort(true, false), order::by_seq()],
            Some(s.size as usize),
        )?
        .build()?;
    Ok(sampled)
}
