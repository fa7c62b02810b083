//! Claude Code behind `gatehouse hook claude-code` (DESIGN §10): the real `claude` from npm,
//! offline, against a stand-in Anthropic Messages server, with the hook in `--settings`.

mod common;

use common::host_models::*;
use common::hosts::*;
use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const SAY: &str = "I will create the marker file to show the task is done.";

/// The stand-in model: with tools offered and no tool result yet, it says SAY and calls
/// `tool` with `input`; after the result it finishes. Requests without tools (side requests
/// such as titles) get plain text.
fn model(tool: &'static str, input: Value) -> HostModel {
    HostModel::start(move |e| {
        if !e.uri.starts_with("/v1/messages") {
            return Answer::not_found(&e.uri);
        }
        let has_tools = e.body["tools"].as_array().is_some_and(|t| !t.is_empty());
        let has_result = body_text(e).contains("tool_result");
        if has_tools && !has_result {
            anthropic(
                e,
                &[
                    json!({"type": "text", "text": SAY}),
                    json!({"type": "tool_use", "id": "toolu_standin_1", "name": tool, "input": input}),
                ],
            )
        } else {
            anthropic(e, &[json!({"type": "text", "text": "Finished."})])
        }
    })
}

impl Session {
    /// Every transcript Claude Code wrote, for failure messages.
    fn transcripts(&self) -> String {
        let mut out = String::new();
        let projects = self.home.path().join(".claude/projects");
        for dir in std::fs::read_dir(projects).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                out += &format!("--- {}\n", f.path().display());
                out += &std::fs::read_to_string(f.path()).unwrap_or_default();
            }
        }
        out
    }

    /// `claude -p … --settings FILE --output-format json` with `hook` as its PreToolUse hook.
    fn command(&self, model: &HostModel, hook: &str, token: &str) -> std::process::Command {
        self.with_hook(
            model,
            json!({"type": "command", "command": hook, "timeout": 120}),
            token,
        )
    }

    fn with_hook(&self, model: &HostModel, hook: Value, token: &str) -> std::process::Command {
        self.with_settings(model, hook, token, json!({}))
    }

    /// As [`Session::with_hook`], with Claude Code's own `permissions` too.
    fn with_settings(
        &self,
        model: &HostModel,
        hook: Value,
        token: &str,
        permissions: Value,
    ) -> std::process::Command {
        let settings = json!({"permissions": permissions,
            "hooks": {"PreToolUse": [{"matcher": "*", "hooks": [hook]}]}});
        let file = self.home.path().join("gate-settings.json");
        std::fs::write(&file, settings.to_string()).expect("write settings");
        let mut c = host_command(&claude_bin(), self.home.path());
        c.current_dir(self.work.path())
            .args(["-p", "Create the marker file.", "--settings"])
            .arg(&file)
            .args(["--output-format", "json"])
            .env("ANTHROPIC_BASE_URL", model.url())
            .env("ANTHROPIC_API_KEY", "dummy")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("GATEHOUSE_TOKEN", token);
        c
    }
}

fn touch() -> Value {
    json!({"command": "touch marker.txt", "description": "Create the marker file"})
}

/// The tool_result Claude Code sent back to the model, as text.
fn tool_result(model: &HostModel) -> String {
    let e = model.wait_for("with a tool_result", Duration::from_secs(5), |e| {
        body_text(e).contains("tool_result")
    });
    let msgs = e.body["messages"].as_array().cloned().unwrap_or_default();
    msgs.iter()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["content"].to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn approve_runs_the_command_and_the_approval_shows_where_it_came_from() {
    claude_bin();
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let s = Session::new();
    let m = model("Bash", touch());
    let cmd = s.command(&m, &hook_command("claude-code", &d.url, ""), BOT);
    let host = tokio::task::spawn_blocking(move || run_host(cmd));

    let a = wait_approval(&api, "pending", HOST_TIMEOUT).await;
    assert_eq!(a["tool"], "Bash");
    assert_eq!(a["arguments"]["command"], "touch marker.txt");
    assert_eq!(a["agent"], "claude-code");
    assert_eq!(
        a["reasoning"],
        SAY,
        "the agent's words from the transcript: {a:#}\n{}",
        s.transcripts()
    );
    let ctx = &a["context"];
    assert_eq!(ctx["host"], "claude-code");
    assert_eq!(ctx["event"], "PreToolUse");
    assert_eq!(ctx["tool_use_id"], "toolu_standin_1");
    let cwd = ctx["cwd"].as_str().expect("cwd in the context");
    assert!(
        Path::new(cwd).canonicalize().ok() == s.work.path().canonicalize().ok(),
        "cwd {cwd}"
    );
    assert_eq!(a["run_id"], ctx["session"]);
    assert!(
        !s.marker().exists(),
        "nothing runs before the reviewer decides"
    );

    let r = api
        .decide(ALICE, a["id"].as_str().unwrap(), "approve", None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let out = host.await.unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(s.marker().exists(), "the approved command ran: {out:?}");
    assert!(!tool_result(&m).contains("denied"));
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_blocks_the_command_and_tells_the_model_why() {
    claude_bin();
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let s = Session::new();
    let m = model("Bash", touch());
    let cmd = s.command(&m, &hook_command("claude-code", &d.url, ""), BOT);
    let host = tokio::task::spawn_blocking(move || run_host(cmd));

    decide_waiting(&api, "deny", Some("not during the freeze")).await;
    let out = host.await.unwrap();
    assert!(
        !s.marker().exists(),
        "a denied command must not run: {out:?}"
    );
    let result = tool_result(&m);
    assert!(
        result.contains("The reviewer denied this action: not during the freeze"),
        "the model reads the reviewer's reason: {result}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_passes_a_read_only_tool_without_a_reviewer() {
    claude_bin();
    let ws = Workspace::new();
    ws.write_config(&hook_config(
        r#"
[[policies]]
name = "read-only"
tools = ["Read", "Grep", "Glob"]
[[policies.rules]]
action = "approve"
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
    let path = s.work.path().join("notes.txt");
    let m = model("Read", json!({"file_path": path}));
    let cmd = s.command(&m, &hook_command("claude-code", &d.url, ""), BOT);
    let out = tokio::task::spawn_blocking(move || run_host(cmd))
        .await
        .unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(tool_result(&m).contains("heron"), "the read ran");
    let all = api.list_all("all").await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["status"], "approved");
    assert_eq!(
        all[0]["decision"]["by"]
            .as_str()
            .map(|s| s.starts_with("policy")),
        Some(true),
        "{:#}",
        all[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hooks_timeout_cancels_the_approval_and_nothing_runs() {
    claude_bin();
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let s = Session::new();
    let m = model("Bash", touch());
    let cmd = s.command(
        &m,
        &hook_command("claude-code", &d.url, "--timeout 3s"),
        BOT,
    );
    let out = tokio::task::spawn_blocking(move || run_host(cmd))
        .await
        .unwrap();
    assert!(!s.marker().exists(), "{out:?}");
    let all = api.list_all("all").await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["status"], "cancelled", "{:#}", all[0]);
    let result = tool_result(&m);
    assert!(result.contains("no reviewer decided within 3s"), "{result}");
    // Cancelled is final: a late reviewer cannot approve it into the void.
    let r = api
        .decide(ALICE, all[0]["id"].as_str().unwrap(), "approve", None)
        .await;
    assert_eq!(r.status, 409, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gatehouse_unreachable_blocks_the_command() {
    claude_bin();
    // A port nobody listens on: bind, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Session::new();
    let m = model("Bash", touch());
    let cmd = s.command(
        &m,
        &hook_command("claude-code", &format!("http://127.0.0.1:{port}"), ""),
        BOT,
    );
    let out = tokio::task::spawn_blocking(move || run_host(cmd))
        .await
        .unwrap();
    assert!(!s.marker().exists(), "{out:?}");
    let result = tool_result(&m);
    assert!(result.contains("cannot reach"), "{result}");
}

/// Claude Code's `"type": "http"` hook pointed at `POST /v1/hooks/claude-code`.
fn http_hook(url: &str) -> Value {
    json!({"type": "http", "url": format!("{url}/v1/hooks/claude-code"), "timeout": 120,
           "headers": {"Authorization": "Bearer $GATEHOUSE_TOKEN"},
           "allowedEnvVars": ["GATEHOUSE_TOKEN"]})
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_hook_gates_too_but_an_unreachable_one_fails_open() {
    claude_bin();
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let s = Session::new();
    let m = model("Bash", touch());
    let cmd = s.with_hook(&m, http_hook(&d.url), BOT);
    let host = tokio::task::spawn_blocking(move || run_host(cmd));
    let a = wait_approval(&api, "pending", HOST_TIMEOUT).await;
    assert_eq!(a["context"]["tool_use_id"], "toolu_standin_1");
    let r = api
        .decide(ALICE, a["id"].as_str().unwrap(), "deny", Some("not today"))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let out = host.await.unwrap();
    assert!(!s.marker().exists(), "{out:?}");
    assert!(tool_result(&m).contains("The reviewer denied this action: not today"));

    // Why the README recommends the command form: where Claude Code's own rules allow Bash
    // (the gate was meant to be the check), an unreachable HTTP hook is "no decision" and the
    // command runs; the command form blocks.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("http://127.0.0.1:{port}");
    let allow_bash = json!({"allow": ["Bash"]});
    let s = Session::new();
    let m = model("Bash", touch());
    let cmd = s.with_settings(&m, http_hook(&down), BOT, allow_bash.clone());
    let out = tokio::task::spawn_blocking(move || run_host(cmd))
        .await
        .unwrap();
    assert!(
        s.marker().exists(),
        "Claude Code's HTTP hooks fail open: {out:?}"
    );

    let s = Session::new();
    let m = model("Bash", touch());
    let command = json!({"type": "command", "command": hook_command("claude-code", &down, ""), "timeout": 120});
    let cmd = s.with_settings(&m, command, BOT, allow_bash);
    let out = tokio::task::spawn_blocking(move || run_host(cmd))
        .await
        .unwrap();
    assert!(
        !s.marker().exists(),
        "the command form fails closed: {out:?}"
    );
    assert!(tool_result(&m).contains("cannot reach"));
}
