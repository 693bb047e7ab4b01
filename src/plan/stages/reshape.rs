//! `$replaceRoot` / `$replaceWith`, `$sample`, `$sampleRate` and `$bucketAuto`.

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

/// Plans `$bucketAuto`: each document's bucket number by Fluxion's `mongo_bucket_auto` window
/// function over all documents in `groupBy` order, then a `$group` by bucket with `output`'s
/// accumulators, and the bounds `{min, max}`: a bucket's smallest key, and the next bucket's
/// smallest (the last bucket's own largest), as in MongoDB. Buckets come out in key order.
pub fn plan_bucket_auto(
    input: LogicalPlan,
    b: &crate::dsl::reshape::BucketAuto,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    use crate::dsl::reshape::{BUCKET, BUCKET_KEY};
    use datafusion::functions_window::expr_fn::lead;
    use datafusion::logical_expr::ExprFunctionExt;
    use datafusion::logical_expr::expr::WindowFunction;

    let schema = input.schema().clone();
    let c = ExprCompiler::new(&schema);
    let key = c.compile(&b.group_by, &at.key("groupBy"))?;
    let mut order_by = vec![key.clone().sort(true, true)];
    if order::has_seq(&schema) {
        order_by.push(order::by_seq());
    }
    let bucket = Expr::from(WindowFunction::new(
        crate::udf::bucket_auto::udwf(),
        vec![key.clone(), lit(b.buckets as i64)],
    ))
    .order_by(order_by)
    .build()?;
    let mut cols: Vec<Expr> = schema.columns().into_iter().map(Expr::Column).collect();
    cols.push(key.alias(BUCKET_KEY));
    let keyed = LogicalPlanBuilder::from(input).project(cols)?.build()?;
    let numbered = LogicalPlanBuilder::from(keyed)
        .window(vec![bucket.alias(BUCKET)])?
        .build()?;
    // MongoDB sorts by the key to bucket: order-sensitive accumulators see that order.
    let numbered = order::number_by(
        numbered,
        vec![Expr::Column(Column::from_name(BUCKET_KEY)).sort(true, true)],
    )?;
    let grouped = super::group::plan(numbered, &b.group, &at.key("output"))?;
    let min = Expr::Column(Column::from_name(format!("{BUCKET}_min")));
    let max = Expr::Column(Column::from_name(format!("{BUCKET}_max")));
    let id = Expr::Column(Column::from_name("_id"));
    let next_min = lead(min.clone(), Some(1), None)
        .order_by(vec![id.clone().sort(true, false)])
        .build()?;
    let with_next = LogicalPlanBuilder::from(grouped)
        .window(vec![next_min.alias(crate::document::hidden::NEXT_MIN)])?
        .build()?;
    let upper = datafusion::functions::core::expr_fn::coalesce(vec![
        crate::document::hidden::column(crate::document::hidden::NEXT_MIN),
        max,
    ]);
    let mut out: Vec<(String, Expr)> = vec![(
        "_id".to_string(),
        datafusion::functions::core::expr_fn::named_struct(vec![
            lit("min"),
            min,
            lit("max"),
            upper,
        ]),
    )];
    for f in &b.group.fields {
        if !f.name.starts_with(BUCKET) {
            out.push((f.name.clone(), Expr::Column(Column::from_name(&f.name))));
        }
    }
    // Order the buckets by number, then drop it.
    let sorted = order::number_by(with_next, vec![id.sort(true, false)])?;
    project::project_fields(sorted, out, at)
}
