//! The link between a front end (the console) and a runner, in-process or across HTTP.
//!
//! The console only ever sees this pair of channels, so it cannot tell whether its runner
//! is in the same process (`gatehouse console`) or a daemon reached over HTTP + SSE
//! (`gatehouse console --connect URL`).

use crate::domain::{Approval, Event, Run, RunSummary, Verdict};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

/// State of the connection to the runner, shown in the status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// In-process runner: always connected.
    Local,
    Connected {
        url: String,
    },
    Reconnecting {
        url: String,
        attempt: u32,
        /// The root cause of the last failure (`connection refused`), not the HTTP client's
        /// outer text.
        last_error: String,
        /// When the next try starts (the status line counts down to it).
        next_try: Option<std::time::Instant>,
    },
}

/// What a front end receives.
#[derive(Clone, Debug)]
pub enum FrontendEvent {
    /// The full picture: every pending approval, plus recently decided ones for history.
    /// Sent first, and again after a reconnect that could not resume.
    Snapshot {
        pending: Vec<Approval>,
        recent: Vec<Approval>,
        /// Active runs and recently finished ones, oldest first.
        runs: Vec<RunSummary>,
        /// Sequence number of the last event the snapshot includes.
        seq: u64,
    },
    /// One change, in sequence order.
    Change(Box<Event>),
    Connection(Connection),
    /// The MCP servers and their state, whole (sent at start and whenever any changes; empty
    /// when there are none, or the daemon is too old to say).
    Servers(Vec<ServerView>),
}

/// One MCP server as a front end shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerView {
    pub name: String,
    /// `ready`, `starting`, `restarting`, `stopped` or `failed: why` (the text of
    /// `GET /v1/servers`).
    pub state: String,
    pub ready: bool,
    /// Tools as last listed.
    pub tools: usize,
    /// Start attempts after the first one.
    pub restarts: u32,
}

impl ServerView {
    pub fn from_status(s: &crate::domain::McpServerStatus) -> ServerView {
        ServerView {
            name: s.name.clone(),
            state: s.state.to_string(),
            ready: s.state == crate::domain::McpServerState::Ready,
            tools: s.tools,
            restarts: s.restarts,
        }
    }

    /// One entry of `GET /v1/servers`; `None` when it has no name.
    pub fn from_json(v: &Value) -> Option<ServerView> {
        let state = v.get("state").and_then(Value::as_str).unwrap_or("unknown");
        Some(ServerView {
            name: v.get("name")?.as_str()?.to_string(),
            ready: state == "ready",
            state: state.to_string(),
            tools: v.get("tools").and_then(Value::as_u64).unwrap_or(0) as usize,
            restarts: v
                .get("restarts")
                .and_then(Value::as_u64)
                .map_or(0, |n| n.min(u32::MAX as u64) as u32),
        })
    }

    /// The state in one word: `ready`, `failed`, `starting`, …
    pub fn word(&self) -> &str {
        self.state.split(':').next().unwrap_or("").trim()
    }

    /// Why it failed, if it did.
    pub fn error(&self) -> Option<&str> {
        self.state
            .strip_prefix("failed:")
            .map(str::trim)
            .filter(|e| !e.is_empty())
    }

    pub fn failed(&self) -> bool {
        self.word() == "failed"
    }
}

/// A reviewer's decision as sent by a front end.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionRequest {
    pub approval_id: uuid::Uuid,
    pub verdict: Verdict,
    pub reason: Option<String>,
    /// Hash of the arguments that were on screen; the runner refuses a mismatch.
    pub arguments_sha256: String,
    /// Edited arguments (the `e` key); `None` approves what was shown.
    pub edited_arguments: Option<Map<String, Value>>,
    /// `Some("run")` for a sticky grant (the `A` key).
    pub scope: Option<String>,
}

/// How a decision ended. `NotSent` means the runner never saw it (e.g. the link dropped).
#[derive(Clone, Debug)]
pub enum DecisionOutcome {
    Applied(Approval),
    /// Someone else decided first, or the arguments changed: the approval as it stands.
    Conflict {
        message: String,
        approval: Option<Approval>,
    },
    Refused {
        message: String,
    },
    NotSent {
        message: String,
    },
}

/// Commands a front end sends.
#[derive(Debug)]
pub enum FrontendCommand {
    Decide {
        request: DecisionRequest,
        reply: oneshot::Sender<DecisionOutcome>,
    },
    /// Move an approval to the next escalation tier now; `Err` says why not.
    Escalate {
        approval_id: uuid::Uuid,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The full run, conversation included (events carry only summaries): for the
    /// transcript view. `Err` says why not (no such run, link down).
    FetchRun {
        run_id: uuid::Uuid,
        reply: oneshot::Sender<Result<Run, String>>,
    },
}

/// The front end's end of the link.
pub struct FrontendLink {
    pub events: mpsc::Receiver<FrontendEvent>,
    pub commands: mpsc::Sender<FrontendCommand>,
    /// Who decisions are recorded as.
    pub reviewer: String,
}

pub mod local;
pub mod remote;
