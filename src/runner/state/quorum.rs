//! The two-person rule (DESIGN §13): a rule with `approvals = N` needs N approvals by
//! distinct reviewers, none of them the requester; any denial denies at once.
//!
//! Until the last approval the approval stays `pending`; each earlier one is written with an
//! `approval.approved_partially` record (the approval, with the reviewer added to
//! `approved_by`), so it is audited, published to consoles and durable over a crash. The
//! escalation clock is untouched by it. The approval that completes the quorum is an ordinary
//! decision (`approval.decided`, `decision.by` = the last reviewer), which releases the call.
//!
//! Nothing stands in for a reviewer under a quorum: a sticky grant never approves such a call
//! (see `create_approval`), and no grant can be made by approving one (`scope: "run"` is
//! refused), since a grant made by one reviewer would let later calls skip the second. Edited
//! arguments are refused too: every reviewer must have approved the same call.

use super::*;

impl Runner {
    /// Apply an approval under a quorum that is not the last one needed. `Ok(Some(a))`: it
    /// was recorded and `a` is still pending; `Ok(None)`: the decision proceeds as usual
    /// (a denial, no quorum, or the approval that completes it).
    pub(super) fn approve_partially(
        &mut self,
        who: &str,
        current: &Approval,
        req: &DecideRequest,
    ) -> Result<Option<Approval>, RunnerError> {
        let Some(needed) = current.approvals_needed else {
            return Ok(None);
        };
        if req.verdict != Verdict::Approve {
            return Ok(None);
        }
        if current.approved_by.iter().any(|r| r == who) {
            let msg = format!(
                "{who} already approved {}; it needs {} more approval(s) by other reviewers ({} of {needed} so far)",
                current.id,
                current.approvals_missing(),
                current.approved_by.len()
            );
            self.refused(who, Some(current.id), "already_approved_by_you", &msg);
            return Err(RunnerError::Conflict {
                code: "already_approved_by_you",
                message: msg,
                approval: Box::new(current.clone()),
            });
        }
        if req.scope.is_some() {
            return Err(RunnerError::Invalid(format!(
                "approval {} needs {needed} approvals (a two-person rule), so it cannot grant the tool for the rest of the run; approve it without a scope",
                current.id
            )));
        }
        if req.edited_arguments.is_some() {
            return Err(RunnerError::Invalid(format!(
                "approval {} needs {needed} approvals (a two-person rule): every reviewer approves the same call, so it cannot be edited",
                current.id
            )));
        }
        if current.approvals_missing() > 1 {
            let mut a = current.clone();
            a.approved_by.push(who.to_string());
            self.record(
                AuditKind::ApprovalApprovedPartially,
                who,
                Some(&a),
                json!({"approvals_needed": needed, "approved_by": a.approved_by}),
                None,
            )?;
            // Same deadlines as before: the escalation clock keeps running.
            self.approvals.pending.insert(a.clone());
            return Ok(Some(a));
        }
        Ok(None)
    }
}
