//! `gatehouse store copy`: a sled data directory into an empty PostgreSQL database, in one
//! transaction, the audit chain checked on the way.

use super::{PgStore, grant_key, to_json};
use crate::domain::{Approval, GENESIS_HASH};
use crate::store::sled_store::SledStore;
use crate::store::{Result, StoreError};
use std::collections::BTreeMap;

/// What a copy moved.
#[derive(Debug, Default)]
pub struct Copied {
    pub records: u64,
    pub approvals: usize,
    pub runs: usize,
    pub grants: usize,
}

const PAGE: usize = 1000;

impl PgStore {
    /// Copy everything `from` holds. Refuses a database that already holds records, and a
    /// source whose hash chain is broken; nothing is written unless all of it is.
    pub async fn copy_from(&self, from: &SledStore) -> Result<Copied> {
        let bad = |what: String| StoreError::Corrupt {
            dir: from.dir().to_path_buf(),
            what,
        };
        let mut client = self.pool.get().await.map_err(|e| self.fail(e))?;
        let tx = client.transaction().await.map_err(|e| self.fail(e))?;
        let head = tx
            .query_one(
                "SELECT seq FROM gatehouse_head WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await
            .map_err(|e| self.fail(e))?;
        let target_seq: i64 = head.get(0);
        if target_seq != 0 {
            return Err(self.fail(format!(
                "the database already holds {target_seq} audit records; store copy only fills \
                 an empty one"
            )));
        }
        let mut out = Copied::default();
        // The newest snapshot of each approval, and the idempotency keys, come from the
        // records themselves (as sled's own redo does).
        let mut approvals: BTreeMap<uuid::Uuid, (i64, Approval)> = BTreeMap::new();
        let mut keys: Vec<(String, String, String)> = Vec::new();
        let mut prev = GENESIS_HASH.to_string();
        let mut seq = 0u64;
        loop {
            let page = from.audit_after(seq, PAGE)?;
            if page.is_empty() {
                break;
            }
            for r in page {
                if r.seq != seq + 1 || r.prev_hash != prev || r.compute_hash() != r.hash {
                    return Err(bad(format!(
                        "the audit chain breaks at record {} (after {seq}); run `gatehouse \
                         audit verify` on it, nothing was copied",
                        r.seq
                    )));
                }
                tx.execute(
                    "INSERT INTO gatehouse_audit (seq, record) VALUES ($1, $2)",
                    &[&(r.seq as i64), &to_json(&r)],
                )
                .await
                .map_err(|e| self.fail(e))?;
                if let Some(a) = r.approval() {
                    if let Some(k) = r.details.get("idempotency_key").and_then(|k| k.as_str()) {
                        keys.push((a.requested_by.clone(), k.to_string(), a.id.to_string()));
                    }
                    approvals.insert(a.id, (r.seq as i64, a));
                }
                seq = r.seq;
                prev.clone_from(&r.hash);
                out.records += 1;
            }
        }
        for (id, (at, a)) in &approvals {
            tx.execute(
                "INSERT INTO gatehouse_approvals (id, status, seq, approval) VALUES ($1, $2, $3, $4)",
                &[&id.to_string(), &a.status.as_str(), at, &to_json(a)],
            )
            .await
            .map_err(|e| self.fail(e))?;
        }
        out.approvals = approvals.len();
        for (identity, key, id) in &keys {
            tx.execute(
                "INSERT INTO gatehouse_idempotency (identity, key, approval_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (identity, key) DO UPDATE SET approval_id = EXCLUDED.approval_id",
                &[identity, key, id],
            )
            .await
            .map_err(|e| self.fail(e))?;
        }
        for g in from.grants()? {
            tx.execute(
                "INSERT INTO gatehouse_grants (key, grant_json) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET grant_json = EXCLUDED.grant_json",
                &[&grant_key(&g), &to_json(&g)],
            )
            .await
            .map_err(|e| self.fail(e))?;
            out.grants += 1;
        }
        let mut before = None;
        loop {
            let page = from.runs_before(before, PAGE)?;
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            for run in &page {
                tx.execute(
                    "INSERT INTO gatehouse_runs (id, active, run) VALUES ($1, $2, $3)",
                    &[
                        &run.id.to_string(),
                        &!run.status.is_finished(),
                        &to_json(run),
                    ],
                )
                .await
                .map_err(|e| self.fail(e))?;
                out.runs += 1;
            }
        }
        tx.execute(
            "UPDATE gatehouse_head SET seq = $1, head_hash = $2 WHERE id = 1",
            &[&(seq as i64), &prev],
        )
        .await
        .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(out)
    }
}
