//! gatehouse: a terminal approval console for AI-agent tool calls.

pub mod config;
pub mod domain;
pub mod frontend;
pub mod policy;
pub mod tui;
