//! A model's tool call meets the gate: policy, grant, or a new approval.

use super::runs::*;
use super::*;

impl Runner {
    /// Decide what happens to one proposed call: rejected, approved, denied, or waiting.
    pub(super) fn gate(&mut self, run: &Run, tc: &ToolCall, reasoning: &str) -> RunCall {
        let mut call = RunCall {
            call_id: tc.id.clone(),
            tool: tc.name.clone(),
            server: None,
            arguments: None,
            state: CallState::Rejected {
                message: String::new(),
            },
        };
        let Some(agents) = self.cfg.agents.clone() else {
            return call;
        };
        let Some(agent) = agents.get(&run.agent) else {
            return call;
        };
        let Some(target) = agents.resolve(agent, &tc.name) else {
            if let Some(message) = agents.unavailable(agent, &tc.name) {
                call.state = CallState::Rejected { message };
                return call;
            }
            let names: Vec<String> = agents.specs(agent).into_iter().map(|s| s.name).collect();
            call.state = CallState::Rejected {
                message: format!(
                    "Unknown tool {:?}: this agent's tools are {}. The call was not run.",
                    tc.name,
                    names.join(", ")
                ),
            };
            return call;
        };
        if let ToolRef::Mcp { server, tool } = &target {
            // The approval names the server and the server's own tool name.
            call.server = Some(server.clone());
            call.tool = tool.clone();
        }
        // Invalid arguments go back to the model, never to a reviewer as if they were valid.
        let args = match agents.validate_raw(&target, &tc.arguments) {
            Ok(args) => args,
            Err(e) => {
                call.state = CallState::Rejected {
                    message: format!("{e}. The call was not run; correct the arguments."),
                };
                return call;
            }
        };
        call.arguments = Some(args.clone());
        let outcome = match agents.gate(&target) {
            Gate::Approve(why) => {
                call.state = CallState::Approved {
                    approval_id: None,
                    by: why,
                    arguments: args,
                };
                return call;
            }
            Gate::Ask(why) => PolicyOutcome::ask(why),
            Gate::Policy(name) => {
                let roles = self
                    .cfg
                    .identities
                    .get(&run.started_by)
                    .cloned()
                    .unwrap_or_default();
                let run_var = json!({
                    "id": run.id.to_string(),
                    "agent": run.agent,
                    "turns": run.turns,
                    "started_by": run.started_by,
                });
                self.policies.evaluate(
                    &CallContext {
                        tool: &call.tool,
                        server: call.server.as_deref(),
                        args: &args,
                        agent: Some(&run.agent),
                        run: Some(&run_var),
                        annotations: agents.annotations(&target),
                        policy: Some(&name),
                        identity: crate::policy::IdentityFacts {
                            name: &run.started_by,
                            roles: &roles,
                        },
                        context: None,
                    },
                    self.now(),
                    &self.approvals.limits,
                )
            }
        };
        let req = SubmitRequest {
            tool: call.tool.clone(),
            server: call.server.clone(),
            arguments: args.clone(),
            reasoning: Some(reasoning.to_string()),
            agent: Some(run.agent.clone()),
            // gatehouse drives this run and its MCP servers: nothing here is a claim.
            agent_verified: true,
            server_verified: true,
            run_id: Some(run.id.to_string()),
            timeout: agents.approval_timeout(&target),
            editable: true,
            ..Default::default()
        };
        let started_by = run.started_by.clone();
        call.state = match self.create_approval(&started_by, req, outcome, None) {
            Err(e) => CallState::Rejected {
                message: format!("gatehouse could not record this call: {e}"),
            },
            Ok(a) => call_state_for(&a, args),
        };
        call
    }
}
