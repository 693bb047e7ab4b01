//! The SQL spelling of the enrich operators.
//!
//! - `http_call('<options JSON>', arg, …)`: the options are `$httpCall`'s; the arguments
//!   after them fill the URL's and the query's `{{…}}` placeholders in order of first
//!   appearance, then, when the options have a `body` (any value), the body.
//! - `sql_query('<options JSON>', param, …)`: the options are `$sqlQuery`'s but `params`;
//!   the arguments after them are the query's `$1` … `$n`.
//!
//! Both are registered as placeholders whose only job is to say their type; a function
//! rewrite replaces each call with the call site's own async UDF before the plan is
//! optimized. A `"connection"` in the options is resolved when a job file is loaded
//! (`connections::resolve_sql`).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::dsl::JsonPath;
use crate::dsl::enrich::{
    EnrichCall, EnrichOperator, HttpCallOptions, SqlQueryOptions, check_sql_query, placeholders_in,
};

/// The SQL functions that call out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Function {
    Http,
    Sql,
}

impl Function {
    fn name(self) -> &'static str {
        match self {
            Function::Http => "http_call",
            Function::Sql => "sql_query",
        }
    }
}

/// The call `options` (JSON text) describe, taking `args` arguments after them.
fn call_of(function: Function, options: &str, args: usize) -> DfResult<EnrichCall> {
    let name = function.name();
    let at = JsonPath::named(name);
    let bad = |m: String| DataFusionError::Plan(format!("{name}: {m}"));
    let named = |has_connection: bool, has_target: bool| {
        if has_connection && !has_target {
            Err(bad(
                "a named connection needs the job file that declares it (\"connections\")".into(),
            ))
        } else {
            Ok(())
        }
    };
    if function == Function::Sql {
        let mut options: SqlQueryOptions =
            serde_json::from_str(options).map_err(|e| bad(format!("the options: {e}")))?;
        named(options.connection.is_some(), options.url.is_some())?;
        if !options.params.is_empty() {
            return Err(bad(
                "the parameters are the arguments after the options, not \"params\"".into(),
            ));
        }
        options.params = vec![serde_json::Value::Null; args];
        check_sql_query(&options, &at).map_err(|e| DataFusionError::Plan(e.to_string()))?;
        return Ok(EnrichCall {
            operator: EnrichOperator::Sql(options),
            inputs: Vec::new(),
            placeholders: Vec::new(),
            path: at,
        });
    }
    let options: HttpCallOptions =
        serde_json::from_str(options).map_err(|e| bad(format!("the options: {e}")))?;
    named(options.connection.is_some(), options.base_url.is_some())?;
    let mut placeholders: Vec<String> = Vec::new();
    for text in std::iter::once(&options.url).chain(options.query.values()) {
        for (_, p) in placeholders_in(text) {
            if !placeholders.contains(&p) {
                placeholders.push(p);
            }
        }
    }
    let wanted = placeholders.len() + usize::from(options.body.is_some());
    if wanted != args {
        return Err(bad(format!(
            "the options name {} placeholder(s) ({}){}: give {wanted} argument(s) after them, not {args}",
            placeholders.len(),
            placeholders.join(", "),
            if options.body.is_some() {
                " and a body"
            } else {
                ""
            }
        )));
    }
    Ok(EnrichCall {
        operator: EnrichOperator::Http(options),
        inputs: Vec::new(),
        placeholders,
        path: at,
    })
}

/// The options text of a call's first argument.
fn options_text(function: Function, first: Option<&ScalarValue>) -> DfResult<&str> {
    match first {
        Some(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        ) => Ok(s),
        _ => Err(DataFusionError::Plan(format!(
            "{}: the first argument is the options, a JSON text constant",
            function.name()
        ))),
    }
}

/// `http_call` or `sql_query` before the rewrite: it only types the call.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Placeholder {
    function: Function,
    signature: Signature,
}

impl ScalarUDFImpl for Placeholder {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Err(DataFusionError::Internal(format!(
            "{} is typed from its arguments",
            self.function.name()
        )))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let text = options_text(
            self.function,
            args.scalar_arguments.first().copied().flatten(),
        )?;
        let call = call_of(self.function, text, args.arg_fields.len().saturating_sub(1))?;
        let (_, ty) = super::udf(&call).map_err(|e| DataFusionError::Plan(e.to_string()))?;
        Ok(Arc::new(Field::new(self.function.name(), ty, true)))
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Err(DataFusionError::Internal(format!(
            "{} runs only once the plan has been analyzed",
            self.function.name()
        )))
    }
}

/// The `http_call` and `sql_query` SQL functions (to register in a session beside
/// [`EnrichRewrite`]).
pub fn placeholders() -> [ScalarUDF; 2] {
    [Function::Http, Function::Sql].map(|function| {
        ScalarUDF::new_from_impl(Placeholder {
            function,
            signature: Signature::variadic_any(Volatility::Volatile),
        })
    })
}

/// Replaces each `http_call(…)` and `sql_query(…)` with its call site's async UDF.
#[derive(Debug)]
pub struct EnrichRewrite;

impl FunctionRewrite for EnrichRewrite {
    fn name(&self) -> &str {
        "fluxion_enrich_calls"
    }

    fn rewrite(
        &self,
        expr: Expr,
        _schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> DfResult<Transformed<Expr>> {
        let Expr::ScalarFunction(f) = &expr else {
            return Ok(Transformed::no(expr));
        };
        let inner: &dyn std::any::Any = f.func.inner().as_ref();
        let Some(placeholder) = inner.downcast_ref::<Placeholder>() else {
            return Ok(Transformed::no(expr));
        };
        let first = match f.args.first() {
            Some(Expr::Literal(v, _)) => Some(v),
            _ => None,
        };
        let function = placeholder.function;
        let call = call_of(
            function,
            options_text(function, first)?,
            f.args.len().saturating_sub(1),
        )?;
        let (udf, _) = super::udf(&call).map_err(|e| DataFusionError::Plan(e.to_string()))?;
        Ok(Transformed::yes(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::new(udf), f.args[1..].to_vec()),
        )))
    }
}
