//! What happens when something fails: the [`error_policy`] (retries, then fail fast, skip or
//! dead-letter) and the [`dead_letters`] records that carry what failed, why and where.

pub mod dead_letters;
pub mod error_policy;
