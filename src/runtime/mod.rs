//! The streaming runtime (issue 4, in progress): the compiled pipeline run over micro-batches
//! from a Connect [`Source`](crate::connect::source::Source), each batch's output delivered to
//! a [`Sink`](crate::connect::source::Sink) and committed with the source position it reached.
//!
//! What exists: [`micro_batch`] — the fetch → transform → deliver → commit → checkpoint loop
//! for pipelines whose stages work document by document, and a continuous `$group` at their
//! end ([`group_state`]) — [`checkpoint`] stores, and the library [`builder`]. Error policies, metrics and replay are
//! not built yet.

pub mod builder;
pub mod checkpoint;
pub mod group_state;
pub mod metrics;
pub mod micro_batch;
