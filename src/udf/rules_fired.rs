//! `rules_fired(pass₀, …, passₙ₋₁)`: which rules of a rule set fire for each document, given
//! whether each passes (in evaluation order), after the rule set's hit policy: every passing
//! rule (`all`), the first (`first`), or those of the highest passing salience (`priority`).
//! The answer is a list of positions in evaluation order, so one column carries a batch's
//! decisions to the actions and the decision field (`plan::stages::rules`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Builder, ListBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::dsl::rule_set::HitPolicy;

/// The type of `rules_fired`'s answer.
pub fn fired_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Int32, true)))
}

/// The function for rules of `saliences` (in evaluation order, so descending) under `policy`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RulesFired {
    saliences: Vec<i64>,
    policy: HitPolicy,
    signature: Signature,
}

impl RulesFired {
    pub fn udf(saliences: Vec<i64>, policy: HitPolicy) -> ScalarUDF {
        ScalarUDF::new_from_impl(RulesFired {
            saliences,
            policy,
            signature: Signature::one_of(
                vec![TypeSignature::VariadicAny, TypeSignature::Nullary],
                Volatility::Immutable,
            ),
        })
    }
}

impl ScalarUDFImpl for RulesFired {
    fn name(&self) -> &str {
        "rules_fired"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DFResult<DataType> {
        Ok(fired_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        if args.args.len() != self.saliences.len() {
            return Err(DataFusionError::Internal(format!(
                "rules_fired: {} arguments for {} rules",
                args.args.len(),
                self.saliences.len()
            )));
        }
        let rows = args.number_rows;
        let passes = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DFResult<Vec<ArrayRef>>>()?;
        let passes = passes
            .iter()
            .map(|a| {
                a.as_boolean_opt().cloned().ok_or_else(|| {
                    DataFusionError::Internal(format!(
                        "rules_fired: a condition of type {} is not boolean",
                        a.data_type()
                    ))
                })
            })
            .collect::<DFResult<Vec<_>>>()?;
        let mut out = ListBuilder::new(Int32Builder::new());
        for row in 0..rows {
            let passed = |k: usize| passes[k].is_valid(row) && passes[k].value(row);
            let mut top: Option<i64> = None;
            for k in 0..passes.len() {
                if !passed(k) {
                    continue;
                }
                match self.policy {
                    HitPolicy::All => out.values().append_value(k as i32),
                    HitPolicy::First => {
                        out.values().append_value(k as i32);
                        break;
                    }
                    HitPolicy::Priority => {
                        // Evaluation order is by descending salience: the first passing rule
                        // has the highest; its equals follow it.
                        let s = self.saliences[k];
                        match top {
                            None => top = Some(s),
                            Some(t) if t != s => break,
                            Some(_) => {}
                        }
                        out.values().append_value(k as i32);
                    }
                }
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BooleanArray, ListArray};
    use datafusion::arrow::datatypes::Int32Type;

    fn fired(policy: HitPolicy, saliences: Vec<i64>, passes: Vec<Vec<Option<bool>>>) -> ListArray {
        let f = RulesFired::udf(saliences, policy);
        let rows = passes[0].len();
        let args = passes
            .into_iter()
            .map(|p| ColumnarValue::Array(Arc::new(BooleanArray::from(p))))
            .collect::<Vec<_>>();
        let fields = args
            .iter()
            .map(|_| Arc::new(Field::new("p", DataType::Boolean, true)))
            .collect();
        let out = f
            .invoke_with_args(ScalarFunctionArgs {
                args,
                arg_fields: fields,
                number_rows: rows,
                return_field: Arc::new(Field::new("f", fired_type(), true)),
                config_options: Arc::new(Default::default()),
            })
            .unwrap();
        let ColumnarValue::Array(a) = out else {
            panic!("array expected")
        };
        a.as_list::<i32>().clone()
    }

    fn lists(a: &ListArray) -> Vec<Vec<i32>> {
        (0..a.len())
            .map(|i| a.value(i).as_primitive::<Int32Type>().values().to_vec())
            .collect()
    }

    #[test]
    fn hit_policies() {
        let passes = || {
            vec![
                vec![Some(true), Some(false), None],
                vec![Some(true), Some(true), Some(false)],
                vec![Some(true), Some(true), Some(true)],
            ]
        };
        let s = vec![10, 10, 5];
        assert_eq!(
            lists(&fired(HitPolicy::All, s.clone(), passes())),
            vec![vec![0, 1, 2], vec![1, 2], vec![2]]
        );
        assert_eq!(
            lists(&fired(HitPolicy::First, s.clone(), passes())),
            vec![vec![0], vec![1], vec![2]]
        );
        assert_eq!(
            lists(&fired(HitPolicy::Priority, s, passes())),
            vec![vec![0, 1], vec![1], vec![2]]
        );
    }
}
