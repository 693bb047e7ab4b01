//! Rule sets: the JSON format of the rule engine, parsed into typed rules with errors naming
//! JSON paths (`ruleSet.rules[2].when.all[0].operator: unknown operator "greaterThen"`).
//!
//! A rule's `when` is either Fluxion stages (the rule passes for a document the stages emit)
//! or the condition format of json-rules-engine (`{"all": [{"fact", "operator", "value"}]}`),
//! so rule sets written for it can be brought over. Both are compiled onto the same
//! DataFusion expressions (`plan::stages::rules`).

use serde_json::{Map, Value};

use super::{JsonPath, Pipeline, StageKind};
use crate::Result;

/// A rule set: named, versioned rules and how their results combine.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    pub id: String,
    pub name: Option<String>,
    pub version: semver::Version,
    pub metadata: Value,
    pub hit_policy: HitPolicy,
    /// Attributes every rule shares (a rule's own override them), given to actions.
    pub attributes: Map<String, Value>,
    /// The rules in file order.
    pub rules: Vec<Rule>,
}

/// Which of the passing rules count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HitPolicy {
    /// Every passing rule, in evaluation order.
    All,
    /// The first passing rule in evaluation order; the rest are not run.
    First,
    /// The passing rules of the highest salience among the passing ones.
    Priority,
}

impl HitPolicy {
    pub fn name(self) -> &'static str {
        match self {
            HitPolicy::All => "all",
            HitPolicy::First => "first",
            HitPolicy::Priority => "priority",
        }
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Higher runs first; ties keep file order.
    pub salience: i64,
    pub when: When,
    pub actions: Vec<ActionSpec>,
    pub metadata: Value,
    /// The shared attributes with the rule's own on top.
    pub attributes: Map<String, Value>,
    /// Where the rule is written: `ruleSet.rules[2]`.
    pub path: JsonPath,
    /// `when` as written (lints read `$match` queries from it).
    pub when_json: Value,
}

/// A rule's condition.
#[derive(Debug, Clone, PartialEq)]
pub enum When {
    /// Fluxion stages: the rule passes for the documents they emit.
    Stages(Pipeline),
    /// json-rules-engine conditions.
    Conditions(Condition),
}

/// A json-rules-engine condition tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    All(Vec<Condition>, JsonPath),
    Any(Vec<Condition>, JsonPath),
    Not(Box<Condition>, JsonPath),
    Fact(FactCondition),
}

/// A leaf: a fact's value, an operator and a value to compare with.
#[derive(Debug, Clone, PartialEq)]
pub struct FactCondition {
    /// The fact (a top-level field of the document) and the path inside it.
    pub fact: Fact,
    pub operator: Operator,
    pub value: Operand,
    pub path: JsonPath,
}

/// A fact with an optional JSONPath into it (`$.address.city`, `$.items[0]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub name: String,
    pub path: Vec<Step>,
    /// The `path` as written, for traces.
    pub written: Option<String>,
}

/// One step of a fact's path.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Field(String),
    Index(usize),
}

/// The right-hand side of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Value(Value),
    /// Another fact's value (`{"fact": "limit"}`).
    Fact(Fact),
}

/// json-rules-engine's built-in operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Equal,
    NotEqual,
    LessThan,
    LessThanInclusive,
    GreaterThan,
    GreaterThanInclusive,
    In,
    NotIn,
    Contains,
    DoesNotContain,
}

/// Every operator with its name.
pub const OPERATORS: &[(&str, Operator)] = &[
    ("equal", Operator::Equal),
    ("notEqual", Operator::NotEqual),
    ("lessThan", Operator::LessThan),
    ("lessThanInclusive", Operator::LessThanInclusive),
    ("greaterThan", Operator::GreaterThan),
    ("greaterThanInclusive", Operator::GreaterThanInclusive),
    ("in", Operator::In),
    ("notIn", Operator::NotIn),
    ("contains", Operator::Contains),
    ("doesNotContain", Operator::DoesNotContain),
];

impl Operator {
    pub fn name(self) -> &'static str {
        OPERATORS
            .iter()
            .find(|(_, o)| *o == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// The ordering comparisons, which hold only for numbers.
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            Operator::LessThan
                | Operator::LessThanInclusive
                | Operator::GreaterThan
                | Operator::GreaterThanInclusive
        )
    }
}

/// An action of a rule: its `type` and the rest of its object as parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionSpec {
    pub kind: String,
    pub params: Map<String, Value>,
    pub path: JsonPath,
}

impl RuleSet {
    /// Parses a rule set from JSON text; errors name paths from `ruleSet`.
    pub fn from_json_str(text: &str) -> Result<RuleSet> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| JsonPath::named("ruleSet").err(format!("not valid JSON: {e}")))?;
        RuleSet::from_value(&v)
    }

    /// Parses a rule set from a JSON value.
    pub fn from_value(v: &Value) -> Result<RuleSet> {
        let at = JsonPath::named("ruleSet");
        let Value::Object(m) = v else {
            return Err(at.err("a rule set is an object {\"id\", \"version\", \"rules\": [...]}"));
        };
        known_keys(
            m,
            &at,
            &[
                "id",
                "name",
                "version",
                "metadata",
                "hitPolicy",
                "attributes",
                "rules",
                "description",
            ],
        )?;
        let id = required_str(m, "id", &at)?;
        let version = match m.get("version") {
            Some(Value::String(s)) => semver::Version::parse(s).map_err(|e| {
                at.key("version")
                    .err(format!("\"{s}\" is not a semantic version (1.2.3): {e}"))
            })?,
            Some(_) => return Err(at.key("version").err("expected a version string \"1.2.3\"")),
            None => return Err(at.err("missing \"version\" (a semantic version, \"1.0.0\")")),
        };
        let hit_policy = match m.get("hitPolicy") {
            None => HitPolicy::All,
            Some(Value::String(s)) => match s.as_str() {
                "all" => HitPolicy::All,
                "first" => HitPolicy::First,
                "priority" => HitPolicy::Priority,
                other => {
                    return Err(at.key("hitPolicy").err(format!(
                        "unknown hit policy \"{other}\" (expected \"all\", \"first\" or \"priority\")"
                    )));
                }
            },
            Some(_) => return Err(at.key("hitPolicy").err("expected a string")),
        };
        let attributes = object_or_empty(m.get("attributes"), &at.key("attributes"))?;
        let Some(Value::Array(rules)) = m.get("rules") else {
            return Err(at.key("rules").err("expected an array of rules"));
        };
        let mut parsed: Vec<Rule> = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let rule = Rule::parse(r, &at.key("rules").index(i), &attributes)?;
            if let Some(first) = parsed.iter().find(|p| p.id == rule.id) {
                return Err(rule.path.key("id").err(format!(
                    "rule id \"{}\" is already used by {}",
                    rule.id, first.path
                )));
            }
            parsed.push(rule);
        }
        Ok(RuleSet {
            id,
            name: optional_str(m, "name", &at)?,
            version,
            metadata: m.get("metadata").cloned().unwrap_or(Value::Null),
            hit_policy,
            attributes,
            rules: parsed,
        })
    }

    /// `id@version`, as decisions record it.
    pub fn label(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }

    /// The rules' positions in evaluation order: descending salience, ties in file order.
    pub fn evaluation_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.rules.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.rules[i].salience));
        order
    }
}

impl Rule {
    /// Parses the rule `v` found at `at`, on top of the rule set's `shared` attributes.
    pub fn parse(v: &Value, at: &JsonPath, shared: &Map<String, Value>) -> Result<Rule> {
        let Value::Object(m) = v else {
            return Err(at.err("a rule is an object {\"id\", \"when\", \"actions\"}"));
        };
        known_keys(
            m,
            at,
            &[
                "id",
                "name",
                "description",
                "salience",
                "when",
                "actions",
                "metadata",
                "attributes",
            ],
        )?;
        let id = required_str(m, "id", at)?;
        let salience = match m.get("salience") {
            None => 0,
            Some(v) => v.as_i64().ok_or_else(|| {
                at.key("salience")
                    .err("expected an integer (higher runs first)")
            })?,
        };
        let when_at = at.key("when");
        let when = match m.get("when") {
            None => return Err(when_at.err("missing \"when\": stages or conditions")),
            Some(v @ Value::Array(_)) => When::Stages(Pipeline::parse_at(v, &when_at)?),
            Some(v @ Value::Object(_)) => When::Conditions(Condition::parse(v, &when_at)?),
            Some(_) => {
                return Err(when_at.err(
                    "expected stages ([{\"$match\": ...}]) or conditions ({\"all\": [...]})",
                ));
            }
        };
        let mut actions = Vec::new();
        match m.get("actions") {
            None => {}
            Some(Value::Array(items)) => {
                for (i, a) in items.iter().enumerate() {
                    actions.push(ActionSpec::parse(a, &at.key("actions").index(i))?);
                }
            }
            Some(_) => return Err(at.key("actions").err("expected an array of actions")),
        }
        let mut attributes = shared.clone();
        attributes.extend(object_or_empty(m.get("attributes"), &at.key("attributes"))?);
        Ok(Rule {
            id,
            name: optional_str(m, "name", at)?,
            description: optional_str(m, "description", at)?,
            salience,
            when,
            actions,
            metadata: m.get("metadata").cloned().unwrap_or(Value::Null),
            attributes,
            path: at.clone(),
            when_json: m.get("when").cloned().unwrap_or(Value::Null),
        })
    }

    /// True when the stages only filter (`$match`), so the rule is one boolean column.
    pub fn is_filter(&self) -> bool {
        match &self.when {
            When::Conditions(_) => true,
            When::Stages(p) => p
                .stages
                .iter()
                .all(|s| matches!(s.kind, StageKind::Match(_))),
        }
    }
}

impl Condition {
    /// Parses a condition: `{"all": [...]}`, `{"any": [...]}`, `{"not": {...}}` or a leaf.
    pub fn parse(v: &Value, at: &JsonPath) -> Result<Condition> {
        let Value::Object(m) = v else {
            return Err(at.err("a condition is an object: {\"all\": [...]}, {\"any\": [...]}, {\"not\": {...}} or {\"fact\", \"operator\", \"value\"}"));
        };
        for (key, all) in [("all", true), ("any", false)] {
            if let Some(items) = m.get(key) {
                known_keys(m, at, &[key, "priority", "name"])?;
                let at = at.key(key);
                let Value::Array(items) = items else {
                    return Err(at.err("expected an array of conditions"));
                };
                let parts = items
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Condition::parse(c, &at.index(i)))
                    .collect::<Result<Vec<_>>>()?;
                return Ok(if all {
                    Condition::All(parts, at)
                } else {
                    Condition::Any(parts, at)
                });
            }
        }
        if let Some(inner) = m.get("not") {
            known_keys(m, at, &["not", "priority", "name"])?;
            let at = at.key("not");
            return Ok(Condition::Not(Box::new(Condition::parse(inner, &at)?), at));
        }
        if m.contains_key("condition") {
            return Err(at
                .key("condition")
                .err("shared conditions by name are not supported: write the condition here"));
        }
        known_keys(
            m,
            at,
            &[
                "fact", "operator", "value", "path", "params", "priority", "name",
            ],
        )?;
        if m.contains_key("params") {
            return Err(at
                .key("params")
                .err("fact parameters are not supported: facts are fields of the document"));
        }
        let fact = Fact::parse(m, at)?;
        let operator = match m.get("operator") {
            Some(Value::String(s)) => OPERATORS
                .iter()
                .find(|(n, _)| n == s)
                .map(|(_, o)| *o)
                .ok_or_else(|| {
                    let names: Vec<&str> = OPERATORS.iter().map(|(n, _)| *n).collect();
                    at.key("operator").err(format!(
                        "unsupported operator \"{s}\" (supported: {})",
                        names.join(", ")
                    ))
                })?,
            _ => return Err(at.key("operator").err("expected an operator name")),
        };
        let value = match m.get("value") {
            None => return Err(at.err("missing \"value\"")),
            Some(Value::Object(r)) if r.contains_key("fact") => {
                Operand::Fact(Fact::parse(r, &at.key("value"))?)
            }
            Some(v) => Operand::Value(v.clone()),
        };
        Ok(Condition::Fact(FactCondition {
            fact,
            operator,
            value,
            path: at.clone(),
        }))
    }

    /// Every leaf, in written order.
    pub fn leaves(&self) -> Vec<&FactCondition> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a FactCondition>) {
        match self {
            Condition::All(parts, _) | Condition::Any(parts, _) => {
                parts.iter().for_each(|p| p.collect(out))
            }
            Condition::Not(inner, _) => inner.collect(out),
            Condition::Fact(f) => out.push(f),
        }
    }
}

impl Fact {
    fn parse(m: &Map<String, Value>, at: &JsonPath) -> Result<Fact> {
        let name = match m.get("fact") {
            Some(Value::String(s)) if !s.is_empty() && !s.starts_with('$') => s.clone(),
            _ => {
                return Err(at
                    .key("fact")
                    .err("expected a fact name (a top-level field of the document)"));
            }
        };
        let (path, written) = match m.get("path") {
            None => (Vec::new(), None),
            Some(Value::String(p)) => (parse_json_path(p, &at.key("path"))?, Some(p.clone())),
            Some(_) => return Err(at.key("path").err("expected a JSONPath string (\"$.a.b\")")),
        };
        Ok(Fact {
            name,
            path,
            written,
        })
    }

    /// The dotted field path when no step is an array index (`customer.address.city`).
    pub fn dotted(&self) -> Option<String> {
        let mut s = self.name.clone();
        for step in &self.path {
            match step {
                Step::Field(f) => {
                    s.push('.');
                    s.push_str(f);
                }
                Step::Index(_) => return None,
            }
        }
        Some(s)
    }

    /// The fact's value as an aggregation expression (`"$a.b"`, or `$arrayElemAt` /
    /// `$getField` steps for indexes).
    pub fn expression(&self) -> Value {
        let mut expr = Value::String(format!("${}", self.name));
        let mut dotted = true;
        for step in &self.path {
            expr = match (step, dotted) {
                (Step::Field(f), true) => {
                    Value::String(format!("{}.{f}", expr.as_str().unwrap_or("")))
                }
                (Step::Field(f), false) => {
                    serde_json::json!({"$getField": {"field": f, "input": expr}})
                }
                (Step::Index(i), _) => {
                    dotted = false;
                    serde_json::json!({"$arrayElemAt": [expr, i]})
                }
            };
        }
        expr
    }

    /// How traces name the fact: `customer` or `customer$.address.city`.
    pub fn shown(&self) -> String {
        match &self.written {
            Some(p) => format!("{}{p}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The steps of a JSONPath as json-rules-engine's facts use them: `$.a.b`, `$.a[0]`,
/// `$['a b']`, `a.b` (the `$.` is optional).
fn parse_json_path(p: &str, at: &JsonPath) -> Result<Vec<Step>> {
    let bad = |why: &str| at.err(format!("JSONPath \"{p}\": {why}"));
    let rest = p.strip_prefix('$').unwrap_or(p);
    let mut steps = Vec::new();
    let mut chars = rest.chars().peekable();
    // A path without `$` starts with a bare field name.
    let mut expect_name = !p.starts_with('$');
    while chars.peek().is_some() || expect_name {
        if expect_name {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c == '.' || c == '[' {
                    break;
                }
                name.push(c);
                chars.next();
            }
            if name.is_empty() {
                return Err(bad("a field name is empty"));
            }
            if name == "*" || name.starts_with('.') {
                return Err(bad("wildcards and recursive descent are not supported"));
            }
            steps.push(Step::Field(name));
            expect_name = false;
            continue;
        }
        match chars.next() {
            Some('.') => {
                if chars.peek() == Some(&'.') {
                    return Err(bad("recursive descent (..) is not supported"));
                }
                expect_name = true;
            }
            Some('[') => {
                let mut inside = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    inside.push(c);
                }
                let inside = inside.trim();
                if let Ok(i) = inside.parse::<usize>() {
                    steps.push(Step::Index(i));
                } else if (inside.starts_with('\'') && inside.ends_with('\'')
                    || inside.starts_with('"') && inside.ends_with('"'))
                    && inside.len() >= 2
                {
                    steps.push(Step::Field(inside[1..inside.len() - 1].to_string()));
                } else {
                    return Err(bad(
                        "only field names and non-negative array indexes are supported",
                    ));
                }
            }
            Some(c) => return Err(bad(&format!("unexpected '{c}'"))),
            None => break,
        }
    }
    Ok(steps)
}

impl ActionSpec {
    fn parse(v: &Value, at: &JsonPath) -> Result<ActionSpec> {
        let Value::Object(m) = v else {
            return Err(at.err("an action is an object {\"type\": ..., ...}"));
        };
        let kind = match m.get("type") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(at
                    .key("type")
                    .err("expected the action's type (\"set\", \"tag\", ...)"));
            }
        };
        let mut params = m.clone();
        params.remove("type");
        Ok(ActionSpec {
            kind,
            params,
            path: at.clone(),
        })
    }
}

/// A `$rules` stage: `{"$rules": {"ruleSet": …, "mode": "evaluate" | "execute", "as":
/// "decision", "trace": false}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesStage {
    /// Loaded once: a rule set does not change under a running pipeline.
    pub rule_set: std::sync::Arc<RuleSet>,
    pub mode: RulesMode,
    /// The top-level field the decision goes to.
    pub as_field: String,
    /// Whether decisions carry every rule's condition values.
    pub trace: bool,
    /// Action types registered by the library's rule engine, which the stage lists in
    /// decisions for it to run.
    pub custom_actions: Vec<String>,
}

/// Whether the passing rules' actions change the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesMode {
    /// Decisions only.
    Evaluate,
    /// Decisions, and `set` / `unset` applied to the document.
    Execute,
}

impl RulesStage {
    /// Parses the stage's operand. `ruleSet` is the rule set itself or the path of its file;
    /// an `id@version` reference must have been resolved by a registry before
    /// (`rules::Registry::resolve_pipeline`).
    pub fn parse(v: &Value, at: &JsonPath) -> Result<RulesStage> {
        let Value::Object(m) = v else {
            return Err(at.err("expected {\"ruleSet\": …, \"mode\": \"evaluate\" | \"execute\", \"as\": \"decision\"}"));
        };
        known_keys(m, at, &["ruleSet", "mode", "as", "trace"])?;
        let rs_at = at.key("ruleSet");
        let rule_set = match m.get("ruleSet") {
            Some(v @ Value::Object(_)) => {
                RuleSet::from_value(v).map_err(|e| rs_at.err(e.to_string()))?
            }
            Some(Value::String(s)) => match std::fs::read_to_string(s) {
                Ok(text) => {
                    RuleSet::from_json_str(&text).map_err(|e| rs_at.err(format!("{s}: {e}")))?
                }
                Err(_) if s.contains('@') && !s.ends_with(".json") => {
                    return Err(rs_at.err(format!(
                        "\"{s}\" names a rule set by id and version: give the job a \"rules\" directory to look it up in"
                    )));
                }
                Err(e) => return Err(rs_at.err(format!("cannot read rule set file {s}: {e}"))),
            },
            _ => {
                return Err(
                    rs_at.err("expected a rule set, the path of its file, or \"id@version\"")
                );
            }
        };
        let mode = match m.get("mode") {
            None => RulesMode::Evaluate,
            Some(Value::String(s)) if s == "evaluate" => RulesMode::Evaluate,
            Some(Value::String(s)) if s == "execute" => RulesMode::Execute,
            Some(_) => {
                return Err(at.key("mode").err("expected \"evaluate\" or \"execute\""));
            }
        };
        let as_field = match m.get("as") {
            None => "decision".to_string(),
            Some(Value::String(s)) if !s.is_empty() && !s.contains('.') && !s.starts_with('$') => {
                s.clone()
            }
            Some(_) => return Err(at.key("as").err("expected a top-level field name")),
        };
        let trace = match m.get("trace") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(at.key("trace").err("expected true or false")),
        };
        Ok(RulesStage {
            rule_set: std::sync::Arc::new(rule_set),
            mode,
            as_field,
            trace,
            custom_actions: Vec::new(),
        })
    }
}

fn known_keys(m: &Map<String, Value>, at: &JsonPath, keys: &[&str]) -> Result<()> {
    match m.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(at.key(k).err(format!(
            "unknown key \"{k}\" (expected one of: {})",
            keys.join(", ")
        ))),
        None => Ok(()),
    }
}

fn required_str(m: &Map<String, Value>, key: &str, at: &JsonPath) -> Result<String> {
    match m.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(at.key(key).err("expected a non-empty string")),
        None => Err(at.err(format!("missing \"{key}\""))),
    }
}

fn optional_str(m: &Map<String, Value>, key: &str, at: &JsonPath) -> Result<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(at.key(key).err("expected a string")),
    }
}

fn object_or_empty(v: Option<&Value>, at: &JsonPath) -> Result<Map<String, Value>> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(at.err("expected an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_both_condition_formats_and_orders_by_salience() {
        let rs = RuleSet::from_value(&json!({
            "id": "orders", "version": "1.2.0", "hitPolicy": "first",
            "attributes": {"team": "risk"},
            "rules": [
                {"id": "a", "when": [{"$match": {"amount": {"$gt": 100}}}]},
                {"id": "b", "salience": 10, "attributes": {"team": "ops"},
                 "when": {"all": [{"fact": "customer", "path": "$.tier", "operator": "equal", "value": "gold"}]},
                 "actions": [{"type": "tag", "tag": "vip"}]},
                {"id": "c", "salience": 10, "when": {"any": [{"not": {"fact": "x", "operator": "in", "value": [1]}}]}}
            ]
        }))
        .unwrap();
        assert_eq!(rs.label(), "orders@1.2.0");
        assert_eq!(rs.hit_policy, HitPolicy::First);
        assert_eq!(rs.evaluation_order(), vec![1, 2, 0]);
        assert_eq!(rs.rules[1].attributes["team"], "ops");
        assert_eq!(rs.rules[0].attributes["team"], "risk");
        let When::Conditions(c) = &rs.rules[1].when else {
            panic!("conditions expected")
        };
        let leaf = c.leaves()[0];
        assert_eq!(leaf.fact.dotted().as_deref(), Some("customer.tier"));
        assert_eq!(leaf.fact.expression(), json!("$customer.tier"));
        assert_eq!(rs.rules[1].actions[0].kind, "tag");
        assert!(rs.rules[0].is_filter());
    }

    #[test]
    fn errors_name_the_json_path() {
        let err = |v: Value| RuleSet::from_value(&v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"id": "x", "version": "1.0.0", "rules": [
                {"id": "r", "when": {"all": [{"fact": "a", "operator": "greaterThen", "value": 1}]}}
            ]})),
            "ruleSet.rules[0].when.all[0].operator: unsupported operator \"greaterThen\" (supported: equal, notEqual, lessThan, lessThanInclusive, greaterThan, greaterThanInclusive, in, notIn, contains, doesNotContain)"
        );
        assert_eq!(
            err(json!({"id": "x", "version": "one", "rules": []})),
            "ruleSet.version: \"one\" is not a semantic version (1.2.3): unexpected character 'o' while parsing major version number"
        );
        assert!(
            err(json!({"id": "x", "version": "1.0.0", "rules": [
                {"id": "r", "when": []}, {"id": "r", "when": []}]}))
            .starts_with("ruleSet.rules[1].id: rule id \"r\" is already used by ruleSet.rules[0]")
        );
        assert!(
            err(json!({"id": "x", "version": "1.0.0", "rules": [
                {"id": "r", "when": [{"$match": {"a": {"$gtt": 1}}}]}]}))
            .starts_with("ruleSet.rules[0].when[0].$match")
        );
    }

    #[test]
    fn json_paths_become_steps() {
        let at = JsonPath::named("p");
        assert_eq!(
            parse_json_path("$.a.b[2]['c d']", &at).unwrap(),
            vec![
                Step::Field("a".into()),
                Step::Field("b".into()),
                Step::Index(2),
                Step::Field("c d".into())
            ]
        );
        assert_eq!(
            parse_json_path("a.b", &at).unwrap(),
            vec![Step::Field("a".into()), Step::Field("b".into())]
        );
        assert!(parse_json_path("$..a", &at).is_err());
        assert!(parse_json_path("$.a[*]", &at).is_err());
    }
}
