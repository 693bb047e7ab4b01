//! Documents as Arrow: how JSON documents become record batches and back.
//!
//! Nested objects are structs, arrays are lists. The schema is inferred from the input
//! ([`infer`]) or declared ([`declared`]); a field whose type varies across documents is widened (integers and doubles
//! become doubles) or, when no Arrow type holds both, kept as a string holding the value's JSON
//! text. [`decode`] turns JSON lines into batches in parallel; [`encode`] writes batches as
//! JSON lines, omitting null fields (MongoDB would show them missing) except `_id`; dates are
//! extended JSON ([`date`]).

pub mod date;
pub mod declared;
pub mod decode;
pub mod encode;
pub mod hidden;
pub mod infer;
pub mod lines;
