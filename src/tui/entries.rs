//! What the console keeps of each approval: sanitised once on arrival, with the text the
//! list shows and the `/` filter matches. Knows no terminal.

use super::sanitize::{has_escapes, sanitize};
use crate::domain::{Approval, Timestamp};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Sort order of the pending list: oldest first (the most urgent), ties by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortKey {
    pub created_ms: i64,
    pub id: Uuid,
}

impl SortKey {
    pub fn of(a: &Approval) -> SortKey {
        SortKey {
            created_ms: a.created_at.timestamp_millis(),
            id: a.id,
        }
    }
}

/// A pending approval plus what the list needs, sanitised once on arrival.
#[derive(Clone, Debug)]
pub struct Entry {
    pub approval: Approval,
    pub tool: String,
    pub agent: String,
    pub server: String,
    pub policy: String,
    /// The arguments in one line: a shell command, else the first fields (sanitised).
    pub summary: String,
    /// Some text of this approval needed escaping: show the warning badge.
    pub escaped: bool,
    /// `1 of 2 (alice)` under a two-person rule (sanitised).
    pub quorum: Option<String>,
    /// Lower-case text the filter matches against.
    haystack: String,
}

impl Entry {
    pub fn new(approval: Approval) -> Entry {
        let tool = sanitize(&approval.tool).0.into_owned();
        let agent = approval
            .agent
            .as_deref()
            .map(|s| sanitize(s).0.into_owned())
            .unwrap_or_default();
        let server = approval
            .server
            .as_deref()
            .map(|s| sanitize(s).0.into_owned())
            .unwrap_or_default();
        let policy = approval
            .policy
            .name
            .as_deref()
            .map(|s| sanitize(s).0.into_owned())
            .unwrap_or_else(|| "no policy".into());
        let escaped = approval_has_escapes(&approval);
        let summary = sanitize(&args_summary(&approval.arguments)).0.into_owned();
        let quorum = approval
            .quorum_summary()
            .map(|q| sanitize(&q).0.into_owned());
        // the filter matches argument text too: keys and values as the reviewer reads them
        let haystack = format!(
            "{} {} {} {} {} {} {}\n{}",
            tool,
            agent,
            server,
            policy,
            approval.queue,
            approval.run_id.as_deref().unwrap_or(""),
            approval.id,
            args_text(&approval.arguments)
        )
        .to_lowercase();
        Entry {
            approval,
            tool,
            agent,
            server,
            policy,
            summary,
            escaped,
            quorum,
            haystack,
        }
    }

    pub fn key(&self) -> SortKey {
        SortKey::of(&self.approval)
    }

    pub fn matches(&self, needle_lower: &str) -> bool {
        needle_lower.is_empty() || self.haystack.contains(needle_lower)
    }
}

/// Whether any untrusted text of an approval needs escaping (the warning badge).
pub fn approval_has_escapes(a: &Approval) -> bool {
    fn value_has(v: &Value) -> bool {
        match v {
            // `\n` and `\t` inside JSON strings are shown as JSON escapes and are benign.
            Value::String(s) => s
                .chars()
                .any(|c| c != '\n' && c != '\t' && super::sanitize::needs_escape(c)),
            Value::Array(a) => a.iter().any(value_has),
            Value::Object(m) => m.iter().any(|(k, v)| has_escapes(k) || value_has(v)),
            _ => false,
        }
    }
    let opt = |s: &Option<String>| s.as_deref().is_some_and(has_escapes);
    has_escapes(&a.tool)
        || opt(&a.agent)
        || opt(&a.server)
        || opt(&a.run_id)
        || has_escapes(&a.requested_by)
        || has_escapes(&a.queue)
        || opt(&a.policy.name)
        || has_escapes(&a.policy.reason)
        || a.reasoning.as_deref().is_some_and(|r| {
            r.chars()
                .any(|c| c != '\n' && super::sanitize::needs_escape(c))
        })
        || a.arguments
            .iter()
            .any(|(k, v)| has_escapes(k) || value_has(v))
        || a.requested_arguments
            .as_ref()
            .is_some_and(|m| m.iter().any(|(k, v)| has_escapes(k) || value_has(v)))
        || a.context
            .as_ref()
            .is_some_and(|c| c.iter().any(|(k, v)| has_escapes(k) || has_escapes(v)))
}

/// A decided approval, for the history pane.
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    pub approval: Approval,
    pub tool: String,
    /// The MCP server of the tool; empty for a local tool or an external submission.
    pub server: String,
    pub by: String,
    pub reason: String,
    pub escaped: bool,
    /// Lower-case text the `/` filter matches: tool, reviewer, outcome, reason, agent, queue,
    /// server.
    haystack: String,
}

impl HistoryEntry {
    pub fn new(approval: Approval) -> HistoryEntry {
        let tool = sanitize(&approval.tool).0.into_owned();
        let server = approval
            .server
            .as_deref()
            .map(|s| sanitize(s).0.into_owned())
            .unwrap_or_default();
        let (by, reason) = match &approval.decision {
            Some(d) => (
                sanitize(&d.by).0.into_owned(),
                d.reason
                    .as_deref()
                    .map(|r| sanitize(r).0.into_owned())
                    .unwrap_or_default(),
            ),
            None => (String::new(), String::new()),
        };
        let escaped = approval_has_escapes(&approval)
            || approval.decision.as_ref().is_some_and(|d| {
                has_escapes(&d.by) || d.reason.as_deref().is_some_and(has_escapes)
            });
        let haystack = format!(
            "{tool}\n{by}\n{}\n{reason}\n{}\n{}\n{server}",
            approval.status.as_str(),
            approval.agent.as_deref().unwrap_or(""),
            approval.queue
        )
        .to_lowercase();
        HistoryEntry {
            approval,
            tool,
            server,
            by,
            reason,
            escaped,
            haystack,
        }
    }

    /// Whether the entry matches a lower-case filter (empty matches all).
    pub fn matches(&self, needle: &str) -> bool {
        needle.is_empty() || self.haystack.contains(needle)
    }

    pub fn at(&self) -> Timestamp {
        self.approval
            .decision
            .as_ref()
            .map(|d| d.at)
            .unwrap_or(self.approval.created_at)
    }
}

/// The last 8 hex digits of an id (UUIDv7 ids share their time prefix, so take the tail).
pub fn short_id(id: &Uuid) -> String {
    let s = id.simple().to_string();
    s[s.len() - 8..].to_string()
}

pub(super) fn insert_sorted(v: &mut Vec<SortKey>, k: SortKey) {
    match v.binary_search(&k) {
        Ok(_) => {}
        Err(i) => v.insert(i, k),
    }
}

pub(super) fn remove_sorted(v: &mut Vec<SortKey>, k: &SortKey) {
    if let Ok(i) = v.binary_search(k) {
        v.remove(i);
    }
}

/// Compact JSON with every non-ASCII character escaped as `\uXXXX`, so the edit prompt shows
/// exactly the bytes that will be sent, with nothing invisible in them.
pub fn ascii_json(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() && c != '\u{7f}' {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// The command of a shell tool: an argument `command` or `cmd`, a string or an array of
/// strings (joined with spaces, each quoted when it holds a space).
pub fn shell_command(args: &Map<String, Value>) -> Option<String> {
    let v = args.get("command").or_else(|| args.get("cmd"))?;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| {
                    if s.is_empty() || s.contains(char::is_whitespace) {
                        format!("{s:?}")
                    } else {
                        s.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    }
}

/// One line that tells calls of one tool apart: the shell command, else `key=value` for the
/// fields in order (strings unquoted, nested values as compact JSON). The list cuts it to fit.
pub fn args_summary(args: &Map<String, Value>) -> String {
    if let Some(cmd) = shell_command(args) {
        return format!("$ {}", one_line(&cmd));
    }
    let parts: Vec<String> = args
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => one_line(s),
                other => serde_json::to_string(other).unwrap_or_default(),
            };
            format!("{k}={v}")
        })
        .collect();
    if parts.is_empty() {
        "(no arguments)".into()
    } else {
        parts.join(" ")
    }
}

/// A summary is one row: line breaks and tabs show as their JSON escapes (`\n`), never as
/// spaces — in a shell command a line break starts another command.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// Every key and string/number of the arguments, for the `/` filter.
fn args_text(args: &Map<String, Value>) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push(' ');
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Object(m) => {
                for (k, v) in m {
                    out.push_str(k);
                    out.push('=');
                    walk(v, out);
                }
            }
            other => {
                out.push_str(&other.to_string());
                out.push(' ');
            }
        }
    }
    let mut out = String::new();
    for (k, v) in args {
        out.push_str(k);
        out.push('=');
        walk(v, &mut out);
    }
    out
}
