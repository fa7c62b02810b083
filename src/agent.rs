//! The agents of a config (`[[agents]]`) with their models and tools, ready for the runner.
//!
//! An agent's tools are its `[[tools]]` (and builtins) under their own names, and the tools of
//! its `mcp_servers` under `SERVER__TOOL` names that cannot collide; [`ToolRef`] says which.

use crate::config::{Config, McpServerConfig, NeedsApproval};
use crate::model::{Model, ToolSpec};
use crate::policy::ToolAnnotations;
use crate::tools::mcp::{ExposedNames, McpServers, McpTool};
use crate::tools::{ToolOutput, Tools};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Which tool a model's call names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolRef {
    /// A `[[tools]]` entry or a builtin.
    Local(String),
    /// `tool` of MCP server `server` (the server's own names).
    Mcp { server: String, tool: String },
}

/// How a call is gated before any policy runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    /// Runs without asking (`needs_approval = false`, `approval = "never"`); says why.
    Approve(String),
    /// Always asks a reviewer; says why.
    Ask(String),
    /// The named policy decides.
    Policy(String),
}

/// Turns a run may take when its agent names no `max_turns`.
pub const DEFAULT_MAX_TURNS: u32 = 10;

#[derive(Debug)]
pub struct Agent {
    pub name: String,
    pub instructions: String,
    /// The model, or why it cannot be built (a missing API key): that fails this agent's
    /// runs with the reason, and leaves the daemon and every other agent working.
    pub model: Result<Arc<Model>, String>,
    /// Tool names offered to the model, in config order.
    pub tools: Vec<String>,
    /// MCP servers whose tools are offered too.
    pub mcp_servers: Vec<String>,
    pub max_turns: u32,
}

/// Every agent, model and tool of one config. Shared with the tasks that call models and tools.
#[derive(Debug)]
pub struct Agents {
    pub agents: BTreeMap<String, Agent>,
    pub tools: Arc<Tools>,
    /// The MCP servers (started with the runner) and their configs.
    pub mcp: Option<McpServers>,
    pub mcp_configs: BTreeMap<String, McpServerConfig>,
}

impl Agents {
    /// Build from a config that `config check` accepted. Errors are one line naming the part.
    pub fn from_config(cfg: &Config) -> Result<Agents, String> {
        let tools = Arc::new(Tools::from_config(&cfg.tools)?);
        let mut models = BTreeMap::new();
        for (name, m) in &cfg.models {
            let built = Model::from_config(name, m).map(Arc::new);
            if let Err(e) = &built {
                tracing::warn!("{e}; runs of the agents using it will fail");
            }
            models.insert(name.clone(), built);
        }
        let mut agents = BTreeMap::new();
        for a in &cfg.agents {
            let name = a.name.get_ref().clone();
            let model_name = a.model.get_ref();
            let model = models
                .get(model_name)
                .cloned()
                .ok_or_else(|| format!("agents.{name}: unknown model {model_name:?}"))?;
            let mut names = Vec::new();
            for t in &a.tools {
                let t = t.get_ref();
                if !tools.contains(t) {
                    return Err(format!("agents.{name}: unknown tool {t:?}"));
                }
                names.push(t.clone());
            }
            agents.insert(
                name.clone(),
                Agent {
                    name,
                    instructions: a.instructions.clone(),
                    model,
                    tools: names,
                    mcp_servers: a.mcp_servers.iter().map(|s| s.get_ref().clone()).collect(),
                    max_turns: a.max_turns.unwrap_or(DEFAULT_MAX_TURNS),
                },
            );
        }
        let mcp_configs: BTreeMap<String, McpServerConfig> = cfg
            .mcp_servers
            .iter()
            .map(|s| (s.name.get_ref().clone(), s.clone()))
            .collect();
        // Servers start (in the background, with retries) only when some agent uses them or
        // the gateway exposes them.
        let used: Vec<McpServerConfig> = cfg
            .mcp_servers
            .iter()
            .filter(|s| {
                s.expose
                    || agents
                        .values()
                        .any(|a: &Agent| a.mcp_servers.contains(s.name.get_ref()))
            })
            .cloned()
            .collect();
        let mcp = (!used.is_empty()).then(|| McpServers::start(&used));
        Ok(Agents {
            agents,
            tools,
            mcp,
            mcp_configs,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Agent> {
        self.agents.get(name)
    }

    /// The tools `agent` offers its model: its own, then its MCP servers' as they are listed
    /// now (a server that is down offers none until it is back).
    pub fn specs(&self, agent: &Agent) -> Vec<ToolSpec> {
        let mut out: Vec<ToolSpec> = agent
            .tools
            .iter()
            .filter_map(|t| self.tools.spec(t))
            .collect();
        for (name, _, t) in self.mcp_tools(agent) {
            out.push(ToolSpec {
                name,
                description: t.description,
                parameters: t.input_schema,
            });
        }
        out
    }

    /// The tool a model's call names, if `agent` offers it.
    pub fn resolve(&self, agent: &Agent, name: &str) -> Option<ToolRef> {
        if agent.tools.iter().any(|t| t == name) {
            return Some(ToolRef::Local(name.to_string()));
        }
        self.mcp_tools(agent)
            .into_iter()
            .find(|(exposed, _, _)| exposed == name)
            .map(|(_, server, t)| ToolRef::Mcp {
                server,
                tool: t.name,
            })
    }

    /// `agent`'s MCP tools as now listed, each with the name the model sees (unique across
    /// its servers, even where `SERVER__TOOL` names would collide) and its server.
    fn mcp_tools(&self, agent: &Agent) -> Vec<(String, String, McpTool)> {
        let Some(mcp) = &self.mcp else {
            return Vec::new();
        };
        let mut names = ExposedNames::new();
        let mut out = Vec::new();
        for server in &agent.mcp_servers {
            for t in mcp.tools(server) {
                out.push((names.insert(server, &t.name), server.clone(), t));
            }
        }
        out
    }

    /// Why `name` is not available when it looks like a tool of one of `agent`'s MCP servers
    /// that is not up: so the model (and the reviewer reading the transcript) learns the
    /// server is down, not that the tool never existed.
    pub fn unavailable(&self, agent: &Agent, name: &str) -> Option<String> {
        let mcp = self.mcp.as_ref()?;
        let server = agent.mcp_servers.iter().find(|s| {
            name.strip_prefix(s.as_str())
                .is_some_and(|rest| rest.starts_with("__"))
        })?;
        let status = mcp.status().into_iter().find(|st| &st.name == server)?;
        Some(format!(
            "Tool {name:?} is not available: MCP server {server} is {}. The call was not run; try again later.",
            status.state
        ))
    }

    /// Parse and check the model's argument text against the tool's schema.
    pub fn validate_raw(&self, tool: &ToolRef, raw: &str) -> Result<Map<String, Value>, String> {
        let name = match tool {
            ToolRef::Local(name) | ToolRef::Mcp { tool: name, .. } => name,
        };
        self.validate(tool, &crate::tools::parse_args(name, raw)?)
    }

    /// Check arguments (the model's, or a reviewer's edit) against the tool's schema.
    pub fn validate(&self, tool: &ToolRef, args: &Value) -> Result<Map<String, Value>, String> {
        match tool {
            ToolRef::Local(name) => self.tools.validate(name, args),
            ToolRef::Mcp { server, tool } => {
                let schema = self
                    .mcp
                    .as_ref()
                    .and_then(|m| m.tools(server).into_iter().find(|t| &t.name == tool))
                    .map(|t| t.input_schema)
                    .ok_or_else(|| {
                        format!("tool {tool:?} of MCP server {server:?} is not available now")
                    })?;
                crate::tools::validate_against(&schema, tool, args)
            }
        }
    }

    pub fn gate(&self, tool: &ToolRef) -> Gate {
        gate(&self.tools, &self.mcp_configs, tool)
    }

    /// The tool's MCP annotations as policies see them (trusted servers only; the spec's
    /// pessimistic defaults otherwise, and for our own tools).
    pub fn annotations(&self, tool: &ToolRef) -> ToolAnnotations {
        match (tool, &self.mcp) {
            (ToolRef::Mcp { server, tool }, Some(mcp)) => {
                mcp.annotations(server, tool).unwrap_or_default()
            }
            _ => ToolAnnotations::default(),
        }
    }

    pub async fn call(&self, tool: &ToolRef, args: &Map<String, Value>) -> ToolOutput {
        match tool {
            ToolRef::Local(name) => self.tools.call(name, args).await,
            ToolRef::Mcp { server, tool } => match &self.mcp {
                Some(mcp) => mcp.call(server, tool, args.clone()).await,
                None => ToolOutput::unavailable(format!("MCP server {server:?} is not running")),
            },
        }
    }

    pub fn approval_timeout(&self, tool: &ToolRef) -> Option<std::time::Duration> {
        match tool {
            ToolRef::Local(name) => self.tools.approval_timeout(name),
            ToolRef::Mcp { .. } => None,
        }
    }
}

/// How a call of `tool` is gated under a config's tools and MCP servers (also used to replay
/// recorded calls under another config).
pub fn gate(
    tools: &Tools,
    mcp_configs: &BTreeMap<String, McpServerConfig>,
    tool: &ToolRef,
) -> Gate {
    match tool {
        ToolRef::Local(name) => match tools.needs_approval(name).unwrap_or_default() {
            NeedsApproval::Always(false) => Gate::Approve("needs_approval = false".into()),
            NeedsApproval::Always(true) => Gate::Ask(format!(
                "tool {name} always needs approval (needs_approval = true)"
            )),
            NeedsApproval::Policy(p) => Gate::Policy(p),
        },
        ToolRef::Mcp { server, tool } => {
            let cfg = mcp_configs.get(server);
            let setting = cfg
                .and_then(|c| c.tools.get(tool).map(|o| o.approval.get_ref().clone()))
                .or_else(|| cfg.and_then(|c| c.approval.as_ref().map(|a| a.get_ref().clone())))
                // Destructive by default, as the seed advises.
                .unwrap_or_else(|| "always".into());
            match setting.as_str() {
                "never" => Gate::Approve(format!("MCP server {server}: approval = \"never\"")),
                "always" => Gate::Ask(format!(
                    "MCP server {server} asks for every call (approval = \"always\")"
                )),
                policy => Gate::Policy(policy.to_string()),
            }
        }
    }
}
