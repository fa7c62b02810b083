//! Stage 1 of `config check`: TOML syntax, then the shape of the document (unknown keys, wrong
//! types, bad durations), with the key paths and lines every problem is reported at.
//!
//! A shape error stops serde at the first one, so on failure every top-level section and every
//! `[[array]]` entry is deserialized on its own: that finds the other shape errors *and* yields
//! a partial config of the entries that did parse, so the semantic checks run in the same pass
//! ("every problem at once", not two and then five more).

use super::{Config, ConfigProblem, ModelConfig, ToolConfig, ToolTable};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// Keys allowed at the top level of the file.
pub(super) const TOP_LEVEL_KEYS: &[&str] = &[
    "server",
    "identities",
    "models",
    "agents",
    "tools",
    "mcp_servers",
    "policies",
    "escalation",
    "notify",
    "ui",
    "store",
];

// ---------------------------------------------------------------------------------------------
// Key paths

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// A dotted TOML path such as `policies[0].rules[2].when`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct KeyPath(pub(super) Vec<Seg>);

impl KeyPath {
    pub(super) fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub(super) fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    pub(super) fn idx(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("toml");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(&quote_key(k))?;
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A key as it would be written in TOML: bare when it can be, quoted otherwise.
fn quote_key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

// ---------------------------------------------------------------------------------------------
// Lines

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Finds the line of a key path in the text, falling back to the nearest enclosing table that
/// exists (so "missing `url`" points at the `[[tools]]` header that lacks it).
pub(super) struct Locator<'t> {
    text: &'t str,
    root: Spanned<DeValue<'t>>,
}

impl<'t> Locator<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        let (table, _errors) = DeTable::parse_recoverable(text);
        let span = table.span();
        Locator {
            text,
            root: Spanned::new(span, DeValue::Table(table.into_inner())),
        }
    }

    pub(super) fn line(&self, path: &KeyPath) -> usize {
        let mut node = &self.root;
        let mut start = node.span().start;
        for seg in &path.0 {
            let next = match seg {
                Seg::Key(k) => node.get_ref().get(k.as_str()),
                Seg::Index(i) => node.get_ref().get(*i),
            };
            match next {
                Some(n) => {
                    node = n;
                    start = n.span().start;
                }
                None => break,
            }
        }
        line_of(self.text, start)
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 1: syntax and shape

/// A config that parsed, maybe only in part, with what stage 1 found wrong.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Every section and entry that parsed; broken entries are left out.
    pub config: Config,
    /// Shape problems (empty when the whole file parsed).
    pub problems: Vec<ConfigProblem>,
    /// For an `[[array]]` with broken entries: the file's index of each kept entry, so later
    /// problems name the entry as the file numbers it.
    pub(super) origin: HashMap<String, Vec<usize>>,
    /// Every `[[tools]]` table that parsed as written, kind mistakes and all: the checker
    /// reports those key by key; `config.tools` holds the ones that mean a tool.
    pub tool_tables: Vec<ToolTable>,
    /// `name` of every broken entry (and key of every broken `[models.NAME]`): references to
    /// them are not reported as unknown, their own problem is already said.
    pub(super) broken_names: BTreeSet<String>,
}

/// Parse config text, reporting every syntax error (`Err`: nothing more can be checked), or
/// else every shape error that can be found beside the partial config that did parse.
pub fn parse_config(text: &str) -> Result<Parsed, Vec<ConfigProblem>> {
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(syntax_problems(text, &errors));
    }
    match serde_path_to_error::deserialize::<_, Config>(toml::Deserializer::from(root)) {
        Ok(config) => Ok(Parsed {
            tool_tables: tool_tables(text),
            config,
            ..Parsed::default()
        }),
        Err(first) => {
            let mut parsed = sections(text);
            // The per-section pass finds at least the first error, unless it was a tool whose
            // kind and keys disagree: the checker reports that one at its keys.
            let tool_unread = parsed.config.tools.len() != parsed.tool_tables.len();
            if parsed.problems.is_empty() && !tool_unread {
                parsed
                    .problems
                    .push(from_path_error(text, &KeyPath::root(), &first));
            }
            Ok(parsed)
        }
    }
}

/// Syntax errors, in file order, at most one per line (later ones on a line are usually
/// consequences of the first).
fn syntax_problems(text: &str, errors: &[toml::de::Error]) -> Vec<ConfigProblem> {
    let mut sorted: Vec<&toml::de::Error> = errors.iter().collect();
    sorted.sort_by_key(|e| e.span().map_or(0, |s| s.start));
    let mut problems: Vec<ConfigProblem> = Vec::new();
    for e in sorted {
        let p = from_toml_error(text, e);
        if problems.last().is_some_and(|last| last.line == p.line) {
            continue;
        }
        problems.push(p);
    }
    problems
}

/// Turn a TOML parse/shape error into a problem with a line; the key is `toml` (a syntax error
/// has no reliable key path). The message is a single line.
pub fn from_toml_error(text: &str, e: &toml::de::Error) -> ConfigProblem {
    let span = e.span();
    let line = span.clone().map(|s| line_of(text, s.start)).unwrap_or(0);
    let (mut message, _) = clean_message(e.message());
    if message == "duplicate key"
        && let Some(s) = span
        && let Some(name) = text.get(s.start..s.end)
        && !name.trim().is_empty()
    {
        message = format!("duplicate key {:?}", name.trim().trim_matches(['"', '\'']));
    }
    ConfigProblem {
        line,
        key: "toml".into(),
        message,
    }
}

/// A shape error found by deserializing the value at `prefix`, with its full key path.
fn from_path_error(
    text: &str,
    prefix: &KeyPath,
    e: &serde_path_to_error::Error<toml::de::Error>,
) -> ConfigProblem {
    let mut path = prefix.clone();
    for seg in e.path() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => path = path.idx(*index),
            serde_path_to_error::Segment::Map { key } => {
                // `Spanned<T>` deserializes through private marker keys; they are not TOML keys.
                if !key.starts_with("$__serde_spanned_private") {
                    path = path.key(key);
                }
            }
            serde_path_to_error::Segment::Enum { variant } => path = path.key(variant),
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    let inner = e.inner();
    let (message, missing) = clean_message(inner.message());
    let line = match inner.span() {
        Some(s) => line_of(text, s.start),
        None => Locator::new(text).line(&path),
    };
    if let Some(field) = missing {
        path = path.key(&field);
    }
    ConfigProblem {
        line,
        key: path.to_string(),
        message,
    }
}

/// Deserialize every top-level section, and every entry of every array section, on its own:
/// the first shape error of each, and the parts that parsed.
fn sections(text: &str) -> Parsed {
    let (root, _) = DeTable::parse_recoverable(text);
    let mut out = Parsed::default();
    for (key, value) in root.into_inner() {
        let name: &str = key.get_ref();
        let path = KeyPath::root().key(name);
        let value = value.clone();
        let o = &mut out;
        match name {
            "server" => set(
                &mut o.config.server,
                one(text, value, &path, &mut o.problems),
            ),
            "notify" => set(
                &mut o.config.notify,
                one(text, value, &path, &mut o.problems),
            ),
            "ui" => set(&mut o.config.ui, one(text, value, &path, &mut o.problems)),
            "store" => set(
                &mut o.config.store,
                one(text, value, &path, &mut o.problems),
            ),
            "identities" => o.config.identities = each(text, value, &path, o),
            "agents" => o.config.agents = each(text, value, &path, o),
            "tools" => {
                // Parsed as written, then read for meaning: a kind mistake is reported by the
                // checker at its key, not here as a shape error that hides the rest.
                o.tool_tables = each(text, value, &path, o);
                o.config.tools = o
                    .tool_tables
                    .iter()
                    .filter_map(|t| ToolConfig::try_from(t.clone()).ok())
                    .collect();
            }
            "mcp_servers" => o.config.mcp_servers = each(text, value, &path, o),
            "policies" => o.config.policies = each(text, value, &path, o),
            "escalation" => o.config.escalation = each(text, value, &path, o),
            "models" => {
                if let DeValue::Table(models) = value.get_ref() {
                    for (model, v) in models.iter() {
                        let p = path.key(model.get_ref());
                        match one::<ModelConfig>(text, v.clone(), &p, &mut out.problems) {
                            Some(m) => {
                                out.config.models.insert(model.get_ref().to_string(), m);
                            }
                            None => {
                                out.broken_names.insert(model.get_ref().to_string());
                            }
                        }
                    }
                } else {
                    one::<BTreeMap<String, ModelConfig>>(text, value, &path, &mut out.problems);
                }
            }
            other => out.problems.push(ConfigProblem {
                line: line_of(text, key.span().start),
                key: path.to_string(),
                message: unknown_key_message(other, TOP_LEVEL_KEYS),
            }),
        }
    }
    out
}

/// The `[[tools]]` tables of a file that parsed whole.
fn tool_tables(text: &str) -> Vec<ToolTable> {
    let (root, _) = DeTable::parse_recoverable(text);
    let Some(tools) = root.get_ref().get("tools") else {
        return Vec::new();
    };
    let DeValue::Array(items) = tools.get_ref() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|t| ToolTable::deserialize(ValueDeserializer::from(t.clone())).ok())
        .collect()
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn one<T: DeserializeOwned>(
    text: &str,
    value: Spanned<DeValue<'_>>,
    path: &KeyPath,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(from_path_error(text, path, &e));
            None
        }
    }
}

/// The entries of `[[path]]` that parse; the others are reported, their names remembered, and
/// the kept entries' file indexes recorded when any was left out.
fn each<T: DeserializeOwned>(
    text: &str,
    value: Spanned<DeValue<'_>>,
    path: &KeyPath,
    out: &mut Parsed,
) -> Vec<T> {
    let DeValue::Array(items) = value.get_ref() else {
        return one::<Vec<T>>(text, value, path, &mut out.problems).unwrap_or_default();
    };
    let mut kept = Vec::with_capacity(items.len());
    let mut origin = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match one::<T>(text, item.clone(), &path.idx(i), &mut out.problems) {
            Some(v) => {
                kept.push(v);
                origin.push(i);
            }
            None => {
                if let Some(name) = item
                    .get_ref()
                    .get("name")
                    .and_then(|n| n.get_ref().as_str())
                {
                    out.broken_names.insert(name.to_string());
                }
            }
        }
    }
    if origin.len() != items.len() {
        out.origin.insert(path.to_string(), origin);
    }
    kept
}

pub(super) fn unknown_key_message(name: &str, allowed: &[&str]) -> String {
    if allowed.is_empty() {
        format!("unknown key {name:?}")
    } else {
        format!("unknown key {name:?} (allowed: {})", allowed.join(", "))
    }
}

/// Names quoted in backticks, in order: "expected one of `a`, `b`" → [a, b].
fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// Rewrite a toml/serde message into a short single line in gatehouse's style. Returns the
/// message and, for a missing field, the field's name (to be appended to the key path).
pub(super) fn clean_message(raw: &str) -> (String, Option<String>) {
    let first = raw.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let first = first.trim();

    if let Some(rest) = first.strip_prefix("unknown field `") {
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        return (unknown_key_message(name, &backticked(tail)), None);
    }
    if let Some(rest) = first.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        return (
            format!("missing required key {name:?}"),
            Some(name.to_string()),
        );
    }
    if let Some(rest) = first.strip_prefix("unknown variant `") {
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        return (
            format!(
                "unknown value {name:?} (allowed: {})",
                backticked(tail).join(", ")
            ),
            None,
        );
    }
    if first.starts_with("data did not match any variant of untagged enum NeedsApproval") {
        return ("expected true, false or a policy name".into(), None);
    }
    for prefix in ["invalid type: ", "invalid value: ", "invalid length: "] {
        if let Some(rest) = first.strip_prefix(prefix)
            && let Some((found, expected)) = rest.rsplit_once(", expected ")
        {
            return (
                format!(
                    "expected {}, found {}",
                    describe_expected(expected),
                    describe_found(found)
                ),
                None,
            );
        }
    }
    (first.to_string(), None)
}

fn describe_expected(expected: &str) -> String {
    match expected {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a non-negative integer".into(),
        "isize" | "i64" | "i32" | "i16" | "i8" => "an integer".into(),
        "a duration" => "a duration like \"90s\" or \"15m\"".into(),
        "a sequence" => "an array".into(),
        // An internally tagged enum's tag (`kind = …`).
        "variant identifier" => "a string naming the kind".into(),
        "a map" => "a table".into(),
        e if e.starts_with("struct ") || e.starts_with("a map") => "a table".into(),
        e if e.starts_with("a sequence") => "an array".into(),
        e => e.to_string(),
    }
}

fn describe_found(found: &str) -> String {
    match found {
        "map" => "a table".into(),
        "sequence" => "an array".into(),
        f => f.replace('`', ""),
    }
}

/// Problems in file order (stable within a line), exact duplicates removed.
pub(super) fn finish(mut problems: Vec<ConfigProblem>) -> Vec<ConfigProblem> {
    problems.sort_by_key(|p| p.line);
    let mut out: Vec<ConfigProblem> = Vec::with_capacity(problems.len());
    for p in problems {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// The line of a dotted key such as `ui.keys.approve` or `tools[3].command[0]` (the nearest
/// enclosing table that exists), for problems found outside this module.
pub fn line_of_key(text: &str, key: &str) -> usize {
    let mut path = KeyPath::root();
    for part in key.split('.') {
        let (name, indexes) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            path = path.key(name.trim_matches('"'));
        }
        for i in indexes.split('[') {
            if let Ok(n) = i.trim_end_matches(']').parse::<usize>() {
                path = path.idx(n);
            }
        }
    }
    Locator::new(text).line(&path)
}

/// Renumber a key that names entry `i` of a partially parsed `[[table]]` (`policies[1].…`) as
/// the file numbers it.
pub fn renumber(parsed: &Parsed, key: &str) -> String {
    let Some((table, rest)) = key.split_once('[') else {
        return key.to_string();
    };
    let Some((i, tail)) = rest.split_once(']') else {
        return key.to_string();
    };
    match (parsed.origin.get(table), i.parse::<usize>()) {
        (Some(origin), Ok(i)) => match origin.get(i) {
            Some(n) => format!("{table}[{n}]{tail}"),
            None => key.to_string(),
        },
        _ => key.to_string(),
    }
}
