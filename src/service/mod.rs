//! `fluxion serve`, the control plane for many pipelines (being built): the event log every
//! change is recorded in and its projections ([`events`]), API keys with their roles
//! ([`keys`]), and the HTTP server with the `/v1` API and health ([`server`]).

pub mod events;
pub mod keys;
pub mod server;
