//! `rules(rule_set, table [, mode [, trace]])`: the `$rules` stage as a SQL table function —
//! `table`'s rows with the decision as the column `decision` (and, with mode `'execute'`,
//! the actions' `set` / `unset` applied):
//!
//! ```sql
//! SELECT orderId, decision['passed'] FROM rules('examples/rules/order-approval.json', 'orders')
//! ```
//!
//! The rule set is the path of its file. The plan is the `$rules` stage's own, over the
//! table's numbered source where it has one (so rules with stages beyond `$match` work).

use std::sync::Arc;

use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result as DFResult, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use serde_json::json;

use crate::dsl::JsonPath;
use crate::dsl::rule_set::RulesStage;
use crate::plan::order;
use crate::plan::stages::combine::Tables;

/// The `rules` table function.
#[derive(Debug, Default)]
pub struct RulesTable;

const USAGE: &str = "rules(rule_set, table [, mode [, trace]]): the rule set's file and the table's name as strings, mode 'evaluate' or 'execute', trace true or false";

fn fail(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(message.into())
}

impl TableFunctionImpl for RulesTable {
    fn call_with_args(&self, args: TableFunctionArgs) -> DFResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let text = |i: usize| match exprs.get(i) {
            Some(Expr::Literal(ScalarValue::Utf8(Some(s)), _)) => Some(s.clone()),
            _ => None,
        };
        let (Some(rule_set), Some(table)) = (text(0), text(1)) else {
            return Err(fail(USAGE));
        };
        let mode = match exprs.get(2) {
            None => "evaluate".to_string(),
            Some(_) => text(2).ok_or_else(|| fail(USAGE))?,
        };
        let trace = match exprs.get(3) {
            None => false,
            Some(Expr::Literal(ScalarValue::Boolean(Some(b)), _)) => *b,
            Some(_) => return Err(fail(USAGE)),
        };
        if exprs.len() > 4 {
            return Err(fail(USAGE));
        }
        let at = JsonPath::named("rules()");
        let stage = RulesStage::parse(
            &json!({"ruleSet": rule_set, "mode": mode, "trace": trace}),
            &at,
        )
        .map_err(|e| fail(e.to_string()))?;
        let state = args
            .session()
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("rules(): not a Fluxion session".into()))?;
        let numbered = order::source_name(&table);
        let lookup = |name: &str| -> DFResult<Option<Arc<dyn TableProvider>>> {
            let schema = state.schema_for_ref(name)?;
            // The catalog's tables are in memory: the lookup completes at once.
            futures::executor::block_on(schema.table(name))
        };
        let (name, provider) = match lookup(&numbered)? {
            Some(p) => (numbered, p),
            None => (
                table.clone(),
                lookup(&table)?
                    .ok_or_else(|| fail(format!("rules(): no table named \"{table}\"")))?,
            ),
        };
        let scan = LogicalPlanBuilder::scan(name, provider_as_source(provider), None)?.build()?;
        let plan = crate::plan::stages::rules::plan(scan, &stage, &Tables::new(), &at)
            .and_then(order::finish)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}
