//! One file per stage: each turns the plan built so far into the plan after the stage.

pub mod combine;
pub mod count;
pub mod densify;
pub mod group;
pub mod limit;
pub mod match_stage;
pub mod project;
pub mod reshape;
pub mod rules;
pub mod set_window_fields;
pub mod sort;
pub mod unwind;
