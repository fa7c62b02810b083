//! Cursor: `beforeShellExecution` (a command) and `beforeMCPExecution` (an MCP tool call).
//! Cursor names the session `conversation_id`; its MCP `tool_input` is a JSON string.

use super::{HookCall, Verdict, base_context, required, text};
use serde_json::{Map, Value, json};

pub fn read(obj: &Map<String, Value>) -> Result<HookCall, String> {
    let event = required(obj, "hook_event_name")?;
    let session = text(obj, "conversation_id")?;
    let mut context = base_context(obj, &event, session.as_deref());
    if !context.contains_key("cwd")
        && let Some(Value::Array(roots)) = obj.get("workspace_roots")
        && let Some(Value::String(root)) = roots.first()
    {
        context.insert("cwd".into(), root.clone());
    }
    if let Some(g) = text(obj, "generation_id")? {
        context.insert("tool_use_id".into(), g);
    }
    let (tool, server, arguments) = match event.as_str() {
        "beforeShellExecution" => {
            let command = required(obj, "command")?;
            (
                "Shell".to_string(),
                None,
                Map::from_iter([("command".into(), Value::String(command))]),
            )
        }
        "beforeMCPExecution" => {
            let tool = required(obj, "tool_name")?;
            let arguments = match obj.get("tool_input") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
                Some(Value::String(s)) => match serde_json::from_str(s) {
                    Ok(Value::Object(m)) => m,
                    _ => return Err("tool_input: not a JSON object".into()),
                },
                Some(v) => {
                    return Err(format!(
                        "tool_input: expected an object, got {}",
                        crate::text::json_type(v)
                    ));
                }
            };
            // Cursor gives the server's URL or command, not its name: a claim for context.
            let origin = text(obj, "url")?.or(text(obj, "command")?);
            if let Some(o) = origin {
                context.insert("mcp_server".into(), o);
            }
            (tool, None, arguments)
        }
        other => {
            return Err(format!(
                "hook_event_name {other:?}: gatehouse answers beforeShellExecution and beforeMCPExecution"
            ));
        }
    };
    Ok(HookCall {
        tool,
        server,
        arguments,
        session,
        context,
        event,
        ..HookCall::default()
    })
}

pub fn answer(verdict: &Verdict) -> Value {
    match verdict {
        Verdict::Allow { .. } => json!({"permission": "allow"}),
        Verdict::Deny { reason } => {
            json!({"permission": "deny", "user_message": reason, "agent_message": reason})
        }
    }
}
