//! The PostgreSQL store's group commit: staged writes, in order, in one transaction that
//! takes the head row first.

use super::Shared;
use deadpool_postgres::Pool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One staged write, sent at the next commit.
pub(super) enum Staged {
    Audit {
        seq: u64,
        hash: String,
        json: String,
    },
    Approval {
        id: String,
        status: &'static str,
        seq: u64,
        json: String,
        /// A decision: applied only while the stored approval is still pending.
        decides: bool,
    },
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
    },
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a commit keeps trying while the database is unreachable (e.g. restarting) before
/// the store gives up. The writes stay staged meanwhile; their replies wait.
const RETRY_WINDOW: Duration = Duration::from_secs(30);

/// Why a transaction did not commit.
enum SendError {
    /// The connection or the server went away: the same transaction may be sent again.
    Lost(String),
    /// The database refused it: sending it again cannot help.
    Refused(String),
}

fn classify(e: tokio_postgres::Error) -> SendError {
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

pub(super) async fn commit_staged(pool: &Pool, shared: &Shared) -> std::result::Result<(), String> {
    let _order = shared.committing.lock().await;
    if let Some(why) = lock(&shared.broken).clone() {
        return Err(why);
    }
    let writes = std::mem::take(&mut *lock(&shared.staged));
    if writes.is_empty() {
        return Ok(());
    }
    let give_up = Instant::now() + RETRY_WINDOW;
    let mut pause = Duration::from_millis(50);
    let mut retry = false;
    loop {
        let why = match send(pool, &writes, retry).await {
            Ok(()) => return Ok(()),
            Err(SendError::Lost(why)) if Instant::now() + pause < give_up => {
                tracing::warn!("PostgreSQL unreachable, retrying the commit: {why}");
                // Backoff between attempts to reach a server that is down, not a wait for
                // another task: nothing else can tell us it is back.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                retry = true;
                continue;
            }
            Err(SendError::Lost(why) | SendError::Refused(why)) => why,
        };
        let why = format!("a commit to PostgreSQL failed: {why}");
        *lock(&shared.broken) = Some(why.clone());
        return Err(why);
    }
}

/// Send the staged writes in one transaction. `retry`: an earlier attempt may have committed
/// before its connection was lost; the head row tells.
async fn send(pool: &Pool, writes: &[Staged], retry: bool) -> std::result::Result<(), SendError> {
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
    let newest = writes.iter().rev().find_map(|w| match w {
        Staged::Audit { seq, hash, .. } => Some((*seq as i64, hash)),
        _ => None,
    });
    if retry
        && let Some((last, last_hash)) = newest
        && last == seq
        && *last_hash == hash
    {
        // The lost attempt did commit.
        return Ok(());
    }
    for w in writes {
        let r = match w {
            Staged::Audit {
                seq: s,
                hash: h,
                json,
            } => {
                let s = *s as i64;
                if s != seq + 1 {
                    return Err(SendError::Refused(format!(
                        "audit record {s} does not follow the database's head {seq}: another \
                         gatehouse wrote to this database (one daemon per database for now)"
                    )));
                }
                seq = s;
                hash.clone_from(h);
                tx.execute(
                    "INSERT INTO gatehouse_audit (seq, record) VALUES ($1, $2)",
                    &[&s, json],
                )
                .await
            }
            Staged::Approval {
                id,
                status,
                seq: s,
                json,
                decides,
            } => {
                let s = *s as i64;
                let sql = if *decides {
                    // Exactly once: a decision lands only on an approval still pending.
                    "INSERT INTO gatehouse_approvals (id, status, seq, approval) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE \
                     SET status = EXCLUDED.status, seq = EXCLUDED.seq, approval = EXCLUDED.approval \
                     WHERE gatehouse_approvals.status = 'pending' RETURNING id"
                } else {
                    "INSERT INTO gatehouse_approvals (id, status, seq, approval) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE \
                     SET status = EXCLUDED.status, seq = EXCLUDED.seq, approval = EXCLUDED.approval \
                     RETURNING id"
                };
                let rows = tx
                    .query(sql, &[id, status, &s, json])
                    .await
                    .map_err(classify)?;
                if rows.is_empty() {
                    return Err(SendError::Refused(format!(
                        "approval {id} was already decided in the database"
                    )));
                }
                Ok(1)
            }
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
            Staged::Run { id, active, json } => {
                tx.execute(
                    "INSERT INTO gatehouse_runs (id, active, run) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET active = EXCLUDED.active, run = EXCLUDED.run",
                    &[id, active, json],
                )
                .await
            }
        };
        r.map_err(classify)?;
    }
    tx.execute(
        "UPDATE gatehouse_head SET seq = $1, head_hash = $2 WHERE id = 1",
        &[&seq, &hash],
    )
    .await
    .map_err(classify)?;
    tx.commit().await.map_err(classify)
}
