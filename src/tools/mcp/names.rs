//! Names under which MCP tools are offered to a model.
//!
//! Two servers may both have a `search` tool, and model APIs (OpenAI's function calling) only
//! accept names matching `^[a-zA-Z0-9_-]{1,64}$`. So a tool is exposed as
//! `SERVER__TOOL`, sanitised, and made unique and short enough with a hash when needed.

use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Longest function name model APIs accept.
pub const MAX_EXPOSED_NAME: usize = 64;
/// Between the server's and the tool's name.
const SEPARATOR: &str = "__";
/// Hex digits of the hash appended to a name that had to change.
const HASH_DIGITS: usize = 8;

/// The name a model sees for `tool` of `server`: `server__tool` when both are already valid
/// (`filesystem__write_file`). Otherwise every invalid character becomes `_` and a short hash
/// of the original pair is appended, so that `a.b` and `a_b` stay distinct, and the name is
/// truncated to fit [`MAX_EXPOSED_NAME`] characters.
pub fn exposed_name(server: &str, tool: &str) -> String {
    let plain = format!("{server}{SEPARATOR}{tool}");
    if plain.len() <= MAX_EXPOSED_NAME && plain.chars().all(is_valid) {
        return plain;
    }
    hashed_name(server, tool)
}

/// Always sanitised and hashed: the fallback when the plain name is taken.
fn hashed_name(server: &str, tool: &str) -> String {
    let sanitised: String = format!("{server}{SEPARATOR}{tool}")
        .chars()
        .map(|c| if is_valid(c) { c } else { '_' })
        .collect();
    // The NUL keeps ("a", "b__c") and ("a__b", "c") apart.
    let digest = Sha256::digest(format!("{server}\0{tool}").as_bytes());
    let hash = &hex::encode(digest)[..HASH_DIGITS];
    // Sanitised text is ASCII, so byte truncation is character truncation.
    let keep = sanitised.len().min(MAX_EXPOSED_NAME - HASH_DIGITS - 1);
    format!("{}_{hash}", &sanitised[..keep])
}

fn is_valid(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Exposed names of a set of server tools, unique, with the way back from a name the model
/// called to the server and tool.
#[derive(Clone, Debug, Default)]
pub struct ExposedNames {
    by_name: HashMap<String, (String, String)>,
}

impl ExposedNames {
    pub fn new() -> Self {
        Self::default()
    }

    /// The exposed name of `tool` of `server`, added if new. [`exposed_name`] unless another
    /// pair already has that name (`a__b` + `c` against `a` + `b__c`), then the hashed form.
    pub fn insert(&mut self, server: &str, tool: &str) -> String {
        let pair = (server.to_owned(), tool.to_owned());
        for name in [exposed_name(server, tool), hashed_name(server, tool)] {
            match self.by_name.get(&name) {
                Some(existing) if *existing == pair => return name,
                Some(_) => continue,
                None => {
                    self.by_name.insert(name.clone(), pair);
                    return name;
                }
            }
        }
        // Two pairs whose 32-bit hashes and sanitised names both collide: number this one.
        let base = hashed_name(server, tool);
        let base = &base[..base.len().min(MAX_EXPOSED_NAME - 4)];
        let mut n = 2u32;
        loop {
            let name = format!("{base}_{n}");
            match self.by_name.get(&name) {
                Some(existing) if *existing == pair => return name,
                Some(_) => n += 1,
                None => {
                    self.by_name.insert(name.clone(), pair);
                    return name;
                }
            }
        }
    }

    /// The `(server, tool)` behind an exposed name.
    pub fn resolve(&self, exposed: &str) -> Option<(&str, &str)> {
        self.by_name
            .get(exposed)
            .map(|(s, t)| (s.as_str(), t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        !name.is_empty() && name.len() <= MAX_EXPOSED_NAME && name.chars().all(is_valid)
    }

    #[test]
    fn plain_names_are_kept() {
        assert_eq!(
            exposed_name("filesystem", "write_file"),
            "filesystem__write_file"
        );
    }

    #[test]
    fn invalid_characters_are_replaced_and_hashed() {
        let a = exposed_name("my.server", "get item");
        let b = exposed_name("my_server", "get_item");
        assert!(valid(&a), "{a}");
        assert!(a.starts_with("my_server__get_item_"), "{a}");
        assert_eq!(b, "my_server__get_item");
        assert_ne!(a, b);
        assert!(valid(&exposed_name("δ", "ü")));
    }

    #[test]
    fn long_names_are_truncated_with_a_hash() {
        let long = "x".repeat(100);
        let a = exposed_name(&long, "one");
        let b = exposed_name(&long, "two");
        assert!(valid(&a) && valid(&b));
        assert_eq!(a.len(), MAX_EXPOSED_NAME);
        assert_ne!(a, b);
    }

    #[test]
    fn collisions_get_distinct_names_and_resolve_back() {
        let mut names = ExposedNames::new();
        let first = names.insert("a__b", "c");
        let second = names.insert("a", "b__c");
        assert_eq!(first, "a__b__c");
        assert_ne!(first, second);
        assert!(valid(&second));
        assert_eq!(names.insert("a", "b__c"), second, "stable on re-insert");
        assert_eq!(names.resolve(&first), Some(("a__b", "c")));
        assert_eq!(names.resolve(&second), Some(("a", "b__c")));
        assert_eq!(names.resolve("nope"), None);
    }
}
