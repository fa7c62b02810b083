//! OpenAI Codex: `PreToolUse` and `PermissionRequest` hooks. Both may fire for one command
//! (the first before it runs, the second when it asks to leave the sandbox); they carry no
//! tool-use id in common, so the key is the turn id with a hash of the command, and the
//! arguments are only the command, so both reach the reviewer as one approval.

use super::{HookCall, Verdict, base_context, object, required, split_mcp, text};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub fn read(obj: &Map<String, Value>) -> Result<HookCall, String> {
    let event = required(obj, "hook_event_name")?;
    if event != "PreToolUse" && event != "PermissionRequest" {
        return Err(format!(
            "hook_event_name {event:?}: gatehouse answers PreToolUse and PermissionRequest"
        ));
    }
    let (server, tool) = split_mcp(&required(obj, "tool_name")?);
    let session = text(obj, "session_id")?;
    let turn = text(obj, "turn_id")?;
    let input = object(obj, "tool_input")?;
    let mut reasoning = None;
    // A shell command is the command alone: the PermissionRequest's `description` (the
    // model's justification for escalating) is the model's words, so it is reasoning.
    let arguments = match input.get("command") {
        Some(cmd) if server.is_none() => {
            reasoning = input
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string);
            Map::from_iter([("command".to_string(), cmd.clone())])
        }
        _ => input,
    };
    let mut context = base_context(obj, &event, session.as_deref());
    if let Some(id) = text(obj, "tool_use_id")? {
        context.insert("tool_use_id".into(), id);
    }
    let idempotency_key = turn.as_ref().map(|t| {
        let digest = Sha256::digest(crate::domain::canonical_json(&Value::Object(
            arguments.clone(),
        )));
        format!("codex:{t}:{tool}:{}", hex::encode(&digest[..16]))
    });
    if let Some(t) = turn {
        context.insert("turn".into(), t);
    }
    Ok(HookCall {
        tool,
        server,
        arguments,
        transcript: text(obj, "transcript_path")?.map(Into::into),
        session,
        context,
        idempotency_key,
        reasoning,
        event,
        ..HookCall::default()
    })
}

/// Codex's `PreToolUse` can only deny: an approval prints nothing (no objection), and the
/// command goes on to its `PermissionRequest` when it needs one.
pub fn answer(event: &str, verdict: &Verdict) -> Option<Value> {
    match (event, verdict) {
        ("PermissionRequest", Verdict::Allow { .. }) => Some(json!({"hookSpecificOutput": {
            "hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}})),
        ("PermissionRequest", Verdict::Deny { reason }) => Some(json!({"hookSpecificOutput": {
            "hookEventName": "PermissionRequest", "decision": {"behavior": "deny", "message": reason}}})),
        (_, Verdict::Allow { .. }) => None,
        (_, Verdict::Deny { reason }) => Some(json!({"hookSpecificOutput": {
            "hookEventName": "PreToolUse", "permissionDecision": "deny",
            "permissionDecisionReason": reason}})),
    }
}
