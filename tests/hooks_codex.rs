//! OpenAI Codex behind `gatehouse hook codex` (DESIGN §10): the real `codex exec` from npm,
//! offline, against a stand-in Responses API server, with the hook as both its `PreToolUse`
//! and its `PermissionRequest` hook. The model asks to leave the sandbox
//! (`sandbox_permissions: require_escalated`), so both hooks fire for one command, and the
//! reviewer sees it once.

mod common;

use common::host_models::*;
use common::hosts::*;
use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const SAY: &str = "I will create the marker file.";

/// With no function output yet, the model says SAY and calls `exec_command` with `args`;
/// after the output it finishes.
fn model(args: Value) -> HostModel {
    HostModel::start(move |e| {
        if !e.uri.starts_with("/v1/responses") {
            return Answer::not_found(&e.uri);
        }
        if body_text(e).contains("function_call_output") {
            responses_sse(&[
                json!({"type": "message", "id": "msg_2", "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Finished.", "annotations": []}]}),
            ])
        } else {
            responses_sse(&[
                json!({"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": SAY, "annotations": []}]}),
                json!({"type": "function_call", "id": "fc_1", "call_id": "call_1",
                       "name": "exec_command", "status": "completed",
                       "arguments": args.to_string()}),
            ])
        }
    })
}

impl Session {
    /// `codex exec …` with `CODEX_HOME/config.toml` naming the stand-in and `hooks.json`
    /// running `hook` for PreToolUse and PermissionRequest.
    fn command(&self, model: &HostModel, hook: &str) -> std::process::Command {
        let codex_home = self.home.path().join("codex");
        std::fs::create_dir_all(&codex_home).expect("CODEX_HOME");
        let config = format!(
            r#"model = "gpt-standin"
model_provider = "standin"
[model_providers.standin]
name = "standin"
base_url = "{}/v1"
wire_api = "responses"
[features]
hooks = true
"#,
            model.url()
        );
        std::fs::write(codex_home.join("config.toml"), config).expect("config.toml");
        let group = json!([{"matcher": ".*", "hooks": [{"type": "command", "command": hook, "timeout": 120}]}]);
        let hooks = json!({"hooks": {"PreToolUse": group, "PermissionRequest": group}});
        std::fs::write(codex_home.join("hooks.json"), hooks.to_string()).expect("hooks.json");
        let mut c = host_command(Path::new("node"), self.home.path());
        c.current_dir(self.work.path())
            .arg(codex_script())
            .args([
                "exec",
                "--skip-git-repo-check",
                "--json",
                "--approve-for-me",
            ])
            .args(["--dangerously-bypass-hook-trust", "Create the marker file."])
            .env("CODEX_HOME", &codex_home)
            .env("GATEHOUSE_TOKEN", BOT);
        c
    }
}

fn touch() -> Value {
    json!({"cmd": "touch marker.txt", "sandbox_permissions": "require_escalated",
           "justification": "Needs to write the marker file"})
}

/// The function output Codex sent back to the model, as text.
fn function_output(model: &HostModel) -> String {
    let e = model.wait_for("with a function_call_output", Duration::from_secs(5), |e| {
        body_text(e).contains("function_call_output")
    });
    body_text(&e)
}

#[tokio::test(flavor = "multi_thread")]
async fn approve_runs_the_command_and_both_hooks_reach_the_reviewer_once() {
    codex_script();
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let s = Session::new();
    let m = model(touch());
    let cmd = s.command(&m, &hook_command("codex", &d.url, ""));
    let host = tokio::task::spawn_blocking(move || run_host(cmd));

    let a = wait_approval(&api, "pending", HOST_TIMEOUT).await;
    assert_eq!(a["tool"], "Bash");
    assert_eq!(a["arguments"], json!({"command": "touch marker.txt"}));
    assert_eq!(a["agent"], "codex");
    assert_eq!(a["reasoning"], SAY, "{a:#}");
    assert_eq!(a["context"]["host"], "codex");
    assert_eq!(a["context"]["event"], "PreToolUse");
    assert!(!s.marker().exists());
    let r = api
        .decide(ALICE, a["id"].as_str().unwrap(), "approve", None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let out = host.await.unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(s.marker().exists(), "the approved command ran: {out:?}");
    let all = api.list_all("all").await;
    assert_eq!(all.len(), 1, "one approval for both hooks: {all:#?}");
    // The PermissionRequest hook did ask, and got the PreToolUse hook's approval back.
    let metrics = api.get(Some(ROOT), "/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("gatehouse_submissions_total{outcome=\"idempotent_replay\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_blocks_the_command_and_tells_the_model_why() {
    codex_script();
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let s = Session::new();
    let m = model(touch());
    let cmd = s.command(&m, &hook_command("codex", &d.url, ""));
    let host = tokio::task::spawn_blocking(move || run_host(cmd));
    decide_waiting(&api, "deny", Some("not in this repo")).await;
    let out = host.await.unwrap();
    assert!(!s.marker().exists(), "{out:?}");
    let sent = function_output(&m);
    assert!(
        sent.contains("The reviewer denied this action: not in this repo"),
        "{sent}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_passes_a_read_only_command_without_a_reviewer() {
    codex_script();
    let ws = Workspace::new();
    ws.write_config(&hook_config(
        r#"
[[policies]]
name = "read-only shell"
tools = ["Bash"]
[[policies.rules]]
when = "args.command.startsWith('cat ')"
action = "approve"
[[policies.rules]]
action = "ask"
"#,
    ));
    let d = ws.start();
    let api = d.api();
    let s = Session::new();
    std::fs::write(
        s.work.path().join("notes.txt"),
        "the secret word is heron\n",
    )
    .unwrap();
    let m = model(json!({"cmd": "cat notes.txt"}));
    let cmd = s.command(&m, &hook_command("codex", &d.url, ""));
    let out = tokio::task::spawn_blocking(move || run_host(cmd))
        .await
        .unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(function_output(&m).contains("heron"), "the read ran");
    let all = api.list_all("all").await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["status"], "approved", "{:#}", all[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hooks_timeout_cancels_the_approval_and_nothing_runs() {
    codex_script();
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let s = Session::new();
    let m = model(touch());
    let cmd = s.command(&m, &hook_command("codex", &d.url, "--timeout 3s"));
    let out = tokio::task::spawn_blocking(move || run_host(cmd))
        .await
        .unwrap();
    assert!(!s.marker().exists(), "{out:?}");
    let all = api.list_all("all").await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["status"], "cancelled", "{:#}", all[0]);
    assert!(function_output(&m).contains("no reviewer decided within 3s"));
}

#[tokio::test(flavor = "multi_thread")]
async fn gatehouse_unreachable_blocks_the_command() {
    codex_script();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Session::new();
    let m = model(touch());
    let cmd = s.command(
        &m,
        &hook_command("codex", &format!("http://127.0.0.1:{port}"), ""),
    );
    let out = tokio::task::spawn_blocking(move || run_host(cmd))
        .await
        .unwrap();
    assert!(!s.marker().exists(), "{out:?}");
    assert!(function_output(&m).contains("cannot reach"));
}
