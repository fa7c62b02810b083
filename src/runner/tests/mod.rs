use super::test_clock::TestClock;
use super::*;
use crate::policy::PolicySet;
use crate::store::Store;
use serde_json::json;

mod agent_runs;
mod escalation;
use agent_runs::runs_support;
use escalation::tiers;

/// A runner on a real store in `dir`.
fn runner(dir: &std::path::Path, cfg: RunnerConfig) -> (RunnerHandle, tokio::task::JoinHandle<()>) {
    start(Store::open(dir).unwrap(), PolicySet::empty(), cfg).unwrap()
}

fn args(v: serde_json::Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Runner + store cost per durable submission, without HTTP:
/// `cargo test --release --lib runner::tests::submit_cost -- --ignored --nocapture`
///
/// A benchmark: it prints the README's figure and asserts nothing timed. Ignored because its
/// figure means something only in a release build on a quiet machine; submissions themselves
/// are covered by the runner's tests that CI runs.
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

/// Agent runs per second through the whole loop (scripted model, builtin tool, every step
/// durable): `cargo test --release --lib runner::tests::run_cost -- --ignored --nocapture`
///
/// A benchmark, like [`submit_cost`]: the loop itself is covered by `agent_runs`, which CI
/// runs.
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
        // Count completions from the runner's own counters (a subscriber could lag behind),
        // and stop by itself should they never all complete.
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "runs did not complete"
            );
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
