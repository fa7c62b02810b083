//! Reading approvals back: the snapshot in the audit record an index entry points at.
//!
//! At start every pending approval is read this way, so it is one pass over the record's JSON
//! straight into an [`Approval`] (the checksum still covers the whole record): going through
//! a `serde_json::Value` of the whole record first, then cloning and converting its approval,
//! cost three times as much and was most of a start over 200,000 pending approvals.

use super::keys::{key, show_key};
use super::{P_APPROVAL, P_AUDIT, P_PENDING, Result, SledStore};
use crate::domain::{Approval, ApprovalStatus, PendingSummary};
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

    /// What the runner indexes of every pending approval, verified (each record's checksum,
    /// and that it is pending), handed to `each` in id order without building the approvals.
    pub fn pending_summaries(&self, each: &mut dyn FnMut(PendingSummary)) -> Result<()> {
        // Reading and checking the records is most of a start over many pending approvals,
        // and each is independent: a chunk at a time, spread over the cores. Chunks keep
        // what is read and not yet handed over small (a start's peak memory).
        const CHUNK: usize = 16_384;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let mut scan = self.index.scan_prefix([P_PENDING, b'/']);
        loop {
            let mut pointers = Vec::with_capacity(CHUNK);
            for item in scan.by_ref().take(CHUNK) {
                pointers.push(self.sled(item)?);
            }
            if pointers.is_empty() {
                return Ok(());
            }
            for part in self.read_summaries(&pointers, threads) {
                part?.into_iter().for_each(&mut *each);
            }
        }
    }

    /// The summaries `pointers` lead to, split into `threads` parts read side by side.
    fn read_summaries(
        &self,
        pointers: &[(sled::IVec, sled::IVec)],
        threads: usize,
    ) -> Vec<Result<Vec<PendingSummary>>> {
        let read = |part: &[(sled::IVec, sled::IVec)]| -> Result<Vec<PendingSummary>> {
            part.iter()
                .map(|(k, pointer)| self.pending_summary(k, pointer))
                .collect()
        };
        if threads == 1 || pointers.len() < 1024 {
            return vec![read(pointers)];
        }
        std::thread::scope(|scope| {
            let running: Vec<_> = pointers
                .chunks(pointers.len().div_ceil(threads))
                .map(|part| scope.spawn(move || read(part)))
                .collect();
            running
                .into_iter()
                .map(|t| {
                    // sled can panic on some corrupt files (see `open_sled`).
                    t.join().unwrap_or_else(|_| {
                        Err(self.corrupt(String::from(
                            "sled failed while reading the pending approvals",
                        )))
                    })
                })
                .collect()
        })
    }

    fn pending_summary(&self, k: &[u8], pointer: &[u8]) -> Result<PendingSummary> {
        let id = Uuid::from_slice(&k[2..])
            .map_err(|_| self.corrupt(format!("bad pending key {}", show_key(k))))?;
        let s = self.approval_part_at(k, pointer, id, |s: &PendingSummary| s.id)?;
        if s.status != ApprovalStatus::Pending {
            return Err(self.corrupt(format!(
                "approval {id} is indexed as pending but is {}",
                s.status.as_str()
            )));
        }
        Ok(s)
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

    /// The audit record an index entry points at.
    fn pointer_seq(&self, k: &[u8], pointer: &[u8]) -> Result<u64> {
        let seq: [u8; 8] = pointer
            .try_into()
            .map_err(|_| self.corrupt(format!("record {}: bad pointer", show_key(k))))?;
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
