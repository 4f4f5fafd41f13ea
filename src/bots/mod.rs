//! Bots: definitions ([`spec`]) and the runtime that runs them ([`runtime`]).

pub mod digest;
pub mod metrics;
pub mod reply;
pub mod runtime;
pub mod schedule;
pub mod spec;
pub mod trigger;
pub mod users;
