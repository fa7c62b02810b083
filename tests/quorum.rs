//! The two-person rule (DESIGN §13, issue 15) against the real daemon over HTTP: a rule with
//! `approvals = 2` needs two distinct reviewers, never the requester; a denial denies at once;
//! a partial approval is audited, published and survives kill -9; an agent run resumes only
//! after the second approval.

mod common;

use common::model_server::{ModelServer, Reply, call};
use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const DAVE: &str = "dave-token";
const DEADLINE: Duration = Duration::from_secs(20);

/// The common identities plus dave (a third reviewer), and a policy `payouts` whose tool
/// `payout` asks two reviewers. `extra`: more TOML.
fn quorum_config(extra: &str) -> String {
    format!(
        r#"{common}
[[identities]]
name = "dave"
roles = ["reviewer"]
token = "{DAVE}"

[[policies]]
name = "payouts"
tools = ["payout"]
[[policies.rules]]
when = "args.amount < 100"
action = "ask"
reason = "small payouts need one reviewer"
[[policies.rules]]
action = "ask"
reason = "payouts need two people"
approvals = 2

{extra}
"#,
        common = config_text()
    )
}

fn start(extra: &str) -> (Workspace, Daemon) {
    let ws = Workspace::new();
    ws.write_config(&quorum_config(extra));
    let d = ws.start();
    (ws, d)
}

async fn payout(api: &Api, token: &str) -> Value {
    let r = api
        .submit(
            token,
            &json!({"tool": "payout", "arguments": {"to": "acct-9", "amount": 5000}, "run_id": "r-1"}),
        )
        .await;
    assert_eq!(r.status, 201, "submit: {r:?}");
    assert_eq!(r.body["status"], "pending", "{r:?}");
    assert_eq!(r.body["approvals_needed"], 2, "{r:?}");
    r.body
}

async fn approve(api: &Api, token: &str, id: &str) -> Resp {
    api.decide(token, id, "approve", None).await
}

#[tokio::test]
async fn two_distinct_reviewers_approve_and_the_requester_and_repeats_are_refused() {
    let (_ws, d) = start("");
    let api = d.api();
    // carol (agent + reviewer) submits: she may never be one of the two.
    let a = payout(&api, CAROL).await;
    let id = a["id"].as_str().unwrap();
    assert!(a.get("approved_by").is_none(), "{a:#}");

    let r = approve(&api, CAROL, id).await;
    assert_eq!(r.expect_error(403), "self_approval", "{r:?}");

    // A long poll started now returns only when the quorum is met.
    let waiter = {
        let api = d.api();
        let id = id.to_string();
        tokio::spawn(async move {
            api.get(Some(CAROL), &format!("/v1/approvals/{id}?wait=15"))
                .await
        })
    };

    let r = approve(&api, ALICE, id).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "pending", "{r:?}");
    assert_eq!(r.body["approved_by"], json!(["alice"]), "{r:?}");
    assert_eq!(r.body["approvals_needed"], 2, "{r:?}");
    assert!(r.body["decision"].is_null(), "{r:?}");

    let r = approve(&api, ALICE, id).await;
    assert_eq!(r.expect_error(409), "already_approved_by_you", "{r:?}");
    assert_eq!(api.approval(id).await["approved_by"], json!(["alice"]));
    assert!(
        !waiter.is_finished(),
        "the long poll returned on a partial approval"
    );

    // A grant cannot be made under a quorum, nor an edit.
    let r = api
        .post(
            Some(BOB),
            &format!("/v1/approvals/{id}/decision"),
            &json!({"decision": "approve", "scope": "run"}),
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.message().contains("two-person rule"), "{r:?}");

    let r = approve(&api, BOB, id).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "approved", "{r:?}");
    assert_eq!(r.body["approved_by"], json!(["alice", "bob"]), "{r:?}");
    assert_eq!(r.body["decision"]["by"], "bob", "{r:?}");

    let polled = tokio::time::timeout(DEADLINE, waiter)
        .await
        .expect("long poll returned")
        .expect("join");
    assert_eq!(polled.status, 200, "{polled:?}");
    assert_eq!(polled.body["status"], "approved", "{polled:?}");

    let r = approve(&api, DAVE, id).await;
    assert_eq!(r.expect_error(409), "already_decided", "{r:?}");

    let audit = api.audit_all().await;
    assert_chain(&audit);
    let partial = records_of(&audit, "approval.approved_partially", id);
    assert_eq!(partial.len(), 1, "{audit:#?}");
    assert_eq!(partial[0]["actor"], "alice");
    assert_eq!(
        partial[0]["details"]["approval"]["approved_by"],
        json!(["alice"])
    );
    let decided = records_of(&audit, "approval.decided", id);
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["actor"], "bob");
    let refused: Vec<&Value> = audit
        .iter()
        .filter(|r| r["kind"] == "decision.refused" && r["details"]["approval_id"] == id)
        .collect();
    assert!(
        refused
            .iter()
            .any(|r| r["actor"] == "alice" && r["details"]["code"] == "already_approved_by_you"),
        "{refused:#?}"
    );
}

#[tokio::test]
async fn a_third_reviewer_denying_denies_at_once_and_grants_never_stand_in() {
    let (_ws, d) = start("");
    let api = d.api();
    let a = payout(&api, BOT).await;
    let id = a["id"].as_str().unwrap();
    let r = approve(&api, ALICE, id).await;
    assert_eq!(r.body["approved_by"], json!(["alice"]), "{r:?}");
    let r = api.decide(DAVE, id, "deny", Some("not this account")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "denied", "{r:?}");
    assert_eq!(r.body["decision"]["by"], "dave", "{r:?}");
    // A grant for the same identity, run and tool, made on a small payout (one reviewer),
    // approves later small payouts but never a call under the two-person rule.
    let small =
        json!({"tool": "payout", "arguments": {"to": "acct-9", "amount": 5}, "run_id": "r-1"});
    let first = api.submit(BOT, &small).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert!(first.body.get("approvals_needed").is_none(), "{first:?}");
    let r = api
        .post(
            Some(ALICE),
            &format!("/v1/approvals/{}/decision", first.id()),
            &json!({"decision": "approve", "scope": "run"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "approved", "{r:?}");
    let granted = api.submit(BOT, &small).await;
    assert_eq!(
        granted.status, 200,
        "the grant approves small payouts: {granted:?}"
    );
    assert_eq!(granted.body["decision"]["by"], "grant:alice", "{granted:?}");
    let big = payout(&api, BOT).await;
    assert_eq!(big["status"], "pending", "{big:#}");
    assert!(big["decision"].is_null(), "{big:#}");
}

#[tokio::test]
async fn a_partial_approval_survives_kill_9_and_the_clock_keeps_running() {
    let extra = r#"
[[escalation]]
queue = "primary"
after = "1h"
[[escalation]]
queue = "backup"
after = "1h"
"#;
    let (ws, mut d) = start(extra);
    let api = d.api();
    let a = payout(&api, BOT).await;
    let id = a["id"].as_str().unwrap().to_string();
    let escalates_at = a["escalates_at"].clone();
    assert!(escalates_at.is_string(), "{a:#}");
    let r = approve(&api, ALICE, &id).await;
    assert_eq!(r.body["status"], "pending", "{r:?}");
    assert_eq!(
        r.body["escalates_at"], escalates_at,
        "the clock was reset: {r:?}"
    );

    d.kill();
    let d = ws.start();
    let api = d.api();
    let after = api.approval(&id).await;
    assert_eq!(after["status"], "pending", "{after:#}");
    assert_eq!(after["approved_by"], json!(["alice"]), "{after:#}");
    assert_eq!(after["escalates_at"], escalates_at, "{after:#}");

    // The reviewer recorded before the crash still counts: a second time is refused.
    let r = approve(&api, ALICE, &id).await;
    assert_eq!(r.expect_error(409), "already_approved_by_you", "{r:?}");
    let r = approve(&api, BOB, &id).await;
    assert_eq!(r.body["status"], "approved", "{r:?}");
    assert_eq!(r.body["approved_by"], json!(["alice", "bob"]), "{r:?}");
    assert_chain(&api.audit_all().await);
}

#[tokio::test]
async fn tier_reviewer_rules_apply_to_each_approver() {
    let extra = r#"
[[escalation]]
queue = "primary"
reviewers = ["alice", "bob"]
after = "1h"
"#;
    let (_ws, d) = start(extra);
    let api = d.api();
    let a = payout(&api, BOT).await;
    let id = a["id"].as_str().unwrap();
    let r = approve(&api, DAVE, id).await;
    assert_eq!(r.expect_error(403), "not_a_reviewer_of_queue", "{r:?}");
    let r = approve(&api, ALICE, id).await;
    assert_eq!(r.body["approved_by"], json!(["alice"]), "{r:?}");
    let r = approve(&api, DAVE, id).await;
    assert_eq!(r.expect_error(403), "not_a_reviewer_of_queue", "{r:?}");
    // An admin may decide any tier, and counts as the second reviewer.
    let r = approve(&api, ROOT, id).await;
    assert_eq!(r.body["status"], "approved", "{r:?}");
    assert_eq!(r.body["approved_by"], json!(["alice", "root"]), "{r:?}");
}

#[test]
fn the_cli_says_a_partial_approval_awaits_a_second_reviewer() {
    let (_ws, d) = start("");
    let api = d.api();
    let id = block_on(async { payout(&api, BOT).await["id"].as_str().unwrap().to_string() });
    let cli = |token: &str| {
        let mut c = command();
        c.args(["approvals", "approve", &id, "--connect", &d.url])
            .env("GATEHOUSE_TOKEN", token);
        run(c)
    };
    let first = cli(ALICE);
    assert_eq!(first.code, Some(0), "{first:?}");
    assert_eq!(
        first.stdout.trim(),
        format!("approved partially {id} (payout): 1 of 2 (alice), awaits a second reviewer")
    );
    let again = cli(ALICE);
    assert_ne!(again.code, Some(0), "{again:?}");
    assert!(again.stderr.contains("already approved"), "{again:?}");
    let second = cli(BOB);
    assert_eq!(second.code, Some(0), "{second:?}");
    assert_eq!(
        second.stdout.trim(),
        format!("approved {id} (payout) by bob")
    );
}

// ---------------------------------------------------------------------------------------
// An agent run inside gatehouse
// ---------------------------------------------------------------------------------------

fn run_config(dir: &Path, model: &ModelServer) -> String {
    let log = dir.join("payouts.log");
    let argv = [
        "/bin/sh",
        "-c",
        r#"cat >> "$1"; echo >> "$1"; printf 'paid'"#,
        "sh",
        log.to_str().unwrap(),
    ];
    let argv: Vec<String> = argv.iter().map(|a| toml_str(a)).collect();
    quorum_config(&format!(
        r#"
[models.fake]
kind = "openai"
base_url = {base}
model = "test-model"
api_key_env = "PATH"
timeout = "10s"

[[agents]]
name = "Payer"
instructions = "Pay people."
model = "fake"
tools = ["payout"]
max_turns = 4

[[tools]]
name = "payout"
description = "Send money."
parameters = {{ type = "object", properties = {{ to = {{ type = "string" }}, amount = {{ type = "number" }} }}, required = ["to", "amount"] }}
kind = "command"
command = [{argv}]
needs_approval = "payouts"
timeout = "20s"
"#,
        base = toml_str(&model.base_url()),
        argv = argv.join(", ")
    ))
}

async fn run_status(api: &Api, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = api.get(Some(ALICE), &format!("/v1/runs/{id}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        if r.body["status"] == want {
            return r.body;
        }
        assert!(Instant::now() < deadline, "run not {want}: {:#}", r.body);
        let seen = r.body["status"].as_str().unwrap_or("running").to_string();
        let _ = api
            .get(Some(ALICE), &format!("/v1/runs/{id}?wait=1&status={seen}"))
            .await;
    }
}

#[tokio::test]
async fn an_agent_run_resumes_only_after_the_second_approval() {
    let model = ModelServer::scripted(vec![
        Reply::tools(
            None,
            &[call(
                "c1",
                "payout",
                json!({"to": "acct-9", "amount": 5000}),
            )],
        ),
        Reply::text("Paid."),
    ]);
    let ws = Workspace::new();
    ws.write_config(&run_config(ws.dir.path(), &model));
    let d = ws.start();
    let api = d.api();
    let r = api
        .post(
            Some(BOT),
            "/v1/runs",
            &json!({"agent": "Payer", "input": "pay acct-9"}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    let run = run_status(&api, &run_id, "pending_approval").await;
    let approval = run["pending"][0]
        .as_str()
        .expect("a pending approval")
        .to_string();
    assert_eq!(api.approval(&approval).await["approvals_needed"], 2);

    let r = approve(&api, ALICE, &approval).await;
    assert_eq!(r.body["status"], "pending", "{r:?}");
    // Still waiting: the run did not move and the tool did not run.
    let run = api
        .get(Some(ALICE), &format!("/v1/runs/{run_id}"))
        .await
        .body;
    assert_eq!(run["status"], "pending_approval", "{run:#}");
    assert_eq!(
        model.count(),
        1,
        "the model was asked again after one approval"
    );
    assert!(
        !ws.dir.path().join("payouts.log").exists(),
        "paid after one approval"
    );

    let r = approve(&api, BOB, &approval).await;
    assert_eq!(r.body["status"], "approved", "{r:?}");
    run_status(&api, &run_id, "completed").await;
    let paid = std::fs::read_to_string(ws.dir.path().join("payouts.log")).expect("paid");
    assert_eq!(paid.lines().count(), 1, "{paid}");
}

#[tokio::test]
async fn an_approve_rule_past_its_hourly_limit_asks_two_reviewers() {
    let extra = r#"
[[policies]]
name = "transfers"
tools = ["transfer"]
[[policies.rules]]
action = "approve"
max_per_hour = 1
approvals = 2
"#;
    let (_ws, d) = start(extra);
    let api = d.api();
    let body = json!({"tool": "transfer", "arguments": {"amount": 1}});
    let first = api.submit(BOT, &body).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body["status"], "approved", "{first:?}");
    assert!(first.body.get("approvals_needed").is_none(), "{first:?}");
    let second = api.submit(BOT, &body).await;
    assert_eq!(second.status, 201, "{second:?}");
    assert_eq!(second.body["approvals_needed"], 2, "{second:?}");
    let id = second.id();
    assert_eq!(approve(&api, ALICE, &id).await.body["status"], "pending");
    assert_eq!(approve(&api, BOB, &id).await.body["status"], "approved");
}
