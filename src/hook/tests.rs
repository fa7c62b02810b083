//! Recorded hook JSON of each host in, the host's answer out.

use super::*;
use serde_json::json;

fn approval(status: &str, args: Value, reason: Option<&str>) -> Value {
    json!({"status": status, "arguments": args, "decision": {"by": "ana", "reason": reason}})
}

#[test]
fn claude_code_pre_tool_use_becomes_a_submission() {
    let input = json!({
        "session_id": "8c35adc1-2f0e-4c7e-9f57-0d6b1f0f1a11",
        "transcript_path": "/home/u/.claude/projects/-srv/8c35adc1.jsonl",
        "cwd": "/srv/app",
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": "rm -rf build", "description": "Clean the build"},
        "tool_use_id": "toolu_01ABC"
    });
    let call = Host::ClaudeCode.read(&input).unwrap();
    assert_eq!(call.tool, "Bash");
    assert_eq!(call.server, None);
    assert_eq!(call.arguments["command"], "rm -rf build");
    assert_eq!(
        call.idempotency_key.as_deref(),
        Some("claude-code:toolu_01ABC")
    );
    assert!(call.editable);
    let body = call.submission("claude-code", Some("Cleaning up.".into()), 570.0);
    assert_eq!(body["run_id"], "8c35adc1-2f0e-4c7e-9f57-0d6b1f0f1a11");
    assert_eq!(body["reasoning"], "Cleaning up.");
    assert_eq!(body["timeout"], 570.0);
    assert_eq!(
        body["context"],
        json!({"host": "claude-code", "cwd": "/srv/app", "event": "PreToolUse",
               "session": "8c35adc1-2f0e-4c7e-9f57-0d6b1f0f1a11", "tool_use_id": "toolu_01ABC"})
    );
}

#[test]
fn mcp_tool_names_split_into_server_and_tool() {
    assert_eq!(
        split_mcp("mcp__github__create_issue"),
        (Some("github".into()), "create_issue".into())
    );
    assert_eq!(split_mcp("mcp__a__b__c"), (Some("a".into()), "b__c".into()));
    assert_eq!(split_mcp("mcp____x"), (None, "mcp____x".into()));
    assert_eq!(split_mcp("Bash"), (None, "Bash".into()));
    let call = Host::ClaudeCode
        .read(
            &json!({"hook_event_name": "PreToolUse", "tool_name": "mcp__fs__write_file",
                      "tool_input": {"path": "/x"}}),
        )
        .unwrap();
    assert_eq!(
        (call.server.as_deref(), call.tool.as_str()),
        (Some("fs"), "write_file")
    );
}

#[test]
fn claude_code_answers() {
    let call = Host::ClaudeCode
        .read(
            &json!({"hook_event_name": "PreToolUse", "tool_name": "Bash",
                      "tool_input": {"command": "ls"}, "tool_use_id": "t1"}),
        )
        .unwrap();
    let allow =
        Verdict::of_approval(&call, &approval("approved", json!({"command": "ls"}), None)).unwrap();
    assert_eq!(
        allow,
        Verdict::Allow {
            updated_input: None
        }
    );
    assert_eq!(
        Host::ClaudeCode.answer(&call, &allow).unwrap(),
        json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow",
               "permissionDecisionReason": "Approved in gatehouse"}})
    );
    let edited = Verdict::of_approval(
        &call,
        &approval("approved", json!({"command": "ls -l"}), None),
    )
    .unwrap();
    assert_eq!(
        Host::ClaudeCode.answer(&call, &edited).unwrap()["hookSpecificOutput"]["updatedInput"],
        json!({"command": "ls -l"})
    );
    let deny = Verdict::of_approval(
        &call,
        &approval("denied", json!({"command": "ls"}), Some("not on prod")),
    )
    .unwrap();
    assert_eq!(
        Host::ClaudeCode.answer(&call, &deny).unwrap(),
        json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
               "permissionDecisionReason": "The reviewer denied this action: not on prod"}})
    );
    let expired = Verdict::of_approval(
        &call,
        &approval("expired", json!({}), Some("approval timed out")),
    )
    .unwrap();
    assert!(matches!(&expired, Verdict::Deny { reason } if reason.contains("timed out")));
    assert_eq!(
        Verdict::of_approval(&call, &json!({"status": "pending"})),
        None
    );

    let mut pr = call.clone();
    pr.event = "PermissionRequest".into();
    assert_eq!(
        Host::ClaudeCode.answer(&pr, &deny).unwrap(),
        json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
               "decision": {"behavior": "deny", "message": "The reviewer denied this action: not on prod"}}})
    );
    assert_eq!(
        Host::ClaudeCode.answer(&pr, &edited).unwrap()["hookSpecificOutput"]["decision"],
        json!({"behavior": "allow", "updatedInput": {"command": "ls -l"}})
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    assert!(
        Host::ClaudeCode
            .read(&json!([1]))
            .unwrap_err()
            .contains("not an object")
    );
    assert!(
        Host::ClaudeCode
            .read(&json!({"hook_event_name": "PreToolUse"}))
            .unwrap_err()
            .contains("tool_name")
    );
    assert!(
        Host::ClaudeCode
            .read(&json!({"hook_event_name": "Stop"}))
            .unwrap_err()
            .contains("Stop")
    );
    let e = Host::ClaudeCode
        .read(&json!({"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": "ls"}))
        .unwrap_err();
    assert!(e.contains("tool_input: expected an object"), "{e}");
    assert!(
        Host::Gemini
            .read(&json!({"hook_event_name": "AfterTool", "tool_name": "x"}))
            .is_err()
    );
    assert!(
        Host::Cursor
            .read(&json!({"hook_event_name": "beforeReadFile"}))
            .is_err()
    );
}

#[test]
fn codex_hooks_about_one_command_share_a_key_and_arguments() {
    let pre = json!({
        "session_id": "019a-sess", "turn_id": "turn-7", "transcript_path": null,
        "cwd": "/w", "hook_event_name": "PreToolUse", "model": "gpt-5", "permission_mode": "default",
        "tool_name": "Bash", "tool_input": {"command": "touch /tmp/x"}, "tool_use_id": "call_1"
    });
    let perm = json!({
        "session_id": "019a-sess", "turn_id": "turn-7", "transcript_path": null,
        "cwd": "/w", "hook_event_name": "PermissionRequest", "model": "gpt-5", "permission_mode": "default",
        "tool_name": "Bash", "tool_input": {"command": "touch /tmp/x", "description": "needs /tmp"}
    });
    let a = Host::Codex.read(&pre).unwrap();
    let b = Host::Codex.read(&perm).unwrap();
    assert_eq!(a.arguments, b.arguments);
    assert_eq!(a.idempotency_key, b.idempotency_key);
    assert!(
        a.idempotency_key
            .as_deref()
            .unwrap()
            .starts_with("codex:turn-7:Bash:")
    );
    assert_eq!(b.reasoning.as_deref(), Some("needs /tmp"));
    assert!(!a.editable);
    let other = Host::Codex
        .read(
            &json!({"hook_event_name": "PreToolUse", "turn_id": "turn-7", "tool_name": "Bash",
                      "tool_input": {"command": "touch /tmp/y"}}),
        )
        .unwrap();
    assert_ne!(other.idempotency_key, a.idempotency_key);

    let allow = Verdict::Allow {
        updated_input: None,
    };
    let deny = Verdict::Deny {
        reason: "The reviewer denied this action: no".into(),
    };
    assert_eq!(Host::Codex.answer(&a, &allow), None);
    assert_eq!(
        Host::Codex.answer(&a, &deny).unwrap()["hookSpecificOutput"]["permissionDecision"],
        "deny"
    );
    assert_eq!(
        Host::Codex.answer(&b, &allow).unwrap(),
        json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}})
    );
}

#[test]
fn gemini_before_tool() {
    let input = json!({
        "session_id": "g-1", "transcript_path": "/tmp/chats/session.json", "cwd": "/w",
        "hook_event_name": "BeforeTool", "timestamp": "2026-11-30T18:00:00Z",
        "tool_name": "run_shell_command", "tool_input": {"command": "echo hi", "description": "say hi"}
    });
    let call = Host::Gemini.read(&input).unwrap();
    assert_eq!(call.tool, "run_shell_command");
    assert_eq!(call.idempotency_key, None);
    assert_eq!(call.context["host"], "gemini");
    let deny = Verdict::Deny {
        reason: "The reviewer denied this action: r".into(),
    };
    assert_eq!(
        Host::Gemini.answer(&call, &deny).unwrap(),
        json!({"decision": "deny", "reason": "The reviewer denied this action: r"})
    );
    assert_eq!(
        Host::Gemini
            .answer(
                &call,
                &Verdict::Allow {
                    updated_input: None
                }
            )
            .unwrap()["decision"],
        "allow"
    );
}

#[test]
fn cursor_shell_and_mcp() {
    // Recorded from Cursor 1.7's hooks (beforeShellExecution, beforeMCPExecution).
    let shell = json!({
        "conversation_id": "c-42", "generation_id": "g-9", "hook_event_name": "beforeShellExecution",
        "workspace_roots": ["/home/u/proj"], "command": "git push --force", "cwd": ""
    });
    let call = Host::Cursor.read(&shell).unwrap();
    assert_eq!(call.tool, "Shell");
    assert_eq!(
        call.arguments,
        Map::from_iter([("command".into(), json!("git push --force"))])
    );
    assert_eq!(call.session.as_deref(), Some("c-42"));
    assert_eq!(call.context["cwd"], "/home/u/proj");
    let mcp = json!({
        "conversation_id": "c-42", "generation_id": "g-9", "hook_event_name": "beforeMCPExecution",
        "workspace_roots": ["/home/u/proj"], "tool_name": "create_issue",
        "tool_input": "{\"title\":\"x\"}", "url": "https://mcp.example/sse"
    });
    let call = Host::Cursor.read(&mcp).unwrap();
    assert_eq!(call.arguments["title"], "x");
    assert_eq!(call.context["mcp_server"], "https://mcp.example/sse");
    let bad =
        json!({"hook_event_name": "beforeMCPExecution", "tool_name": "t", "tool_input": "[1]"});
    assert!(Host::Cursor.read(&bad).is_err());
    let deny = Verdict::Deny {
        reason: "The reviewer denied this action: no".into(),
    };
    assert_eq!(
        Host::Cursor.answer(&call, &deny).unwrap(),
        json!({"permission": "deny", "user_message": "The reviewer denied this action: no",
               "agent_message": "The reviewer denied this action: no"})
    );
    assert_eq!(
        Host::Cursor
            .answer(
                &call,
                &Verdict::Allow {
                    updated_input: None
                }
            )
            .unwrap(),
        json!({"permission": "allow"})
    );
}

#[test]
fn transcript_gives_the_text_before_the_tool_use() {
    let lines = [
        r#"{"type":"user","message":{"role":"user","content":"old prompt"}}"#,
        r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Earlier words"}]}}"#,
        r#"{"type":"user","message":{"role":"user","content":[{"type":"text","text":"clean up"}]}}"#,
        r#"{"type":"assistant","message":{"content":[{"type":"text","text":"I will delete the build dir."}]}}"#,
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{}}]}}"#,
        r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"toolu_1"}]}}"#,
        r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Now the cache."}]}}"#,
        "not json",
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"toolu_2","name":"Bash","input":{}}]}}"#,
    ];
    assert_eq!(
        transcript::latest_text(lines.iter().copied(), Some("toolu_1")),
        (Some("I will delete the build dir.".into()), true)
    );
    assert_eq!(
        transcript::latest_text(lines.iter().copied(), Some("toolu_2")),
        (Some("Now the cache.".into()), true)
    );
    assert_eq!(
        transcript::latest_text(lines[..3].iter().copied(), Some("x")),
        (None, false)
    );
    assert_eq!(
        transcript::claude_code_reasoning(std::path::Path::new("/nonexistent/t.jsonl"), None),
        None
    );
}

#[test]
fn gemini_chat_log_gives_the_models_latest_words() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.jsonl");
    let lines = [
        r#"{"sessionId":"s","kind":"main"}"#,
        r#"{"id":"1","type":"user","content":[{"text":"old"}]}"#,
        r#"{"id":"2","type":"gemini","content":"Old words."}"#,
        r#"{"id":"3","type":"user","content":[{"text":"make it"}]}"#,
        r#"{"$set":{"lastUpdated":"x"}}"#,
        r#"{"id":"4","type":"gemini","content":"I will touch it.","toolCalls":[]}"#,
        r#"{"id":"5","type":"user","content":[{"functionResponse":{"name":"run_shell_command"}}]}"#,
        r#"{"id":"6","type":"gemini","content":""}"#,
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    assert_eq!(
        transcript::gemini_reasoning(&path).as_deref(),
        Some("I will touch it.")
    );
    std::fs::write(&path, lines[..4].join("\n")).unwrap();
    assert_eq!(transcript::gemini_reasoning(&path), None);
}

#[test]
fn codex_rollout_gives_the_assistants_latest_words() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.jsonl");
    let lines = [
        r#"{"type":"response_item","payload":{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Old."}]}}"#,
        r#"{"type":"response_item","payload":{"type":"message","role":"user","content":[{"type":"input_text","text":"make it"}]}}"#,
        r#"{"type":"event_msg","payload":{"type":"item_completed"}}"#,
        r#"{"type":"response_item","payload":{"type":"message","role":"assistant","content":[{"type":"output_text","text":"I will touch it."}]}}"#,
        r#"{"type":"response_item","payload":{"type":"function_call","name":"exec_command"}}"#,
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    assert_eq!(
        transcript::codex_reasoning(&path).as_deref(),
        Some("I will touch it.")
    );
    std::fs::write(&path, lines[..3].join("\n")).unwrap();
    assert_eq!(transcript::codex_reasoning(&path), None);
}

#[test]
fn an_edit_in_the_decision_is_the_updated_input() {
    let call = Host::ClaudeCode
        .read(
            &json!({"hook_event_name": "PreToolUse", "tool_name": "Bash",
                      "tool_input": {"command": "rm -rf build"}}),
        )
        .unwrap();
    let a = json!({"status": "approved", "arguments": {"command": "rm -rf build"},
                   "decision": {"by": "ana", "arguments": {"command": "rm -rf build/tmp"}}});
    assert_eq!(
        Verdict::of_approval(&call, &a),
        Some(Verdict::Allow {
            updated_input: Some(Map::from_iter([(
                "command".into(),
                json!("rm -rf build/tmp")
            )]))
        })
    );
}
