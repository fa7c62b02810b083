//! The PostgreSQL store (`[store] kind = "postgres"`), one daemon per database for now.
//!
//! Writes are staged in memory in the runner's order and sent in one transaction by the
//! commit task (group commit: PostgreSQL's own commit replaces flush + fsync). Each
//! transaction takes the single head row `FOR UPDATE` and checks that its first audit record
//! follows the head's sequence number, so sequence numbers stay gap-free and in commit order
//! and the hash chain is checked at every commit; a second daemon writing to the same
//! database is detected there and stops the store instead of forking the chain.
//!
//! Reads first commit whatever is staged (in order, under the same lock as the commit task),
//! so they see every write applied before them. The runner calls the store synchronously, so
//! reads wait on a blocking section of the multi-threaded runtime.
//!
//! JSON is kept as `text`, byte for byte as written: `jsonb` would reorder keys and rewrite
//! numbers, and records are read back to check their hashes.

mod commit;
mod copy;

pub use copy::Copied;

use super::{ApprovalWrite, Result, StoreError};
use crate::domain::{Approval, AuditKind, AuditRecord, GENESIS_HASH, Grant, Run};
use commit::{Staged, commit_staged, lock};
use deadpool_postgres::{Pool, Runtime};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_postgres::NoTls;
use uuid::Uuid;

/// Schema of the tables below; a database written by a newer gatehouse is refused.
pub const PG_SCHEMA_VERSION: i32 = 1;
const PAGE: i64 = 500;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS gatehouse_head (
    id integer PRIMARY KEY CHECK (id = 1),
    schema_version integer NOT NULL,
    seq bigint NOT NULL,
    head_hash text NOT NULL
);
CREATE TABLE IF NOT EXISTS gatehouse_audit (
    seq bigint PRIMARY KEY,
    record text NOT NULL
);
CREATE TABLE IF NOT EXISTS gatehouse_approvals (
    id text COLLATE "C" PRIMARY KEY,
    status text NOT NULL,
    seq bigint NOT NULL,
    approval text NOT NULL
);
CREATE INDEX IF NOT EXISTS gatehouse_approvals_pending
    ON gatehouse_approvals (id) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS gatehouse_idempotency (
    identity text NOT NULL,
    key text NOT NULL,
    approval_id text NOT NULL,
    PRIMARY KEY (identity, key)
);
CREATE TABLE IF NOT EXISTS gatehouse_grants (
    key text PRIMARY KEY,
    grant_json text NOT NULL
);
CREATE TABLE IF NOT EXISTS gatehouse_runs (
    id text COLLATE "C" PRIMARY KEY,
    active boolean NOT NULL,
    run text NOT NULL
);
"#;

pub struct PgStore {
    pool: Pool,
    shared: Arc<Shared>,
    label: PathBuf,
}

struct Shared {
    staged: Mutex<Vec<Staged>>,
    /// Held from taking the staged writes until their transaction ends: commits stay in order.
    committing: tokio::sync::Mutex<()>,
    /// Set when a commit failed: its writes are gone, so nothing may be acknowledged after.
    broken: Mutex<Option<String>>,
}

#[derive(Clone)]
pub struct PgSyncer {
    pool: Pool,
    shared: Arc<Shared>,
}

impl PgSyncer {
    pub async fn commit(self) -> io::Result<()> {
        commit_staged(&self.pool, &self.shared)
            .await
            .map_err(io::Error::other)
    }
}

/// Grants are keyed like sled's: identity, run, tool and server.
fn grant_key(g: &Grant) -> String {
    serde_json::json!([g.identity, g.run_id, g.tool, g.server]).to_string()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serialising gatehouse's own types cannot fail (string keys, no foreign serialisers).
    serde_json::to_string(v).unwrap_or_default()
}

impl PgStore {
    /// Connect, create the schema if the database is empty, and check its version.
    pub async fn open(url: &str, url_env: &str) -> Result<PgStore> {
        let label = PathBuf::from(format!("postgres (${url_env})"));
        let db = |what: String| StoreError::Corrupt {
            dir: label.clone(),
            what,
        };
        let cfg = deadpool_postgres::Config {
            url: Some(url.to_string()),
            ..Default::default()
        };
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|e| db(format!("bad database URL in ${url_env}: {e}")))?;
        let client = pool.get().await.map_err(|e| StoreError::Io {
            dir: label.clone(),
            source: io::Error::other(format!("cannot connect: {e}")),
        })?;
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(|e| db(format!("cannot create the schema: {e}")))?;
        client
            .execute(
                "INSERT INTO gatehouse_head (id, schema_version, seq, head_hash) \
                 VALUES (1, $1, 0, $2) ON CONFLICT (id) DO NOTHING",
                &[&PG_SCHEMA_VERSION, &GENESIS_HASH],
            )
            .await
            .map_err(|e| db(format!("cannot write the head row: {e}")))?;
        let found: i32 = client
            .query_one(
                "SELECT schema_version FROM gatehouse_head WHERE id = 1",
                &[],
            )
            .await
            .map_err(|e| db(format!("cannot read the head row: {e}")))?
            .get(0);
        if found > PG_SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                dir: label,
                found: found as u32,
                supported: PG_SCHEMA_VERSION as u32,
            });
        }
        drop(client);
        Ok(PgStore {
            pool,
            shared: Arc::new(Shared {
                staged: Mutex::new(Vec::new()),
                committing: tokio::sync::Mutex::new(()),
                broken: Mutex::new(None),
            }),
            label,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.label
    }

    pub fn syncer(&self) -> PgSyncer {
        PgSyncer {
            pool: self.pool.clone(),
            shared: self.shared.clone(),
        }
    }

    fn fail(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            dir: self.label.clone(),
            source: io::Error::other(what.to_string()),
        }
    }

    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt {
            dir: self.label.clone(),
            what,
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, what: &str, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| self.corrupt(format!("{what}: {e}")))
    }

    fn stage(&self, w: Staged) {
        lock(&self.shared.staged).push(w);
    }

    /// Run a read after committing what is staged, waiting for it on this thread.
    fn read<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| self.fail("the PostgreSQL store needs a tokio runtime"))?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(self.fail("the PostgreSQL store needs tokio's multi-threaded runtime"));
        }
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                commit_staged(&self.pool, &self.shared)
                    .await
                    .map_err(|e| self.fail(e))?;
                f.await
            })
        })
    }

    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let client = self.pool.get().await.map_err(|e| self.fail(e))?;
        client.query(sql, params).await.map_err(|e| self.fail(e))
    }

    fn stage_audit(&self, r: &AuditRecord) {
        self.stage(Staged::Audit {
            seq: r.seq,
            hash: r.hash.clone(),
            json: to_json(r),
        });
    }

    pub fn write_approval(&self, w: ApprovalWrite<'_>) -> Result<()> {
        self.stage_audit(w.audit);
        self.stage(Staged::Approval {
            id: w.approval.id.to_string(),
            status: w.approval.status.as_str(),
            seq: w.audit.seq,
            json: to_json(w.approval),
            decides: w.audit.kind == AuditKind::ApprovalDecided,
        });
        if let Some((identity, key)) = w.idempotency {
            self.stage(Staged::Idempotency {
                identity: identity.into(),
                key: key.into(),
                id: w.approval.id.to_string(),
            });
        }
        if let Some(g) = w.grant {
            self.stage(Staged::GrantPut {
                key: grant_key(g),
                json: to_json(g),
            });
        }
        Ok(())
    }

    pub fn revoke_grant(&self, record: &AuditRecord, g: &Grant) -> Result<()> {
        self.stage_audit(record);
        self.remove_grant(g)
    }

    pub fn remove_grant(&self, g: &Grant) -> Result<()> {
        self.stage(Staged::GrantDrop { key: grant_key(g) });
        Ok(())
    }

    pub fn write_audit(&self, record: &AuditRecord) -> Result<()> {
        self.stage_audit(record);
        Ok(())
    }

    pub fn write_run(&self, run: &Run, record: &AuditRecord) -> Result<()> {
        self.stage_audit(record);
        self.stage(Staged::Run {
            id: run.id.to_string(),
            active: !run.status.is_finished(),
            json: to_json(run),
        });
        Ok(())
    }

    /// Every write is one transaction with its audit record: nothing to redo.
    pub fn redo_last(&self, _last: &AuditRecord) -> Result<()> {
        Ok(())
    }

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

    pub fn active_runs(&self) -> Result<Vec<Run>> {
        self.read(async {
            let rows = self
                .rows(
                    "SELECT run FROM gatehouse_runs WHERE active ORDER BY id",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| self.decode("run", r.get::<_, &str>(0)))
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
                    "SELECT approval FROM gatehouse_approvals WHERE id = $1",
                    &[&id.to_string()],
                )
                .await?;
            rows.first()
                .map(|r| self.decode(&format!("approval {id}"), r.get::<_, &str>(0)))
                .transpose()
        })
    }

    pub fn pending(&self) -> Result<Vec<Approval>> {
        self.read(async {
            let rows = self
                .rows(
                    "SELECT approval FROM gatehouse_approvals WHERE status = 'pending' ORDER BY id",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| self.decode("approval", r.get::<_, &str>(0)))
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
