//! The rule engine as a library: a loaded rule set, custom actions registered by name, and
//! hooks around the rule set and each rule. It judges a table of an [`Engine`] with the
//! `$rules` stage — all rules over the batch in one plan — then hands each decision to the
//! hooks and runs custom actions in evaluation order.
//!
//! ```no_run
//! # async fn demo() -> fluxion::Result<()> {
//! use fluxion::Engine;
//! use fluxion::rules::{RuleEngine, Options};
//! let engine = Engine::new();
//! engine.register_file("orders", "examples/data/orders.jsonl", None).await?;
//! let rules = RuleEngine::from_file("examples/rules/order-approval.json")?;
//! for d in rules.evaluate(&engine, "orders", &Options::default()).await? {
//!     println!("{} {:?}", d.index, d.passed);
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use serde_json::{Map, Value};

use super::lint::{self, Lint};
use crate::document::encode::to_documents;
use crate::dsl::rule_set::{Rule, RuleSet, RulesMode, RulesStage};
use crate::dsl::{JsonPath, Pipeline, Stage, StageKind};
use crate::{Engine, Error, Result};

/// A custom action: what a rule's `{"type": name, …}` does to a document when it fires.
pub trait Action: Send + Sync {
    /// The `type` rules write.
    fn name(&self) -> &str;
    /// Runs the action for one fired rule: `action` is the action as written (with
    /// `"rule"` and the rule's `"attributes"`), `document` the document so far.
    fn run(&self, action: &Value, document: &mut Map<String, Value>) -> Result<()>;
}

/// Called around the evaluation (all methods do nothing by default).
pub trait Hooks: Send + Sync {
    /// Before any rule runs, with the number of documents.
    fn before_rule_set(&self, _rule_set: &RuleSet, _documents: usize) {}
    /// Before a rule's actions run (in evaluation order).
    fn before_rule(&self, _rule: &Rule) {}
    /// After a rule ran, with the documents (indexes) it fired for.
    fn after_rule(&self, _rule: &Rule, _fired: &[usize]) {}
    /// After every rule ran, with the decisions.
    fn after_rule_set(&self, _rule_set: &RuleSet, _decisions: &[Decision]) {}
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Run the passing rules' actions (`set`, `unset`, custom ones) on the documents.
    pub execute: bool,
    /// Record every rule's condition values.
    pub trace: bool,
}

/// The decision for one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The document's position in the input.
    pub index: usize,
    /// `id@version` of the rule set.
    pub rule_set: String,
    /// The rules that fired, in evaluation order.
    pub passed: Vec<String>,
    /// Their actions, with values computed for the document.
    pub actions: Vec<Value>,
    /// The tags and routes the actions added.
    pub tags: Vec<String>,
    pub routes: Vec<String>,
    /// Every rule's result and condition values (with [`Options::trace`]).
    pub trace: Option<Vec<Value>>,
    /// The document after the actions (with [`Options::execute`]).
    pub document: Option<Value>,
}

impl Decision {
    /// The decision as `fluxion rules eval` prints it.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("index".into(), Value::from(self.index));
        m.insert("passed".into(), Value::from(self.passed.clone()));
        m.insert("actions".into(), Value::Array(self.actions.clone()));
        m.insert("ruleSet".into(), Value::String(self.rule_set.clone()));
        if let Some(d) = &self.document {
            m.insert("document".into(), d.clone());
        }
        if let Some(t) = &self.trace {
            m.insert("trace".into(), Value::Array(t.clone()));
        }
        Value::Object(m)
    }
}

/// A rule set ready to judge documents.
#[derive(Clone)]
pub struct RuleEngine {
    rule_set: Arc<RuleSet>,
    actions: BTreeMap<String, Arc<dyn Action>>,
    hooks: Vec<Arc<dyn Hooks>>,
}

impl RuleEngine {
    /// An engine for `rule_set`.
    pub fn new(rule_set: RuleSet) -> RuleEngine {
        RuleEngine {
            rule_set: Arc::new(rule_set),
            actions: BTreeMap::new(),
            hooks: Vec::new(),
        }
    }

    /// An engine for the rule set in the file `path`.
    pub fn from_file(path: &str) -> Result<RuleEngine> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::external(format!("reading rule set {path}"), e))?;
        let rs = RuleSet::from_json_str(&text).map_err(|e| Error::config(path, e.to_string()))?;
        Ok(RuleEngine::new(rs))
    }

    /// The rule set.
    pub fn rule_set(&self) -> &RuleSet {
        &self.rule_set
    }

    /// Registers a custom action under its name; a name already taken (by a built-in or
    /// another action) is an error.
    pub fn register_action(&mut self, action: Arc<dyn Action>) -> Result<()> {
        let name = action.name().to_string();
        if crate::plan::stages::rules::ACTIONS.contains(&name.as_str())
            || self.actions.contains_key(&name)
        {
            return Err(Error::config(
                "rule engine",
                format!("an action named \"{name}\" is already registered"),
            ));
        }
        self.actions.insert(name, action);
        Ok(())
    }

    /// Adds hooks, called in the order they were added.
    pub fn add_hooks(&mut self, hooks: Arc<dyn Hooks>) {
        self.hooks.push(hooks);
    }

    /// The rule set's lints, knowing the registered actions.
    pub fn lint(&self, written: &Value) -> Vec<Lint> {
        lint::lint(written, &self.custom()).1
    }

    fn custom(&self) -> Vec<String> {
        self.actions.keys().cloned().collect()
    }

    /// Which rules pass for each document of `table`, read-only.
    pub async fn evaluate(
        &self,
        engine: &Engine,
        table: &str,
        options: &Options,
    ) -> Result<Vec<Decision>> {
        let options = Options {
            execute: false,
            ..options.clone()
        };
        self.run(engine, table, &options).await
    }

    /// Like [`evaluate`](Self::evaluate), and runs the fired rules' actions: each decision
    /// carries the changed document.
    pub async fn execute(
        &self,
        engine: &Engine,
        table: &str,
        trace: bool,
    ) -> Result<Vec<Decision>> {
        let options = Options {
            execute: true,
            trace,
        };
        self.run(engine, table, &options).await
    }

    async fn run(&self, engine: &Engine, table: &str, options: &Options) -> Result<Vec<Decision>> {
        let fields = engine.context().table(table).await?.schema().clone();
        let mut as_field = "decision".to_string();
        while fields.has_column_with_unqualified_name(&as_field) {
            as_field.push('_');
        }
        let stage = RulesStage {
            rule_set: self.rule_set.clone(),
            mode: if options.execute {
                RulesMode::Execute
            } else {
                RulesMode::Evaluate
            },
            as_field: as_field.clone(),
            trace: options.trace,
            custom_actions: self.custom(),
        };
        let pipeline = Pipeline {
            stages: vec![Stage {
                kind: StageKind::Rules(stage),
                path: JsonPath::root().index(0).key("$rules"),
            }],
        };
        let batches = engine.pipeline(table, &pipeline).await?.collect().await?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        for h in &self.hooks {
            h.before_rule_set(&self.rule_set, rows);
        }
        let mut decisions = decisions(&batches, &as_field, options)?;
        self.run_actions(&mut decisions, options.execute)?;
        for h in &self.hooks {
            h.after_rule_set(&self.rule_set, &decisions);
        }
        Ok(decisions)
    }

    /// Custom actions and the per-rule hooks, rule by rule in evaluation order.
    fn run_actions(&self, decisions: &mut [Decision], execute: bool) -> Result<()> {
        let custom = execute && !self.actions.is_empty();
        if self.hooks.is_empty() && !custom {
            return Ok(());
        }
        // The documents each rule fired for, in one pass over the decisions.
        let position: std::collections::HashMap<&str, usize> = self
            .rule_set
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        let mut fired: Vec<Vec<usize>> = vec![Vec::new(); self.rule_set.rules.len()];
        for (row, d) in decisions.iter().enumerate() {
            for p in &d.passed {
                if let Some(&i) = position.get(p.as_str()) {
                    fired[i].push(row);
                }
            }
        }
        for &r in &self.rule_set.evaluation_order() {
            let rule = &self.rule_set.rules[r];
            for h in &self.hooks {
                h.before_rule(rule);
            }
            if custom {
                for &row in &fired[r] {
                    let d = &mut decisions[row];
                    let actions: Vec<Value> = d
                        .actions
                        .iter()
                        .filter(|a| a["rule"] == rule.id.as_str())
                        .cloned()
                        .collect();
                    for a in actions {
                        let Some(action) = a["type"].as_str().and_then(|t| self.actions.get(t))
                        else {
                            continue;
                        };
                        let doc = d.document.get_or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(m) = doc {
                            action.run(&a, m).map_err(|e| {
                                Error::pipeline(
                                    rule.path.key("actions"),
                                    format!(
                                        "action \"{}\" failed for document {}: {e}",
                                        action.name(),
                                        d.index
                                    ),
                                )
                            })?;
                        }
                    }
                }
            }
            let indexes: Vec<usize> = fired[r].iter().map(|&row| decisions[row].index).collect();
            for h in &self.hooks {
                h.after_rule(rule, &indexes);
            }
        }
        Ok(())
    }
}

/// The decisions in `batches` (a `$rules` stage's output, decision in `as_field`).
fn decisions(batches: &[RecordBatch], as_field: &str, options: &Options) -> Result<Vec<Decision>> {
    let mut out = Vec::new();
    for b in batches {
        let idx = b
            .schema()
            .index_of(as_field)
            .map_err(|_| Error::Internal("the decision column is missing".into()))?;
        let decision = b.column(idx).as_struct().clone();
        let documents = if options.execute {
            let mut rest = b.clone();
            rest.remove_column(idx);
            Some(to_documents(&[rest])?)
        } else {
            None
        };
        let texts = |name: &str, row: usize| -> Vec<String> {
            decision
                .column_by_name(name)
                .map(|c| {
                    let l = c.as_list::<i32>().value(row);
                    let s = l.as_string::<i32>();
                    (0..s.len()).map(|i| s.value(i).to_string()).collect()
                })
                .unwrap_or_default()
        };
        let json = |name: &str, row: usize| -> Vec<Value> {
            texts(name, row)
                .iter()
                .map(|t| serde_json::from_str(t).unwrap_or(Value::Null))
                .collect()
        };
        let label = decision
            .column_by_name("ruleSet")
            .map(|c| c.as_string::<i32>().clone());
        for row in 0..b.num_rows() {
            out.push(Decision {
                index: out.len(),
                rule_set: label
                    .as_ref()
                    .filter(|l| l.is_valid(row))
                    .map(|l| l.value(row).to_string())
                    .unwrap_or_default(),
                passed: texts("passed", row),
                actions: json("actions", row),
                tags: texts("tags", row),
                routes: texts("routes", row),
                trace: options.trace.then(|| json("trace", row)),
                document: documents.as_ref().map(|d| d[row].clone()),
            });
        }
    }
    Ok(out)
}
