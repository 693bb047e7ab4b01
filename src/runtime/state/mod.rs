//! What a stream keeps between micro-batches: [`checkpoint`]s (source position, sink state,
//! operator state) and their stores, the keyed state of upserted groups ([`keyed`]), and the
//! continuous `$group` built on it ([`group`]), whose merges of a batch into its groups are
//! done row by row where they can be ([`row_merge`]).

pub mod checkpoint;
pub mod group;
pub mod keyed;
pub mod row_merge;
