//! The Chat Completions wire format: the request gatehouse sends, and the completion it reads back.

use super::quote;
use crate::model::{Completion, Message, ToolCall, ToolSpec};
use crate::text::json_type;
use serde_json::{Value, json};

/// The Chat Completions request: the messages in order and the tools as functions.
pub(super) fn request_body(model: &str, messages: &[Message], tools: &[ToolSpec]) -> Value {
    let messages: Vec<Value> = messages.iter().map(wire_message).collect();
    let mut body = json!({ "model": model, "messages": messages });
    if !tools.is_empty() {
        body["tools"] = tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    }
                })
            })
            .collect();
    }
    body
}

fn wire_message(m: &Message) -> Value {
    match m {
        Message::System { content } => json!({ "role": "system", "content": content }),
        Message::User { content } => json!({ "role": "user", "content": content }),
        Message::Assistant {
            content,
            tool_calls,
        } => {
            let mut v = json!({ "role": "assistant", "content": content });
            if !tool_calls.is_empty() {
                v["tool_calls"] = tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": { "name": c.name, "arguments": c.arguments },
                        })
                    })
                    .collect();
            }
            v
        }
        Message::Tool {
            tool_call_id,
            content,
        } => json!({ "role": "tool", "tool_call_id": tool_call_id, "content": content }),
    }
}

/// `choices[0].message`: its text and its tool calls.
pub(super) fn parse_completion(body: &[u8]) -> Result<Completion, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the answer is not JSON ({e}): {}",
            quote(&String::from_utf8_lossy(body))
        )
    })?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        let m = err
            .get("message")
            .and_then(Value::as_str)
            .map(quote)
            .unwrap_or_else(|| quote(&err.to_string()));
        return Err(format!("the server answered with an error: {m}"));
    }
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("no \"choices\" array in the answer")?;
    let choice = choices.first().ok_or("\"choices\" is empty")?;
    let message = choice
        .get("message")
        .filter(|m| m.is_object())
        .ok_or("choices[0] has no \"message\" object")?;
    let content = match message.get("content") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        // Some servers send content parts: [{type: "text", text}].
        Some(Value::Array(parts)) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
        ),
        Some(other) => {
            return Err(format!(
                "choices[0].message.content is {} (expected a string or null)",
                json_type(other)
            ));
        }
    }
    .filter(|s| !s.trim().is_empty());
    let tool_calls = match message.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => calls
            .iter()
            .enumerate()
            .map(|(i, c)| parse_tool_call(i, c))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "choices[0].message.tool_calls is {} (expected an array)",
                json_type(other)
            ));
        }
    };
    if content.is_none() && tool_calls.is_empty() {
        let reason = choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .unwrap_or("none given");
        return Err(format!(
            "the answer has neither text nor tool calls (finish_reason: {reason})"
        ));
    }
    Ok(Completion {
        content,
        tool_calls,
    })
}

fn parse_tool_call(i: usize, c: &Value) -> Result<ToolCall, String> {
    let at = format!("choices[0].message.tool_calls[{i}]");
    if !c.is_object() {
        return Err(format!("{at} is {} (expected an object)", json_type(c)));
    }
    if let Some(kind) = c.get("type").and_then(Value::as_str)
        && kind != "function"
    {
        return Err(format!(
            "{at} has type {kind:?} (only \"function\" is supported)"
        ));
    }
    let function = c
        .get("function")
        .filter(|f| f.is_object())
        .ok_or_else(|| format!("{at} has no \"function\" object"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{at}.function has no \"name\""))?;
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        // Some servers send the arguments as an object rather than as JSON text.
        Some(other) => other.to_string(),
    };
    let id = match c.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("call_{i}"),
    };
    Ok(ToolCall {
        id,
        name: name.to_string(),
        arguments,
    })
}
