//! Connect: where documents enter and leave. Sources become tables of the session (so the
//! JSON path and the SQL path read them identically); sinks consume a DataFrame's batches.
//! Streaming sources and sinks implement [`source::Source`] and [`source::Sink`].

pub mod channel;
pub mod config;
pub mod file;
pub mod http_sink;
pub mod http_source;
pub mod jsonl_sink;
pub mod jsonl_source;
pub mod kafka;
pub mod memory;
pub mod nexmark;
pub mod object_store;
pub mod parquet_sink;
pub mod postgres;
pub mod routed;
pub mod source;
pub mod stdout;

pub use file::Format;
