//! Chat models (DESIGN §7 `[models.NAME]`): an OpenAI-compatible Chat Completions client and
//! an offline scripted model, behind one `Model` type.
//!
//! The conversation types here (`Message`, `ToolCall`) are what a run persists; they are
//! gatehouse's own shapes, translated to the wire format by the OpenAI client.

mod openai;
mod scripted;
#[cfg(test)]
mod tests;

pub use openai::OpenAiModel;
pub use scripted::{SCRIPTS, ScriptedModel};
// The conversation types are domain data (runs persist them); models speak them.
pub use crate::domain::{Message, ToolCall};

use crate::config::ModelConfig;
use serde::{Deserialize, Serialize};

/// A tool as the model sees it: sent as a `function` definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON schema of the arguments (an object schema).
    pub parameters: serde_json::Value,
}

impl From<Completion> for Message {
    fn from(c: Completion) -> Message {
        Message::Assistant {
            content: c.content,
            tool_calls: c.tool_calls,
        }
    }
}

/// One answer of the model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// Text: the final answer when there are no tool calls, else the model's reasoning.
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
}

/// Why a model call failed. `Display` is one line, fit for a run's failure reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// 401 or 403: the key is missing, wrong, or lacks access.
    #[error("model authentication failed: {0}")]
    Auth(String),
    /// 404: wrong base_url or unknown model.
    #[error("model not found: {0}")]
    NotFound(String),
    /// The server answered, but not with a usable chat completion.
    #[error("malformed model response: {0}")]
    Malformed(String),
    /// The request could not be completed (timeout, connection lost, other status).
    #[error("model request failed: {0}")]
    Transport(String),
    /// Retryable failures (429, 5xx, connection refused) on every attempt.
    #[error("model request failed after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: String },
}

/// A configured chat model.
#[derive(Debug)]
pub enum Model {
    OpenAi(OpenAiModel),
    Scripted(ScriptedModel),
}

impl Model {
    /// Build the model `[models.NAME]` describes. Errors are one line naming the model.
    pub fn from_config(name: &str, cfg: &ModelConfig) -> Result<Model, String> {
        match cfg {
            ModelConfig::Openai(c) => OpenAiModel::from_config(c)
                .map(Model::OpenAi)
                .map_err(|e| format!("models.{name}: {e}")),
            ModelConfig::Scripted(c) => {
                let script = c.script.as_deref().unwrap_or(scripted::DEFAULT_SCRIPT);
                ScriptedModel::builtin(script)
                    .map(Model::Scripted)
                    .map_err(|e| format!("models.{name}: {e}"))
            }
        }
    }

    /// Ask the model for its next step in `messages`, offering `tools`.
    pub async fn complete(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<Completion, ModelError> {
        match self {
            Model::OpenAi(m) => m.complete(messages, tools).await,
            Model::Scripted(m) => Ok(m.complete(messages, tools)),
        }
    }
}

/// Models are shared between tasks, and their calls run inside spawned tasks.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Model>();
};
