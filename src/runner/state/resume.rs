//! Runs found unfinished at start (or taken over): resumed, or their cut-short calls marked
//! `outcome_unknown`.

use super::runs::*;
use super::*;

impl Runner {
    /// After a restart: settle what the crash left half done, then let every run go on.
    pub(super) fn resume_runs(&mut self) {
        let ids: Vec<Uuid> = self.runs.active.keys().copied().collect();
        for id in &ids {
            self.settle_cut_short(*id);
        }
        // Approvals no active run waits on: proposed by a model turn that was cut short (and
        // will be asked again), or left by a run that was cancelled.
        let orphans: Vec<(Uuid, String)> = self
            .approvals
            .pending
            .iter()
            .filter_map(|(&id, a)| {
                let run_id = Uuid::parse_str(a.run_id.as_deref()?).ok()?;
                let awaited = self.runs.active.get(&run_id).is_some_and(|r| {
                    r.calls
                        .iter()
                        .any(|c| c.state.awaited_approval() == Some(id))
                });
                if awaited {
                    return None;
                }
                match self.runs.active.get(&run_id) {
                    Some(_) => Some((
                        id,
                        "gatehouse restarted before the model's turn was saved; the turn is asked again"
                            .to_string(),
                    )),
                    // A run another daemon drives (a shared store) keeps its approvals.
                    None => match self.ledger.store.run(run_id) {
                        Ok(Some(r)) if r.status.is_finished() => Some((
                            id,
                            format!("run {run_id} is already {}", r.status.as_str()),
                        )),
                        _ => None,
                    },
                }
            })
            .collect();
        for (id, reason) in orphans {
            if self.cancel_approval(id, "gatehouse", &reason).is_err() {
                return;
            }
        }
        for id in ids {
            self.advance(id);
        }
    }

    /// What the end of the daemon that drove run `id` left half done: calls cut short
    /// become `outcome_unknown`, and decisions it never took are taken.
    fn settle_cut_short(&mut self, id: Uuid) {
        self.mark_outcome_unknown(id);
        let awaited: Vec<Uuid> = self.runs.active.get(&id).map_or_else(Vec::new, |r| {
            r.calls
                .iter()
                .filter_map(|c| c.state.awaited_approval())
                .collect()
        });
        for approval_id in awaited {
            if self.approvals.pending.contains(&approval_id) {
                continue;
            }
            if let Ok(Some(a)) = self.ledger.store.approval(approval_id) {
                self.approval_settled(&a);
            }
        }
    }

    /// A run whose daemon's lease lapsed (it died), taken over on a shared store: recovered
    /// exactly as at start, then it goes on here.
    pub(super) fn take_over_run(&mut self, run: Run) {
        let id = run.id;
        if self.runs.active.contains_key(&id) {
            return;
        }
        tracing::warn!("taking over run {id}: the daemon that drove it stopped renewing its lease");
        self.runs.active.insert(id, run);
        self.settle_cut_short(id);
        self.advance(id);
    }

    /// Calls found `executing` at start died with the process: never run them again on our
    /// own; ask a reviewer whether to retry or to report the failure to the agent.
    pub(super) fn mark_outcome_unknown(&mut self, id: Uuid) {
        let Some(run) = self.runs.active.get(&id).cloned() else {
            return;
        };
        let mut r = run;
        let mut changed = Vec::new();
        for i in 0..r.calls.len() {
            let CallState::Executing {
                started_at,
                arguments,
            } = r.calls[i].state.clone()
            else {
                continue;
            };
            let tool = r.calls[i].tool.clone();
            let req = SubmitRequest {
                tool: tool.clone(),
                server: r.calls[i].server.clone(),
                arguments: arguments.clone(),
                reasoning: Some(format!(
                    "OUTCOME UNKNOWN: gatehouse stopped while this call was running (it started \
                     at {}), so whether it took effect is unknown. Approve to run it again; deny \
                     to report the failure to the agent.",
                    started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )),
                agent: Some(r.agent.clone()),
                agent_verified: true,
                server_verified: true,
                run_id: Some(id.to_string()),
                outcome_unknown: true,
                ..Default::default()
            };
            let outcome = PolicyOutcome::ask(format!(
                "the outcome of {tool} is unknown after a restart; a reviewer decides whether it runs again"
            ));
            let started_by = r.started_by.clone();
            match self.create_approval(&started_by, req, outcome, None) {
                Ok(a) => {
                    tracing::warn!(
                        "run {id}: {tool} was running when gatehouse stopped; its outcome is \
                         unknown, so it will not run again unless a reviewer approves {}",
                        a.id
                    );
                    r.calls[i].state = CallState::OutcomeUnknown {
                        approval_id: a.id,
                        arguments,
                    };
                    changed.push(
                        json!({"call_id": r.calls[i].call_id, "tool": tool, "approval_id": a.id}),
                    );
                }
                Err(_) => return,
            }
        }
        if !changed.is_empty() {
            r.status = RunStatus::PendingApproval;
            let _ = self.save_run(
                AuditKind::RunUpdated,
                "gatehouse",
                r,
                json!({ "outcome_unknown": changed }),
            );
        }
    }
}
