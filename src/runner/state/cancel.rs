//! A submitter withdrawing its own pending approval (a hook whose host stopped waiting, an MCP
//! client that cancelled): nobody waits for the call any more, so no reviewer may approve it.

use super::runs::*;
use super::*;

impl Runner {
    pub(super) fn withdraw(&mut self, who: &str, id: Uuid) -> Result<Approval, RunnerError> {
        // Another identity's approval is answered as missing: an agent learns nothing of
        // what others submitted.
        let Some(a) = self.find(id)?.filter(|a| a.requested_by == who) else {
            return Err(RunnerError::NotFound(format!(
                "no approval {id} submitted by {who}"
            )));
        };
        if !a.is_pending() {
            return Err(RunnerError::Conflict {
                code: "already_decided",
                message: standing(&a),
                approval: Box::new(a),
            });
        }
        let reason =
            format!("cancelled by its submitter {who}: nobody waits for this call any more");
        self.cancel_approval(id, who, &reason)?;
        self.find(id)?
            .ok_or_else(|| RunnerError::Unavailable(format!("approval {id} vanished after cancel")))
    }

    pub(super) fn cancel_run(&mut self, who: &str, id: Uuid) -> Result<RunSummary, RunnerError> {
        let Some(run) = self.runs.active.get(&id).cloned() else {
            return match self.ledger.store.run(id).map_err(store_err)? {
                None => Err(RunnerError::NotFound(format!("no run {id}"))),
                Some(r) => Err(RunnerError::RunFinished(format!(
                    "run {id} is already {}",
                    r.status.as_str()
                ))),
            };
        };
        let awaited: Vec<Uuid> = run
            .calls
            .iter()
            .filter_map(|c| c.state.awaited_approval())
            .collect();
        let mut ended = run;
        ended.status = RunStatus::Cancelled;
        let reason = format!("run {id} was cancelled by {who}");
        for c in &mut ended.calls {
            if let Some(approval_id) = c.state.awaited_approval() {
                c.state = CallState::Denied {
                    approval_id: Some(approval_id),
                    by: who.to_string(),
                    message: format!("This action was cancelled: {reason}"),
                };
            }
        }
        self.metrics.run_ended("cancelled");
        let summary = {
            let mut s = ended.summary();
            s.pending.clear();
            s
        };
        // The run ends first: a crash before its approvals are cancelled leaves approvals of
        // a finished run, which the next start cancels.
        self.save_run(
            AuditKind::RunEnded,
            who,
            ended,
            json!({"cancelled_by": who}),
        )?;
        self.runs.model_calls.remove(&id);
        for approval_id in awaited {
            self.cancel_approval(approval_id, who, &reason)?;
        }
        Ok(summary)
    }

    pub(super) fn cancel_approval(
        &mut self,
        id: Uuid,
        who: &str,
        reason: &str,
    ) -> Result<(), RunnerError> {
        let Some(mut a) = self.pending_approval(id)? else {
            return Ok(());
        };
        a.status = ApprovalStatus::Cancelled;
        a.decision = Some(Decision {
            by: who.to_string(),
            at: domain::now(),
            reason: Some(reason.to_string()),
            arguments_sha256: None,
            arguments: None,
            scope: None,
        });
        self.record(AuditKind::ApprovalCancelled, who, Some(&a), json!({}), None)?;
        self.settle(&a);
        Ok(())
    }

    /// Edited arguments of a run's call must fit the tool's schema, like the model's own.
    pub(super) fn check_edit(
        &self,
        a: &Approval,
        edited: &Map<String, Value>,
    ) -> Result<(), RunnerError> {
        if a.run_id.is_none() {
            return Ok(());
        }
        let Some(agents) = &self.cfg.agents else {
            return Ok(());
        };
        let target = match &a.server {
            Some(server) => ToolRef::Mcp {
                server: server.clone(),
                tool: a.tool.clone(),
            },
            None if agents.tools.contains(&a.tool) => ToolRef::Local(a.tool.clone()),
            None => return Ok(()),
        };
        agents
            .validate(&target, &Value::Object(edited.clone()))
            .map(|_| ())
            .map_err(|e| RunnerError::Invalid(format!("edited arguments: {e}")))
    }
}
