//! The hook's other doors (DESIGN §10): `POST /v1/hooks/claude-code` for Claude Code's HTTP
//! hooks, and `gatehouse hook HOST` driven directly with recorded host JSON (Cursor, which has
//! no offline binary; SIGTERM; bad tokens and bad input), and `context` on submissions.

mod common;

use common::hosts::wait_approval;
use common::*;
use serde_json::{Value, json};
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

const HOOK: &str = "/v1/hooks/claude-code";

fn pre_tool_use(id: &str, command: &str) -> Value {
    json!({
        "session_id": "sess-1", "transcript_path": null, "cwd": "/srv/app",
        "permission_mode": "default", "hook_event_name": "PreToolUse", "tool_name": "Bash",
        "tool_input": {"command": command}, "tool_use_id": id
    })
}

#[tokio::test]
async fn http_hook_waits_for_the_reviewer_and_answers_in_claude_codes_shape() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let a2 = d.api();
    let waiting = tokio::spawn(async move {
        a2.post(Some(BOT), HOOK, &pre_tool_use("toolu_1", "make deploy"))
            .await
    });
    let a = wait_approval(&api, "pending", Duration::from_secs(10)).await;
    assert_eq!(a["tool"], "Bash");
    assert_eq!(a["run_id"], "sess-1");
    assert_eq!(
        a["context"],
        json!({"host": "claude-code", "cwd": "/srv/app", "event": "PreToolUse",
               "session": "sess-1", "tool_use_id": "toolu_1"})
    );
    let r = api
        .decide(
            ALICE,
            a["id"].as_str().unwrap(),
            "deny",
            Some("deploys go through CI"),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = waiting.await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body,
        json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
               "permissionDecisionReason": "The reviewer denied this action: deploys go through CI"}})
    );

    // The same tool use asked again (Claude Code retried) is the same approval, decided.
    let r = api
        .post(Some(BOT), HOOK, &pre_tool_use("toolu_1", "make deploy"))
        .await;
    assert_eq!(r.body["hookSpecificOutput"]["permissionDecision"], "deny");
    assert_eq!(api.list_all("all").await.len(), 1);
}

#[tokio::test]
async fn http_hook_approves_and_cancels_when_its_wait_ends() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let a2 = d.api();
    let waiting = tokio::spawn(async move {
        a2.post(Some(BOT), HOOK, &pre_tool_use("toolu_2", "ls"))
            .await
    });
    let a = wait_approval(&api, "pending", Duration::from_secs(10)).await;
    api.decide(ALICE, a["id"].as_str().unwrap(), "approve", None)
        .await;
    let r = waiting.await.unwrap();
    assert_eq!(
        r.body["hookSpecificOutput"]["permissionDecision"], "allow",
        "{r:?}"
    );

    let r = api
        .post(
            Some(BOT),
            &format!("{HOOK}?wait=1"),
            &pre_tool_use("toolu_3", "rm -rf /"),
        )
        .await;
    assert_eq!(r.status, 200);
    let reason = r.body["hookSpecificOutput"]["permissionDecisionReason"]
        .as_str()
        .unwrap_or("");
    assert!(reason.contains("timed out"), "{r:?}");
    let cancelled = api.list_all("cancelled").await;
    assert_eq!(cancelled.len(), 1, "{cancelled:#?}");
    assert_eq!(cancelled[0]["arguments"]["command"], "rm -rf /");
}

#[tokio::test]
async fn http_hook_cancels_when_the_caller_goes_away() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let r = impatient
        .post(api.url(HOOK))
        .bearer_auth(BOT)
        .json(&pre_tool_use("toolu_4", "ls"))
        .send()
        .await;
    assert!(r.is_err(), "the client gave up first: {r:?}");
    let a = wait_approval(&api, "cancelled", Duration::from_secs(10)).await;
    assert_eq!(a["arguments"]["command"], "ls");
}

#[tokio::test]
async fn http_hook_denies_everything_it_cannot_answer_even_a_bad_token() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let r = api
        .post(Some(BOT), HOOK, &json!({"hook_event_name": "PreToolUse"}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["hookSpecificOutput"]["permissionDecision"], "deny");
    let reason = r.body["hookSpecificOutput"]["permissionDecisionReason"]
        .as_str()
        .unwrap_or("");
    assert!(reason.contains("tool_name"), "{reason}");
    let mut long = pre_tool_use("toolu_5", "ls");
    long["tool_name"] = json!("x".repeat(300));
    let r = api.post(Some(BOT), HOOK, &long).await;
    assert_eq!(
        r.body["hookSpecificOutput"]["permissionDecision"], "deny",
        "{r:?}"
    );
    assert!(api.list_all("all").await.is_empty());
    // A misconfigured hook (no token, a wrong one, a reviewer's) must not stop gating: a 401
    // or 403 would be "no decision" to Claude Code, and the tool would run. So would a 400 for
    // a body that is not JSON, or a 422 for a bad `?wait=`.
    let bad_body = api
        .post_raw(
            Some(BOT),
            HOOK,
            Some("application/json"),
            b"{not json".to_vec(),
        )
        .await;
    let bad_wait = api
        .post(
            Some(BOT),
            &format!("{HOOK}?wait=soon"),
            &pre_tool_use("t", "ls"),
        )
        .await;
    for (what, r, says) in [
        (
            "no token",
            api.post(None, HOOK, &pre_tool_use("t", "ls")).await,
            "bearer token",
        ),
        (
            "a wrong token",
            api.post(Some("nope"), HOOK, &pre_tool_use("t", "ls")).await,
            "bearer token",
        ),
        (
            "a reviewer's token",
            api.post(Some(ALICE), HOOK, &pre_tool_use("t", "ls")).await,
            "agent role",
        ),
        ("a body that is not JSON", bad_body, "malformed JSON"),
        ("a bad wait", bad_wait, "wait"),
    ] {
        assert_eq!(r.status, 200, "{what}: {r:?}");
        assert_eq!(
            r.body["hookSpecificOutput"]["permissionDecision"], "deny",
            "{what}: {r:?}"
        );
        let reason = r.body["hookSpecificOutput"]["permissionDecisionReason"]
            .as_str()
            .unwrap_or("");
        assert!(reason.contains(says), "{what}: {reason}");
    }
    assert!(api.list_all("all").await.is_empty());
    // Each is still counted as refused.
    let metrics = api.get(Some(ALICE), "/metrics").await;
    let text = metrics.body.as_str().unwrap_or("").to_string();
    for reason in ["unauthorized", "forbidden", "bad_request"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("gatehouse_refused_total")
                    && l.contains(&format!("reason=\"{reason}\""))
                    && !l.ends_with(" 0")),
            "no {reason} refusal counted:\n{text}"
        );
    }
}

#[tokio::test]
async fn context_is_an_object_of_bounded_strings() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let ok = json!({"tool": "t", "arguments": {}, "context": {"host": "cursor", "cwd": "/w"}});
    let r = api.submit(BOT, &ok).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["context"], json!({"host": "cursor", "cwd": "/w"}));
    let plain = api.submit_pending(BOT, "t", json!({})).await;
    assert_eq!(
        plain["arguments_sha256"], r.body["arguments_sha256"],
        "context is not hashed"
    );
    let too_many: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (bad, says) in [
        (json!("host"), "context"),
        (json!(["host"]), "context"),
        (json!({"n": 1}), "context.n: must be a string"),
        (json!({"": "x"}), "context: key"),
        (json!({"big": "x".repeat(5000)}), "context.big: longer than"),
        (Value::Object(too_many), "more than 32 keys"),
    ] {
        let r = api
            .submit(BOT, &json!({"tool": "t", "arguments": {}, "context": bad}))
            .await;
        r.expect_error(422);
        let m = r.message();
        assert!(m.contains(says), "{m}");
    }
}

/// `gatehouse hook HOST` with `input` on stdin, as a host runs it.
fn spawn_hook(
    host: &str,
    url: &str,
    token: &str,
    extra: &[&str],
    input: &str,
) -> std::process::Child {
    let mut c = command();
    c.args(["hook", host, "--connect", url])
        .args(extra)
        .env("GATEHOUSE_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn gatehouse hook");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(input.as_bytes())
        .expect("write the hook input");
    drop(stdin);
    child
}

fn finish(child: std::process::Child) -> Finished {
    let out = child.wait_with_output().expect("the hook ends");
    Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cursor_shell_hook_asks_and_answers_in_cursors_shape() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let input = json!({"conversation_id": "c-1", "generation_id": "g-1",
        "hook_event_name": "beforeShellExecution", "workspace_roots": ["/home/u/proj"],
        "command": "git push --force", "cwd": ""});
    let child = spawn_hook("cursor", &d.url, BOT, &[], &input.to_string());
    let a = wait_approval(&api, "pending", Duration::from_secs(10)).await;
    assert_eq!(a["tool"], "Shell");
    assert_eq!(a["agent"], "cursor");
    assert_eq!(a["context"]["cwd"], "/home/u/proj");
    api.decide(
        ALICE,
        a["id"].as_str().unwrap(),
        "deny",
        Some("no force pushes"),
    )
    .await;
    let out = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    let answer: Value = serde_json::from_str(out.stdout.trim()).expect("JSON on stdout");
    assert_eq!(
        answer,
        json!({"permission": "deny",
               "user_message": "The reviewer denied this action: no force pushes",
               "agent_message": "The reviewer denied this action: no force pushes"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_approval_becomes_claude_codes_updated_input() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let child = spawn_hook(
        "claude-code",
        &d.url,
        BOT,
        &[],
        &pre_tool_use("toolu_e", "rm -rf build").to_string(),
    );
    let a = wait_approval(&api, "pending", Duration::from_secs(10)).await;
    assert_eq!(a["editable"], true);
    let r = api
        .post(
            Some(ALICE),
            &format!("/v1/approvals/{}/decision", a["id"].as_str().unwrap()),
            &json!({"decision": "approve", "arguments": {"command": "rm -rf build/tmp"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let out = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(out.stdout.trim()).expect("JSON on stdout");
    assert_eq!(answer["hookSpecificOutput"]["permissionDecision"], "allow");
    assert_eq!(
        answer["hookSpecificOutput"]["updatedInput"],
        json!({"command": "rm -rf build/tmp"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cancels_the_approval_and_denies() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let child = spawn_hook(
        "claude-code",
        &d.url,
        BOT,
        &[],
        &pre_tool_use("toolu_t", "ls").to_string(),
    );
    let a = wait_approval(&api, "pending", Duration::from_secs(10)).await;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("SIGTERM"), "{out:?}");
    assert!(out.stderr.contains("cancelled"), "{out:?}");
    let now = api.approval(a["id"].as_str().unwrap()).await;
    assert_eq!(now["status"], "cancelled", "{now:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_failure_denies_with_exit_2() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let good = pre_tool_use("toolu_f", "ls").to_string();
    for (host, token, input, says) in [
        ("claude-code", "wrong-token", good.as_str(), "401"),
        ("claude-code", ALICE, good.as_str(), "403"),
        ("claude-code", BOT, "{not json", "not JSON"),
        ("claude-code", BOT, "[]", "not an object"),
        ("gemini", BOT, good.as_str(), "BeforeTool"),
        ("emacs", BOT, good.as_str(), "unknown host"),
    ] {
        let child = spawn_hook(host, &d.url, token, &[], input);
        let out = tokio::task::spawn_blocking(move || finish(child))
            .await
            .unwrap();
        assert_eq!(out.code, Some(2), "{host} {token} {input}: {out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        assert!(out.stderr.contains(says), "{says}: {out:?}");
        assert!(out.stderr.contains("not run"), "{out:?}");
    }
    // No token at all.
    let mut c = command();
    c.args(["hook", "claude-code", "--connect", &d.url]);
    let out = run(c);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("GATEHOUSE_TOKEN is not set"), "{out:?}");
    assert!(api.list_all("all").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_covers_the_tool_for_the_rest_of_the_host_session() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let child = spawn_hook(
        "claude-code",
        &d.url,
        BOT,
        &[],
        &pre_tool_use("toolu_g1", "ls").to_string(),
    );
    let a = wait_approval(&api, "pending", Duration::from_secs(10)).await;
    let r = api
        .post(
            Some(ALICE),
            &format!("/v1/approvals/{}/decision", a["id"].as_str().unwrap()),
            &json!({"decision": "approve", "scope": "run"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let out = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    assert!(out.stdout.contains("\"allow\""), "{out:?}");

    // The next Bash call of the same session passes at once; another session's still asks.
    let child = spawn_hook(
        "claude-code",
        &d.url,
        BOT,
        &[],
        &pre_tool_use("toolu_g2", "ls -l").to_string(),
    );
    let out = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    assert!(out.stdout.contains("\"allow\""), "{out:?}");
    let mut other = pre_tool_use("toolu_g3", "ls -l");
    other["session_id"] = json!("sess-2");
    let child = spawn_hook(
        "claude-code",
        &d.url,
        BOT,
        &["--timeout", "1s"],
        &other.to_string(),
    );
    let out = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    assert_eq!(out.code, Some(2), "{out:?}");
}
