//! MCP servers (DESIGN §7 `[[mcp_servers]]`): the client side of the Model Context Protocol,
//! through the official SDK `rmcp` (this module is the only place it is used).
//!
//! Each configured server gets a supervisor task that starts it (a child process over stdio,
//! or a streamable-HTTP endpoint), lists its tools, and watches the connection. A server that
//! fails to start or dies is restarted with exponential backoff, so one broken server never
//! takes the others (or gatehouse) down. Callers only see [`McpServers`]: a cheap, cloneable
//! handle whose calls never fail with anything but a [`ToolOutput::Error`].

pub mod gateway;
mod names;
mod server;

pub use crate::domain::{McpServerState, McpServerStatus};
pub use names::{ExposedNames, MAX_EXPOSED_NAME, exposed_name};

use crate::config::McpServerConfig;
use crate::policy::ToolAnnotations;
use crate::tools::{MAX_OUTPUT_BYTES, ToolOutput};
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use serde_json::{Map, Value};
use server::Server;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Timeouts and backoff of the MCP servers of one config.
#[derive(Clone, Copy, Debug)]
pub struct McpOptions {
    /// How long one `tools/call` may take.
    pub call_timeout: Duration,
    /// How long a server may take to start, initialise and list its tools.
    pub start_timeout: Duration,
    /// The first retry delay after a failure; doubled after each failure in a row.
    pub initial_backoff: Duration,
    /// The retry delay never grows beyond this.
    pub max_backoff: Duration,
}

impl Default for McpOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(60),
            // `npx -y` may download the server first.
            start_timeout: Duration::from_secs(60),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// A tool of an MCP server, as the server last listed it.
#[derive(Clone, Debug, PartialEq)]
pub struct McpTool {
    pub name: String,
    pub description: String,
    /// A JSON object schema of the arguments.
    pub input_schema: Value,
    /// The server's hints, `None` where it sent none.
    pub read_only_hint: Option<bool>,
    pub destructive_hint: Option<bool>,
    pub idempotent_hint: Option<bool>,
    pub open_world_hint: Option<bool>,
}

impl McpTool {
    fn from_rmcp(tool: rmcp::model::Tool) -> Self {
        let hints = tool.annotations.unwrap_or_default();
        Self {
            name: tool.name.into_owned(),
            description: tool.description.map(|d| d.into_owned()).unwrap_or_default(),
            input_schema: Value::Object((*tool.input_schema).clone()),
            read_only_hint: hints.read_only_hint,
            destructive_hint: hints.destructive_hint,
            idempotent_hint: hints.idempotent_hint,
            open_world_hint: hints.open_world_hint,
        }
    }

    /// The hints policies see. Hints come from the server, so only a `trusted` server's are
    /// believed; otherwise, and for every hint it left out, the MCP spec's pessimistic
    /// defaults apply (not read-only, destructive, not idempotent, open world). One exception
    /// follows the spec: a read-only tool modifies nothing, so it is not destructive unless
    /// the server says so.
    pub fn annotations(&self, trusted: bool) -> ToolAnnotations {
        let pessimistic = ToolAnnotations::default();
        if !trusted {
            return pessimistic;
        }
        let read_only = self.read_only_hint.unwrap_or(pessimistic.read_only);
        ToolAnnotations {
            read_only,
            destructive: self
                .destructive_hint
                .unwrap_or(pessimistic.destructive && !read_only),
            idempotent: self.idempotent_hint.unwrap_or(pessimistic.idempotent),
            open_world: self.open_world_hint.unwrap_or(pessimistic.open_world),
        }
    }
}

/// The MCP servers of one config. Cheap to clone; every clone is the same set of servers.
#[derive(Clone)]
pub struct McpServers {
    inner: Arc<Inner>,
}

struct Inner {
    /// In config order.
    servers: Vec<Arc<Server>>,
    options: McpOptions,
    /// Bumped on every state change of any server.
    changes: Arc<watch::Sender<u64>>,
    /// `true` once shutting down; dropping it (the last handle gone) also stops the supervisors.
    stop: watch::Sender<bool>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for McpServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.status()).finish()
    }
}

impl McpServers {
    /// Start every configured server in the background, with default [`McpOptions`].
    /// Must be called inside a tokio runtime. Never fails: a server that cannot start is
    /// [`McpServerState::Failed`] and retried.
    pub fn start(configs: &[McpServerConfig]) -> McpServers {
        Self::start_with(configs, McpOptions::default())
    }

    pub fn start_with(configs: &[McpServerConfig], options: McpOptions) -> McpServers {
        let changes = Arc::new(watch::channel(0u64).0);
        let (stop, _) = watch::channel(false);
        let servers: Vec<Arc<Server>> = configs
            .iter()
            .map(|c| Arc::new(Server::new(c.clone(), changes.clone())))
            .collect();
        let supervisors = servers
            .iter()
            .map(|s| tokio::spawn(server::supervise(s.clone(), options, stop.subscribe())))
            .collect();
        McpServers {
            inner: Arc::new(Inner {
                servers,
                options,
                changes,
                stop,
                supervisors: Mutex::new(supervisors),
            }),
        }
    }

    /// Wait until every server has finished its first start attempt (ready or failed), or
    /// `timeout` has passed.
    pub async fn ready(&self, timeout: Duration) {
        let mut changes = self.changes();
        let all_tried = async {
            loop {
                if self.inner.servers.iter().all(|s| s.tried()) {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, all_tried).await;
    }

    /// Wait until each of `servers` has finished its first start attempt (ready or failed),
    /// for at most the start timeout. Whoever offers a server's tools (an agent run's first
    /// turn, the gateway's `tools/list`) waits here, so that a server still starting is not
    /// mistaken for a server without tools. Unknown names are not waited for.
    pub async fn settled(&self, servers: &[String]) {
        let wanted: Vec<&Arc<Server>> = servers.iter().filter_map(|n| self.find(n)).collect();
        let mut changes = self.changes();
        let all_tried = async {
            while !wanted.iter().all(|s| s.tried()) {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(self.inner.options.start_timeout, all_tried).await;
    }

    /// Names of the servers with `expose = true`, in config order.
    pub fn exposed(&self) -> Vec<String> {
        self.inner
            .servers
            .iter()
            .filter(|s| s.config.expose)
            .map(|s| s.name().to_owned())
            .collect()
    }

    /// The configuration of `server`.
    pub fn config(&self, server: &str) -> Option<&McpServerConfig> {
        self.find(server).map(|s| &s.config)
    }

    /// The tools of `server` exactly as it listed them, with a version that changes whenever
    /// the list is replaced.
    fn listed(&self, server: &str) -> (Vec<rmcp::model::Tool>, u64) {
        self.find(server).map(|s| s.listed()).unwrap_or_default()
    }

    /// Tools of `server` as last listed; none for an unknown server or one never started.
    pub fn tools(&self, server: &str) -> Vec<McpTool> {
        self.find(server).map(|s| s.tools()).unwrap_or_default()
    }

    /// The hints of `tool` of `server` for policies ([`McpTool::annotations`] with the
    /// server's `trusted` setting); `None` if the server did not list that tool.
    pub fn annotations(&self, server: &str, tool: &str) -> Option<ToolAnnotations> {
        let s = self.find(server)?;
        let trusted = s.config.trusted;
        s.tools()
            .iter()
            .find(|t| t.name == tool)
            .map(|t| t.annotations(trusted))
    }

    /// Call `tool` of `server`. Every failure (unknown or failed server, the call timing
    /// out, the server dying, the tool reporting an error) is a one-line
    /// [`ToolOutput::Error`] naming the server. A server still starting is waited for,
    /// within the call timeout.
    pub async fn call(&self, server: &str, tool: &str, args: Map<String, Value>) -> ToolOutput {
        match self.call_result(server, tool, args).await {
            Ok(result) => tool_output(server, tool, result),
            Err(e) => ToolOutput::Error(e),
        }
    }

    /// Call `tool` of `server` and return its result as the server sent it. The error is a
    /// one-line message naming the server (not configured, not running, timed out, exited).
    async fn call_result(
        &self,
        server: &str,
        tool: &str,
        args: Map<String, Value>,
    ) -> Result<CallToolResult, String> {
        let Some(s) = self.find(server) else {
            return Err(format!("mcp server {server:?} is not configured"));
        };
        let timeout = self.inner.options.call_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let peer = s
            .peer_by(deadline)
            .await
            .map_err(|e| format!("mcp server {server:?} {e}"))?;
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
        // Dropping the call on timeout makes rmcp send the server a cancellation.
        match tokio::time::timeout_at(deadline, peer.call_tool(params)).await {
            Err(_) => Err(format!(
                "mcp server {server:?}: tool {tool:?} did not answer within {}",
                humantime::format_duration(timeout)
            )),
            // The supervisor notices the exit too, and restarts the server.
            Ok(Err(rmcp::ServiceError::TransportClosed)) => Err(format!(
                "mcp server {server:?} exited during the call of tool {tool:?}"
            )),
            Ok(Err(e)) => Err(format!(
                "mcp server {server:?}: tool {tool:?} failed: {}",
                server::one_line(&crate::text::error_chain(&e))
            )),
            Ok(Ok(result)) => Ok(result),
        }
    }

    pub fn status(&self) -> Vec<McpServerStatus> {
        self.inner.servers.iter().map(|s| s.status()).collect()
    }

    /// A counter bumped on every state change, for a console to redraw on.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Stop every server (stdio servers get their input closed, then SIGTERM, then SIGKILL)
    /// and wait for that. Calls after this fail.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        let supervisors = match self.inner.supervisors.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for handle in supervisors {
            let _ = handle.await;
        }
    }

    fn find(&self, name: &str) -> Option<&Arc<Server>> {
        self.inner.servers.iter().find(|s| s.name() == name)
    }
}

/// What the model sees of a tool's result: text items as they are, other items (images,
/// resources) as JSON, joined by newlines; the structured result when there is no content.
fn tool_output(server: &str, tool: &str, result: CallToolResult) -> ToolOutput {
    let mut parts: Vec<String> = result
        .content
        .iter()
        .map(|item| match item {
            ContentBlock::Text(t) => t.text.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        })
        .collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    let text = parts.join("\n");
    if text.len() > MAX_OUTPUT_BYTES {
        return ToolOutput::Error(format!(
            "mcp server {server:?}: the output of tool {tool:?} exceeds {} MiB",
            MAX_OUTPUT_BYTES / (1024 * 1024)
        ));
    }
    if result.is_error == Some(true) {
        ToolOutput::Error(format!(
            "mcp server {server:?}: tool {tool:?} failed: {text}"
        ))
    } else {
        ToolOutput::Ok(text)
    }
}

/// `McpServers` is shared between tasks.
const _: fn() = || {
    fn shared<T: Send + Sync + Clone>() {}
    shared::<McpServers>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(read_only: Option<bool>, destructive: Option<bool>) -> McpTool {
        McpTool {
            name: "t".into(),
            description: String::new(),
            input_schema: serde_json::json!({"type": "object"}),
            read_only_hint: read_only,
            destructive_hint: destructive,
            idempotent_hint: Some(true),
            open_world_hint: Some(false),
        }
    }

    #[test]
    fn untrusted_hints_are_ignored() {
        let t = tool(Some(true), Some(false));
        assert_eq!(t.annotations(false), ToolAnnotations::default());
    }

    #[test]
    fn trusted_hints_are_used_and_gaps_are_pessimistic() {
        let t = tool(Some(true), None);
        assert_eq!(
            t.annotations(true),
            ToolAnnotations {
                read_only: true,
                destructive: false,
                idempotent: true,
                open_world: false,
            }
        );
        let t = McpTool {
            idempotent_hint: None,
            open_world_hint: None,
            ..tool(None, None)
        };
        assert_eq!(t.annotations(true), ToolAnnotations::default());
    }

    #[test]
    fn results_join_text_and_describe_the_rest() {
        let ok = CallToolResult::success(vec![
            ContentBlock::text("one"),
            ContentBlock::text("two"),
            ContentBlock::image("AAAA", "image/png"),
        ]);
        let ToolOutput::Ok(text) = tool_output("s", "t", ok) else {
            panic!("expected Ok");
        };
        assert!(text.starts_with("one\ntwo\n{"), "{text}");
        assert!(text.contains("image/png"), "{text}");

        let err = CallToolResult::error(vec![ContentBlock::text("no such file")]);
        assert_eq!(
            tool_output("fs", "read", err),
            ToolOutput::Error("mcp server \"fs\": tool \"read\" failed: no such file".into())
        );
    }

    #[tokio::test]
    async fn unknown_servers_and_empty_configs() {
        let servers = McpServers::start(&[]);
        servers.ready(Duration::from_secs(1)).await;
        assert!(servers.status().is_empty());
        assert!(servers.tools("x").is_empty());
        assert_eq!(
            servers.call("x", "t", Map::new()).await,
            ToolOutput::Error("mcp server \"x\" is not configured".into())
        );
        servers.shutdown().await;
    }
}
