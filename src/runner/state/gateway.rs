//! MCP clients' tool calls through the gateway (DESIGN §11): gated exactly as an agent run's
//! call of the same MCP tool (the server's `approval` mode and per-tool overrides, policies,
//! queues, grants), but submitted by an identity, in an MCP session instead of a run.

use super::*;
use crate::agent::{Gate, ToolRef};
use crate::policy::PolicyOutcome;

impl Runner {
    pub(super) fn submit_mcp_call(
        &mut self,
        who: &str,
        call: McpCall,
    ) -> Result<Approval, RunnerError> {
        let agents = self.cfg.agents.clone().ok_or_else(|| {
            RunnerError::NotFound(format!("mcp server {:?} is not configured", call.server))
        })?;
        let target = ToolRef::Mcp {
            server: call.server.clone(),
            tool: call.tool.clone(),
        };
        let outcome = match agents.gate(&target) {
            // Still recorded, decided at once: the audit shows every call that went through.
            Gate::Approve(reason) => PolicyOutcome::approve(reason),
            Gate::Ask(reason) => PolicyOutcome::ask(reason),
            Gate::Policy(name) => {
                let roles = self.cfg.identities.get(who).cloned().unwrap_or_default();
                self.policies.evaluate(
                    &CallContext {
                        tool: &call.tool,
                        server: Some(&call.server),
                        args: &call.arguments,
                        // The identity is the one authenticated fact about an MCP client.
                        agent: Some(who),
                        run: None,
                        annotations: agents.annotations(&target),
                        policy: Some(&name),
                        identity: crate::policy::IdentityFacts {
                            name: who,
                            roles: &roles,
                        },
                        context: Some(&call.context),
                    },
                    self.now(),
                    &self.approvals.limits,
                )
            }
        };
        let req = SubmitRequest {
            tool: call.tool,
            server: Some(call.server),
            arguments: call.arguments,
            agent: Some(who.to_string()),
            agent_verified: true,
            // gatehouse's own server, named by the gateway, not by the client.
            server_verified: true,
            run_id: Some(call.session),
            context: Some(call.context),
            ..Default::default()
        };
        self.create_approval(who, req, outcome, None)
    }

    /// An approved gateway call ran: a `tool.executed` record. It names the approval in its
    /// details but carries no approval (nothing about the approval changes) and no run (the
    /// MCP session is not a gatehouse run), so it is audit only, never an event.
    pub(super) fn mcp_call_done(
        &mut self,
        id: Uuid,
        ok: bool,
        output: &str,
    ) -> Result<(), RunnerError> {
        let a = self
            .find(id)?
            .ok_or_else(|| RunnerError::NotFound(format!("no approval {id}")))?;
        if ok {
            self.metrics.tool_call(true);
        } else {
            self.metrics.tool_call(false);
        }
        let details = json!({
            "approval_id": id,
            "session": a.run_id,
            "server": a.server,
            "tool": a.tool,
            "via": crate::tools::mcp::gateway::VIA,
            "ok": ok,
            "output": crate::text::clip(output, super::runs::AUDIT_OUTPUT_CHARS),
        });
        self.record(AuditKind::ToolExecuted, "gatehouse", None, details, None)
    }
}
