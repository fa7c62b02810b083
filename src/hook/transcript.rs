//! The agent's own words before a call, from Claude Code's transcript (JSON lines). Claude Code
//! writes each content block as its own `assistant` record, the text before the `tool_use`,
//! and both are on disk when the hook runs.

use serde_json::Value;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

/// Only the end of a long session's transcript is read: the call is at its end.
const TAIL_BYTES: u64 = 4 * 1024 * 1024;
/// What a reviewer reads, not a whole essay.
const MAX_REASONING: usize = 16 * 1024;

/// How long to wait for the `tool_use` record to reach the disk: Claude Code writes its
/// transcript asynchronously, and on a loaded machine the hook can start first.
const SETTLE: Duration = Duration::from_millis(2500);

/// The latest assistant text of the current turn before the `tool_use` with this id (or
/// before the end, when the id is not on disk within [`SETTLE`]); None when the file is
/// unreadable or the turn has no text.
pub fn claude_code_reasoning(path: &Path, tool_use_id: Option<&str>) -> Option<String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        // The file itself may not be there yet either.
        let (text, found) = read_tail(path, tool_use_id).unwrap_or((None, false));
        if found || tool_use_id.is_none() || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_tail(path: &Path, tool_use_id: Option<&str>) -> Option<(Option<String>, bool)> {
    read_tail_with(path, |lines| latest_text(lines, tool_use_id))
}

/// `scan` over the last [`TAIL_BYTES`] of the file, line by line.
fn read_tail_with<T>(
    path: &Path,
    scan: impl FnOnce(&mut dyn Iterator<Item = &str>) -> T,
) -> Option<T> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut raw = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let mut lines = text.lines();
    if start > 0 {
        lines.next(); // cut mid-record
    }
    Some(scan(&mut lines))
}

/// The latest text, and whether the `tool_use` with this id was found.
pub fn latest_text<'a>(
    lines: impl Iterator<Item = &'a str>,
    tool_use_id: Option<&str>,
) -> (Option<String>, bool) {
    let mut latest: Option<String> = None;
    for line in lines {
        let Ok(record) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let blocks = record.pointer("/message/content").and_then(Value::as_array);
        match record.get("type").and_then(Value::as_str) {
            // A person's prompt starts a new turn: older words are not about this call.
            Some("user") => {
                let tool_results = blocks.is_some_and(|b| {
                    b.iter()
                        .all(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                });
                if !tool_results {
                    latest = None;
                }
            }
            Some("assistant") => {
                for block in blocks.into_iter().flatten() {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            if let Some(t) = block.get("text").and_then(Value::as_str)
                                && !t.trim().is_empty()
                            {
                                latest = Some(t.trim().to_string());
                            }
                        }
                        Some("tool_use")
                            if tool_use_id.is_some()
                                && block.get("id").and_then(Value::as_str) == tool_use_id =>
                        {
                            return (latest.map(|t| crate::text::clip(&t, MAX_REASONING)), true);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (latest.map(|t| crate::text::clip(&t, MAX_REASONING)), false)
}

/// The latest model text of the current turn in Gemini CLI's chat log (JSON lines of
/// `{"type": "user" | "gemini", "content"}` records; a tool's answer is a `user` record of
/// `functionResponse` parts, which does not start a new turn).
pub fn gemini_reasoning(path: &Path) -> Option<String> {
    let (text, _) = read_tail_with(path, |lines| {
        let mut latest: Option<String> = None;
        for line in lines {
            let Ok(record) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            match record.get("type").and_then(Value::as_str) {
                Some("user") => {
                    let tool_answer = record["content"].as_array().is_some_and(|parts| {
                        parts.iter().all(|p| p.get("functionResponse").is_some())
                    });
                    if !tool_answer {
                        latest = None;
                    }
                }
                Some("gemini") => {
                    if let Some(t) = record["content"].as_str().filter(|t| !t.trim().is_empty()) {
                        latest = Some(t.trim().to_string());
                    }
                }
                _ => {}
            }
        }
        (latest.map(|t| crate::text::clip(&t, MAX_REASONING)), true)
    })?;
    text
}

/// The latest assistant text of the current turn in Codex's rollout (JSON lines; model
/// messages are `response_item` records with a `message` payload).
pub fn codex_reasoning(path: &Path) -> Option<String> {
    let (text, _) = read_tail_with(path, |lines| {
        let mut latest: Option<String> = None;
        for line in lines {
            let Ok(record) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let p = &record["payload"];
            if record["type"] != "response_item" || p["type"] != "message" {
                continue;
            }
            match p["role"].as_str() {
                Some("user") => latest = None,
                Some("assistant") => {
                    let text: Vec<&str> = p["content"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c["text"].as_str())
                        .collect();
                    let text = text.join("\n");
                    if !text.trim().is_empty() {
                        latest = Some(text.trim().to_string());
                    }
                }
                _ => {}
            }
        }
        (latest.map(|t| crate::text::clip(&t, MAX_REASONING)), true)
    })?;
    text
}
