//! Reading approvals back: the snapshot in the audit record an index entry points at, and
//! the summaries a start indexes pending approvals by.
//!
//! A pending approval's index entry is its newest audit record's seq, then (schema 3 on) its
//! [`PendingSummary`] in an envelope (checksummed). A start reads those entries and no
//! record: reading and parsing every pending approval's record (about 850 bytes of JSON
//! each, through sled's cache) was a start over 200,000 pending approvals, 0.9-1.2 s on a
//! slow day against a 1 s target. Whole approvals are read from their records, one pass over
//! the record's JSON straight into an [`Approval`] (the checksum covers the whole record).

use super::envelope;
use super::keys::{key, show_key};
use super::{P_APPROVAL, P_AUDIT, P_PENDING, Result, SledStore};
use crate::domain::{Approval, ApprovalStatus, PendingSummary, Timestamp};
use serde::{Deserialize, Serialize};
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

/// A [`PendingSummary`] as stored in an index entry, borrowed from what it summarises (the
/// same field names: it reads back as one).
#[derive(Serialize)]
pub(super) struct SummaryRef<'a> {
    id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<&'a str>,
    requested_by: &'a str,
    queue: &'a str,
    status: ApprovalStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    escalates_at: Option<Timestamp>,
}

impl<'a> SummaryRef<'a> {
    pub fn of(a: &'a Approval) -> SummaryRef<'a> {
        SummaryRef {
            id: a.id,
            run_id: a.run_id.as_deref(),
            requested_by: &a.requested_by,
            queue: &a.queue,
            status: a.status,
            expires_at: a.expires_at,
            escalates_at: a.escalates_at,
        }
    }

    pub fn from_summary(s: &'a PendingSummary) -> SummaryRef<'a> {
        SummaryRef {
            id: s.id,
            run_id: s.run_id.as_deref(),
            requested_by: &s.requested_by,
            queue: &s.queue,
            status: s.status,
            expires_at: s.expires_at,
            escalates_at: s.escalates_at,
        }
    }
}

/// A pending approval's index entry: the seq of its newest record, then its summary.
pub(super) fn entry(seq: u64, summary: &SummaryRef<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 192);
    out.extend_from_slice(&seq.to_be_bytes());
    envelope::encode_into(&mut out, summary);
    out
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
        let seq = self.pointer_seq(k, pointer)?;
        let (lk, raw) = self.pointed_record(seq, || format!("approval {id}"))?;
        let record: ApprovalRecord<T> = self.decode(&lk, &raw)?;
        match record.details.approval {
            Some(a) if id_of(&a) == id => Ok(a),
            _ => Err(self.corrupt(format!("audit record {seq} does not hold approval {id}"))),
        }
    }

    /// Every approval in the pending index, verified.
    pub fn pending(&self) -> Result<Vec<Approval>> {
        let mut out = Vec::new();
        for item in self.index.scan_prefix([P_PENDING, b'/']) {
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

    /// What the runner indexes of every pending approval, from the index entries alone
    /// (each checked: its checksum, its id, that it is pending), in id order.
    pub fn pending_summaries(&self, each: &mut dyn FnMut(PendingSummary)) -> Result<()> {
        // Decoding the entries is a third of a start over many pending approvals and each is
        // independent: a chunk at a time, split over the cores. Chunks keep what is read and
        // not yet handed over small (a start's peak memory).
        const CHUNK: usize = 16_384;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let mut scan = self.index.scan_prefix([P_PENDING, b'/']);
        loop {
            let mut entries = Vec::with_capacity(CHUNK);
            for item in scan.by_ref().take(CHUNK) {
                entries.push(self.sled(item)?);
            }
            if entries.is_empty() {
                return Ok(());
            }
            let decode = |part: &[(sled::IVec, sled::IVec)]| -> Result<Vec<PendingSummary>> {
                part.iter().map(|(k, e)| self.summary_in(k, e)).collect()
            };
            if threads == 1 || entries.len() < 1024 {
                decode(&entries)?.into_iter().for_each(&mut *each);
                continue;
            }
            let parts: Vec<Result<Vec<PendingSummary>>> = std::thread::scope(|scope| {
                let running: Vec<_> = entries
                    .chunks(entries.len().div_ceil(threads))
                    .map(|part| scope.spawn(move || decode(part)))
                    .collect();
                running
                    .into_iter()
                    .map(|t| {
                        t.join().unwrap_or_else(|_| {
                            Err(self.corrupt("a pending entry could not be decoded"))
                        })
                    })
                    .collect()
            });
            for part in parts {
                part?.into_iter().for_each(&mut *each);
            }
        }
    }

    /// The summary in a pending approval's index entry, checked.
    fn summary_in(&self, k: &[u8], entry: &[u8]) -> Result<PendingSummary> {
        let id = self.pending_id(k)?;
        let body = entry.get(8..).filter(|b| !b.is_empty()).ok_or_else(|| {
            self.corrupt(format!("record {}: no summary in the entry", show_key(k)))
        })?;
        let s: PendingSummary = self.decode(k, body)?;
        if s.id != id {
            return Err(self.corrupt(format!(
                "record {}: the summary is of approval {}",
                show_key(k),
                s.id
            )));
        }
        self.checked_pending(s)
    }

    fn pending_id(&self, k: &[u8]) -> Result<Uuid> {
        Uuid::from_slice(&k[2..])
            .map_err(|_| self.corrupt(format!("bad pending key {}", show_key(k))))
    }

    fn checked_pending(&self, s: PendingSummary) -> Result<PendingSummary> {
        if s.status != ApprovalStatus::Pending {
            return Err(self.corrupt(format!(
                "approval {} is indexed as pending but is {}",
                s.id,
                s.status.as_str()
            )));
        }
        Ok(s)
    }

    /// The summary of a pending approval read from the record its entry points at (for an
    /// entry written before entries carried it: see `upgrade`).
    pub(super) fn summary_from_record(&self, k: &[u8], pointer: &[u8]) -> Result<PendingSummary> {
        let id = self.pending_id(k)?;
        let s = self.approval_part_at(k, pointer, id, |s: &PendingSummary| s.id)?;
        self.checked_pending(s)
    }

    /// The audit records that settled an approval (decided, expired or cancelled), newest
    /// first. They are found through the settled approvals' index, whose entries point at
    /// them: a start over a log of mostly submissions reads none of those (scanning the log
    /// backwards for them read every record of a log of 200,000 submissions).
    pub fn settled_rev(
        &self,
    ) -> Result<impl Iterator<Item = Result<crate::domain::AuditRecord>> + '_> {
        let mut seqs = Vec::new();
        for item in self.index.scan_prefix([P_APPROVAL, b'/']) {
            let (k, pointer) = self.sled(item)?;
            seqs.push(self.pointer_seq(&k, &pointer)?);
        }
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        Ok(seqs.into_iter().map(move |seq| {
            let (lk, raw) = self.pointed_record(seq, || "a settled approval".into())?;
            self.decode(&lk, &raw)
        }))
    }

    /// The audit record an index entry points at (its first 8 bytes; a pending entry's
    /// summary follows them).
    pub(super) fn pointer_seq(&self, k: &[u8], pointer: &[u8]) -> Result<u64> {
        let seq: [u8; 8] = pointer
            .get(..8)
            .and_then(|p| p.try_into().ok())
            .filter(|_| pointer.len() == 8 || k.first() == Some(&P_PENDING))
            .ok_or_else(|| self.corrupt(format!("record {}: bad pointer", show_key(k))))?;
        Ok(u64::from_be_bytes(seq))
    }

    /// The raw audit record `seq` (and its key), which `who` points at: missing is corrupt.
    fn pointed_record(
        &self,
        seq: u64,
        who: impl FnOnce() -> String,
    ) -> Result<(Vec<u8>, sled::IVec)> {
        let lk = key(P_AUDIT, &seq.to_be_bytes());
        let r = self.db.get(&lk);
        match self.sled(r)? {
            Some(raw) => Ok((lk, raw)),
            None => Err(self.corrupt(format!("{} points at missing audit record {seq}", who()))),
        }
    }
}
