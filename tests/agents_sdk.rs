//! `examples/openai_agents/` (issue 12): the seed's CustomerServiceAgent on the real
//! `openai-agents` package (installed by the test into `target/pip/`), against a stand-in Chat
//! Completions server, its approvals resolved through a real gatehouse daemon.

mod common;

use common::hosts::{run_host, wait_approval};
use common::model_server::{ModelServer, Reply, call};
use common::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const SAY: &str = "The parcel was lost, so I will refund the order.";

/// First a refund of `amount` with SAY, then a closing line.
fn model(amount: f64) -> ModelServer {
    ModelServer::scripted(vec![
        Reply::tools(
            Some(SAY),
            &[call(
                "call_r1",
                "issue_refund",
                json!({"order_id": "ORD-1002", "amount": amount, "reason": "lost in transit"}),
            )],
        ),
        Reply::text("All done for you."),
    ])
}

fn example(model: &ModelServer, gatehouse_url: &str) -> std::process::Command {
    let site = pip::install(pip::OPENAI_AGENTS.0, pip::OPENAI_AGENTS.1);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/openai_agents");
    let home = std::env::temp_dir();
    let mut c = common::hosts::host_command(Path::new("python3"), &home);
    c.current_dir(&dir)
        .args([
            "-B",
            "customer_service.py",
            "Refund order ORD-1002, it never arrived.",
        ])
        .env("PYTHONPATH", site)
        .env("OPENAI_BASE_URL", model.base_url())
        .env("OPENAI_API_KEY", "dummy")
        .env("GATEHOUSE_URL", gatehouse_url)
        .env("GATEHOUSE_TOKEN", BOT);
    c
}

/// The text of what the SDK sent the model as the refund's tool result.
fn tool_result(model: &ModelServer) -> String {
    let reqs = model.wait_requests(2, Duration::from_secs(5));
    reqs[1]["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approved_refund_runs_and_the_reviewer_saw_the_agents_words() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let m = model(149.99);
    let cmd = example(&m, &d.url);
    let run = tokio::task::spawn_blocking(move || run_host(cmd));
    let a = wait_approval(&api, "pending", Duration::from_secs(120)).await;
    assert_eq!(a["tool"], "issue_refund");
    assert_eq!(a["agent"], "CustomerServiceAgent");
    assert_eq!(a["arguments"]["amount"], 149.99);
    assert_eq!(a["reasoning"], SAY, "{a:#}");
    assert_eq!(a["queue"], "primary", "the refunds policy routes it");
    let r = api
        .decide(ALICE, a["id"].as_str().unwrap(), "approve", None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let out = run.await.unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("All done for you."), "{out:?}");
    assert!(tool_result(&m).contains("Refunded $149.99 for ORD-1002"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_refund_does_not_run_and_the_model_reads_the_reason() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let m = model(149.99);
    let cmd = example(&m, &d.url);
    let run = tokio::task::spawn_blocking(move || run_host(cmd));
    let a = wait_approval(&api, "pending", Duration::from_secs(120)).await;
    api.decide(
        ALICE,
        a["id"].as_str().unwrap(),
        "deny",
        Some("refunds over $100 need a manager"),
    )
    .await;
    let out = run.await.unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    let result = tool_result(&m);
    assert!(
        result.contains("The reviewer denied this action: refunds over $100 need a manager"),
        "{result}"
    );
    assert!(!result.contains("Refunded"), "{result}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_approves_a_small_refund_without_a_reviewer() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let m = model(20.0);
    let out = tokio::task::spawn_blocking({
        let cmd = example(&m, &d.url);
        move || run_host(cmd)
    })
    .await
    .unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(tool_result(&m).contains("Refunded $20.00"));
    let all = api.list_all("all").await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["decision"]["by"], "policy:refunds", "{:#}", all[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn gatehouse_unreachable_rejects_the_call() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let m = model(149.99);
    let cmd = example(&m, &format!("http://127.0.0.1:{port}"));
    let out = tokio::task::spawn_blocking(move || run_host(cmd))
        .await
        .unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    let result = tool_result(&m);
    assert!(
        result.contains("Not run: cannot reach gatehouse"),
        "{result}"
    );
    assert!(!result.contains("Refunded"), "{result}");
}
