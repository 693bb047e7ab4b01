//! Fluxion: a dataflow engine that compiles MongoDB-style JSON pipelines — and their SQL
//! twins — into DataFusion plans.
//!
//! The data flow, module by module:
//! - [`connect`]: sources become tables of a DataFusion session; sinks write results.
//! - [`dsl`]: a pipeline document parsed into a typed AST, with errors naming JSON paths.
//! - [`plan`]: the AST compiled onto DataFusion `LogicalPlan`s and `Expr`s.
//! - [`enrich`]: operators that call external systems from inside a stage (`$httpCall`).
//! - [`rules`]: the rule engine — rule sets judged column-wise, lints, a registry.
//! - [`runtime`]: the streaming micro-batch loop over Connect sources and sinks (in progress).
//! - [`service`]: the control plane of `fluxion serve` (its event log so far).
//! - [`udf`]: Fluxion's own scalar functions (calendar arithmetic in time zones).
//! - [`document`]: how JSON documents are represented as Arrow (inference, decode, encode).
//! - [`engine`]: the embedded API tying these together; [`job`] and [`cli`] drive it.
//!
//! ```no_run
//! # async fn demo() -> fluxion::Result<()> {
//! use fluxion::{Engine, Pipeline};
//! let engine = Engine::new();
//! engine.register_file("orders", "examples/data/orders.jsonl", None).await?;
//! let p = Pipeline::from_json_str(r#"[{"$match": {"status": "PAID"}}]"#)?;
//! let batches = engine.pipeline("orders", &p).await?.collect().await?;
//! # Ok(()) }
//! ```

pub mod cli;
pub mod connect;
pub mod document;
pub mod dsl;
pub mod engine;
pub mod enrich;
pub mod error;
pub mod job;
pub mod plan;
pub mod rules;
pub mod runtime;
pub mod service;
pub mod udf;
pub mod units;

pub use dsl::Pipeline;
pub use engine::Engine;
pub use error::{Error, Result};
