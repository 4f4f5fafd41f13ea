//! The integration tests: one binary, one real PostgreSQL per test run, one database per test.

mod support;

mod adopt;
mod advisor;
mod ai;
mod api;
mod backup;
mod bots;
mod cli;
mod files;
mod fuzz;
mod identity;
mod local;
mod migrate;
mod openai;
mod plans;
mod provision;
mod realtime;
mod rls;
mod schema;
mod search;
mod seed;
mod slack;
mod summarize;
mod tidy;
mod users;
