//! The rule engine: rule sets ([`dsl::rule_set`](crate::dsl::rule_set)) judged column-wise
//! by the `$rules` stage ([`plan::stages::rules`](crate::plan::stages::rules)), and around
//! it what decisioning needs — lints before anything runs, a directory registry of
//! immutable, versioned rule sets, the library's API with custom actions and hooks, and SQL's
//! `rules(...)` table function.

pub mod engine;
pub mod lint;
pub mod registry;
pub mod sql;

pub use engine::{Action, Decision, Hooks, Options, RuleEngine};
pub use lint::{Lint, Severity, lint};
pub use registry::Registry;
