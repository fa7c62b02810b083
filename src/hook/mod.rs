//! Hook hosts (DESIGN §10): the agents people already run (Claude Code, Codex, Gemini CLI,
//! Cursor) call a hook before a tool call and obey its allow/deny answer. Each host has its
//! own stdin JSON and its own answer shape; this module turns one into a submission and a
//! decided approval into the other. Pure functions: no I/O besides reading the transcript.

mod claude_code;
mod codex;
mod cursor;
mod gemini;
pub mod transcript;

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The agent that runs the hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    ClaudeCode,
    Codex,
    Gemini,
    Cursor,
}

impl Host {
    pub const ALL: [Host; 4] = [Host::ClaudeCode, Host::Codex, Host::Gemini, Host::Cursor];

    pub fn name(self) -> &'static str {
        match self {
            Host::ClaudeCode => "claude-code",
            Host::Codex => "codex",
            Host::Gemini => "gemini",
            Host::Cursor => "cursor",
        }
    }

    pub fn parse(s: &str) -> Option<Host> {
        Host::ALL.into_iter().find(|h| h.name() == s)
    }

    /// The host's hook JSON as a call to put before a reviewer.
    pub fn read(self, input: &Value) -> Result<HookCall, String> {
        let obj = input.as_object().ok_or_else(|| {
            format!(
                "the hook input is {}, not an object",
                crate::text::json_type(input)
            )
        })?;
        let mut call = match self {
            Host::ClaudeCode => claude_code::read(obj)?,
            Host::Codex => codex::read(obj)?,
            Host::Gemini => gemini::read(obj)?,
            Host::Cursor => cursor::read(obj)?,
        };
        call.context.insert("host".into(), self.name().into());
        call.context.retain(|_, v| !v.is_empty());
        Ok(call)
    }

    /// What the host reads on stdout for this verdict on this call.
    pub fn answer(self, call: &HookCall, verdict: &Verdict) -> Option<Value> {
        match self {
            Host::ClaudeCode => Some(claude_code::answer(&call.event, verdict)),
            Host::Codex => codex::answer(&call.event, verdict),
            Host::Gemini => Some(gemini::answer(verdict)),
            Host::Cursor => Some(cursor::answer(verdict)),
        }
    }
}

/// One tool call as the hook saw it, ready to submit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HookCall {
    /// The hook event (`PreToolUse`, `PermissionRequest`, `BeforeTool`, …).
    pub event: String,
    pub tool: String,
    pub server: Option<String>,
    pub arguments: Map<String, Value>,
    pub session: Option<String>,
    /// Words the host itself gives about the call (Codex's justification), used when the
    /// transcript has none.
    pub reasoning: Option<String>,
    pub transcript: Option<PathBuf>,
    pub tool_use_id: Option<String>,
    pub context: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    /// Whether the host runs changed input (`updatedInput`).
    pub editable: bool,
}

impl HookCall {
    /// The `POST /v1/approvals` body.
    pub fn submission(&self, agent: &str, reasoning: Option<String>, timeout_secs: f64) -> Value {
        let mut body = json!({
            "tool": self.tool,
            "arguments": self.arguments,
            "agent": agent,
            "context": self.context,
            "timeout": timeout_secs,
            "editable": self.editable,
        });
        let m = body.as_object_mut().expect("a json! object");
        let put = |m: &mut Map<String, Value>, k: &str, v: &Option<String>| {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                m.insert(k.into(), Value::String(v.clone()));
            }
        };
        put(m, "server", &self.server);
        put(m, "run_id", &self.session);
        put(
            m,
            "reasoning",
            &reasoning.or_else(|| self.reasoning.clone()),
        );
        put(m, "idempotency_key", &self.idempotency_key);
        body
    }
}

/// What the hook tells the host.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Run it; with the reviewer's edited input when it changed.
    Allow {
        updated_input: Option<Map<String, Value>>,
    },
    Deny {
        reason: String,
    },
}

impl Verdict {
    /// The verdict of a decided approval (the API's JSON), or None while it is pending.
    pub fn of_approval(call: &HookCall, approval: &Value) -> Option<Verdict> {
        let status = approval.get("status").and_then(Value::as_str)?;
        let reason = approval
            .pointer("/decision/reason")
            .and_then(Value::as_str)
            .filter(|r| !r.trim().is_empty());
        Some(match status {
            "pending" => return None,
            "approved" => {
                // The reviewer's edit: in the decision, or (DESIGN §9) as the approval's
                // arguments, with the request kept in `requested_arguments`.
                let args = approval
                    .pointer("/decision/arguments")
                    .and_then(Value::as_object)
                    .or_else(|| approval.get("arguments").and_then(Value::as_object));
                let updated_input = args.filter(|a| **a != call.arguments).cloned();
                Verdict::Allow { updated_input }
            }
            "denied" => Verdict::Deny {
                reason: match reason {
                    Some(r) => format!("The reviewer denied this action: {r}"),
                    None => "The reviewer denied this action.".into(),
                },
            },
            "expired" => Verdict::Deny {
                reason:
                    "The approval timed out before a reviewer decided, so this action was not run."
                        .into(),
            },
            "cancelled" => Verdict::Deny {
                reason: "The approval request was cancelled, so this action was not run.".into(),
            },
            other => Verdict::Deny {
                reason: format!("gatehouse answered an unknown status {other:?}; not running it"),
            },
        })
    }
}

/// `mcp__SERVER__TOOL` → (Some(SERVER), TOOL); any other name stays as it is.
pub fn split_mcp(name: &str) -> (Option<String>, String) {
    if let Some(rest) = name.strip_prefix("mcp__")
        && let Some((server, tool)) = rest.split_once("__")
        && !server.is_empty()
        && !tool.is_empty()
    {
        return (Some(server.to_string()), tool.to_string());
    }
    (None, name.to_string())
}

/// A string field of the hook input; absent and null read as None, other types are errors.
fn text(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!(
            "{key}: expected a string, got {}",
            crate::text::json_type(v)
        )),
    }
}

fn required(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    text(obj, key)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("{key}: missing from the hook input"))
}

/// The tool input object (`tool_input`, or another key some hosts use).
fn object(obj: &Map<String, Value>, key: &str) -> Result<Map<String, Value>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(v) => Err(format!(
            "{key}: expected an object, got {}",
            crate::text::json_type(v)
        )),
    }
}

/// The context every host fills the same way.
fn base_context(
    obj: &Map<String, Value>,
    event: &str,
    session: Option<&str>,
) -> BTreeMap<String, String> {
    let mut c = BTreeMap::new();
    c.insert("event".into(), event.to_string());
    if let Some(s) = session {
        c.insert("session".into(), s.to_string());
    }
    if let Ok(Some(cwd)) = text(obj, "cwd")
        && !cwd.is_empty()
    {
        c.insert("cwd".into(), cwd);
    }
    c
}

#[cfg(test)]
mod tests;
