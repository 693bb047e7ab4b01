//! Connect: where documents enter and leave. Sources become tables of the session (so the
//! JSON path and the SQL path read them identically); sinks consume a DataFrame's batches.

pub mod file;
pub mod object_store;
pub mod stdout;

pub use file::Format;
