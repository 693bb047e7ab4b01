//! Enrich operators: calls to external systems from inside a stage, as DataFusion async
//! scalar UDFs evaluated over a whole micro-batch (`$httpCall`). Each call site is one UDF
//! instance holding its options, its client and its cache, so a stream's plan — made once —
//! keeps its cache from batch to batch.
//!
//! In SQL the same call is `http_call('<options JSON>', arg, …)` ([`sql`]).
//!
//! Named connections (`"connections"` in a job file) are resolved into the operators' options
//! when the job is loaded ([`connections`]).

pub mod breaker;
pub mod connections;
pub mod http_call;
pub mod limit;
pub mod sql;
