//! The streaming runtime: the compiled pipeline run over micro-batches from a Connect
//! [`Source`](crate::connect::source::Source), each batch's output delivered to a
//! [`Sink`](crate::connect::source::Sink) and committed with the source position it reached.
//!
//! The loop ([`micro_batch`]) is [`fetch`] → [`transform`] → [`deliver`] joined by bounded
//! queues, then a [`checkpoint`] and the [`metrics`] listeners; failures follow the
//! [`error_policy`] and failing records go to the [`dead_letters`] sink; a `$group` at the end
//! of a pipeline runs continuously ([`group_state`]); [`replay`] re-runs what a checkpoint
//! covers in batch and compares; [`builder`] is the library API.

pub mod builder;
pub mod checkpoint;
pub mod clock;
pub mod dead_letters;
mod deliver;
pub mod error_policy;
mod fetch;
pub mod group_state;
pub mod keyed_state;
pub mod metrics;
pub mod micro_batch;
pub mod query;
pub mod replay;
pub mod session_state;
pub mod sql_window;
mod transform;
pub mod watermark;
pub mod window_state;
