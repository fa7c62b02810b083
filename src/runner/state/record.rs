//! Writing the audit log: records (with the approval or grant change they describe), refused
//! decisions, and unauthenticated requests counted per window.

use super::*;

impl Runner {
    /// Append an audit record (and the approval change it describes) to the store.
    pub(super) fn record(
        &mut self,
        kind: AuditKind,
        actor: &str,
        approval: Option<&Approval>,
        details: Value,
        idempotency: Option<(&str, &str)>,
    ) -> Result<(), RunnerError> {
        self.record_with_grant(kind, actor, approval, details, idempotency, None)
    }

    pub(super) fn record_with_grant(
        &mut self,
        kind: AuditKind,
        actor: &str,
        approval: Option<&Approval>,
        mut details: Value,
        idempotency: Option<(&str, &str)>,
        grant: Option<&Grant>,
    ) -> Result<(), RunnerError> {
        if let (Some(g), Value::Object(m)) = (grant, &mut details) {
            m.insert(
                "grant".into(),
                serde_json::to_value(g).unwrap_or(Value::Null),
            );
        }
        // The audit record is the write-ahead record: it carries what `Store::redo_last`
        // needs to finish the change after a crash, the idempotency key included.
        if let (Some((_, k)), Value::Object(m)) = (idempotency, &mut details) {
            m.insert("idempotency_key".into(), Value::String(k.to_string()));
        }
        let now = self.now();
        let (rec, text) = match approval {
            Some(a) => self.ledger.seal_approval(now, kind, actor, a, details),
            None => self.ledger.seal_text(now, kind, actor, None, None, details),
        };
        let written = match approval {
            Some(a) => self.ledger.store.write_approval_text(
                ApprovalWrite {
                    approval: a,
                    audit: &rec,
                    idempotency,
                    grant,
                },
                text.as_deref(),
            ),
            None => match (kind, grant) {
                (AuditKind::GrantRevoked, Some(g)) => self.ledger.store.revoke_grant(&rec, g),
                _ => self.ledger.store.write_audit(&rec),
            },
        };
        if let Err(e) = written {
            return Err(self.store_failed(e));
        }
        self.ledger
            .appended(&rec, approval.and_then(|a| Event::for_approval(&rec, a)));
        if let Some(a) = approval {
            self.wake_waiters(a);
        }
        Ok(())
    }

    /// A write failed: nothing more can be promised, so the runner stops accepting work.
    pub(super) fn store_failed(&mut self, e: StoreError) -> RunnerError {
        RunnerError::Unavailable(self.ledger.fail(e))
    }

    /// A decision attempt by an authenticated identity was refused: always audited, so a
    /// reviewer probing what it may not do leaves a trace (DESIGN §9).
    pub(super) fn refused(
        &mut self,
        who: &str,
        approval_id: Option<Uuid>,
        code: &str,
        message: &str,
    ) {
        let details = json!({"code": code, "message": message, "approval_id": approval_id});
        let audited = self
            .record(AuditKind::DecisionRefused, who, None, details, None)
            .is_ok();
        self.metrics.refusal(if audited {
            "decision_audited"
        } else {
            "decision_not_audited"
        });
    }

    /// Requests without a valid token: anyone can send a flood of them, so they are counted
    /// and written as one `requests.refused` record per minute instead of one each.
    pub(super) fn count_unauthenticated(&mut self, n: u64) {
        let now = self.now();
        self.approvals.unauthenticated.get_or_insert((now, 0)).1 += n;
        self.flush_unauthenticated(false);
    }

    /// When the unauthenticated count's minute is over (or `force`), write its record.
    pub(super) fn flush_unauthenticated(&mut self, force: bool) {
        let now = self.now();
        let Some((since, count)) = self.approvals.unauthenticated else {
            return;
        };
        if !force && now < since + UNAUTHENTICATED_WINDOW {
            return;
        }
        self.approvals.unauthenticated = None;
        let details = json!({
            "code": "unauthorized",
            "count": count,
            "from": since,
            "to": now,
            "message": format!("{count} requests without a valid token were refused"),
        });
        let _ = self.record(
            AuditKind::RequestsRefused,
            "(no valid token)",
            None,
            details,
            None,
        );
    }

    /// When the open unauthenticated count is due to be written.
    pub(super) fn unauthenticated_due(&self) -> Option<Timestamp> {
        self.approvals
            .unauthenticated
            .map(|(since, _)| since + UNAUTHENTICATED_WINDOW)
    }
}
