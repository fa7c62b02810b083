//! The agents of a config (`[[agents]]`) with their models and tools, ready for the runner.

use crate::config::{Config, NeedsApproval};
use crate::model::{Model, ToolSpec};
use crate::tools::Tools;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Turns a run may take when its agent names no `max_turns`.
pub const DEFAULT_MAX_TURNS: u32 = 10;

#[derive(Debug)]
pub struct Agent {
    pub name: String,
    pub instructions: String,
    pub model: Arc<Model>,
    /// Tool names offered to the model, in config order.
    pub tools: Vec<String>,
    pub max_turns: u32,
}

/// Every agent, model and tool of one config. Shared with the tasks that call models and tools.
#[derive(Debug)]
pub struct Agents {
    pub agents: BTreeMap<String, Agent>,
    pub tools: Arc<Tools>,
}

impl Agents {
    /// Build from a config that `config check` accepted. Errors are one line naming the part.
    pub fn from_config(cfg: &Config) -> Result<Agents, String> {
        let tools = Arc::new(Tools::from_config(&cfg.tools)?);
        let mut models = BTreeMap::new();
        for (name, m) in &cfg.models {
            models.insert(name.clone(), Arc::new(Model::from_config(name, m)?));
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
                    max_turns: a.max_turns.unwrap_or(DEFAULT_MAX_TURNS),
                },
            );
        }
        Ok(Agents { agents, tools })
    }

    pub fn get(&self, name: &str) -> Option<&Agent> {
        self.agents.get(name)
    }

    /// The tools `agent` offers its model.
    pub fn specs(&self, agent: &Agent) -> Vec<ToolSpec> {
        agent
            .tools
            .iter()
            .filter_map(|t| self.tools.spec(t))
            .collect()
    }

    pub fn needs_approval(&self, tool: &str) -> NeedsApproval {
        self.tools.needs_approval(tool).unwrap_or_default()
    }
}
