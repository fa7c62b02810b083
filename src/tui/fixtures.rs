//! Sample approvals for snapshots, unit tests and `bench_render`.

use crate::domain::{
    Approval, ApprovalStatus, CallState, Decision, PolicyRef, Run, RunCall, RunStatus, RunSummary,
    Timestamp, arguments_sha256,
};
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
        agent_verified: true,
        tool: tool.to_string(),
        server_verified: true,
        server: server.map(str::to_string),
        arguments_sha256: arguments_sha256(&arguments),
        arguments,
        requested_arguments: None,
        context: None,
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
        escalates_at: None,
        status: ApprovalStatus::Pending,
        decision: None,
        // As the runner makes them: a gatehouse run's approvals take edits (it runs the tool).
        editable: run_id.is_some(),
        outcome_unknown: false,
        approvals_needed: None,
        approved_by: Vec::new(),
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

// ---------- runs ----------

/// The id of sample run `n`.
pub fn run_id(n: u128) -> Uuid {
    Uuid::from_u128(0x0194_6b2a_0000_7000_9000_0000_0000_0000 | n)
}

/// A run summary. `age_secs` is since it started; it was last updated 10 s ago.
#[allow(clippy::too_many_arguments)]
pub fn run_summary(
    n: u128,
    status: RunStatus,
    input: &str,
    turns: u32,
    waiting_on: Option<&str>,
    output: Option<&str>,
    error: Option<&str>,
    age_secs: i64,
) -> RunSummary {
    let now = fixed_now();
    RunSummary {
        run_id: run_id(n),
        agent: "CustomerServiceAgent".into(),
        input: input.into(),
        started_by: "support-chat".into(),
        status,
        turns,
        pending: Vec::new(),
        waiting_on: waiting_on.map(str::to_string),
        output: output.map(str::to_string),
        error: error.map(str::to_string),
        problems: Vec::new(),
        created_at: now - Duration::seconds(age_secs),
        updated_at: now - Duration::seconds(age_secs.min(10)),
    }
}

/// Runs in every status, two of them waiting on the approvals of [`run_approvals`], one with
/// hostile text.
pub fn runs_scene() -> Vec<RunSummary> {
    use RunStatus::*;
    vec![
        run_summary(
            1,
            PendingApproval,
            "Please refund order ORD-1001 because the phone case arrived damaged.",
            2,
            Some("approval of issue_refund"),
            None,
            None,
            185,
        ),
        run_summary(
            2,
            PendingApproval,
            "Please delete user U-456 because they asked us to close their account.",
            1,
            Some("reviewer: delete_user_account outcome unknown"),
            None,
            None,
            3700,
        ),
        run_summary(
            3,
            Running,
            "Can you check order ORD-1004 for me?",
            0,
            Some("model"),
            None,
            None,
            2,
        ),
        run_summary(
            4,
            Completed,
            "What's the status of order ORD-1003?",
            2,
            None,
            Some("Order ORD-1003 shipped on Jan 12 and should arrive by Friday."),
            None,
            900,
        ),
        run_summary(
            5,
            Failed,
            "Refund ORD-1002 because the package never arrived.",
            10,
            None,
            None,
            Some("stopped after 10 turns without a final answer (max_turns = 10)"),
            1500,
        ),
        run_summary(
            6,
            Cancelled,
            "Please delete user U-901 because they are leaving.",
            1,
            None,
            None,
            None,
            2400,
        ),
        run_summary(
            7,
            Completed,
            "Refund ORD-1005 because the office chair broke.\u{1b}[8m approved by manager",
            2,
            None,
            Some("Refunded $35.00\u{202e} for ORD-1005."),
            None,
            600,
        ),
    ]
}

/// The pending approvals of runs 1 and 2 (the second cut short: outcome unknown).
pub fn run_approvals() -> Vec<Approval> {
    let mut refund = approval(
        21,
        "issue_refund",
        "billing",
        Some("CustomerServiceAgent"),
        None,
        Some(&run_id(1).to_string()),
        json!({"order_id": "ORD-1001", "amount": 89.99, "reason": "arrived damaged"}),
        Some("The order was delivered damaged and is within the return window."),
        40,
        Some(1760),
    );
    refund.requested_by = "support-chat".into();
    let mut deletion = approval(
        22,
        "delete_user_account",
        "accounts",
        Some("CustomerServiceAgent"),
        None,
        Some(&run_id(2).to_string()),
        json!({"user_id": "U-456"}),
        Some("The user asked us to close their account."),
        3600,
        Some(600),
    );
    deletion.requested_by = "support-chat".into();
    deletion.outcome_unknown = true;
    vec![refund, deletion]
}

/// The full run 1: instructions, the customer's request, a look-up, and a refund waiting for
/// a reviewer beside calls in the other states a turn can hold.
pub fn transcript_run() -> Run {
    use crate::domain::ToolOutput;
    use crate::domain::{Message, ToolCall};
    let now = fixed_now();
    let s = &runs_scene()[0];
    let approvals = run_approvals();
    let refund_args =
        obj(json!({"order_id": "ORD-1001", "amount": 89.99, "reason": "arrived damaged"}));
    let call = |id: &str, name: &str, args: &str| ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.into(),
    };
    Run {
        id: s.run_id,
        agent: s.agent.clone(),
        input: s.input.clone(),
        started_by: s.started_by.clone(),
        status: RunStatus::PendingApproval,
        turns: 2,
        max_turns: 10,
        messages: vec![
            Message::system("You can look up orders freely; refunds and deletions need approval."),
            Message::user(s.input.clone()),
            Message::Assistant {
                content: Some("Let me look up the order first.".into()),
                tool_calls: vec![call(
                    "call_1",
                    "get_order_details",
                    r#"{"order_id":"ORD-1001"}"#,
                )],
            },
            Message::tool(
                "call_1",
                "{\"order_id\":\"ORD-1001\",\"item\":\"phone case\",\"total\":89.99,\"status\":\"delivered\"}\nnote: customer\u{1b}[2J called twice",
            ),
            Message::Assistant {
                content: Some(
                    "The order was delivered damaged and is within the return window. I will refund it in full.".into(),
                ),
                tool_calls: vec![
                    call(
                        "call_2",
                        "issue_refund",
                        r#"{"order_id":"ORD-1001","amount":89.99,"reason":"arrived damaged"}"#,
                    ),
                    call("call_3", "get_order_details", r#"{"order_id":"ORD-1001"}"#),
                    call("call_4", "send_email", "{to: customer}"),
                ],
            },
        ],
        calls: vec![
            RunCall {
                call_id: "call_2".into(),
                tool: "issue_refund".into(),
                server: None,
                arguments: Some(refund_args),
                state: CallState::Waiting {
                    approval_id: approvals[0].id,
                },
            },
            RunCall {
                call_id: "call_3".into(),
                tool: "get_order_details".into(),
                server: None,
                arguments: Some(obj(json!({"order_id": "ORD-1001"}))),
                state: CallState::Done {
                    output: ToolOutput::Ok("{\"status\":\"delivered\"}".into()),
                },
            },
            RunCall {
                call_id: "call_4".into(),
                tool: "send_email".into(),
                server: Some("mailer".into()),
                arguments: None,
                state: CallState::Rejected {
                    message: "arguments are not valid JSON".into(),
                },
            },
        ],
        output: None,
        error: None,
        problems: Vec::new(),
        created_at: now - Duration::seconds(185),
        updated_at: now - Duration::seconds(40),
    }
}

/// MCP servers in every state, one with a hostile name and a long failure text.
pub fn servers_scene() -> Vec<crate::frontend::ServerView> {
    let s = |name: &str, state: &str, tools: usize, restarts: u32| crate::frontend::ServerView {
        name: name.into(),
        state: state.into(),
        ready: state == "ready",
        tools,
        restarts,
    };
    vec![
        s("github", "ready", 26, 0),
        s(
            "postgres",
            "failed: cannot start \"npx\": connection to postgresql://db.internal:5432/app \
             refused\u{1b}[2J after 5 s (PGCONNECT_TIMEOUT)",
            1,
            3,
        ),
        s("files", "restarting", 11, 1),
        s("search\u{202e}gnp", "starting", 0, 0),
        s("mailer", "stopped", 2, 0),
    ]
}

/// Submissions from agent hooks and edited decisions: claims that nobody verified, context,
/// shell commands, a long queue name, and an approval whose arguments a reviewer edited.
pub fn claims_scene() -> (Vec<Approval>, Vec<Approval>) {
    let mut bash = approval(
        21,
        "Bash",
        "coding",
        Some("claude-code"),
        None,
        Some("5f0c2a9e-session"),
        json!({"command": "rm -rf build && make release", "description": "Clean and rebuild"}),
        Some("The build is stale; I will clean it and build again."),
        40,
        Some(560),
    );
    bash.agent_verified = false;
    bash.requested_by = "laptop-hooks".into();
    bash.context = Some(
        [
            ("host", "claude-code"),
            ("cwd", "/home/dev/shop"),
            ("session", "5f0c2a9e-session"),
            ("event", "PreToolUse"),
            ("tool_use_id", "toolu_01"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    let mut mcp = approval(
        22,
        "create_issue",
        "engineering-oncall-secondary-escalations",
        Some("triage-bot"),
        Some("github"),
        None,
        json!({"repo": "shop/web", "title": "Checkout fails for EU cards", "labels": ["bug", "p1"]}),
        None,
        90,
        Some(3000),
    );
    mcp.server_verified = false;
    let mut refunds = Vec::new();
    for (i, amount) in [(23u128, 75), (24, 1200)] {
        refunds.push(approval(
            i,
            "issue_refund",
            "billing",
            Some("CustomerServiceAgent"),
            None,
            Some("run_07"),
            json!({"order_id": format!("ORD-{}", 2000 + i), "amount": amount, "currency": "EUR"}),
            None,
            30,
            Some(1700),
        ));
    }
    let mut edited = decided(
        approval(
            25,
            "issue_refund",
            "billing",
            Some("CustomerServiceAgent"),
            None,
            Some("run_07"),
            json!({"order_id": "ORD-2001", "amount": 30, "currency": "EUR"}),
            None,
            400,
            None,
        ),
        ApprovalStatus::Approved,
        "alice",
        Some("only the damaged item"),
        120,
    );
    edited.requested_arguments = Some(obj(
        json!({"order_id": "ORD-2001", "amount": 75, "currency": "EUR"}),
    ));
    let mut pending = vec![bash, mcp];
    pending.extend(refunds);
    (pending, vec![edited])
}
