//! The state of an MCP server gatehouse drives, as front ends show it.

use std::fmt;

/// Where a server is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum McpServerState {
    /// The first start attempt is under way.
    Starting,
    /// Initialised, tools listed, taking calls.
    Ready,
    /// The last attempt failed or the server died; a retry is scheduled.
    Failed { error: String },
    /// A retry is under way.
    Restarting,
    /// `McpServers::shutdown` stopped it.
    Stopped,
}

impl fmt::Display for McpServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Starting => f.write_str("starting"),
            Self::Ready => f.write_str("ready"),
            Self::Failed { error } => write!(f, "failed: {error}"),
            Self::Restarting => f.write_str("restarting"),
            Self::Stopped => f.write_str("stopped"),
        }
    }
}

/// One server, for a "servers" view or a status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpServerStatus {
    pub name: String,
    pub state: McpServerState,
    /// Tools as last listed (kept while the server restarts).
    pub tools: usize,
    /// Start attempts after the first one.
    pub restarts: u32,
    /// The process of a stdio server while it runs.
    pub pid: Option<u32>,
}
