use super::test_clock::TestClock;
use super::*;
use crate::policy::PolicySet;
use crate::store::Store;
use serde_json::json;

/// A runner on a real store in `dir`.
fn runner(dir: &std::path::Path, cfg: RunnerConfig) -> (RunnerHandle, tokio::task::JoinHandle<()>) {
    start(Store::open(dir).unwrap(), PolicySet::empty(), cfg).unwrap()
}

fn args(v: serde_json::Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Runner + store cost per durable submission, without HTTP:
/// `cargo test --release --lib runner::tests::submit_cost -- --ignored --nocapture`
#[test]
#[ignore]
fn submit_cost() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (h, _task) = start(
            Store::open(dir.path()).unwrap(),
            PolicySet::empty(),
            RunnerConfig::default(),
        )
        .unwrap();
        let n_tasks = 64;
        let per = 2000;
        let t = std::time::Instant::now();
        let mut js = Vec::new();
        for w in 0..n_tasks {
            let h = h.clone();
            js.push(tokio::spawn(async move {
                for i in 0..per {
                    h.submit(
                        "bot",
                        SubmitRequest {
                            tool: "bench_refund".into(),
                            arguments: args(json!({"worker": w, "n": i, "amount": 75.5})),
                            reasoning: Some("load test".into()),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                }
            }));
        }
        for j in js {
            j.await.unwrap();
        }
        let el = t.elapsed().as_secs_f64();
        let n = (n_tasks * per) as f64;
        println!(
            "runner: {:.0} durable submissions/s ({:.1} us each)",
            n / el,
            el * 1e6 / n
        );
    });
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn req(tool: &str, a: serde_json::Value) -> SubmitRequest {
    SubmitRequest {
        tool: tool.into(),
        arguments: args(a),
        ..Default::default()
    }
}

fn decision(id: Uuid, verdict: Verdict) -> DecideRequest {
    DecideRequest {
        id,
        verdict,
        reason: Some("because".into()),
        arguments_sha256: None,
        edited_arguments: None,
        scope: None,
    }
}

async fn audit_kinds(h: &RunnerHandle) -> Vec<crate::domain::AuditKind> {
    h.audit(0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.kind)
        .collect()
}

#[test]
fn a_decision_is_applied_once_and_the_loser_sees_the_standing_one() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (h, _t) = runner(dir.path(), RunnerConfig::default());
        let a = h
            .submit("bot", req("issue_refund", json!({"amount": 70})))
            .await
            .unwrap()
            .approval;
        let (r1, r2) = tokio::join!(
            h.decide("alice", decision(a.id, Verdict::Approve)),
            h.decide("bob", decision(a.id, Verdict::Deny))
        );
        let (won, lost) = match (r1, r2) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            other => panic!("exactly one decision must win: {other:?}"),
        };
        let RunnerError::Conflict { approval, .. } = lost else {
            panic!("the loser gets a conflict: {lost:?}")
        };
        assert_eq!(approval.decision, won.decision);
        let kinds = audit_kinds(&h).await;
        let decided = kinds
            .iter()
            .filter(|k| **k == crate::domain::AuditKind::ApprovalDecided)
            .count();
        assert_eq!(decided, 1);
    });
}

#[test]
fn self_approval_and_mismatched_hash_are_refused_and_audited() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (h, _t) = runner(dir.path(), RunnerConfig::default());
        let a = h
            .submit("bot", req("t", json!({"x": 1})))
            .await
            .unwrap()
            .approval;
        let e = h
            .decide("bot", decision(a.id, Verdict::Approve))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                RunnerError::Forbidden {
                    code: "self_approval",
                    ..
                }
            ),
            "{e:?}"
        );
        let mut d = decision(a.id, Verdict::Approve);
        d.arguments_sha256 = Some("0".repeat(64));
        let e = h.decide("alice", d).await.unwrap_err();
        assert!(matches!(e, RunnerError::Conflict { .. }), "{e:?}");
        assert!(
            h.get(a.id).await.unwrap().unwrap().is_pending(),
            "nothing was decided"
        );
        let refused = h
            .audit(0, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == crate::domain::AuditKind::DecisionRefused)
            .map(|r| r.details["code"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>();
        assert_eq!(refused, vec!["self_approval", "arguments_mismatch"]);
    });
}

#[test]
fn edited_arguments_only_for_editable_approvals_and_audit_keeps_both() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (h, _t) = runner(dir.path(), RunnerConfig::default());
        let plain = h
            .submit("bot", req("t", json!({"amount": 500})))
            .await
            .unwrap()
            .approval;
        let mut d = decision(plain.id, Verdict::Approve);
        d.edited_arguments = Some(args(json!({"amount": 50})));
        assert!(matches!(
            h.decide("alice", d).await,
            Err(RunnerError::Invalid(_))
        ));
        let mut r = req("t", json!({"amount": 500}));
        r.editable = true;
        let editable = h.submit("bot", r).await.unwrap().approval;
        let mut d = decision(editable.id, Verdict::Approve);
        d.edited_arguments = Some(args(json!({"amount": 50})));
        let a = h.decide("alice", d).await.unwrap();
        let dec = a.decision.unwrap();
        assert_eq!(a.arguments, args(json!({"amount": 50})), "what runs");
        assert_eq!(
            a.requested_arguments,
            Some(args(json!({"amount": 500}))),
            "the call as submitted stays beside it"
        );
        assert_eq!(dec.arguments, Some(args(json!({"amount": 50}))));
        assert_eq!(
            dec.arguments_sha256,
            Some(crate::domain::arguments_sha256(&args(
                json!({"amount": 50})
            )))
        );
    });
}

fn tiers() -> RunnerConfig {
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
fn sticky_grants_approve_the_rest_of_the_run_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let in_run = |run: &str, tool: &str| {
        let mut r = req(tool, json!({"amount": 70}));
        r.run_id = Some(run.into());
        r
    };
    rt().block_on(async {
        let (h, t) = runner(dir.path(), RunnerConfig::default());
        // No run, no rest of the run.
        let lone = h
            .submit("bot", req("issue_refund", json!({})))
            .await
            .unwrap()
            .approval;
        let mut d = decision(lone.id, Verdict::Approve);
        d.scope = Some("run".into());
        assert!(matches!(
            h.decide("alice", d).await,
            Err(RunnerError::Invalid(_))
        ));
        // A deny cannot grant.
        let first = h
            .submit("bot", in_run("run-1", "issue_refund"))
            .await
            .unwrap()
            .approval;
        let mut d = decision(first.id, Verdict::Deny);
        d.scope = Some("run".into());
        assert!(matches!(
            h.decide("alice", d).await,
            Err(RunnerError::Invalid(_))
        ));
        let mut d = decision(first.id, Verdict::Approve);
        d.scope = Some("run".into());
        let a = h.decide("alice", d).await.unwrap();
        assert_eq!(a.decision.unwrap().scope.as_deref(), Some("run"));
        // Later calls of that tool in that run need no reviewer, visibly.
        let later = h
            .submit("bot", in_run("run-1", "issue_refund"))
            .await
            .unwrap()
            .approval;
        assert_eq!(later.status, crate::domain::ApprovalStatus::Approved);
        assert_eq!(later.decision.as_ref().unwrap().by, "grant:alice");
        // Not another tool, not another run.
        assert!(
            h.submit("bot", in_run("run-1", "delete_user_account"))
                .await
                .unwrap()
                .approval
                .is_pending()
        );
        assert!(
            h.submit("bot", in_run("run-2", "issue_refund"))
                .await
                .unwrap()
                .approval
                .is_pending()
        );
        assert_eq!(h.grants().await.unwrap().len(), 1);
        h.shutdown().await;
        drop(h);
        let _ = t.await;
    });
    rt().block_on(async {
        // The grant survives a restart, and revoking it is audited and ends it.
        let (h, _t) = runner(dir.path(), RunnerConfig::default());
        assert_eq!(h.grants().await.unwrap().len(), 1);
        let g = h
            .revoke_grant("bob", "run-1", "issue_refund", None, None)
            .await
            .unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].granted_by, "alice");
        assert!(matches!(
            h.revoke_grant("bob", "run-1", "issue_refund", None, None)
                .await,
            Err(RunnerError::NotFound(_))
        ));
        assert!(
            h.submit("bot", in_run("run-1", "issue_refund"))
                .await
                .unwrap()
                .approval
                .is_pending()
        );
        let last_kinds: Vec<_> = h
            .audit(0, 100)
            .await
            .unwrap()
            .iter()
            .map(|r| r.kind)
            .collect();
        assert!(last_kinds.contains(&crate::domain::AuditKind::GrantRevoked));
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

mod runs_support {
    use super::*;
    use crate::agent::{Agent, Agents};
    use crate::model::{Model, ScriptedModel};
    use crate::tools::Tools;
    use std::sync::Arc;

    /// One agent `cs`: the scripted CustomerServiceAgent with the builtin tools.
    pub fn agents() -> Arc<Agents> {
        let model = Ok(Arc::new(Model::Scripted(ScriptedModel::customer_service())));
        let mut agents = std::collections::BTreeMap::new();
        agents.insert(
            "cs".to_string(),
            Agent {
                name: "cs".into(),
                instructions: "Be helpful.".into(),
                model,
                tools: vec![
                    "get_order_details".into(),
                    "issue_refund".into(),
                    "delete_user_account".into(),
                ],
                mcp_servers: Vec::new(),
                max_turns: 10,
            },
        );
        Arc::new(Agents {
            agents,
            tools: Arc::new(Tools::from_config(&[]).unwrap()),
            mcp: None,
            mcp_configs: Default::default(),
        })
    }

    pub fn cfg() -> RunnerConfig {
        RunnerConfig {
            agents: Some(agents()),
            ..Default::default()
        }
    }

    pub async fn wait_for(h: &RunnerHandle, id: Uuid, what: impl Fn(&Run) -> bool) -> Run {
        for _ in 0..500 {
            if let Some(r) = h.run(id).await.unwrap()
                && what(&r)
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("run {id} never got there: {:#?}", h.run(id).await.unwrap());
    }
}

mod runs {
    use super::runs_support::*;
    use super::*;
    use crate::domain::{ApprovalStatus, CallState, RunStatus};

    #[tokio::test]
    async fn refund_pauses_at_the_gate_and_resumes_on_approval() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _t) = runner(dir.path(), cfg());
        let s = h
            .start_run(
                "bot",
                "cs",
                "Please refund order ORD-1002, it never arrived",
            )
            .await
            .unwrap();
        let run = wait_for(&h, s.run_id, |r| r.status == RunStatus::PendingApproval).await;
        let waiting = &run.calls[0];
        assert_eq!(waiting.tool, "issue_refund");
        let CallState::Waiting { approval_id } = waiting.state else {
            panic!("{run:#?}")
        };
        let a = h.get(approval_id).await.unwrap().unwrap();
        assert_eq!(a.run_id.as_deref(), Some(s.run_id.to_string().as_str()));
        assert!(a.reasoning.unwrap().contains("ORD-1002"));
        h.decide(
            "alice",
            DecideRequest {
                id: approval_id,
                verdict: Verdict::Approve,
                reason: None,
                arguments_sha256: None,
                edited_arguments: None,
                scope: None,
            },
        )
        .await
        .unwrap();
        let done = wait_for(&h, s.run_id, |r| r.status.is_finished()).await;
        assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
        assert!(done.output.unwrap().contains("issued a refund"));
        let tools: Vec<_> = h
            .audit(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == crate::domain::AuditKind::ToolExecuted)
            .map(|r| r.details["tool"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(tools, ["get_order_details", "issue_refund"]);
    }

    #[tokio::test]
    async fn denial_reaches_the_model_and_cancel_cancels_approvals() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _t) = runner(dir.path(), cfg());
        let s = h
            .start_run("bot", "cs", "Please refund order ORD-1005")
            .await
            .unwrap();
        let run = wait_for(&h, s.run_id, |r| r.status == RunStatus::PendingApproval).await;
        let id = run.calls[0].state.awaited_approval().unwrap();
        h.decide(
            "alice",
            DecideRequest {
                id,
                verdict: Verdict::Deny,
                reason: Some("over the limit".into()),
                arguments_sha256: None,
                edited_arguments: None,
                scope: None,
            },
        )
        .await
        .unwrap();
        let done = wait_for(&h, s.run_id, |r| r.status.is_finished()).await;
        let denial = done.messages.iter().any(|m| {
            matches!(m, crate::model::Message::Tool { content, .. }
                if content == "The reviewer denied this action: over the limit")
        });
        assert!(denial, "{done:#?}");
        assert!(done.output.unwrap().contains("over the limit"));

        let s = h
            .start_run("bot", "cs", "Delete user U-77 please")
            .await
            .unwrap();
        let run = wait_for(&h, s.run_id, |r| r.status == RunStatus::PendingApproval).await;
        let id = run.calls[0].state.awaited_approval().unwrap();
        h.cancel_run("alice", s.run_id).await.unwrap();
        let a = h.get(id).await.unwrap().unwrap();
        assert_eq!(a.status, ApprovalStatus::Cancelled);
        let r = h.run(s.run_id).await.unwrap().unwrap();
        assert_eq!(r.status, RunStatus::Cancelled);
        assert!(h.cancel_run("alice", s.run_id).await.is_err());
    }
}

mod run_timeouts {
    use super::runs_support::*;
    use super::*;
    use crate::domain::{ApprovalStatus, RunStatus};

    #[tokio::test]
    async fn a_run_waiting_on_an_expired_approval_is_told_and_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = tiers();
        cfg.tiers[0].after = Duration::from_millis(200);
        cfg.tiers[1].after = Duration::from_millis(200);
        cfg.agents = Some(agents());
        let (h, _t) = runner(dir.path(), cfg);
        let s = h
            .start_run("bot", "cs", "Delete user U-12 because they asked")
            .await
            .unwrap();
        let run = wait_for(&h, s.run_id, |r| r.status == RunStatus::PendingApproval).await;
        let id = run.calls[0].state.awaited_approval().unwrap();
        let done = wait_for(&h, s.run_id, |r| r.status.is_finished()).await;
        assert_eq!(
            h.get(id).await.unwrap().unwrap().status,
            ApprovalStatus::Expired
        );
        let told = done.messages.iter().any(|m| {
            matches!(m, crate::model::Message::Tool { content, .. }
                if content.starts_with("No reviewer decided in time, so this action was not taken: approval timed out"))
        });
        assert!(told, "{done:#?}");
        assert_eq!(done.status, RunStatus::Completed);
        assert!(done.output.unwrap().contains("was not deleted"));
    }
}

/// Agent runs per second through the whole loop (scripted model, builtin tool, every step
/// durable): `cargo test --release --lib runner::tests::run_cost -- --ignored --nocapture`
#[test]
#[ignore]
fn run_cost() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (h, _t) = runner(dir.path(), runs_support::cfg());
        let n: u64 = 2000;
        let t = std::time::Instant::now();
        for i in 0..n {
            h.start_run(
                "bot",
                "cs",
                &format!("What's the status of order ORD-100{}?", i % 5 + 1),
            )
            .await
            .unwrap();
        }
        // Count completions from the runner's own counters (a subscriber could lag behind).
        loop {
            let m = h.metrics().await.unwrap();
            let done = m.value("runs_ended", "completed");
            assert_eq!(m.value("runs_ended", "failed"), 0);
            if done >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let el = t.elapsed().as_secs_f64();
        let records = h.metrics().await.unwrap().audit_seq.get();
        println!(
            "runs: {n} in {el:.2}s = {:.0} runs/s ({} audit records, {:.0} durable steps/s)",
            n as f64 / el,
            records,
            records as f64 / el
        );
    });
}
