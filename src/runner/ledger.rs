//! The ledger part of the runner: the store, the audit chain's sequence and hash head, and
//! the group commit that decides when replies and events may go out.

use super::commit::GroupCommit;
use crate::domain::{AuditKind, AuditRecord, Event, GENESIS_HASH, Timestamp};
use crate::store::{Store, StoreError};
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

pub(super) struct Ledger {
    pub store: Store,
    /// Sequence number and hash of the newest audit record written (durable or not).
    pub seq: u64,
    pub last_hash: String,
    pub commit: GroupCommit,
    /// Set once the store failed: nothing more is accepted.
    pub failed: Option<String>,
    pub fatal: watch::Sender<Option<String>>,
    /// Published once durable, in commit order.
    pub events: broadcast::Sender<Event>,
    /// The newest record published (its events sent): where a new subscriber starts.
    pub published: u64,
    /// Commits finished so far, and the approvals whose write lost a race (on a shared
    /// store) by the commit that said so: answered 409 to the reply that waits for them.
    pub flushes: u64,
    pub conflicts: std::collections::HashMap<Uuid, (u64, crate::domain::Approval)>,
}

impl Ledger {
    pub fn new(
        store: Store,
        events: broadcast::Sender<Event>,
        fatal: watch::Sender<Option<String>>,
    ) -> Ledger {
        Ledger {
            store,
            seq: 0,
            last_hash: GENESIS_HASH.into(),
            commit: GroupCommit::default(),
            failed: None,
            fatal,
            events,
            published: 0,
            flushes: 0,
            conflicts: Default::default(),
        }
    }

    /// The next audit record of the chain, hashed.
    pub fn seal(
        &self,
        at: Timestamp,
        kind: AuditKind,
        actor: &str,
        approval_id: Option<Uuid>,
        run_id: Option<String>,
        details: Value,
    ) -> AuditRecord {
        self.seal_text(at, kind, actor, approval_id, run_id, details)
            .0
    }

    /// [`Ledger::seal`], with the record's JSON for the store when the hashed text can be it.
    pub fn seal_text(
        &self,
        at: Timestamp,
        kind: AuditKind,
        actor: &str,
        approval_id: Option<Uuid>,
        run_id: Option<String>,
        details: Value,
    ) -> (AuditRecord, Option<String>) {
        let mut rec = self.next(at, kind, actor, approval_id, run_id, details);
        let text = rec.seal_text();
        (rec, text)
    }

    /// The record that follows the head, not yet hashed.
    fn next(
        &self,
        at: Timestamp,
        kind: AuditKind,
        actor: &str,
        approval_id: Option<Uuid>,
        run_id: Option<String>,
        details: Value,
    ) -> AuditRecord {
        AuditRecord {
            seq: self.seq + 1,
            at,
            kind,
            actor: actor.to_string(),
            approval_id,
            run_id,
            details,
            prev_hash: self.last_hash.clone(),
            hash: String::new(),
        }
    }

    /// [`Ledger::seal_text`] for a record about `approval`, whose details then carry it. On
    /// a store that keeps the sealed text (sled), the approval is written into that text
    /// directly and left out of the returned record's `details` (the text is what is
    /// stored); otherwise, or when the text cannot be written so, it is put into `details`.
    pub fn seal_approval(
        &self,
        at: Timestamp,
        kind: AuditKind,
        actor: &str,
        approval: &crate::domain::Approval,
        details: Value,
    ) -> (AuditRecord, Option<String>) {
        let mut rec = self.next(
            at,
            kind,
            actor,
            Some(approval.id),
            approval.run_id.clone(),
            details,
        );
        if !self.store.shared()
            && let Some(text) = rec.seal_text_with(approval)
        {
            return (rec, Some(text));
        }
        if let Value::Object(m) = &mut rec.details {
            m.insert(
                "approval".into(),
                serde_json::to_value(approval).unwrap_or(Value::Null),
            );
        }
        let text = rec.seal_text();
        (rec, text)
    }

    /// `rec` was written to the store: it is the new head, durable at the next commit.
    pub fn appended(&mut self, rec: &AuditRecord, event: Option<Event>) {
        self.seq = rec.seq;
        self.last_hash.clone_from(&rec.hash);
        self.commit.wrote(rec.seq, event);
    }

    /// A write failed: nothing more can be promised, so the runner stops accepting work.
    pub fn fail(&mut self, e: StoreError) -> String {
        let msg = format!("the store refused a write: {e}");
        tracing::error!("{msg}");
        self.failed = Some(msg.clone());
        let _ = self.fatal.send(Some(msg.clone()));
        msg
    }
}
