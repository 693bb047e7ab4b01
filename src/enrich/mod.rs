//! Enrich operators: calls to external systems from inside a stage, as DataFusion async
//! scalar UDFs evaluated over a whole micro-batch (`$httpCall`, `$sqlQuery`). Each call site
//! is one UDF instance holding its options, its client or pool and its cache, so a stream's
//! plan — made once — keeps its cache from batch to batch.
//!
//! In SQL the same calls are `http_call('<options JSON>', arg, …)` and
//! `sql_query('<options JSON>', param, …)` ([`sql`]).
//!
//! Named connections (`"connections"` in a job file) are resolved into the operators' options
//! when the job is loaded ([`connections`]).

pub mod breaker;
pub mod connections;
pub mod http_call;
pub mod limit;
pub mod lookup;
pub mod sql;
pub mod sql_query;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::ScalarUDF;

use crate::Result;
use crate::dsl::enrich::{EnrichCall, EnrichOperator};

/// The UDF of an enrich call site and the type it returns; its arguments are the call's
/// `inputs`, compiled, in order.
pub fn udf(call: &EnrichCall) -> Result<(ScalarUDF, DataType)> {
    match &call.operator {
        EnrichOperator::Http(o) => http_call::udf(call, o),
        EnrichOperator::Sql(o) => sql_query::udf(call, o),
    }
}
