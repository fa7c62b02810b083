//! Stage 2 of `config check`: what serde cannot see in the file — references between sections,
//! duplicates, values out of range. Each problem carries the line it stands on and the dotted
//! TOML key (`identities[1].token_env`). Stage 1 (syntax and shape) is [`super::shape`]; what
//! other modules know (CEL conditions, scripted models, key bindings, this machine) is checked
//! by `crate::preflight`, so this module imports none of them.
//!
//! Lines come from a spanned re-parse of the text ([`Locator`]), so config types need not carry
//! `Spanned` wrappers for the sake of diagnostics. A problem about a missing key points at the
//! table that lacks it.

mod access;
mod store;
mod tools;

use super::shape::{KeyPath, Locator, Parsed, Seg, finish};
use super::{
    Config, ConfigProblem, EscalationTierConfig, ModelConfig, NotifyConfig, PolicyConfig,
    RuleAction, ToolTable, UiConfig,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// Roles an identity may hold (DESIGN §4).
pub const ROLES: &[&str] = &["agent", "reviewer", "admin"];
/// Tool kinds (DESIGN §7): the `kind` values [`super::ToolConfig`] reads.
const TOOL_KINDS: &[&str] = &["command", "http", "builtin"];
/// Tools compiled into gatehouse (the demo's, from the seed's CustomerServiceAgent). An agent may
/// list them without a `[[tools]]` entry; a `kind = "builtin"` tool must name one of them (by its
/// `builtin` key, else by its `name`). Keep in sync with the builtin tool registry.
pub const BUILTIN_TOOLS: &[&str] = &["get_order_details", "issue_refund", "delete_user_account"];
/// Themes shipped in `themes/` (DESIGN §6); any other theme is a path to a `.toml` file.
/// `[ui] bell` values (what rings the terminal bell).
pub const BELL_MODES: &[&str] = &["off", "new", "escalated"];
/// `[ui] desktop` values (how a desktop notification is sent).
pub const DESKTOP_MODES: &[&str] = &["off", "osc9", "osc777"];
pub const THEMES: &[&str] = &["default", "light", "high-contrast", "mono"];
/// The security contract (DESIGN §4a) requires a connection cap of at least this.
/// The largest two-person rule (`approvals = N`): more reviewers than that is a typo.
pub const MAX_APPROVALS: u32 = 16;
pub const MIN_MAX_CONNECTIONS: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Stage 2: semantic checks

/// Everything wrong with a config that parsed (perhaps in part), beside its shape problems, in
/// file order. Empty means the file is good as far as the config module can tell.
pub fn check(parsed: &Parsed, text: &str) -> Vec<ConfigProblem> {
    let cfg = &parsed.config;
    let mut c = Checker {
        loc: Locator::new(text),
        problems: parsed.problems.clone(),
        origin: &parsed.origin,
        broken: &parsed.broken_names,
    };
    c.server(&cfg.server);
    c.identities(&cfg.identities);
    c.models(&cfg.models);
    c.policies(&cfg.policies);
    c.tools(cfg, &parsed.tool_tables);
    c.mcp_servers(cfg);
    c.agents(cfg, &parsed.tool_tables);
    c.escalation(cfg);
    c.notify(&cfg.notify);
    c.ui(&cfg.ui);
    c.store(&cfg.store);
    finish(c.problems)
}

struct Checker<'t> {
    loc: Locator<'t>,
    problems: Vec<ConfigProblem>,
    origin: &'t HashMap<String, Vec<usize>>,
    broken: &'t BTreeSet<String>,
}

/// The entries of one `[[table]]`, numbered as in the file even when broken ones were left out.
struct Entries {
    base: KeyPath,
    origin: Option<Vec<usize>>,
}

impl Entries {
    fn idx(&self, i: usize) -> KeyPath {
        let at = self.origin.as_ref().and_then(|o| o.get(i).copied());
        self.base.idx(at.unwrap_or(i))
    }
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
pub(super) fn token_digest(token: &str) -> Option<String> {
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
    fn entries(&self, table: &str) -> Entries {
        let base = KeyPath::root().key(table);
        Entries {
            origin: self.origin.get(&base.to_string()).cloned(),
            base,
        }
    }

    /// A name that refers to a broken entry: that entry's problem is already reported.
    fn is_broken(&self, name: &str) -> bool {
        self.broken.contains(name)
    }

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

    fn models(&mut self, models: &BTreeMap<String, ModelConfig>) {
        let base = KeyPath::root().key("models");
        for (name, m) in models {
            let p = base.key(name);
            // Which keys each kind takes is the type's to say; what is left is values.
            let ModelConfig::Openai(m) = m else { continue };
            if m.base_url.trim().is_empty() {
                self.report(&p.key("base_url"), "empty base_url");
            } else if !is_http_url(&m.base_url) {
                self.report(
                    &p.key("base_url"),
                    format!(
                        "invalid base_url {:?} (expected an http:// or https:// URL)",
                        m.base_url
                    ),
                );
            }
            if m.model.trim().is_empty() {
                self.report(&p.key("model"), "empty model");
            }
            if let Some(problem) = m.api_key_env.as_deref().and_then(env_var_problem) {
                self.report(&p.key("api_key_env"), problem);
            }
            self.positive(&p.key("timeout"), m.timeout);
        }
    }

    fn policies(&mut self, policies: &[PolicyConfig]) {
        let base = self.entries("policies");
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
                            "unreachable rule: rule {} (rules[{k}]) above has no `when` and always decides",
                            k + 1
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
                    if rule.approvals.is_some() {
                        self.report(
                            &rp.key("approvals"),
                            format!("approvals only applies when a rule asks (this rule's action is {action_name:?})"),
                        );
                    }
                }
                if let Some(n) = rule.approvals
                    && !(2..=i64::from(MAX_APPROVALS)).contains(&n)
                {
                    self.report(
                        &rp.key("approvals"),
                        format!(
                            "approvals must be an integer from 2 to {MAX_APPROVALS} (distinct reviewers who must approve; leave it out for one), not {n}"
                        ),
                    );
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

    fn mcp_servers(&mut self, cfg: &Config) {
        let base = self.entries("mcp_servers");
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
        let any_agent = cfg.identities.iter().any(|id| {
            id.roles
                .iter()
                .any(|r| r.get_ref() == "agent" || r.get_ref() == "admin")
        });
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
            // /mcp serves agent identities only: without one, `expose` publishes to nobody.
            if s.expose && !any_agent {
                self.report(
                    &p.key("expose"),
                    "expose = true, but no [[identities]] entry has the agent role to call /mcp with",
                );
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

    fn agents(&mut self, cfg: &Config, tool_tables: &[ToolTable]) {
        let base = self.entries("agents");
        self.unique(
            "agent name",
            cfg.agents
                .iter()
                .enumerate()
                .map(|(i, a)| (base.idx(i).key("name"), a.name.get_ref().as_str())),
        );
        let models: Vec<&str> = cfg.models.keys().map(String::as_str).collect();
        let tools: Vec<&str> = tool_tables
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
            if !models.contains(&model) && !self.is_broken(model) {
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
                if !tools.contains(&tool) && !BUILTIN_TOOLS.contains(&tool) && !self.is_broken(tool)
                {
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
                if !servers.contains(&server) && !self.is_broken(server) {
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

    fn escalation(&mut self, cfg: &Config) {
        let tiers: &[EscalationTierConfig] = &cfg.escalation;
        let base = self.entries("escalation");
        let identities: Vec<&str> = cfg
            .identities
            .iter()
            .map(|i| i.name.get_ref().as_str())
            .collect();
        for (i, t) in tiers.iter().enumerate() {
            for (j, r) in t.reviewers.iter().enumerate() {
                if !identities.contains(&r.as_str()) && !self.is_broken(r) {
                    self.report(
                        &base.idx(i).key("reviewers").idx(j),
                        format!(
                            "reviewer {r:?} is not an identity ({})",
                            defined(&identities, "[[identities]]")
                        ),
                    );
                }
            }
        }
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
        for (key, value, allowed) in [
            ("bell", &ui.bell, BELL_MODES),
            ("desktop", &ui.desktop, DESKTOP_MODES),
        ] {
            if let Some(v) = value
                && !allowed.contains(&v.as_str())
            {
                self.report(
                    &KeyPath::root().key("ui").key(key),
                    format!("unknown value {v:?} (allowed: {})", allowed.join(", ")),
                );
            }
        }
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
