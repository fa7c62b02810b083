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

/// A unit whose approval write did not apply: (unit, approval, its stored version and state).
pub type Dropped = (u64, Uuid, Option<(i64, Approval)>);

/// What one commit did, handed back to the runner.
#[derive(Default)]
pub struct PgCommitted {
    /// Records other daemons committed since this one last looked, in order.
    pub foreign: Vec<AuditRecord>,
    /// This daemon's records as sealed, in order.
    pub own: Vec<AuditRecord>,
    /// Units whose approval write applied: (unit, approval, sequence number, still pending).
    pub landed: Vec<(u64, Uuid, i64, bool)>,
    /// Units whose approval write did not apply, with the approval as stored.
    pub dropped: Vec<Dropped>,
    /// Runs taken over from a daemon whose lease lapsed (as stored).
    pub taken: Vec<String>,
    /// Runs this daemon wrote while another live daemon held their lease (this one stalled
    /// past its lease and the run was taken over): those units were dropped, and this
    /// daemon must stop driving the runs.
    pub lost_runs: Vec<String>,
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
    /// A serialisation failure or deadlock (SQLSTATE 40001, 40P01; CockroachDB reports
    /// contention so): nothing was written, the same transaction may be sent again.
    Retry(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lost(m) => write!(f, "lost the connection to PostgreSQL: {m}"),
            Self::Refused(m) => write!(f, "PostgreSQL refused a commit: {m}"),
            Self::Retry(m) => write!(f, "PostgreSQL could not serialise a commit: {m}"),
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
        Some("40001" | "40P01") => SendError::Retry(e.to_string()),
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

/// How often a commit that could not be serialised is sent again before it fails.
const SERIALISATION_RETRIES: u32 = 5;

/// How many foreign records one idle poll reads at most; the next poll reads on.
const POLL_LIMIT: i64 = 2000;

/// Commit every staged unit (or, with none, only read what other daemons committed), and
/// hand back with it what commits made by reads since the last one did, oldest first.
pub(super) async fn commit_staged(
    pool: &Pool,
    shared: &Shared,
) -> std::result::Result<PgCommitted, String> {
    let _order = shared.committing.lock().await;
    // Taken under the same lock: a read's commit cannot slip in between.
    let carried = lock(&shared.carried).take();
    let mine = commit_locked(pool, shared).await.map_err(|e| e.to_string());
    merge(carried, mine)
}

/// A read's commit (reads see every write applied before them): its outcome is carried to
/// the runner with the next commit's. Returns its error, if any.
pub(super) async fn commit_for_read(
    pool: &Pool,
    shared: &Shared,
) -> std::result::Result<(), String> {
    let _order = shared.committing.lock().await;
    if lock(&shared.staged).is_empty() {
        return Ok(());
    }
    let mine = commit_locked(pool, shared).await.map_err(|e| e.to_string());
    let failed = mine.as_ref().err().cloned();
    let mut carried = lock(&shared.carried);
    let merged = merge(carried.take(), mine);
    *carried = Some(merged);
    failed.map_or(Ok(()), Err)
}

fn merge(
    first: Option<std::result::Result<PgCommitted, String>>,
    then: std::result::Result<PgCommitted, String>,
) -> std::result::Result<PgCommitted, String> {
    match (first, then) {
        (Some(Err(e)), _) | (_, Err(e)) => Err(e),
        (Some(Ok(mut first)), Ok(then)) => {
            first.foreign.extend(then.foreign);
            first.own.extend(then.own);
            first.landed.extend(then.landed);
            first.dropped.extend(then.dropped);
            first.taken.extend(then.taken);
            Ok(first)
        }
        (None, Ok(then)) => Ok(then),
    }
}

/// One commit, with `committing` held by the caller.
async fn commit_locked(
    pool: &Pool,
    shared: &Shared,
) -> std::result::Result<PgCommitted, SendError> {
    let units = std::mem::take(&mut *lock(&shared.staged));
    let known = *lock(&shared.known);
    let mut out = if units.is_empty() {
        let foreign = read_after(pool, known, POLL_LIMIT).await?;
        PgCommitted {
            foreign,
            ..Default::default()
        }
    } else {
        let mut attempts = 0;
        loop {
            match super::send::send(pool, shared, &units, known).await {
                Err(SendError::Retry(why)) if attempts < SERIALISATION_RETRIES => {
                    attempts += 1;
                    tracing::debug!("retrying a commit: {why}");
                }
                done => break done?,
            }
        }
    };
    if let Some(last) = out.own.last().or(out.foreign.last()) {
        *lock(&shared.known) = last.seq as i64;
    }
    let due = lock(&shared.renewed).is_none_or(|at| at.elapsed() >= RENEW_EVERY);
    if due {
        // After the commit: its outcome stands whatever happens here; a failed attempt is
        // made again at the next commit.
        match claim_runs(pool, shared).await {
            Ok(taken) => {
                out.taken = taken;
                *lock(&shared.renewed) = Some(std::time::Instant::now());
            }
            Err(e) => tracing::warn!("renewing run leases: {e}"),
        }
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
pub(super) fn decode_chain(
    known: i64,
    rows: &[tokio_postgres::Row],
) -> std::result::Result<Vec<AuditRecord>, SendError> {
    let mut out = Vec::with_capacity(rows.len());
    for (expect, row) in (known + 1..).zip(rows) {
        let seq: i64 = row.get(0);
        if seq != expect {
            return Err(SendError::Refused(format!(
                "audit record {expect} is missing from the database (found {seq})"
            )));
        }
        let r: AuditRecord = serde_json::from_str(row.get::<_, &str>(1))
            .map_err(|e| SendError::Refused(format!("audit record {seq}: {e}")))?;
        out.push(r);
    }
    Ok(out)
}
