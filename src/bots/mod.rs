//! Bots: definitions ([`spec`]) and the runtime that runs them ([`runtime`]).

pub mod metrics;
pub mod reply;
pub mod runtime;
pub mod schedule;
pub mod spec;
