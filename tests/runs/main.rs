//! Agent runs end to end (DESIGN §2–§4, §7) with the real binary: `gatehouse serve` on a temp
//! data directory, real `command` tools (small `/bin/sh` programs writing into the temp dir),
//! and a stand-in chat model that speaks the OpenAI Chat Completions protocol over HTTP
//! (tests/common/model_server.rs), which records exactly what gatehouse sent it.
//!
//! No gatehouse part is mocked. Every wait is on a condition (a long poll, a gate, a file),
//! bounded by a deadline.

#[path = "../common/mod.rs"]
mod common;

mod checks;
mod cli;
mod decisions;
mod events;
mod failures;

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
