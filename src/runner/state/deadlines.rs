//! Escalation timing and who may act in which tier (DESIGN §2, §9).
//!
//! The rule: an approval in the chain moves to the next tier when its tier's `after` has
//! passed, and it expires at the earlier of its timeout and the end of the last tier.
//! `expires_at` is always that final instant and `escalates_at` the next move, so the two
//! never mix. A submitted timeout can only bring `expires_at` forward; it never escalates.

use super::*;

/// When a new approval escalates and when it expires.
pub(super) struct Plan {
    pub escalates_at: Option<Timestamp>,
    pub expires_at: Timestamp,
}

/// `d` after `from`; a duration past the calendar's end (a config may say "1000000y") is
/// the end of time, never a panic.
pub(super) fn after(from: Timestamp, d: Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| from.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

impl Runner {
    pub(super) fn now(&self) -> Timestamp {
        self.cfg.clock.now()
    }

    /// The deadlines of an approval created at `now` in chain tier `tier` (`None`: outside
    /// the chain), whose rule names `rule_timeout` and whose submitter asked for `submitted`.
    pub(super) fn plan(
        &self,
        now: Timestamp,
        tier: Option<usize>,
        rule_timeout: Option<Duration>,
        submitted: Option<Duration>,
    ) -> Plan {
        let tiers = &self.cfg.tiers;
        let chain_end = tier.map(|i| {
            tiers[i..]
                .iter()
                .fold(Duration::ZERO, |sum, t| sum.saturating_add(t.after))
        });
        let operator = match (rule_timeout, chain_end) {
            (Some(t), Some(end)) => t.min(end),
            (Some(t), None) => t,
            (None, Some(end)) => end,
            (None, None) => self.cfg.default_timeout,
        };
        // The submitter may only shorten what the operator allows.
        let life = submitted.map_or(operator, |s| s.min(operator));
        let expires_at = after(now, life);
        let escalates_at = tier
            .filter(|i| i + 1 < tiers.len())
            .map(|i| after(now, tiers[i].after))
            .filter(|at| *at < expires_at);
        Plan {
            escalates_at,
            expires_at,
        }
    }

    /// Move a pending approval to the next tier; its next escalation counts from `from`.
    fn escalate(
        &mut self,
        current: Approval,
        actor: &str,
        from: Timestamp,
    ) -> Result<Approval, RunnerError> {
        let tier = current.tier as usize;
        let from_tier = self.cfg.tiers[tier].clone();
        let next = self.cfg.tiers[tier + 1].clone();
        let mut a = current;
        let from_queue = std::mem::replace(&mut a.queue, next.queue.clone());
        a.tier += 1;
        a.escalates_at = Some(after(from, next.after))
            .filter(|_| (a.tier as usize) + 1 < self.cfg.tiers.len())
            .filter(|at| a.expires_at.is_none_or(|exp| *at < exp));
        let details = json!({"from_queue": from_queue, "to_queue": next.queue, "tier": a.tier, "reviewers": next.reviewers});
        self.record(AuditKind::ApprovalEscalated, actor, Some(&a), details, None)?;
        self.metrics.escalations.inc();
        let why = if actor == "timeout" {
            format!(
                "not decided in queue {from_queue} within {}",
                humantime::format_duration(from_tier.after)
            )
        } else {
            format!("{actor} escalated it from queue {from_queue}")
        };
        let expiry = a
            .expires_at
            .map(|exp| {
                let left = (exp - from).to_std().unwrap_or_default();
                format!(
                    "; it expires in {}",
                    humantime::format_duration(Duration::from_secs(left.as_secs()))
                )
            })
            .unwrap_or_default();
        let reason = format!("{why}; escalated to {}{expiry}", next.queue);
        self.ledger.commit.notice(Notice::new(
            AuditKind::ApprovalEscalated,
            &a,
            next.reviewers.clone(),
            reason,
        ));
        self.approvals.pending.insert(a.clone());
        Ok(a)
    }

    /// A reviewer moves an approval on to the next tier now. Who may decide the approval
    /// may hand it on; nobody else.
    pub(super) fn escalate_by_hand(
        &mut self,
        who: &str,
        id: Uuid,
    ) -> Result<Approval, RunnerError> {
        let Some(current) = self.pending_approval(id)? else {
            return match self.ledger.store.approval(id).map_err(store_err)? {
                None => Err(RunnerError::NotFound(format!("no approval {id}"))),
                Some(a) => Err(RunnerError::Conflict {
                    code: "already_decided",
                    message: standing(&a),
                    approval: Box::new(a),
                }),
            };
        };
        self.check_reviewer(who, &current)?;
        let tier = current.tier as usize;
        if self.chain_tier(&current).is_none() {
            return Err(RunnerError::Invalid(format!(
                "queue {} is not part of the escalation chain ([[escalation]])",
                current.queue
            )));
        }
        if tier + 1 >= self.cfg.tiers.len() {
            return Err(RunnerError::Invalid(format!(
                "approval {id} is in the last tier ({}); there is no one to escalate to",
                current.queue
            )));
        }
        let now = self.now();
        self.escalate(current, who, now)
    }

    /// The escalation tier an approval is in: `None` when its queue is not part of the chain.
    pub(super) fn chain_tier(&self, a: &Approval) -> Option<&EscalationTier> {
        self.cfg
            .tiers
            .get(a.tier as usize)
            .filter(|t| t.queue == a.queue)
    }

    /// The reviewers of the escalation tier an approval is in (none outside the chain).
    pub(super) fn tier_reviewers(&self, a: &Approval) -> Vec<String> {
        self.chain_tier(a)
            .map(|t| t.reviewers.clone())
            .unwrap_or_default()
    }

    /// Whether `who` may decide `a`: an admin always; in tier N the reviewers of tiers 0..=N
    /// (a tier listing no one is open to every reviewer); outside the chain every reviewer.
    /// A refusal is audited and answered 403 `not_a_reviewer_of_queue`.
    pub(super) fn check_reviewer(&mut self, who: &str, a: &Approval) -> Result<(), RunnerError> {
        if self.cfg.is_admin(who) || self.chain_tier(a).is_none() {
            return Ok(());
        }
        let tiers = &self.cfg.tiers[..=a.tier as usize];
        if tiers
            .iter()
            .any(|t| t.reviewers.is_empty() || t.reviewers.iter().any(|r| r == who))
        {
            return Ok(());
        }
        let named: Vec<&str> = tiers
            .iter()
            .flat_map(|t| t.reviewers.iter().map(String::as_str))
            .collect();
        let msg = format!(
            "{who} is not a reviewer of queue {} (tier {}); it may be decided by {} or an admin",
            a.queue,
            a.tier,
            named.join(", ")
        );
        self.refused(who, Some(a.id), "not_a_reviewer_of_queue", &msg);
        Err(RunnerError::Forbidden {
            code: "not_a_reviewer_of_queue",
            message: msg,
        })
    }

    /// Escalate or expire every approval whose deadline has passed, oldest first.
    pub(super) fn fire_deadlines(&mut self) {
        let now = self.now();
        while self.ledger.failed.is_none()
            && let Some((at, id)) = self.approvals.pending.pop_due(now)
        {
            if self.approvals.pending.entry(&id).and_then(|e| e.deadline) != Some(at) {
                continue;
            }
            let current = match self.pending_approval(id) {
                Ok(Some(a)) => a,
                Ok(None) => continue,
                Err(e) => {
                    // Back on the schedule, tried again at the next tick.
                    tracing::error!("cannot read approval {id} to act on its deadline: {e}");
                    self.approvals.pending.reschedule(at, id);
                    break;
                }
            };
            let tier = current.tier as usize;
            let in_chain = self.chain_tier(&current).is_some();
            if current.escalates_at == Some(at) && in_chain && tier + 1 < self.cfg.tiers.len() {
                // From the missed deadline, not from now: after downtime the chain replays in order.
                if self.escalate(current, "timeout", at).is_err() {
                    return;
                }
            } else {
                self.expire(current, at, now);
            }
        }
    }

    /// The approval's life ended at `at` without a decision: it is denied by `timeout`.
    fn expire(&mut self, current: Approval, at: Timestamp, now: Timestamp) {
        let mut a = current;
        let waited = (at - a.created_at).to_std().unwrap_or_default();
        a.status = ApprovalStatus::Expired;
        a.escalates_at = None;
        a.decision = Some(Decision {
            by: "timeout".into(),
            at: now,
            reason: Some(format!(
                "approval timed out after {} without a decision",
                humantime::format_duration(Duration::from_secs(waited.as_secs()))
            )),
            arguments_sha256: None,
            arguments: None,
            scope: None,
        });
        if self
            .record(
                AuditKind::ApprovalExpired,
                "timeout",
                Some(&a),
                json!({}),
                None,
            )
            .is_err()
        {
            return;
        }
        self.metrics.decided("expired");
        let reviewers = self.tier_reviewers(&a);
        let reason = a
            .decision
            .as_ref()
            .and_then(|d| d.reason.clone())
            .unwrap_or_default();
        self.ledger.commit.notice(Notice::new(
            AuditKind::ApprovalExpired,
            &a,
            reviewers,
            reason,
        ));
        self.settle(&a);
    }
}
