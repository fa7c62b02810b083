//! The in-process link: a console beside its runner (`gatehouse console`, `gatehouse demo`).

use super::*;
use crate::runner::{DecideRequest, RunnerError, RunnerHandle};
use tokio::sync::broadcast::error::RecvError;

/// Bridge a runner to a front end. Decisions are recorded as `reviewer`.
pub fn link(runner: RunnerHandle, reviewer: String) -> FrontendLink {
    let (ev_tx, ev_rx) = mpsc::channel(4096);
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<FrontendCommand>(64);
    tokio::spawn(servers(runner.clone(), ev_tx.clone()));
    let events_runner = runner.clone();
    tokio::spawn(async move {
        let runner = events_runner;
        if ev_tx
            .send(FrontendEvent::Connection(Connection::Local))
            .await
            .is_err()
        {
            return;
        }
        loop {
            // Subscribe before the snapshot: the snapshot's reply comes only after every event
            // up to its seq was published, so events after it are exactly the ones to forward.
            // The pending list is paged after it, so it may already show some of those
            // events; each carries the whole approval and applies over the list as it stands.
            let mut live = runner.subscribe();
            let Ok(snap) = runner.snapshot().await else {
                return;
            };
            let Ok(pending) = pending(&runner).await else {
                return;
            };
            let seq = snap.seq;
            let first = FrontendEvent::Snapshot {
                pending,
                recent: snap.recent,
                runs: snap.runs,
                seq,
            };
            if ev_tx.send(first).await.is_err() {
                return;
            }
            // The newest event forwarded (or covered by the snapshot), and whether the feed
            // dropped events since (records that are not events leave gaps in seq too).
            let mut last = seq;
            let mut lagged = false;
            loop {
                match live.recv().await {
                    Ok(e) if e.seq <= last => {}
                    Ok(e) => {
                        // Anything between the last one forwarded and this one was missed
                        // while the console fell behind: read it back from the audit log.
                        if std::mem::take(&mut lagged)
                            && !catch_up(&runner, &ev_tx, &mut last, e.seq).await
                        {
                            break;
                        }
                        last = e.seq;
                        if ev_tx
                            .send(FrontendEvent::Change(Box::new(e)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    // The console fell behind the live stream: the next event received says
                    // how far, and the gap is read back from the audit log in pages (not a
                    // new snapshot, which reads every pending approval on the runner).
                    Err(RecvError::Lagged(_)) => lagged = true,
                    Err(RecvError::Closed) => return,
                }
            }
        }
    });
    let who = reviewer.clone();
    tokio::spawn(async move {
        while let Some(cmd) = cmd_rx.recv().await {
            let runner = runner.clone();
            let who = who.clone();
            tokio::spawn(async move {
                match cmd {
                    FrontendCommand::Decide { request, reply } => {
                        let _ = reply.send(decide(&runner, &who, request).await);
                    }
                    FrontendCommand::Escalate { approval_id, reply } => {
                        let r = runner.escalate(&who, approval_id).await;
                        let _ = reply.send(r.map(|_| ()).map_err(|e| e.to_string()));
                    }
                    FrontendCommand::FetchRun { run_id, reply } => {
                        let r = match runner.run(run_id).await {
                            Ok(Some(run)) => Ok(run),
                            Ok(None) => Err(format!("no run {run_id}")),
                            Err(e) => Err(e.to_string()),
                        };
                        let _ = reply.send(r);
                    }
                }
            });
        }
    });
    FrontendLink {
        events: ev_rx,
        commands: cmd_tx,
        reviewer,
    }
}

/// Every pending approval, a page at a time: the runner serves other commands between pages.
async fn pending(runner: &RunnerHandle) -> Result<Vec<crate::domain::Approval>, RunnerError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = runner
            .list(crate::runner::ListQuery {
                status: Some(crate::domain::ApprovalStatus::Pending),
                queue: None,
                requested_by: None,
                limit: 1000,
                after,
            })
            .await?;
        out.extend(page.approvals);
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

/// Forward the events of the audit records after `last` and before `until` (missed while the
/// console fell behind), advancing `last`. `false` when the log could not be read: the caller
/// starts again from a snapshot.
async fn catch_up(
    runner: &RunnerHandle,
    tx: &mpsc::Sender<FrontendEvent>,
    last: &mut u64,
    until: u64,
) -> bool {
    const PAGE: usize = 1000;
    while *last + 1 < until {
        let Ok(records) = runner.audit(*last, PAGE).await else {
            return false;
        };
        let Some(newest) = records.last().map(|r| r.seq) else {
            return false;
        };
        for r in records.iter().filter(|r| r.seq < until) {
            if let Some(e) = crate::domain::Event::from_record(r)
                && tx.send(FrontendEvent::Change(Box::new(e))).await.is_err()
            {
                return false;
            }
        }
        *last = newest.min(until - 1);
    }
    true
}

/// Bursts of MCP state changes (a restart is several) within this long are sent as one.
pub const SERVERS_COALESCE: std::time::Duration = std::time::Duration::from_millis(200);

/// The MCP servers' state: once at start, then after every change (bursts coalesced).
async fn servers(runner: RunnerHandle, tx: mpsc::Sender<FrontendEvent>) {
    let view = |r: &RunnerHandle| {
        r.mcp_status()
            .iter()
            .map(ServerView::from_status)
            .collect::<Vec<_>>()
    };
    let mut changes = runner.mcp_changes();
    if let Some(c) = &mut changes {
        c.borrow_and_update();
    }
    let mut last = view(&runner);
    if tx.send(FrontendEvent::Servers(last.clone())).await.is_err() {
        return;
    }
    let Some(mut changes) = changes else {
        return; // no MCP servers configured: nothing will change
    };
    while changes.changed().await.is_ok() {
        tokio::time::sleep(SERVERS_COALESCE).await;
        changes.borrow_and_update();
        let now = view(&runner);
        if now == last {
            continue;
        }
        last = now.clone();
        if tx.send(FrontendEvent::Servers(now)).await.is_err() {
            return;
        }
    }
}

async fn decide(runner: &RunnerHandle, who: &str, r: DecisionRequest) -> DecisionOutcome {
    let req = DecideRequest {
        id: r.approval_id,
        verdict: r.verdict,
        reason: r.reason,
        arguments_sha256: Some(r.arguments_sha256),
        edited_arguments: r.edited_arguments,
        scope: r.scope,
    };
    match runner.decide(who, req).await {
        Ok(a) => DecisionOutcome::Applied(a),
        Err(RunnerError::Conflict {
            message, approval, ..
        }) => DecisionOutcome::Conflict {
            message,
            approval: Some(*approval),
        },
        Err(RunnerError::NotFound(message)) => DecisionOutcome::Conflict {
            message,
            approval: None,
        },
        Err(RunnerError::Forbidden { message, .. })
        | Err(RunnerError::Invalid(message))
        | Err(RunnerError::RunFinished(message)) => DecisionOutcome::Refused { message },
        // The store failed before making it durable: it did not happen.
        Err(RunnerError::Unavailable(message)) => DecisionOutcome::NotSent { message },
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
