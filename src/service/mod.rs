//! `fluxion serve`, the control plane for many pipelines. Being built: so far the event log
//! every change is recorded in, and the projections of it ([`events`]); the REST API, auth,
//! health and the dashboard come on top.

pub mod events;
