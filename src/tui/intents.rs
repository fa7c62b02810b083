//! What keys ask for (intents), and how the console state carries them out: moving, opening
//! and closing views, prompts, and decisions (guarded: only on what the reviewer has seen).

use super::inbox::NoticeKind;
use super::keymap::Action;
use super::runs::TranscriptView;
use super::sanitize::sanitize;
use super::state::{ConsoleState, View};
use super::views::{FullView, HelpView, Layer, RunsView, ServersView};
use crate::frontend::DecisionRequest;
use crossterm::event::{Event as CtEvent, KeyEvent};
use std::time::Instant;
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;
use uuid::Uuid;

/// Common deny reasons offered in the deny prompt.
pub const COMMON_REASONS: &[&str] = &[
    "Not justified by the agent's reasoning",
    "Amount too high: needs a manager's sign-off",
    "Wrong customer, order or target",
    "Duplicate of an earlier request",
    "Not allowed outside business hours",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    By(isize),
    Page(isize),
    Top,
    Bottom,
}

impl Move {
    pub fn from_action(a: Action) -> Option<Move> {
        Some(match a {
            Action::Down => Move::By(1),
            Action::Up => Move::By(-1),
            Action::PageDown => Move::Page(1),
            Action::PageUp => Move::Page(-1),
            Action::Top => Move::Top,
            Action::Bottom => Move::Bottom,
            _ => return None,
        })
    }

    pub fn apply(self, cur: usize, len: usize, page: usize) -> usize {
        if len == 0 {
            return 0;
        }
        let last = len - 1;
        match self {
            Move::By(d) => cur.saturating_add_signed(d).min(last),
            Move::Page(d) => cur
                .saturating_add_signed(d * page.max(1) as isize)
                .min(last),
            Move::Top => 0,
            Move::Bottom => last,
        }
    }
}

/// The kinds of decision keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecideKind {
    Approve,
    ApproveRun,
    Deny,
    Edit,
    /// Not a decision, but guarded like one: it hands the approval to other reviewers.
    Escalate,
}

/// What a key asks for, before the state decides whether it may happen.
#[derive(Clone, Debug, PartialEq)]
pub enum Intent {
    Quit,
    ToggleHelp,
    FocusNext,
    FocusPrev,
    MoveQueue(Move),
    MoveSelection(Move),
    ScrollDetail(Move),
    ScrollHistory(Move),
    Decide(DecideKind),
    /// Open the selected pending approval full-screen, or close the full-screen view.
    ToggleFull,
    /// Open the selected history row: the decided approval, full-screen.
    OpenHistory,
    OpenFilter,
    ClearFilter,
    CloseOverlay,
    /// A key for the open text prompt.
    PromptKey(KeyEvent),
    /// Pick the next/previous common deny reason.
    PromptPick(isize),
    PromptSubmit,
    /// Show or hide the runs view.
    ToggleRuns,
    MoveRun(Move),
    /// Show or hide the MCP servers view.
    ToggleServers,
    MoveServer(Move),
    /// The transcript of the selected approval's run (dashboard) or the selected run (runs view).
    OpenTranscript,
    CloseTranscript,
    ScrollTranscript(Move),
    ScrollHelp(Move),
}

/// What the event loop must do after a key.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Quit,
    Send(DecisionRequest),
    Escalate(Uuid),
    /// Fetch the full run for the transcript; the answer goes to `on_run_fetched`.
    FetchRun(Uuid),
}

impl ConsoleState {
    pub fn apply_intent(&mut self, intent: Intent, mono: Instant) -> Option<Effect> {
        let before = self.dashboard.selected;
        let effect = self.apply_intent_inner(intent, mono);
        if self.dashboard.selected != before {
            self.selection_by_event = false;
        }
        self.clamp_offsets();
        effect
    }

    fn pop_if(&mut self, f: impl Fn(&Layer) -> bool) -> bool {
        if self.stack.last().is_some_and(f) {
            self.stack.pop();
            return true;
        }
        false
    }

    fn apply_intent_inner(&mut self, intent: Intent, mono: Instant) -> Option<Effect> {
        let page = self.page_rows();
        match intent {
            Intent::Quit => return Some(Effect::Quit),
            Intent::ToggleHelp => {
                if !self.pop_if(|l| matches!(l, Layer::Help(_))) {
                    self.stack.push(Layer::Help(HelpView::default()));
                }
            }
            Intent::ScrollHelp(m) => {
                let max = self.help_max_scroll();
                if let Some(Layer::Help(h)) = self.stack.last_mut() {
                    h.scroll = m.apply(h.scroll.min(max), max + 1, 5).min(max);
                }
            }
            Intent::FocusNext => self.dashboard.focus = self.dashboard.focus.step(1),
            Intent::FocusPrev => self.dashboard.focus = self.dashboard.focus.step(-1),
            Intent::MoveQueue(m) => {
                let rows = self.inbox.queue_count() + 1;
                let cur = self.selected_queue_row();
                let next = m.apply(cur, rows, 5);
                if next != cur {
                    self.dashboard.queue = if next == 0 {
                        None
                    } else {
                        self.inbox.queue_name(next - 1).map(str::to_string)
                    };
                    self.rebuild_filter();
                    self.reselect();
                    self.dashboard.list_offset = 0;
                }
            }
            Intent::MoveSelection(m) => {
                let len = self.visible().len();
                if len > 0 {
                    let cur = self.selected_index().unwrap_or(0);
                    let next = m.apply(cur, len, page.pending);
                    if next != cur || self.dashboard.selected.is_none() {
                        self.select_at(next);
                    }
                }
            }
            Intent::ScrollDetail(m) => {
                let (lines, rows) = self.detail_size();
                let max = lines.saturating_sub(rows);
                let scroll = match self.stack.last_mut() {
                    Some(Layer::Full(f)) => &mut f.scroll,
                    _ => &mut self.dashboard.detail_scroll,
                };
                *scroll = m.apply((*scroll).min(max), max + 1, rows).min(max);
            }
            Intent::ScrollHistory(m) => {
                let len = self.history_len();
                let d = &mut self.dashboard;
                d.history_sel = m.apply(d.history_sel, len, page.history);
            }
            Intent::ToggleFull => {
                if !self.pop_if(|l| matches!(l, Layer::Full(_)))
                    && let Some(id) = self.dashboard.selected
                {
                    self.stack.push(Layer::Full(FullView {
                        id,
                        decided: false,
                        scroll: 0,
                    }));
                }
            }
            Intent::OpenHistory => {
                let Some(h) = self.selected_history() else {
                    self.notify(NoticeKind::Info, "no decision selected".into(), mono);
                    return None;
                };
                let id = h.approval.id;
                self.stack.push(Layer::Full(FullView {
                    id,
                    decided: true,
                    scroll: 0,
                }));
            }
            Intent::OpenFilter => {
                let f = self.dashboard.filter.clone();
                self.stack.push(Layer::Filter(Input::new(f)));
            }
            Intent::ClearFilter => {
                self.dashboard.filter.clear();
                self.rebuild_filter();
                self.reselect();
                self.pop_if(|l| matches!(l, Layer::Filter(_)));
            }
            Intent::CloseOverlay => {
                self.pop_if(Layer::is_prompt);
            }
            Intent::Decide(kind) => return self.decide(kind, mono),
            Intent::PromptKey(k) => {
                let ev = CtEvent::Key(k);
                match self.stack.last_mut() {
                    Some(Layer::Deny(p)) => {
                        let changed = p.input.handle_event(&ev).is_some_and(|c| c.value);
                        if changed {
                            p.picked = None;
                            p.error = None;
                        }
                    }
                    Some(Layer::Edit(p)) => {
                        p.input.handle_event(&ev);
                    }
                    Some(Layer::Filter(i)) => {
                        i.handle_event(&ev);
                    }
                    _ => {}
                }
                self.after_prompt_edit();
            }
            Intent::PromptPick(d) => {
                if let Some(Layer::Deny(p)) = self.stack.last_mut() {
                    let n = COMMON_REASONS.len() as isize;
                    let next = match p.picked {
                        None if d > 0 => 0,
                        None => n - 1,
                        Some(i) => (i as isize + d).rem_euclid(n),
                    } as usize;
                    p.picked = Some(next);
                    p.input = Input::new(COMMON_REASONS[next].to_string());
                    p.error = None;
                }
            }
            Intent::PromptSubmit => return self.submit_prompt(mono),
            Intent::ToggleRuns => {
                let was = self.view() == View::Runs;
                self.stack
                    .retain(|l| !matches!(l, Layer::Runs(_) | Layer::Servers(_)));
                // The view opens at its top (active runs first), not on a run picked long
                // ago that has since moved down the list.
                if !was {
                    self.stack.push(Layer::Runs(RunsView {
                        selected: self.inbox.runs.order().first().copied(),
                        offset: 0,
                    }));
                }
            }
            Intent::MoveRun(m) => {
                let len = self.inbox.runs.len();
                let cur = self.selected_run_index().unwrap_or(0);
                let order = self.inbox.runs.order().to_vec();
                if let Some(Layer::Runs(v)) = self.stack.last_mut()
                    && len > 0
                {
                    v.selected = Some(order[m.apply(cur, len, page.main)]);
                }
            }
            Intent::ToggleServers => {
                let was = self.view() == View::Servers;
                self.stack
                    .retain(|l| !matches!(l, Layer::Runs(_) | Layer::Servers(_)));
                if !was {
                    self.stack.push(Layer::Servers(ServersView::default()));
                }
            }
            Intent::MoveServer(m) => {
                let len = self.servers().len();
                let cur = self.selected_server();
                if let Some(Layer::Servers(v)) = self.stack.last_mut() {
                    v.selected = m.apply(cur, len, page.main);
                }
            }
            Intent::OpenTranscript => return self.open_transcript(mono),
            Intent::CloseTranscript => {
                self.pop_if(|l| matches!(l, Layer::Transcript(_)));
            }
            Intent::ScrollTranscript(m) => {
                let (lines, rows) = self.transcript_size();
                let max = lines.saturating_sub(rows);
                if let Some(Layer::Transcript(t)) = self.stack.last_mut() {
                    t.scroll = m.apply(t.scroll.min(max), max + 1, rows).min(max);
                }
            }
        }
        None
    }

    fn open_transcript(&mut self, mono: Instant) -> Option<Effect> {
        let id = if self.view() == View::Runs {
            let Some(id) = self.selected_run() else {
                self.notify(NoticeKind::Info, "no run selected".into(), mono);
                return None;
            };
            id
        } else {
            let Some(e) = self.selected_entry() else {
                self.notify(NoticeKind::Info, "nothing selected".into(), mono);
                return None;
            };
            let a = &e.approval;
            match (&a.run_id, Self::run_of(a)) {
                (_, Some(id)) => id,
                (None, None) => {
                    self.notify(
                        NoticeKind::Info,
                        "no transcript: this is an external submission, not a run".into(),
                        mono,
                    );
                    return None;
                }
                (Some(r), None) => {
                    let text = format!(
                        "no transcript: run {} is the submitter's, not a gatehouse run",
                        sanitize(r).0
                    );
                    self.notify(NoticeKind::Info, text, mono);
                    return None;
                }
            }
        };
        self.stack
            .push(Layer::Transcript(Box::new(TranscriptView::new(id))));
        Some(Effect::FetchRun(id))
    }

    fn after_prompt_edit(&mut self) {
        match self.stack.last_mut() {
            Some(Layer::Edit(p)) => p.reparse(),
            Some(Layer::Filter(i)) if i.value() != self.dashboard.filter => {
                self.dashboard.filter = i.value().to_string();
                self.rebuild_filter();
                self.reselect();
                self.dashboard.list_offset = 0;
                self.dashboard.history_sel = 0;
                self.dashboard.history_offset = 0;
            }
            _ => {}
        }
    }

    /// A bracketed paste: text for an open prompt, never a decision.
    pub fn handle_paste(&mut self, text: &str, mono: Instant) {
        let clean: String = text
            .chars()
            .map(|c| {
                if super::sanitize::needs_escape(c) {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        let input = match self.stack.last_mut() {
            Some(Layer::Deny(p)) => Some(&mut p.input),
            Some(Layer::Edit(p)) => Some(&mut p.input),
            Some(Layer::Filter(i)) => Some(i),
            _ => None,
        };
        match input {
            Some(input) => {
                for c in clean.chars() {
                    input.handle(tui_input::InputRequest::InsertChar(c));
                }
                self.after_prompt_edit();
            }
            None => self.notify(
                NoticeKind::Warn,
                "paste ignored: pasted text never decides".into(),
                mono,
            ),
        }
        self.dirty = true;
    }
}
