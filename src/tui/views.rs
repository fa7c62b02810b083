//! The views of the console, stacked: the dashboard at the bottom, then whatever the reviewer
//! opened over it (runs, servers, a transcript, an approval full-screen, help, a prompt). Each
//! view owns its state (selection, scroll) and lists its key bindings once: the same list maps
//! keys to intents and draws the hints, so hints cannot drift from keys (gitui's
//! `event()`/`commands()`, codex-rs's bottom-pane view stack).

use super::entries::SortKey;
use super::keymap::{Action, Keymap};
use super::runs::TranscriptView;
use super::state::{ConsoleState, DecideKind, Intent, Move};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde_json::{Map, Value};
use tui_input::Input;
use uuid::Uuid;

/// One key binding of a view: the action (its keys come from the keymap), what it asks
/// for, and its hint (`None`: not worth the room in the hints line, still in help).
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub action: Action,
    pub intent: Intent,
    pub hint: Option<&'static str>,
}

fn bind(action: Action, intent: Intent, hint: &'static str) -> Binding {
    Binding {
        action,
        intent,
        hint: Some(hint),
    }
}

fn quiet(action: Action, intent: Intent) -> Binding {
    Binding {
        action,
        intent,
        hint: None,
    }
}

/// The movement actions, each turned into an intent by `f`.
fn moves(f: fn(Move) -> Intent, hint: &'static str) -> Vec<Binding> {
    let mut v = vec![bind(Action::Down, f(Move::By(1)), hint)];
    for (a, m) in [
        (Action::Up, Move::By(-1)),
        (Action::PageDown, Move::Page(1)),
        (Action::PageUp, Move::Page(-1)),
        (Action::Top, Move::Top),
        (Action::Bottom, Move::Bottom),
    ] {
        v.push(quiet(a, f(m)));
    }
    v
}

/// The intent for a key among a view's bindings.
pub fn match_key(bindings: &[Binding], keymap: &Keymap, key: &KeyEvent) -> Option<Intent> {
    let action = keymap.action(key)?;
    bindings
        .iter()
        .find(|b| b.action == action)
        .map(|b| b.intent.clone())
}

/// Whether a key is typed text in a prompt (a plain character).
fn is_text(k: &super::keymap::Key) -> bool {
    matches!(k.code, KeyCode::Char(_)) && !k.ctrl && !k.alt
}

/// The hints line of a view: each shown binding's first key and label. In a prompt, where
/// plain characters are text, the first key that is not one.
pub fn hints_of(
    bindings: &[Binding],
    keymap: &Keymap,
    prompt: bool,
) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    for b in bindings {
        let Some(label) = b.hint else { continue };
        let key = if prompt {
            match keymap.keys(b.action).iter().find(|k| !is_text(k)) {
                Some(k) => k.to_string(),
                None => continue,
            }
        } else if b.action == Action::Down {
            // Down/Up share one hint: `j/k move`
            format!("{}/{}", keymap.hint(Action::Down), keymap.hint(Action::Up))
        } else {
            keymap.hint(b.action)
        };
        out.push((key, label));
    }
    out
}

/// The panes of the dashboard that take focus, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Queues,
    Pending,
    Detail,
    History,
}

impl Focus {
    const ORDER: [Focus; 4] = [Focus::Queues, Focus::Pending, Focus::Detail, Focus::History];
    pub fn step(self, d: isize) -> Focus {
        let i = Self::ORDER.iter().position(|f| *f == self).unwrap_or(0) as isize;
        Self::ORDER[(i + d).rem_euclid(4) as usize]
    }
}

/// The dashboard: queues, pending list, detail, history. Always at the bottom of the stack.
#[derive(Clone, Debug)]
pub struct Dashboard {
    pub focus: Focus,
    /// `None` = every queue.
    pub queue: Option<String>,
    pub selected: Option<Uuid>,
    pub filter: String,
    /// The pending list narrowed by the filter (`None` when there is no filter).
    pub filtered: Option<Vec<SortKey>>,
    pub list_offset: usize,
    pub detail_scroll: usize,
    /// The selected history row (in the filtered history) and the first row shown.
    pub history_sel: usize,
    pub history_offset: usize,
    /// Decisions that arrived above the rows shown (the "N new ↑" mark).
    pub history_new: usize,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            focus: Focus::Pending,
            queue: None,
            selected: None,
            filter: String::new(),
            filtered: None,
            list_offset: 0,
            detail_scroll: 0,
            history_sel: 0,
            history_offset: 0,
            history_new: 0,
        }
    }
}

impl Dashboard {
    pub fn bindings(&self, st: &ConsoleState) -> Vec<Binding> {
        let mut v = Vec::new();
        let decide = |k| Intent::Decide(k);
        if let Some(e) = st.selected_entry() {
            v.push(bind(
                Action::Approve,
                decide(DecideKind::Approve),
                "approve",
            ));
            v.push(bind(Action::Deny, decide(DecideKind::Deny), "deny"));
            if e.approval.run_id.is_some() {
                v.push(bind(
                    Action::ApproveRun,
                    decide(DecideKind::ApproveRun),
                    "approve run",
                ));
            } else {
                v.push(quiet(Action::ApproveRun, decide(DecideKind::ApproveRun)));
            }
            if ConsoleState::editable(&e.approval) {
                v.push(bind(Action::Edit, decide(DecideKind::Edit), "edit"));
            } else {
                v.push(quiet(Action::Edit, decide(DecideKind::Edit)));
            }
            v.push(bind(
                Action::Escalate,
                decide(DecideKind::Escalate),
                "escalate",
            ));
        } else {
            for (a, k) in [
                (Action::Approve, DecideKind::Approve),
                (Action::Deny, DecideKind::Deny),
                (Action::ApproveRun, DecideKind::ApproveRun),
                (Action::Edit, DecideKind::Edit),
                (Action::Escalate, DecideKind::Escalate),
            ] {
                v.push(quiet(a, decide(k)));
            }
        }
        if self.focus == Focus::History && st.history_len() > 0 {
            v.push(bind(Action::Open, Intent::OpenHistory, "open decided"));
        } else if st.selected_entry().is_some() {
            v.push(bind(Action::Open, Intent::ToggleFull, "open"));
        } else {
            v.push(quiet(Action::Open, Intent::ToggleFull));
        }
        let run = st
            .selected_entry()
            .is_some_and(|e| ConsoleState::run_of(&e.approval).is_some());
        if run {
            v.push(bind(
                Action::Transcript,
                Intent::OpenTranscript,
                "transcript",
            ));
        } else {
            v.push(quiet(Action::Transcript, Intent::OpenTranscript));
        }
        v.push(bind(Action::Help, Intent::ToggleHelp, "help"));
        v.push(bind(Action::Quit, Intent::Quit, "quit"));
        if st.inbox.servers().is_empty() {
            v.push(quiet(Action::Servers, Intent::ToggleServers));
        } else {
            v.push(bind(Action::Servers, Intent::ToggleServers, "servers"));
        }
        v.push(bind(Action::Runs, Intent::ToggleRuns, "runs"));
        v.push(bind(Action::Filter, Intent::OpenFilter, "filter"));
        if !self.filter.is_empty() {
            v.push(bind(Action::Close, Intent::ClearFilter, "clear filter"));
        }
        v.push(bind(Action::NextPane, Intent::FocusNext, "pane"));
        v.push(quiet(Action::PrevPane, Intent::FocusPrev));
        let f: fn(Move) -> Intent = match self.focus {
            Focus::Queues => Intent::MoveQueue,
            Focus::Pending => Intent::MoveSelection,
            Focus::Detail => Intent::ScrollDetail,
            Focus::History => Intent::ScrollHistory,
        };
        v.extend(moves(f, "move"));
        v
    }
}

/// The runs view (`r`).
#[derive(Clone, Debug, Default)]
pub struct RunsView {
    pub selected: Option<Uuid>,
    pub offset: usize,
}

impl RunsView {
    pub fn bindings(&self, st: &ConsoleState) -> Vec<Binding> {
        let mut v = vec![
            bind(Action::Open, Intent::OpenTranscript, "transcript"),
            quiet(Action::Transcript, Intent::OpenTranscript),
            bind(Action::Runs, Intent::ToggleRuns, "close"),
            quiet(Action::Close, Intent::ToggleRuns),
        ];
        if !st.inbox.servers().is_empty() {
            v.push(bind(Action::Servers, Intent::ToggleServers, "servers"));
        } else {
            v.push(quiet(Action::Servers, Intent::ToggleServers));
        }
        v.push(bind(Action::Help, Intent::ToggleHelp, "help"));
        v.push(bind(Action::Quit, Intent::Quit, "quit"));
        v.extend(moves(Intent::MoveRun, "move"));
        v
    }
}

/// The MCP servers view (`S`).
#[derive(Clone, Debug, Default)]
pub struct ServersView {
    pub selected: usize,
    pub offset: usize,
}

impl ServersView {
    pub fn bindings(&self) -> Vec<Binding> {
        let mut v = vec![
            bind(Action::Servers, Intent::ToggleServers, "close"),
            quiet(Action::Close, Intent::ToggleServers),
            bind(Action::Runs, Intent::ToggleRuns, "runs"),
            bind(Action::Help, Intent::ToggleHelp, "help"),
            bind(Action::Quit, Intent::Quit, "quit"),
        ];
        v.extend(moves(Intent::MoveServer, "move"));
        v
    }
}

fn transcript_bindings() -> Vec<Binding> {
    let mut v = vec![
        bind(Action::Close, Intent::CloseTranscript, "close"),
        quiet(Action::Transcript, Intent::CloseTranscript),
    ];
    v.extend(moves(Intent::ScrollTranscript, "scroll"));
    v.push(bind(Action::Help, Intent::ToggleHelp, "help"));
    v.push(bind(Action::Quit, Intent::Quit, "quit"));
    v
}

/// One approval full-screen: a pending one (decide keys work once it was seen in full) or a
/// decided one from the history (read only).
#[derive(Clone, Debug)]
pub struct FullView {
    pub id: Uuid,
    pub decided: bool,
    pub scroll: usize,
}

impl FullView {
    pub fn bindings(&self, st: &ConsoleState) -> Vec<Binding> {
        let mut v = Vec::new();
        if !self.decided {
            v = st.dashboard.bindings(st);
            v.retain(|b| {
                !matches!(
                    b.action,
                    Action::Open
                        | Action::Close
                        | Action::NextPane
                        | Action::PrevPane
                        | Action::Filter
                        | Action::Runs
                        | Action::Servers
                ) && !matches!(
                    b.intent,
                    Intent::MoveSelection(_)
                        | Intent::MoveQueue(_)
                        | Intent::ScrollDetail(_)
                        | Intent::ScrollHistory(_)
                )
            });
        }
        v.insert(0, bind(Action::Open, Intent::ToggleFull, "close"));
        v.push(quiet(Action::Close, Intent::ToggleFull));
        if self.decided {
            v.push(bind(Action::Help, Intent::ToggleHelp, "help"));
            v.push(bind(Action::Quit, Intent::Quit, "quit"));
        }
        v.extend(moves(Intent::ScrollDetail, "scroll"));
        v
    }
}

#[derive(Clone, Debug, Default)]
pub struct HelpView {
    pub scroll: usize,
}

fn help_bindings() -> Vec<Binding> {
    let mut v = vec![
        bind(Action::Close, Intent::ToggleHelp, "close"),
        quiet(Action::Help, Intent::ToggleHelp),
        quiet(Action::Quit, Intent::ToggleHelp),
    ];
    v.extend(moves(Intent::ScrollHelp, "scroll"));
    v
}

/// What the deny/edit prompts decide on: fixed when the key was pressed.
#[derive(Clone, Debug)]
pub struct Target {
    pub id: Uuid,
    pub arguments_sha256: String,
}

#[derive(Clone, Debug)]
pub struct DenyPrompt {
    pub target: Target,
    pub input: Input,
    /// Highlighted common reason, if the reviewer picked one.
    pub picked: Option<usize>,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct EditPrompt {
    pub target: Target,
    pub input: Input,
    /// The parsed object, or the reason it is not one.
    pub parsed: Result<Map<String, Value>, String>,
}

impl EditPrompt {
    pub fn reparse(&mut self) {
        self.parsed = match serde_json::from_str::<Value>(self.input.value()) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err("the arguments must be a JSON object".into()),
            Err(e) => Err(format!("invalid JSON: {e}")),
        };
    }
}

/// A view on the stack over the dashboard.
#[derive(Clone, Debug)]
pub enum Layer {
    Runs(RunsView),
    Servers(ServersView),
    /// Boxed: a run in full is far larger than the other views.
    Transcript(Box<TranscriptView>),
    Full(FullView),
    Help(HelpView),
    Deny(Box<DenyPrompt>),
    Edit(Box<EditPrompt>),
    /// Typing a filter; the filter in force lives in the dashboard.
    Filter(Input),
}

impl Layer {
    /// A prompt takes typed text: plain characters are text, not keys.
    pub fn is_prompt(&self) -> bool {
        matches!(self, Layer::Deny(_) | Layer::Edit(_) | Layer::Filter(_))
    }

    /// Whether the layer covers the whole main area (the dashboard is not seen under it).
    pub fn is_screen(&self) -> bool {
        matches!(
            self,
            Layer::Runs(_) | Layer::Servers(_) | Layer::Transcript(_) | Layer::Full(_)
        )
    }

    pub fn bindings(&self, st: &ConsoleState) -> Vec<Binding> {
        match self {
            Layer::Runs(v) => v.bindings(st),
            Layer::Servers(v) => v.bindings(),
            Layer::Transcript(_) => transcript_bindings(),
            Layer::Full(v) => v.bindings(st),
            Layer::Help(_) => help_bindings(),
            Layer::Deny(_) => vec![
                bind(Action::Open, Intent::PromptSubmit, "deny"),
                bind(Action::Close, Intent::CloseOverlay, "cancel"),
                quiet(Action::Quit, Intent::CloseOverlay),
                bind(Action::Up, Intent::PromptPick(-1), "pick a reason"),
                quiet(Action::Down, Intent::PromptPick(1)),
            ],
            Layer::Edit(_) => vec![
                bind(Action::Open, Intent::PromptSubmit, "approve edited"),
                bind(Action::Close, Intent::CloseOverlay, "cancel"),
                quiet(Action::Quit, Intent::CloseOverlay),
            ],
            Layer::Filter(_) => vec![
                bind(Action::Open, Intent::PromptSubmit, "keep"),
                bind(Action::Close, Intent::ClearFilter, "clear"),
                quiet(Action::Quit, Intent::ClearFilter),
            ],
        }
    }

    /// A key for this layer. In a prompt only keys that are not text go through the keymap
    /// (Enter, Esc, arrows, Ctrl-C); the rest edits the text.
    pub fn key(&self, key: &KeyEvent, st: &ConsoleState) -> Option<Intent> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if self.is_prompt() {
            let text = matches!(key.code, KeyCode::Char(_))
                && !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
            if !text {
                if let Some(i) = match_key(&self.bindings(st), &st.keymap, key) {
                    // Enter acts on its press only (a repeat would submit twice)
                    if i == Intent::PromptSubmit && key.kind != KeyEventKind::Press {
                        return None;
                    }
                    return Some(i);
                }
                if matches!(key.code, KeyCode::Tab | KeyCode::BackTab) {
                    return None;
                }
            }
            return Some(Intent::PromptKey(*key));
        }
        match_key(&self.bindings(st), &st.keymap, key)
    }
}
