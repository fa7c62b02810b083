//! Sticky grants (`A`, `"scope": "run"`), keyed by (requesting identity, run, tool, server):
//! a grant approves later calls of its own identity only, ends with the gatehouse run it
//! belongs to, or `grant_ttl` after it was made for an external run id (DESIGN §9).

use super::*;

/// The in-memory key of a grant.
pub(super) type GrantKey = (String, String, String, Option<String>);

fn key_of(g: &Grant) -> Option<GrantKey> {
    Some((
        g.identity.clone()?,
        g.run_id.clone(),
        g.tool.clone(),
        g.server.clone(),
    ))
}

impl Runner {
    /// Load the stored grants, dropping those whose life is over. A grant stored without an
    /// identity (by an older version) is dropped with a log line: widening it to every
    /// identity is what DESIGN §9 forbids, and guessing its identity would be a guess.
    pub(super) fn load_grants(&mut self) -> Result<(), StoreError> {
        let now = self.now();
        for g in self.ledger.store.grants()? {
            let over = match (&g.identity, g.expires_at) {
                (None, _) => {
                    tracing::warn!(
                        "dropping the grant of {} in run {} (by {}): it was stored by an older \
                         version without the identity it belongs to",
                        g.tool,
                        g.run_id,
                        g.granted_by
                    );
                    true
                }
                (Some(_), Some(at)) => at <= now,
                (Some(_), None) => !self.is_active_run(&g.run_id),
            };
            if over {
                self.ledger.store.remove_grant(&g)?;
            } else if let Some(k) = key_of(&g) {
                self.approvals.grants.insert(k, g);
            }
        }
        Ok(())
    }

    /// Whether `run_id` names a run gatehouse drives that has not finished.
    fn is_active_run(&self, run_id: &str) -> bool {
        Uuid::parse_str(run_id).is_ok_and(|id| self.runs.active.contains_key(&id))
    }

    /// The grant that approves this new approval, if one does: same identity, run, tool
    /// and server, still alive.
    pub(super) fn grant_for(&self, a: &Approval) -> Option<Grant> {
        let run = a.run_id.as_ref()?;
        let k = (
            a.requested_by.clone(),
            run.clone(),
            a.tool.clone(),
            a.server.clone(),
        );
        let now = self.now();
        self.approvals
            .grants
            .get(&k)
            .filter(|g| g.covers(&a.requested_by, run, &a.tool, a.server.as_deref(), now))
            .cloned()
    }

    /// The grant a reviewer's `"scope": "run"` approval of `a` makes.
    pub(super) fn new_grant(&self, who: &str, a: &Approval, run_id: String) -> Grant {
        let now = self.now();
        // A gatehouse run ends the grant itself; an external run id has no end we can see.
        let expires_at = (!self.is_active_run(&run_id)).then(|| after(now, self.cfg.grant_ttl));
        Grant {
            identity: Some(a.requested_by.clone()),
            run_id,
            tool: a.tool.clone(),
            server: a.server.clone(),
            granted_by: who.to_string(),
            at: now,
            approval_id: a.id,
            expires_at,
        }
    }

    /// Forget a grant another daemon revoked (its record says so; the store row is gone).
    pub(super) fn forget_grant(&mut self, g: &Grant) {
        if let Some(k) = key_of(g) {
            self.approvals.grants.remove(&k);
        }
    }

    pub(super) fn keep_grant(&mut self, g: Grant) {
        if let Some(k) = key_of(&g) {
            self.approvals.grants.insert(k, g);
        }
    }

    /// The grants in force, oldest first (expired ones are left out, and forgotten).
    pub(super) fn live_grants(&mut self) -> Vec<Grant> {
        let now = self.now();
        let expired: Vec<GrantKey> = self
            .approvals
            .grants
            .iter()
            .filter(|(_, g)| g.expires_at.is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(g) = self.approvals.grants.remove(&k)
                && let Err(e) = self.ledger.store.remove_grant(&g)
            {
                self.store_failed(e);
            }
        }
        let mut all: Vec<Grant> = self.approvals.grants.values().cloned().collect();
        all.sort_by_key(|g| g.at);
        all
    }

    /// A gatehouse run ended: its grants end with it.
    pub(super) fn end_run_grants(&mut self, run_id: &str) {
        let ended: Vec<GrantKey> = self
            .approvals
            .grants
            .keys()
            .filter(|k| k.1 == run_id)
            .cloned()
            .collect();
        for k in ended {
            if let Some(g) = self.approvals.grants.remove(&k)
                && let Err(e) = self.ledger.store.remove_grant(&g)
            {
                self.store_failed(e);
                return;
            }
        }
    }

    /// Withdraw the grants of `tool` (on `server`) in `run_id`: of one identity when named,
    /// else of every identity holding one. Any reviewer may revoke: it only takes power away.
    pub(super) fn revoke(
        &mut self,
        who: &str,
        run_id: String,
        tool: String,
        server: Option<String>,
        identity: Option<String>,
    ) -> Result<Vec<Grant>, RunnerError> {
        let matching: Vec<GrantKey> = self
            .approvals
            .grants
            .keys()
            .filter(|k| {
                k.1 == run_id
                    && k.2 == tool
                    && k.3 == server
                    && identity.as_ref().is_none_or(|i| &k.0 == i)
            })
            .cloned()
            .collect();
        if matching.is_empty() {
            return Err(RunnerError::NotFound(format!(
                "no grant of {tool} in run {run_id}{}{}",
                server
                    .as_deref()
                    .map(|s| format!(" on server {s}"))
                    .unwrap_or_default(),
                identity
                    .as_deref()
                    .map(|i| format!(" for {i}"))
                    .unwrap_or_default()
            )));
        }
        let mut revoked = Vec::new();
        for k in matching {
            let Some(g) = self.approvals.grants.get(&k).cloned() else {
                continue;
            };
            self.record_with_grant(
                AuditKind::GrantRevoked,
                who,
                None,
                json!({}),
                None,
                Some(&g),
            )?;
            self.approvals.grants.remove(&k);
            revoked.push(g);
        }
        Ok(revoked)
    }
}
