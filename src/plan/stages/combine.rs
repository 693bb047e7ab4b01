//! Stages that read another input, or the same one several times: `$unionWith` (a union by
//! field name), `$lookup` (localField / foreignField: a left join against the foreign
//! documents grouped by their key, so each input document gets the array of its matches in
//! one pass) and `$facet` (each sub-pipeline aggregated into one array, the arrays joined
//! into one document).

use std::collections::HashMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, NullEquality, ScalarValue};
use datafusion::functions::core::expr_fn::{coalesce, named_struct};
use datafusion::functions_aggregate::expr_fn::array_agg;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, JoinType, LogicalPlan, LogicalPlanBuilder, cast, lit,
};

use super::project;
use crate::Result;
use crate::dsl::JsonPath;
use crate::dsl::reshape::{Lookup, UnionWith};
use crate::plan::expr::Kind;
use crate::plan::field::{self, Mode};
use crate::plan::order;

/// The other inputs a pipeline reads, by name, as plans (numbered where they can be).
pub type Tables = HashMap<String, LogicalPlan>;

const BRANCH: &str = "__fluxion_branch";

fn table<'a>(tables: &'a Tables, name: &str, at: &JsonPath) -> Result<&'a LogicalPlan> {
    tables.get(name).ok_or_else(|| {
        at.err(format!(
            "unknown input \"{name}\" (register it with --input {name}=PATH)"
        ))
    })
}

/// Plans `$unionWith`: the input's documents, then those of the other input (after its own
/// pipeline), matched by field name.
pub fn plan_union(
    input: LogicalPlan,
    u: &UnionWith,
    tables: &Tables,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    let other = table(tables, &u.coll, at)?.clone();
    let other = match &u.pipeline {
        Some(p) => crate::plan::compile_stages(p, other, tables)?,
        None => other,
    };
    let tag = |plan: LogicalPlan, branch: i64| -> Result<LogicalPlan> {
        let mut exprs: Vec<Expr> = plan
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        exprs.push(lit(branch).alias(BRANCH));
        Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
    };
    let union = LogicalPlanBuilder::from(tag(input, 0)?)
        .union_by_name(tag(other, 1)?)
        .map_err(|e| at.err(format!("cannot combine the two inputs' fields: {e}")))?
        .build()?;
    let branch = Expr::Column(Column::from_name(BRANCH));
    let numbered = order::renumber(union, vec![branch.sort(true, false)])?;
    project::drop_columns(numbered, &[BRANCH], at)
}

/// Plans `$lookup` with `localField` / `foreignField`.
pub fn plan_lookup(
    input: LogicalPlan,
    l: &Lookup,
    tables: &Tables,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    const KEY: &str = "__fluxion_lookup_key";
    const LOCAL: &str = "__fluxion_lookup_local";
    const DOCS: &str = "__fluxion_lookup_docs";
    if l.as_field.segments().len() != 1 {
        return Err(at
            .key("as")
            .err("a nested \"as\" path is not supported yet; use a top-level field"));
    }
    let foreign = table(tables, &l.from, at)?.clone();
    let fk = field::resolve_in(foreign.schema(), &l.foreign_field, Mode::Expression);
    let lk = field::resolve_in(input.schema(), &l.local_field, Mode::Expression);
    for (r, name) in [(&fk, "foreignField"), (&lk, "localField")] {
        if r.through_array || Kind::of(&r.ty) == Kind::Array {
            return Err(at
                .key(name)
                .err("matching on an array field is not supported yet"));
        }
    }
    // The key types must agree for the join: numbers meet as doubles; other mixes never match.
    let (local_key, foreign_key) = match (Kind::of(&lk.ty), Kind::of(&fk.ty)) {
        (a, b) if lk.ty == fk.ty || a == Kind::Null || b == Kind::Null => (lk.expr, fk.expr),
        (Kind::Number, Kind::Number) => (
            cast(lk.expr, DataType::Float64),
            cast(fk.expr, DataType::Float64),
        ),
        _ => (lk.expr, lit(ScalarValue::Null)),
    };
    // Each foreign document as a struct, gathered per key in the foreign input's order.
    let agg = collect_documents(&foreign, at)?;
    let grouped = LogicalPlanBuilder::from(foreign)
        .aggregate(vec![foreign_key.alias(KEY)], vec![agg.alias(DOCS)])?
        .build()?;
    let docs_ty = grouped
        .schema()
        .field_with_unqualified_name(DOCS)?
        .data_type()
        .clone();
    let mut left: Vec<Expr> = input
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    left.push(local_key.alias(LOCAL));
    // Missing or null keys meet foreign documents whose key is missing or null, as in MongoDB.
    let joined = LogicalPlanBuilder::from(input.clone())
        .project(left)?
        .join_detailed(
            grouped,
            JoinType::Left,
            (vec![LOCAL], vec![KEY]),
            None,
            NullEquality::NullEqualsNull,
        )?
        .build()?;
    let empty = match &docs_ty {
        DataType::List(elem) => {
            ScalarValue::List(ScalarValue::new_list_nullable(&[], elem.data_type()))
        }
        other => return Err(at.err(format!("unexpected lookup result type {other}"))),
    };
    let matches = coalesce(vec![Expr::Column(Column::from_name(DOCS)), lit(empty)]);
    let as_name = l.as_field.head().to_string();
    let mut out: Vec<(String, Expr)> = Vec::new();
    let mut placed = false;
    for c in input.schema().columns() {
        if c.name == as_name {
            out.push((as_name.clone(), matches.clone()));
            placed = true;
        } else {
            let name = c.name.clone();
            out.push((name, Expr::Column(c)));
        }
    }
    if !placed {
        out.push((as_name, matches));
    }
    project::project_fields(joined, out, at)
}

/// Plans `$facet`: one document whose fields are the sub-pipelines' results, as arrays in
/// each sub-pipeline's order.
pub fn plan_facet(
    input: LogicalPlan,
    facets: &[(String, crate::dsl::Pipeline)],
    tables: &Tables,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    let mut joined: Option<LogicalPlanBuilder> = None;
    for (name, pipeline) in facets {
        let here = at.key(name);
        let result = crate::plan::compile_stages(pipeline, input.clone(), tables)?;
        let agg = collect_documents(&result, &here)?;
        let collected = LogicalPlanBuilder::from(result)
            .aggregate(Vec::<Expr>::new(), vec![agg.alias(name)])?;
        // No documents: an empty array, not null.
        let ty = collected
            .schema()
            .field_with_unqualified_name(name)?
            .data_type()
            .clone();
        let DataType::List(elem) = &ty else {
            return Err(here.err(format!("unexpected facet result type {ty}")));
        };
        let empty = ScalarValue::List(ScalarValue::new_list_nullable(&[], elem.data_type()));
        let column = coalesce(vec![Expr::Column(Column::from_name(name)), lit(empty)]).alias(name);
        let one = collected.project(vec![column])?.build()?;
        joined = Some(match joined {
            None => LogicalPlanBuilder::from(one),
            Some(b) => b.cross_join(one)?,
        });
    }
    Ok(joined.expect("at least one facet").build()?)
}

/// `array_agg` of the documents of `plan` as structs (all fields but the order column), in
/// the plan's document order.
fn collect_documents(plan: &LogicalPlan, at: &JsonPath) -> Result<Expr> {
    let fields: Vec<Expr> = plan
        .schema()
        .columns()
        .into_iter()
        .filter(|c| c.name != order::SEQ)
        .flat_map(|c| [lit(c.name.clone()), Expr::Column(c)])
        .collect();
    if fields.is_empty() {
        return Err(at.err("these documents have no fields"));
    }
    let doc = named_struct(fields);
    Ok(if order::has_seq(plan.schema()) {
        array_agg(doc).order_by(vec![order::by_seq()]).build()?
    } else {
        array_agg(doc)
    })
}
