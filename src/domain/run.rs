//! Agent runs (DESIGN §2 "Run"): the persisted state of one agent's conversation, the tool
//! calls of its current turn and what became of each.

use super::{Message, Timestamp, ToolOutput};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    PendingApproval,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::PendingApproval => "pending_approval",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Completed, failed or cancelled: nothing more will happen in the run.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// What became of one proposed tool call. The state is saved before anything acts on it, so
/// a restart knows exactly where each call stood.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CallState {
    /// Never reached a policy: unknown tool or invalid arguments. `message` goes to the model.
    Rejected {
        message: String,
    },
    /// Waiting for a reviewer.
    Waiting {
        approval_id: Uuid,
    },
    /// Approved (by `by`); runs with `arguments` once every call of the turn is decided.
    Approved {
        #[serde(default)]
        approval_id: Option<Uuid>,
        by: String,
        arguments: Map<String, Value>,
    },
    /// Denied by a reviewer, a policy or the clock; `message` goes to the model.
    Denied {
        #[serde(default)]
        approval_id: Option<Uuid>,
        by: String,
        message: String,
    },
    /// The tool is running. Saved durably before it starts: found at start-up, it means the
    /// process died mid-call, and the call becomes `OutcomeUnknown` instead of running again.
    Executing {
        started_at: Timestamp,
        arguments: Map<String, Value>,
    },
    /// The process died while the tool ran; a reviewer decides (approval `approval_id`)
    /// whether to run it again or report the failure to the agent.
    OutcomeUnknown {
        approval_id: Uuid,
        arguments: Map<String, Value>,
    },
    Done {
        output: ToolOutput,
    },
}

impl CallState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Rejected { .. } => "rejected",
            Self::Waiting { .. } => "waiting",
            Self::Approved { .. } => "approved",
            Self::Denied { .. } => "denied",
            Self::Executing { .. } => "executing",
            Self::OutcomeUnknown { .. } => "outcome_unknown",
            Self::Done { .. } => "done",
        }
    }

    /// The approval a reviewer must decide before the run can go on.
    pub fn awaited_approval(&self) -> Option<Uuid> {
        match self {
            Self::Waiting { approval_id } | Self::OutcomeUnknown { approval_id, .. } => {
                Some(*approval_id)
            }
            _ => None,
        }
    }

    /// The tool message the model gets, once the call is settled.
    pub fn result_text(&self) -> Option<&str> {
        match self {
            Self::Rejected { message } | Self::Denied { message, .. } => Some(message),
            Self::Done { output } => Some(output.text()),
            _ => None,
        }
    }
}

/// One tool call the model proposed in the current turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunCall {
    /// The model's id for the call (answers carry it back).
    pub call_id: String,
    /// The tool's name as the model called it.
    pub tool: String,
    /// MCP server the tool comes from, if any.
    #[serde(default)]
    pub server: Option<String>,
    /// The proposed arguments (`None` when the model's text was not a valid object). The
    /// arguments that run (a reviewer's edit) are in the state.
    #[serde(default, rename = "proposed_arguments")]
    pub arguments: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub state: CallState,
}

/// One agent run: the seed's persisted `RunState`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: Uuid,
    pub agent: String,
    pub input: String,
    /// The identity that started the run; the run's approvals are requested by it.
    pub started_by: String,
    pub status: RunStatus,
    /// Model answers received so far.
    pub turns: u32,
    pub max_turns: u32,
    pub messages: Vec<Message>,
    /// The tool calls of the current turn; empty while the model is being asked.
    pub calls: Vec<RunCall>,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// What went wrong outside the model's control while the run went on (a tool that could not
    /// be run, and why). A run that completes with problems did not do all it was asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Run {
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            run_id: self.id,
            agent: self.agent.clone(),
            input: self.input.clone(),
            started_by: self.started_by.clone(),
            status: self.status,
            turns: self.turns,
            // A finished (e.g. cancelled) run waits on nothing, whatever its calls were.
            pending: if self.status.is_finished() {
                Vec::new()
            } else {
                self.calls
                    .iter()
                    .filter_map(|c| c.state.awaited_approval())
                    .collect()
            },
            waiting_on: self.waiting_on(),
            output: self.output.clone(),
            error: self.error.clone(),
            problems: self.problems.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// What the run waits for, in words: `approval of issue_refund`, `tool get_order_details`, `model`.
    pub fn waiting_on(&self) -> Option<String> {
        if self.status.is_finished() {
            return None;
        }
        let mut parts = Vec::new();
        for c in &self.calls {
            match &c.state {
                CallState::Waiting { .. } => parts.push(format!("approval of {}", c.tool)),
                CallState::OutcomeUnknown { .. } => {
                    parts.push(format!("reviewer: {} outcome unknown", c.tool))
                }
                CallState::Executing { .. } => parts.push(format!("tool {}", c.tool)),
                _ => {}
            }
        }
        if parts.is_empty() && self.calls.is_empty() {
            return Some("model".into());
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// A run without its conversation: what events, lists and the runs pane carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: Uuid,
    pub agent: String,
    pub input: String,
    pub started_by: String,
    pub status: RunStatus,
    pub turns: u32,
    /// Approvals the run waits on.
    pub pending: Vec<Uuid>,
    #[serde(default)]
    pub waiting_on: Option<String>,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// See [`Run::problems`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
