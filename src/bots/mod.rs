//! Bots: definitions ([`spec`]) and the runtime that runs them ([`runtime`]).

pub mod runtime;
pub mod spec;
