//! One commit's transaction, in a few statements whatever the batch size: the head row, the
//! catch-up, the stored versions of every approval the batch touches, then each table's rows
//! in one multi-row statement (`unnest`). Round trips, not rows, bound PostgreSQL's rate.
//!
//! Every approval write of every daemon happens under the head row's lock, so the versions
//! read here cannot change before this transaction commits.

use super::Shared;
use super::commit::{
    Expect, LEASE_SECONDS, PgCommitted, SendError, Staged, Unit, classify, decode_chain, lock,
};
use crate::domain::Approval;
use deadpool_postgres::Pool;
use std::collections::{BTreeMap, HashMap};

/// The final state of each row the batch writes (a batch may write a row several times:
/// only its last state is sent).
#[derive(Default)]
struct Rows {
    approvals: BTreeMap<String, (String, i64, String)>,
    idempotency: BTreeMap<(String, String), String>,
    grants: BTreeMap<String, Option<String>>,
    runs: BTreeMap<String, (bool, String, String)>,
    audit: Vec<(i64, String)>,
}

pub(super) async fn send(
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
    // The stored version (seq, status) of every approval the batch writes.
    let ids: Vec<String> = units
        .iter()
        .filter_map(|u| u.approval.as_ref().map(|a| a.id.to_string()))
        .collect();
    // The runs the batch writes, each with the daemon that writes it (this one) and whether
    // it writes the run as still active.
    let run_writes: Vec<(&str, &str, bool)> = units
        .iter()
        .flat_map(|u| u.writes.iter())
        .filter_map(|w| match w {
            Staged::Run {
                id, owner, active, ..
            } => Some((id.as_str(), owner.as_str(), *active)),
            _ => None,
        })
        .collect();
    let (head_sql, catch_up_sql, versions_sql, leases_sql, ended_sql) = futures::try_join!(
        tx.prepare_cached("SELECT seq, head_hash FROM gatehouse_head WHERE id = 1 FOR UPDATE"),
        tx.prepare_cached("SELECT seq, record FROM gatehouse_audit WHERE seq > $1 ORDER BY seq"),
        tx.prepare_cached("SELECT id, seq, status FROM gatehouse_approvals WHERE id = ANY($1)"),
        // Leases of those runs that another daemon holds and has renewed in time.
        tx.prepare_cached(
            "SELECT run_id, owner FROM gatehouse_run_leases \
             WHERE run_id = ANY($1) AND lease_until >= now()"
        ),
        tx.prepare_cached("SELECT id FROM gatehouse_runs WHERE id = ANY($1) AND NOT active"),
    )
    .map_err(classify)?;
    // One round trip for the three: the server runs them in order, so the catch-up and the
    // versions are read once the head row is locked (each statement sees what committed
    // before it started), and nothing can change them before this transaction ends.
    let after: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&known];
    let among: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
    let run_ids: Vec<String> = run_writes.iter().map(|(id, ..)| id.to_string()).collect();
    let runs_among: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&run_ids];
    let (head, catch_up, versions, leases, ended) = futures::try_join!(
        tx.query_one(&head_sql, &[]),
        tx.query(&catch_up_sql, &after),
        tx.query(&versions_sql, &among),
        tx.query(&leases_sql, &runs_among),
        tx.query(&ended_sql, &runs_among),
    )
    .map_err(classify)?;
    // A run whose live lease is another daemon's, or that another daemon already finished,
    // was taken over from this one (it stalled past its lease): this one's writes that would
    // still drive it are fenced off, so two daemons never drive one run (nor run its tool
    // twice). A write recording the end of a run it ended itself is not fenced.
    let leased: HashMap<String, String> = leases.iter().map(|r| (r.get(0), r.get(1))).collect();
    let ended: std::collections::HashSet<String> = ended.iter().map(|r| r.get(0)).collect();
    let fenced: std::collections::HashSet<&str> = run_writes
        .iter()
        .filter(|(id, me, active)| {
            leased.get(*id).is_some_and(|owner| owner != me) || (*active && ended.contains(*id))
        })
        .map(|(id, ..)| *id)
        .collect();
    let mut seq: i64 = head.get(0);
    let mut hash: String = head.get(1);
    if seq < known {
        return Err(SendError::Refused(format!(
            "the database's head ({seq}) is behind records this daemon has seen ({known}): \
             it was restored or replaced underneath"
        )));
    }
    let mut out = PgCommitted {
        foreign: decode_chain(known, &catch_up)?,
        ..Default::default()
    };
    let mut stored: HashMap<String, (i64, String)> = versions
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    // Units of the previous commit this one may build on: what they became.
    let mut results = lock(&shared.unit_seqs).clone();
    let mut rows = Rows::default();
    let mut dropped_ids = Vec::new();
    for u in units {
        let next = seq + 1;
        let lost = u.writes.iter().find_map(|w| match w {
            Staged::Run { id, .. } if fenced.contains(id.as_str()) => Some(id),
            _ => None,
        });
        if let Some(id) = lost {
            results.insert(u.no, None);
            if !out.lost_runs.contains(id) {
                out.lost_runs.push(id.clone());
            }
            continue;
        }
        if let Some(row) = &u.approval {
            let id = row.id.to_string();
            let now = stored.get(&id);
            let applies = match row.expect {
                Expect::Absent => now.is_none(),
                Expect::Pending => now.is_none_or(|(_, status)| status == "pending"),
                Expect::Seq(s) => now.is_some_and(|(v, _)| *v == s),
                Expect::Unit(n) => match (results.get(&n).copied().flatten(), now) {
                    (Some(s), Some((v, _))) => *v == s,
                    _ => false,
                },
            };
            if !applies {
                results.insert(u.no, None);
                dropped_ids.push((u.no, row.id, id));
                continue;
            }
            results.insert(u.no, Some(next));
            out.landed
                .push((u.no, row.id, next, row.status == "pending"));
            stored.insert(id.clone(), (next, row.status.to_string()));
            rows.approvals
                .insert(id, (row.status.to_string(), next, row.json.clone()));
        }
        if let Some(audit) = &u.audit {
            let mut rec = audit.clone();
            rec.seq = next as u64;
            rec.prev_hash = hash;
            rec.hash = rec.compute_hash();
            let json = serde_json::to_string(&rec)
                .map_err(|e| SendError::Refused(format!("audit record: {e}")))?;
            rows.audit.push((next, json));
            seq = next;
            hash = rec.hash.clone();
            out.own.push(rec);
        }
        for w in &u.writes {
            match w {
                Staged::Idempotency { identity, key, id } => {
                    rows.idempotency
                        .insert((identity.clone(), key.clone()), id.clone());
                }
                Staged::GrantPut { key, json } => {
                    rows.grants.insert(key.clone(), Some(json.clone()));
                }
                Staged::GrantDrop { key } => {
                    rows.grants.insert(key.clone(), None);
                }
                Staged::Run {
                    id,
                    active,
                    json,
                    owner,
                } => {
                    rows.runs
                        .insert(id.clone(), (*active, json.clone(), owner.clone()));
                }
            }
        }
    }
    // Dropped units are reported with the approval as stored (rare: a lost race).
    for (no, uuid, id) in dropped_ids {
        let r = tx
            .query(
                "SELECT seq, approval FROM gatehouse_approvals WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(classify)?;
        let now = match r.first() {
            Some(r) => Some((
                r.get::<_, i64>(0),
                serde_json::from_str::<Approval>(r.get::<_, &str>(1))
                    .map_err(|e| SendError::Refused(format!("approval {id} as stored: {e}")))?,
            )),
            None => None,
        };
        out.dropped.push((no, uuid, now));
    }
    write_rows(&tx, &rows, seq, &hash).await.map_err(classify)?;
    tx.commit().await.map_err(classify)?;
    // Only the next commit's units can build on this one's (the runner settles this commit
    // before it starts the next), so older results are dropped.
    let first = units.first().map_or(0, |u| u.no);
    results.retain(|no, _| *no >= first);
    *lock(&shared.unit_seqs) = results;
    Ok(out)
}

/// Each table's rows in one statement (the statements go out pipelined).
async fn write_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &Rows,
    seq: i64,
    hash: &str,
) -> std::result::Result<(), tokio_postgres::Error> {
    let (seqs, records): (Vec<i64>, Vec<&str>) =
        rows.audit.iter().map(|(s, r)| (*s, r.as_str())).unzip();
    let audit_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&seqs, &records];
    let (audit_sql, approvals_sql, idempotency_sql, head_sql) = futures::try_join!(
        tx.prepare_cached(
            "INSERT INTO gatehouse_audit (seq, record) \
             SELECT * FROM unnest($1::bigint[], $2::text[])"
        ),
        tx.prepare_cached(
            "INSERT INTO gatehouse_approvals (id, status, seq, approval) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) \
             ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, seq = EXCLUDED.seq, \
             approval = EXCLUDED.approval"
        ),
        tx.prepare_cached(
            "INSERT INTO gatehouse_idempotency (identity, key, approval_id) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) \
             ON CONFLICT (identity, key) DO UPDATE SET approval_id = EXCLUDED.approval_id"
        ),
        // The new head, with a wake-up hint for the other daemons; they poll as well
        // (NOTIFY is only a hint, and not every PostgreSQL-compatible database has it).
        tx.prepare_cached(
            "WITH moved AS (UPDATE gatehouse_head SET seq = $1, head_hash = $2 WHERE id = 1) \
             SELECT pg_notify('gatehouse_audit', $1::text)"
        ),
    )?;
    let audit = tx.execute(&audit_sql, &audit_params);
    let mut ids = Vec::new();
    let mut statuses = Vec::new();
    let mut aseqs = Vec::new();
    let mut jsons = Vec::new();
    for (id, (status, s, json)) in &rows.approvals {
        ids.push(id.as_str());
        statuses.push(status.as_str());
        aseqs.push(*s);
        jsons.push(json.as_str());
    }
    let approval_params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&ids, &statuses, &aseqs, &jsons];
    let approvals = tx.execute(&approvals_sql, &approval_params);
    let (mut who, mut keys, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    for ((identity, key), id) in &rows.idempotency {
        who.push(identity.as_str());
        keys.push(key.as_str());
        targets.push(id.as_str());
    }
    let idempotency_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&who, &keys, &targets];
    let idempotency = tx.execute(&idempotency_sql, &idempotency_params);
    let head_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&seq, &hash];
    let head = tx.query(&head_sql, &head_params);
    futures::try_join!(audit, approvals, idempotency, head)?;
    for (key, json) in &rows.grants {
        match json {
            Some(json) => {
                tx.execute(
                    "INSERT INTO gatehouse_grants (key, grant_json) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET grant_json = EXCLUDED.grant_json",
                    &[key, json],
                )
                .await?;
            }
            None => {
                tx.execute("DELETE FROM gatehouse_grants WHERE key = $1", &[key])
                    .await?;
            }
        }
    }
    for (id, (active, json, owner)) in &rows.runs {
        tx.execute(
            "INSERT INTO gatehouse_runs (id, active, run) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET active = EXCLUDED.active, run = EXCLUDED.run",
            &[id, active, json],
        )
        .await?;
        // The daemon that writes a run drives it: it holds the lease until the run ends.
        if *active {
            tx.execute(
                "INSERT INTO gatehouse_run_leases (run_id, owner, lease_until) \
                 VALUES ($1, $2, now() + make_interval(secs => $3)) ON CONFLICT (run_id) \
                 DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until",
                &[id, owner, &LEASE_SECONDS],
            )
            .await?;
        } else {
            tx.execute("DELETE FROM gatehouse_run_leases WHERE run_id = $1", &[id])
                .await?;
        }
    }
    Ok(())
}
