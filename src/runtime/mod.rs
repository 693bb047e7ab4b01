//! The streaming runtime: the compiled pipeline run over micro-batches from a Connect
//! [`Source`](crate::connect::source::Source), each batch's output delivered to a
//! [`Sink`](crate::connect::source::Sink) and committed with the source position it reached.
//!
//! Its rooms, in the order a document passes them:
//! - [`exec`]: the micro-batch loop — fetch → transform → deliver, joined by bounded queues,
//!   then the checkpoint and the [`metrics`] listeners;
//! - [`query`]: the compiled pipeline or SQL as it runs over one micro-batch;
//! - [`prepared`]: plans made once per stream over tables re-bound to each micro-batch;
//! - [`window`]: windows over event or processing time, their watermarks and clock;
//! - [`state`]: checkpoints and their stores, the continuous `$group`'s keyed state;
//! - [`policy`]: error policies and dead letters;
//! - [`replay`] re-runs what a checkpoint covers in batch and compares; [`builder`] is the
//!   library API.

pub mod builder;
pub mod exec;
pub mod metrics;
pub mod policy;
pub mod prepared;
pub mod query;
pub mod replay;
pub mod state;
pub mod window;
