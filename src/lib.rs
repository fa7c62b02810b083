//! gatehouse: a terminal approval console for AI-agent tool calls.

pub mod agent;
pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod domain;
pub mod frontend;
pub mod hook;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod policy;
pub mod preflight;
pub mod runner;
pub mod store;
pub mod text;
pub mod tools;
pub mod tui;
