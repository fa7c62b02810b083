//! The agent loop inside the runner: model turns, gated tool calls, pauses and resumption.
//!
//! A run moves only here, on the runner task, and every step is saved (with an audit record,
//! atomically) before anything acts on it. Model and tool calls run in spawned tasks and report
//! back over [`Internal`]. The order of writes is what makes a crash safe:
//! - a turn's approvals are written before the run that points at them, so after a crash an
//!   approval no run points at was proposed by a model turn that will be asked again: it is
//!   cancelled;
//! - a decision is written before the run learns of it, so at start a run waiting on a decided
//!   approval takes the decision then;
//! - a call is marked `executing` durably before the tool starts, so one found executing at
//!   start died with the process: it becomes `outcome_unknown` and a reviewer decides.

use super::*;
pub(super) use crate::agent::{Gate, ToolRef};
pub(super) use crate::domain::{CallState, RunCall, RunStatus};
pub(super) use crate::model::{Completion, Message, ModelError, ToolCall};
pub(super) use crate::policy::PolicyOutcome;
pub(super) use crate::tools::ToolOutput;

/// Tool output kept in a `tool.executed` audit record (the run keeps all of it).
pub(super) const AUDIT_OUTPUT_CHARS: usize = 2000;
/// Finished runs kept at hand for consoles.
const RECENT_RUNS: usize = 200;

/// A model or tool call's result, sent back to the runner task.
pub(in crate::runner) enum Internal {
    ModelDone {
        run: Uuid,
        result: Result<Completion, ModelError>,
    },
    ToolDone {
        run: Uuid,
        call_id: String,
        tool: String,
        output: ToolOutput,
    },
    /// A tool whose start waited on a commit did not start (its run was taken over).
    NotStarted,
}

/// The runs part: agent runs not yet finished, and what is in flight for them.
pub(super) struct Runs {
    /// Runs not yet finished, by id.
    pub(super) active: BTreeMap<Uuid, Run>,
    /// Finished runs for consoles' runs panes, oldest first.
    pub(super) recent: VecDeque<RunSummary>,
    /// Runs whose model call is under way.
    pub(super) model_calls: std::collections::HashSet<Uuid>,
    /// Model and tool calls report back here.
    pub(super) internal: mpsc::UnboundedSender<Internal>,
    /// Tool calls started and not yet reported back.
    pub(super) tools_running: usize,
}

impl Runs {
    pub(super) fn new(internal: mpsc::UnboundedSender<Internal>) -> Runs {
        Runs {
            active: BTreeMap::new(),
            recent: VecDeque::new(),
            model_calls: Default::default(),
            internal,
            tools_running: 0,
        }
    }
}

impl Runner {
    pub(super) fn internal_done(&mut self, done: Internal) {
        match done {
            Internal::ModelDone { run, result } => self.model_done(run, result),
            Internal::ToolDone {
                run,
                call_id,
                tool,
                output,
            } => self.tool_done(run, call_id, tool, output),
            Internal::NotStarted => {
                self.runs.tools_running = self.runs.tools_running.saturating_sub(1);
            }
        }
    }

    pub(super) fn start_run(
        &mut self,
        who: &str,
        agent_name: &str,
        input: String,
    ) -> Result<RunSummary, RunnerError> {
        let Some(agents) = self.cfg.agents.clone() else {
            return Err(RunnerError::Invalid(
                "no agents are configured (add [[agents]] to the config)".into(),
            ));
        };
        let Some(agent) = agents.get(agent_name) else {
            let known: Vec<&str> = agents.agents.keys().map(String::as_str).collect();
            return Err(RunnerError::Invalid(format!(
                "agent: no agent {agent_name:?} (configured: {})",
                known.join(", ")
            )));
        };
        if input.trim().is_empty() {
            return Err(RunnerError::Invalid("input: must not be empty".into()));
        }
        let now = domain::now();
        let mut messages = Vec::new();
        if !agent.instructions.trim().is_empty() {
            messages.push(Message::system(agent.instructions.clone()));
        }
        messages.push(Message::user(input.clone()));
        let run = Run {
            id: Uuid::now_v7(),
            agent: agent.name.clone(),
            input,
            started_by: who.to_string(),
            status: RunStatus::Running,
            turns: 0,
            max_turns: agent.max_turns,
            messages,
            calls: Vec::new(),
            output: None,
            error: None,
            problems: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        let summary = run.summary();
        self.save_run(AuditKind::RunStarted, who, run, json!({}))?;
        self.advance(summary.run_id);
        Ok(summary)
    }

    /// Write a run's new state with its audit record; keep it in memory while it is active.
    pub(super) fn save_run(
        &mut self,
        kind: AuditKind,
        actor: &str,
        mut run: Run,
        mut details: Value,
    ) -> Result<(), RunnerError> {
        run.updated_at = domain::now();
        let summary = run.summary();
        if let Value::Object(m) = &mut details {
            m.insert(
                "run".into(),
                serde_json::to_value(&summary).unwrap_or(Value::Null),
            );
        }
        let rec = self.ledger.seal(
            self.now(),
            kind,
            actor,
            None,
            Some(run.id.to_string()),
            details,
        );
        if let Err(e) = self.ledger.store.write_run(&run, &rec) {
            return Err(self.store_failed(e));
        }
        self.ledger.seq = rec.seq;
        self.ledger.last_hash = rec.hash.clone();
        self.ledger
            .commit
            .wrote(rec.seq, Some(Event::for_run(&rec, summary.clone())));
        if run.status.is_finished() {
            self.runs.active.remove(&run.id);
            self.runs.recent.retain(|r| r.run_id != run.id);
            self.runs.recent.push_back(summary);
            while self.runs.recent.len() > RECENT_RUNS {
                self.runs.recent.pop_front();
            }
        } else {
            self.runs.active.insert(run.id, run);
        }
        Ok(())
    }

    pub(super) fn end_run(
        &mut self,
        mut run: Run,
        actor: &str,
        status: RunStatus,
        output: Option<String>,
        error: Option<String>,
    ) {
        run.status = status;
        run.output = output;
        run.error = error;
        self.metrics.run_ended(status.as_str());
        let run_id = run.id.to_string();
        if self
            .save_run(AuditKind::RunEnded, actor, run, json!({}))
            .is_ok()
        {
            // Grants in a gatehouse run end with it (DESIGN §9).
            self.end_run_grants(&run_id);
        }
    }

    /// Take the run one step further, as far as it can go without waiting.
    pub(super) fn advance(&mut self, id: Uuid) {
        let Some(agents) = self.cfg.agents.clone() else {
            return;
        };
        let Some(run) = self.runs.active.get(&id) else {
            return;
        };
        if self.ledger.failed.is_some() || run.status.is_finished() {
            return;
        }
        // Stopping: calls already running finish, nothing new starts (it resumes at the next start).
        if self.stopping {
            return;
        }
        // A reviewer has yet to decide some call of this turn.
        if run
            .calls
            .iter()
            .any(|c| c.state.awaited_approval().is_some())
        {
            if run.status != RunStatus::PendingApproval {
                let mut r = run.clone();
                r.status = RunStatus::PendingApproval;
                let _ = self.save_run(AuditKind::RunUpdated, "gatehouse", r, json!({}));
            }
            return;
        }
        if run
            .calls
            .iter()
            .any(|c| matches!(c.state, CallState::Executing { .. }))
        {
            return;
        }
        // Every call is decided: approved ones run one at a time, in the model's order.
        if let Some(i) = run
            .calls
            .iter()
            .position(|c| matches!(c.state, CallState::Approved { .. }))
        {
            let mut r = run.clone();
            let CallState::Approved { arguments, .. } = r.calls[i].state.clone() else {
                return;
            };
            r.calls[i].state = CallState::Executing {
                started_at: domain::now(),
                arguments: arguments.clone(),
            };
            r.status = RunStatus::Running;
            let call_id = r.calls[i].call_id.clone();
            let tool = r.calls[i].tool.clone();
            let target = match r.calls[i].server.clone() {
                Some(server) => ToolRef::Mcp {
                    server,
                    tool: tool.clone(),
                },
                None => ToolRef::Local(tool.clone()),
            };
            let details = json!({"executing": {"call_id": call_id, "tool": tool, "server": r.calls[i].server}});
            if self
                .save_run(AuditKind::RunUpdated, "gatehouse", r, details)
                .is_err()
            {
                return;
            }
            // The tool starts only once its `executing` mark is durable: a crash from here on
            // can never lead to running it a second time.
            let tx = self.runs.internal.clone();
            self.runs.tools_running += 1;
            let published = self.ledger.published;
            self.ledger.commit.defer(
                Box::new(move |outcome| {
                    use super::super::commit::Outcome;
                    let lost = match outcome {
                        Outcome::Failed(_) => return,
                        Outcome::Durable { lost_runs, .. } => lost_runs.contains(&id),
                    };
                    if lost {
                        // Another daemon drives the run now: this one never starts its tool.
                        let _ = tx.send(Internal::NotStarted);
                        return;
                    }
                    tokio::spawn(async move {
                        let output = agents.call(&target, &arguments).await;
                        let _ = tx.send(Internal::ToolDone {
                            run: id,
                            call_id,
                            tool,
                            output,
                        });
                    });
                }),
                published,
            );
            return;
        }
        let mut run = run.clone();
        if !run.calls.is_empty() {
            // The turn is over: every call's result goes back to the model, in order.
            for c in std::mem::take(&mut run.calls) {
                let text = c.state.result_text().unwrap_or_default().to_string();
                run.messages.push(Message::tool(c.call_id, text));
            }
            run.status = RunStatus::Running;
            if self
                .save_run(AuditKind::RunUpdated, "gatehouse", run.clone(), json!({}))
                .is_err()
            {
                return;
            }
        }
        if run.turns >= run.max_turns {
            let error = format!(
                "stopped after {} turns without a final answer (max_turns = {})",
                run.turns, run.max_turns
            );
            self.end_run(run, "gatehouse", RunStatus::Failed, None, Some(error));
            return;
        }
        let Some(agent) = agents.get(&run.agent) else {
            let error = format!("agent {:?} is no longer configured", run.agent);
            self.end_run(run, "gatehouse", RunStatus::Failed, None, Some(error));
            return;
        };
        let model = match agent.model.clone() {
            Ok(m) => m,
            Err(e) => {
                self.end_run(run, "gatehouse", RunStatus::Failed, None, Some(e));
                return;
            }
        };
        if !self.runs.model_calls.insert(id) {
            return;
        }
        let messages = run.messages;
        let tx = self.runs.internal.clone();
        let (agents, name) = (agents.clone(), agent.name.clone());
        tokio::spawn(async move {
            // A server still starting (the first seconds after `serve`) is waited for, so
            // the model is offered its tools instead of none (DESIGN §11).
            let servers = agents.get(&name).map(|a| a.mcp_servers.clone());
            if let (Some(mcp), Some(servers)) = (&agents.mcp, &servers) {
                mcp.settled(servers).await;
            }
            let specs = agents
                .get(&name)
                .map(|a| agents.specs(a))
                .unwrap_or_default();
            let result = model.complete(&messages, &specs).await;
            let _ = tx.send(Internal::ModelDone { run: id, result });
        });
    }

    pub(super) fn model_done(&mut self, id: Uuid, result: Result<Completion, ModelError>) {
        self.runs.model_calls.remove(&id);
        let Some(mut run) = self.runs.active.get(&id).cloned() else {
            return; // cancelled meanwhile
        };
        if run.status.is_finished() || !run.calls.is_empty() {
            return;
        }
        let completion = match result {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("run {id} of {} failed: the model answered: {e}", run.agent);
                let actor = run.agent.clone();
                self.end_run(run, &actor, RunStatus::Failed, None, Some(e.to_string()));
                return;
            }
        };
        run.turns += 1;
        run.messages.push(Message::Assistant {
            content: completion.content.clone(),
            tool_calls: completion.tool_calls.clone(),
        });
        let actor = run.agent.clone();
        if completion.tool_calls.is_empty() {
            let output = completion.content.unwrap_or_default();
            self.end_run(run, &actor, RunStatus::Completed, Some(output), None);
            return;
        }
        let reasoning = completion
            .content
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("no reasoning given")
            .to_string();
        let mut calls = Vec::with_capacity(completion.tool_calls.len());
        for tc in &completion.tool_calls {
            let call = self.gate(&run, tc, &reasoning);
            if self.ledger.failed.is_some() {
                return;
            }
            calls.push(call);
        }
        let proposed: Vec<Value> = calls
            .iter()
            .map(|c| json!({"call_id": c.call_id, "tool": c.tool, "state": c.state.name()}))
            .collect();
        run.calls = calls;
        if run
            .calls
            .iter()
            .any(|c| c.state.awaited_approval().is_some())
        {
            run.status = RunStatus::PendingApproval;
        }
        if self
            .save_run(
                AuditKind::RunUpdated,
                &actor,
                run,
                json!({ "proposed": proposed }),
            )
            .is_ok()
        {
            self.advance(id);
        }
    }

    /// A run's approval is no longer pending: the call it gates learns the outcome.
    pub(super) fn approval_settled(&mut self, a: &Approval) {
        let Some(run_id) = a.run_id.as_deref().and_then(|r| Uuid::parse_str(r).ok()) else {
            return;
        };
        let Some(run) = self.runs.active.get(&run_id) else {
            return;
        };
        let Some(i) = run
            .calls
            .iter()
            .position(|c| c.state.awaited_approval() == Some(a.id))
        else {
            return;
        };
        let mut r = run.clone();
        let call = &mut r.calls[i];
        let proposed = call.arguments.clone().unwrap_or_default();
        call.state = match (&call.state, a.status) {
            (_, ApprovalStatus::Pending) => return,
            (CallState::OutcomeUnknown { arguments, .. }, ApprovalStatus::Approved) => {
                CallState::Approved {
                    approval_id: Some(a.id),
                    by: decided_by(a),
                    arguments: arguments.clone(),
                }
            }
            (CallState::OutcomeUnknown { .. }, _) => CallState::Done {
                output: ToolOutput::Error(format!(
                    "The outcome of this call is unknown: gatehouse stopped while it was running, \
                     and it was not run again ({}: {}).",
                    decided_by(a),
                    a.decision_reason()
                )),
            },
            _ => call_state_for(a, proposed),
        };
        let actor = decided_by(a);
        let details =
            json!({"approval_id": a.id, "call_id": call.call_id, "state": call.state.name()});
        if self
            .save_run(AuditKind::RunUpdated, &actor, r, details)
            .is_ok()
        {
            self.advance(run_id);
        }
    }

    pub(super) fn tool_done(
        &mut self,
        id: Uuid,
        call_id: String,
        tool: String,
        output: ToolOutput,
    ) {
        self.runs.tools_running = self.runs.tools_running.saturating_sub(1);
        if output.is_ok() {
            self.metrics.tool_call(true);
        } else {
            self.metrics.tool_call(false);
        }
        let mut details = json!({
            "call_id": call_id,
            "tool": tool,
            "ok": output.is_ok(),
            "output": crate::text::clip(output.text(), AUDIT_OUTPUT_CHARS),
        });
        let problem = match &output {
            ToolOutput::Unavailable { cause, .. } => {
                tracing::error!("run {id}: tool {tool} could not be run: {cause}");
                details["cause"] = json!(crate::text::clip(cause, AUDIT_OUTPUT_CHARS));
                Some(format!("{tool} could not be run: {cause}"))
            }
            _ => None,
        };
        // A run cancelled while its tool ran is no longer active; the execution is still
        // recorded, against the run as it stands.
        let run = match self.runs.active.get(&id) {
            Some(r) => Some(r.clone()),
            None => self.ledger.store.run(id).ok().flatten(),
        };
        let Some(mut run) = run else {
            return;
        };
        run.problems.extend(problem);
        if let Some(c) = run
            .calls
            .iter_mut()
            .find(|c| c.call_id == call_id && matches!(c.state, CallState::Executing { .. }))
        {
            c.state = CallState::Done {
                output: told_of_edit(c, output),
            };
        }
        if self
            .save_run(AuditKind::ToolExecuted, "gatehouse", run, details)
            .is_ok()
        {
            self.advance(id);
        }
    }
}

/// The call state an approval's outcome gives.
/// A call the reviewer edited before it ran: the model learns what ran, so it does not tell
/// the customer about the call it proposed (DESIGN §9, Edits).
pub(super) fn told_of_edit(c: &crate::domain::RunCall, output: ToolOutput) -> ToolOutput {
    let CallState::Executing { arguments, .. } = &c.state else {
        return output;
    };
    if c.arguments
        .as_ref()
        .is_none_or(|proposed| proposed == arguments)
    {
        return output;
    }
    let ran = serde_json::to_string(arguments).unwrap_or_default();
    let tell = |text: &str| {
        format!("The reviewer changed the arguments to {ran} before running it: {text}")
    };
    match output {
        ToolOutput::Ok(t) => ToolOutput::Ok(tell(&t)),
        ToolOutput::Error(t) => ToolOutput::Error(tell(&t)),
        ToolOutput::Unavailable { message, cause } => ToolOutput::Unavailable {
            message: tell(&message),
            cause,
        },
    }
}

pub(super) fn call_state_for(a: &Approval, proposed: Map<String, Value>) -> CallState {
    match a.status {
        ApprovalStatus::Pending => CallState::Waiting { approval_id: a.id },
        ApprovalStatus::Approved => CallState::Approved {
            approval_id: Some(a.id),
            by: decided_by(a),
            // The reviewer's edit, when there was one, is what runs.
            arguments: a
                .decision
                .as_ref()
                .and_then(|d| d.arguments.clone())
                .unwrap_or(proposed),
        },
        ApprovalStatus::Denied => {
            let by = decided_by(a);
            let message = if by.starts_with("policy:") {
                format!("The policy denied this action: {}", a.decision_reason())
            } else {
                format!("The reviewer denied this action: {}", a.decision_reason())
            };
            CallState::Denied {
                approval_id: Some(a.id),
                by,
                message,
            }
        }
        ApprovalStatus::Expired => CallState::Denied {
            approval_id: Some(a.id),
            by: decided_by(a),
            message: format!(
                "No reviewer decided in time, so this action was not taken: {}",
                a.decision_reason()
            ),
        },
        ApprovalStatus::Cancelled => CallState::Denied {
            approval_id: Some(a.id),
            by: decided_by(a),
            message: format!("This action was cancelled: {}", a.decision_reason()),
        },
    }
}

pub(super) fn decided_by(a: &Approval) -> String {
    a.decision
        .as_ref()
        .map_or_else(|| "gatehouse".to_string(), |d| d.by.clone())
}
