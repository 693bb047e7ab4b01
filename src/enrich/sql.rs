//! The SQL spelling of `$httpCall`: `http_call('<options JSON>', arg, …)`. The options are
//! `$httpCall`'s; the arguments after them fill the URL's and the query's `{{…}}`
//! placeholders in order of first appearance, then, when the options have a `body` (any
//! value), the body. `http_call` is registered as a placeholder whose only job is to say its
//! type; a function rewrite replaces each call with the call site's own async UDF before
//! the plan is optimized.

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

use super::http_call;
use crate::dsl::JsonPath;
use crate::dsl::enrich::{EnrichCall, HttpCallOptions, placeholders_in};

const NAME: &str = "http_call";

/// The call `options` (JSON text) describe, taking `args` arguments after them.
fn call_of(options: &str, args: usize) -> DfResult<EnrichCall> {
    let at = JsonPath::named(NAME);
    let bad = |m: String| DataFusionError::Plan(format!("{NAME}: {m}"));
    let options: HttpCallOptions =
        serde_json::from_str(options).map_err(|e| bad(format!("the options: {e}")))?;
    if options.connection.is_some() {
        return Err(bad(
            "named connections are not available in SQL yet: give the whole \"url\"".into(),
        ));
    }
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
        options,
        inputs: Vec::new(),
        placeholders,
        path: at,
    })
}

/// The options text of a call's first argument.
fn options_text(first: Option<&ScalarValue>) -> DfResult<&str> {
    match first {
        Some(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s))) => Ok(s),
        _ => Err(DataFusionError::Plan(format!(
            "{NAME}: the first argument is the options, a JSON text constant"
        ))),
    }
}

/// `http_call` before the rewrite: it only types the call.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Placeholder {
    signature: Signature,
}

impl ScalarUDFImpl for Placeholder {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Err(DataFusionError::Internal(
            "http_call is typed from its arguments".into(),
        ))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let text = options_text(args.scalar_arguments.first().copied().flatten())?;
        let call = call_of(text, args.arg_fields.len().saturating_sub(1))?;
        let (_, ty) = http_call::udf(&call).map_err(|e| DataFusionError::Plan(e.to_string()))?;
        Ok(Arc::new(Field::new(NAME, ty, true)))
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Err(DataFusionError::Internal(
            "http_call runs only once the plan has been analyzed".into(),
        ))
    }
}

/// The `http_call` SQL function (to register in a session beside [`HttpCallRewrite`]).
pub fn placeholder() -> ScalarUDF {
    ScalarUDF::new_from_impl(Placeholder {
        signature: Signature::variadic_any(Volatility::Volatile),
    })
}

/// Replaces each `http_call(…)` with its call site's async UDF.
#[derive(Debug)]
pub struct HttpCallRewrite;

impl FunctionRewrite for HttpCallRewrite {
    fn name(&self) -> &str {
        "fluxion_http_call"
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
        if inner.downcast_ref::<Placeholder>().is_none() {
            return Ok(Transformed::no(expr));
        }
        let first = match f.args.first() {
            Some(Expr::Literal(v, _)) => Some(v),
            _ => None,
        };
        let call = call_of(options_text(first)?, f.args.len() - 1)?;
        let (udf, _) = http_call::udf(&call).map_err(|e| DataFusionError::Plan(e.to_string()))?;
        Ok(Transformed::yes(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::new(udf), f.args[1..].to_vec()),
        )))
    }
}
