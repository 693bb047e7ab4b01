//! `rule_decision(fired, value₀, …)`: a document's decision as a sub-document — the rule
//! set (`id@version`), the rules that fired (ids, in evaluation order), their actions with
//! the values computed for the document, the tags and routes they add, and (when traced)
//! every rule's condition values. `fired` is [`rules_fired`](super::rules_fired)'s answer;
//! the other arguments are the columns the actions and traces read, by position.
//!
//! Actions and trace entries are JSON text inside the decision: they differ in shape, and a
//! field of mixed shapes is JSON text in Fluxion's documents (`docs/documents.md`).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListBuilder, StringBuilder, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Int32Type};
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use serde_json::{Map, Value};

use crate::document::encode::column_json;

/// What the decision says about one rule (in evaluation order).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleOut {
    pub id: String,
    pub actions: Vec<ActionOut>,
    /// The rule's conditions for traces.
    pub trace: Vec<TraceOut>,
    /// The argument holding whether the rule passed (for traces).
    pub passed_arg: Option<usize>,
}

/// One action of a fired rule: its fixed members, and the member computed per document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActionOut {
    /// `{"rule": id, "type": kind, …fixed parameters}` as JSON text.
    pub fixed: String,
    /// A member whose value is the argument at this position (`set`'s `value`).
    pub computed: Option<(String, usize)>,
    /// A tag (`tag`) or route (`route`) the action adds.
    pub tag: Option<String>,
    pub route: Option<String>,
}

/// One condition of a rule, for traces: its fixed description, and the arguments holding the
/// value it read (json-rules-engine's `factResult`) and its result.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceOut {
    pub fixed: String,
    pub fact_arg: Option<usize>,
    pub result_arg: usize,
}

/// The decision function of one `$rules` stage.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RuleDecision {
    label: String,
    rules: Vec<RuleOut>,
    trace: bool,
    signature: Signature,
}

fn strings() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

impl RuleDecision {
    /// The fields of a decision.
    pub fn fields(trace: bool) -> Fields {
        let mut f = vec![
            Field::new("ruleSet", DataType::Utf8, false),
            Field::new("passed", strings(), false),
            Field::new("actions", strings(), false),
            Field::new("tags", strings(), false),
            Field::new("routes", strings(), false),
        ];
        if trace {
            f.push(Field::new("trace", strings(), false));
        }
        Fields::from(f)
    }

    pub fn udf(label: String, rules: Vec<RuleOut>, trace: bool) -> ScalarUDF {
        ScalarUDF::new_from_impl(RuleDecision {
            label,
            rules,
            trace,
            signature: Signature::one_of(vec![TypeSignature::VariadicAny], Volatility::Immutable),
        })
    }
}

fn parse(bytes: &Option<Vec<u8>>) -> Value {
    bytes
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(Value::Null)
}

fn with(fixed: &str, extra: impl IntoIterator<Item = (String, Value)>) -> String {
    let mut m: Map<String, Value> = serde_json::from_str(fixed).unwrap_or_default();
    m.extend(extra);
    Value::Object(m).to_string()
}

impl ScalarUDFImpl for RuleDecision {
    fn name(&self) -> &str {
        "rule_decision"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Struct(RuleDecision::fields(self.trace)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DFResult<Vec<ArrayRef>>>()?;
        let Some(fired) = arrays.first().and_then(|a| a.as_list_opt::<i32>()) else {
            return Err(DataFusionError::Internal(
                "rule_decision: the first argument is not the fired rules".into(),
            ));
        };
        let json = arrays[1..]
            .iter()
            .map(|a| column_json(a).map_err(|e| DataFusionError::External(Box::new(e))))
            .collect::<DFResult<Vec<_>>>()?;
        let boolean = |i: usize| -> Option<&BooleanArray> { arrays[i + 1].as_boolean_opt() };
        let mut set = StringBuilder::new();
        let mut passed = ListBuilder::new(StringBuilder::new());
        let mut actions = ListBuilder::new(StringBuilder::new());
        let mut tags = ListBuilder::new(StringBuilder::new());
        let mut routes = ListBuilder::new(StringBuilder::new());
        let mut traces = ListBuilder::new(StringBuilder::new());
        let truth =
            |i: usize, row: usize| boolean(i).is_some_and(|b| b.is_valid(row) && b.value(row));
        // `row` indexes the fired list and every argument's values alike.
        #[allow(clippy::needless_range_loop)]
        for row in 0..rows {
            set.append_value(&self.label);
            if fired.is_valid(row) {
                let positions = fired.value(row);
                for &k in positions.as_primitive::<Int32Type>().values() {
                    let Some(rule) = self.rules.get(k as usize) else {
                        continue;
                    };
                    passed.values().append_value(&rule.id);
                    for a in &rule.actions {
                        let text = match &a.computed {
                            Some((member, arg)) => {
                                with(&a.fixed, [(member.clone(), parse(&json[*arg][row]))])
                            }
                            None => a.fixed.clone(),
                        };
                        actions.values().append_value(text);
                        if let Some(t) = &a.tag {
                            tags.values().append_value(t);
                        }
                        if let Some(r) = &a.route {
                            routes.values().append_value(r);
                        }
                    }
                }
            }
            if self.trace {
                for rule in &self.rules {
                    let conditions: Vec<Value> = rule
                        .trace
                        .iter()
                        .map(|t| {
                            let mut extra =
                                vec![("result".to_string(), Value::Bool(truth(t.result_arg, row)))];
                            if let Some(f) = t.fact_arg {
                                extra.push(("factResult".to_string(), parse(&json[f][row])));
                            }
                            serde_json::from_str(&with(&t.fixed, extra)).unwrap_or(Value::Null)
                        })
                        .collect();
                    let result = rule.passed_arg.is_some_and(|p| truth(p, row));
                    let entry = serde_json::json!({
                        "rule": rule.id,
                        "result": result,
                        "conditions": conditions,
                    });
                    traces.values().append_value(entry.to_string());
                }
            }
            passed.append(true);
            actions.append(true);
            tags.append(true);
            routes.append(true);
            traces.append(true);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(set.finish()),
            Arc::new(passed.finish()),
            Arc::new(actions.finish()),
            Arc::new(tags.finish()),
            Arc::new(routes.finish()),
        ];
        if self.trace {
            columns.push(Arc::new(traces.finish()));
        }
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
            RuleDecision::fields(self.trace),
            columns,
            None,
        )?)))
    }
}
