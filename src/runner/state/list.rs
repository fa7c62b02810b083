//! Reads of approvals: one by id, and pages of a list.

use super::*;

impl Runner {
    pub(super) fn find(&self, id: Uuid) -> Result<Option<Approval>, RunnerError> {
        if let Some(a) = self.pending_approval(id)? {
            return Ok(Some(a));
        }
        self.ledger.store.approval(id).map_err(store_err)
    }

    /// A pending approval, whole: held in memory, or read back from the store (which has
    /// every write this runner made, flushed or not).
    pub(super) fn pending_approval(&self, id: Uuid) -> Result<Option<Approval>, RunnerError> {
        let Some(entry) = self.approvals.pending.entry(&id) else {
            return Ok(None);
        };
        if let Some(a) = entry.held() {
            return Ok(Some(a.clone()));
        }
        match self.ledger.store.approval(id).map_err(store_err)? {
            Some(a) if a.is_pending() => Ok(Some(a)),
            // The index and the store disagree: nothing this runner wrote can cause that.
            other => Err(RunnerError::Unavailable(format!(
                "approval {id} is pending in memory but {} in the store",
                other.map_or("missing", |a| a.status.as_str())
            ))),
        }
    }

    pub(super) fn get(&self, id: Uuid) -> Result<Option<Approval>, RunnerError> {
        self.find(id)
    }

    pub(super) fn list(&self, q: ListQuery) -> Result<ApprovalPage, RunnerError> {
        let limit = q.limit.clamp(1, MAX_LIST);
        let keep = |a: &Approval| {
            q.status.is_none_or(|s| a.status == s)
                && q.queue.as_ref().is_none_or(|qq| &a.queue == qq)
                && q.requested_by.as_ref().is_none_or(|r| &a.requested_by == r)
        };
        // The same filter over what is kept of a pending approval.
        let keep_pending = |e: &pending::Entry| {
            q.status.is_none_or(|s| s == ApprovalStatus::Pending)
                && q.queue.as_deref().is_none_or(|qq| &*e.queue == qq)
                && q.requested_by
                    .as_deref()
                    .is_none_or(|r| &*e.requested_by == r)
        };
        let mut out: Vec<Approval> = Vec::new();
        let mut more = false;
        let lower = match q.after {
            Some(after) => std::ops::Bound::Excluded(after),
            None => std::ops::Bound::Unbounded,
        };
        let mut pending = self
            .approvals
            .pending
            .range(lower)
            .filter(|(_, e)| keep_pending(e))
            .map(|(id, _)| *id)
            .peekable();
        if q.status == Some(ApprovalStatus::Pending) {
            for id in pending {
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.extend(self.pending_approval(id)?);
            }
        } else {
            // Decided approvals come from the store, pending ones from memory: merge by id.
            let include_pending = q.status.is_none();
            let mut decided = self.ledger.store.approvals_after(q.after).peekable();
            loop {
                let next_decided = match decided.peek() {
                    Some(Ok(a)) => Some(a.id),
                    Some(Err(_)) => {
                        if let Some(Err(e)) = decided.next() {
                            return Err(store_err(e));
                        }
                        continue;
                    }
                    None => None,
                };
                let next_pending = if include_pending {
                    pending.peek().copied()
                } else {
                    None
                };
                let take_pending = match (next_pending, next_decided) {
                    (None, None) => break,
                    (Some(p), Some(d)) => p < d,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                };
                let a = if take_pending {
                    match pending.next() {
                        Some(id) => self.pending_approval(id)?,
                        None => None,
                    }
                } else {
                    decided.next().and_then(Result::ok)
                };
                let Some(a) = a else { break };
                if !take_pending && !keep(&a) {
                    continue;
                }
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push(a);
            }
        }
        let next = if more { out.last().map(|a| a.id) } else { None };
        Ok(ApprovalPage {
            approvals: out,
            next,
        })
    }
}

pub(super) fn standing(a: &Approval) -> String {
    match &a.decision {
        Some(d) => format!(
            "approval {} is already {} (by {} at {})",
            a.id,
            a.status.as_str(),
            d.by,
            d.at.to_rfc3339()
        ),
        None => format!("approval {} is already {}", a.id, a.status.as_str()),
    }
}
