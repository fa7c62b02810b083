//! Reading approvals back: the snapshot in the audit record an index entry points at.
//!
//! At start every pending approval is read this way, so it is one pass over the record's JSON
//! straight into an [`Approval`] (the checksum still covers the whole record): going through
//! a `serde_json::Value` of the whole record first, then cloning and converting its approval,
//! cost three times as much and was most of a start over 200,000 pending approvals.

use super::keys::{key, show_key};
use super::{P_AUDIT, P_PENDING, Result, SledStore};
use crate::domain::{Approval, ApprovalStatus, AuditKind, PendingSummary};
use serde::Deserialize;
use uuid::Uuid;

/// The part of an audit record that carries an approval (whole, or just its summary).
#[derive(Deserialize)]
struct ApprovalRecord<T> {
    details: ApprovalDetails<T>,
}

#[derive(Deserialize)]
struct ApprovalDetails<T> {
    #[serde(default = "none")]
    approval: Option<T>,
}

fn none<T>() -> Option<T> {
    None
}

/// Just the kind of an audit record, for scans that skip most kinds.
#[derive(Deserialize)]
struct RecordKind {
    kind: AuditKind,
}

impl SledStore {
    /// The approval snapshot in the audit record a pointer names.
    pub(super) fn approval_at(&self, k: &[u8], pointer: &[u8], id: Uuid) -> Result<Approval> {
        self.approval_part_at(k, pointer, id, |a: &Approval| a.id)
    }

    /// [`SledStore::approval_at`] into any part of the approval `T` (whose id `id_of` gives):
    /// the record's checksum still covers all of it.
    fn approval_part_at<T: serde::de::DeserializeOwned>(
        &self,
        k: &[u8],
        pointer: &[u8],
        id: Uuid,
        id_of: fn(&T) -> Uuid,
    ) -> Result<T> {
        let seq: [u8; 8] = pointer
            .try_into()
            .map_err(|_| self.corrupt(format!("record {}: bad pointer", show_key(k))))?;
        let seq = u64::from_be_bytes(seq);
        let lk = key(P_AUDIT, &seq.to_be_bytes());
        let r = self.db.get(&lk);
        let raw = self.sled(r)?.ok_or_else(|| {
            self.corrupt(format!(
                "approval {id} points at missing audit record {seq}"
            ))
        })?;
        let record: ApprovalRecord<T> = self.decode(&lk, &raw)?;
        match record.details.approval {
            Some(a) if id_of(&a) == id => Ok(a),
            _ => Err(self.corrupt(format!("audit record {seq} does not hold approval {id}"))),
        }
    }

    /// Every approval in the pending index, verified.
    pub fn pending(&self) -> Result<Vec<Approval>> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix([P_PENDING, b'/']) {
            let (k, pointer) = self.sled(item)?;
            let id = Uuid::from_slice(&k[2..])
                .map_err(|_| self.corrupt(format!("bad pending key {}", show_key(&k))))?;
            let a = self.approval_at(&k, &pointer, id)?;
            if !a.is_pending() {
                return Err(self.corrupt(format!(
                    "approval {id} is indexed as pending but is {}",
                    a.status.as_str()
                )));
            }
            out.push(a);
        }
        Ok(out)
    }

    /// What the runner indexes of every pending approval, verified (each record's checksum,
    /// and that it is pending), without building the approvals.
    pub fn pending_summaries(&self) -> Result<Vec<PendingSummary>> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix([P_PENDING, b'/']) {
            let (k, pointer) = self.sled(item)?;
            let id = Uuid::from_slice(&k[2..])
                .map_err(|_| self.corrupt(format!("bad pending key {}", show_key(&k))))?;
            let s = self.approval_part_at(&k, &pointer, id, |s: &PendingSummary| s.id)?;
            if s.status != ApprovalStatus::Pending {
                return Err(self.corrupt(format!(
                    "approval {id} is indexed as pending but is {}",
                    s.status.as_str()
                )));
            }
            out.push(s);
        }
        Ok(out)
    }

    /// Audit records of the kinds `keep` accepts, from the newest backwards. Every record
    /// passed over is still checksummed and parsed, but not built.
    pub fn audit_rev_of(
        &self,
        keep: fn(AuditKind) -> bool,
    ) -> impl Iterator<Item = Result<crate::domain::AuditRecord>> + '_ {
        self.db
            .scan_prefix([P_AUDIT, b'/'])
            .rev()
            .filter_map(move |item| {
                let (k, v) = match self.sled(item) {
                    Ok(kv) => kv,
                    Err(e) => return Some(Err(e)),
                };
                match self.decode::<RecordKind>(&k, &v) {
                    Ok(r) if !keep(r.kind) => None,
                    Ok(_) => Some(self.decode(&k, &v)),
                    Err(e) => Some(Err(e)),
                }
            })
    }
}
