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

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    System {
        content: String,
    },
    User {
        content: String,
    },
    /// What the model answered: text (the final answer, or its reasoning when it also calls
    /// tools) and the tool calls it proposed.
    Assistant {
        #[serde(default)]
        content: Option<String>,
        #[serde(default)]
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call, as the model sees it.
    Tool {
        tool_call_id: String,
        content: String,
    },
}

impl Message {
    pub fn system(content: impl Into<String>) -> Message {
        Message::System {
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Message {
        Message::User {
            content: content.into(),
        }
    }

    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Message {
        Message::Tool {
            tool_call_id: tool_call_id.into(),
            content: content.into(),
        }
    }
}

impl From<Completion> for Message {
    fn from(c: Completion) -> Message {
        Message::Assistant {
            content: c.content,
            tool_calls: c.tool_calls,
        }
    }
}

/// A tool call proposed by the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model sent them: raw JSON text, not yet parsed or validated.
    pub arguments: String,
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
        match cfg.kind.get_ref().as_str() {
            "openai" => OpenAiModel::from_config(cfg)
                .map(Model::OpenAi)
                .map_err(|e| format!("models.{name}: {e}")),
            "scripted" => {
                let script = cfg.script.as_deref().unwrap_or(scripted::DEFAULT_SCRIPT);
                ScriptedModel::builtin(script)
                    .map(Model::Scripted)
                    .map_err(|e| format!("models.{name}: {e}"))
            }
            other => Err(format!(
                "models.{name}: unknown model kind {other:?} (allowed: openai, scripted)"
            )),
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
