//! Lints: what is wrong or suspicious in a rule set, found before anything runs. Each names
//! the rule, the JSON path (so the stage index) and the operator.
//!
//! Errors stop `fluxion rules eval` and a pipeline; warnings do not:
//! - `invalid` (error): the rule does not parse or compile — an unsupported operator, a
//!   malformed stage, a comparison with a non-number, `in` without an array, an action
//!   missing a member;
//! - `empty-when` (error): a `when` with no stage or no condition passes for everything;
//! - `unknown-action` (error): an action type nobody registered;
//! - `duplicate-salience` (warning): under `first` or `priority`, rules of equal salience —
//!   file order decides (`first`) or both fire (`priority`);
//! - `unreachable` (warning): under `first` or `priority`, a rule whose condition implies an
//!   earlier rule's can never fire;
//! - `contradiction` (warning): a rule whose conditions cannot hold together never passes.
//!
//! Implication and contradiction are judged on the conjunctions of simple comparisons
//! (json-rules-engine leaves under `all`, and `$match` fields compared with constants),
//! reading fields as single values; anything else is not judged.

use std::fmt;

use serde_json::{Map, Value};

use crate::dsl::JsonPath;
use crate::dsl::rule_set::{Condition, HitPolicy, Operand, Operator, Rule, RuleSet, When};
use crate::plan::stages::rules::{ACTIONS, check_action};

/// How bad a lint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Lint {
    pub severity: Severity,
    /// A short name of the kind: `unreachable`, `unknown-action`, …
    pub code: &'static str,
    /// The rule's id, when the lint is about one rule.
    pub rule: Option<String>,
    /// Where: `ruleSet.rules[2].when.all[1]`.
    pub at: String,
    /// The operator or action involved, when there is one.
    pub operator: Option<String>,
    pub message: String,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}[{}]", self.code)?;
        if let Some(r) = &self.rule {
            write!(f, " rule \"{r}\"")?;
        }
        write!(f, " at {}", self.at)?;
        if let Some(o) = &self.operator {
            write!(f, " ({o})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Lint {
    /// The lint as a JSON object (`fluxion rules lint --json`, the service).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "severity": match self.severity { Severity::Error => "error", Severity::Warning => "warning" },
            "code": self.code,
            "rule": self.rule,
            "at": self.at,
            "operator": self.operator,
            "message": self.message,
        })
    }
}

/// Lints the rule set `v` (as written), knowing the custom actions `custom`. The rule set,
/// when it parses.
pub fn lint(v: &Value, custom: &[String]) -> (Option<RuleSet>, Vec<Lint>) {
    let mut out = Vec::new();
    let rs = match RuleSet::from_value(v) {
        Ok(rs) => rs,
        Err(e) => {
            parse_errors(v, &e, &mut out);
            return (None, out);
        }
    };
    for rule in &rs.rules {
        lint_rule(rule, custom, &mut out);
    }
    if rs.hit_policy != HitPolicy::All {
        lint_order(&rs, &mut out);
    }
    (Some(rs), out)
}

/// True when `lints` hold an error.
pub fn has_errors(lints: &[Lint]) -> bool {
    lints.iter().any(|l| l.severity == Severity::Error)
}

/// Every rule that does not parse, each on its own (so one bad rule does not hide another).
fn parse_errors(v: &Value, whole: &crate::Error, out: &mut Vec<Lint>) {
    let rules = v.get("rules").and_then(Value::as_array);
    let shared = Map::new();
    let mut found = false;
    for (i, r) in rules.into_iter().flatten().enumerate() {
        let at = JsonPath::named("ruleSet").key("rules").index(i);
        if let Err(e) = Rule::parse(r, &at, &shared) {
            found = true;
            out.push(invalid(r.get("id").and_then(Value::as_str), &e));
        }
    }
    if !found {
        out.push(invalid(None, whole));
    }
}

fn invalid(rule: Option<&str>, e: &crate::Error) -> Lint {
    let (at, message) = match e {
        crate::Error::Pipeline { path, message } => (path.clone(), message.clone()),
        other => ("ruleSet".to_string(), other.to_string()),
    };
    let operator = operator_in(&message);
    Lint {
        severity: Severity::Error,
        code: "invalid",
        rule: rule.map(str::to_string),
        at,
        operator,
        message,
    }
}

/// The quoted operator an error message is about, if any (`unsupported operator "x"`).
fn operator_in(message: &str) -> Option<String> {
    let start = message.find('"')? + 1;
    let len = message[start..].find('"')?;
    let word = &message[start..start + len];
    (message.contains("operator") || word.starts_with('$')).then(|| word.to_string())
}

fn lint_rule(rule: &Rule, custom: &[String], out: &mut Vec<Lint>) {
    let lint = |severity, code, at: &JsonPath, operator: Option<&str>, message: String| Lint {
        severity,
        code,
        rule: Some(rule.id.clone()),
        at: at.to_string(),
        operator: operator.map(str::to_string),
        message,
    };
    let when_at = rule.path.key("when");
    match &rule.when {
        When::Stages(p) if p.stages.is_empty() => out.push(lint(
            Severity::Error,
            "empty-when",
            &when_at,
            None,
            "no stages: the rule would pass for every document".into(),
        )),
        When::Conditions(c) => {
            if let Condition::All(parts, at) | Condition::Any(parts, at) = c
                && parts.is_empty()
            {
                out.push(lint(
                    Severity::Error,
                    "empty-when",
                    at,
                    None,
                    "no conditions: the rule would pass for every document (all) or none (any)"
                        .into(),
                ));
            }
            for leaf in c.leaves() {
                let op = leaf.operator.name();
                match (&leaf.value, leaf.operator) {
                    (Operand::Value(v), o) if o.is_ordering() && !v.is_number() => out.push(lint(
                        Severity::Error,
                        "invalid",
                        &leaf.path.key("value"),
                        Some(op),
                        format!("{op} compares with a number (or a numeric fact), not {v}"),
                    )),
                    (Operand::Value(v), Operator::In | Operator::NotIn) if !v.is_array() => out
                        .push(lint(
                            Severity::Error,
                            "invalid",
                            &leaf.path.key("value"),
                            Some(op),
                            format!("{op} needs an array of values, not {v}"),
                        )),
                    (Operand::Fact(_), Operator::In | Operator::NotIn) => out.push(lint(
                        Severity::Error,
                        "invalid",
                        &leaf.path.key("value"),
                        Some(op),
                        format!("{op} needs an array of values written in the rule"),
                    )),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    for a in &rule.actions {
        if let Err(e) = check_action(a) {
            out.push(invalid(Some(&rule.id), &e));
        }
        if !ACTIONS.contains(&a.kind.as_str()) && !custom.iter().any(|c| c == &a.kind) {
            out.push(lint(
                Severity::Error,
                "unknown-action",
                &a.path.key("type"),
                Some(&a.kind),
                format!(
                    "unknown action \"{}\" (built in: {}{})",
                    a.kind,
                    ACTIONS.join(", "),
                    if custom.is_empty() {
                        String::new()
                    } else {
                        format!("; registered: {}", custom.join(", "))
                    }
                ),
            ));
        }
    }
    if let Some(leaves) = conjunction(rule) {
        for (i, (f, a, at_a)) in leaves.iter().enumerate() {
            for (g, b, at_b) in &leaves[i + 1..] {
                if f == g && disjoint(a, b) {
                    out.push(lint(
                        Severity::Warning,
                        "contradiction",
                        at_b,
                        None,
                        format!(
                            "\"{f}\" cannot be {} and {} at once ({at_a}): the rule never passes",
                            a.describe(),
                            b.describe()
                        ),
                    ));
                }
            }
        }
    }
}

/// Equal saliences and rules shadowed by earlier ones, under `first` / `priority`.
fn lint_order(rs: &RuleSet, out: &mut Vec<Lint>) {
    let order = rs.evaluation_order();
    for (i, &a) in order.iter().enumerate() {
        for &b in &order[i + 1..] {
            let (ra, rb) = (&rs.rules[a], &rs.rules[b]);
            if ra.salience == rb.salience {
                out.push(Lint {
                    severity: Severity::Warning,
                    code: "duplicate-salience",
                    rule: Some(rb.id.clone()),
                    at: rb.path.key("salience").to_string(),
                    operator: None,
                    message: format!(
                        "salience {} is also rule \"{}\"'s: under hitPolicy \"{}\" {}",
                        rb.salience,
                        ra.id,
                        rs.hit_policy.name(),
                        match rs.hit_policy {
                            HitPolicy::First => "file order decides which fires",
                            _ => "both fire when both pass",
                        }
                    ),
                });
            }
            let shadowed = match rs.hit_policy {
                HitPolicy::First => true,
                // Under priority a rule of equal salience fires beside the other.
                _ => ra.salience > rb.salience,
            };
            if shadowed && implies(rb, ra) {
                out.push(Lint {
                    severity: Severity::Warning,
                    code: "unreachable",
                    rule: Some(rb.id.clone()),
                    at: rb.path.key("when").to_string(),
                    operator: None,
                    message: format!(
                        "whenever it passes, rule \"{}\" (evaluated before it) passes too: under hitPolicy \"{}\" it never fires",
                        ra.id,
                        rs.hit_policy.name()
                    ),
                });
            }
        }
    }
}

/// What a simple comparison allows a field to be.
#[derive(Debug, Clone, PartialEq)]
enum Allowed {
    Is(Value),
    IsNot(Value),
    OneOf(Vec<Value>),
    NoneOf(Vec<Value>),
    /// Numbers between the bounds (`true`: inclusive).
    Range {
        lo: Option<(f64, bool)>,
        hi: Option<(f64, bool)>,
    },
}

impl Allowed {
    fn describe(&self) -> String {
        match self {
            Allowed::Is(v) => format!("{v}"),
            Allowed::IsNot(v) => format!("not {v}"),
            Allowed::OneOf(l) => format!("one of {}", Value::Array(l.clone())),
            Allowed::NoneOf(l) => format!("none of {}", Value::Array(l.clone())),
            Allowed::Range { lo, hi } => {
                let mut parts = Vec::new();
                if let Some((v, inc)) = lo {
                    parts.push(format!("{} {v}", if *inc { ">=" } else { ">" }));
                }
                if let Some((v, inc)) = hi {
                    parts.push(format!("{} {v}", if *inc { "<=" } else { "<" }));
                }
                parts.join(" and ")
            }
        }
    }

    /// The values it allows, when they are finitely many.
    fn finite(&self) -> Option<Vec<&Value>> {
        match self {
            Allowed::Is(v) => Some(vec![v]),
            Allowed::OneOf(l) => Some(l.iter().collect()),
            _ => None,
        }
    }

    fn admits(&self, v: &Value) -> bool {
        match self {
            Allowed::Is(x) => same(x, v),
            Allowed::IsNot(x) => !same(x, v),
            Allowed::OneOf(l) => l.iter().any(|x| same(x, v)),
            Allowed::NoneOf(l) => !l.iter().any(|x| same(x, v)),
            Allowed::Range { lo, hi } => v.as_f64().is_some_and(|n| {
                lo.is_none_or(|(b, inc)| if inc { n >= b } else { n > b })
                    && hi.is_none_or(|(b, inc)| if inc { n <= b } else { n < b })
            }),
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// True when nothing satisfies both.
fn disjoint(a: &Allowed, b: &Allowed) -> bool {
    if let Some(values) = a.finite() {
        return values.iter().all(|v| !b.admits(v));
    }
    if let Some(values) = b.finite() {
        return values.iter().all(|v| !a.admits(v));
    }
    match (a, b) {
        (Allowed::Range { lo: l1, hi: h1 }, Allowed::Range { lo: l2, hi: h2 }) => {
            let lo = max_bound(*l1, *l2, true);
            let hi = max_bound(*h1, *h2, false);
            match (lo, hi) {
                (Some((l, li)), Some((h, hi))) => l > h || (l == h && !(li && hi)),
                _ => false,
            }
        }
        _ => false,
    }
}

/// The tighter of two bounds: the greater lower bound (`lower`), or the smaller upper one.
fn max_bound(a: Option<(f64, bool)>, b: Option<(f64, bool)>, lower: bool) -> Option<(f64, bool)> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(x), Some(y)) => {
            let tighter = if lower { x.0 > y.0 } else { x.0 < y.0 };
            if x.0 == y.0 {
                Some((x.0, x.1 && y.1))
            } else if tighter {
                Some(x)
            } else {
                Some(y)
            }
        }
    }
}

/// True when everything `a` allows `b` allows too.
fn within(a: &Allowed, b: &Allowed) -> bool {
    if let Some(values) = a.finite() {
        return values.iter().all(|v| b.admits(v));
    }
    match (a, b) {
        (Allowed::IsNot(x), Allowed::IsNot(y)) => same(x, y),
        (Allowed::NoneOf(l), Allowed::IsNot(y)) => l.iter().any(|x| same(x, y)),
        (Allowed::NoneOf(l1), Allowed::NoneOf(l2)) => {
            l2.iter().all(|y| l1.iter().any(|x| same(x, y)))
        }
        (Allowed::Range { lo: l1, hi: h1 }, Allowed::Range { lo: l2, hi: h2 }) => {
            let lo_ok = match (l1, l2) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some((a, ai)), Some((b, bi))) => a > b || (a == b && (*bi || !*ai)),
            };
            let hi_ok = match (h1, h2) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some((a, ai)), Some((b, bi))) => a < b || (a == b && (*bi || !*ai)),
            };
            lo_ok && hi_ok
        }
        // A range holds only numbers, so it is never a given non-number.
        (Allowed::Range { .. }, Allowed::IsNot(y)) => !y.is_number(),
        _ => false,
    }
}

/// True when rule `b` passing means rule `a` passes.
fn implies(b: &Rule, a: &Rule) -> bool {
    let (Some(lb), Some(la)) = (conjunction(b), conjunction(a)) else {
        return false;
    };
    !la.is_empty()
        && la
            .iter()
            .all(|(f, need, _)| lb.iter().any(|(g, have, _)| f == g && within(have, need)))
}

/// A rule's condition as comparisons that must all hold: `(field, allowed, where)`; `None`
/// when it is not such a conjunction.
fn conjunction(rule: &Rule) -> Option<Vec<(String, Allowed, JsonPath)>> {
    let mut out = Vec::new();
    match &rule.when {
        When::Conditions(c) => collect_all(c, &mut out)?,
        When::Stages(p) => {
            if !rule.is_filter() {
                return None;
            }
            let stages = rule.when_json.as_array()?;
            for (i, s) in stages.iter().enumerate() {
                let q = s.get("$match")?.as_object()?;
                let at = p.stages.get(i)?.path.clone();
                for (field, cond) in q {
                    if field.starts_with('$') {
                        return None;
                    }
                    for allowed in match_allowed(cond)? {
                        out.push((field.clone(), allowed, at.key(field)));
                    }
                }
            }
        }
    }
    Some(out)
}

fn collect_all(c: &Condition, out: &mut Vec<(String, Allowed, JsonPath)>) -> Option<()> {
    match c {
        Condition::All(parts, _) => {
            for p in parts {
                collect_all(p, out)?;
            }
            Some(())
        }
        Condition::Fact(f) => {
            let Operand::Value(v) = &f.value else {
                return None;
            };
            let field = f.fact.dotted()?;
            let n = v.as_f64();
            let allowed = match f.operator {
                Operator::Equal if !v.is_object() && !v.is_array() => Allowed::Is(v.clone()),
                Operator::NotEqual if !v.is_object() && !v.is_array() => Allowed::IsNot(v.clone()),
                Operator::In => Allowed::OneOf(v.as_array()?.clone()),
                Operator::NotIn => Allowed::NoneOf(v.as_array()?.clone()),
                Operator::LessThan => range(None, Some((n?, false))),
                Operator::LessThanInclusive => range(None, Some((n?, true))),
                Operator::GreaterThan => range(Some((n?, false)), None),
                Operator::GreaterThanInclusive => range(Some((n?, true)), None),
                _ => return None,
            };
            out.push((field, allowed, f.path.clone()));
            Some(())
        }
        _ => None,
    }
}

fn range(lo: Option<(f64, bool)>, hi: Option<(f64, bool)>) -> Allowed {
    Allowed::Range { lo, hi }
}

/// What a `$match` field condition allows, when it is simple.
fn match_allowed(cond: &Value) -> Option<Vec<Allowed>> {
    let Value::Object(ops) = cond else {
        return (!cond.is_array() && !cond.is_null()).then(|| vec![Allowed::Is(cond.clone())]);
    };
    if !ops.keys().all(|k| k.starts_with('$')) {
        return None;
    }
    ops.iter()
        .map(|(op, v)| {
            let n = v.as_f64();
            Some(match op.as_str() {
                "$eq" if !v.is_object() && !v.is_array() && !v.is_null() => Allowed::Is(v.clone()),
                "$ne" if !v.is_object() && !v.is_array() && !v.is_null() => {
                    Allowed::IsNot(v.clone())
                }
                "$in" => Allowed::OneOf(v.as_array()?.clone()),
                "$nin" => Allowed::NoneOf(v.as_array()?.clone()),
                "$gt" => range(Some((n?, false)), None),
                "$gte" => range(Some((n?, true)), None),
                "$lt" => range(None, Some((n?, false))),
                "$lte" => range(None, Some((n?, true))),
                _ => return None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn codes(v: Value) -> Vec<(&'static str, Option<String>)> {
        lint(&v, &[])
            .1
            .into_iter()
            .map(|l| (l.code, l.rule))
            .collect()
    }

    fn rules(policy: &str, rules: Value) -> Value {
        json!({"id": "t", "version": "1.0.0", "hitPolicy": policy, "rules": rules})
    }

    #[test]
    fn each_kind_is_found() {
        assert_eq!(
            codes(rules("all", json!([{"id": "e", "when": []}]))),
            vec![("empty-when", Some("e".into()))]
        );
        assert_eq!(
            codes(rules("all", json!([{"id": "e", "when": {"all": []}}]))),
            vec![("empty-when", Some("e".into()))]
        );
        assert_eq!(
            codes(rules(
                "all",
                json!([
                    {"id": "ok", "when": {"all": [{"fact": "a", "operator": "equal", "value": 1}]}},
                    {"id": "bad", "when": {"all": [{"fact": "a", "operator": "matches", "value": 1}]}},
                    {"id": "bad2", "when": [{"$match": {"a": {"$gtt": 1}}}]}
                ])
            )),
            vec![
                ("invalid", Some("bad".into())),
                ("invalid", Some("bad2".into()))
            ]
        );
        assert_eq!(
            codes(rules(
                "all",
                json!([{"id": "s", "when": {"all": [{"fact": "a", "operator": "lessThan", "value": "x"}]}}])
            )),
            vec![("invalid", Some("s".into()))]
        );
        assert_eq!(
            codes(rules(
                "all",
                json!([{"id": "u", "when": [{"$match": {"a": 1}}], "actions": [{"type": "sett"}]}])
            )),
            vec![("unknown-action", Some("u".into()))]
        );
        assert_eq!(
            codes(rules(
                "all",
                json!([{"id": "p", "when": [{"$match": {"a": 1}}], "actions": [
                    {"type": "set", "field": "$x", "value": 1}, {"type": "tag"}, {"type": "emit", "document": 3}
                ]}])
            )),
            vec![
                ("invalid", Some("p".into())),
                ("invalid", Some("p".into())),
                ("invalid", Some("p".into()))
            ]
        );
        let lints = lint(
            &rules(
                "all",
                json!([{"id": "u", "when": [{"$match": {"a": 1}}], "actions": [{"type": "notify"}]}]),
            ),
            &["notify".to_string()],
        )
        .1;
        assert!(lints.is_empty(), "{lints:?}");
        assert_eq!(
            codes(rules(
                "first",
                json!([
                    {"id": "a", "salience": 1, "when": [{"$match": {"x": 1}}]},
                    {"id": "b", "salience": 1, "when": [{"$match": {"x": 2}}]}
                ])
            )),
            vec![("duplicate-salience", Some("b".into()))]
        );
        assert_eq!(
            codes(rules(
                "all",
                json!([{"id": "c", "when": {"all": [
                    {"fact": "amount", "operator": "greaterThan", "value": 100},
                    {"fact": "amount", "operator": "lessThanInclusive", "value": 50}
                ]}}])
            )),
            vec![("contradiction", Some("c".into()))]
        );
        assert_eq!(
            codes(rules(
                "all",
                json!([{"id": "c", "when": [{"$match": {"status": "PAID"}}, {"$match": {"status": {"$in": ["NEW", "OPEN"]}}}]}])
            )),
            vec![("contradiction", Some("c".into()))]
        );
    }

    #[test]
    fn unreachable_rules_under_first() {
        let set = |policy| {
            rules(
                policy,
                json!([
                    {"id": "big", "salience": 10, "when": {"all": [{"fact": "amount", "operator": "greaterThan", "value": 100}]}},
                    {"id": "huge", "salience": 5, "when": {"all": [
                        {"fact": "amount", "operator": "greaterThanInclusive", "value": 1000},
                        {"fact": "country", "operator": "equal", "value": "FR"}
                    ]}},
                    {"id": "small", "salience": 1, "when": [{"$match": {"amount": {"$lt": 100}}}]}
                ]),
            )
        };
        assert_eq!(
            codes(set("first")),
            vec![("unreachable", Some("huge".into()))]
        );
        assert_eq!(
            codes(set("priority")),
            vec![("unreachable", Some("huge".into()))]
        );
        assert!(codes(set("all")).is_empty());
    }

    #[test]
    fn display_names_rule_path_and_operator() {
        let (_, lints) = lint(
            &rules(
                "all",
                json!([{"id": "bad", "when": {"all": [{"fact": "a", "operator": "matches", "value": 1}]}}]),
            ),
            &[],
        );
        assert_eq!(
            lints[0].to_string(),
            "error[invalid] rule \"bad\" at ruleSet.rules[0].when.all[0].operator (matches): unsupported operator \"matches\" (supported: equal, notEqual, lessThan, lessThanInclusive, greaterThan, greaterThanInclusive, in, notIn, contains, doesNotContain)"
        );
    }
}
