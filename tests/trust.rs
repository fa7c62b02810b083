//! Trust boundaries (DESIGN §9, issue 10) against the real daemon, tried as an attacker
//! would: two agent identities, an agent+reviewer identity, tiers with reviewers.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// `bot` may claim agent `trusted-bot` and any server; `bot2` may claim nothing; `carol` is
/// an agent and a reviewer; alice reviews tier `primary`, bob tier `backup`; dave reviews
/// but is listed in no tier; root is an admin.
fn trust_config(tiers: &str, notify: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[identities]]
name = "bot"
roles = ["agent"]
token = "{BOT}"
agents = ["trusted-bot"]
servers = ["*"]

[[identities]]
name = "bot2"
roles = ["agent"]
token = "{BOT2}"

[[identities]]
name = "carol"
roles = ["agent", "reviewer"]
token = "{CAROL}"

[[identities]]
name = "alice"
roles = ["reviewer"]
token = "{ALICE}"

[[identities]]
name = "bob"
roles = ["reviewer"]
token = "{BOB}"

[[identities]]
name = "dave"
roles = ["reviewer"]
token = "dave-token"

[[identities]]
name = "root"
roles = ["admin"]
token = "{ROOT}"

[[policies]]
name = "trust"
tools = ["deploy"]
[[policies.rules]]
when = 'agent == "trusted-bot"'
action = "approve"
[[policies.rules]]
when = 'server == "github"'
action = "approve"
[[policies.rules]]
when = 'identity.name == "bot2"'
action = "ask"
reason = "bot2 always asks"

{tiers}
{notify}
"#
    )
}

const TIERS: &str = r#"
[[escalation]]
queue = "primary"
reviewers = ["alice"]
after = "30m"

[[escalation]]
queue = "backup"
reviewers = ["bob"]
after = "30m"
"#;

fn daemon(ws: &Workspace, tiers: &str, notify: &str) -> Daemon {
    ws.write_config(&trust_config(tiers, notify));
    ws.start()
}

fn refund(run: &str, amount: i64) -> Value {
    json!({"tool": "issue_refund", "arguments": {"order_id": "A-1", "amount": amount}, "run_id": run})
}

#[tokio::test]
async fn a_grant_approves_only_its_own_identity_in_its_own_run() {
    let ws = Workspace::new();
    let mut d = daemon(&ws, TIERS, "");
    let api = d.api();
    let first = api.submit(BOT, &refund("run-42", 100)).await;
    assert_eq!(first.status, 201, "{first:?}");
    let r = api
        .post(
            Some(ALICE),
            &format!("/v1/approvals/{}/decision", first.id()),
            &json!({"decision": "approve", "scope": "run"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    // bot2 rides the same run id: it asks, never `grant:alice`.
    let r = api.submit(BOT2, &refund("run-42", 1_000_000)).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["status"], "pending");
    // Nor can an agent+reviewer identity use it to approve its own request.
    let r = api.submit(CAROL, &refund("run-42", 500)).await;
    assert_eq!(r.status, 201, "{r:?}");
    // The identity it was granted to goes through.
    let r = api.submit(BOT, &refund("run-42", 70)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["decision"]["by"], "grant:alice");
    // Not in another run.
    assert_eq!(api.submit(BOT, &refund("run-43", 70)).await.status, 201);

    let grants = api.get(Some(ALICE), "/v1/grants").await;
    let g = &grants.body["grants"][0];
    assert_eq!(g["identity"], "bot", "{grants:?}");
    assert_eq!(g["run_id"], "run-42");
    assert_eq!(g["tool"], "issue_refund");
    assert_eq!(g["granted_by"], "alice");
    let made = chrono::DateTime::parse_from_rfc3339(g["at"].as_str().unwrap()).unwrap();
    let ends = chrono::DateTime::parse_from_rfc3339(g["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(ends - made, chrono::Duration::hours(1), "default grant_ttl");

    // After a restart the grant is still bot's alone, and still ends.
    d.stop();
    let d = ws.start();
    let api = d.api();
    let r = api.submit(BOT2, &refund("run-42", 70)).await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = api.submit(BOT, &refund("run-42", 70)).await;
    assert_eq!(r.body["decision"]["by"], "grant:alice", "{r:?}");
    let grants = api.get(Some(ALICE), "/v1/grants").await;
    assert_eq!(grants.body["grants"][0]["expires_at"], g["expires_at"]);
}

#[tokio::test]
async fn claimed_agents_and_servers_do_not_meet_policies() {
    let ws = Workspace::new();
    let d = daemon(&ws, TIERS, "");
    let api = d.api();
    let claim = |agent: Option<&str>, server: Option<&str>| json!({"tool": "deploy", "arguments": {"env": "prod"}, "agent": agent, "server": server});
    // bot2 may claim nothing: writing the trusted name is not enough.
    let r = api.submit(BOT2, &claim(Some("trusted-bot"), None)).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["agent"], "trusted-bot");
    assert_eq!(r.body["agent_verified"], false);
    let r = api.submit(BOT2, &claim(None, Some("github"))).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["server_verified"], false);
    // bot may make both claims: they are verified and the policy sees them.
    let r = api.submit(BOT, &claim(Some("trusted-bot"), None)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "approved");
    assert_eq!(r.body["agent_verified"], true);
    let r = api.submit(BOT, &claim(None, Some("github"))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["server_verified"], true);
    // But not another agent name.
    let r = api.submit(BOT, &claim(Some("other"), None)).await;
    assert_eq!(r.body["agent_verified"], false, "{r:?}");
}

#[tokio::test]
async fn routing_and_deciding_belong_to_the_operator() {
    let ws = Workspace::new();
    let d = daemon(&ws, TIERS, "");
    let api = d.api();
    // A queue nobody configured is refused, naming it.
    let r = api
        .submit(
            BOT,
            &json!({"tool": "t", "arguments": {}, "queue": "shadow"}),
        )
        .await;
    assert_eq!(r.expect_error(422), "invalid_request");
    assert!(r.message().contains("\"shadow\""), "{r:?}");

    // A tiny timeout does not skip the first tier: the approval expires there.
    let r = api
        .submit(
            BOT,
            &json!({"tool": "t", "arguments": {}, "timeout": 0.001}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.id();
    let r = api
        .get(Some(ALICE), &format!("/v1/approvals/{id}?wait=10"))
        .await;
    assert_eq!(r.body["status"], "expired", "{r:?}");
    assert_eq!(
        (r.body["queue"].as_str(), r.body["tier"].as_u64()),
        (Some("primary"), Some(0))
    );
    assert_eq!(r.body["decision"]["by"], "timeout");

    // Only the tier's reviewers (and earlier tiers', and admins) decide.
    let a = api.submit_pending(BOT, "t", json!({"n": 1})).await;
    let id = a["id"].as_str().unwrap().to_string();
    for token in [BOB, "dave-token"] {
        let r = api.decide(token, &id, "approve", None).await;
        assert_eq!(r.expect_error(403), "not_a_reviewer_of_queue", "{r:?}");
    }
    let r = api
        .post(
            Some("dave-token"),
            &format!("/v1/approvals/{id}/escalate"),
            &json!({}),
        )
        .await;
    assert_eq!(r.expect_error(403), "not_a_reviewer_of_queue");
    let r = api.decide(ALICE, &id, "approve", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let b = api.submit_pending(BOT, "t", json!({"n": 2})).await;
    let r = api
        .decide(ROOT, b["id"].as_str().unwrap(), "deny", Some("admin"))
        .await;
    assert_eq!(r.status, 200, "an admin decides in any tier: {r:?}");
    let refused: Vec<Value> = api
        .audit_all()
        .await
        .into_iter()
        .filter(|r| r["kind"] == "decision.refused")
        .map(|r| json!([r["actor"], r["details"]["code"]]))
        .collect();
    assert_eq!(
        refused,
        vec![
            json!(["bob", "not_a_reviewer_of_queue"]),
            json!(["dave", "not_a_reviewer_of_queue"]),
            json!(["dave", "not_a_reviewer_of_queue"]),
        ]
    );
}

#[tokio::test]
async fn refusals_without_a_token_are_counted_into_one_record() {
    let ws = Workspace::new();
    let mut d = daemon(&ws, TIERS, "");
    let api = d.api();
    let a = api.submit_pending(BOT, "t", json!({})).await;
    let path = format!("/v1/approvals/{}/decision", a["id"].as_str().unwrap());
    for _ in 0..40 {
        api.post(Some("forged"), &path, &json!({"decision": "approve"}))
            .await
            .expect_error(401);
    }
    // Authenticated refusals are each audited, past any per-minute cap.
    for _ in 0..120 {
        api.decide(BOT2, a["id"].as_str().unwrap(), "approve", None)
            .await
            .expect_error(403);
    }
    // The count is written at the end of its minute, or when the daemon stops.
    d.stop();
    let d = ws.start();
    let audit = d.api().audit_all().await;
    let counted: Vec<&Value> = audit
        .iter()
        .filter(|r| r["kind"] == "requests.refused")
        .collect();
    assert_eq!(counted.len(), 1, "{counted:?}");
    assert_eq!(counted[0]["details"]["count"], 40);
    assert_eq!(counted[0]["actor"], "(no valid token)");
    let by_bot2 = audit
        .iter()
        .filter(|r| r["kind"] == "decision.refused" && r["actor"] == "bot2")
        .count();
    assert_eq!(by_bot2, 120);
}

#[tokio::test]
async fn webhooks_announce_new_approvals_and_name_the_right_durations() {
    let hook = common::webhook::Webhook::start().await;
    let ws = Workspace::new();
    let tiers = r#"
[[escalation]]
queue = "primary"
reviewers = ["alice"]
after = "1s"

[[escalation]]
queue = "backup"
reviewers = ["bob"]
after = "2s"
"#;
    let notify = format!(
        "[notify]\nwebhook = {}\non_create = true\n",
        toml_str(&hook.url)
    );
    let d = daemon(&ws, tiers, &notify);
    let api = d.api();
    let a = api.submit_pending(BOT, "t", json!({})).await;
    // The last notice comes when the chain runs out (3 s of tiers: time that must pass).
    hook.wait_for(Duration::from_secs(20), |n| {
        n["event"] == "approval.expired"
    })
    .await
    .unwrap_or_else(|| panic!("no expiry notice: {:#?}", hook.notices()));
    let all = hook.notices();
    let events: Vec<&str> = all.iter().map(|n| n["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        vec!["approval.created", "approval.escalated", "approval.expired"]
    );
    assert_eq!(all[0]["approval_id"], a["id"]);
    assert_eq!(all[0]["reviewers"], json!(["alice"]));
    assert_eq!(
        all[1]["reason"],
        "not decided in queue primary within 1s; escalated to backup; it expires in 2s"
    );
    assert_eq!(
        all[2]["reason"],
        "approval timed out after 3s without a decision"
    );
}

#[test]
fn the_readme_refund_policy_never_approves_a_negative_amount() {
    use gatehouse::config::RuleAction;
    use gatehouse::policy::{CallContext, PolicySet, RateLimits, ToolAnnotations};
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let cfg = gatehouse::config::Config::parse(&readme[start..end]).unwrap();
    let set = PolicySet::compile(&cfg.policies).unwrap();
    let decide = |amount: i64| {
        let args = json!({"order_id": "A-1", "amount": amount});
        set.evaluate(
            &CallContext {
                tool: "issue_refund",
                server: None,
                args: args.as_object().unwrap(),
                agent: None,
                run: None,
                annotations: ToolAnnotations::default(),
                policy: None,
                identity: Default::default(),
                context: None,
            },
            gatehouse::domain::now(),
            &RateLimits::default(),
        )
        .action
    };
    assert_eq!(decide(30), RuleAction::Approve);
    assert_eq!(decide(-1000), RuleAction::Ask);
    assert_eq!(decide(50), RuleAction::Ask);
}
