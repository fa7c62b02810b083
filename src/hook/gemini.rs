//! Gemini CLI: the `BeforeTool` hook. Its input carries no tool-call id, so each hook call is
//! its own approval.

use super::{HookCall, Verdict, base_context, object, required, split_mcp, text};
use serde_json::{Map, Value, json};

pub fn read(obj: &Map<String, Value>) -> Result<HookCall, String> {
    let event = required(obj, "hook_event_name")?;
    if event != "BeforeTool" {
        return Err(format!(
            "hook_event_name {event:?}: gatehouse answers BeforeTool"
        ));
    }
    let (server, tool) = split_mcp(&required(obj, "tool_name")?);
    let session = text(obj, "session_id")?;
    Ok(HookCall {
        context: base_context(obj, &event, session.as_deref()),
        tool,
        server,
        arguments: object(obj, "tool_input")?,
        transcript: text(obj, "transcript_path")?.map(Into::into),
        session,
        event,
        ..HookCall::default()
    })
}

pub fn answer(verdict: &Verdict) -> Value {
    match verdict {
        Verdict::Allow { .. } => json!({"decision": "allow", "reason": "Approved in gatehouse"}),
        Verdict::Deny { reason } => json!({"decision": "deny", "reason": reason}),
    }
}
