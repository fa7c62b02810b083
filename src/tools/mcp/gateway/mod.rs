//! The MCP gateway (DESIGN §11): the tools of every `[[mcp_servers]]` with `expose = true`,
//! served at `/mcp` (MCP Streamable HTTP) to `agent` identities, each call gated.
//!
//! One [`GatewaySession`] serves one MCP session. A `tools/call` becomes an approval through
//! the runner (gated exactly as an agent run's call of that tool), and the request waits
//! for it: approved, the call goes upstream and its result comes back unchanged; denied or
//! expired, the client reads why in an `isError` result. A client that cancels the request,
//! or ends its session, withdraws the approval, so no reviewer approves a call nobody waits
//! for. The wait may take as long as the reviewers do: the request's stream carries
//! progress notifications when the client asked for them, SSE keep-alives otherwise.

mod http;

pub use http::Gateway;

use super::{ExposedNames, McpServers};
use crate::api::Identity;
use crate::domain::{Approval, ApprovalStatus, Subject};
use crate::runner::{McpCall, RunnerHandle};
use http::Drops;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeRequestParams, InitializeResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ProtocolVersion, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServerHandler};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often a waiting call tells a client that asked for progress that it still waits.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// `context.via` of gateway approvals.
pub const VIA: &str = "mcp";

/// One MCP session of one identity.
#[derive(Clone)]
pub struct GatewaySession {
    runner: RunnerHandle,
    servers: McpServers,
    /// The identity that opened the session; nobody else may use it.
    owner: Arc<OnceLock<String>>,
    /// Requests whose client went away.
    drops: Arc<Drops>,
}

/// How a gated call ended for the waiting client.
enum Outcome {
    /// Approved: run these arguments.
    Run(serde_json::Map<String, serde_json::Value>),
    Refused(String),
    /// The client cancelled; nobody reads an answer.
    Withdrawn,
}

impl GatewaySession {
    /// The identity gatehouse's router authenticated for this request.
    fn identity(context: &RequestContext<RoleServer>) -> Result<Identity, McpError> {
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Identity>())
            .cloned()
            .ok_or_else(|| McpError::invalid_request("no authenticated identity", None))
    }

    /// The caller, who must be the identity that opened the session, and the session.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Result<(Identity, String), McpError> {
        let parts = context.extensions.get::<axum::http::request::Parts>();
        let who = Self::identity(context)?;
        let owner = self.owner.get_or_init(|| who.name.clone());
        if *owner != who.name {
            return Err(McpError::invalid_request(
                "this MCP session belongs to another identity",
                None,
            ));
        }
        let session = parts
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| McpError::invalid_request("no Mcp-Session-Id", None))?;
        Ok((who, session))
    }

    /// Every exposed tool under its `SERVER__TOOL` name, and the way back from the names.
    /// Servers still starting are waited for (up to their start timeout).
    async fn catalogue(&self) -> (Vec<Tool>, ExposedNames) {
        let exposed = self.servers.exposed();
        self.servers.settled(&exposed).await;
        let mut names = ExposedNames::new();
        let mut tools = Vec::new();
        for server in &exposed {
            for mut tool in self.servers.listed(server).0 {
                tool.name = Cow::Owned(names.insert(server, &tool.name));
                tools.push(tool);
            }
        }
        (tools, names)
    }

    /// Nobody waits for the call any more: no reviewer may approve it.
    async fn withdraw(&self, who: &str, id: uuid::Uuid) -> Outcome {
        if let Err(e) = self.runner.cancel_approval(who, id).await {
            tracing::warn!(%id, error = %e, "cannot withdraw a cancelled MCP call");
        }
        Outcome::Withdrawn
    }

    /// Wait until `approval` is no longer pending, telling the client it waits; withdraw it
    /// when the client cancels or its session ends.
    async fn wait(
        &self,
        who: &str,
        session: &str,
        mut approval: Approval,
        mut events: tokio::sync::broadcast::Receiver<crate::domain::Event>,
        context: &RequestContext<RoleServer>,
    ) -> Outcome {
        let progress = context.meta.get_progress_token();
        let request = context.id.to_string();
        let dropped = self.drops.dropped(session, &request);
        tokio::pin!(dropped);
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        let mut ticks = 0u32;
        let id = approval.id;
        while approval.is_pending() {
            tokio::select! {
                // `notifications/cancelled`, the session ending, or the request's HTTP
                // stream dropped by the client.
                _ = context.ct.cancelled() => return self.withdraw(who, id).await,
                _ = &mut dropped => return self.withdraw(who, id).await,
                event = events.recv() => match event {
                    Ok(e) => {
                        if let Subject::Approval(a) = e.subject
                            && a.id == id
                        {
                            approval = a;
                        }
                    }
                    Err(RecvError::Lagged(_)) => match self.runner.get(id).await {
                        Ok(Some(a)) => approval = a,
                        Ok(None) => return Outcome::Refused(format!("approval {id} vanished")),
                        Err(e) => return Outcome::Refused(format!("gatehouse failed: {e}")),
                    },
                    Err(RecvError::Closed) => {
                        return Outcome::Refused("gatehouse is stopping".into());
                    }
                },
                _ = tick.tick(), if progress.is_some() => {
                    ticks += 1;
                    if let Some(token) = &progress {
                        let mut p = ProgressNotificationParam::new(token.clone(), f64::from(ticks));
                        p.message = Some(format!(
                            "waiting for a reviewer (approval {id}, queue {})",
                            approval.queue
                        ));
                        let _ = context.peer.notify_progress(p).await;
                    }
                }
            }
        }
        match approval.status {
            ApprovalStatus::Approved => Outcome::Run(approval.arguments),
            ApprovalStatus::Cancelled => Outcome::Refused(format!(
                "The approval was cancelled: {}",
                approval.decision_reason()
            )),
            _ => Outcome::Refused(format!(
                "The reviewer denied this action: {}",
                approval.decision_reason()
            )),
        }
    }
}

fn refusal(text: String) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::error(vec![ContentBlock::text(text)]))
}

/// `name version` of the client, from its `initialize`.
fn client_of(peer: &Peer<RoleServer>) -> Option<String> {
    let info: Arc<InitializeRequestParams> = peer.peer_info()?;
    let Implementation { name, version, .. } = &info.client_info;
    Some(format!("{name} {version}"))
}

impl ServerHandler for GatewaySession {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        InitializeResult::new(capabilities)
            .with_server_info(Implementation::new("gatehouse", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Every tool call here waits for gatehouse's policies or a human reviewer. A \
                 denied call returns an error result with the reviewer's reason.",
            )
    }

    /// Sessions are what grants and the session id hang on, so the session-less revisions
    /// after 2025-11-25 are not offered.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        // The session is its opener's: a token of another identity cannot use its id.
        let who = Self::identity(&context)?;
        let _ = self.owner.set(who.name);
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        // Pass on `tools/list_changed` for as long as the session lives.
        let servers = self.servers.clone();
        let peer = context.peer.clone();
        tokio::spawn(async move {
            let version = |s: &McpServers| -> Vec<u64> {
                s.exposed().iter().map(|n| s.listed(n).1).collect()
            };
            let mut changes = servers.changes();
            let mut last = version(&servers);
            while changes.changed().await.is_ok() {
                if peer.is_transport_closed() {
                    return;
                }
                let now = version(&servers);
                if now != last {
                    last = now;
                    if peer.notify_tool_list_changed().await.is_err() {
                        return;
                    }
                }
            }
        });
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.caller(&context)?;
        let (tools, _) = self.catalogue().await;
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let (who, session) = self.caller(&context)?;
        let (tools, names) = self.catalogue().await;
        let Some((server, tool)) = names.resolve(&request.name) else {
            return Err(McpError::invalid_params(
                format!("unknown tool {:?}", request.name),
                None,
            ));
        };
        let (server, tool) = (server.to_owned(), tool.to_owned());
        let arguments = request.arguments.unwrap_or_default();
        // Arguments the tool cannot take are the client's mistake, not a reviewer's question.
        if let Some(t) = tools.iter().find(|t| t.name == request.name) {
            let schema = serde_json::Value::Object((*t.input_schema).clone());
            let args = serde_json::Value::Object(arguments.clone());
            if let Err(e) = crate::tools::validate_against(&schema, &tool, &args) {
                return Ok(refusal(format!("{e}. The call was not run.")));
            }
        }
        let mut ctx = BTreeMap::from([("via".to_owned(), VIA.to_owned())]);
        if let Some(client) = client_of(&context.peer) {
            ctx.insert("client".into(), client);
        }
        // Subscribe before submitting, so a decision right after is not missed.
        let events = self.runner.subscribe();
        let call = McpCall {
            server: server.clone(),
            tool: tool.clone(),
            arguments,
            session: session.clone(),
            context: ctx,
        };
        let approval = self
            .runner
            .submit_mcp_call(&who.name, call)
            .await
            .map_err(|e| McpError::internal_error(format!("gatehouse: {e}"), None))?;
        let approval_id = approval.id;
        match self
            .wait(&who.name, &session, approval, events, &context)
            .await
        {
            Outcome::Run(arguments) => {
                let result = self.servers.call_result(&server, &tool, arguments).await;
                let (ok, text) = match &result {
                    Ok(r) => match super::tool_output(&server, &tool, r.clone()) {
                        crate::tools::ToolOutput::Ok(t) => (true, t),
                        crate::tools::ToolOutput::Error(t) => (false, t),
                        crate::tools::ToolOutput::Unavailable { cause, .. } => (false, cause),
                    },
                    Err(e) => (false, e.clone()),
                };
                if let Err(e) = self.runner.mcp_call_done(approval_id, ok, text).await {
                    tracing::warn!(id = %approval_id, error = %e, "cannot audit an MCP call");
                }
                match result {
                    Ok(result) => Ok(CallToolResponse::Complete(result)),
                    Err(e) => Ok(refusal(e)),
                }
            }
            Outcome::Refused(text) => Ok(refusal(text)),
            Outcome::Withdrawn => Err(McpError::invalid_request("the call was cancelled", None)),
        }
    }
}
