//! Claude Code: `PreToolUse` and `PermissionRequest` command hooks (and the same JSON through
//! `POST /v1/hooks/claude-code`).

use super::{HookCall, Verdict, base_context, object, required, split_mcp, text};
use serde_json::{Map, Value, json};

pub fn read(obj: &Map<String, Value>) -> Result<HookCall, String> {
    let event = required(obj, "hook_event_name")?;
    if event != "PreToolUse" && event != "PermissionRequest" {
        return Err(format!(
            "hook_event_name {event:?}: gatehouse answers PreToolUse and PermissionRequest"
        ));
    }
    let (server, tool) = split_mcp(&required(obj, "tool_name")?);
    let session = text(obj, "session_id")?;
    let tool_use_id = text(obj, "tool_use_id")?;
    let mut context = base_context(obj, &event, session.as_deref());
    if let Some(id) = &tool_use_id {
        context.insert("tool_use_id".into(), id.clone());
    }
    Ok(HookCall {
        tool,
        server,
        arguments: object(obj, "tool_input")?,
        transcript: text(obj, "transcript_path")?.map(Into::into),
        // One approval per tool use, though both hooks may ask about it.
        idempotency_key: tool_use_id.as_ref().map(|id| format!("claude-code:{id}")),
        tool_use_id,
        session,
        context,
        event,
        editable: true,
        reasoning: None,
    })
}

pub fn answer(event: &str, verdict: &Verdict) -> Value {
    if event == "PermissionRequest" {
        let decision = match verdict {
            Verdict::Allow { updated_input } => {
                let mut d = json!({"behavior": "allow"});
                if let Some(u) = updated_input {
                    d["updatedInput"] = Value::Object(u.clone());
                }
                d
            }
            Verdict::Deny { reason } => json!({"behavior": "deny", "message": reason}),
        };
        return json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": decision}});
    }
    let mut out = match verdict {
        Verdict::Allow { .. } => json!({
            "hookEventName": "PreToolUse",
            "permissionDecision": "allow",
            "permissionDecisionReason": "Approved in gatehouse",
        }),
        Verdict::Deny { reason } => json!({
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": reason,
        }),
    };
    if let Verdict::Allow {
        updated_input: Some(u),
    } = verdict
    {
        out["updatedInput"] = Value::Object(u.clone());
    }
    json!({"hookSpecificOutput": out})
}
