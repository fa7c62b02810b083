//! The console's view of agent runs: summaries from the snapshot and `run.*` events (for the
//! runs view), and the full run of an open transcript (fetched on demand: events carry no
//! conversation).

use super::sanitize::{has_escapes, sanitize};
use crate::domain::Message;
use crate::domain::{CallState, Run, RunSummary, Timestamp};
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;

/// Finished runs kept for the runs view (the most recently updated); active ones are all kept.
pub const FINISHED_RUNS_KEPT: usize = 500;

/// One run as the runs view shows it, sanitised once on arrival.
#[derive(Clone, Debug)]
pub struct RunEntry {
    pub summary: RunSummary,
    /// Sequence number of the event (or snapshot) this state came from.
    pub seq: u64,
    pub agent: String,
    /// What the run waits on, or its final output or error, on one line.
    pub outcome: String,
    pub input: String,
    /// Some text of this run needed escaping: show the warning badge.
    pub escaped: bool,
}

impl RunEntry {
    pub fn new(summary: RunSummary, seq: u64) -> RunEntry {
        let one_line = |s: &str| sanitize(s.trim()).0.into_owned();
        let outcome_raw = if summary.status.is_finished() {
            summary
                .error
                .as_deref()
                .or(summary.output.as_deref())
                .unwrap_or("")
        } else {
            summary.waiting_on.as_deref().unwrap_or("")
        };
        let escaped = has_escapes(&summary.agent)
            || has_escapes(&summary.input)
            || summary.waiting_on.as_deref().is_some_and(has_escapes)
            || summary.output.as_deref().is_some_and(has_escapes)
            || summary.error.as_deref().is_some_and(has_escapes);
        RunEntry {
            agent: one_line(&summary.agent),
            outcome: one_line(outcome_raw),
            input: one_line(&summary.input),
            escaped,
            seq,
            summary,
        }
    }

    pub fn id(&self) -> Uuid {
        self.summary.run_id
    }
}

/// Runs by id, plus the order the runs view shows them in: active runs first, then finished
/// ones; newest first within each.
#[derive(Debug, Default)]
pub struct Runs {
    by_id: HashMap<Uuid, RunEntry>,
    order: Vec<Uuid>,
}

impl Runs {
    /// The picture of a snapshot: it replaces everything.
    pub fn replace(&mut self, runs: Vec<RunSummary>, seq: u64) {
        self.by_id.clear();
        for r in runs {
            self.by_id.insert(r.run_id, RunEntry::new(r, seq));
        }
        self.rebuild();
    }

    /// A run's new state; ignored when older than what is held. Returns whether it applied.
    pub fn apply(&mut self, s: RunSummary, seq: u64) -> bool {
        if let Some(e) = self.by_id.get(&s.run_id) {
            let older = if seq == 0 || e.seq == 0 {
                // no sequence to compare (a remote snapshot): the clock decides
                seq < e.seq || s.updated_at < e.summary.updated_at
            } else {
                seq <= e.seq
            };
            if older {
                return false;
            }
        }
        self.by_id.insert(s.run_id, RunEntry::new(s, seq));
        self.rebuild();
        true
    }

    fn rebuild(&mut self) {
        let mut finished: Vec<(Timestamp, Uuid)> = self
            .by_id
            .values()
            .filter(|e| e.summary.status.is_finished())
            .map(|e| (e.summary.updated_at, e.id()))
            .collect();
        if finished.len() > FINISHED_RUNS_KEPT {
            finished.sort_unstable();
            let drop = finished.len() - FINISHED_RUNS_KEPT;
            for (_, id) in &finished[..drop] {
                self.by_id.remove(id);
            }
        }
        let mut order: Vec<(bool, std::cmp::Reverse<(Timestamp, Uuid)>)> = self
            .by_id
            .values()
            .map(|e| {
                (
                    e.summary.status.is_finished(),
                    std::cmp::Reverse((e.summary.created_at, e.id())),
                )
            })
            .collect();
        order.sort_unstable();
        self.order = order.into_iter().map(|(_, r)| r.0.1).collect();
    }

    pub fn get(&self, id: &Uuid) -> Option<&RunEntry> {
        self.by_id.get(id)
    }

    /// Ids in display order.
    pub fn order(&self) -> &[Uuid] {
        &self.order
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn active(&self) -> usize {
        self.by_id
            .values()
            .filter(|e| !e.summary.status.is_finished())
            .count()
    }

    pub fn index_of(&self, id: &Uuid) -> Option<usize> {
        self.order.iter().position(|x| x == id)
    }
}

/// An open transcript: the run as last fetched, and whether a fetch is due or under way.
#[derive(Clone, Debug)]
pub struct TranscriptView {
    pub run_id: Uuid,
    pub run: Option<Run>,
    /// Why the last fetch failed.
    pub error: Option<String>,
    /// A fetch is under way.
    pub loading: bool,
    /// The run changed since the last fetch: fetch again once the current one is back.
    pub stale: bool,
    pub scroll: usize,
}

impl TranscriptView {
    pub fn new(run_id: Uuid) -> TranscriptView {
        TranscriptView {
            run_id,
            run: None,
            error: None,
            loading: true,
            stale: false,
            scroll: 0,
        }
    }
}

/// Whether any untrusted text of a run (its conversation included) needs escaping.
pub fn run_has_escapes(run: &Run) -> bool {
    let opt = |s: &Option<String>| s.as_deref().is_some_and(has_escapes);
    has_escapes(&run.agent)
        || has_escapes(&run.input)
        || opt(&run.output)
        || opt(&run.error)
        || run.messages.iter().any(|m| match m {
            Message::System { content } | Message::User { content } => multiline_escapes(content),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                content.as_deref().is_some_and(multiline_escapes)
                    || tool_calls.iter().any(|c| {
                        has_escapes(&c.name)
                            || has_escapes(&c.id)
                            || match serde_json::from_str::<Value>(&c.arguments) {
                                Ok(v) => value_escapes(&v),
                                Err(_) => has_escapes(&c.arguments),
                            }
                    })
            }
            Message::Tool {
                tool_call_id,
                content,
            } => has_escapes(tool_call_id) || multiline_escapes(content),
        })
        || run.calls.iter().any(|c| {
            has_escapes(&c.tool)
                || opt(&c.server)
                || match &c.state {
                    CallState::Rejected { message } | CallState::Denied { message, .. } => {
                        multiline_escapes(message)
                    }
                    CallState::Done { output } => multiline_escapes(output.text()),
                    CallState::Approved { arguments, .. }
                    | CallState::Executing { arguments, .. }
                    | CallState::OutcomeUnknown { arguments, .. } => map_escapes(arguments),
                    CallState::Waiting { .. } => false,
                }
                || c.arguments.as_ref().is_some_and(map_escapes)
        })
}

/// Whether a JSON value holds text that needs escaping (`\n` and `\t` in strings are shown
/// as JSON escapes and are benign).
pub fn value_escapes(v: &Value) -> bool {
    match v {
        Value::String(s) => s
            .chars()
            .any(|c| c != '\n' && c != '\t' && super::sanitize::needs_escape(c)),
        Value::Array(a) => a.iter().any(value_escapes),
        Value::Object(m) => m.iter().any(|(k, v)| has_escapes(k) || value_escapes(v)),
        _ => false,
    }
}

fn map_escapes(m: &serde_json::Map<String, Value>) -> bool {
    m.iter().any(|(k, v)| has_escapes(k) || value_escapes(v))
}

/// Escapes other than line breaks (which multi-line text keeps).
fn multiline_escapes(s: &str) -> bool {
    s.chars()
        .any(|c| c != '\n' && super::sanitize::needs_escape(c))
}
