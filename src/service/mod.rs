//! `fluxion serve`, the control plane for many pipelines.
//!
//! The flow of a request: [`observe`] gives it an id and a span and counts it, [`auth`]
//! finds its caller (API key or JWT) and applies the caller's rate limit, a handler of
//! [`api`] checks the role and acts through [`state`]: a command appends an [`events`] event
//! to the [`store`] and then starts or stops pipelines; a read uses the projection folded
//! from the log. [`server`] starts and stops it all with the [`config`] settings;
//! [`dashboard`] is the web page over the same API.

pub mod api;
pub mod auth;
pub mod config;
pub mod dashboard;
pub mod events;
pub mod keys;
pub mod observe;
pub mod server;
pub mod state;
pub mod store;
