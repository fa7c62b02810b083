//! `gatehouse demo`: the console on a temporary data directory with the seed's
//! CustomerServiceAgent proposing refunds and account deletions, offline.
//!
//! Until agent runs exist, the agent's proposals are submitted to the runner as the agent's
//! identity, through the same policies a real agent's calls go through.

use super::console::{console_options, log_to_file, run_with_api};
use super::serve::start_local;
use super::{CommonArgs, Failure};
use crate::frontend;
use crate::runner::{RunnerHandle, SubmitRequest};
use serde_json::{Value, json};
use std::time::Duration;

pub const DEMO_CONFIG: &str = r#"
[[policies]]
name = "refunds"
tools = ["issue_refund"]
[[policies.rules]]
when = "args.amount < 50"
action = "approve"
reason = "refunds under $50 are approved automatically"
[[policies.rules]]
action = "ask"
queue = "billing"
timeout = "30m"

[[policies]]
name = "deletions"
tools = ["delete_user_account"]
[[policies.rules]]
action = "ask"
queue = "accounts"
timeout = "15m"
"#;

const AGENT: &str = "CustomerServiceAgent";

/// The agent's proposals: (tool, arguments, reasoning).
fn proposals() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "issue_refund",
            json!({"order_id": "ORD-1001", "amount": 24.99, "reason": "item arrived damaged"}),
            "The customer sent a photo of the damaged widget; order ORD-1001 totals $24.99.",
        ),
        (
            "issue_refund",
            json!({"order_id": "ORD-1002", "amount": 149.99, "reason": "package never delivered"}),
            "get_order_details shows ORD-1002 as delivered, but the carrier confirmed the parcel was lost. The customer asks for a full refund of $149.99.",
        ),
        (
            "delete_user_account",
            json!({"user_id": "U-456", "reason": "customer requested account deletion"}),
            "User U-456 asked in writing to close their account and erase their data. No open orders remain.",
        ),
        (
            "issue_refund",
            json!({"order_id": "ORD-1003", "amount": 75.0, "reason": "duplicate charge\u{1b}[8m approved by manager"}),
            "Customer reports being charged twice.\u{202e} This reasoning hides text from a careless reader.",
        ),
        (
            "delete_user_account",
            json!({"user_id": "U-789", "reason": "fraudulent sign-up"}),
            "Account U-789 was created with a stolen card; the fraud team flagged it.",
        ),
    ]
}

fn trickle(n: u64) -> (&'static str, Value, String) {
    if n % 3 == 2 {
        (
            "delete_user_account",
            json!({"user_id": format!("U-{}", 900 + n), "reason": "customer requested deletion"}),
            format!("User U-{} asked to delete their account.", 900 + n),
        )
    } else {
        let amount = [19.5, 64.0, 230.0, 12.0, 89.9][(n % 5) as usize];
        (
            "issue_refund",
            json!({"order_id": format!("ORD-{}", 2000 + n), "amount": amount, "reason": "late delivery"}),
            format!(
                "Order ORD-{} arrived a week late; the customer asks for ${amount:.2} back.",
                2000 + n
            ),
        )
    }
}

async fn propose(runner: &RunnerHandle, tool: &str, args: Value, reasoning: String) {
    let req = SubmitRequest {
        tool: tool.to_string(),
        arguments: args.as_object().cloned().unwrap_or_default(),
        reasoning: Some(reasoning),
        agent: Some(AGENT.to_string()),
        run_id: None,
        ..Default::default()
    };
    if let Err(e) = runner.submit(AGENT, req).await {
        tracing::warn!("demo proposal failed: {e}");
    }
}

pub async fn demo(theme: Option<String>, listen: Option<String>) -> Result<(), Failure> {
    let dir = tempfile::Builder::new()
        .prefix("gatehouse-demo-")
        .tempdir()
        .map_err(|e| Failure::runtime(format!("cannot make a temporary data directory: {e}")))?;
    let config_path = dir.path().join("demo.toml");
    std::fs::write(&config_path, DEMO_CONFIG)
        .map_err(|e| Failure::runtime(format!("cannot write the demo config: {e}")))?;
    let common = CommonArgs {
        config: Some(config_path),
        data: Some(dir.path().join("data")),
    };
    let local = start_local(&common)?;
    let opts = console_options(&local.config, theme.as_deref(), "gatehouse demo")?;
    log_to_file(&dir.path().join("console.log"));
    let reviewer = super::os_user();
    let link = frontend::local::link(local.runner.clone(), reviewer);
    let runner = local.runner.clone();
    let agent = tokio::spawn(async move {
        for (tool, args, reasoning) in proposals() {
            propose(&runner, tool, args, reasoning.to_string()).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        for n in 0.. {
            tokio::time::sleep(Duration::from_secs(20)).await;
            let (tool, args, reasoning) = trickle(n);
            propose(&runner, tool, args, reasoning).await;
        }
    });
    let result = run_with_api(local, link, opts, listen.as_deref()).await;
    agent.abort();
    drop(dir);
    result
}
