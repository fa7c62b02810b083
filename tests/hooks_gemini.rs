//! Gemini CLI behind `gatehouse hook gemini` (DESIGN §10): the real `gemini` from npm, offline,
//! against a stand-in `streamGenerateContent?alt=sse` server, with the hook as its `BeforeTool`.

mod common;

use common::host_models::*;
use common::hosts::*;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const SAY: &str = "I will create the marker file.";

/// With tools offered and no function response yet, the model says SAY and calls `tool`;
/// after the response it finishes.
fn model(tool: &'static str, args: Value) -> HostModel {
    HostModel::start(move |e| {
        if !e.uri.contains(":streamGenerateContent") {
            return Answer::not_found(&e.uri);
        }
        if body_text(e).contains("functionResponse") || e.body.get("tools").is_none() {
            gemini_sse(&[json!({"text": "Finished."})])
        } else {
            gemini_sse(&[
                json!({"text": SAY}),
                json!({"functionCall": {"name": tool, "args": args}}),
            ])
        }
    })
}

impl Session {
    /// `gemini -p … --output-format json --approval-mode yolo` with `hook` as its BeforeTool
    /// hook in `~/.gemini/settings.json`. The model is named so that no router model is asked.
    fn command(&self, model: &HostModel, hook: &str) -> std::process::Command {
        let settings = json!({
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "hooksConfig": {"enabled": true},
            "hooks": {"BeforeTool": [{"matcher": ".*", "hooks": [
                {"type": "command", "command": hook, "timeout": 120000}]}]}
        });
        let dir = self.home.path().join(".gemini");
        std::fs::create_dir_all(&dir).expect("~/.gemini");
        std::fs::write(dir.join("settings.json"), settings.to_string()).expect("settings");
        let mut c = host_command(Path::new("node"), self.home.path());
        c.current_dir(self.work.path())
            .arg(gemini_script())
            .args(["-m", "gemini-2.5-flash", "-p", "Create the marker file."])
            .args(["--output-format", "json", "--approval-mode", "yolo"])
            .env("GOOGLE_GEMINI_BASE_URL", model.url())
            .env("GEMINI_API_KEY", "dummy")
            .env("GEMINI_CLI_TRUST_WORKSPACE", "true")
            .env("GATEHOUSE_TOKEN", BOT);
        c
    }
}

use std::path::Path;

fn touch() -> Value {
    json!({"command": "touch marker.txt", "description": "Create the marker file"})
}

/// The function response Gemini CLI sent back to the model, as text.
fn function_response(model: &HostModel) -> String {
    let e = model.wait_for("with a functionResponse", Duration::from_secs(5), |e| {
        body_text(e).contains("functionResponse")
    });
    body_text(&e)
}

#[tokio::test(flavor = "multi_thread")]
async fn approve_runs_the_command() {
    gemini_script();
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let s = Session::new();
    let m = model("run_shell_command", touch());
    let cmd = s.command(&m, &hook_command("gemini", &d.url, ""));
    let host = tokio::task::spawn_blocking(move || run_host(cmd));

    let a = wait_approval(&api, "pending", HOST_TIMEOUT).await;
    assert_eq!(a["tool"], "run_shell_command");
    assert_eq!(a["arguments"]["command"], "touch marker.txt");
    assert_eq!(a["agent"], "gemini");
    assert_eq!(a["reasoning"], SAY, "{a:#}");
    assert_eq!(a["context"]["host"], "gemini");
    assert_eq!(a["context"]["event"], "BeforeTool");
    assert_eq!(a["run_id"], a["context"]["session"]);
    assert!(!s.marker().exists());
    let r = api
        .decide(ALICE, a["id"].as_str().unwrap(), "approve", None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let out = host.await.unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(s.marker().exists(), "the approved command ran: {out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_blocks_the_command_and_tells_the_model_why() {
    gemini_script();
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let s = Session::new();
    let m = model("run_shell_command", touch());
    let cmd = s.command(&m, &hook_command("gemini", &d.url, ""));
    let host = tokio::task::spawn_blocking(move || run_host(cmd));
    decide_waiting(&api, "deny", Some("use the build script")).await;
    let out = host.await.unwrap();
    assert!(!s.marker().exists(), "{out:?}");
    let sent = function_response(&m);
    assert!(
        sent.contains("The reviewer denied this action: use the build script"),
        "{sent}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_passes_a_read_only_tool_without_a_reviewer() {
    gemini_script();
    let ws = Workspace::new();
    ws.write_config(&hook_config(
        r#"
[[policies]]
name = "read-only"
tools = ["read_file", "list_directory", "glob", "search_file_content"]
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
    let m = model("read_file", json!({"file_path": "notes.txt"}));
    let cmd = s.command(&m, &hook_command("gemini", &d.url, ""));
    let out = tokio::task::spawn_blocking(move || run_host(cmd))
        .await
        .unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(function_response(&m).contains("heron"), "the read ran");
    let all = api.list_all("all").await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["status"], "approved", "{:#}", all[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hooks_timeout_cancels_the_approval_and_nothing_runs() {
    gemini_script();
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let s = Session::new();
    let m = model("run_shell_command", touch());
    let cmd = s.command(&m, &hook_command("gemini", &d.url, "--timeout 3s"));
    let out = tokio::task::spawn_blocking(move || run_host(cmd))
        .await
        .unwrap();
    assert!(!s.marker().exists(), "{out:?}");
    let all = api.list_all("all").await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["status"], "cancelled", "{:#}", all[0]);
    assert!(function_response(&m).contains("no reviewer decided within 3s"));
}

#[tokio::test(flavor = "multi_thread")]
async fn gatehouse_unreachable_blocks_the_command() {
    gemini_script();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Session::new();
    let m = model("run_shell_command", touch());
    let cmd = s.command(
        &m,
        &hook_command("gemini", &format!("http://127.0.0.1:{port}"), ""),
    );
    let out = tokio::task::spawn_blocking(move || run_host(cmd))
        .await
        .unwrap();
    assert!(!s.marker().exists(), "{out:?}");
    assert!(function_response(&m).contains("cannot reach"));
}
