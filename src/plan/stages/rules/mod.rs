//! `$rules`: a rule set judged over the batch in one plan.
//!
//! Every rule whose `when` only filters (json-rules-engine conditions, or `$match` stages)
//! becomes one boolean column; all of them are evaluated in one projection over the batch.
//! A rule whose stages do more (`$addFields` then `$match`, `$unwind`, …) runs as its own
//! sub-plan over the same input, and a left join on the document number marks the documents
//! it emits. Then, column-wise:
//!
//! 1. `rules_fired(pass…)` applies the hit policy: the positions (in evaluation order) of the
//!    rules that fire for each document;
//! 2. `rule_decision(fired, values…)` builds the decision sub-document (`as`);
//! 3. in `execute` mode, each field an action sets or unsets becomes a `$cond` over the
//!    fired positions — the last fired rule that writes a field wins, as if the actions ran
//!    one after the other in evaluation order.
//!
//! Conditions and action values read the document as it came in: an action does not change
//! what later rules see, which is what lets all rules be judged in one pass.

pub mod condition;

use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, LogicalPlanBuilder, lit};
use serde_json::{Map, Value, json};

use crate::Result;
use crate::document::hidden::{self, RIDE_RULE_DOC, RULES_FIRED, SEQ};
use crate::dsl::expression::Expression;
use crate::dsl::project::parse_add_fields;
use crate::dsl::rule_set::{ActionSpec, Rule, RulesMode, RulesStage, When};
use crate::dsl::{JsonPath, Pipeline, StageKind};
use crate::plan::expr::{ExprCompiler, Typed};
use crate::plan::order;
use crate::plan::stages::combine::Tables;
use crate::plan::stages::{match_stage, project};
use crate::udf::rule_decision::{ActionOut, RuleDecision, RuleOut, TraceOut};
use crate::udf::rules_fired::{RulesFired, fired_type};

/// The built-in actions.
pub const ACTIONS: &[&str] = &["set", "unset", "tag", "emit", "route"];

/// Adds the `$rules` stage `stage` on top of `input`.
pub fn plan(
    input: LogicalPlan,
    stage: &RulesStage,
    tables: &Tables,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    let rs = &stage.rule_set;
    let order = rs.evaluation_order();
    // Rules that are more than a filter: their own plan, joined back by document number.
    let mut plan = input;
    let mut hits = vec![None; rs.rules.len()];
    for (k, &r) in order.iter().enumerate() {
        let rule = &rs.rules[r];
        if let When::Stages(p) = &rule.when
            && !rule.is_filter()
        {
            let marker = hidden::rule_hit(k);
            plan = join_sub_plan(plan, p, tables, &marker, rule)?;
            hits[r] = Some(marker);
        }
    }
    let schema = plan.schema().clone();
    let c = ExprCompiler::new(&schema);
    let mut passes = Vec::with_capacity(order.len());
    // The decision's arguments after `fired`.
    let mut args: Vec<Expr> = Vec::new();
    let mut outs = Vec::with_capacity(order.len());
    for &r in &order {
        let rule = &rs.rules[r];
        let mut trace = Vec::new();
        let pass = match (&rule.when, &hits[r]) {
            (_, Some(marker)) => hidden::column(marker).is_not_null(),
            (When::Conditions(cond), None) => {
                let (pass, leaves) = condition::compile(&c, cond, stage.trace)?;
                for l in leaves {
                    trace.push(TraceOut {
                        fixed: l.fixed.to_string(),
                        fact_arg: Some(push(&mut args, l.fact)),
                        result_arg: push(&mut args, l.result),
                    });
                }
                pass
            }
            (When::Stages(p), None) => {
                let mut pass = lit(true);
                for (i, s) in p.stages.iter().enumerate() {
                    let StageKind::Match(q) = &s.kind else {
                        continue;
                    };
                    let one = match_stage::predicate(&schema, q)?.is_true();
                    if stage.trace {
                        trace.push(TraceOut {
                            fixed: json!({"stage": i, "operator": "$match"}).to_string(),
                            fact_arg: None,
                            result_arg: push(&mut args, one.clone()),
                        });
                    }
                    pass = pass.and(one);
                }
                pass
            }
        };
        let passed_arg = stage.trace.then(|| push(&mut args, pass.clone()));
        passes.push(pass);
        let actions = rule
            .actions
            .iter()
            .map(|a| action_out(&c, rule, a, &stage.custom_actions, &mut args))
            .collect::<Result<Vec<_>>>()?;
        outs.push(RuleOut {
            id: rule.id.clone(),
            actions,
            trace,
            passed_arg,
        });
    }
    let saliences = order.iter().map(|&r| rs.rules[r].salience).collect();
    let fired = RulesFired::udf(saliences, rs.hit_policy).call(passes);
    let mut decision_args = vec![hidden::column(RULES_FIRED)];
    decision_args.extend(args);
    let decision = RuleDecision::udf(rs.label(), outs, stage.trace).call(decision_args);

    // One projection adds the fired positions; the next the decision (and, executing, the
    // fields the actions write); the last drops the working columns.
    let mut fields = project::columns(plan.schema());
    fields.push((RULES_FIRED.to_string(), fired));
    let plan = project::project_fields(plan, fields, at)?;
    let mut fields: Vec<(String, Expr)> = project::columns(plan.schema())
        .into_iter()
        .filter(|(n, _)| n != &stage.as_field)
        .collect();
    fields.push((stage.as_field.clone(), decision));
    let plan = project::project_fields(plan, fields, at)?;
    let plan = match stage.mode {
        RulesMode::Evaluate => plan,
        RulesMode::Execute => execute(plan, stage, &order, at)?,
    };
    let mut working: Vec<String> = vec![RULES_FIRED.to_string()];
    working.extend(hits.into_iter().flatten());
    let names: Vec<&str> = working.iter().map(String::as_str).collect();
    project::drop_columns(plan, &names, at)
}

/// Adds `e` to the decision's arguments; its position there.
fn push(args: &mut Vec<Expr>, e: Expr) -> usize {
    args.push(e);
    args.len() - 1
}

/// The decision's view of one action, its computed member added to `args`.
fn action_out(
    c: &ExprCompiler,
    rule: &Rule,
    a: &ActionSpec,
    custom: &[String],
    args: &mut Vec<Expr>,
) -> Result<ActionOut> {
    let mut fixed = Map::new();
    fixed.insert("rule".into(), Value::String(rule.id.clone()));
    fixed.insert("type".into(), Value::String(a.kind.clone()));
    let mut out = ActionOut {
        fixed: String::new(),
        computed: None,
        tag: None,
        route: None,
    };
    let member = |name: &str| a.params.get(name);
    match a.kind.as_str() {
        "set" => {
            fixed.insert("field".into(), Value::String(action_field(a)?));
            let v = member("value").ok_or_else(|| a.path.err("set needs a \"value\""))?;
            let e = c.compile(
                &Expression::parse(v, &a.path.key("value"))?,
                &a.path.key("value"),
            )?;
            out.computed = Some(("value".into(), push(args, e)));
        }
        "unset" => {
            fixed.insert("field".into(), Value::String(action_field(a)?));
        }
        "tag" => {
            let t = action_text(a, "tag")?;
            fixed.insert("tag".into(), Value::String(t.clone()));
            out.tag = Some(t);
        }
        "route" => {
            let s = action_text(a, "sink")?;
            fixed.insert("sink".into(), Value::String(s.clone()));
            out.route = Some(s);
        }
        "emit" => {
            let d = member("document")
                .filter(|d| d.is_object())
                .ok_or_else(|| {
                    a.path
                        .key("document")
                        .err("emit needs a \"document\" object (its values may be expressions)")
                })?;
            let at = a.path.key("document");
            let e = c.compile(&Expression::parse(d, &at)?, &at)?;
            out.computed = Some(("document".into(), push(args, e)));
        }
        other if custom.iter().any(|c| c == other) => {}
        other => {
            return Err(a.path.key("type").err(format!(
                "unknown action \"{other}\" (built in: {}; custom actions run through the library's rule engine)",
                ACTIONS.join(", ")
            )));
        }
    }
    for (k, v) in &a.params {
        if !matches!(k.as_str(), "field" | "value" | "tag" | "sink" | "document") {
            fixed.insert(k.clone(), v.clone());
        }
    }
    if let Some(attributes) = (!rule.attributes.is_empty()).then(|| rule.attributes.clone()) {
        fixed.insert("attributes".into(), Value::Object(attributes));
    }
    out.fixed = Value::Object(fixed).to_string();
    Ok(out)
}

/// A built-in action's members, checked without compiling anything (lints).
pub fn check_action(a: &ActionSpec) -> Result<()> {
    match a.kind.as_str() {
        "set" => {
            action_field(a)?;
            match a.params.get("value") {
                Some(v) => Expression::parse(v, &a.path.key("value")).map(|_| ()),
                None => Err(a.path.err("set needs a \"value\"")),
            }
        }
        "unset" => action_field(a).map(|_| ()),
        "tag" => action_text(a, "tag").map(|_| ()),
        "route" => action_text(a, "sink").map(|_| ()),
        "emit" => match a.params.get("document") {
            Some(d @ Value::Object(_)) => Expression::parse(d, &a.path.key("document")).map(|_| ()),
            _ => Err(a
                .path
                .key("document")
                .err("emit needs a \"document\" object (its values may be expressions)")),
        },
        _ => Ok(()),
    }
}

/// A string member of an action.
pub fn action_text(a: &ActionSpec, name: &str) -> Result<String> {
    match a.params.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(a
            .path
            .key(name)
            .err(format!("{} needs a \"{name}\" string", a.kind))),
    }
}

/// The field a `set` / `unset` writes: a field path, not an operator.
pub fn action_field(a: &ActionSpec) -> Result<String> {
    let f = action_text(a, "field")?;
    crate::dsl::path::FieldPath::parse(&f, &a.path.key("field"))?;
    Ok(f)
}

/// Execute mode: every field some action writes, as `$cond`s over the fired positions.
fn execute(
    plan: LogicalPlan,
    stage: &RulesStage,
    order: &[usize],
    at: &JsonPath,
) -> Result<LogicalPlan> {
    let rs = &stage.rule_set;
    let mut writes: indexmap::IndexMap<String, Value> = indexmap::IndexMap::new();
    for (k, &r) in order.iter().enumerate() {
        for a in &rs.rules[r].actions {
            let new = match a.kind.as_str() {
                "set" => a.params.get("value").cloned().unwrap_or(Value::Null),
                "unset" => Value::String("$$REMOVE".into()),
                _ => continue,
            };
            let field = action_field(a)?;
            let earlier = writes
                .get(&field)
                .cloned()
                .unwrap_or_else(|| Value::String(format!("${field}")));
            // A later rule's write is checked first: the last write wins.
            writes.insert(
                field,
                json!({"$cond": [{"$in": [{"$literal": k as i64}, "$$fired"]}, new, earlier]}),
            );
        }
    }
    if writes.is_empty() {
        return Ok(plan);
    }
    let tree_json = Value::Object(writes.into_iter().collect());
    let tree = parse_add_fields(&tree_json, &at.key("execute"))?;
    let fired = Typed {
        expr: hidden::column(RULES_FIRED),
        ty: fired_type(),
    };
    project::plan_add_fields_with(plan, &tree, &[("fired".to_string(), fired)], at)
}

/// Joins the documents `p` emits back onto `plan`: `marker` is their number, or null.
fn join_sub_plan(
    plan: LogicalPlan,
    p: &Pipeline,
    tables: &Tables,
    marker: &str,
    rule: &Rule,
) -> Result<LogicalPlan> {
    let at = rule.path.key("when");
    if !order::has_seq(plan.schema()) {
        return Err(at.err(
            "a rule whose stages do more than $match needs numbered documents (a JSON-lines input)",
        ));
    }
    let mut fields: Vec<(String, Expr)> = project::columns(plan.schema())
        .into_iter()
        .filter(|(n, _)| n != RIDE_RULE_DOC)
        .collect();
    fields.push((RIDE_RULE_DOC.to_string(), hidden::column(SEQ)));
    let numbered = project::project_fields(plan.clone(), fields, &at)?;
    let out = crate::plan::compile_stages(p, numbered, tables)?;
    if !out.schema().has_column_with_unqualified_name(RIDE_RULE_DOC) {
        return Err(at.err(
            "these stages do not keep documents ($group, $count, $bucket, …): a rule passes for the documents its stages emit",
        ));
    }
    let keys = LogicalPlanBuilder::from(out)
        .project(vec![hidden::column(RIDE_RULE_DOC).alias(marker)])?
        .distinct()?
        .build()?;
    let on = hidden::column(SEQ).eq(hidden::column(marker));
    Ok(LogicalPlanBuilder::from(plan)
        .join_on(keys, JoinType::Left, vec![on])?
        .build()?)
}
