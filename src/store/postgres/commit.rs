//! The PostgreSQL store's group commit, shared by every daemon on the database.
//!
//! Staged writes are grouped into units (one audit record and what it describes). One
//! transaction per commit takes the head row `FOR UPDATE`, reads the records other daemons
//! committed since this one last looked (the catch-up), then seals its own units on top of the
//! head: sequence numbers and the hash chain come from the database, so every daemon sees one
//! total order. An approval write applies only while the stored row is still the version the
//! runner based its change on; a unit whose condition fails is dropped with its audit record
//! (no gap: only units that apply are sealed) and reported with the approval as stored.

use super::Shared;
use crate::domain::{Approval, AuditRecord};
use deadpool_postgres::Pool;
use std::sync::Mutex;
use uuid::Uuid;

/// What an approval write expects of the stored row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Expect {
    /// A new approval: no row yet.
    Absent,
    /// The row written by the audit record with this sequence number.
    Seq(i64),
    /// The row an earlier unit of this daemon wrote (its sequence number is known only once
    /// that unit is sealed).
    Unit(u64),
    /// New or still pending (a write whose base version is not known).
    Pending,
}

pub(super) struct ApprovalRow {
    pub id: Uuid,
    pub status: &'static str,
    pub json: String,
    pub expect: Expect,
}

/// A write that goes with a unit's audit record.
pub(super) enum Staged {
    Idempotency {
        identity: String,
        key: String,
        id: String,
    },
    GrantPut {
        key: String,
        json: String,
    },
    GrantDrop {
        key: String,
    },
    Run {
        id: String,
        active: bool,
        json: String,
        owner: String,
    },
}

/// One audit record and everything it describes: applied together or not at all.
pub(super) struct Unit {
    pub no: u64,
    pub audit: Option<AuditRecord>,
    pub approval: Option<ApprovalRow>,
    pub writes: Vec<Staged>,
}

/// What one commit did, handed back to the runner.
#[derive(Default)]
pub struct PgCommitted {
    /// Records other daemons committed since this one last looked, in order.
    pub foreign: Vec<AuditRecord>,
    /// This daemon's records as sealed, in order.
    pub own: Vec<AuditRecord>,
    /// Units whose approval write applied: (unit, approval, sequence number).
    pub landed: Vec<(u64, Uuid, i64)>,
    /// Units whose approval write did not apply, with the approval as stored.
    pub dropped: Vec<(u64, Uuid, Option<(i64, Approval)>)>,
    /// Runs taken over from a daemon whose lease lapsed (as stored).
    pub taken: Vec<String>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a transaction did not commit.
pub enum SendError {
    /// The connection or the server went away: whether it committed is unknown.
    Lost(String),
    /// The database refused it.
    Refused(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lost(m) => write!(f, "lost the connection to PostgreSQL: {m}"),
            Self::Refused(m) => write!(f, "PostgreSQL refused a commit: {m}"),
        }
    }
}

pub(super) fn classify(e: tokio_postgres::Error) -> SendError {
    // No SQLSTATE means the connection itself failed; class 08 is a connection exception,
    // 57P01–57P03 a server shutting down or starting.
    match e.code().map(|c| c.code()) {
        None => SendError::Lost(e.to_string()),
        Some(c) if c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03") => {
            SendError::Lost(e.to_string())
        }
        Some(_) => SendError::Refused(e.to_string()),
    }
}

/// How long a run lease lasts without renewal: a daemon gone this long loses its runs.
pub(super) const LEASE_SECONDS: f64 = 5.0;
/// How often a daemon renews its leases and looks for lapsed ones.
const RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Renew this daemon's run leases and take every unfinished run whose lease lapsed (or that
/// has none); `SKIP LOCKED` lets two daemons looking at once take different runs. Returns
/// the runs taken, as stored.
pub(super) async fn claim_runs(
    pool: &Pool,
    shared: &Shared,
) -> std::result::Result<Vec<String>, SendError> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| SendError::Lost(e.to_string()))?;
    let tx = client.transaction().await.map_err(classify)?;
    tx.execute(
        "UPDATE gatehouse_run_leases SET lease_until = now() + make_interval(secs => $2) \
         WHERE owner = $1",
        &[&shared.owner, &LEASE_SECONDS],
    )
    .await
    .map_err(classify)?;
    let rows = tx
        .query(
            "SELECT r.id, r.run FROM gatehouse_runs r \
             LEFT JOIN gatehouse_run_leases l ON l.run_id = r.id \
             WHERE r.active AND (l.run_id IS NULL OR l.lease_until < now()) \
             FOR UPDATE OF r SKIP LOCKED",
            &[],
        )
        .await
        .map_err(classify)?;
    let mut taken = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: &str = row.get(0);
        tx.execute(
            "INSERT INTO gatehouse_run_leases (run_id, owner, lease_until) \
             VALUES ($1, $2, now() + make_interval(secs => $3)) ON CONFLICT (run_id) \
             DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until",
            &[&id, &shared.owner, &LEASE_SECONDS],
        )
        .await
        .map_err(classify)?;
        taken.push(row.get::<_, String>(1));
    }
    tx.commit().await.map_err(classify)?;
    Ok(taken)
}

/// How many foreign records one idle poll reads at most; the next poll reads on.
const POLL_LIMIT: i64 = 2000;

/// Commit every staged unit (or, with none, only read what other daemons committed).
pub(super) async fn commit_staged(
    pool: &Pool,
    shared: &Shared,
) -> std::result::Result<PgCommitted, SendError> {
    let _order = shared.committing.lock().await;
    let units = std::mem::take(&mut *lock(&shared.staged));
    let known = *lock(&shared.known);
    let mut out = if units.is_empty() {
        let foreign = read_after(pool, known, POLL_LIMIT).await?;
        PgCommitted {
            foreign,
            ..Default::default()
        }
    } else {
        send(pool, shared, &units, known).await?
    };
    let due = lock(&shared.renewed).is_none_or(|at| at.elapsed() >= RENEW_EVERY);
    if due {
        out.taken = claim_runs(pool, shared).await?;
        *lock(&shared.renewed) = Some(std::time::Instant::now());
    }
    if let Some(last) = out.own.last().or(out.foreign.last()) {
        *lock(&shared.known) = last.seq as i64;
    }
    Ok(out)
}

async fn read_after(
    pool: &Pool,
    known: i64,
    limit: i64,
) -> std::result::Result<Vec<AuditRecord>, SendError> {
    let client = pool
        .get()
        .await
        .map_err(|e| SendError::Lost(e.to_string()))?;
    let rows = client
        .query(
            "SELECT seq, record FROM gatehouse_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&known, &limit],
        )
        .await
        .map_err(classify)?;
    decode_chain(known, &rows)
}

/// Records in order after `known`, checked to follow on without a gap (a record that fails
/// to decode, or a hole, ends the catch-up with an error rather than a silent skip).
fn decode_chain(
    known: i64,
    rows: &[tokio_postgres::Row],
) -> std::result::Result<Vec<AuditRecord>, SendError> {
    let mut out = Vec::with_capacity(rows.len());
    let mut expect = known + 1;
    for row in rows {
        let seq: i64 = row.get(0);
        if seq != expect {
            return Err(SendError::Refused(format!(
                "audit record {expect} is missing from the database (found {seq})"
            )));
        }
        let r: AuditRecord = serde_json::from_str(row.get::<_, &str>(1))
            .map_err(|e| SendError::Refused(format!("audit record {seq}: {e}")))?;
        out.push(r);
        expect += 1;
    }
    Ok(out)
}

const INSERT_NEW: &str = "INSERT INTO gatehouse_approvals (id, status, seq, approval) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING id";
const UPDATE_IF_SEQ: &str = "UPDATE gatehouse_approvals SET status = $2, seq = $3, approval = $4 \
     WHERE id = $1 AND seq = $5 RETURNING id";
/// New, or still pending: a write whose base version is not known (a submission a policy
/// decides at once, or an approval loaded without its version).
const UPSERT_IF_PENDING: &str = "INSERT INTO gatehouse_approvals (id, status, seq, approval) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE \
     SET status = EXCLUDED.status, seq = EXCLUDED.seq, approval = EXCLUDED.approval \
     WHERE gatehouse_approvals.status = 'pending' RETURNING id";

/// One transaction: head row, catch-up, then each unit sealed on top if its condition holds.
async fn send(
    pool: &Pool,
    shared: &Shared,
    units: &[Unit],
    known: i64,
) -> std::result::Result<PgCommitted, SendError> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| SendError::Lost(e.to_string()))?;
    let tx = client.transaction().await.map_err(classify)?;
    let head = tx
        .query_one(
            "SELECT seq, head_hash FROM gatehouse_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(classify)?;
    let mut seq: i64 = head.get(0);
    let mut hash: String = head.get(1);
    let mut out = PgCommitted::default();
    if seq > known {
        let rows = tx
            .query(
                "SELECT seq, record FROM gatehouse_audit WHERE seq > $1 ORDER BY seq",
                &[&known],
            )
            .await
            .map_err(classify)?;
        out.foreign = decode_chain(known, &rows)?;
    } else if seq < known {
        return Err(SendError::Refused(format!(
            "the database's head ({seq}) is behind records this daemon has seen ({known}): \
             it was restored or replaced underneath"
        )));
    }
    // Units of earlier commits this one may build on: what they became.
    let mut results = lock(&shared.unit_seqs).clone();
    for u in units {
        let next = seq + 1;
        if let Some(row) = &u.approval {
            let id = row.id.to_string();
            let applied = match row.expect {
                Expect::Absent => !tx
                    .query(INSERT_NEW, &[&id, &row.status, &next, &row.json])
                    .await
                    .map_err(classify)?
                    .is_empty(),
                Expect::Pending => !tx
                    .query(UPSERT_IF_PENDING, &[&id, &row.status, &next, &row.json])
                    .await
                    .map_err(classify)?
                    .is_empty(),
                Expect::Seq(_) | Expect::Unit(_) => {
                    let base = match row.expect {
                        Expect::Seq(s) => Some(s),
                        Expect::Unit(n) => results.get(&n).copied().flatten(),
                        _ => None,
                    };
                    match base {
                        Some(b) => !tx
                            .query(UPDATE_IF_SEQ, &[&id, &row.status, &next, &row.json, &b])
                            .await
                            .map_err(classify)?
                            .is_empty(),
                        None => false,
                    }
                }
            };
            if !applied {
                results.insert(u.no, None);
                let stored = tx
                    .query(
                        "SELECT seq, approval FROM gatehouse_approvals WHERE id = $1",
                        &[&id],
                    )
                    .await
                    .map_err(classify)?;
                let stored = match stored.first() {
                    Some(r) => Some((
                        r.get::<_, i64>(0),
                        serde_json::from_str(r.get::<_, &str>(1)).map_err(|e| {
                            SendError::Refused(format!("approval {id} as stored: {e}"))
                        })?,
                    )),
                    None => None,
                };
                out.dropped.push((u.no, row.id, stored));
                continue;
            }
            results.insert(u.no, Some(next));
            out.landed.push((u.no, row.id, next));
        }
        if let Some(audit) = &u.audit {
            let mut rec = audit.clone();
            rec.seq = next as u64;
            rec.prev_hash = hash;
            rec.hash = rec.compute_hash();
            let json = serde_json::to_string(&rec)
                .map_err(|e| SendError::Refused(format!("audit record: {e}")))?;
            tx.execute(
                "INSERT INTO gatehouse_audit (seq, record) VALUES ($1, $2)",
                &[&next, &json],
            )
            .await
            .map_err(classify)?;
            seq = next;
            hash = rec.hash.clone();
            out.own.push(rec);
        }
        for w in &u.writes {
            write_one(&tx, w).await.map_err(classify)?;
        }
    }
    tx.execute(
        "UPDATE gatehouse_head SET seq = $1, head_hash = $2 WHERE id = 1",
        &[&seq, &hash],
    )
    .await
    .map_err(classify)?;
    // A wake-up hint for the other daemons' followers; they poll as well.
    tx.execute(
        "SELECT pg_notify('gatehouse_audit', $1::bigint::text)",
        &[&seq],
    )
    .await
    .map_err(classify)?;
    tx.commit().await.map_err(classify)?;
    // Only the next commit's units can build on this one's (the runner settles this commit
    // before it starts the next), so older results are dropped.
    let first = units.first().map_or(0, |u| u.no);
    results.retain(|no, _| *no >= first);
    *lock(&shared.unit_seqs) = results;
    Ok(out)
}

async fn write_one(
    tx: &deadpool_postgres::Transaction<'_>,
    w: &Staged,
) -> std::result::Result<u64, tokio_postgres::Error> {
    match w {
        Staged::Idempotency { identity, key, id } => {
            tx.execute(
                "INSERT INTO gatehouse_idempotency (identity, key, approval_id) \
                 VALUES ($1, $2, $3) ON CONFLICT (identity, key) \
                 DO UPDATE SET approval_id = EXCLUDED.approval_id",
                &[identity, key, id],
            )
            .await
        }
        Staged::GrantPut { key, json } => {
            tx.execute(
                "INSERT INTO gatehouse_grants (key, grant_json) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET grant_json = EXCLUDED.grant_json",
                &[key, json],
            )
            .await
        }
        Staged::GrantDrop { key } => {
            tx.execute("DELETE FROM gatehouse_grants WHERE key = $1", &[key])
                .await
        }
        Staged::Run {
            id,
            active,
            json,
            owner,
        } => {
            tx.execute(
                "INSERT INTO gatehouse_runs (id, active, run) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET active = EXCLUDED.active, run = EXCLUDED.run",
                &[id, active, json],
            )
            .await?;
            // The daemon that writes a run drives it: it holds the lease until it ends.
            if *active {
                tx.execute(
                    "INSERT INTO gatehouse_run_leases (run_id, owner, lease_until) \
                     VALUES ($1, $2, now() + make_interval(secs => $3)) ON CONFLICT (run_id) \
                     DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until",
                    &[id, owner, &LEASE_SECONDS],
                )
                .await
            } else {
                tx.execute("DELETE FROM gatehouse_run_leases WHERE run_id = $1", &[id])
                    .await
            }
        }
    }
}
