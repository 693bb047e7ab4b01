//! What every enrich operator shares once it knows how to ask its system: the call site as
//! a DataFusion async UDF ([`CallSite`]), the retry schedule, the cache, the answers of a
//! batch put back in document order (with `onError` deciding what a failed one becomes),
//! and the answers as a column of the operator's declared type.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use serde_json::Value;

use crate::document::decode::read_lines_parallel;
use crate::document::encode::column_texts;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::dsl::JsonPath;
use crate::dsl::enrich::{CacheOptions, OnError, RetryOptions};
use crate::{Error, Result};

/// What a call site does with a batch: the answers for its documents.
#[async_trait]
pub trait Calls: std::fmt::Debug + Send + Sync + 'static {
    /// The answers for `rows` documents whose arguments are `arrays`, as a column of the
    /// call's type.
    async fn call(&self, arrays: &[ArrayRef], rows: usize) -> Result<ArrayRef>;
}

/// Numbers call sites, which tell UDF instances apart.
static SITES: AtomicUsize = AtomicUsize::new(0);

/// The async UDF of one call site: two are equal only if they are the same site, so a plan
/// never merges two calls (each has its own options, client and cache).
#[derive(Debug)]
pub struct CallSite<S> {
    id: usize,
    name: String,
    signature: Signature,
    returns: DataType,
    site: S,
}

impl<S> PartialEq for CallSite<S> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl<S> Eq for CallSite<S> {}

impl<S> std::hash::Hash for CallSite<S> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

/// The UDF of `site`, shown in plans as `name` (which must hold no secret), answering
/// values of type `returns`.
pub fn call_site<S: Calls>(name: String, returns: DataType, site: S) -> ScalarUDF {
    let udf = CallSite {
        id: SITES.fetch_add(1, Ordering::Relaxed),
        name,
        signature: Signature::one_of(
            vec![TypeSignature::VariadicAny, TypeSignature::Nullary],
            Volatility::Volatile,
        ),
        returns,
        site,
    };
    AsyncScalarUDF::new(Arc::new(udf)).into_scalar_udf()
}

impl<S: Calls> ScalarUDFImpl for CallSite<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Err(DataFusionError::Internal(format!(
            "{} runs only as an async function",
            self.name
        )))
    }
}

#[async_trait]
impl<S: Calls> AsyncScalarUDFImpl for CallSite<S> {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<Vec<ArrayRef>>>()?;
        let out = self
            .site
            .call(&arrays, rows)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(ColumnarValue::Array(out))
    }
}

/// The type `returns` declares (as a source schema declares types), and the one-field
/// schema `{"v": type}` answers are read with.
pub fn returns_schema(returns: &Value, at: &JsonPath) -> Result<(DataType, SchemaRef)> {
    let schema = crate::document::declared::parse_schema(
        &serde_json::json!({ "v": returns }),
        &at.to_string(),
        "returns",
    )
    .map_err(|e| at.key("returns").err(e.to_string()))?;
    Ok((schema.field(0).data_type().clone(), Arc::new(schema)))
}

/// A call site's cache of answers, if the options ask for one.
pub fn cache<K>(options: Option<&CacheOptions>) -> Option<moka::future::Cache<K, Arc<Value>>>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
{
    options.map(|c| {
        let mut b = moka::future::Cache::builder().max_capacity(c.max_entries);
        if let Some(ms) = c.ttl_ms {
            b = b.time_to_live(Duration::from_millis(ms));
        }
        b.build()
    })
}

/// How failed calls are tried again: `attempts` in all, waiting `backoff`, then
/// `multiplier` times longer each time.
#[derive(Debug, Clone)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Duration,
    pub multiplier: f64,
    /// HTTP statuses worth another attempt.
    pub on: Vec<u16>,
}

impl Retry {
    /// The schedule `options` give (3 attempts, 100 ms, ×2 by default).
    pub fn new(options: Option<&RetryOptions>) -> Retry {
        let o = options.cloned().unwrap_or(RetryOptions {
            max_attempts: None,
            backoff_ms: None,
            multiplier: None,
            retry_on: None,
        });
        Retry {
            attempts: o.max_attempts.unwrap_or(3).max(1),
            backoff: Duration::from_millis(o.backoff_ms.unwrap_or(100)),
            multiplier: o.multiplier.unwrap_or(2.0).max(1.0),
            on: o.retry_on.unwrap_or_else(|| vec![429, 500, 502, 503, 504]),
        }
    }

    /// The wait before attempt `attempt + 1` (the first retry waits `backoff`).
    pub fn wait(&self, attempt: u32) -> Duration {
        self.backoff
            .mul_f64(self.multiplier.powi(attempt.saturating_sub(1) as i32))
    }
}

/// A call's answer: its value, or why there is none.
pub type Answer = std::result::Result<Arc<Value>, String>;

/// Calls that failed lately, under `onError: "deadLetter"`: when a stream narrows a failing
/// batch down to its documents it runs them again, and they fail at once instead of being
/// asked (with retries) again.
pub fn failures<K>() -> moka::future::Cache<K, String>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
{
    moka::future::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(Duration::from_secs(30))
        .build()
}

/// Each document's answer, from the distinct calls' `answers` (`of_row[i]`: document `i`'s
/// call, `None` for a document that made none). A failed call fails the batch under
/// `onError: "fail"`, and under `"deadLetter"` too, as a failure of single documents (which a
/// stream's runtime narrows down to the documents and dead-letters); under `"null"` the
/// document gets null.
pub fn gather<'a>(
    of_row: &[Option<usize>],
    answers: &'a [Answer],
    on_error: OnError,
    operator: &str,
) -> Result<Vec<Option<&'a Value>>> {
    let mut values = Vec::with_capacity(of_row.len());
    for i in of_row {
        match i.map(|i| &answers[i]) {
            None => values.push(None),
            Some(Ok(v)) => values.push(Some(v.as_ref())),
            Some(Err(why)) if on_error == OnError::Fail => {
                return Err(Error::external(
                    operator.to_string(),
                    std::io::Error::other(why.clone()),
                ));
            }
            Some(Err(why)) if on_error == OnError::DeadLetter => {
                return Err(Error::document(operator.to_string(), why.clone()));
            }
            Some(Err(_)) => values.push(None),
        }
    }
    Ok(values)
}

/// The answers as a column of `returns` (`schema` is `{"v": returns}`). An answer that does
/// not fit the type is the call's failure: under `onError: "fail"` the batch's, otherwise the
/// document gets null.
pub fn typed(
    values: &[Option<&Value>],
    returns: &DataType,
    schema: &SchemaRef,
    on_error: OnError,
    operator: &str,
) -> Result<ArrayRef> {
    if *returns == DataType::Utf8 {
        let texts: StringArray = values
            .iter()
            .map(|v| match v {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            })
            .collect();
        return Ok(Arc::new(texts));
    }
    let mut lines = Vec::new();
    for v in values {
        match v {
            Some(v) => lines.extend_from_slice(format!("{{\"v\":{v}}}\n").as_bytes()),
            None => lines.extend_from_slice(b"{}\n"),
        }
    }
    // Fields of the answer that `returns` does not name are left out.
    let read = read_lines_parallel(&lines, schema, false, values.len().max(1), 1)?;
    if let Some(bad) = read.invalid.first() {
        let why = format!("an answer does not fit \"returns\": {}", bad.reason);
        match on_error {
            OnError::Fail => return Err(Error::input(operator.to_string(), why)),
            OnError::DeadLetter => return Err(Error::document(operator.to_string(), why)),
            OnError::Null => {}
        }
        let bad: Vec<usize> = read.invalid.iter().map(|i| i.line).collect();
        let kept: Vec<Option<&Value>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| if bad.contains(&i) { None } else { *v })
            .collect();
        return typed(&kept, returns, schema, on_error, operator);
    }
    let batch = concat_batches(schema, &read.batches)?;
    Ok(batch.column(0).clone())
}

/// An argument's column as bytes: text columns as they are, others as their JSON.
pub enum Texts<'a> {
    Text(&'a datafusion::arrow::array::StringArray),
    Other(Vec<Option<Vec<u8>>>),
}

impl<'a> Texts<'a> {
    pub fn of(column: &'a ArrayRef) -> Result<Texts<'a>> {
        use datafusion::arrow::array::AsArray;
        match column.as_string_opt::<i32>() {
            Some(s) => Ok(Texts::Text(s)),
            None => Ok(Texts::Other(column_texts(column)?)),
        }
    }

    pub fn get(&self, row: usize) -> Option<&[u8]> {
        use datafusion::arrow::array::Array;
        match self {
            Texts::Text(s) => s.is_valid(row).then(|| s.value(row).as_bytes()),
            Texts::Other(v) => v[row].as_deref(),
        }
    }
}
