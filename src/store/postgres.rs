//! The PostgreSQL store (`[store] kind = "postgres"`): several daemons on one database
//! behave as one gatehouse (DESIGN §12).
//!
//! Writes are staged in memory in the runner's order, grouped into units (an audit record and
//! what it describes), and sent in one transaction by the commit task (group commit:
//! PostgreSQL's own commit replaces flush + fsync). Each transaction takes the single head
//! row `FOR UPDATE`, reads what other daemons committed since (the catch-up), and seals its
//! own records on top of the head: one gap-free order and one hash chain for every daemon.
//! Approval writes are conditional on the version the runner based them on; see
//! `commit.rs` and `send.rs`. Run leases (`gatehouse_run_leases`) say which daemon drives
//! each unfinished run.
//!
//! Reads first commit whatever is staged (in order, under the same lock as the commit task),
//! so they see every write applied before them. The runner calls the store synchronously, so
//! reads wait on a blocking section of the multi-threaded runtime.
//!
//! JSON is kept as `text`, byte for byte as written: `jsonb` would reorder keys and rewrite
//! numbers, and records are read back to check their hashes.

mod commit;
mod copy;
mod listen;
mod reads;
mod send;

pub use copy::Copied;

use super::{ApprovalWrite, Result, StoreError};
use crate::domain::{Approval, AuditKind, AuditRecord, GENESIS_HASH, Grant, Run};
pub use commit::PgCommitted;
use commit::{ApprovalRow, Expect, Staged, Unit, commit_staged, lock};
use deadpool_postgres::{Pool, Runtime};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_postgres::NoTls;
use uuid::Uuid;

/// Schema of the tables below; a database written by a newer gatehouse is refused.
/// Version 2 added run leases (several daemons on one database).
pub const PG_SCHEMA_VERSION: i32 = 2;
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
CREATE TABLE IF NOT EXISTS gatehouse_run_leases (
    run_id text COLLATE "C" PRIMARY KEY,
    owner text NOT NULL,
    lease_until timestamptz NOT NULL
);
"#;

pub struct PgStore {
    pool: Pool,
    shared: Arc<Shared>,
    versions: Mutex<Versions>,
    label: PathBuf,
    url: String,
    /// Woken by the `LISTEN` connection, once started (see [`PgStore::wake_hint`]).
    wake: Mutex<Option<Arc<tokio::sync::Notify>>>,
}

pub(super) struct Shared {
    staged: Mutex<Vec<Unit>>,
    /// Held from taking the staged units until their transaction ends: commits stay in order.
    committing: tokio::sync::Mutex<()>,
    /// The newest record this daemon has sealed or read: the catch-up starts after it.
    known: Mutex<i64>,
    /// What the units of the last commit became (their sequence number, or dropped): the
    /// next commit's units may build on them.
    unit_seqs: Mutex<HashMap<u64, Option<i64>>>,
    /// This process, as the owner of the run leases it holds.
    owner: String,
    /// When this daemon last renewed its leases and looked for lapsed ones.
    renewed: Mutex<Option<std::time::Instant>>,
    /// A commit a read made (reads see every write applied before them): its outcome goes
    /// to the runner with the next commit's.
    carried: Mutex<Option<std::result::Result<PgCommitted, String>>>,
}

/// The version of an approval this daemon's runner last based a change on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Version {
    /// As written by the audit record with this sequence number.
    Seq(i64),
    /// As written by this daemon's unit, not yet settled.
    Unit(u64),
}

/// The runner-side bookkeeping of versions (touched only from the runner's task).
#[derive(Default)]
struct Versions {
    by_approval: HashMap<Uuid, Version>,
    next_unit: u64,
}

#[derive(Clone)]
pub struct PgSyncer {
    pool: Pool,
    shared: Arc<Shared>,
}

impl PgSyncer {
    pub async fn commit(self) -> io::Result<PgCommitted> {
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
            // A database that does not answer fails the commit soon (callers get 503) rather
            // than holding every reply.
            connect_timeout: Some(std::time::Duration::from_secs(3)),
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
        let head = client
            .query_one(
                "SELECT schema_version, seq FROM gatehouse_head WHERE id = 1",
                &[],
            )
            .await
            .map_err(|e| db(format!("cannot read the head row: {e}")))?;
        let found: i32 = head.get(0);
        let head_seq: i64 = head.get(1);
        if found < PG_SCHEMA_VERSION {
            // The tables above were added with `IF NOT EXISTS`: the database is up to date.
            client
                .execute(
                    "UPDATE gatehouse_head SET schema_version = $1 WHERE id = 1 \
                     AND schema_version < $1",
                    &[&PG_SCHEMA_VERSION],
                )
                .await
                .map_err(|e| db(format!("cannot update the schema version: {e}")))?;
        }
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
                known: Mutex::new(head_seq),
                owner: Uuid::new_v4().to_string(),
                renewed: Mutex::new(None),
                unit_seqs: Mutex::new(HashMap::new()),
                carried: Mutex::new(None),
            }),
            versions: Mutex::new(Versions::default()),
            label,
            url: url.to_string(),
            wake: Mutex::new(None),
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

    /// Stage one unit: an audit record, the approval row it writes, and the rest.
    fn stage(
        &self,
        audit: Option<&AuditRecord>,
        approval: Option<(&Approval, bool)>,
        writes: Vec<Staged>,
    ) {
        let mut v = lock(&self.versions);
        let no = v.next_unit;
        v.next_unit += 1;
        let approval = approval.map(|(a, created)| {
            let expect = match v.by_approval.get(&a.id) {
                Some(Version::Seq(s)) => Expect::Seq(*s),
                Some(Version::Unit(n)) => Expect::Unit(*n),
                None if created => Expect::Absent,
                None => Expect::Pending,
            };
            v.by_approval.insert(a.id, Version::Unit(no));
            ApprovalRow {
                id: a.id,
                status: a.status.as_str(),
                json: to_json(a),
                expect,
            }
        });
        lock(&self.shared.staged).push(Unit {
            no,
            audit: audit.cloned(),
            approval,
            writes,
        });
    }

    fn read<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| self.fail("the PostgreSQL store needs a tokio runtime"))?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(self.fail("the PostgreSQL store needs tokio's multi-threaded runtime"));
        }
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                commit::commit_for_read(&self.pool, &self.shared)
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

    pub fn write_approval(&self, w: ApprovalWrite<'_>) -> Result<()> {
        let mut writes = Vec::new();
        if let Some((identity, key)) = w.idempotency {
            writes.push(Staged::Idempotency {
                identity: identity.into(),
                key: key.into(),
                id: w.approval.id.to_string(),
            });
        }
        if let Some(g) = w.grant {
            writes.push(Staged::GrantPut {
                key: grant_key(g),
                json: to_json(g),
            });
        }
        let created = w.audit.kind == AuditKind::ApprovalCreated;
        self.stage(Some(w.audit), Some((w.approval, created)), writes);
        Ok(())
    }

    pub fn revoke_grant(&self, record: &AuditRecord, g: &Grant) -> Result<()> {
        self.stage(
            Some(record),
            None,
            vec![Staged::GrantDrop { key: grant_key(g) }],
        );
        Ok(())
    }

    pub fn remove_grant(&self, g: &Grant) -> Result<()> {
        self.stage(None, None, vec![Staged::GrantDrop { key: grant_key(g) }]);
        Ok(())
    }

    pub fn write_audit(&self, record: &AuditRecord) -> Result<()> {
        self.stage(Some(record), None, Vec::new());
        Ok(())
    }

    pub fn write_run(&self, run: &Run, record: &AuditRecord) -> Result<()> {
        let w = Staged::Run {
            id: run.id.to_string(),
            active: !run.status.is_finished(),
            json: to_json(run),
            owner: self.shared.owner.clone(),
        };
        self.stage(Some(record), None, vec![w]);
        Ok(())
    }

    /// After a lost connection: forget everything staged and every version (nothing of it
    /// was acknowledged; the runner reloads from the database), once the database answers.
    pub fn reconnect(&self) -> Result<()> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| self.fail("the PostgreSQL store needs a tokio runtime"))?;
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let _order = self.shared.committing.lock().await;
                let client = self.pool.get().await.map_err(|e| self.fail(e))?;
                client
                    .simple_query("SELECT 1")
                    .await
                    .map_err(|e| self.fail(e))?;
                lock(&self.shared.staged).clear();
                lock(&self.shared.unit_seqs).clear();
                *lock(&self.shared.carried) = None;
                *lock(&self.versions) = Versions::default();
                Ok(())
            })
        })
    }

    /// Woken when another daemon commits (a hint: the runner polls as well). The first call
    /// starts the `LISTEN` connection; the CLI's readers never make it.
    pub fn wake_hint(&self) -> Arc<tokio::sync::Notify> {
        let mut wake = lock(&self.wake);
        if let Some(w) = &*wake {
            return w.clone();
        }
        let w = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(listen::listen(
            self.url.clone(),
            self.shared.clone(),
            w.clone(),
        ));
        *wake = Some(w.clone());
        w
    }

    /// Drop this daemon's run leases (at a clean stop); a failure only delays the takeover
    /// until the leases lapse.
    pub fn release_runs(&self) {
        let released = self.read(async {
            let client = self.pool.get().await.map_err(|e| self.fail(e))?;
            client
                .execute(
                    "DELETE FROM gatehouse_run_leases WHERE owner = $1",
                    &[&self.shared.owner],
                )
                .await
                .map_err(|e| self.fail(e))
        });
        if let Err(e) = released {
            tracing::warn!("could not hand over this daemon's runs: {e}");
        }
    }

    /// The runner starts following the database after the record `seq` it loaded.
    pub fn follow_from(&self, seq: u64) {
        *lock(&self.shared.known) = seq as i64;
    }

    /// Book what a commit did (on the runner's task) and tell the runner what to apply: a
    /// foreign record or a dropped unit's stored approval is applied to memory only when no
    /// later write of this daemon to the same approval is still on its way (that write
    /// lands on top of it, or is dropped and reported in turn).
    pub fn settle(&self, c: PgCommitted) -> super::Settled {
        let taken = c
            .taken
            .iter()
            .filter_map(|json| match serde_json::from_str::<Run>(json) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!("a run taken over does not decode: {e}");
                    None
                }
            })
            .collect();
        let mut v = lock(&self.versions);
        let mut foreign = Vec::with_capacity(c.foreign.len());
        for r in c.foreign {
            let apply = match r.approval_id {
                // A write of this daemon is on its way (it lands on top, or is dropped and
                // reported), or a newer state is already known.
                Some(id) if matches!(v.by_approval.get(&id), Some(Version::Unit(_))) => false,
                Some(id) if matches!(v.by_approval.get(&id), Some(Version::Seq(s)) if *s >= r.seq as i64) => {
                    false
                }
                Some(id) => {
                    if r.approval().is_some_and(|a| a.is_pending()) {
                        v.by_approval.insert(id, Version::Seq(r.seq as i64));
                    } else {
                        v.by_approval.remove(&id);
                    }
                    true
                }
                None => true,
            };
            foreign.push((r, apply));
        }
        for (no, id, seq, pending) in c.landed {
            if v.by_approval.get(&id) == Some(&Version::Unit(no)) {
                if pending {
                    v.by_approval.insert(id, Version::Seq(seq));
                } else {
                    // Final, and every record before it has been read: nothing to guard.
                    v.by_approval.remove(&id);
                }
            }
        }
        let mut dropped = Vec::with_capacity(c.dropped.len());
        for (no, id, stored) in c.dropped {
            let latest = v.by_approval.get(&id) == Some(&Version::Unit(no));
            match &stored {
                Some((seq, _)) if latest => {
                    v.by_approval.insert(id, Version::Seq(*seq));
                }
                _ if latest => {
                    v.by_approval.remove(&id);
                }
                _ => {}
            }
            if let Some((_, a)) = stored {
                dropped.push((a, latest));
            }
        }
        let lost_runs = c
            .lost_runs
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect();
        super::Settled {
            foreign,
            own: Some(c.own),
            dropped,
            taken,
            lost_runs,
        }
    }

    /// Every write is one transaction with its audit record: nothing to redo.
    pub fn redo_last(&self, _last: &AuditRecord) -> Result<()> {
        Ok(())
    }
}
