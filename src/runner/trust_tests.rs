//! Trust boundaries in the runner (DESIGN §9) and escalation timing, on an injected clock:
//! time moves when the test says so, never by sleeping.

use super::test_clock::TestClock;
use super::*;
use crate::domain::{ApprovalStatus, AuditKind, Grant};
use crate::policy::PolicySet;
use crate::store::Store;
use serde_json::json;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn policies(toml: &str) -> PolicySet {
    let cfg = crate::config::Config::parse(toml).unwrap();
    PolicySet::compile(&cfg.policies).unwrap()
}

fn runner(dir: &std::path::Path, p: PolicySet, cfg: RunnerConfig) -> RunnerHandle {
    start(Store::open(dir).unwrap(), p, cfg).unwrap().0
}

fn req(tool: &str, a: Value) -> SubmitRequest {
    SubmitRequest {
        tool: tool.into(),
        arguments: a.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    }
}

fn decision(id: Uuid) -> DecideRequest {
    DecideRequest {
        id,
        verdict: Verdict::Approve,
        reason: None,
        arguments_sha256: None,
        edited_arguments: None,
        scope: None,
    }
}

/// Tiers primary (alice) and backup (bob), 4 s each, on `clock`.
fn four_and_four(clock: &TestClock) -> RunnerConfig {
    RunnerConfig {
        tiers: vec![
            EscalationTier {
                queue: "primary".into(),
                reviewers: vec!["alice".into()],
                after: Duration::from_secs(4),
            },
            EscalationTier {
                queue: "backup".into(),
                reviewers: vec!["bob".into()],
                after: Duration::from_secs(4),
            },
        ],
        identities: [("root".to_string(), vec!["admin".to_string()])].into(),
        clock: clock.clock(),
        ..Default::default()
    }
}

const RULE_TIMEOUT: &str = r#"
[[policies]]
name = "refunds"
[[policies.rules]]
action = "ask"
timeout = "TIMEOUT"
"#;

/// The approval as it stands once the runner saw the clock at `ms` after `t0`.
async fn at(h: &RunnerHandle, clock: &TestClock, t0: Timestamp, ms: i64, id: Uuid) -> Approval {
    clock.at(t0, ms);
    h.get(id).await.unwrap().unwrap()
}

#[test]
fn tiers_advance_by_their_after_and_the_approval_expires_at_the_earlier_end() {
    rt().block_on(async {
        for (timeout, expires_ms) in [("12s", 8_000), ("6s", 6_000)] {
            let dir = tempfile::tempdir().unwrap();
            let clock = TestClock::new();
            let p = policies(&RULE_TIMEOUT.replace("TIMEOUT", timeout));
            let h = runner(dir.path(), p, four_and_four(&clock));
            let t0 = clock.start();
            let a = h.submit("bot", req("t", json!({}))).await.unwrap().approval;
            let ms = |at: Option<Timestamp>| at.map(|at| (at - t0).num_milliseconds());
            assert_eq!(ms(a.escalates_at), Some(4_000), "timeout {timeout}");
            assert_eq!(ms(a.expires_at), Some(expires_ms), "timeout {timeout}");

            let before = at(&h, &clock, t0, 3_999, a.id).await;
            assert_eq!((before.tier, before.status), (0, ApprovalStatus::Pending));
            let moved = at(&h, &clock, t0, 4_000, a.id).await;
            assert_eq!((moved.queue.as_str(), moved.tier), ("backup", 1));
            assert_eq!(moved.escalates_at, None);
            assert_eq!(ms(moved.expires_at), Some(expires_ms), "expiry never moves");
            let still = at(&h, &clock, t0, expires_ms - 1, a.id).await;
            assert_eq!(still.status, ApprovalStatus::Pending);
            let done = at(&h, &clock, t0, expires_ms, a.id).await;
            assert_eq!(done.status, ApprovalStatus::Expired, "timeout {timeout}");
            let d = done.decision.unwrap();
            assert_eq!(d.by, "timeout");
            assert_eq!(
                d.reason.as_deref(),
                Some(
                    format!(
                        "approval timed out after {}s without a decision",
                        expires_ms / 1000
                    )
                    .as_str()
                )
            );
        }
    });
}

#[test]
fn a_submitted_timeout_only_shortens_and_expires_without_escalating() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new();
        let h = runner(dir.path(), PolicySet::empty(), four_and_four(&clock));
        let t0 = clock.start();
        let mut r = req("t", json!({}));
        r.timeout = Some(Duration::from_millis(1));
        let a = h.submit("bot", r).await.unwrap().approval;
        assert_eq!(a.escalates_at, None, "a short timeout skips no tier");
        let done = at(&h, &clock, t0, 1, a.id).await;
        assert_eq!((done.status, done.tier), (ApprovalStatus::Expired, 0));
        // A long one cannot stretch the chain: it still ends with the last tier.
        let mut r = req("t", json!({}));
        r.timeout = Some(Duration::from_secs(3600));
        let b = h.submit("bot", r).await.unwrap().approval;
        assert_eq!(
            b.expires_at,
            Some(b.created_at + chrono::Duration::seconds(8))
        );
        let audit = h.audit(0, 100).await.unwrap();
        assert!(!audit.iter().any(|r| r.kind == AuditKind::ApprovalEscalated));
    });
}

#[test]
fn submitted_queues_must_be_configured_and_rules_route() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new();
        let mut cfg = four_and_four(&clock);
        cfg.rule_queues = vec!["payments".into()];
        let p = policies(
            r#"
[[policies]]
name = "pay"
tools = ["pay"]
[[policies.rules]]
action = "ask"
queue = "payments"
"#,
        );
        let h = runner(dir.path(), p, cfg);
        let mut r = req("t", json!({}));
        r.queue = Some("nowhere".into());
        match h.submit("bot", r).await {
            Err(RunnerError::Invalid(m)) => assert_eq!(
                m,
                "queue: \"nowhere\" is not a configured queue (configured: primary, backup, payments)"
            ),
            other => panic!("{other:?}"),
        }
        // The rule's queue wins over the submitted one.
        let mut r = req("pay", json!({}));
        r.queue = Some("backup".into());
        let a = h.submit("bot", r).await.unwrap().approval;
        assert_eq!(a.queue, "payments");
    });
}

#[test]
fn only_reviewers_of_this_tier_or_earlier_and_admins_decide() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new();
        let h = runner(dir.path(), PolicySet::empty(), four_and_four(&clock));
        let a = h.submit("bot", req("t", json!({}))).await.unwrap().approval;
        for who in ["bob", "carol"] {
            match h.decide(who, decision(a.id)).await {
                Err(RunnerError::Forbidden { code, message }) => {
                    assert_eq!(code, "not_a_reviewer_of_queue", "{who}");
                    // The tier as the approval and the console number it.
                    assert!(message.contains(&format!("(tier {})", a.tier)), "{message}");
                }
                other => panic!("{who}: {other:?}"),
            }
        }
        assert!(matches!(
            h.escalate("carol", a.id).await,
            Err(RunnerError::Forbidden { .. })
        ));
        let b = h.submit("bot", req("t", json!({}))).await.unwrap().approval;
        let e = h.escalate("alice", b.id).await.unwrap();
        assert_eq!(e.tier, 1);
        // In the backup tier both alice (an earlier tier) and bob may decide.
        assert_eq!(
            h.decide("alice", decision(b.id)).await.unwrap().status,
            ApprovalStatus::Approved
        );
        assert_eq!(
            h.decide("root", decision(a.id)).await.unwrap().status,
            ApprovalStatus::Approved,
            "an admin decides in any tier"
        );
        let refused: Vec<_> = h
            .audit(0, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == AuditKind::DecisionRefused)
            .map(|r| {
                (
                    r.actor,
                    r.details["code"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(refused.iter().all(|(_, c)| c == "not_a_reviewer_of_queue"));
    });
}

#[test]
fn refusals_of_identities_are_all_audited_and_anonymous_ones_counted_per_minute() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new();
        let cfg = RunnerConfig {
            clock: clock.clock(),
            ..Default::default()
        };
        let h = runner(dir.path(), PolicySet::empty(), cfg);
        let t0 = clock.start();
        for _ in 0..150 {
            h.record_refusal("mallory", None, "forbidden", "no reviewer role")
                .await;
            h.count_unauthenticated();
        }
        let kinds = |recs: &[AuditRecord], k| recs.iter().filter(|r| r.kind == k).count();
        let recs = h.audit(0, 1000).await.unwrap();
        assert_eq!(kinds(&recs, AuditKind::DecisionRefused), 150);
        assert_eq!(
            kinds(&recs, AuditKind::RequestsRefused),
            0,
            "the minute is not over"
        );
        clock.at(t0, 60_000);
        h.count_unauthenticated();
        let recs = h.audit(0, 1000).await.unwrap();
        let counted: Vec<_> = recs
            .iter()
            .filter(|r| r.kind == AuditKind::RequestsRefused)
            .collect();
        assert_eq!(counted.len(), 1);
        assert_eq!(counted[0].details["count"], 151);
    });
}

fn in_run(run: &str, tool: &str) -> SubmitRequest {
    let mut r = req(tool, json!({"amount": 70}));
    r.run_id = Some(run.into());
    r
}

#[test]
fn grants_belong_to_one_identity_and_external_ones_end_after_grant_ttl() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new();
        let cfg = RunnerConfig {
            clock: clock.clock(),
            grant_ttl: Duration::from_secs(600),
            ..Default::default()
        };
        let h = runner(dir.path(), PolicySet::empty(), cfg);
        let t0 = clock.start();
        let first = h
            .submit("bot", in_run("run-42", "issue_refund"))
            .await
            .unwrap()
            .approval;
        let mut d = decision(first.id);
        d.scope = Some("run".into());
        h.decide("alice", d).await.unwrap();
        let grants = h.grants().await.unwrap();
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0].identity.as_deref(), Some("bot"));
        assert_eq!(
            grants[0].expires_at,
            Some(grants[0].at + chrono::Duration::minutes(10))
        );
        // Another identity, same run and tool: asks.
        let other = h
            .submit("bot2", in_run("run-42", "issue_refund"))
            .await
            .unwrap()
            .approval;
        assert!(other.is_pending());
        // A reviewer who is also an agent cannot ride alice's grant to approve its own call.
        assert!(
            h.submit("alice", in_run("run-42", "issue_refund"))
                .await
                .unwrap()
                .approval
                .is_pending()
        );
        let same = h
            .submit("bot", in_run("run-42", "issue_refund"))
            .await
            .unwrap()
            .approval;
        assert_eq!(same.decision.unwrap().by, "grant:alice");
        // Never for a call whose outcome is unknown.
        let mut unknown = in_run("run-42", "issue_refund");
        unknown.outcome_unknown = true;
        assert!(
            h.submit("bot", unknown)
                .await
                .unwrap()
                .approval
                .is_pending()
        );
        clock.at(t0, 600_001);
        let late = h
            .submit("bot", in_run("run-42", "issue_refund"))
            .await
            .unwrap()
            .approval;
        assert!(late.is_pending(), "the grant ended after grant_ttl");
        assert!(h.grants().await.unwrap().is_empty());
    });
}

#[test]
fn a_grant_stored_without_an_identity_is_dropped_at_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        // What an older version wrote: a grant keyed by run alone.
        let store = Store::open(dir.path()).unwrap();
        let a = Approval {
            id: Uuid::now_v7(),
            run_id: Some("run-42".into()),
            agent: None,
            agent_verified: false,
            tool: "issue_refund".into(),
            server: None,
            server_verified: false,
            arguments: Map::new(),
            arguments_sha256: crate::domain::arguments_sha256(&Map::new()),
            requested_arguments: None,
            context: None,
            reasoning: None,
            requested_by: "bot".into(),
            queue: "default".into(),
            tier: 0,
            policy: crate::domain::PolicyRef {
                name: None,
                rule: None,
                reason: "old".into(),
            },
            created_at: crate::domain::now(),
            expires_at: None,
            escalates_at: None,
            status: ApprovalStatus::Approved,
            decision: None,
            editable: false,
            outcome_unknown: false,
            approvals_needed: None,
            approved_by: Vec::new(),
        };
        let old: Grant = serde_json::from_value(json!({
            "run_id": "run-42", "tool": "issue_refund", "server": null, "by": "alice",
            "at": crate::domain::now(), "approval_id": a.id,
        }))
        .unwrap();
        let mut rec = AuditRecord {
            seq: 1,
            at: crate::domain::now(),
            kind: AuditKind::ApprovalDecided,
            actor: "alice".into(),
            approval_id: Some(a.id),
            run_id: a.run_id.clone(),
            details: json!({"approval": a}),
            prev_hash: crate::domain::GENESIS_HASH.into(),
            hash: String::new(),
        };
        rec.hash = rec.compute_hash();
        store
            .write_approval(crate::store::ApprovalWrite {
                approval: &a,
                audit: &rec,
                idempotency: None,
                grant: Some(&old),
            })
            .unwrap();
        assert_eq!(store.grants().unwrap().len(), 1);
    }
    rt().block_on(async {
        let h = runner(dir.path(), PolicySet::empty(), RunnerConfig::default());
        assert!(h.grants().await.unwrap().is_empty());
        for who in ["bot", "bot2"] {
            let a = h
                .submit(who, in_run("run-42", "issue_refund"))
                .await
                .unwrap()
                .approval;
            assert!(a.is_pending(), "{who}: never widened");
        }
    });
    assert!(
        Store::open(dir.path())
            .unwrap()
            .grants()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn policies_see_verified_claims_identity_and_context_only() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let p = policies(
            r#"
[[policies]]
name = "trust"
[[policies.rules]]
when = 'agent == "trusted-bot"'
action = "approve"
[[policies.rules]]
when = 'server == "github"'
action = "approve"
[[policies.rules]]
when = 'identity.name == "ci" && "agent" in identity.roles'
action = "deny"
reason = "ci may not"
[[policies.rules]]
when = 'context.host == "codex"'
action = "deny"
reason = "not from codex"
"#,
        );
        let h = runner(dir.path(), p, RunnerConfig::default());
        let mut claimed = req("t", json!({}));
        claimed.agent = Some("trusted-bot".into());
        let a = h.submit("bot", claimed.clone()).await.unwrap().approval;
        assert!(a.is_pending(), "a mere claim is not met");
        assert!(!a.agent_verified);
        claimed.agent_verified = true;
        let a = h.submit("bot", claimed).await.unwrap().approval;
        assert_eq!(a.status, ApprovalStatus::Approved);
        let mut server = req("t", json!({}));
        server.server = Some("github".into());
        assert!(
            h.submit("bot", server.clone())
                .await
                .unwrap()
                .approval
                .is_pending()
        );
        server.server_verified = true;
        assert_eq!(
            h.submit("bot", server).await.unwrap().approval.status,
            ApprovalStatus::Approved
        );
        let mut ci = req("t", json!({}));
        ci.roles = vec!["agent".into()];
        assert_eq!(
            h.submit("ci", ci).await.unwrap().approval.status,
            ApprovalStatus::Denied
        );
        let mut hooked = req("t", json!({}));
        hooked.context = Some([("host".to_string(), "codex".to_string())].into());
        assert_eq!(
            h.submit("bot", hooked).await.unwrap().approval.status,
            ApprovalStatus::Denied
        );
    });
}

#[test]
fn an_idempotent_replay_after_an_edit_compares_the_requested_arguments() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let h = runner(dir.path(), PolicySet::empty(), RunnerConfig::default());
        let mut r = req("issue_refund", json!({"amount": 75}));
        r.editable = true;
        r.idempotency_key = Some("k1".into());
        let a = h.submit("bot", r.clone()).await.unwrap().approval;
        let mut d = decision(a.id);
        d.edited_arguments = json!({"amount": 30}).as_object().cloned();
        let decided = h.decide("alice", d).await.unwrap();
        let again = h.submit("bot", r).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.approval.id, a.id);
        assert_eq!(again.approval.arguments, decided.arguments);
        // The audit record of the decision carries both calls.
        let rec = h.audit(0, 10).await.unwrap().pop().unwrap();
        assert_eq!(rec.details["approval"]["arguments"], json!({"amount": 30}));
        assert_eq!(
            rec.details["approval"]["requested_arguments"],
            json!({"amount": 75})
        );
    });
}

#[test]
fn durations_past_the_calendar_end_are_the_end_of_time_not_a_panic() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new();
        let mut cfg = four_and_four(&clock);
        for t in &mut cfg.tiers {
            t.after = Duration::from_secs(u64::MAX / 2);
        }
        cfg.grant_ttl = Duration::MAX;
        let h = runner(dir.path(), PolicySet::empty(), cfg);
        let a = h
            .submit("bot", in_run("run-1", "t"))
            .await
            .unwrap()
            .approval;
        assert_eq!(a.expires_at, Some(chrono::DateTime::<chrono::Utc>::MAX_UTC));
        let mut d = decision(a.id);
        d.scope = Some("run".into());
        h.decide("alice", d).await.unwrap();
        let g = h.grants().await.unwrap();
        assert_eq!(
            g[0].expires_at,
            Some(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        );
    });
}

#[test]
fn the_end_of_time_survives_the_store() {
    let end = chrono::DateTime::<chrono::Utc>::MAX_UTC;
    let text = serde_json::to_string(&end).unwrap();
    assert_eq!(serde_json::from_str::<Timestamp>(&text).unwrap(), end);
}
