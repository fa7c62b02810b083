//! The console's state: the inbox (what is known) and the stack of views (what is shown and
//! how the reviewer moves through it). Only events, keys and decision outcomes change it;
//! drawing only reads it.

pub use super::entries::{
    Entry, HistoryEntry, SortKey, approval_has_escapes, ascii_json, short_id,
};
pub use super::inbox::{HISTORY_LEN, InFlight, Inbox, NOTICE_TTL, Notice, NoticeKind};
pub use super::intents::{COMMON_REASONS, DecideKind, Effect, Intent, Move};
use super::keymap::Keymap;
use super::runs::{RunEntry, TranscriptView};
use super::seen::Seen;
use super::servers::ServerEntry;
pub use super::views::{
    Dashboard, DenyPrompt, EditPrompt, Focus, FullView, Layer, RunsView, ServersView, Target,
};
use crate::domain::{Approval, Timestamp};
use crate::frontend::{Connection, FrontendEvent};
use crossterm::event::{Event as CtEvent, KeyEvent};
use ratatui::layout::Rect;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A decide key is ignored unless the approval's detail has been on screen this long.
pub const DECIDE_GUARD: Duration = Duration::from_millis(300);
/// The same guard when the approval came on screen without the reviewer moving (the one
/// shown before was decided elsewhere, or the first arrival was selected for them).
pub const DECIDE_GUARD_UNASKED: Duration = Duration::from_millis(1000);

/// Which screen fills the main area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Dashboard,
    Runs,
    Servers,
}

pub struct ConsoleState {
    pub title: String,
    pub reviewer: String,
    pub keymap: Keymap,
    /// Wall-clock "now" used for ages and countdowns (set by the loop, fixed in tests).
    pub now: Timestamp,
    /// The monotonic "now" of the same frame (countdowns to an `Instant`).
    pub mono: Instant,
    pub inbox: Inbox,
    pub dashboard: Dashboard,
    /// Views opened over the dashboard, the last on top; keys go to the top one.
    pub stack: Vec<Layer>,
    /// The terminal's size, set by the event loop before drawing; keys page by it.
    pub viewport: Rect,
    /// The approval whose detail was last drawn, since when, and the guard that applies.
    pub(super) on_screen: Option<(Uuid, Instant, Duration)>,
    /// The selection last changed because of an event, not a key.
    pub(super) selection_by_event: bool,
    /// How much of the selected approval's arguments has been on screen.
    pub(super) seen: Seen,
    /// Whether anything changed since the last draw.
    pub dirty: bool,
}

impl ConsoleState {
    pub fn new(title: impl Into<String>, reviewer: impl Into<String>, keymap: Keymap) -> Self {
        ConsoleState {
            title: title.into(),
            reviewer: reviewer.into(),
            keymap,
            now: crate::domain::now(),
            mono: Instant::now(),
            inbox: Inbox::new(),
            dashboard: Dashboard::default(),
            stack: Vec::new(),
            viewport: Rect::new(0, 0, 120, 35),
            on_screen: None,
            selection_by_event: false,
            seen: Seen::default(),
            dirty: true,
        }
    }

    // ----- reading -----

    pub fn connection(&self) -> &Connection {
        &self.inbox.connection
    }

    pub fn notice(&self) -> Option<&Notice> {
        self.inbox.notice.as_ref()
    }

    /// The reviewer is typing in a prompt (deny reason, edit, filter): the console stays quiet.
    pub fn is_typing(&self) -> bool {
        self.top().is_some_and(Layer::is_prompt)
    }

    pub fn top(&self) -> Option<&Layer> {
        self.stack.last()
    }

    /// The topmost view that fills the main area, if any is over the dashboard.
    pub fn screen(&self) -> Option<&Layer> {
        self.stack.iter().rev().find(|l| l.is_screen())
    }

    /// Which list fills the main area (under a transcript or the full approval).
    pub fn view(&self) -> View {
        for l in self.stack.iter().rev() {
            match l {
                Layer::Runs(_) => return View::Runs,
                Layer::Servers(_) => return View::Servers,
                _ => {}
            }
        }
        View::Dashboard
    }

    pub fn transcript(&self) -> Option<&TranscriptView> {
        match self.screen() {
            Some(Layer::Transcript(t)) => Some(t),
            _ => None,
        }
    }

    pub(super) fn transcript_mut(&mut self) -> Option<&mut TranscriptView> {
        self.stack.iter_mut().rev().find_map(|l| match l {
            Layer::Transcript(t) => Some(&mut **t),
            _ => None,
        })
    }

    pub fn full(&self) -> Option<&FullView> {
        match self.screen() {
            Some(Layer::Full(f)) => Some(f),
            _ => None,
        }
    }

    pub fn runs_view(&self) -> Option<&RunsView> {
        self.stack.iter().rev().find_map(|l| match l {
            Layer::Runs(v) => Some(v),
            _ => None,
        })
    }

    pub fn servers_view(&self) -> Option<&ServersView> {
        self.stack.iter().rev().find_map(|l| match l {
            Layer::Servers(v) => Some(v),
            _ => None,
        })
    }

    pub fn focus(&self) -> Focus {
        self.dashboard.focus
    }

    pub fn pending_count(&self) -> usize {
        self.inbox.pending_count()
    }

    pub fn queues(&self) -> impl Iterator<Item = (&str, usize)> {
        self.inbox.queues()
    }

    pub fn queue_count(&self) -> usize {
        self.inbox.queue_count()
    }

    pub fn selected_queue(&self) -> Option<&str> {
        self.dashboard.queue.as_deref()
    }

    /// Index of the selected queue row (0 = all queues).
    pub fn selected_queue_row(&self) -> usize {
        match &self.dashboard.queue {
            None => 0,
            Some(q) => self.inbox.queue_index(q).map_or(0, |i| i + 1),
        }
    }

    pub fn filter(&self) -> &str {
        &self.dashboard.filter
    }

    /// The pending list as shown: the selected queue, filtered.
    pub fn visible(&self) -> &[SortKey] {
        if let Some(f) = &self.dashboard.filtered {
            return f;
        }
        self.inbox.pending(self.dashboard.queue.as_deref())
    }

    pub fn entry(&self, id: &Uuid) -> Option<&Entry> {
        self.inbox.entry(id)
    }

    pub fn selected_id(&self) -> Option<Uuid> {
        self.dashboard.selected
    }

    pub fn selected_entry(&self) -> Option<&Entry> {
        self.dashboard.selected.and_then(|id| self.inbox.entry(&id))
    }

    /// Position of the selection within `visible()`.
    pub fn selected_index(&self) -> Option<usize> {
        let e = self.selected_entry()?;
        self.visible().binary_search(&e.key()).ok()
    }

    /// The approval the detail shows: the full-screen one, else the dashboard's selection.
    pub fn shown_approval(&self) -> Option<&Approval> {
        match self.full() {
            Some(f) if f.decided => self.inbox.history_entry(&f.id).map(|h| &h.approval),
            Some(f) => self.inbox.entry(&f.id).map(|e| &e.approval),
            None => self.selected_entry().map(|e| &e.approval),
        }
    }

    /// Recent decisions, narrowed by the `/` filter like the pending list (a reviewer's
    /// name, a tool, or an outcome such as `denied`).
    pub fn history(&self) -> impl Iterator<Item = &HistoryEntry> {
        let needle = self.dashboard.filter.to_lowercase();
        self.inbox.history().filter(move |h| h.matches(&needle))
    }

    pub fn history_len(&self) -> usize {
        self.history().count()
    }

    /// The history row the history pane has selected.
    pub fn selected_history(&self) -> Option<&HistoryEntry> {
        self.history().nth(self.dashboard.history_sel)
    }

    pub fn inflight(&self, id: &Uuid) -> Option<&InFlight> {
        self.inbox.inflight(id)
    }

    pub fn inflight_count(&self) -> usize {
        self.inbox.inflight_count()
    }

    /// Runs in the order the runs view shows them.
    pub fn runs(&self) -> &[Uuid] {
        self.inbox.runs.order()
    }

    pub fn run(&self, id: &Uuid) -> Option<&RunEntry> {
        self.inbox.run(id)
    }

    pub fn active_runs(&self) -> usize {
        self.inbox.runs.active()
    }

    pub fn selected_run(&self) -> Option<Uuid> {
        self.runs_view().and_then(|v| v.selected)
    }

    pub fn selected_run_index(&self) -> Option<usize> {
        self.selected_run()
            .and_then(|id| self.inbox.runs.index_of(&id))
    }

    /// The MCP servers, in the runner's order.
    pub fn servers(&self) -> &[ServerEntry] {
        self.inbox.servers()
    }

    /// The selected row of the servers view (0 when there are none).
    pub fn selected_server(&self) -> usize {
        self.servers_view()
            .map_or(0, |v| v.selected)
            .min(self.servers().len().saturating_sub(1))
    }

    /// The run of an approval, as the runner knows it (`None` for external submissions,
    /// whose `run_id` is the submitter's own and not a gatehouse run id).
    pub fn run_of(a: &Approval) -> Option<Uuid> {
        a.run_id.as_deref().and_then(|r| Uuid::parse_str(r).ok())
    }

    /// Whether `e` is offered for this approval: its submitter said it honours edits (a
    /// gatehouse run always does). The runner refuses an edit of any other, so offering it for
    /// a `run_id` alone (an external client's own run) only led to a refusal.
    pub fn editable(a: &Approval) -> bool {
        a.editable
    }

    /// The approval whose detail is on screen and may be decided: the dashboard's selection
    /// or the pending approval open full-screen; `None` under the runs or servers view, a
    /// transcript or a decided approval.
    pub fn decidable_on_screen(&self) -> Option<Uuid> {
        match self.screen() {
            None => self.dashboard.selected,
            Some(Layer::Full(f)) if !f.decided => Some(f.id),
            Some(_) => None,
        }
    }

    // ----- events from the runner -----

    pub fn apply(&mut self, ev: FrontendEvent, mono: Instant) {
        self.dirty = true;
        let before = self.dashboard.selected;
        let old_index = self.selected_index();
        let history_before = self.history_len();
        // the servers view keeps its server selected when the list changes
        let server = self
            .servers()
            .get(self.selected_server())
            .map(|e| e.view.name.clone());
        let ch = self.inbox.apply(ev, mono);
        if let Some(name) = server
            && let Some(i) = self.servers().iter().position(|e| e.view.name == name)
        {
            for l in &mut self.stack {
                if let Layer::Servers(v) = l {
                    v.selected = i;
                }
            }
        }
        self.follow(ch, old_index, history_before, mono);
        if self.dashboard.selected != before {
            self.selection_by_event = true;
        }
    }

    /// Drop an expired notice; returns when the current one expires.
    pub fn expire_notice(&mut self, mono: Instant) -> Option<Instant> {
        let (end, dropped) = self.inbox.expire_notice(mono);
        if dropped {
            self.dirty = true;
        }
        end
    }

    pub fn notify(&mut self, kind: NoticeKind, text: String, mono: Instant) {
        self.inbox.notify(kind, text, mono);
        self.dirty = true;
    }

    /// The terminal changed size: keys page by the new layout.
    pub fn resize(&mut self, area: Rect) {
        if area != self.viewport {
            self.viewport = area;
            self.clamp_offsets();
            self.dirty = true;
        }
    }

    /// Record what the last frame showed: the guard for decide keys starts here, and the
    /// arguments rows on screen count as seen.
    pub fn mark_drawn(&mut self, mono: Instant) {
        let shown = self.decidable_on_screen();
        let guard = if self.selection_by_event {
            DECIDE_GUARD_UNASKED
        } else {
            DECIDE_GUARD
        };
        match (shown, self.on_screen) {
            (Some(id), Some((old, _, _))) if id == old => {}
            (Some(id), _) => self.on_screen = Some((id, mono, guard)),
            (None, _) => self.on_screen = None,
        }
        self.record_seen();
        self.dirty = false;
    }

    /// Whether a clock may be on screen (the detail's age and time left, a reconnection's
    /// countdown): the loop then renders each second, and writes only the cells that changed.
    pub fn needs_tick(&self) -> bool {
        self.inbox.pending_count() > 0
            || self.inbox.inflight_count() > 0
            || matches!(self.inbox.connection, Connection::Reconnecting { .. })
            || (self.view() == View::Runs && !self.inbox.runs.is_empty())
            || self.transcript().is_some()
    }

    // ----- keys -----

    /// Map a key to an intent through the view on top.
    pub fn intent_for(&self, key: &KeyEvent) -> Option<Intent> {
        match self.stack.last() {
            Some(l) => l.key(key, self),
            None => super::views::match_key(&self.dashboard.bindings(self), &self.keymap, key),
        }
    }

    /// Key hints for the view on top, from the same bindings that match its keys.
    pub fn hints(&self) -> Vec<(String, &'static str)> {
        let (b, prompt) = match self.stack.last() {
            Some(l) => (l.bindings(self), l.is_prompt()),
            None => (self.dashboard.bindings(self), false),
        };
        super::views::hints_of(&b, &self.keymap, prompt)
    }

    /// Handle a key: the intent, then its effect.
    pub fn handle_key(&mut self, key: &KeyEvent, mono: Instant) -> Option<Effect> {
        // Before anything else: text typed into a prompt changes state without an intent,
        // and must show at once (the reviewer is typing a reason).
        self.dirty = true;
        let intent = self.intent_for(key)?;
        self.apply_intent(intent, mono)
    }

    /// Handle any terminal event (keys, paste, resize).
    pub fn handle_event(&mut self, ev: &CtEvent, mono: Instant) -> Option<Effect> {
        match ev {
            CtEvent::Key(k) => self.handle_key(k, mono),
            CtEvent::Paste(s) => {
                self.handle_paste(s, mono);
                None
            }
            CtEvent::Resize(w, h) => {
                self.resize(Rect::new(0, 0, *w, *h));
                self.dirty = true;
                None
            }
            _ => None,
        }
    }
}
