//! The PostgreSQL store's group commit: staged writes, in order, in one transaction that
//! takes the head row first.

use super::Shared;
use deadpool_postgres::Pool;
use std::sync::Mutex;

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

pub(super) async fn commit_staged(pool: &Pool, shared: &Shared) -> std::result::Result<(), String> {
    let _order = shared.committing.lock().await;
    if let Some(why) = lock(&shared.broken).clone() {
        return Err(why);
    }
    let writes = std::mem::take(&mut *lock(&shared.staged));
    if writes.is_empty() {
        return Ok(());
    }
    let r = send(pool, &writes).await;
    if let Err(why) = &r {
        *lock(&shared.broken) = Some(format!("a commit to PostgreSQL failed: {why}"));
    }
    r
}

async fn send(pool: &Pool, writes: &[Staged]) -> std::result::Result<(), String> {
    let mut client = pool.get().await.map_err(|e| e.to_string())?;
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    let head = tx
        .query_one(
            "SELECT seq, head_hash FROM gatehouse_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut seq: i64 = head.get(0);
    let mut hash: String = head.get(1);
    for w in writes {
        let r = match w {
            Staged::Audit {
                seq: s,
                hash: h,
                json,
            } => {
                let s = *s as i64;
                if s != seq + 1 {
                    return Err(format!(
                        "audit record {s} does not follow the database's head {seq}: another \
                         gatehouse wrote to this database (one daemon per database for now)"
                    ));
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
                    .map_err(|e| e.to_string())?;
                if rows.is_empty() {
                    return Err(format!("approval {id} was already decided in the database"));
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
        r.map_err(|e| e.to_string())?;
    }
    tx.execute(
        "UPDATE gatehouse_head SET seq = $1, head_hash = $2 WHERE id = 1",
        &[&seq, &hash],
    )
    .await
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())
}
