//! The micro-batch loop and its steps: [`fetch`] reads micro-batches from the source,
//! [`transform`] runs the compiled pipeline (and the stream's operator) over each,
//! [`deliver`] writes and commits the output; [`micro_batch`] joins them with bounded queues
//! and checkpoints; [`options`] is how a run is set up; [`tasks`] runs one loop per source
//! partition for a stream scaled out over a consumer group.

pub(crate) mod deliver;
pub(crate) mod fetch;
pub mod micro_batch;
pub mod options;
pub mod tasks;
pub(crate) mod transform;
