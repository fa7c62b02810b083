//! Sample approvals for snapshots, unit tests and `bench_render`.

use crate::domain::{Approval, ApprovalStatus, Decision, PolicyRef, Timestamp, arguments_sha256};
use chrono::{DateTime, Duration};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The fixed "now" of snapshots: 2025-01-15T12:00:00Z.
pub fn fixed_now() -> Timestamp {
    DateTime::from_timestamp(1_736_942_400, 0).expect("valid timestamp")
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A pending approval. `n` makes the id and times distinct and deterministic.
#[allow(clippy::too_many_arguments)]
pub fn approval(
    n: u128,
    tool: &str,
    queue: &str,
    agent: Option<&str>,
    server: Option<&str>,
    run_id: Option<&str>,
    args: Value,
    reasoning: Option<&str>,
    age_secs: i64,
    left_secs: Option<i64>,
) -> Approval {
    let now = fixed_now();
    let arguments = obj(args);
    Approval {
        id: Uuid::from_u128(0x0194_6b2a_0000_7000_8000_0000_0000_0000 | n),
        run_id: run_id.map(str::to_string),
        agent: agent.map(str::to_string),
        tool: tool.to_string(),
        server: server.map(str::to_string),
        arguments_sha256: arguments_sha256(&arguments),
        arguments,
        reasoning: reasoning.map(str::to_string),
        requested_by: agent.unwrap_or("billing-bot").to_string(),
        queue: queue.to_string(),
        tier: 0,
        policy: PolicyRef {
            name: Some("refunds".into()),
            rule: Some(2),
            reason: "refunds of $50 or more need a human".into(),
        },
        created_at: now - Duration::seconds(age_secs),
        expires_at: left_secs.map(|s| now + Duration::seconds(s)),
        status: ApprovalStatus::Pending,
        decision: None,
        editable: false,
        outcome_unknown: false,
    }
}

/// The same approval, decided.
pub fn decided(
    mut a: Approval,
    status: ApprovalStatus,
    by: &str,
    reason: Option<&str>,
    ago_secs: i64,
) -> Approval {
    a.status = status;
    a.decision = Some(Decision {
        by: by.to_string(),
        at: fixed_now() - Duration::seconds(ago_secs),
        reason: reason.map(str::to_string),
        arguments_sha256: Some(a.arguments_sha256.clone()),
        arguments: None,
        scope: None,
    });
    a
}

/// A small, varied scene: three queues, one approval with hostile text, some history.
pub fn scene() -> (Vec<Approval>, Vec<Approval>) {
    let pending = vec![
        approval(
            1,
            "issue_refund",
            "primary",
            Some("CustomerServiceAgent"),
            None,
            Some("run_01"),
            json!({"order_id": "ORD-1042", "amount": 120.5, "currency": "USD"}),
            Some(
                "The customer reports the blender arrived broken. Order ORD-1042 was delivered \
                 3 days ago and is within the 30-day window, so a full refund of $120.50 applies.",
            ),
            185,
            Some(1615),
        ),
        approval(
            2,
            "delete_user_account",
            "primary",
            Some("CustomerServiceAgent"),
            None,
            Some("run_02"),
            json!({"user_id": "u_7731", "hard_delete": true}),
            Some("The user asked to close their account and erase their data (GDPR request)."),
            62,
            Some(45),
        ),
        approval(
            3,
            "issue_refund",
            "primary",
            Some("CustomerServiceAgent"),
            None,
            Some("run_03"),
            json!({"order_id": "ORD-2210", "amount": 75}),
            None,
            20,
            Some(240),
        ),
        approval(
            4,
            "query",
            "db",
            Some("analyst"),
            Some("postgres"),
            None,
            json!({
                "sql": "DELETE FROM users WHERE id = 7;\r-- \u{1b}[2Jlooks harmless",
                "path": "/home\rls",
                "note": "invoice\u{202e}fdp.exe"
            }),
            Some("Clean up\u{200b} a test user.\nNothing else."),
            5400,
            None,
        ),
        approval(
            5,
            "deploy",
            "backup",
            Some("release-bot"),
            Some("github"),
            None,
            json!({"service": "billing", "version": "2.4.1", "regions": ["eu-west-1", "us-east-1"], "canary": {"percent": 5, "bake": "15m"}}),
            Some("Release 2.4.1 passed staging; rolling out with a 5% canary."),
            1000,
            Some(7200),
        ),
    ];
    let mut editable = pending[4].clone();
    editable.editable = true;
    let mut pending = pending;
    pending[4] = editable;
    let recent = vec![
        decided(
            approval(
                10,
                "issue_refund",
                "primary",
                Some("CustomerServiceAgent"),
                None,
                Some("run_00"),
                json!({"order_id": "ORD-0999", "amount": 60}),
                None,
                900,
                Some(900),
            ),
            ApprovalStatus::Approved,
            "alice",
            None,
            300,
        ),
        decided(
            approval(
                11,
                "delete_user_account",
                "primary",
                Some("CustomerServiceAgent"),
                None,
                None,
                json!({"user_id": "u_1"}),
                None,
                2000,
                Some(10),
            ),
            ApprovalStatus::Denied,
            "bob",
            Some("Wrong customer"),
            1200,
        ),
        decided(
            approval(
                12,
                "issue_refund",
                "backup",
                None,
                None,
                None,
                json!({"amount": 900}),
                None,
                4000,
                Some(0),
            ),
            ApprovalStatus::Expired,
            "timeout",
            Some("approval timed out"),
            2400,
        ),
    ];
    (pending, recent)
}

/// `n` pending approvals spread over four queues, for the benchmark.
pub fn many(n: usize) -> Vec<Approval> {
    const QUEUES: [&str; 4] = ["primary", "backup", "db", "deploys"];
    (0..n)
        .map(|i| {
            approval(
                1000 + i as u128,
                if i % 3 == 0 {
                    "issue_refund"
                } else {
                    "delete_user_account"
                },
                QUEUES[i % 4],
                Some("CustomerServiceAgent"),
                if i % 5 == 0 { Some("postgres") } else { None },
                Some(&format!("run_{i}")),
                json!({"order_id": format!("ORD-{i}"), "amount": (i % 500) as f64 + 0.5}),
                Some("Routine refund within policy; the customer provided a receipt."),
                (n - i) as i64,
                Some(1800 - (i % 1800) as i64),
            )
        })
        .collect()
}
