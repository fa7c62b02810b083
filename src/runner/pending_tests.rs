//! The runner holds only the newest pending approvals whole (on a store that reads back
//! locally); every other path must read the rest back and see exactly what was written.

use super::test_clock::TestClock;
use super::*;
use crate::domain::ApprovalStatus;
use crate::policy::PolicySet;
use crate::store::Store;
use serde_json::json;

/// More than the runner holds whole, so the oldest are only indexed.
const N: usize = super::state::HELD + 60;

fn cfg(clock: &TestClock) -> RunnerConfig {
    RunnerConfig {
        tiers: vec![
            EscalationTier {
                queue: "primary".into(),
                reviewers: vec!["alice".into()],
                after: Duration::from_secs(600),
            },
            EscalationTier {
                queue: "backup".into(),
                reviewers: vec!["bob".into()],
                after: Duration::from_secs(600),
            },
        ],
        clock: clock.clock(),
        ..Default::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// `N` approvals, alternately from bot-a and bot-b, submitted 64 at a time; in id order.
async fn fill(h: &RunnerHandle) -> Vec<Approval> {
    let mut out = Vec::new();
    for chunk in (0..N).collect::<Vec<_>>().chunks(64) {
        let asks = chunk.iter().map(|&i| {
            let who = if i % 2 == 0 { "bot-a" } else { "bot-b" };
            h.submit(
                who,
                SubmitRequest {
                    tool: "issue_refund".into(),
                    arguments: json!({"n": i, "note": "x".repeat(i % 7)})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    reasoning: Some(format!("refund number {i}")),
                    ..Default::default()
                },
            )
        });
        for r in futures::future::join_all(asks).await {
            out.push(r.expect("submitted").approval);
        }
    }
    out.sort_by_key(|a| a.id);
    out
}

async fn all_pending(h: &RunnerHandle, requested_by: Option<&str>) -> Vec<Approval> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = h
            .list(ListQuery {
                status: Some(ApprovalStatus::Pending),
                queue: None,
                requested_by: requested_by.map(str::to_string),
                limit: 1000,
                after,
            })
            .await
            .expect("a page");
        out.extend(page.approvals);
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

#[test]
fn approvals_not_held_are_read_back_whole_by_every_path() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let clock = TestClock::new();
    let t0 = clock.start();
    let before_restart = rt().block_on(async {
        let (h, t) = start(
            Store::open(dir.path()).expect("a store"),
            PolicySet::empty(),
            cfg(&clock),
        )
        .expect("a runner");
        let written = fill(&h).await;
        assert_eq!(written.len(), N);
        let oldest = written[0].clone();

        // Lists, pages and filters give back exactly what was written.
        assert_eq!(all_pending(&h, None).await, written);
        let of_b: Vec<Approval> = written
            .iter()
            .filter(|a| a.requested_by == "bot-b")
            .cloned()
            .collect();
        assert_eq!(all_pending(&h, Some("bot-b")).await, of_b);
        assert_eq!(
            h.get(oldest.id).await.expect("a read"),
            Some(oldest.clone())
        );

        // A long poll on the oldest, then its decision.
        let watched = h.watch(oldest.id).await.expect("a read").expect("known");
        assert_eq!(watched.current, oldest);
        let decided = h
            .decide(
                "alice",
                DecideRequest {
                    id: oldest.id,
                    verdict: Verdict::Approve,
                    reason: Some("fine".into()),
                    arguments_sha256: Some(oldest.arguments_sha256.clone()),
                    edited_arguments: None,
                    scope: None,
                },
            )
            .await
            .expect("decided");
        assert_eq!(decided.status, ApprovalStatus::Approved);
        assert_eq!(decided.reasoning, oldest.reasoning);
        let woken = watched.decided.expect("a waiter").await.expect("woken");
        assert_eq!(woken.status, ApprovalStatus::Approved);

        // Cancelled and escalated by hand, each from the store.
        let cancelled = h
            .cancel_approval(&written[1].requested_by, written[1].id)
            .await
            .expect("cancelled");
        assert_eq!(cancelled.status, ApprovalStatus::Cancelled);
        assert_eq!(cancelled.arguments, written[1].arguments);
        let escalated = h.escalate("alice", written[2].id).await.expect("escalated");
        assert_eq!((escalated.queue.as_str(), escalated.tier), ("backup", 1));
        assert_eq!(h.get(written[2].id).await.expect("a read"), Some(escalated));

        let snapshot = h.snapshot().await.expect("a snapshot");
        let now_pending = all_pending(&h, None).await;
        assert_eq!(now_pending.len(), N - 2);
        // History panes ask for the decisions alone, without reading the pending ones.
        let recent = h.recent().await.expect("the recent decisions");
        assert_eq!(recent, snapshot.recent);
        assert!(recent.iter().any(|a| a.id == cancelled.id));

        // The clock escalates every one still in the first tier, held or not.
        clock.at(t0, 600_000);
        let after_escalation = all_pending(&h, None).await;
        assert_eq!(after_escalation.len(), N - 2);
        assert!(after_escalation.iter().all(|a| a.queue == "backup"));
        h.shutdown().await;
        t.await.expect("the runner stopped");
        after_escalation
    });

    // A start reads only the index; what it serves is still what was written.
    rt().block_on(async {
        let (h, _t) = start(
            Store::open(dir.path()).expect("a store"),
            PolicySet::empty(),
            cfg(&clock),
        )
        .expect("a runner");
        assert_eq!(all_pending(&h, None).await, before_restart);
        // Every one expires at the end of the last tier, read back from the store.
        clock.at(t0, 1_200_000);
        assert!(all_pending(&h, None).await.is_empty());
        let last = before_restart.last().expect("one");
        let expired = h.get(last.id).await.expect("a read").expect("known");
        assert_eq!(expired.status, ApprovalStatus::Expired);
        assert_eq!(expired.arguments, last.arguments);
    });
}
