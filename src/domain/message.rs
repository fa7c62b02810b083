//! What flows through an agent run: the conversation's messages, the model's proposed tool
//! calls and what each call came to. Plain data, shared by the model clients, the tools and
//! the persisted run.

use serde::{Deserialize, Serialize};

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

/// A tool call proposed by the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model sent them: raw JSON text, not yet parsed or validated.
    pub arguments: String,
}

/// What a tool call came to; the text is the tool message the model sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolOutput {
    Ok(String),
    /// The tool ran and reported a failure (a non-zero exit, an HTTP error): the agent's to
    /// handle.
    Error(String),
    /// The tool could not be run at all (its program missing, its endpoint unreachable,
    /// gatehouse stopping): an operator's problem. The model is told only `message`; `cause`
    /// (an OS error, a path) goes to the log, the audit record and the run's problems.
    Unavailable {
        message: String,
        cause: String,
    },
}

impl ToolOutput {
    /// The tool could not be run because of `cause`.
    pub fn unavailable(cause: impl Into<String>) -> ToolOutput {
        ToolOutput::Unavailable {
            message: "This tool could not be run (a problem on the operator's side, not with \
                      the call), so it did not take effect. Tell the user it is unavailable \
                      right now."
                .into(),
            cause: cause.into(),
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, ToolOutput::Ok(_))
    }

    /// What the model sees.
    pub fn text(&self) -> &str {
        match self {
            ToolOutput::Ok(t) | ToolOutput::Error(t) => t,
            ToolOutput::Unavailable { message, .. } => message,
        }
    }
}
