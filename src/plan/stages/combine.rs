//! Stages that read another input, or the same one several times: `$unionWith` (a union by
//! field name), `$lookup` (localField / foreignField: a left join against the foreign
//! documents grouped by their key, so each input document gets the array of its matches in
//! one pass; `let` / `pipeline` and array keys: a join on the conditions, gathered back per
//! document) and `$facet` (each sub-pipeline aggregated into one array, the arrays joined
//! into one document).

use std::collections::HashMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, NullEquality, ScalarValue};
use datafusion::functions::core::expr_fn::{coalesce, named_struct};
use datafusion::functions_aggregate::expr_fn::array_agg;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, JoinType, LogicalPlan, LogicalPlanBuilder, cast, lit,
};
use serde_json::json;

use super::project;
use crate::Result;
use crate::dsl::JsonPath;
use crate::dsl::reshape::{Lookup, UnionWith};
use crate::plan::expr::{ExprCompiler, Kind, truthy};
use crate::plan::field::{self, Mode};
use crate::plan::order;

/// The other inputs a pipeline reads, by name, as plans (numbered where they can be).
pub type Tables = HashMap<String, LogicalPlan>;

use crate::document::hidden::{self, BRANCH};

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

/// Plans `$lookup`. Scalar `localField` / `foreignField` keys are an equi-join against the
/// foreign documents grouped by key; array keys, `let` variables and `$match` pipelines are a
/// join on the conditions (DataFusion turns an equality among them into a hash join, anything
/// else is a nested-loop join), grouped back per input document; a pipeline without `let` is
/// run once and its result attached to every document.
pub fn plan_lookup(
    input: LogicalPlan,
    l: &Lookup,
    tables: &Tables,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    if l.as_field.segments().len() != 1 {
        return Err(at
            .key("as")
            .err("a nested \"as\" path is not supported yet; use a top-level field"));
    }
    let as_name = l.as_field.head().to_string();
    let foreign = table(tables, &l.from, at)?.clone();
    let mut conditions: Vec<Condition> = Vec::new();
    let mut lets = l.lets.clone();
    if let Some((local, foreign_field)) = &l.keys {
        let fk = field::resolve_in(foreign.schema(), foreign_field, Mode::Expression);
        let lk = field::resolve_in(input.schema(), local, Mode::Expression);
        let local_array = lk.through_array || Kind::of(&lk.ty) == Kind::Array;
        let foreign_array = fk.through_array || Kind::of(&fk.ty) == Kind::Array;
        if l.pipeline.is_none() && !local_array && !foreign_array {
            return equi_lookup(input, foreign, lk, fk, &as_name, at);
        }
        // Arrays match when any element matches (MongoDB's rule), as a join condition.
        let f = format!("${}", foreign_field.segments().join("."));
        let cond = match (local_array, foreign_array) {
            (false, false) => json!({"$eq": [f, "$$fluxionLocalKey"]}),
            (true, false) => json!({"$in": [f, {"$ifNull": ["$$fluxionLocalKey", []]}]}),
            (false, true) => json!({"$in": ["$$fluxionLocalKey", {"$ifNull": [f, []]}]}),
            (true, true) => json!({"$gt": [{"$size": {"$setIntersection": [
                {"$ifNull": ["$$fluxionLocalKey", []]}, {"$ifNull": [f, []]}]}}, 0]}),
        };
        let local_path = format!("${}", local.segments().join("."));
        lets.push((
            "fluxionLocalKey".to_string(),
            crate::dsl::Expression::parse(&json!(local_path), &at.key("localField"))?,
        ));
        conditions.push(Condition::Expr(
            crate::dsl::Expression::parse(&cond, &at.key("foreignField"))?,
            at.key("foreignField"),
        ));
    }
    let pipeline = l.pipeline.as_ref();
    if conditions.is_empty() && lets.is_empty() {
        let p = pipeline.expect("parsed: keys or a pipeline");
        return uncorrelated_lookup(input, foreign, p, tables, &as_name, at);
    }
    // Leading `$match` stages are join conditions (they may read the variables); the stages
    // after them reshape each match on its own.
    let stages = pipeline.map_or(&[][..], |p| &p.stages[..]);
    let leading = stages
        .iter()
        .take_while(|s| matches!(s.kind, crate::dsl::StageKind::Match(_)))
        .count();
    for stage in &stages[..leading] {
        if let crate::dsl::StageKind::Match(q) = &stage.kind {
            conditions.push(Condition::Query(q.clone()));
        }
    }
    let after = &stages[leading..];
    if let Some(s) = after.iter().find(|s| {
        !matches!(
            s.kind,
            crate::dsl::StageKind::Match(_)
                | crate::dsl::StageKind::Project(_)
                | crate::dsl::StageKind::AddFields(_)
                | crate::dsl::StageKind::Unset(_)
                | crate::dsl::StageKind::ReplaceRoot(_)
        )
    }) {
        return Err(s.path.err(
            "a $lookup pipeline with let variables (or localField) supports $match, $project, $addFields/$set, $unset and $replaceRoot stages (yet)",
        ));
    }
    let after = crate::dsl::Pipeline {
        stages: after.to_vec(),
    };
    correlated_lookup(
        input,
        foreign,
        &lets,
        &conditions,
        &after,
        tables,
        &as_name,
        at,
    )
}

/// A join condition of a correlated `$lookup`.
enum Condition {
    /// An aggregation expression, true by MongoDB's truthiness.
    Expr(crate::dsl::Expression, JsonPath),
    /// A `$match` query of the pipeline.
    Query(crate::dsl::query::Query),
}

/// `$lookup` on scalar keys: a left join against the foreign documents grouped by key.
fn equi_lookup(
    input: LogicalPlan,
    foreign: LogicalPlan,
    lk: field::Resolved,
    fk: field::Resolved,
    as_name: &str,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    const KEY: &str = hidden::LOOKUP_KEY;
    const LOCAL: &str = hidden::LOOKUP_LOCAL;
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
    place_matches(&input, joined, as_name, at)
}

/// Where the matches of each document are gathered before they become the `as` field.
const DOCS: &str = hidden::LOOKUP_DOCS;

/// Projects `input`'s fields from `joined`, with `as` (replaced in place, or appended) the
/// gathered matches (`[]` when none).
fn place_matches(
    input: &LogicalPlan,
    joined: LogicalPlan,
    as_name: &str,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    let docs_ty = joined
        .schema()
        .field_with_unqualified_name(DOCS)?
        .data_type()
        .clone();
    let empty = match &docs_ty {
        DataType::List(elem) => {
            ScalarValue::List(ScalarValue::new_list_nullable(&[], elem.data_type()))
        }
        other => return Err(at.err(format!("unexpected lookup result type {other}"))),
    };
    let matches = coalesce(vec![Expr::Column(Column::from_name(DOCS)), lit(empty)]);
    let mut out: Vec<(String, Expr)> = Vec::new();
    let mut placed = false;
    for c in input.schema().columns() {
        if c.name == as_name {
            out.push((as_name.to_string(), matches.clone()));
            placed = true;
        } else {
            let name = c.name.clone();
            out.push((name, Expr::Column(c)));
        }
    }
    if !placed {
        out.push((as_name.to_string(), matches));
    }
    project::project_fields(joined, out, at)
}

/// `$lookup` with a pipeline and no variables: the pipeline's result, the same array for
/// every document.
fn uncorrelated_lookup(
    input: LogicalPlan,
    foreign: LogicalPlan,
    pipeline: &crate::dsl::Pipeline,
    tables: &Tables,
    as_name: &str,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    let result = crate::plan::compile_stages(pipeline, foreign, tables)?;
    let agg = collect_documents(&result, at)?;
    let collected = LogicalPlanBuilder::from(result)
        .aggregate(Vec::<Expr>::new(), vec![agg.alias(DOCS)])?
        .build()?;
    let joined = LogicalPlanBuilder::from(input.clone())
        .cross_join(collected)?
        .build()?;
    place_matches(&input, joined, as_name, at)
}

/// `$lookup` whose matches depend on each document (`let` variables, array keys): the foreign
/// documents joined with each document's variables on the conditions, gathered back per
/// document in the foreign input's order.
#[allow(clippy::too_many_arguments)]
fn correlated_lookup(
    input: LogicalPlan,
    foreign: LogicalPlan,
    lets: &[(String, crate::dsl::Expression)],
    conditions: &[Condition],
    after: &crate::dsl::Pipeline,
    tables: &Tables,
    as_name: &str,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    const ROW: &str = hidden::LOOKUP_ROW;
    const FSEQ: &str = hidden::LOOKUP_SEQ;
    // Each input document needs an identity to gather its matches by.
    let input = if order::has_seq(input.schema()) {
        input
    } else {
        order::number_by(input, Vec::new())?
    };
    let c = ExprCompiler::new(input.schema());
    let mut local = vec![Expr::Column(Column::from_name(order::SEQ)).alias(ROW)];
    let mut vars = Vec::new();
    for (i, (name, e)) in lets.iter().enumerate() {
        let t = c.typed(e, &at.key("let").key(name))?;
        let alias = hidden::numbered("let", i);
        local.push(t.expr.alias(&alias));
        vars.push((name.clone(), alias, t.ty));
    }
    let local = LogicalPlanBuilder::from(input.clone())
        .project(local)?
        .build()?;
    // The foreign documents keep their field names; their own order column is set aside.
    let foreign_ordered = order::has_seq(foreign.schema());
    let foreign_cols: Vec<Expr> = foreign
        .schema()
        .columns()
        .into_iter()
        .map(|col| {
            if col.name == order::SEQ {
                Expr::Column(col).alias(FSEQ)
            } else {
                Expr::Column(col)
            }
        })
        .collect();
    let joined = LogicalPlanBuilder::from(foreign)
        .project(foreign_cols)?
        .cross_join(local)?
        .build()?;
    let schema = joined.schema().clone();
    let mut compiler = ExprCompiler::new(&schema);
    for (name, alias, ty) in &vars {
        compiler = compiler.with_var(
            name,
            crate::plan::expr::Typed {
                expr: Expr::Column(Column::from_name(alias)),
                ty: ty.clone(),
            },
        );
    }
    let mut predicate = lit(true);
    for cond in conditions {
        let p = match cond {
            Condition::Expr(e, path) => truthy(&compiler.typed(e, path)?),
            Condition::Query(q) => super::match_stage::predicate_in(&compiler, q)?,
        };
        predicate = predicate.and(p);
    }
    let matched = LogicalPlanBuilder::from(joined)
        .filter(predicate)?
        .build()?;
    // Each match numbered (document, then foreign order) in the order column, so that the
    // per-match stages keep it and the matches can be gathered back in order.
    const PER_ROW: i64 = 1 << 32;
    let hidden = |n: &str| n == ROW || n == FSEQ || vars.iter().any(|(_, alias, _)| alias == n);
    let mut cols: Vec<Expr> = matched
        .schema()
        .columns()
        .into_iter()
        .filter(|col| !hidden(&col.name))
        .map(Expr::Column)
        .collect();
    let fseq = if foreign_ordered {
        cast(Expr::Column(Column::from_name(FSEQ)), DataType::Int64)
    } else {
        lit(0i64)
    };
    let seq = cast(Expr::Column(Column::from_name(ROW)), DataType::Int64) * lit(PER_ROW) + fseq;
    cols.push(seq.alias(order::SEQ));
    let numbered = LogicalPlanBuilder::from(matched).project(cols)?.build()?;
    let reshaped = crate::plan::compile_stages(after, numbered, tables)?;
    if !order::has_seq(reshaped.schema()) {
        return Err(at
            .key("pipeline")
            .err("the pipeline's stages lost the documents' order"));
    }
    let agg = collect_documents(&reshaped, at)?;
    let row = cast(Expr::Column(Column::from_name(order::SEQ)), DataType::Int64) / lit(PER_ROW);
    let grouped = LogicalPlanBuilder::from(reshaped)
        .aggregate(vec![row.alias(ROW)], vec![agg.alias(DOCS)])?
        .build()?;
    let joined = LogicalPlanBuilder::from(input.clone())
        .join(grouped, JoinType::Left, (vec![order::SEQ], vec![ROW]), None)?
        .build()?;
    place_matches(&input, joined, as_name, at)
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
        .filter(|c| !order::rides(&c.name))
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
