//! chatctl: the operations toolkit and headless bot runtime of a Slack-like chat application
//! built on Supabase.
//!
//! The binary (`src/bin/chatctl.rs`) only wires; [`commands`] parses and renders; every
//! module below it does the work and is usable without the CLI (the tests call it directly).

pub mod ai;
pub mod api;
pub mod audit;
pub mod backup;
pub mod bots;
pub mod build_info;
pub mod chat;
pub mod commands;
pub mod config;
pub mod db;
pub mod doctor;
pub mod error;
pub mod files;
pub mod fuzz;
pub mod logging;
pub mod output;
pub mod owner_only;
pub mod progress;
pub mod prom;
pub mod provision;
pub mod realtime;
pub mod rejects;
pub mod report;
pub mod search;
pub mod slack;
pub mod stack;
pub mod urls;
pub mod users;
pub mod yaml;

pub use error::Result;
