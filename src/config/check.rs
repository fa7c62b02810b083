//! Semantic checks behind `gatehouse config check`.

use super::{Config, ConfigProblem};

/// Turn a TOML parse/shape error into a problem with a line and key.
pub fn from_toml_error(text: &str, e: &toml::de::Error) -> ConfigProblem {
    let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
    ConfigProblem {
        line,
        key: "toml".into(),
        message: e.message().trim().to_string(),
    }
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

pub fn check(_cfg: &Config, _text: &str) -> Vec<ConfigProblem> {
    Vec::new()
}
