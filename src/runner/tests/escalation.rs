//! Escalation tiers and expiry: timers, deadlines that fell due while down, webhooks, escalating by hand, and a decision racing the timeout.

use super::*;

pub(super) fn tiers() -> RunnerConfig {
    RunnerConfig {
        tiers: vec![
            EscalationTier {
                queue: "primary".into(),
                reviewers: vec!["alice".into()],
                after: Duration::from_millis(600),
            },
            EscalationTier {
                queue: "backup".into(),
                reviewers: vec!["bob".into()],
                after: Duration::from_millis(600),
            },
        ],
        ..Default::default()
    }
}

/// [`tiers`] on a clock the test moves.
fn tiers_on(clock: &TestClock) -> RunnerConfig {
    RunnerConfig {
        clock: clock.clock(),
        ..tiers()
    }
}

#[test]
fn unanswered_approvals_escalate_then_expire_as_denied() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new();
        let t0 = clock.start();
        let (h, _t) = runner(dir.path(), tiers_on(&clock));
        let mut events = h.subscribe();
        let a = h.submit("bot", req("t", json!({}))).await.unwrap().approval;
        assert_eq!((a.queue.as_str(), a.tier), ("primary", 0));
        clock.at(t0, 599);
        let still = h.get(a.id).await.unwrap().unwrap();
        assert_eq!(
            (still.tier, still.status),
            (0, crate::domain::ApprovalStatus::Pending)
        );
        clock.at(t0, 600);
        let escalated = h.get(a.id).await.unwrap().unwrap();
        assert_eq!((escalated.queue.as_str(), escalated.tier), ("backup", 1));
        assert_eq!(escalated.status, crate::domain::ApprovalStatus::Pending);
        clock.at(t0, 1200);
        let expired = h.get(a.id).await.unwrap().unwrap();
        assert_eq!(expired.status, crate::domain::ApprovalStatus::Expired);
        let d = expired.decision.unwrap();
        assert_eq!(d.by, "timeout");
        assert!(d.reason.unwrap().contains("timed out"));
        assert_eq!((expired.queue.as_str(), expired.tier), ("backup", 1));
        let mut kinds = Vec::new();
        while let Ok(e) = events.try_recv() {
            kinds.push(e.kind);
        }
        use crate::domain::AuditKind::*;
        assert_eq!(
            kinds,
            vec![ApprovalCreated, ApprovalEscalated, ApprovalExpired]
        );
        // A decision after expiry is a conflict.
        assert!(matches!(
            h.decide("alice", decision(a.id, Verdict::Approve)).await,
            Err(RunnerError::Conflict { .. })
        ));
    });
}

#[test]
fn deadlines_that_fell_due_while_down_apply_at_start_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let t0 = clock.start();
    let id = rt().block_on(async {
        let (h, t) = runner(dir.path(), tiers_on(&clock));
        let id = h
            .submit("bot", req("t", json!({})))
            .await
            .unwrap()
            .approval
            .id;
        h.shutdown().await;
        drop(h);
        let _ = t.await;
        id
    });
    // Down for longer than both tiers.
    clock.at(t0, 1400);
    rt().block_on(async {
        let (h, _t) = runner(dir.path(), tiers_on(&clock));
        let a = h.get(id).await.unwrap().unwrap();
        assert_eq!(a.status, crate::domain::ApprovalStatus::Expired);
        assert_eq!(a.tier, 1);
        use crate::domain::AuditKind::*;
        assert_eq!(
            audit_kinds(&h).await,
            vec![ApprovalCreated, ApprovalEscalated, ApprovalExpired]
        );
    });
}

#[test]
fn escalation_and_expiry_reach_the_webhook_with_retries() {
    use std::sync::Arc;
    rt().block_on(async {
        // A receiver that fails its first delivery and hands on the rest.
        let (tx, mut delivered) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                let (tx, c) = (tx.clone(), c.clone());
                async move {
                    if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let _ = tx.send(v);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new();
        let t0 = clock.start();
        let mut cfg = tiers_on(&clock);
        cfg.webhook = Some(format!("http://{addr}/hook"));
        let (h, _t) = runner(dir.path(), cfg);
        let mut r = req("delete_user_account", json!({"user_id": "U-1"}));
        r.agent = Some("CustomerServiceAgent".into());
        let a = h.submit("bot", r).await.unwrap().approval;
        clock.at(t0, 600);
        h.get(a.id).await.unwrap();
        clock.at(t0, 1200);
        let expired = h.get(a.id).await.unwrap().unwrap();
        assert_eq!(expired.status, crate::domain::ApprovalStatus::Expired);
        let mut got = Vec::new();
        while got.len() < 2 {
            let next = tokio::time::timeout(Duration::from_secs(10), delivered.recv()).await;
            got.push(next.expect("two webhook notices").expect("receiver alive"));
        }
        // Deliveries are concurrent, and one is retried: arrival order is not event order.
        got.sort_by_key(|v| v["event"].as_str().unwrap_or_default().to_string());
        assert_eq!(got[0]["event"], "approval.escalated");
        assert_eq!(got[0]["queue"], "backup");
        assert_eq!(got[0]["tier"], 1);
        assert_eq!(got[0]["reviewers"], json!(["bob"]));
        assert_eq!(got[0]["tool"], "delete_user_account");
        assert_eq!(got[0]["agent"], "CustomerServiceAgent");
        assert_eq!(got[0]["approval_id"], a.id.to_string());
        assert_eq!(got[1]["event"], "approval.expired");
        assert!(
            got[1]["reason"].as_str().unwrap().contains("timed out"),
            "{}",
            got[1]
        );
        // The receiver hands a notice on before its answer reaches the notifier, which
        // counts it then: wait (bounded) for the count to catch up.
        let m = h.metrics().await.unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while m.value("webhook", "sent") < 2 && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let sent = m.value("webhook", "sent");
        assert_eq!((sent, m.value("webhook", "failed")), (2, 0));
        assert!(m.value("webhook", "retried") >= 1);
    });
}

#[test]
fn a_reviewer_can_escalate_by_hand_but_not_past_the_last_tier() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = tiers();
        cfg.rule_queues = vec!["elsewhere".into()];
        // The backup tier's own time is longer, so a ms-resolution clock still tells them apart.
        cfg.tiers[0].after = Duration::from_secs(300);
        cfg.tiers[1].after = Duration::from_secs(600);
        let (h, _t) = runner(dir.path(), cfg);
        let a = h.submit("bot", req("t", json!({}))).await.unwrap().approval;
        let e = h.escalate("alice", a.id).await.unwrap();
        assert_eq!((e.queue.as_str(), e.tier), ("backup", 1));
        assert_eq!(
            e.expires_at, a.expires_at,
            "escalating by hand does not move the final expiry"
        );
        assert_eq!(e.escalates_at, None, "the last tier escalates no further");
        assert!(matches!(
            h.escalate("alice", a.id).await,
            Err(RunnerError::Invalid(_))
        ));
        let rec = h.audit(0, 10).await.unwrap().pop().unwrap();
        assert_eq!(
            (rec.kind, rec.actor.as_str()),
            (crate::domain::AuditKind::ApprovalEscalated, "alice")
        );
        // Outside the chain there is nowhere to go.
        let mut r = req("t", json!({}));
        r.queue = Some("elsewhere".into());
        let other = h.submit("bot", r).await.unwrap().approval;
        assert!(matches!(
            h.escalate("alice", other.id).await,
            Err(RunnerError::Invalid(_))
        ));
    });
}

#[test]
fn a_decision_racing_the_timeout_has_exactly_one_outcome() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new();
        let t0 = clock.start();
        let cfg = RunnerConfig {
            clock: clock.clock(),
            ..Default::default()
        };
        let (h, _t) = runner(dir.path(), cfg);
        let mut ids = Vec::new();
        // Approval i is created at i ms and times out 200 ms later.
        for i in 0..30i64 {
            clock.at(t0, i);
            let mut r = req("t", json!({"i": i}));
            r.timeout = Some(Duration::from_millis(200));
            ids.push(h.submit("bot", r).await.unwrap().approval.id);
        }
        // Decide each around its deadline: even ones 2 ms before it, odd ones at it.
        let decided_at = |i: usize| i as i64 + 198 + i as i64 % 2 * 2;
        let mut outcomes = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            clock.at(t0, decided_at(i));
            outcomes.push((
                *id,
                h.decide("alice", decision(*id, Verdict::Approve)).await,
            ));
        }
        clock.at(t0, 1000);
        assert!(matches!(h.get(ids[0]).await, Ok(Some(_))));
        let audit = h.audit(0, 1000).await.unwrap();
        for (id, outcome) in outcomes {
            let ends: Vec<_> = audit
                .iter()
                .filter(|r| r.approval_id == Some(id))
                .filter(|r| {
                    matches!(
                        r.kind,
                        crate::domain::AuditKind::ApprovalDecided
                            | crate::domain::AuditKind::ApprovalExpired
                    )
                })
                .map(|r| r.kind)
                .collect();
            assert_eq!(ends.len(), 1, "approval {id} ended {ends:?}");
            let a = h.get(id).await.unwrap().unwrap();
            let i = ids.iter().position(|x| *x == id).unwrap();
            let due = decided_at(i) >= i as i64 + 200;
            match outcome {
                Ok(_) => {
                    assert!(!due, "approval {i} was decided after its deadline");
                    assert_eq!(a.status, crate::domain::ApprovalStatus::Approved)
                }
                Err(RunnerError::Conflict { approval, .. }) => {
                    assert!(due, "approval {i} expired before its deadline");
                    assert_eq!(a.status, crate::domain::ApprovalStatus::Expired);
                    assert_eq!(approval.status, crate::domain::ApprovalStatus::Expired);
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    });
}
