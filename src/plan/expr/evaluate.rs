//! A DSL expression evaluated over record batches outside a pipeline's plan — what a sink
//! needs for values it computes per document (a Kafka record's key and headers). The
//! expression is parsed once and compiled again only when the batches' schema changes.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::create_physical_expr;
use serde_json::Value;

use super::ExprCompiler;
use crate::dsl::JsonPath;
use crate::dsl::expression::Expression;
use crate::{Error, Result};

/// An aggregation expression (`"$customerId"`, `{"$concat": [...]}`) ready to run over
/// batches of documents.
pub struct BatchExpr {
    expression: Expression,
    at: JsonPath,
    compiled: Option<(SchemaRef, Arc<dyn PhysicalExpr>)>,
}

impl BatchExpr {
    /// Parses `v`, found at `at` (for error messages).
    pub fn parse(v: &Value, at: JsonPath) -> Result<Self> {
        Ok(BatchExpr {
            expression: Expression::parse(v, &at)?,
            at,
            compiled: None,
        })
    }

    /// The expression's value for each row of `batch`.
    pub fn evaluate(&mut self, batch: &RecordBatch) -> Result<ArrayRef> {
        let schema = batch.schema();
        let stale = match &self.compiled {
            // Batches of one stream share their schema's `Arc`: the deep comparison is rare.
            Some((s, _)) => !Arc::ptr_eq(s, &schema) && s != &schema,
            None => true,
        };
        if stale {
            let df = Arc::new(DFSchema::try_from(schema.clone())?);
            let expr = ExprCompiler::new(&df).compile(&self.expression, &self.at)?;
            // What a plan's analyzer and optimizer would do to the expression: coerce the
            // operand types, and simplify (some functions, like `coalesce`, only run
            // simplified).
            let simplifier =
                ExprSimplifier::new(SimplifyContext::builder().with_schema(df.clone()).build());
            let bad = |e: datafusion::error::DataFusionError| {
                self.at.err(format!("cannot evaluate this expression: {e}"))
            };
            let expr = simplifier
                .coerce(expr, &df)
                .and_then(|e| simplifier.simplify(e))
                .map_err(bad)?;
            let physical = create_physical_expr(
                &expr,
                &df,
                &ExecutionProps::new(),
                &PhysicalPlanningContext::default(),
            )
            .map_err(bad)?;
            self.compiled = Some((schema, physical));
        }
        let (_, physical) = self.compiled.as_ref().expect("compiled above");
        physical
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use serde_json::json;

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("region", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(StringArray::from(vec!["eu", "us", "eu"])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn evaluates_an_operator_over_every_row() {
        let mut e = BatchExpr::parse(
            &json!({"$concat": ["$region", "-", {"$toString": "$id"}]}),
            JsonPath::named("sink.key"),
        )
        .unwrap();
        let out = e.evaluate(&batch()).unwrap();
        let s = out.as_string::<i32>();
        assert_eq!(s.value(0), "eu-1");
        assert!(s.is_null(1), "a null operand makes $concat null");
        assert_eq!(s.value(2), "eu-3");
    }

    #[test]
    fn a_missing_field_is_null_and_a_bad_expression_names_its_path() {
        let mut e = BatchExpr::parse(&json!("$nothere"), JsonPath::named("sink.key")).unwrap();
        assert_eq!(e.evaluate(&batch()).unwrap().logical_null_count(), 3);
        let err = BatchExpr::parse(&json!({"$concatt": ["$a"]}), JsonPath::named("sink.key"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("sink.key") && err.contains("$concatt"),
            "{err}"
        );
    }
}
