//! The TOML configuration (DESIGN §7): types, loading, and `config check` problems.
//!
//! Fields whose values are checked after parsing are `Spanned`, so each problem can be
//! reported with the line it stands on.

pub mod check;
pub mod shape;
#[cfg(test)]
mod tests;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// One problem found in a config file, reported as `FILE:LINE: KEY: MESSAGE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    pub line: usize,
    pub key: String,
    pub message: String,
}

/// All problems of one file; `Display` prints one per line.
#[derive(Clone, Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<ConfigProblem>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            // A problem with the file as a whole (it cannot be read) has no line and no key.
            write!(f, "{}", self.file.display())?;
            if p.line > 0 {
                write!(f, ":{}", p.line)?;
            }
            if !p.key.is_empty() {
                write!(f, ": {}", p.key)?;
            }
            write!(f, ": {}", p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub identities: Vec<IdentityConfig>,
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    #[serde(default)]
    pub tools: Vec<ToolConfig>,
    #[serde(default)]
    pub mcp_servers: Vec<McpServerConfig>,
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    #[serde(default)]
    pub escalation: Vec<EscalationTierConfig>,
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub ui: UiConfig,
    #[serde(default)]
    pub store: StoreConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP API listens on (`serve`, `console --listen`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Extra host names accepted in the `Host` header (loopback names are always allowed).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Origins allowed to call the API; empty means any request with an `Origin` is refused.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long an approval waits when neither its rule nor an escalation tier says.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub default_timeout: Duration,
    #[serde(default = "default_io_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    #[serde(default = "default_io_timeout", with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Serve `/metrics` without a token (by default it needs the token of any identity).
    #[serde(default)]
    pub public_metrics: bool,
    /// Long polls and event streams one identity may hold open at once (DESIGN §9).
    #[serde(default = "default_max_waits_per_identity")]
    pub max_waits_per_identity: usize,
    /// How long a grant (`A`, `"scope": "run"`) lasts in a run gatehouse does not drive
    /// (an external `run_id`); grants in gatehouse's own runs end with the run.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub grant_ttl: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body_bytes: default_max_body_bytes(),
            max_connections: default_max_connections(),
            default_timeout: default_timeout(),
            header_timeout: default_io_timeout(),
            body_timeout: default_io_timeout(),
            public_metrics: false,
            max_waits_per_identity: default_max_waits_per_identity(),
            grant_ttl: default_timeout(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:7878".into()
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_max_waits_per_identity() -> usize {
    256
}
fn default_max_connections() -> usize {
    4096
}
fn default_timeout() -> Duration {
    Duration::from_secs(3600)
}
fn default_io_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub name: Spanned<String>,
    #[serde(default)]
    pub roles: Vec<Spanned<String>>,
    /// A plain token, or `sha256:HEX` of the token.
    #[serde(default)]
    pub token: Option<Spanned<String>>,
    /// Name of the environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<Spanned<String>>,
    /// OS user this identity stands for at a local console.
    #[serde(default)]
    pub os_user: Option<String>,
    /// Agent names this identity may claim in a submission (`["*"]`: any); a claim it may
    /// make is verified and policies see it (DESIGN §9).
    #[serde(default)]
    pub agents: Vec<Spanned<String>>,
    /// MCP server names this identity may claim, as `agents`.
    #[serde(default)]
    pub servers: Vec<Spanned<String>>,
}

/// `[models.NAME]`: which kind of model, with the keys that kind takes (and no others).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelConfig {
    /// Any OpenAI-compatible Chat Completions server.
    Openai(OpenAiModelConfig),
    /// The offline scripted model (the demo's).
    Scripted(ScriptedModelConfig),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiModelConfig {
    pub base_url: String,
    /// Name of the environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    pub model: String,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedModelConfig {
    /// A built-in script (`customer_service` when absent).
    #[serde(default)]
    pub script: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub name: Spanned<String>,
    #[serde(default)]
    pub instructions: String,
    pub model: Spanned<String>,
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    #[serde(default)]
    pub mcp_servers: Vec<Spanned<String>>,
    #[serde(default)]
    pub max_turns: Option<u32>,
}

/// `needs_approval = true | false | "POLICY"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum NeedsApproval {
    Always(bool),
    Policy(String),
}

impl Default for NeedsApproval {
    fn default() -> Self {
        // Destructive by default, as the seed advises.
        NeedsApproval::Always(true)
    }
}

/// `[[tools]]`: a tool agents can call, and how it runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "ToolTable")]
pub struct ToolConfig {
    pub name: Spanned<String>,
    pub description: String,
    /// JSON schema of the arguments.
    pub parameters: Option<toml::Value>,
    pub exec: ToolExec,
    pub needs_approval: Option<Spanned<NeedsApproval>>,
    /// How long one call may run.
    pub timeout: Option<Duration>,
    /// How long a call waits for a reviewer.
    pub approval_timeout: Option<Duration>,
    /// Environment of a `command` tool, added to the few variables it inherits (PATH, HOME,
    /// LANG, LC_*, TZ, TMPDIR, USER): gatehouse's own secrets are never passed on.
    pub env: BTreeMap<String, String>,
}

/// How a tool runs (`kind = …` with the keys of that kind), decided once when the file is read.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolExec {
    /// `kind = "command"`: `command[0]` with the rest as its arguments, the call's arguments as
    /// JSON on stdin.
    Command { command: Vec<String> },
    /// `kind = "http"`: the call's arguments POSTed as JSON to `url`.
    Http { url: String },
    /// `kind = "builtin"`: a tool compiled into gatehouse, named by `builtin` or else by the
    /// tool's own name.
    Builtin { builtin: Option<String> },
}

impl ToolExec {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Command { .. } => "command",
            Self::Http { .. } => "http",
            Self::Builtin { .. } => "builtin",
        }
    }
}

/// A `[[tools]]` table as written (what `config check` reports on, key by key);
/// [`ToolConfig`] is what it means.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolTable {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub parameters: Option<toml::Value>,
    pub kind: String,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub builtin: Option<String>,
    #[serde(default)]
    pub needs_approval: Option<Spanned<NeedsApproval>>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub approval_timeout: Option<Duration>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl TryFrom<ToolTable> for ToolConfig {
    type Error = String;

    /// The kind and its keys, every mismatch in one message.
    fn try_from(t: ToolTable) -> Result<ToolConfig, String> {
        let mut wrong = Vec::new();
        let exec = match t.kind.as_str() {
            "command" => t
                .command
                .clone()
                .map(|command| ToolExec::Command { command }),
            "http" => t.url.clone().map(|url| ToolExec::Http { url }),
            "builtin" => Some(ToolExec::Builtin {
                builtin: t.builtin.clone(),
            }),
            other => return Err(format!("unknown tool kind {other:?}")),
        };
        let kind = t.kind.as_str();
        if exec.is_none() {
            let key = if kind == "command" { "command" } else { "url" };
            wrong.push(format!("missing {key} (required for kind {kind:?})"));
        }
        for (key, set, wants) in [
            ("command", t.command.is_some(), "command"),
            ("url", t.url.is_some(), "http"),
            ("builtin", t.builtin.is_some(), "builtin"),
        ] {
            if set && kind != wants {
                wrong.push(format!(
                    "{key} is only used with kind {wants:?} (this tool's kind is {kind:?})"
                ));
            }
        }
        match exec {
            Some(exec) if wrong.is_empty() => Ok(ToolConfig {
                name: t.name,
                description: t.description,
                parameters: t.parameters,
                exec,
                needs_approval: t.needs_approval,
                timeout: t.timeout,
                approval_timeout: t.approval_timeout,
                env: t.env,
            }),
            _ => Err(wrong.join("; ")),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    pub name: Spanned<String>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub url: Option<String>,
    /// `"always" | "never" | "POLICY"`.
    #[serde(default)]
    pub approval: Option<Spanned<String>>,
    #[serde(default)]
    pub trusted: bool,
    /// Publish this server's tools at `/mcp` to `agent` identities (DESIGN §11).
    #[serde(default)]
    pub expose: bool,
    #[serde(default)]
    pub tools: BTreeMap<String, McpToolOverride>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpToolOverride {
    pub approval: Spanned<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Approve,
    Deny,
    Ask,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: Spanned<String>,
    /// Globs over tool names this policy covers for external submissions; default all.
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// CEL condition; absent means the rule always matches.
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    pub action: Spanned<RuleAction>,
    /// Reason given with `deny` (and shown for `ask`).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// At most this many auto-approvals per hour by this rule; past it the rule asks.
    #[serde(default)]
    pub max_per_hour: Option<u32>,
    /// Two-person rule: this many distinct reviewers (≥ 2) must approve when the rule asks.
    #[serde(default)]
    pub approvals: Option<i64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationTierConfig {
    pub queue: Spanned<String>,
    #[serde(default)]
    pub reviewers: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub after: Duration,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(default)]
    pub webhook: Option<String>,
    #[serde(default)]
    pub on_create: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    #[serde(default)]
    pub theme: Option<String>,
    #[serde(default)]
    pub keys: BTreeMap<String, toml::Value>,
    /// When the console rings the terminal bell: `off`, `new` (arrivals and escalations) or
    /// `escalated` (escalations only). Default `off`.
    #[serde(default)]
    pub bell: Option<String>,
    /// Desktop notifications through the terminal: `off`, `osc9` or `osc777`. Default `off`.
    #[serde(default)]
    pub desktop: Option<String>,
}

/// `[store]`: where approvals, runs and the audit log are kept (DESIGN §3, §12).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub kind: StoreKind,
    /// The environment variable holding the PostgreSQL URL: the URL carries a password, so
    /// it is never written in the config file. Default [`DEFAULT_DATABASE_URL_ENV`].
    #[serde(default)]
    pub url_env: Option<String>,
}

pub const DEFAULT_DATABASE_URL_ENV: &str = "GATEHOUSE_DATABASE_URL";

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded default: one data directory (`--data DIR`), one daemon.
    #[default]
    Sled,
    /// A PostgreSQL database named by `url_env`.
    Postgres,
}

impl StoreConfig {
    /// The environment variable naming the database, for `kind = "postgres"`.
    pub fn url_env(&self) -> &str {
        self.url_env.as_deref().unwrap_or(DEFAULT_DATABASE_URL_ENV)
    }
}

impl Config {
    /// Each identity's roles, by name (what CEL sees as `identity.roles`).
    pub fn roles_by_identity(&self) -> BTreeMap<String, Vec<String>> {
        self.identities
            .iter()
            .map(|i| {
                let roles = i.roles.iter().map(|r| r.get_ref().clone()).collect();
                (i.name.get_ref().clone(), roles)
            })
            .collect()
    }

    /// Parse and check a config file as far as the config module can tell (its syntax, shape
    /// and references). `crate::preflight::load` checks everything; programs use that.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with(path, Self::parse)
    }

    /// Read `path` and give its text to `parse`; problems come back naming the file.
    pub fn load_with(
        path: &Path,
        parse: impl FnOnce(&str) -> Result<Config, Vec<ConfigProblem>>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            problems: vec![ConfigProblem {
                line: 0,
                key: String::new(),
                message: format!("cannot read it: {e}"),
            }],
        })?;
        parse(&text).map_err(|problems| ConfigError {
            file: path.to_path_buf(),
            problems,
        })
    }

    /// Parse and check config text (the config module's own checks; see [`Config::load`]).
    pub fn parse(text: &str) -> Result<Config, Vec<ConfigProblem>> {
        let parsed = shape::parse_config(text)?;
        let problems = check::check(&parsed, text);
        if problems.is_empty() {
            Ok(parsed.config)
        } else {
            Err(problems)
        }
    }
}
