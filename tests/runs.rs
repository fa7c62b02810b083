//! Agent runs end to end (DESIGN §2–§4, §7) with the real binary: `gatehouse serve` on a temp
//! data directory, real `command` tools (small `/bin/sh` programs writing into the temp dir),
//! and a stand-in chat model that speaks the OpenAI Chat Completions protocol over HTTP
//! (tests/common/model_server.rs), which records exactly what gatehouse sent it.
//!
//! No gatehouse part is mocked. Every wait is on a condition (a long poll, a gate, a file),
//! bounded by a deadline.

mod common;

use common::model_server::{Gate, ModelServer, Reply, call, raw_call};
use common::sse::{Sse, SseStream};
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long a run may take to reach the state a test waits for.
const RUN_DEADLINE: Duration = Duration::from_secs(20);
const INSTRUCTIONS: &str = "You help customers. Refunds and deletions may need approval.";

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

fn toml_argv(argv: &[&str]) -> String {
    let parts: Vec<String> = argv.iter().map(|a| toml_str(a)).collect();
    format!("[{}]", parts.join(", "))
}

/// A command tool that appends its standard input (the arguments, one JSON object) as one
/// line to `log`, then prints `out`: one line per execution.
fn appender(log: &Path, out: &str) -> String {
    toml_argv(&[
        "/bin/sh",
        "-c",
        r#"cat >> "$1"; echo >> "$1"; printf '%s' "$2""#,
        "sh",
        log.to_str().unwrap(),
        out,
    ])
}

/// A command tool that writes `started PID` to `marker`; the first time it then sleeps 30 s
/// (long enough to be killed mid-call), later times it prints `job finished` at once.
fn slow_job(marker: &Path) -> String {
    toml_argv(&[
        "/bin/sh",
        "-c",
        r#"n=$(cat "$1" 2>/dev/null | wc -l); echo "started $$" >> "$1"; if [ "$n" -eq 0 ]; then exec sleep 30; fi; printf 'job finished'"#,
        "sh",
        marker.to_str().unwrap(),
    ])
}

/// One test's world: config, data dir, tool logs, the model, the daemon.
struct World {
    ws: Workspace,
    model: ModelServer,
    daemon: Daemon,
    api: Api,
}

impl World {
    fn path(&self, name: &str) -> PathBuf {
        self.ws.dir.path().join(name)
    }

    fn refunds(&self) -> Vec<Value> {
        json_lines(&self.path("refunds.log"))
    }

    fn deletions(&self) -> Vec<Value> {
        json_lines(&self.path("deletions.log"))
    }

    /// SIGKILL the daemon and start a new one on the same config and data directory.
    fn kill_and_restart(&mut self) {
        let old = self.daemon.pid;
        self.daemon.kill();
        self.daemon = self.ws.start();
        assert_ne!(self.daemon.pid, old);
        self.api = self.daemon.api();
    }
}

/// The common config (identities, the `refunds` policy) plus a model `fake` served by `model`,
/// the agents `Support` (every tool, max_turns 6) and `Looper` (lookup only, max_turns 3),
/// and `extra` TOML.
fn config(dir: &Path, model: &ModelServer, extra: &str) -> String {
    let refunds = dir.join("refunds.log");
    let deletions = dir.join("deletions.log");
    let lookups = dir.join("lookups.log");
    let marker = dir.join("slow.marker");
    format!(
        r#"{common}
[models.fake]
kind = "openai"
base_url = {base}
model = "test-model"
# A variable every environment has: its value must arrive as the bearer token.
api_key_env = "PATH"
timeout = "10s"

[[agents]]
name = "Support"
instructions = {instructions}
model = "fake"
tools = ["issue_refund", "delete_user_account", "slow_job", "lookup"]
max_turns = 6

[[agents]]
name = "Looper"
instructions = "Look things up."
model = "fake"
tools = ["lookup"]
max_turns = 3

[[tools]]
name = "issue_refund"
description = "Issue a monetary refund for an order."
parameters = {{ type = "object", properties = {{ order_id = {{ type = "string" }}, amount = {{ type = "number" }} }}, required = ["order_id", "amount"] }}
kind = "command"
command = {refund_cmd}
needs_approval = "refunds"
timeout = "20s"

[[tools]]
name = "delete_user_account"
description = "Delete a user's account."
parameters = {{ type = "object", properties = {{ user_id = {{ type = "string" }} }}, required = ["user_id"] }}
kind = "command"
command = {delete_cmd}
needs_approval = true
timeout = "20s"

[[tools]]
name = "slow_job"
description = "A long job."
parameters = {{ type = "object", properties = {{ job = {{ type = "string" }} }}, required = ["job"] }}
kind = "command"
command = {slow_cmd}
needs_approval = false
timeout = "60s"

[[tools]]
name = "lookup"
description = "Look something up."
parameters = {{ type = "object", properties = {{ q = {{ type = "string" }} }}, required = ["q"] }}
kind = "command"
command = {lookup_cmd}
needs_approval = false
timeout = "20s"

{extra}
"#,
        common = config_text(),
        base = toml_str(&model.base_url()),
        instructions = toml_str(INSTRUCTIONS),
        refund_cmd = appender(&refunds, "refund issued"),
        delete_cmd = appender(&deletions, "account deleted"),
        slow_cmd = slow_job(&marker),
        lookup_cmd = appender(&lookups, "found it"),
    )
}

fn world_with(model: ModelServer, extra: &str) -> World {
    let ws = Workspace::new();
    ws.write_config(&config(ws.dir.path(), &model, extra));
    let daemon = ws.start();
    let api = daemon.api();
    World {
        ws,
        model,
        daemon,
        api,
    }
}

fn world(replies: Vec<Reply>) -> World {
    world_with(ModelServer::scripted(replies), "")
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The lines of a tool's log, each parsed as JSON; empty when the tool never ran.
fn json_lines(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
        Ok(text) => text
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{}: line {l:?} is not JSON: {e}", path.display()))
            })
            .collect(),
    }
}

fn text_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// `POST /v1/runs` as the agent identity; asserts 202 and returns the run id.
async fn start_run(api: &Api, agent: &str, input: &str) -> String {
    let r = api
        .post(
            Some(BOT),
            "/v1/runs",
            &json!({"agent": agent, "input": input}),
        )
        .await;
    assert_eq!(r.status, 202, "start run: {r:?}");
    let id = r.body["run_id"].as_str().expect("run_id").to_string();
    assert_eq!(r.body["run"]["run_id"], id, "{r:?}");
    assert!(r.body["status"].is_string(), "{r:?}");
    id
}

async fn get_run(api: &Api, id: &str) -> Value {
    let r = api.get(Some(ALICE), &format!("/v1/runs/{id}")).await;
    assert_eq!(r.status, 200, "get run: {r:?}");
    r.body
}

/// Long-poll the run until `done(run)` holds, bounded by [`RUN_DEADLINE`].
async fn wait_run(api: &Api, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + RUN_DEADLINE;
    let mut run = get_run(api, id).await;
    loop {
        if done(&run) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} not {what} within {RUN_DEADLINE:?}: {run:#}"
        );
        // `status`: what we saw last, so a change made before this request returns at once.
        let seen = run["status"].as_str().unwrap_or("running").to_string();
        let r = api
            .get(Some(ALICE), &format!("/v1/runs/{id}?wait=1&status={seen}"))
            .await;
        assert_eq!(r.status, 200, "wait run: {r:?}");
        run = r.body;
    }
}

async fn wait_status(api: &Api, id: &str, status: &str) -> Value {
    wait_run(api, id, status, |r| r["status"] == status).await
}

/// The run's pending approval ids, asserting there are `n`.
#[track_caller]
fn pending_ids(run: &Value, n: usize) -> Vec<String> {
    let ids: Vec<String> = run["pending"]
        .as_array()
        .unwrap_or_else(|| panic!("no pending array in {run:#}"))
        .iter()
        .map(|v| v.as_str().expect("an approval id").to_string())
        .collect();
    assert_eq!(ids.len(), n, "pending approvals of {run:#}");
    ids
}

/// Every approval (any status) belonging to the run.
async fn approvals_of_run(api: &Api, run_id: &str) -> Vec<Value> {
    api.list_all("all")
        .await
        .into_iter()
        .filter(|a| a["run_id"] == run_id)
        .collect()
}

/// The `tool` messages of a request to the model, in order.
fn tool_messages(request: &Value) -> Vec<Value> {
    request["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .cloned()
        .collect()
}

fn last_message(request: &Value) -> Value {
    request["messages"]
        .as_array()
        .expect("messages")
        .last()
        .expect("a message")
        .clone()
}

async fn decide(api: &Api, id: &str, body: Value) -> Resp {
    api.post(Some(ALICE), &format!("/v1/approvals/{id}/decision"), &body)
        .await
}

/// Poll (bounded) until the file has `n` lines.
#[track_caller]
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + RUN_DEADLINE;
    loop {
        let lines = text_lines(path);
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} lines, expected {n}",
            path.display(),
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------
// 1–2. Approve and deny
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn approved_call_runs_once_and_its_result_goes_back_to_the_model() {
    let reasoning = "The customer was charged twice for order A1; refunding the duplicate.";
    let w = world(vec![
        Reply::tools(
            Some(reasoning),
            &[call(
                "call_refund_1",
                "issue_refund",
                json!({"order_id": "A1", "amount": 120}),
            )],
        ),
        Reply::text("Refunded $120 for order A1."),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "I was charged twice for order A1").await;

    let run = wait_status(api, &id, "pending_approval").await;
    let [approval_id] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    assert_eq!(run["waiting_on"], "approval of issue_refund", "{run:#}");
    assert_eq!(run["calls"][0]["state"], "waiting", "{run:#}");
    assert_eq!(run["calls"][0]["call_id"], "call_refund_1", "{run:#}");
    assert_eq!(run["turns"], 1, "{run:#}");

    // The approval names the tool, carries the model's text as reasoning, and the arguments.
    let a = api.approval(&approval_id).await;
    assert_eq!(a["status"], "pending", "{a:#}");
    assert_eq!(a["tool"], "issue_refund", "{a:#}");
    assert_eq!(a["run_id"], id, "{a:#}");
    assert_eq!(a["agent"], "Support", "{a:#}");
    assert_eq!(a["reasoning"], reasoning, "{a:#}");
    assert_eq!(a["arguments"], json!({"order_id": "A1", "amount": 120}));
    assert_eq!(a["requested_by"], "billing-bot", "{a:#}");
    assert_eq!(
        a["queue"], "primary",
        "the refunds policy's ask rule: {a:#}"
    );
    // It is in the reviewers' pending list.
    assert!(
        api.list_all("pending")
            .await
            .iter()
            .any(|p| p["id"] == approval_id.as_str())
    );
    // The tool has not run.
    assert!(w.refunds().is_empty(), "the tool ran before approval");

    // What the model was first sent: the model name, instructions, input, tools, key.
    let recorded = w.model.recorded();
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    let first = &recorded[0].body;
    assert_eq!(first["model"], "test-model");
    assert_eq!(
        first["messages"],
        json!([
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": "I was charged twice for order A1"}
        ])
    );
    let tools = first["tools"].as_array().expect("tools offered");
    let names: Vec<&str> = tools
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["issue_refund", "delete_user_account", "slow_job", "lookup"]
    );
    let refund = &tools[0];
    assert_eq!(refund["type"], "function");
    assert_eq!(
        refund["function"]["description"],
        "Issue a monetary refund for an order."
    );
    assert_eq!(
        refund["function"]["parameters"]["required"],
        json!(["order_id", "amount"])
    );
    assert_eq!(
        recorded[0].authorization.as_deref(),
        Some(format!("Bearer {}", std::env::var("PATH").unwrap()).as_str()),
        "the api_key_env value is the bearer token"
    );
    assert_eq!(
        recorded[0].content_type.as_deref(),
        Some("application/json")
    );

    let r = decide(
        api,
        &approval_id,
        json!({"decision": "approve", "reason": "duplicate charge confirmed"}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "approved");

    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Refunded $120 for order A1.", "{run:#}");
    assert_eq!(run["turns"], 2, "{run:#}");
    assert_eq!(run["pending"], json!([]), "{run:#}");
    assert!(run["error"].is_null(), "{run:#}");
    assert!(run["waiting_on"].is_null(), "{run:#}");

    // The tool ran exactly once, with the proposed arguments on its standard input.
    assert_eq!(w.refunds(), vec![json!({"order_id": "A1", "amount": 120})]);

    // The second request carries the whole conversation: the assistant's call and its result.
    let reqs = w.model.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let msgs = reqs[1]["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4, "{msgs:#?}");
    assert_eq!(msgs[2]["role"], "assistant");
    assert_eq!(msgs[2]["content"], reasoning);
    assert_eq!(msgs[2]["tool_calls"][0]["id"], "call_refund_1");
    assert_eq!(msgs[2]["tool_calls"][0]["function"]["name"], "issue_refund");
    let args: Value = serde_json::from_str(
        msgs[2]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"order_id": "A1", "amount": 120}));
    assert_eq!(
        msgs[3],
        json!({"role": "tool", "tool_call_id": "call_refund_1", "content": "refund issued"})
    );
    assert!(
        reqs[1]["tools"].is_array(),
        "tools are offered on every turn"
    );

    // The run's conversation as the API shows it ends with the final answer.
    let conv = run["messages"].as_array().unwrap();
    assert_eq!(
        conv.last().unwrap()["content"],
        "Refunded $120 for order A1."
    );

    // It is listed; and the audit log tells the story, unbroken.
    let list = api.get(Some(ALICE), "/v1/runs").await;
    assert_eq!(list.status, 200, "{list:?}");
    assert!(
        list.body["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["run_id"] == id.as_str() && r["status"] == "completed"),
        "{list:?}"
    );
    let audit = api.audit_all().await;
    assert_chain(&audit);
    let of_run: Vec<&str> = audit
        .iter()
        .filter(|r| r["run_id"] == id.as_str())
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(of_run.first(), Some(&"run.started"), "{of_run:?}");
    assert_eq!(of_run.last(), Some(&"run.ended"), "{of_run:?}");
    let executed: Vec<&Value> = audit
        .iter()
        .filter(|r| r["kind"] == "tool.executed" && r["run_id"] == id.as_str())
        .collect();
    assert_eq!(executed.len(), 1, "{executed:#?}");
    assert_eq!(executed[0]["details"]["tool"], "issue_refund");
    assert_eq!(executed[0]["details"]["ok"], true);
    let decided = records_of(&audit, "approval.decided", &approval_id);
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["actor"], "alice");
}

#[tokio::test]
async fn denied_call_is_not_run_and_the_model_is_told_why() {
    let w = world(vec![
        // No text with the call: the reviewer is told so.
        Reply::tools(
            None,
            &[call(
                "call_del_7",
                "delete_user_account",
                json!({"user_id": "u-7"}),
            )],
        ),
        Reply::text("I could not delete the account: a ticket is needed."),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "Delete my account, I am u-7").await;
    let run = wait_status(api, &id, "pending_approval").await;
    let [approval_id] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    let a = api.approval(&approval_id).await;
    assert_eq!(a["tool"], "delete_user_account");
    assert_eq!(a["reasoning"], "no reasoning given", "{a:#}");
    assert_eq!(a["queue"], "default", "{a:#}");

    let r = decide(
        api,
        &approval_id,
        json!({"decision": "deny", "reason": "needs a support ticket"}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "denied");

    let run = wait_status(api, &id, "completed").await;
    assert_eq!(
        run["output"],
        "I could not delete the account: a ticket is needed."
    );
    let reqs = w.model.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(
        last_message(&reqs[1]),
        json!({
            "role": "tool",
            "tool_call_id": "call_del_7",
            "content": "The reviewer denied this action: needs a support ticket"
        })
    );
    // The assistant message with null content is sent back as such.
    let msgs = reqs[1]["messages"].as_array().unwrap();
    assert_eq!(msgs[msgs.len() - 2]["role"], "assistant");
    assert!(msgs[msgs.len() - 2]["content"].is_null(), "{msgs:#?}");
    assert!(
        !w.path("deletions.log").exists(),
        "a denied tool must not run"
    );
    // A second decision is refused and changes nothing.
    let again = decide(api, &approval_id, json!({"decision": "approve"})).await;
    again.expect_error(409);
    assert!(!w.path("deletions.log").exists());
    assert_eq!(w.model.count(), 2);
}

// ---------------------------------------------------------------------------------------
// 3. Policy decides
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn policy_approves_small_refunds_without_a_reviewer() {
    let w = world(vec![
        Reply::tools(
            Some("Small refund."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "B2", "amount": 20}),
            )],
        ),
        Reply::text("Refunded $20."),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "Refund $20 on B2").await;
    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Refunded $20.");
    assert_eq!(w.refunds(), vec![json!({"order_id": "B2", "amount": 20})]);
    assert_eq!(
        tool_messages(&w.model.requests()[1]),
        vec![json!({"role": "tool", "tool_call_id": "c1", "content": "refund issued"})]
    );

    let approvals = approvals_of_run(api, &id).await;
    assert_eq!(approvals.len(), 1, "{approvals:#?}");
    let a = &approvals[0];
    assert_eq!(a["status"], "approved", "{a:#}");
    assert_eq!(a["decision"]["by"], "policy:refunds", "{a:#}");
    assert_eq!(a["policy"]["name"], "refunds", "{a:#}");
    // No reviewer ever saw it pending.
    let audit = api.audit_all().await;
    let aid = a["id"].as_str().unwrap();
    assert!(records_of(&audit, "approval.created", aid).is_empty());
    let decided = records_of(&audit, "approval.decided", aid);
    assert_eq!(decided.len(), 1, "{audit:#?}");
    assert_eq!(decided[0]["actor"], "policy:refunds");
    // The run never paused.
    assert!(
        !audit
            .iter()
            .filter(|r| r["run_id"] == id.as_str())
            .any(|r| r["details"]["run"]["status"] == "pending_approval"),
        "the run paused although the policy approved"
    );
}

// ---------------------------------------------------------------------------------------
// 4. Parallel calls
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn parallel_calls_one_approved_one_denied_results_in_call_order() {
    let w = world(vec![
        Reply::tools(
            Some("Delete the old account, then refund the order."),
            &[
                call("call_a", "delete_user_account", json!({"user_id": "old"})),
                call(
                    "call_b",
                    "issue_refund",
                    json!({"order_id": "C3", "amount": 500}),
                ),
            ],
        ),
        Reply::text("Refunded C3; the account stays."),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "Close old account and refund C3").await;
    let run = wait_status(api, &id, "pending_approval").await;
    let pending = pending_ids(&run, 2);
    let (del_id, refund_id) = (pending[0].clone(), pending[1].clone());
    assert_eq!(api.approval(&del_id).await["tool"], "delete_user_account");
    assert_eq!(api.approval(&refund_id).await["tool"], "issue_refund");
    assert_eq!(
        run["waiting_on"],
        "approval of delete_user_account, approval of issue_refund"
    );

    // Decide the second call first: the run still waits on the first.
    let r = decide(api, &refund_id, json!({"decision": "approve"})).await;
    assert_eq!(r.status, 200, "{r:?}");
    let run = get_run(api, &id).await;
    assert_eq!(run["status"], "pending_approval", "{run:#}");
    assert_eq!(run["pending"], json!([del_id]), "{run:#}");
    assert_eq!(w.model.count(), 1);

    let r = decide(
        api,
        &del_id,
        json!({"decision": "deny", "reason": "keep it"}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Refunded C3; the account stays.");

    assert_eq!(w.refunds(), vec![json!({"order_id": "C3", "amount": 500})]);
    assert!(w.deletions().is_empty(), "the denied call ran");
    let reqs = w.model.requests();
    assert_eq!(reqs.len(), 2);
    // Both results, in the model's call order (not decision or completion order), right
    // after the assistant message that made the calls.
    let msgs = reqs[1]["messages"].as_array().unwrap();
    let n = msgs.len();
    assert_eq!(msgs[n - 3]["role"], "assistant");
    assert_eq!(
        msgs[n - 2..],
        [
            json!({"role": "tool", "tool_call_id": "call_a", "content": "The reviewer denied this action: keep it"}),
            json!({"role": "tool", "tool_call_id": "call_b", "content": "refund issued"}),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// 5. Sticky grant
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn approving_for_the_run_grants_the_tool_for_the_rest_of_the_run() {
    let w = world(vec![
        Reply::tools(
            Some("First refund."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "D1", "amount": 100}),
            )],
        ),
        Reply::tools(
            Some("Second refund."),
            &[call(
                "c2",
                "issue_refund",
                json!({"order_id": "D2", "amount": 300}),
            )],
        ),
        Reply::text("Both refunded."),
        // The second run, started after: no grant there.
        Reply::tools(
            Some("Another run's refund."),
            &[call(
                "c3",
                "issue_refund",
                json!({"order_id": "D3", "amount": 300}),
            )],
        ),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "Refund D1 and D2").await;
    let run = wait_status(api, &id, "pending_approval").await;
    let [first] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    let r = decide(
        api,
        &first,
        json!({"decision": "approve", "scope": "run", "reason": "both ok"}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["decision"]["scope"], "run", "{r:?}");

    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Both refunded.");
    assert_eq!(run["turns"], 3);
    assert_eq!(
        w.refunds(),
        vec![
            json!({"order_id": "D1", "amount": 100}),
            json!({"order_id": "D2", "amount": 300})
        ]
    );
    let approvals = approvals_of_run(api, &id).await;
    assert_eq!(approvals.len(), 2, "{approvals:#?}");
    let second = approvals
        .iter()
        .find(|a| a["id"] != first.as_str())
        .unwrap();
    assert_eq!(second["status"], "approved", "{second:#}");
    assert_eq!(second["decision"]["by"], "grant:alice", "{second:#}");
    assert_eq!(second["arguments"]["order_id"], "D2");
    // The grant ended with the run (DESIGN §9).
    let grants = api.get(Some(ALICE), "/v1/grants").await;
    assert_eq!(grants.body, json!({"grants": []}), "{grants:?}");
    let audit = api.audit_all().await;
    let decided = records_of(&audit, "approval.decided", second["id"].as_str().unwrap());
    assert_eq!(decided.len(), 1, "the grant's decision is audited");
    assert_eq!(decided[0]["actor"], "grant:alice");
    assert!(
        records_of(&audit, "approval.created", second["id"].as_str().unwrap()).is_empty(),
        "a granted call never waits for a reviewer"
    );
    assert_eq!(
        tool_messages(&w.model.requests()[2]),
        vec![
            json!({"role": "tool", "tool_call_id": "c1", "content": "refund issued"}),
            json!({"role": "tool", "tool_call_id": "c2", "content": "refund issued"}),
        ]
    );

    // The grant is for that run only: another run's refund asks again.
    let other = start_run(api, "Support", "Refund D3").await;
    let run = wait_status(api, &other, "pending_approval").await;
    let [p] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    assert_eq!(api.approval(&p).await["status"], "pending");
}

// ---------------------------------------------------------------------------------------
// 6. Invalid arguments
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_arguments_go_back_to_the_model_and_never_become_approvals() {
    let w = world(vec![
        Reply::tools(
            Some("Refunding."),
            &[
                call(
                    "bad_type",
                    "issue_refund",
                    json!({"order_id": "E1", "amount": "ten"}),
                ),
                call("missing", "issue_refund", json!({"order_id": "E1"})),
                raw_call("not_json", "issue_refund", "{\"order_id\": \"E1\", amount"),
                call("no_such_tool", "wire_money", json!({"to": "me"})),
            ],
        ),
        Reply::text("Sorry, I could not do it."),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "Refund E1").await;
    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Sorry, I could not do it.");
    assert!(
        approvals_of_run(api, &id).await.is_empty(),
        "an invalid call became an approval"
    );
    assert!(w.refunds().is_empty());
    let reqs = w.model.requests();
    assert_eq!(reqs.len(), 2);
    let tools = tool_messages(&reqs[1]);
    let ids: Vec<&str> = tools
        .iter()
        .map(|m| m["tool_call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bad_type", "missing", "not_json", "no_such_tool"]);
    let text = |i: usize| tools[i]["content"].as_str().unwrap().to_string();
    assert!(
        text(0).contains("amount") && text(0).contains("number"),
        "{}",
        text(0)
    );
    assert!(text(1).contains("amount"), "{}", text(1));
    assert!(text(2).contains("not valid JSON"), "{}", text(2));
    assert!(text(3).contains("wire_money"), "{}", text(3));
    for i in 0..3 {
        assert!(text(i).contains("The call was not run"), "{}", text(i));
    }
    // The audit log never recorded an approval for the run.
    let audit = api.audit_all().await;
    assert!(
        !audit
            .iter()
            .any(|r| r["kind"].as_str().unwrap().starts_with("approval.")
                && r["details"]["approval"]["run_id"] == id.as_str()),
        "approval records for an invalid call"
    );
}

// ---------------------------------------------------------------------------------------
// Policy denial, expiry, edited arguments, API checks
// ---------------------------------------------------------------------------------------

/// An agent `Payer` with `wire_money`, under policy `wires`: over $1000 is denied, anything
/// else asks with a 1 s timeout.
fn wires_config(dir: &Path) -> String {
    format!(
        r#"
[[agents]]
name = "Payer"
model = "fake"
tools = ["wire_money"]

[[tools]]
name = "wire_money"
description = "Wire money."
parameters = {{ type = "object", properties = {{ amount = {{ type = "number" }} }}, required = ["amount"] }}
kind = "command"
command = {cmd}
needs_approval = "wires"

[[policies]]
name = "wires"
tools = ["wire_money"]
[[policies.rules]]
when = "args.amount > 1000"
action = "deny"
reason = "wires over $1000 are never allowed"
[[policies.rules]]
action = "ask"
timeout = "3s"
"#,
        cmd = appender(&dir.join("wires.log"), "wired"),
    )
}

#[tokio::test]
async fn policy_denials_and_expiries_go_back_to_the_model() {
    let model = ModelServer::scripted(vec![
        Reply::tools(
            Some("Two wires."),
            &[
                call("big", "wire_money", json!({"amount": 5000})),
                call("small", "wire_money", json!({"amount": 10})),
            ],
        ),
        Reply::text("Neither wire went out."),
    ]);
    let ws = Workspace::new();
    ws.write_config(&config(ws.dir.path(), &model, &wires_config(ws.dir.path())));
    let d = ws.start();
    let api = d.api();
    let id = start_run(&api, "Payer", "Wire 5000 and 10").await;
    let run = wait_status(&api, &id, "pending_approval").await;
    // Only the small wire waits; the big one was denied by the policy at once.
    let [small] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    assert_eq!(run["calls"][0]["state"], "denied", "{run:#}");
    assert_eq!(run["calls"][1]["state"], "waiting", "{run:#}");
    // Nobody decides: it expires after 3 s and the run goes on.
    let run = wait_status(&api, &id, "completed").await;
    assert_eq!(run["output"], "Neither wire went out.");
    let a = api.approval(&small).await;
    assert_eq!(a["status"], "expired", "{a:#}");
    assert_eq!(a["decision"]["by"], "timeout", "{a:#}");
    assert!(!ws.dir.path().join("wires.log").exists(), "a wire went out");
    let tools = tool_messages(&model.requests()[1]);
    assert_eq!(tools.len(), 2, "{tools:#?}");
    assert_eq!(
        tools[0],
        json!({
            "role": "tool",
            "tool_call_id": "big",
            "content": "The policy denied this action: wires over $1000 are never allowed"
        })
    );
    assert_eq!(tools[1]["tool_call_id"], "small");
    let expired = tools[1]["content"].as_str().unwrap();
    assert!(
        expired.starts_with("No reviewer decided in time, so this action was not taken: ")
            && expired.contains("approval timed out"),
        "{expired}"
    );
    let approvals = approvals_of_run(&api, &id).await;
    let big = approvals
        .iter()
        .find(|a| a["arguments"]["amount"] == 5000)
        .expect("the denied call is recorded");
    assert_eq!(big["status"], "denied", "{big:#}");
    assert_eq!(big["decision"]["by"], "policy:wires", "{big:#}");
}

#[tokio::test]
async fn a_reviewer_edit_is_checked_against_the_schema_and_is_what_runs() {
    let w = world(vec![
        Reply::tools(
            Some("Refund in full."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "M1", "amount": 120}),
            )],
        ),
        Reply::text("Refunded part of M1."),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "Refund M1").await;
    let run = wait_status(api, &id, "pending_approval").await;
    let [aid] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    assert_eq!(api.approval(&aid).await["editable"], true);

    // An edit that breaks the tool's schema is refused and changes nothing.
    let bad = decide(
        api,
        &aid,
        json!({"decision": "approve", "arguments": {"order_id": "M1", "amount": "sixty"}}),
    )
    .await;
    bad.expect_error(422);
    assert!(bad.message().contains("amount"), "{bad:?}");
    assert_eq!(api.approval(&aid).await["status"], "pending");
    assert_eq!(get_run(api, &id).await["status"], "pending_approval");

    let edited = json!({"order_id": "M1", "amount": 60});
    let r = decide(
        api,
        &aid,
        json!({"decision": "approve", "arguments": edited}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Refunded part of M1.");
    // The edit ran, not the proposal; the approval keeps both.
    assert_eq!(w.refunds(), vec![edited.clone()]);
    // The approval's arguments are what ran; the call as proposed is kept beside it.
    let a = api.approval(&aid).await;
    assert_eq!(a["arguments"], edited, "{a:#}");
    assert_eq!(
        a["requested_arguments"],
        json!({"order_id": "M1", "amount": 120})
    );
    assert_eq!(
        a["arguments_sha256"],
        sha256_hex(r#"{"amount":60,"order_id":"M1"}"#)
    );
    assert_eq!(a["decision"]["arguments"], edited, "{a:#}");
    // The model is told its call was changed, so it cannot report the proposal as done.
    let tools = tool_messages(&w.model.requests()[1]);
    let told = tools[0]["content"].as_str().unwrap_or("");
    assert!(
        told.starts_with(
            r#"The reviewer changed the arguments to {"amount":60,"order_id":"M1"} before running it: "#
        ),
        "{told}"
    );
}

#[tokio::test]
async fn run_api_refuses_what_it_should() {
    let w = world(vec![Reply::text("Hello.")]);
    let api = &w.api;
    let r = api
        .post(
            Some(BOT),
            "/v1/runs",
            &json!({"agent": "Nobody", "input": "hi"}),
        )
        .await;
    r.expect_error(422);
    assert!(r.message().contains("agent: no agent \"Nobody\""), "{r:?}");
    api.post(
        Some(BOT),
        "/v1/runs",
        &json!({"agent": "Support", "input": "  "}),
    )
    .await
    .expect_error(422);
    api.post(Some(BOT), "/v1/runs", &json!({"agent": "Support"}))
        .await
        .expect_error(422);
    // A reviewer is not an agent: it cannot start runs.
    api.post(
        Some(ALICE),
        "/v1/runs",
        &json!({"agent": "Support", "input": "hi"}),
    )
    .await
    .expect_error(403);
    api.post(
        None,
        "/v1/runs",
        &json!({"agent": "Support", "input": "hi"}),
    )
    .await
    .expect_error(401);
    assert_eq!(w.model.count(), 0);

    let id = start_run(api, "Support", "Say hello").await;
    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Hello.");
    // The agent that started it reads it; another agent does not see it at all.
    let own = api.get(Some(BOT), &format!("/v1/runs/{id}")).await;
    assert_eq!(own.status, 200, "{own:?}");
    api.get(Some(BOT2), &format!("/v1/runs/{id}"))
        .await
        .expect_error(404);
    let list = api.get(Some(BOT2), "/v1/runs").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["runs"], json!([]), "{list:?}");
    api.get(Some(ALICE), "/v1/runs/not-a-run")
        .await
        .expect_error(404);
}

// ---------------------------------------------------------------------------------------
// 7–8. kill -9
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn kill_while_paused_then_decide_after_restart_runs_the_tool_once() {
    let mut w = world(vec![
        Reply::tools(
            Some("Refund it."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "F1", "amount": 99}),
            )],
        ),
        Reply::text("Refunded F1 after the restart."),
    ]);
    let id = start_run(&w.api, "Support", "Refund F1").await;
    let run = wait_status(&w.api, &id, "pending_approval").await;
    let [approval_id] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();

    w.kill_and_restart();
    let api = w.api.clone();
    let run = get_run(&api, &id).await;
    assert_eq!(run["status"], "pending_approval", "{run:#}");
    assert_eq!(run["pending"], json!([approval_id]), "{run:#}");
    assert_eq!(api.approval(&approval_id).await["status"], "pending");
    assert!(w.refunds().is_empty());
    assert_eq!(
        w.model.count(),
        1,
        "the model is not asked again for a paused turn"
    );

    let r = decide(&api, &approval_id, json!({"decision": "approve"})).await;
    assert_eq!(r.status, 200, "{r:?}");
    let run = wait_status(&api, &id, "completed").await;
    assert_eq!(run["output"], "Refunded F1 after the restart.");
    assert_eq!(w.refunds().len(), 1, "the tool ran exactly once");
    assert_eq!(w.model.count(), 2);
    assert_eq!(
        last_message(&w.model.requests()[1]),
        json!({"role": "tool", "tool_call_id": "c1", "content": "refund issued"})
    );
    assert_chain(&api.audit_all().await);
}

/// Start a run whose only call is `slow_job`, wait until the tool is running (its marker
/// written), SIGKILL the daemon (and the orphaned tool process), restart. Returns the run
/// id and the `outcome_unknown` approval's id.
async fn killed_mid_tool(w: &mut World) -> (String, String) {
    let id = start_run(&w.api, "Support", "Run the nightly job").await;
    let marker = w.path("slow.marker");
    let lines = wait_lines(&marker, 1);
    let run = get_run(&w.api, &id).await;
    assert_eq!(run["status"], "running", "{run:#}");
    assert_eq!(run["calls"][0]["state"], "executing", "{run:#}");
    assert_eq!(run["waiting_on"], "tool slow_job", "{run:#}");

    w.daemon.kill();
    // The tool runs in a process group of its own and outlives a SIGKILLed daemon: end it
    // (it is `exec sleep 30`, with the PID it wrote).
    let pid: i32 = lines[0]
        .strip_prefix("started ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("marker line {:?}", lines[0]));
    // SAFETY: kill(2) on the sleep our test's tool started; it takes no pointers.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    w.daemon = w.ws.start();
    w.api = w.daemon.api();

    let run = wait_status(&w.api, &id, "pending_approval").await;
    assert_eq!(run["calls"][0]["state"], "outcome_unknown", "{run:#}");
    assert_eq!(run["calls"][0]["call_id"], "job_1", "{run:#}");
    let [approval_id] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    // The restarted daemon's log says so (issue 11: recoveries are not silent). The line is
    // written before the API answers; the reader of its stderr may still be catching up.
    let said = format!(
        "slow_job was running when gatehouse stopped; its outcome is unknown, so it will not \
         run again unless a reviewer approves {approval_id}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !w.daemon.stderr().contains(&said) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            w.daemon.stderr()
        );
        tokio::task::yield_now().await;
    }
    let a = w.api.approval(&approval_id).await;
    assert_eq!(a["outcome_unknown"], true, "{a:#}");
    assert_eq!(a["status"], "pending", "{a:#}");
    assert_eq!(a["tool"], "slow_job", "{a:#}");
    assert_eq!(a["run_id"], id, "{a:#}");
    assert_eq!(a["arguments"], json!({"job": "nightly"}), "{a:#}");
    assert!(
        a["reasoning"].as_str().unwrap().contains("OUTCOME UNKNOWN"),
        "{a:#}"
    );
    // Never re-run on its own.
    assert_eq!(
        text_lines(&marker).len(),
        1,
        "the tool was re-run at restart"
    );
    assert_eq!(w.model.count(), 1);
    (id, approval_id)
}

#[tokio::test]
async fn an_approval_that_fell_due_while_the_daemon_was_down_expires_and_the_run_goes_on() {
    let model = ModelServer::scripted(vec![
        Reply::tools(
            Some("A wire."),
            &[call("w1", "wire_money", json!({"amount": 10}))],
        ),
        Reply::text("The wire timed out."),
    ]);
    let ws = Workspace::new();
    ws.write_config(&config(ws.dir.path(), &model, &wires_config(ws.dir.path())));
    let mut d = ws.start();
    let id = start_run(&d.api(), "Payer", "Wire 10").await;
    let run = wait_status(&d.api(), &id, "pending_approval").await;
    let [aid] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    let expires_at = d.api().approval(&aid).await["expires_at"].clone();
    d.kill();
    // Time must really pass (the deadline is wall-clock and persisted): down until just past
    // the approval's `expires_at` (1 s after its creation).
    tokio::time::sleep(waiting::until_past(&expires_at, Duration::from_millis(100))).await;
    let d = ws.start();
    let api = d.api();
    let run = wait_status(&api, &id, "completed").await;
    assert_eq!(run["output"], "The wire timed out.");
    assert_eq!(api.approval(&aid).await["status"], "expired");
    assert!(!ws.dir.path().join("wires.log").exists());
    let m = last_message(&model.requests()[1]);
    assert_eq!(m["tool_call_id"], "w1");
    assert!(
        m["content"]
            .as_str()
            .unwrap()
            .starts_with("No reviewer decided in time"),
        "{m}"
    );
}

fn slow_job_script() -> Vec<Reply> {
    vec![
        Reply::tools(
            Some("Starting the job."),
            &[call("job_1", "slow_job", json!({"job": "nightly"}))],
        ),
        Reply::text("Reported on the job."),
    ]
}

#[tokio::test]
async fn kill_while_a_tool_runs_then_deny_reports_failure_to_the_model() {
    let mut w = world(slow_job_script());
    let (id, approval_id) = killed_mid_tool(&mut w).await;
    let r = decide(
        &w.api,
        &approval_id,
        json!({"decision": "deny", "reason": "it already ran"}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let run = wait_status(&w.api, &id, "completed").await;
    assert_eq!(run["output"], "Reported on the job.");
    assert_eq!(
        text_lines(&w.path("slow.marker")).len(),
        1,
        "a denied retry ran"
    );
    let reqs = w.model.requests();
    assert_eq!(reqs.len(), 2);
    let m = last_message(&reqs[1]);
    assert_eq!(m["role"], "tool");
    assert_eq!(m["tool_call_id"], "job_1");
    let content = m["content"].as_str().unwrap();
    assert!(
        content.contains("outcome of this call is unknown") && content.contains("it already ran"),
        "{content}"
    );
}

#[tokio::test]
async fn kill_while_a_tool_runs_then_approve_runs_it_again() {
    let mut w = world(slow_job_script());
    let (id, approval_id) = killed_mid_tool(&mut w).await;
    let r = decide(&w.api, &approval_id, json!({"decision": "approve"})).await;
    assert_eq!(r.status, 200, "{r:?}");
    let run = wait_status(&w.api, &id, "completed").await;
    assert_eq!(run["output"], "Reported on the job.");
    assert_eq!(
        text_lines(&w.path("slow.marker")).len(),
        2,
        "run again once"
    );
    assert_eq!(
        last_message(&w.model.requests()[1]),
        json!({"role": "tool", "tool_call_id": "job_1", "content": "job finished"})
    );
}

#[tokio::test]
async fn kill_while_the_model_thinks_asks_it_again_after_restart() {
    let mut replies = vec![
        // Never delivered: the daemon is killed while the model takes its time.
        Reply::text("lost"),
        Reply::tools(
            Some("Small refund."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "N1", "amount": 5}),
            )],
        ),
        Reply::text("Refunded N1."),
    ]
    .into_iter();
    // The first answer is held until after the kill: the model is still thinking when the
    // daemon dies.
    let thinking = Gate::new();
    let model = ModelServer::start({
        let thinking = thinking.clone();
        move |n, _| {
            let reply = replies.next().expect("a scripted reply");
            if n == 0 { reply.held(&thinking) } else { reply }
        }
    });
    let mut w = world_with(model, "");
    let id = start_run(&w.api, "Support", "Refund N1").await;
    w.model.wait_requests(1, RUN_DEADLINE);
    w.kill_and_restart();
    // Its answer now goes to a connection nobody reads.
    thinking.open();
    let run = wait_status(&w.api, &id, "completed").await;
    assert_eq!(run["output"], "Refunded N1.");
    assert_eq!(run["turns"], 2, "{run:#}");
    let reqs = w.model.requests();
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert_eq!(
        reqs[0], reqs[1],
        "the cut-short turn is asked again, as it was"
    );
    assert_eq!(w.refunds().len(), 1);
}

// ---------------------------------------------------------------------------------------
// 9. Model errors
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn model_errors_fail_runs_clearly_and_transient_ones_are_retried() {
    let auth = ModelServer::scripted(vec![Reply::error(
        401,
        "Incorrect API key provided: sk-...abc.",
        "invalid_api_key",
    )]);
    let flaky = ModelServer::scripted(vec![
        Reply::error(500, "The server had an error", "server_error"),
        Reply::text("Fine after a retry."),
    ]);
    let garbage = ModelServer::scripted(vec![Reply::raw(
        200,
        "application/json",
        "<html>this is not a completion</html>",
    )]);
    let down = ModelServer::start(|_, _| {
        Reply::error(503, "overloaded", "server_error").with_header("retry-after", "0")
    });
    let mut extra = String::new();
    for (name, server) in [
        ("auth", &auth),
        ("flaky", &flaky),
        ("garbage", &garbage),
        ("down", &down),
    ] {
        extra.push_str(&format!(
            "[models.{name}]\nkind = \"openai\"\nbase_url = {}\nmodel = \"m-{name}\"\ntimeout = \"10s\"\n\n\
             [[agents]]\nname = \"{name}-agent\"\nmodel = \"{name}\"\ntools = [\"lookup\"]\n\n",
            toml_str(&server.base_url())
        ));
    }
    let w = world_with(ModelServer::scripted(vec![]), &extra);
    let api = &w.api;
    let started = Instant::now();
    let auth_run = start_run(api, "auth-agent", "hello").await;
    let flaky_run = start_run(api, "flaky-agent", "hello").await;
    let garbage_run = start_run(api, "garbage-agent", "hello").await;
    let down_run = start_run(api, "down-agent", "hello").await;

    let run = wait_run(api, &auth_run, "finished", |r| r["status"] != "running").await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("authentication"), "{error}");
    assert!(error.contains("401"), "{error}");
    assert!(error.contains("Incorrect API key"), "{error}");
    assert_eq!(auth.count(), 1, "a 401 is not retried");

    let run = wait_run(api, &flaky_run, "finished", |r| r["status"] != "running").await;
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(run["output"], "Fine after a retry.");
    let reqs = flaky.requests();
    assert_eq!(reqs.len(), 2, "one retry after the 500");
    assert_eq!(reqs[0], reqs[1], "the retry sends the same request");

    let run = wait_run(api, &garbage_run, "finished", |r| r["status"] != "running").await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("malformed"), "{error}");
    assert_eq!(garbage.count(), 1, "a malformed answer is not retried");

    let run = wait_run(api, &down_run, "finished", |r| r["status"] != "running").await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("after 4 attempts") && error.contains("503"),
        "{error}"
    );
    assert_eq!(down.count(), 4);
    // Retry-After: 0 is honoured, so four attempts take no backoff time to speak of.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    // Failures are run ends in the audit log, with the error.
    let audit = api.audit_all().await;
    let ended: Vec<&Value> = audit
        .iter()
        .filter(|r| r["kind"] == "run.ended" && r["run_id"] == auth_run.as_str())
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["details"]["run"]["status"], "failed");
}

// ---------------------------------------------------------------------------------------
// 10. Cancel
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn cancelling_a_paused_run_cancels_its_approval() {
    let w = world(vec![Reply::tools(
        Some("Refund."),
        &[call(
            "c1",
            "issue_refund",
            json!({"order_id": "G1", "amount": 700}),
        )],
    )]);
    let api = &w.api;
    let id = start_run(api, "Support", "Refund G1").await;
    let run = wait_status(api, &id, "pending_approval").await;
    let [approval_id] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();

    // Another agent may not see (or cancel) it.
    let r = api
        .post(Some(BOT2), &format!("/v1/runs/{id}/cancel"), &json!({}))
        .await;
    r.expect_error(404);
    // The agent that started it may.
    let r = api
        .post(Some(BOT), &format!("/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "cancelled", "{r:?}");

    let run = get_run(api, &id).await;
    assert_eq!(run["status"], "cancelled", "{run:#}");
    assert_eq!(run["pending"], json!([]), "{run:#}");
    assert!(run["waiting_on"].is_null(), "{run:#}");
    let a = api.approval(&approval_id).await;
    assert_eq!(a["status"], "cancelled", "{a:#}");
    assert_eq!(a["decision"]["by"], "billing-bot", "{a:#}");
    assert!(
        !api.list_all("pending")
            .await
            .iter()
            .any(|p| p["id"] == approval_id.as_str())
    );

    let again = api
        .post(Some(ALICE), &format!("/v1/runs/{id}/cancel"), &json!({}))
        .await;
    again.expect_error(409);
    let late = decide(api, &approval_id, json!({"decision": "approve"})).await;
    late.expect_error(409);
    assert!(w.refunds().is_empty());
    assert_eq!(w.model.count(), 1);
    let unknown = api
        .post(
            Some(ALICE),
            "/v1/runs/00000000-0000-7000-8000-000000000000/cancel",
            &json!({}),
        )
        .await;
    unknown.expect_error(404);
}

// ---------------------------------------------------------------------------------------
// 11. CLI
// ---------------------------------------------------------------------------------------

fn gatehouse_run(url: &str, agent: &str, input: &str) -> std::process::Command {
    let mut c = command();
    c.args(["run", agent, input, "--wait", "--connect", url])
        .env("GATEHOUSE_TOKEN", BOT);
    c
}

#[test]
fn cli_run_wait_prints_the_output_and_exits_by_outcome() {
    let failing = ModelServer::scripted(vec![Reply::error(401, "bad key", "invalid_api_key")]);
    let extra = format!(
        "[models.broken]\nkind = \"openai\"\nbase_url = {}\nmodel = \"m\"\n\n\
         [[agents]]\nname = \"Broken\"\nmodel = \"broken\"\ntools = []\n",
        toml_str(&failing.base_url())
    );
    let w = world_with(
        ModelServer::scripted(vec![
            // The auto-approved run.
            Reply::tools(
                Some("Small refund."),
                &[call(
                    "c1",
                    "issue_refund",
                    json!({"order_id": "H1", "amount": 10}),
                )],
            ),
            Reply::text("Refunded $10 for H1."),
            // The run that pauses for a reviewer.
            Reply::tools(
                Some("Big refund."),
                &[call(
                    "c2",
                    "issue_refund",
                    json!({"order_id": "H2", "amount": 900}),
                )],
            ),
            Reply::text("Refunded $900 for H2."),
        ]),
        &extra,
    );
    let url = w.daemon.url.clone();

    let done = run(gatehouse_run(&url, "Support", "Refund H1"));
    assert_eq!(done.code, Some(0), "{done:?}");
    assert!(done.stdout.contains("Refunded $10 for H1."), "{done:?}");
    assert!(done.stdout.contains("completed"), "{done:?}");
    assert_eq!(w.refunds().len(), 1);

    let failed = run(gatehouse_run(&url, "Broken", "hello"));
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(
        failed.stderr.contains("failed") && failed.stderr.contains("authentication"),
        "{failed:?}"
    );

    // A run that pauses: `--wait` waits through the approval, and exits 0 once it completes.
    let (mut child, lines) = spawn_lines(
        gatehouse_run(&url, "Support", "Refund H2"),
        &w.path("cli.stderr"),
    );
    let approval = block_on(waiting::approval_with_status(
        &w.api,
        "pending",
        RUN_DEADLINE,
    ));
    assert_eq!(approval["tool"], "issue_refund", "{approval}");
    let approval = approval["id"].as_str().unwrap().to_string();
    let r = block_on(decide(&w.api, &approval, json!({"decision": "approve"})));
    assert_eq!(r.status, 200, "{r:?}");
    let status = wait_bounded(&mut child, PROCESS_TIMEOUT).expect("gatehouse run --wait ended");
    let out = lines.rest();
    let err = std::fs::read_to_string(w.path("cli.stderr")).unwrap_or_default();
    assert!(status.success(), "{status:?}: {out}\nstderr: {err}");
    assert!(out.contains("Refunded $900 for H2."), "{out}");
    assert_eq!(w.refunds().len(), 2);

    // `runs list` shows the three runs; `runs show` one of them as JSON.
    let mut c = command();
    c.args(["runs", "list", "--connect", &url])
        .env("GATEHOUSE_TOKEN", ALICE);
    let list = run(c);
    assert_eq!(list.code, Some(0), "{list:?}");
    let mut statuses: Vec<&str> = list
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["completed", "completed", "failed"], "{list:?}");
    let run_id = out
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id in {out}"))
        .to_string();
    assert!(list.stdout.contains(&run_id), "{list:?}");
    let mut c = command();
    c.args(["runs", "show", &run_id, "--connect", &url])
        .env("GATEHOUSE_TOKEN", ALICE);
    let show = run(c);
    assert_eq!(show.code, Some(0), "{show:?}");
    let shown: Value = serde_json::from_str(&show.stdout).expect("runs show prints JSON");
    assert_eq!(shown["run_id"], run_id.as_str());
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["output"], "Refunded $900 for H2.");
}

/// A child's standard output, line by line, read on a thread of its own.
struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    seen: String,
}

impl Lines {
    /// The next line, or `None` if none comes within `limit`.
    fn next(&mut self, limit: Duration) -> Option<String> {
        let line = self.rx.recv_timeout(limit).ok()?;
        self.seen.push_str(&line);
        self.seen.push('\n');
        Some(line)
    }

    /// Everything the child printed, once it has ended.
    fn rest(mut self) -> String {
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        self.seen
    }
}

/// Spawn `cmd` with its standard error going to the file `stderr`.
fn spawn_lines(mut cmd: std::process::Command, stderr: &Path) -> (std::process::Child, Lines) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).expect("a stderr file"))
        .spawn()
        .expect("spawn gatehouse");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (
        child,
        Lines {
            rx,
            reader: Some(reader),
            seen: String::new(),
        },
    )
}

/// `gatehouse run --wait` should say promptly that the run paused, and on which approval:
/// that is what its user needs in order to get a reviewer to decide.
///
/// To hit the case deterministically, the CLI is held (SIGSTOP) from the moment the model is
/// asked until the run has paused, as a loaded machine or a slow link would; this is how the
/// failure first showed up, unprovoked, when the whole file ran in parallel.
#[test]
fn cli_run_wait_reports_a_pause_promptly() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI32, Ordering};
    let cli_pid = Arc::new(AtomicI32::new(0));
    let pid = cli_pid.clone();
    let mut replies = vec![
        Reply::tools(
            Some("Big refund."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "K1", "amount": 900}),
            )],
        ),
        Reply::text("Refunded $900 for K1."),
    ]
    .into_iter();
    let model = ModelServer::start(move |n, _| {
        let p = pid.load(Ordering::SeqCst);
        if n == 0 && p > 0 {
            // SAFETY: kill(2) with SIGSTOP on the CLI process this test spawned.
            unsafe {
                libc::kill(p, libc::SIGSTOP);
            }
        }
        replies.next().expect("a scripted reply")
    });
    let w = world_with(model, "");
    let (mut child, mut lines) = spawn_lines(
        gatehouse_run(&w.daemon.url, "Support", "Refund K1"),
        &w.path("cli.stderr"),
    );
    cli_pid.store(child.id() as i32, Ordering::SeqCst);
    let run = block_on(async {
        let deadline = Instant::now() + RUN_DEADLINE;
        loop {
            let runs = w.api.get(Some(ALICE), "/v1/runs").await;
            if let Some(r) = runs.body["runs"]
                .as_array()
                .and_then(|rs| rs.iter().find(|r| r["status"] == "pending_approval"))
            {
                return r.clone();
            }
            assert!(Instant::now() < deadline, "the run did not pause");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // SAFETY: kill(2) with SIGCONT on the CLI process this test spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGCONT);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let approval = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(line) = lines.next(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "gatehouse run --wait did not report the pause within 10 s; printed:\n{}\nstderr:\n{}",
                lines.rest(),
                std::fs::read_to_string(w.path("cli.stderr")).unwrap_or_default()
            );
        };
        if let Some(id) = line.trim().strip_prefix("approval ") {
            break id.to_string();
        }
    };
    assert_eq!(run["pending"][0], approval.as_str());
    assert!(lines.seen.contains("pending_approval"), "{}", lines.seen);
    let r = block_on(decide(&w.api, &approval, json!({"decision": "approve"})));
    assert_eq!(r.status, 200, "{r:?}");
    let status = wait_bounded(&mut child, PROCESS_TIMEOUT).expect("gatehouse run --wait ended");
    let out = lines.rest();
    let err = std::fs::read_to_string(w.path("cli.stderr")).unwrap_or_default();
    assert!(status.success(), "{status:?}: {out}\nstderr: {err}");
    assert!(out.contains("Refunded $900 for K1."), "{out}");
}

/// A reviewer may well take longer than 30 s: `gatehouse run --wait` must keep waiting.
///
/// Slow by nature (31 s): it caught `gatehouse run --wait` long-polling with ?wait=30 through
/// an HTTP client whose own timeout is 30 s, which ended the CLI after 30 s of review. Only a
/// review that really lasts past that client timeout shows it.
#[test]
fn cli_run_wait_survives_a_long_review() {
    let mut replies = vec![
        Reply::tools(
            Some("Big refund."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "L1", "amount": 900}),
            )],
        ),
        Reply::text("Refunded $900 for L1."),
    ]
    .into_iter();
    // The first answer is held until the CLI's first poll is open, so that poll starts while
    // the run is still running.
    let thinking = Gate::new();
    let model = ModelServer::start({
        let thinking = thinking.clone();
        move |n, _| {
            let reply = replies.next().expect("a scripted reply");
            if n == 0 { reply.held(&thinking) } else { reply }
        }
    });
    let w = world_with(model, "");
    let open = block_on(waiting::subscribers(&w.api));
    let (mut child, mut lines) = spawn_lines(
        gatehouse_run(&w.daemon.url, "Support", "Refund L1"),
        &w.path("cli.stderr"),
    );
    w.model.wait_requests(1, RUN_DEADLINE);
    block_on(waiting::wait_subscribers(
        &w.api,
        open + 1,
        "the CLI's long poll",
    ));
    thinking.open();
    let stderr = || std::fs::read_to_string(w.path("cli.stderr")).unwrap_or_default();
    let deadline = Instant::now() + RUN_DEADLINE;
    let approval = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .next(left)
            .unwrap_or_else(|| panic!("no approval line; printed:\n{}", lines.seen));
        if let Some(id) = line.trim().strip_prefix("approval ") {
            break id.to_string();
        }
    };
    // The reviewer takes 31 s: time must really pass, past the CLI's 30 s request timeout.
    // Meanwhile the CLI must not end (its exit would be the bug).
    if let Some(status) = waiting::exits_within(&mut child, Duration::from_secs(31)) {
        panic!(
            "gatehouse run --wait gave up while the run waited for a reviewer ({status}); \
             printed:\n{}\nstderr:\n{}",
            lines.rest(),
            stderr()
        );
    }
    let r = block_on(decide(&w.api, &approval, json!({"decision": "approve"})));
    assert_eq!(r.status, 200, "{r:?}");
    let status = wait_bounded(&mut child, PROCESS_TIMEOUT).expect("gatehouse run --wait ended");
    let out = lines.rest();
    assert!(status.success(), "{status:?}: {out}\nstderr: {}", stderr());
    assert!(out.contains("Refunded $900 for L1."), "{out}");
}

// ---------------------------------------------------------------------------------------
// 12. Events
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn events_carry_run_updates() {
    let w = world(vec![
        Reply::tools(
            Some("Refund."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "J1", "amount": 400}),
            )],
        ),
        Reply::text("Done with J1."),
    ]);
    let api = &w.api;
    let mut events = SseStream::connect(api, None).await;
    let id = start_run(api, "Support", "Refund J1").await;

    let mut seen: Vec<Sse> = Vec::new();
    let deadline = tokio::time::Instant::now() + RUN_DEADLINE;
    let mut decided = false;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let e = events
            .next(left)
            .await
            .unwrap_or_else(|| panic!("no completion event; saw {:#?}", kinds(&seen)));
        let run_event = e.data["run"]["run_id"] == id.as_str();
        if run_event && e.data["run"]["status"] == "pending_approval" && !decided {
            decided = true;
            let aid = e.data["run"]["pending"][0].as_str().unwrap().to_string();
            let r = decide(api, &aid, json!({"decision": "approve"})).await;
            assert_eq!(r.status, 200, "{r:?}");
        }
        let finished = run_event && e.data["run"]["status"] == "completed";
        seen.push(e);
        if finished {
            break;
        }
    }
    assert!(decided, "never saw the run pause: {:#?}", kinds(&seen));
    // Ids strictly increase.
    assert!(seen.windows(2).all(|p| p[0].id < p[1].id));
    let of_run: Vec<&Sse> = seen
        .iter()
        .filter(|e| e.data["run"]["run_id"] == id.as_str())
        .collect();
    // Every run change is a `run.updated` event (the audit kind is inside).
    assert!(of_run.iter().all(|e| e.event == "run.updated"));
    for e in &of_run {
        assert_eq!(e.data["seq"].as_u64(), Some(e.id));
    }
    let kinds_of_run: Vec<&str> = of_run
        .iter()
        .map(|e| e.data["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds_of_run.first(),
        Some(&"run.started"),
        "{kinds_of_run:?}"
    );
    assert!(kinds_of_run.contains(&"tool.executed"), "{kinds_of_run:?}");
    assert_eq!(kinds_of_run.last(), Some(&"run.ended"), "{kinds_of_run:?}");
    let statuses: Vec<&str> = of_run
        .iter()
        .map(|e| e.data["run"]["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"running"), "{statuses:?}");
    assert!(statuses.contains(&"pending_approval"), "{statuses:?}");
    // The approval's own events are there too, about the run.
    assert!(
        seen.iter()
            .any(|e| e.event == "approval.created" && e.data["approval"]["run_id"] == id.as_str())
    );
    assert!(
        seen.iter()
            .any(|e| e.event == "approval.decided" && e.data["approval"]["run_id"] == id.as_str())
    );

    // Resuming with Last-Event-ID replays the same events from the log, run ones included.
    let mut replay = SseStream::connect(api, Some(seen[0].id - 1)).await;
    for live in &seen {
        let e = replay
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("replay ended before event {}", live.id));
        assert_eq!(e.id, live.id);
        assert_eq!(e.event, live.event);
        assert_eq!(e.data["kind"], live.data["kind"]);
        assert_eq!(e.data["run"], live.data["run"], "event {}", e.id);
    }
}

fn kinds(seen: &[Sse]) -> Vec<String> {
    seen.iter()
        .map(|e| format!("{} {} {}", e.id, e.event, e.data["run"]["status"]))
        .collect()
}

// ---------------------------------------------------------------------------------------
// 13. max_turns
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_model_that_never_answers_stops_at_max_turns() {
    let model = ModelServer::start(|n, _| {
        Reply::tools(
            Some("Let me look again."),
            &[call(&format!("look_{n}"), "lookup", json!({"q": "more"}))],
        )
    });
    let w = world_with(model, "");
    let api = &w.api;
    let id = start_run(api, "Looper", "Find it").await;
    let run = wait_run(api, &id, "finished", |r| {
        ["completed", "failed", "cancelled"].contains(&r["status"].as_str().unwrap())
    })
    .await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("max_turns = 3"), "{error}");
    assert!(error.contains("3 turns"), "{error}");
    assert_eq!(run["turns"], 3);
    assert_eq!(w.model.count(), 3, "the model is asked max_turns times");
    assert_eq!(
        json_lines(&w.path("lookups.log")).len(),
        3,
        "the tool ran each turn"
    );
    assert!(
        approvals_of_run(api, &id).await.is_empty(),
        "needs_approval = false"
    );
}
