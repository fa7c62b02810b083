//! Submissions and decisions of approvals: the approvals part's transitions.

use super::*;

impl Runner {
    pub(super) fn submit(
        &mut self,
        who: &str,
        req: SubmitRequest,
    ) -> Result<Submitted, RunnerError> {
        if let Some(key) = &req.idempotency_key
            && let Some(id) = self.ledger.store.idempotent(who, key).map_err(store_err)?
        {
            let sha = domain::arguments_sha256(&req.arguments);
            let first = self.find(id)?.ok_or_else(|| {
                RunnerError::Unavailable(format!("idempotency key points at missing approval {id}"))
            })?;
            // A reviewer's edit changed `arguments`; the retry repeats what was submitted.
            let submitted_sha = match &first.requested_arguments {
                Some(requested) => domain::arguments_sha256(requested),
                None => first.arguments_sha256.clone(),
            };
            if first.tool != req.tool || submitted_sha != sha {
                return Err(RunnerError::Invalid(format!(
                    "idempotency_key {key:?} was already used for a different request (approval {id})"
                )));
            }
            self.metrics.submitted("idempotent_replay");
            return Ok(Submitted {
                approval: first,
                replayed: true,
            });
        }
        if let Some(q) = &req.queue
            && !self.cfg.knows_queue(q)
        {
            return Err(RunnerError::Invalid(format!(
                "queue: {q:?} is not a configured queue ({})",
                self.configured_queues()
            )));
        }
        // Policies read facts only: a claimed agent or server reads as null (DESIGN §9), and
        // a submitter's annotations are never trusted (the pessimistic defaults apply).
        let outcome = self.policies.evaluate(
            &CallContext {
                tool: &req.tool,
                server: req.server.as_deref().filter(|_| req.server_verified),
                args: &req.arguments,
                agent: req.agent.as_deref().filter(|_| req.agent_verified),
                run: None,
                annotations: ToolAnnotations::default(),
                policy: None,
                identity: IdentityFacts {
                    name: who,
                    roles: &req.roles,
                },
                context: req.context.as_ref(),
            },
            self.now(),
            &self.approvals.limits,
        );
        let idem = req.idempotency_key.clone();
        let idem = idem.as_deref().map(|k| (who, k));
        let approval = self.create_approval(who, req, outcome, idem)?;
        Ok(Submitted {
            approval,
            replayed: false,
        })
    }

    /// The queues a submission may name, for the 422 that refuses another.
    pub(super) fn configured_queues(&self) -> String {
        let mut all: Vec<&str> = self.cfg.tiers.iter().map(|t| t.queue.as_str()).collect();
        all.extend(self.cfg.rule_queues.iter().map(String::as_str));
        if self.cfg.tiers.is_empty() {
            all.push("default");
        }
        all.dedup();
        format!("configured: {}", all.join(", "))
    }

    /// Create an approval for a proposed call whose policy outcome is known: decided at once
    /// (a policy, or a sticky grant), or pending in its queue.
    pub(super) fn create_approval(
        &mut self,
        who: &str,
        req: SubmitRequest,
        outcome: crate::policy::PolicyOutcome,
        idem: Option<(&str, &str)>,
    ) -> Result<Approval, RunnerError> {
        let now = self.now();
        let sha = domain::arguments_sha256(&req.arguments);
        // Routing belongs to the operator: the rule's queue wins over the submitted one.
        let queue = outcome
            .queue
            .clone()
            .or(req.queue.clone())
            .or_else(|| self.cfg.tiers.first().map(|t| t.queue.clone()))
            .unwrap_or_else(|| "default".into());
        let tier = self.cfg.tiers.iter().position(|t| t.queue == queue);
        let plan = self.plan(now, tier, outcome.timeout, req.timeout);
        let mut approval = Approval {
            id: Uuid::now_v7(),
            run_id: req.run_id,
            agent: req.agent,
            agent_verified: req.agent_verified,
            tool: req.tool,
            server: req.server,
            server_verified: req.server_verified,
            arguments: req.arguments,
            arguments_sha256: sha,
            requested_arguments: None,
            context: req.context,
            reasoning: req.reasoning,
            requested_by: who.to_string(),
            queue,
            tier: tier.unwrap_or(0) as u32,
            policy: outcome.policy.clone(),
            created_at: now,
            expires_at: Some(plan.expires_at),
            escalates_at: plan.escalates_at,
            status: ApprovalStatus::Pending,
            decision: None,
            editable: req.editable,
            outcome_unknown: req.outcome_unknown,
            approvals_needed: outcome.approvals.filter(|n| *n > 1),
            approved_by: Vec::new(),
        };
        // `record` puts the key in the audit record (the write-ahead record), so a crash
        // between the record and the key's own entry is redone at start and a retry with
        // the same key replays instead of creating a duplicate.
        // A sticky grant answers what a policy would have asked a reviewer (never a deny),
        // but never whether a call cut short by a restart runs again.
        let granted = match outcome.action {
            // Nor a two-person rule: a grant made by one reviewer is not N approvals.
            RuleAction::Ask if !approval.outcome_unknown && approval.approvals_needed.is_none() => {
                self.grant_for(&approval)
            }
            _ => None,
        };
        match (outcome.action, granted) {
            (_, Some(g)) => {
                let reason = format!(
                    "{} was granted to {who} for the rest of run {} by {} (approval {})",
                    g.tool, g.run_id, g.granted_by, g.approval_id
                );
                let by = format!("grant:{}", g.granted_by);
                self.decide_at_once(&mut approval, Verdict::Approve, &by, reason, who, idem)?;
            }
            (RuleAction::Ask, None) => {
                self.record(
                    AuditKind::ApprovalCreated,
                    who,
                    Some(&approval),
                    json!({}),
                    idem,
                )?;
                self.metrics.submitted("queued");
                if self.cfg.notify_on_create {
                    let reason = format!("new approval in queue {}", approval.queue);
                    let reviewers = self.tier_reviewers(&approval);
                    self.ledger.commit.notice(Notice::new(
                        AuditKind::ApprovalCreated,
                        &approval,
                        reviewers,
                        reason,
                    ));
                }
                self.approvals.pending.insert(approval.clone());
            }
            (action, None) => {
                let by = format!(
                    "policy:{}",
                    outcome.policy.name.as_deref().unwrap_or("default")
                );
                let verdict = if action == RuleAction::Approve {
                    Verdict::Approve
                } else {
                    Verdict::Deny
                };
                let reason = outcome.policy.reason.clone();
                self.decide_at_once(&mut approval, verdict, &by, reason, who, idem)?;
                if verdict == Verdict::Approve
                    && let (Some(name), Some(rule)) = (&outcome.policy.name, outcome.policy.rule)
                {
                    self.approvals.limits.record(name, rule, now);
                }
            }
        }
        Ok(approval)
    }

    /// Decide a new submission without a reviewer (a policy, or a sticky grant).
    pub(super) fn decide_at_once(
        &mut self,
        approval: &mut Approval,
        verdict: Verdict,
        by: &str,
        reason: String,
        who: &str,
        idem: Option<(&str, &str)>,
    ) -> Result<(), RunnerError> {
        approval.expires_at = None;
        approval.escalates_at = None;
        approval.status = match verdict {
            Verdict::Approve => ApprovalStatus::Approved,
            Verdict::Deny => ApprovalStatus::Denied,
        };
        approval.decision = Some(Decision {
            by: by.to_string(),
            at: approval.created_at,
            reason: Some(reason),
            arguments_sha256: Some(approval.arguments_sha256.clone()),
            arguments: None,
            scope: None,
        });
        self.record(
            AuditKind::ApprovalDecided,
            by,
            Some(approval),
            json!({"requested_by": who}),
            idem,
        )?;
        match verdict {
            Verdict::Approve => self.metrics.submitted("auto_approved"),
            Verdict::Deny => self.metrics.submitted("auto_denied"),
        }
        self.remember(approval.clone());
        Ok(())
    }

    pub(super) fn remember(&mut self, a: Approval) {
        self.approvals.recent.push_back(a);
        while self.approvals.recent.len() > self.cfg.recent_limit {
            self.approvals.recent.pop_front();
        }
    }

    pub(super) fn decide(
        &mut self,
        who: &str,
        req: DecideRequest,
    ) -> Result<Approval, RunnerError> {
        let current = match self.pending_approval(req.id)? {
            Some(c) => c,
            None => match self.ledger.store.approval(req.id).map_err(store_err)? {
                None => return Err(RunnerError::NotFound(format!("no approval {}", req.id))),
                // Another daemon on a shared store took it moments ago and this one has not
                // caught up yet: take it as stored (the decision is conditional on it).
                Some(a) if a.is_pending() => {
                    self.adopt(a.clone());
                    a
                }
                Some(a) => {
                    return Err(RunnerError::Conflict {
                        code: "already_decided",
                        message: standing(&a),
                        approval: Box::new(a),
                    });
                }
            },
        };
        if current.requested_by == who {
            let msg = format!("{who} requested this approval and cannot decide it");
            self.refused(who, Some(req.id), "self_approval", &msg);
            return Err(RunnerError::Forbidden {
                code: "self_approval",
                message: msg,
            });
        }
        self.check_reviewer(who, &current)?;
        if let Some(sha) = &req.arguments_sha256
            && !sha.eq_ignore_ascii_case(&current.arguments_sha256)
        {
            let msg = format!(
                "arguments_sha256 {sha} does not match the approval's arguments ({}); nothing was decided",
                current.arguments_sha256
            );
            self.refused(who, Some(req.id), "arguments_mismatch", &msg);
            return Err(RunnerError::Conflict {
                code: "arguments_mismatch",
                message: msg,
                approval: Box::new(current),
            });
        }
        if let Some(still_pending) = self.approve_partially(who, &current, &req)? {
            return Ok(still_pending);
        }
        if req.edited_arguments.is_some() {
            if req.verdict != Verdict::Approve {
                return Err(RunnerError::Invalid(
                    "edited arguments go with an approval, not a denial".into(),
                ));
            }
            if !current.editable {
                return Err(RunnerError::Invalid(format!(
                    "approval {} was not submitted as editable; approve or deny it as proposed",
                    current.id
                )));
            }
            if let Some(edited) = &req.edited_arguments {
                self.check_edit(&current, edited)?;
            }
        }
        let grant = match req.scope.as_deref() {
            None => None,
            Some("run") => {
                if req.verdict != Verdict::Approve || req.edited_arguments.is_some() {
                    return Err(RunnerError::Invalid(
                        "scope \"run\" goes with approving the call as proposed".into(),
                    ));
                }
                let Some(run) = current.run_id.clone() else {
                    return Err(RunnerError::Invalid(format!(
                        "approval {} belongs to no run, so there is no rest of the run to grant",
                        current.id
                    )));
                };
                Some(self.new_grant(who, &current, run))
            }
            Some(other) => {
                return Err(RunnerError::Invalid(format!(
                    "scope {other:?} is not known (use \"run\")"
                )));
            }
        };
        let now = self.now();
        let mut a = current;
        let approved_sha = match &req.edited_arguments {
            Some(edited) => domain::arguments_sha256(edited),
            None => a.arguments_sha256.clone(),
        };
        // What runs is the edit: it becomes the approval's arguments, and the call as
        // submitted stays beside it (DESIGN §9, Edits).
        if let Some(edited) = &req.edited_arguments {
            let requested = std::mem::replace(&mut a.arguments, edited.clone());
            a.requested_arguments = Some(requested);
            a.arguments_sha256 = approved_sha.clone();
        }
        if a.approvals_needed.is_some() && req.verdict == Verdict::Approve {
            a.approved_by.push(who.to_string());
        }
        a.escalates_at = None;
        a.status = match req.verdict {
            Verdict::Approve => ApprovalStatus::Approved,
            Verdict::Deny => ApprovalStatus::Denied,
        };
        a.decision = Some(Decision {
            by: who.to_string(),
            at: now,
            reason: req.reason.clone(),
            arguments_sha256: Some(approved_sha),
            arguments: req.edited_arguments,
            scope: grant.as_ref().map(|_| "run".to_string()),
        });
        self.record_with_grant(
            AuditKind::ApprovalDecided,
            who,
            Some(&a),
            json!({}),
            None,
            grant.as_ref(),
        )?;
        if let Some(g) = grant {
            self.keep_grant(g);
        }
        self.settle(&a);
        match req.verdict {
            Verdict::Approve => self.metrics.decided("approved"),
            Verdict::Deny => self.metrics.decided("denied"),
        }
        let secs = (now - a.created_at)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        self.metrics.decision_seconds.observe(secs);
        Ok(a)
    }

    /// Take a no-longer-pending approval out of the indexes.
    pub(super) fn settle(&mut self, a: &Approval) {
        self.approvals.pending.remove(&a.id);
        self.remember(a.clone());
        self.approval_settled(a);
    }
}
