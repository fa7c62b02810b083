//! A submitter withdrawing its own pending approval (a hook whose host stopped waiting, an MCP
//! client that cancelled): nobody waits for the call any more, so no reviewer may approve it.

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
}
