//! Parsing diagnostics and semantic checks behind `gatehouse config check`.
//!
//! Two stages, each reporting every problem it finds, each with the line it stands on and the
//! dotted TOML key (`identities[1].token_env`, `policies[0].rules[2].when`):
//!
//! 1. [`parse_config`]: TOML syntax errors (all of them, one per line), then the shape of the
//!    document (unknown keys, wrong types, bad durations). A shape error stops serde at the first
//!    one, so on failure every top-level section and every `[[array]]` entry is deserialized on
//!    its own to find the others.
//! 2. [`check`]: what serde cannot see — references between sections, duplicates, values out of
//!    range, policy conditions (through [`crate::policy::PolicySet::compile`]).
//!
//! Lines come from a spanned re-parse of the text ([`Locator`]), so config types need not carry
//! `Spanned` wrappers for the sake of diagnostics. A problem about a missing key points at the
//! table that lacks it.

use super::{
    AgentConfig, Config, ConfigProblem, EscalationTierConfig, IdentityConfig, McpServerConfig,
    ModelConfig, NeedsApproval, NotifyConfig, PolicyConfig, RuleAction, ServerConfig, ToolConfig,
    UiConfig,
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// Roles an identity may hold (DESIGN §4).
pub const ROLES: &[&str] = &["agent", "reviewer", "admin"];
/// Model kinds (DESIGN §7).
pub const MODEL_KINDS: &[&str] = &["openai", "scripted"];
/// Tool kinds (DESIGN §7).
pub const TOOL_KINDS: &[&str] = &["http", "command", "builtin"];
/// Tools compiled into gatehouse (the demo's, from the seed's CustomerServiceAgent). An agent may
/// list them without a `[[tools]]` entry; a `kind = "builtin"` tool must name one of them (by its
/// `builtin` key, else by its `name`). Keep in sync with the builtin tool registry.
pub const BUILTIN_TOOLS: &[&str] = &["get_order_details", "issue_refund", "delete_user_account"];
/// Themes shipped in `themes/` (DESIGN §6); any other theme is a path to a `.toml` file.
pub const THEMES: &[&str] = &["default", "light", "high-contrast", "mono"];
/// The security contract (DESIGN §4a) requires a connection cap of at least this.
pub const MIN_MAX_CONNECTIONS: usize = 1024;

/// Keys allowed at the top level of the file.
const TOP_LEVEL_KEYS: &[&str] = &[
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
];

// ---------------------------------------------------------------------------------------------
// Key paths

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A dotted TOML path such as `policies[0].rules[2].when`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct KeyPath(Vec<Seg>);

impl KeyPath {
    fn root() -> Self {
        KeyPath(Vec::new())
    }

    fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    fn idx(&self, i: usize) -> Self {
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
struct Locator<'t> {
    text: &'t str,
    root: Spanned<DeValue<'t>>,
}

impl<'t> Locator<'t> {
    fn new(text: &'t str) -> Self {
        let (table, _errors) = DeTable::parse_recoverable(text);
        let span = table.span();
        Locator {
            text,
            root: Spanned::new(span, DeValue::Table(table.into_inner())),
        }
    }

    fn line(&self, path: &KeyPath) -> usize {
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

/// Parse config text into [`Config`], reporting every syntax error, or else every shape error
/// (unknown key, wrong type, bad duration) that can be found. Semantic checks are not run here.
pub fn parse_config(text: &str) -> Result<Config, Vec<ConfigProblem>> {
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(syntax_problems(text, &errors));
    }
    match serde_path_to_error::deserialize::<_, Config>(toml::Deserializer::from(root)) {
        Ok(cfg) => Ok(cfg),
        Err(first) => {
            let mut problems = shape_problems(text);
            if problems.is_empty() {
                // Should not happen: the per-section pass finds at least the first error.
                problems.push(from_path_error(text, &KeyPath::root(), &first));
            }
            Err(finish(problems))
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

/// Deserialize every top-level section, and every entry of every array section, on its own,
/// collecting the first shape error of each.
fn shape_problems(text: &str) -> Vec<ConfigProblem> {
    let (root, _) = DeTable::parse_recoverable(text);
    let mut problems = Vec::new();
    for (key, value) in root.into_inner() {
        let name: &str = key.get_ref();
        let path = KeyPath::root().key(name);
        let value = value.clone();
        match name {
            "server" => one::<ServerConfig>(text, value, &path, &mut problems),
            "notify" => one::<NotifyConfig>(text, value, &path, &mut problems),
            "ui" => one::<UiConfig>(text, value, &path, &mut problems),
            "identities" => each::<IdentityConfig>(text, value, &path, &mut problems),
            "agents" => each::<AgentConfig>(text, value, &path, &mut problems),
            "tools" => each::<ToolConfig>(text, value, &path, &mut problems),
            "mcp_servers" => each::<McpServerConfig>(text, value, &path, &mut problems),
            "policies" => each::<PolicyConfig>(text, value, &path, &mut problems),
            "escalation" => each::<EscalationTierConfig>(text, value, &path, &mut problems),
            "models" => {
                if let DeValue::Table(models) = value.get_ref() {
                    for (model, v) in models.iter() {
                        let p = path.key(model.get_ref());
                        one::<ModelConfig>(text, v.clone(), &p, &mut problems);
                    }
                } else {
                    one::<BTreeMap<String, ModelConfig>>(text, value, &path, &mut problems);
                }
            }
            other => problems.push(ConfigProblem {
                line: line_of(text, key.span().start),
                key: path.to_string(),
                message: unknown_key_message(other, TOP_LEVEL_KEYS),
            }),
        }
    }
    problems
}

fn one<T: DeserializeOwned>(
    text: &str,
    value: Spanned<DeValue<'_>>,
    path: &KeyPath,
    problems: &mut Vec<ConfigProblem>,
) {
    if let Err(e) = serde_path_to_error::deserialize::<_, T>(ValueDeserializer::from(value)) {
        problems.push(from_path_error(text, path, &e));
    }
}

fn each<T: DeserializeOwned>(
    text: &str,
    value: Spanned<DeValue<'_>>,
    path: &KeyPath,
    problems: &mut Vec<ConfigProblem>,
) {
    if let DeValue::Array(items) = value.get_ref() {
        for (i, item) in items.iter().enumerate() {
            one::<T>(text, item.clone(), &path.idx(i), problems);
        }
    } else {
        one::<Vec<T>>(text, value, path, problems);
    }
}

fn unknown_key_message(name: &str, allowed: &[&str]) -> String {
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
fn clean_message(raw: &str) -> (String, Option<String>) {
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
fn finish(mut problems: Vec<ConfigProblem>) -> Vec<ConfigProblem> {
    problems.sort_by_key(|p| p.line);
    let mut out: Vec<ConfigProblem> = Vec::with_capacity(problems.len());
    for p in problems {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Stage 2: semantic checks

/// Everything wrong with a config that parsed, in file order. Empty means the config is good.
pub fn check(cfg: &Config, text: &str) -> Vec<ConfigProblem> {
    let mut c = Checker {
        loc: Locator::new(text),
        problems: Vec::new(),
    };
    c.server(&cfg.server);
    c.identities(&cfg.identities);
    c.models(&cfg.models);
    c.policies(&cfg.policies);
    c.tools(cfg);
    c.mcp_servers(cfg);
    c.agents(cfg);
    c.escalation(&cfg.escalation);
    c.notify(&cfg.notify);
    c.ui(&cfg.ui);

    // CEL conditions are compiled by the policy module, which reports its own problems (with
    // key `policies[i].rules[j].when`). A key already reported here is kept once.
    if let Err(policy_problems) = crate::policy::PolicySet::compile(&cfg.policies, text) {
        for p in policy_problems {
            if !c.problems.iter().any(|q| q.key == p.key) {
                c.problems.push(p);
            }
        }
    }
    finish(c.problems)
}

struct Checker<'t> {
    loc: Locator<'t>,
    problems: Vec<ConfigProblem>,
}

/// "defined: a, b" or "no [[tools]] defined", for messages about unknown names.
fn defined(names: &[&str], table: &str) -> String {
    let mut unique: Vec<&str> = Vec::with_capacity(names.len());
    for n in names {
        if !n.trim().is_empty() && !unique.contains(n) {
            unique.push(n);
        }
    }
    if unique.is_empty() {
        format!("no {table} defined")
    } else {
        format!("defined: {}", unique.join(", "))
    }
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

/// Tool names go to the model as function names: OpenAI allows `^[a-zA-Z0-9_-]{1,64}$`.
fn valid_tool_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The SHA-256 (lowercase hex) a token stands for, so that a plain token and its `sha256:`
/// form compare equal. `None` for an empty or malformed token (reported separately).
fn token_digest(token: &str) -> Option<String> {
    if let Some(hex_part) = token.strip_prefix("sha256:") {
        valid_sha256_hex(hex_part).then(|| hex_part.to_ascii_lowercase())
    } else if token.is_empty() {
        None
    } else {
        Some(hex::encode(Sha256::digest(token.as_bytes())))
    }
}

/// What is wrong with the name of an environment variable (`*_env` keys), if anything.
fn env_var_problem(var: &str) -> Option<String> {
    if var.is_empty() {
        Some("empty environment variable name".into())
    } else if var.contains(['=', '\0']) || var.contains(char::is_whitespace) {
        Some(format!("invalid environment variable name {var:?}"))
    } else {
        None
    }
}

fn valid_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

impl Checker<'_> {
    fn report(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            line: self.loc.line(path),
            key: path.to_string(),
            message: message.into(),
        });
    }

    /// Report every name seen before (`what` is e.g. "identity name"), and empty names.
    fn unique<'a>(&mut self, what: &str, items: impl IntoIterator<Item = (KeyPath, &'a str)>) {
        let mut seen: HashMap<&'a str, usize> = HashMap::new();
        for (path, name) in items {
            if name.trim().is_empty() {
                self.report(&path, format!("empty {what}"));
                continue;
            }
            let line = self.loc.line(&path);
            match seen.get(name) {
                Some(first) => self.report(
                    &path,
                    format!("duplicate {what} {name:?} (first on line {first})"),
                ),
                None => {
                    seen.insert(name, line);
                }
            }
        }
    }

    fn positive(&mut self, path: &KeyPath, d: Option<Duration>) {
        if d.is_some_and(|d| d.is_zero()) {
            let name = match path.0.last() {
                Some(Seg::Key(k)) => k.clone(),
                _ => "duration".into(),
            };
            self.report(path, format!("{name} must be greater than zero"));
        }
    }

    fn server(&mut self, s: &ServerConfig) {
        let p = KeyPath::root().key("server");
        if s.listen.parse::<std::net::SocketAddr>().is_err() {
            self.report(
                &p.key("listen"),
                format!(
                    "invalid listen address {:?} (expected IP:PORT, e.g. \"127.0.0.1:7878\")",
                    s.listen
                ),
            );
        }
        if s.max_connections < MIN_MAX_CONNECTIONS {
            self.report(
                &p.key("max_connections"),
                format!(
                    "max_connections must be at least {MIN_MAX_CONNECTIONS} (got {})",
                    s.max_connections
                ),
            );
        }
        if s.max_body_bytes == 0 {
            self.report(
                &p.key("max_body_bytes"),
                "max_body_bytes must be greater than zero",
            );
        }
        self.positive(&p.key("default_timeout"), Some(s.default_timeout));
        self.positive(&p.key("header_timeout"), Some(s.header_timeout));
        self.positive(&p.key("body_timeout"), Some(s.body_timeout));
        self.positive(&p.key("grant_ttl"), Some(s.grant_ttl));
        for (i, h) in s.allowed_hosts.iter().enumerate() {
            if h.trim().is_empty() {
                self.report(&p.key("allowed_hosts").idx(i), "empty host name");
            }
        }
        for (i, o) in s.allowed_origins.iter().enumerate() {
            if !is_http_url(o) {
                self.report(
                    &p.key("allowed_origins").idx(i),
                    format!("invalid origin {o:?} (expected e.g. \"https://console.example\")"),
                );
            }
        }
    }

    fn identities(&mut self, ids: &[IdentityConfig]) {
        let base = KeyPath::root().key("identities");
        self.unique(
            "identity name",
            ids.iter()
                .enumerate()
                .map(|(i, id)| (base.idx(i).key("name"), id.name.get_ref().as_str())),
        );

        // digest → (identity name, line), to find two identities sharing a token.
        let mut tokens: HashMap<String, (&str, usize)> = HashMap::new();
        let mut token_envs: HashMap<&str, (&str, usize)> = HashMap::new();
        let mut os_users: HashMap<&str, (&str, usize)> = HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            let p = base.idx(i);
            let name = id.name.get_ref().as_str();

            if id.roles.is_empty() {
                self.report(
                    &p.key("roles"),
                    format!("no roles (allowed: {})", ROLES.join(", ")),
                );
            }
            for (j, role) in id.roles.iter().enumerate() {
                let role = role.get_ref();
                if !ROLES.contains(&role.as_str()) {
                    self.report(
                        &p.key("roles").idx(j),
                        format!("unknown role {role:?} (allowed: {})", ROLES.join(", ")),
                    );
                }
            }

            match (&id.token, &id.token_env) {
                (None, None) => {
                    self.report(&p.key("token"), "missing token or token_env (set one)")
                }
                (Some(_), Some(_)) => self.report(
                    &p.key("token_env"),
                    "token and token_env are both set (set only one)",
                ),
                _ => {}
            }
            if let Some(token) = &id.token {
                let tp = p.key("token");
                let token = token.get_ref().as_str();
                if token.is_empty() {
                    self.report(&tp, "empty token");
                } else if let Some(hex_part) = token.strip_prefix("sha256:")
                    && !valid_sha256_hex(hex_part)
                {
                    self.report(
                        &tp,
                        "a hashed token must be \"sha256:\" followed by 64 hex digits",
                    );
                }
                if let Some(digest) = token_digest(token) {
                    let line = self.loc.line(&tp);
                    match tokens.get(&digest) {
                        Some((other, first)) => self.report(
                            &tp,
                            format!("same token as identity {other:?} (line {first})"),
                        ),
                        None => {
                            tokens.insert(digest, (name, line));
                        }
                    }
                }
            }
            if let Some(var) = &id.token_env {
                let tp = p.key("token_env");
                let var = var.get_ref().as_str();
                if let Some(problem) = env_var_problem(var) {
                    self.report(&tp, problem);
                } else {
                    let line = self.loc.line(&tp);
                    match token_envs.get(var) {
                        Some((other, first)) => self.report(
                            &tp,
                            format!("same token_env as identity {other:?} (line {first})"),
                        ),
                        None => {
                            token_envs.insert(var, (name, line));
                        }
                    }
                }
            }
            for (key, claims) in [("agents", &id.agents), ("servers", &id.servers)] {
                let mut seen: HashMap<&str, usize> = HashMap::new();
                for (j, claim) in claims.iter().enumerate() {
                    let cp = p.key(key).idx(j);
                    let claim = claim.get_ref().as_str();
                    if claim.trim().is_empty() {
                        let what = if key == "agents" { "agent" } else { "server" };
                        self.report(
                            &cp,
                            format!("empty {what} name (list names this identity may claim, or \"*\" for any)"),
                        );
                        continue;
                    }
                    if seen.insert(claim, j).is_some() {
                        let what = if key == "agents" { "agent" } else { "server" };
                        self.report(&cp, format!("{what} {claim:?} is listed twice"));
                    }
                }
            }
            if let Some(user) = &id.os_user {
                let up = p.key("os_user");
                if user.trim().is_empty() {
                    self.report(&up, "empty os_user");
                } else {
                    let line = self.loc.line(&up);
                    match os_users.get(user.as_str()) {
                        Some((other, first)) => self.report(
                            &up,
                            format!("os_user {user:?} already belongs to identity {other:?} (line {first})"),
                        ),
                        None => {
                            os_users.insert(user, (name, line));
                        }
                    }
                }
            }
        }
    }

    fn models(&mut self, models: &BTreeMap<String, ModelConfig>) {
        let base = KeyPath::root().key("models");
        for (name, m) in models {
            let p = base.key(name);
            let kind = m.kind.get_ref().as_str();
            match kind {
                "openai" => {
                    match m.base_url.as_deref() {
                        None | Some("") => self.report(
                            &p.key("base_url"),
                            "missing base_url (required for kind \"openai\")",
                        ),
                        Some(url) if !is_http_url(url) => self.report(
                            &p.key("base_url"),
                            format!(
                                "invalid base_url {url:?} (expected an http:// or https:// URL)"
                            ),
                        ),
                        Some(_) => {}
                    }
                    if m.model.as_deref().is_none_or(|s| s.trim().is_empty()) {
                        self.report(
                            &p.key("model"),
                            "missing model (required for kind \"openai\")",
                        );
                    }
                    if m.script.is_some() {
                        self.report(
                            &p.key("script"),
                            "script is only used with kind \"scripted\"",
                        );
                    }
                }
                "scripted" => {
                    if let Some(script) = m.script.as_deref()
                        && !crate::model::SCRIPTS.contains(&script)
                    {
                        self.report(
                            &p.key("script"),
                            format!(
                                "unknown script {script:?} (built in: {})",
                                crate::model::SCRIPTS.join(", ")
                            ),
                        );
                    }
                }
                other => self.report(
                    &p.key("kind"),
                    format!(
                        "unknown model kind {other:?} (allowed: {})",
                        MODEL_KINDS.join(", ")
                    ),
                ),
            }
            if let Some(problem) = m.api_key_env.as_deref().and_then(env_var_problem) {
                self.report(&p.key("api_key_env"), problem);
            }
            self.positive(&p.key("timeout"), m.timeout);
        }
    }

    fn policies(&mut self, policies: &[PolicyConfig]) {
        let base = KeyPath::root().key("policies");
        self.unique(
            "policy name",
            policies
                .iter()
                .enumerate()
                .map(|(i, pol)| (base.idx(i).key("name"), pol.name.get_ref().as_str())),
        );
        for (i, pol) in policies.iter().enumerate() {
            let p = base.idx(i);
            let name = pol.name.get_ref().as_str();
            if name == "always" || name == "never" {
                self.report(
                    &p.key("name"),
                    format!("policy name {name:?} is reserved (it is an approval keyword)"),
                );
            }
            for (j, glob) in pol.tools.iter().enumerate() {
                let glob = glob.get_ref();
                if let Err(e) = globset::Glob::new(glob) {
                    self.report(
                        &p.key("tools").idx(j),
                        format!("invalid glob {glob:?}: {}", e.kind()),
                    );
                }
            }
            // A rule without `when` always decides; rules after it never run.
            let mut catch_all: Option<usize> = None;
            let mut unreachable_reported = false;
            for (j, rule) in pol.rules.iter().enumerate() {
                let rp = p.key("rules").idx(j);
                if let Some(k) = catch_all
                    && !unreachable_reported
                {
                    self.report(
                        &rp,
                        format!(
                            "unreachable rule: rules[{k}] above has no `when` and always decides"
                        ),
                    );
                    unreachable_reported = true;
                }
                let action = *rule.action.get_ref();
                let action_name = match action {
                    RuleAction::Approve => "approve",
                    RuleAction::Deny => "deny",
                    RuleAction::Ask => "ask",
                };
                match rule.max_per_hour {
                    Some(_) if action != RuleAction::Approve => self.report(
                        &rp.key("max_per_hour"),
                        format!(
                            "max_per_hour only applies to action \"approve\" (this rule's action is {action_name:?})"
                        ),
                    ),
                    Some(0) => self.report(
                        &rp.key("max_per_hour"),
                        "max_per_hour must be at least 1 (use action = \"ask\" to never auto-approve)",
                    ),
                    _ => {}
                }
                // queue and timeout matter only when the rule can end up asking.
                let may_ask = action == RuleAction::Ask
                    || (action == RuleAction::Approve && rule.max_per_hour.is_some());
                if !may_ask {
                    if rule.queue.is_some() {
                        self.report(
                            &rp.key("queue"),
                            format!("queue only applies when a rule asks (this rule's action is {action_name:?})"),
                        );
                    }
                    if rule.timeout.is_some() {
                        self.report(
                            &rp.key("timeout"),
                            format!("timeout only applies when a rule asks (this rule's action is {action_name:?})"),
                        );
                    }
                }
                if let Some(q) = &rule.queue
                    && q.trim().is_empty()
                {
                    self.report(&rp.key("queue"), "empty queue name");
                }
                self.positive(&rp.key("timeout"), rule.timeout);
                if catch_all.is_none()
                    && rule.when.is_none()
                    && !(action == RuleAction::Approve && rule.max_per_hour.is_some())
                {
                    catch_all = Some(j);
                }
            }
        }
    }

    fn tools(&mut self, cfg: &Config) {
        let base = KeyPath::root().key("tools");
        self.unique(
            "tool name",
            cfg.tools
                .iter()
                .enumerate()
                .map(|(i, t)| (base.idx(i).key("name"), t.name.get_ref().as_str())),
        );
        let policy_names: Vec<&str> = cfg
            .policies
            .iter()
            .map(|p| p.name.get_ref().as_str())
            .collect();
        for (i, t) in cfg.tools.iter().enumerate() {
            let p = base.idx(i);
            let name = t.name.get_ref().as_str();
            if !name.trim().is_empty() && !valid_tool_name(name) {
                self.report(
                    &p.key("name"),
                    format!("invalid tool name {name:?} (use 1-64 letters, digits, _ or -)"),
                );
            }
            let kind = t.kind.get_ref().as_str();
            match kind {
                "command" => match t.command.as_deref() {
                    None => self.report(
                        &p.key("command"),
                        "missing command (required for kind \"command\")",
                    ),
                    Some([]) => self.report(
                        &p.key("command"),
                        "empty command (expected [\"program\", \"arg\", ...])",
                    ),
                    Some([program, ..]) if program.trim().is_empty() => {
                        self.report(&p.key("command").idx(0), "empty program name")
                    }
                    Some(_) => {}
                },
                "http" => match t.url.as_deref() {
                    None => self.report(&p.key("url"), "missing url (required for kind \"http\")"),
                    Some(url) if !is_http_url(url) => self.report(
                        &p.key("url"),
                        format!("invalid url {url:?} (expected an http:// or https:// URL)"),
                    ),
                    Some(_) => {}
                },
                "builtin" => {
                    let (key, builtin) = match &t.builtin {
                        Some(b) => (p.key("builtin"), b.as_str()),
                        None => (p.key("name"), name),
                    };
                    if !builtin.trim().is_empty() && !BUILTIN_TOOLS.contains(&builtin) {
                        self.report(
                            &key,
                            format!(
                                "unknown builtin tool {builtin:?} (built in: {})",
                                BUILTIN_TOOLS.join(", ")
                            ),
                        );
                    }
                }
                other => self.report(
                    &p.key("kind"),
                    format!(
                        "unknown tool kind {other:?} (allowed: {})",
                        TOOL_KINDS.join(", ")
                    ),
                ),
            }
            if TOOL_KINDS.contains(&kind) {
                for (field, set, wants) in [
                    ("command", t.command.is_some(), "command"),
                    ("url", t.url.is_some(), "http"),
                    ("builtin", t.builtin.is_some(), "builtin"),
                ] {
                    if set && kind != wants {
                        self.report(
                            &p.key(field),
                            format!("{field} is only used with kind {wants:?} (this tool's kind is {kind:?})"),
                        );
                    }
                }
            }
            if let Some(na) = &t.needs_approval
                && let NeedsApproval::Policy(policy) = na.get_ref()
                && !policy_names.contains(&policy.as_str())
            {
                self.report(
                    &p.key("needs_approval"),
                    format!(
                        "unknown policy {policy:?} (expected true, false or a policy name; {})",
                        defined(&policy_names, "[[policies]]")
                    ),
                );
            }
            if let Some(params) = &t.parameters {
                self.parameters(&p.key("parameters"), params);
            }
            self.positive(&p.key("timeout"), t.timeout);
            self.positive(&p.key("approval_timeout"), t.approval_timeout);
        }
    }

    /// `parameters` is the JSON schema of the tool's arguments: an object schema.
    fn parameters(&mut self, p: &KeyPath, params: &toml::Value) {
        let Some(table) = params.as_table() else {
            self.report(
                p,
                "parameters must be a table (a JSON schema with type = \"object\")",
            );
            return;
        };
        match table.get("type").and_then(|t| t.as_str()) {
            Some("object") => {}
            Some(other) => self.report(
                &p.key("type"),
                format!("parameters type must be \"object\" (got {other:?})"),
            ),
            None => self.report(&p.key("type"), "parameters must have type = \"object\""),
        }
        let properties = match table.get("properties") {
            None => None,
            Some(toml::Value::Table(props)) => {
                for (name, schema) in props {
                    if !schema.is_table() {
                        self.report(
                            &p.key("properties").key(name),
                            format!("property {name:?} must be a table (a JSON schema)"),
                        );
                    }
                }
                Some(props)
            }
            Some(_) => {
                self.report(&p.key("properties"), "properties must be a table");
                None
            }
        };
        match table.get("required") {
            None => {}
            Some(toml::Value::Array(required)) => {
                for (j, r) in required.iter().enumerate() {
                    match r.as_str() {
                        None => self.report(
                            &p.key("required").idx(j),
                            "required must list property names (strings)",
                        ),
                        Some(name) => {
                            if properties.is_some_and(|props| !props.contains_key(name)) {
                                self.report(
                                    &p.key("required").idx(j),
                                    format!("required property {name:?} is not in properties"),
                                );
                            }
                        }
                    }
                }
            }
            Some(_) => self.report(
                &p.key("required"),
                "required must be an array of property names",
            ),
        }
    }

    /// `approval = "always" | "never" | "POLICY"`.
    fn approval(&mut self, p: &KeyPath, value: &str, policy_names: &[&str]) {
        if value == "always" || value == "never" || policy_names.contains(&value) {
            return;
        }
        self.report(
            p,
            format!(
                "unknown approval {value:?} (allowed: always, never or a policy name; {})",
                defined(policy_names, "[[policies]]")
            ),
        );
    }

    fn mcp_servers(&mut self, cfg: &Config) {
        let base = KeyPath::root().key("mcp_servers");
        self.unique(
            "mcp server name",
            cfg.mcp_servers
                .iter()
                .enumerate()
                .map(|(i, s)| (base.idx(i).key("name"), s.name.get_ref().as_str())),
        );
        let policy_names: Vec<&str> = cfg
            .policies
            .iter()
            .map(|p| p.name.get_ref().as_str())
            .collect();
        for (i, s) in cfg.mcp_servers.iter().enumerate() {
            let p = base.idx(i);
            match (&s.command, &s.url) {
                (None, None) => self.report(
                    &p.key("command"),
                    "missing command or url (command for a stdio server, url for HTTP)",
                ),
                (Some(_), Some(_)) => {
                    self.report(&p.key("url"), "command and url are both set (set only one)")
                }
                (Some(cmd), None) if cmd.trim().is_empty() => {
                    self.report(&p.key("command"), "empty command")
                }
                (None, Some(url)) if !is_http_url(url) => self.report(
                    &p.key("url"),
                    format!("invalid url {url:?} (expected an http:// or https:// URL)"),
                ),
                _ => {}
            }
            if s.url.is_some() && s.command.is_none() {
                if !s.args.is_empty() {
                    self.report(&p.key("args"), "args are only used with command");
                }
                if !s.env.is_empty() {
                    self.report(&p.key("env"), "env is only used with command");
                }
            }
            if let Some(approval) = &s.approval {
                self.approval(&p.key("approval"), approval.get_ref(), &policy_names);
            }
            for (tool, o) in &s.tools {
                self.approval(
                    &p.key("tools").key(tool).key("approval"),
                    o.approval.get_ref(),
                    &policy_names,
                );
            }
        }
    }

    fn agents(&mut self, cfg: &Config) {
        let base = KeyPath::root().key("agents");
        self.unique(
            "agent name",
            cfg.agents
                .iter()
                .enumerate()
                .map(|(i, a)| (base.idx(i).key("name"), a.name.get_ref().as_str())),
        );
        let models: Vec<&str> = cfg.models.keys().map(String::as_str).collect();
        let tools: Vec<&str> = cfg
            .tools
            .iter()
            .map(|t| t.name.get_ref().as_str())
            .collect();
        let servers: Vec<&str> = cfg
            .mcp_servers
            .iter()
            .map(|s| s.name.get_ref().as_str())
            .collect();
        for (i, a) in cfg.agents.iter().enumerate() {
            let p = base.idx(i);
            let model = a.model.get_ref().as_str();
            if !models.contains(&model) {
                self.report(
                    &p.key("model"),
                    format!(
                        "unknown model {model:?} ({})",
                        defined(&models, "[models.NAME]")
                    ),
                );
            }
            for (j, tool) in a.tools.iter().enumerate() {
                let tool = tool.get_ref().as_str();
                let tp = p.key("tools").idx(j);
                if !tools.contains(&tool) && !BUILTIN_TOOLS.contains(&tool) {
                    self.report(
                        &tp,
                        format!(
                            "unknown tool {tool:?} ({}; built in: {})",
                            defined(&tools, "[[tools]]"),
                            BUILTIN_TOOLS.join(", ")
                        ),
                    );
                } else if a.tools[..j].iter().any(|t| t.get_ref() == tool) {
                    self.report(&tp, format!("tool {tool:?} is listed twice"));
                }
            }
            for (j, server) in a.mcp_servers.iter().enumerate() {
                let server = server.get_ref().as_str();
                let sp = p.key("mcp_servers").idx(j);
                if !servers.contains(&server) {
                    self.report(
                        &sp,
                        format!(
                            "unknown mcp server {server:?} ({})",
                            defined(&servers, "[[mcp_servers]]")
                        ),
                    );
                } else if a.mcp_servers[..j].iter().any(|s| s.get_ref() == server) {
                    self.report(&sp, format!("mcp server {server:?} is listed twice"));
                }
            }
            if a.max_turns == Some(0) {
                self.report(&p.key("max_turns"), "max_turns must be at least 1");
            }
        }
    }

    fn escalation(&mut self, tiers: &[EscalationTierConfig]) {
        let base = KeyPath::root().key("escalation");
        self.unique(
            "escalation queue",
            tiers
                .iter()
                .enumerate()
                .map(|(i, t)| (base.idx(i).key("queue"), t.queue.get_ref().as_str())),
        );
        for (i, t) in tiers.iter().enumerate() {
            self.positive(&base.idx(i).key("after"), Some(t.after));
        }
    }

    fn notify(&mut self, n: &NotifyConfig) {
        if let Some(url) = &n.webhook
            && !is_http_url(url)
        {
            self.report(
                &KeyPath::root().key("notify").key("webhook"),
                format!("invalid webhook {url:?} (expected an http:// or https:// URL)"),
            );
        }
    }

    fn ui(&mut self, ui: &UiConfig) {
        if let Some(theme) = &ui.theme
            && !THEMES.contains(&theme.as_str())
            && !(theme.ends_with(".toml") && theme.len() > ".toml".len())
        {
            self.report(
                &KeyPath::root().key("ui").key("theme"),
                format!(
                    "unknown theme {theme:?} (allowed: {}, or a path to a .toml file)",
                    THEMES.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<ConfigProblem> {
        match Config::parse(text) {
            Ok(_) => Vec::new(),
            Err(p) => p,
        }
    }

    fn keys(text: &str) -> Vec<(usize, String)> {
        problems(text)
            .into_iter()
            .map(|p| (p.line, p.key))
            .collect()
    }

    #[test]
    fn line_of_counts_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\nb\nc", 999), 3);
    }

    #[test]
    fn key_paths_quote_non_bare_keys() {
        let p = KeyPath::root()
            .key("policies")
            .idx(0)
            .key("rules")
            .idx(2)
            .key("when");
        assert_eq!(p.to_string(), "policies[0].rules[2].when");
        let p = KeyPath::root().key("models").key("gpt.4").key("kind");
        assert_eq!(p.to_string(), "models.\"gpt.4\".kind");
        assert_eq!(KeyPath::root().to_string(), "toml");
    }

    #[test]
    fn serde_messages_become_short_lines() {
        let m = |s: &str| clean_message(s).0;
        assert_eq!(
            m("unknown field `tokn`, expected one of `name`, `token`"),
            "unknown key \"tokn\" (allowed: name, token)"
        );
        assert_eq!(
            m("unknown field `zzz`, expected `approval`"),
            "unknown key \"zzz\" (allowed: approval)"
        );
        assert_eq!(
            m("unknown field `x`, there are no fields"),
            "unknown key \"x\""
        );
        assert_eq!(
            clean_message("missing field `kind`"),
            ("missing required key \"kind\"".into(), Some("kind".into()))
        );
        assert_eq!(
            m("invalid type: string \"many\", expected usize"),
            "expected a non-negative integer, found string \"many\""
        );
        assert_eq!(
            m("invalid value: string \"soon\", expected a duration"),
            "expected a duration like \"90s\" or \"15m\", found string \"soon\""
        );
        assert_eq!(m("first line\nsecond line\n"), "first line");
    }

    #[test]
    fn plain_and_hashed_tokens_compare_equal() {
        let hashed = "sha256:20d2fe5e369db54ec7090639a9dc30ec4d608604936239d39e2de07fda09eb0b";
        assert_eq!(token_digest("hunter22"), token_digest(hashed));
        assert_eq!(
            token_digest(&hashed.to_ascii_uppercase().replace("SHA256:", "sha256:")),
            token_digest(hashed)
        );
        assert_eq!(token_digest("sha256:abc"), None);
        assert_eq!(token_digest(""), None);
    }

    #[test]
    fn locator_falls_back_to_the_enclosing_table() {
        let text = "[server]\nlisten = \"x\"\n\n[[tools]]\nname = \"t\"\n";
        let loc = Locator::new(text);
        let tools0 = KeyPath::root().key("tools").idx(0);
        assert_eq!(loc.line(&tools0.key("name")), 5);
        assert_eq!(loc.line(&tools0.key("url")), 4);
        assert_eq!(loc.line(&KeyPath::root().key("server").key("listen")), 2);
        assert_eq!(loc.line(&KeyPath::root().key("nowhere")), 1);
    }

    #[test]
    fn problems_come_in_file_order() {
        let text = "[ui]\ntheme = \"dark\"\n\n[server]\nmax_connections = 10\n";
        assert_eq!(
            keys(text),
            vec![(2, "ui.theme".into()), (5, "server.max_connections".into())]
        );
    }

    #[test]
    fn quoted_table_names_keep_their_quotes() {
        let text = "[models.\"gpt.4\"]\nkind = \"llama\"\n";
        assert_eq!(keys(text), vec![(2, "models.\"gpt.4\".kind".into())]);
    }

    #[test]
    fn every_syntax_error_line_is_reported() {
        let text = "[server\nlisten = \"127.0.0.1:7878\"\n[x]\ny = \n";
        let found = problems(text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].line, found[0].key.as_str()), (1, "toml"));
        assert_eq!(found[1].line, 4);
    }

    #[test]
    fn shape_errors_of_different_entries_are_all_reported() {
        let text = "[[identities]]\nname = \"a\"\nx = 1\n\n[[identities]]\nname = \"b\"\ny = 2\n";
        assert_eq!(
            keys(text),
            vec![(3, "identities[0].x".into()), (7, "identities[1].y".into())]
        );
    }

    #[test]
    fn unknown_key_in_mcp_tool_override() {
        let text = "[[mcp_servers]]\nname = \"m\"\ncommand = \"x\"\n[mcp_servers.tools.q]\nmode = \"never\"\n";
        let found = problems(text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, 5);
        assert_eq!(found[0].key, "mcp_servers[0].tools.q.mode");
        assert_eq!(found[0].message, "unknown key \"mode\" (allowed: approval)");
    }

    #[test]
    fn a_rate_limited_approve_does_not_make_later_rules_unreachable() {
        let text = "[[policies]]\nname = \"p\"\n[[policies.rules]]\naction = \"approve\"\nmax_per_hour = 3\n[[policies.rules]]\naction = \"ask\"\n";
        assert_eq!(problems(text), Vec::new());
    }

    #[test]
    fn odd_input_never_panics() {
        for text in [
            "",
            "=",
            "\u{feff}[server]\n",
            "[[identities]]\n",
            "[models]\nx = 1\n",
            "tools = [1, 2]\n",
            "[[policies]]\nname = \"p\"\nrules = \"x\"\n",
            "\0\u{1b}[31m",
            "[server]\nlisten = \"\u{202e}1:80\"\n",
        ] {
            let _ = Config::parse(text);
        }
    }
}
