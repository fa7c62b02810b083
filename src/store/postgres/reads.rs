//! The PostgreSQL store's reads. Each first commits what is staged (see `PgStore::read`), so
//! reads see every write applied before them.

use super::{PAGE, PgStore, Version, commit};
use crate::domain::{Approval, AuditRecord, Grant, Run};
use crate::store::Result;
use commit::lock;
use std::collections::VecDeque;
use uuid::Uuid;

impl PgStore {
    pub fn grants(&self) -> Result<Vec<Grant>> {
        self.read(async {
            let rows = self
                .rows("SELECT grant_json FROM gatehouse_grants ORDER BY key", &[])
                .await?;
            rows.iter()
                .map(|r| self.decode("grant", r.get::<_, &str>(0)))
                .collect()
        })
    }

    pub fn run(&self, id: Uuid) -> Result<Option<Run>> {
        self.read(async {
            let rows = self
                .rows(
                    "SELECT run FROM gatehouse_runs WHERE id = $1",
                    &[&id.to_string()],
                )
                .await?;
            rows.first()
                .map(|r| self.decode(&format!("run {id}"), r.get::<_, &str>(0)))
                .transpose()
        })
    }

    /// The unfinished runs this daemon drives from now on: its own, and those whose lease
    /// lapsed (their daemon is gone) or that have none, taken over here.
    pub fn active_runs(&self) -> Result<Vec<Run>> {
        self.read(async {
            commit::claim_runs(&self.pool, &self.shared)
                .await
                .map_err(|e| self.fail(e))?
                .iter()
                .map(|json| self.decode("run", json))
                .collect()
        })
    }

    pub fn runs_before(&self, before: Option<Uuid>, limit: usize) -> Result<Vec<Run>> {
        let before = before.map(|b| b.to_string());
        self.read(async {
            let rows = self
                .rows(
                    "SELECT run FROM gatehouse_runs WHERE ($1::text IS NULL OR id < $1) \
                     ORDER BY id DESC LIMIT $2",
                    &[&before, &(limit as i64)],
                )
                .await?;
            rows.iter()
                .map(|r| self.decode("run", r.get::<_, &str>(0)))
                .collect()
        })
    }

    pub fn approval(&self, id: Uuid) -> Result<Option<Approval>> {
        self.read(async {
            let rows = self
                .rows(
                    "SELECT approval, seq FROM gatehouse_approvals WHERE id = $1",
                    &[&id.to_string()],
                )
                .await?;
            let Some(r) = rows.first() else {
                return Ok(None);
            };
            let a: Approval = self.decode(&format!("approval {id}"), r.get::<_, &str>(0))?;
            let seq: i64 = r.get(1);
            if !a.is_pending() && seq > *lock(&self.shared.known) {
                // Final: records about it from before, not yet read from the log, must not
                // bring an older state back into the runner's memory.
                lock(&self.versions)
                    .by_approval
                    .entry(id)
                    .or_insert(Version::Seq(seq));
            }
            Ok(Some(a))
        })
    }

    pub fn pending(&self) -> Result<Vec<Approval>> {
        self.read(async {
            let rows = self
                .rows(
                    "SELECT approval, seq FROM gatehouse_approvals WHERE status = 'pending' \
                     ORDER BY id",
                    &[],
                )
                .await?;
            let mut v = lock(&self.versions);
            rows.iter()
                .map(|r| {
                    let a: Approval = self.decode("approval", r.get::<_, &str>(0))?;
                    // The version later writes to it are conditional on.
                    v.by_approval
                        .entry(a.id)
                        .or_insert(Version::Seq(r.get::<_, i64>(1)));
                    Ok(a)
                })
                .collect()
        })
    }

    fn approvals_page(&self, after: Option<&str>) -> Result<Vec<Approval>> {
        self.read(async {
            let rows = self
                .rows(
                    "SELECT approval FROM gatehouse_approvals \
                     WHERE status <> 'pending' AND ($1::text IS NULL OR id > $1) \
                     ORDER BY id LIMIT $2",
                    &[&after, &PAGE],
                )
                .await?;
            rows.iter()
                .map(|r| self.decode("approval", r.get::<_, &str>(0)))
                .collect()
        })
    }

    /// Decided approvals in id order after `after`, fetched a page at a time.
    pub fn approvals_after(
        &self,
        after: Option<Uuid>,
    ) -> impl Iterator<Item = Result<Approval>> + '_ {
        let mut cursor = after.map(|a| a.to_string());
        let mut page: VecDeque<Approval> = VecDeque::new();
        let mut done = false;
        std::iter::from_fn(move || {
            if page.is_empty() && !done {
                match self.approvals_page(cursor.as_deref()) {
                    Ok(p) => {
                        done = (p.len() as i64) < PAGE;
                        cursor = p.last().map(|a| a.id.to_string()).or(cursor.take());
                        page.extend(p);
                    }
                    Err(e) => {
                        done = true;
                        return Some(Err(e));
                    }
                }
            }
            page.pop_front().map(Ok)
        })
    }

    pub fn idempotent(&self, identity: &str, k: &str) -> Result<Option<Uuid>> {
        self.read(async {
            let rows = self
                .rows(
                    "SELECT approval_id FROM gatehouse_idempotency \
                     WHERE identity = $1 AND key = $2",
                    &[&identity, &k],
                )
                .await?;
            rows.first()
                .map(|r| {
                    Uuid::parse_str(r.get::<_, &str>(0))
                        .map_err(|_| self.corrupt("bad idempotency entry".into()))
                })
                .transpose()
        })
    }

    pub fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.read(async {
            let rows = self
                .rows(
                    "SELECT record FROM gatehouse_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&(after as i64), &(limit as i64)],
                )
                .await?;
            rows.iter()
                .map(|r| self.decode("audit record", r.get::<_, &str>(0)))
                .collect()
        })
    }

    fn audit_page_before(&self, before: Option<i64>) -> Result<Vec<AuditRecord>> {
        self.read(async {
            let rows = self
                .rows(
                    "SELECT record FROM gatehouse_audit WHERE ($1::bigint IS NULL OR seq < $1) \
                     ORDER BY seq DESC LIMIT $2",
                    &[&before, &PAGE],
                )
                .await?;
            rows.iter()
                .map(|r| self.decode("audit record", r.get::<_, &str>(0)))
                .collect()
        })
    }

    /// Audit records from the newest backwards, fetched a page at a time.
    pub fn audit_rev(&self) -> impl Iterator<Item = Result<AuditRecord>> + '_ {
        let mut before: Option<i64> = None;
        let mut page: VecDeque<AuditRecord> = VecDeque::new();
        let mut done = false;
        std::iter::from_fn(move || {
            if page.is_empty() && !done {
                match self.audit_page_before(before) {
                    Ok(p) => {
                        done = (p.len() as i64) < PAGE;
                        before = p.last().map(|r| r.seq as i64).or(before);
                        page.extend(p);
                    }
                    Err(e) => {
                        done = true;
                        return Some(Err(e));
                    }
                }
            }
            page.pop_front().map(Ok)
        })
    }
}
