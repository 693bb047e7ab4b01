//! `fluxion serve`, the control plane for many pipelines. Being built: so far the event log
//! every change is recorded in and the projections of it ([`events`]), and the API keys with
//! their roles ([`keys`]); the REST API, health and the dashboard come on top.

pub mod events;
pub mod keys;
