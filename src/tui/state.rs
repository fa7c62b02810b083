//! The console's view model: updated only from `FrontendEvent`s and keys, never the owner of
//! business state. Pending approvals are indexed by id and kept in sorted per-queue vectors,
//! so the pending list can be virtualised (only visible rows are touched when drawing).

use super::keymap::{Action, Keymap};
use super::runs::{RunEntry, Runs, TranscriptView};
use super::sanitize::{has_escapes, sanitize};
use super::servers::ServerEntry;
use crate::domain::{Approval, AuditKind, Run, RunSummary, Timestamp, Verdict};
use crate::frontend::{Connection, DecisionOutcome, DecisionRequest, FrontendEvent};
use crossterm::event::{Event as CtEvent, KeyCode, KeyEvent, KeyEventKind};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;
use uuid::Uuid;

/// How many decided approvals the history keeps.
pub const HISTORY_LEN: usize = 200;
/// A decide key is ignored unless the approval's detail has been on screen this long.
pub const DECIDE_GUARD: Duration = Duration::from_millis(300);
/// The same guard when the approval came on screen without the reviewer moving (the one
/// shown before was decided elsewhere, or the first arrival was selected for them).
pub const DECIDE_GUARD_UNASKED: Duration = Duration::from_millis(1000);
/// How long a notice stays in the status line.
pub const NOTICE_TTL: Duration = Duration::from_secs(6);

/// Common deny reasons offered in the deny prompt.
pub const COMMON_REASONS: &[&str] = &[
    "Not justified by the agent's reasoning",
    "Amount too high: needs a manager's sign-off",
    "Wrong customer, order or target",
    "Duplicate of an earlier request",
    "Not allowed outside business hours",
];

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
    /// Some text of this approval needed escaping: show the warning badge.
    pub escaped: bool,
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
            .unwrap_or_else(|| "default".into());
        let escaped = approval_has_escapes(&approval);
        let haystack = format!(
            "{} {} {} {} {} {} {}",
            tool,
            agent,
            server,
            policy,
            approval.queue,
            approval.run_id.as_deref().unwrap_or(""),
            approval.id
        )
        .to_lowercase();
        Entry {
            approval,
            tool,
            agent,
            server,
            policy,
            escaped,
            haystack,
        }
    }

    pub fn key(&self) -> SortKey {
        SortKey::of(&self.approval)
    }

    fn matches(&self, needle_lower: &str) -> bool {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    Info,
    Ok,
    Warn,
    Error,
}

#[derive(Clone, Debug)]
pub struct Notice {
    pub text: String,
    pub kind: NoticeKind,
    pub at: Instant,
}

/// The panes that take focus, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Queues,
    Pending,
    Detail,
    History,
}

impl Focus {
    const ORDER: [Focus; 4] = [Focus::Queues, Focus::Pending, Focus::Detail, Focus::History];
    fn step(self, d: isize) -> Focus {
        let i = Self::ORDER.iter().position(|f| *f == self).unwrap_or(0) as isize;
        Self::ORDER[(i + d).rem_euclid(4) as usize]
    }
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
    fn reparse(&mut self) {
        self.parsed = match serde_json::from_str::<Value>(self.input.value()) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err("the arguments must be a JSON object".into()),
            Err(e) => Err(format!("invalid JSON: {e}")),
        };
    }
}

/// What fills the main area (under any overlay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Queues, pending list, detail, history.
    Dashboard,
    /// The runs view (`r`).
    Runs,
    /// The MCP servers view (`S`).
    Servers,
}

/// Modal state on top of the dashboard.
#[derive(Clone, Debug)]
pub enum Overlay {
    None,
    Help,
    /// The selected approval full-screen.
    Full,
    Deny(Box<DenyPrompt>),
    Edit(Box<EditPrompt>),
    /// Typing a filter; the filter text lives in `ConsoleState::filter`.
    Filter(Input),
}

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

    fn apply(self, cur: usize, len: usize, page: usize) -> usize {
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
    ToggleFull,
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

/// A decision sent and not yet answered.
#[derive(Clone, Debug)]
pub struct InFlight {
    pub verdict: Verdict,
    pub label: &'static str,
    pub since: Instant,
}

/// The whole console state: view model plus UI state. Panes read it; only events, keys and
/// outcomes change it.
pub struct ConsoleState {
    pub title: String,
    pub reviewer: String,
    pub connection: Connection,
    /// The runner's event channel closed.
    pub link_closed: bool,
    /// Wall-clock "now" used for ages and countdowns (set by the loop, fixed in tests).
    pub now: Timestamp,
    pub seq: u64,
    pub keymap: Keymap,
    entries: HashMap<Uuid, Entry>,
    all: Vec<SortKey>,
    queues: BTreeMap<String, Vec<SortKey>>,
    history: VecDeque<HistoryEntry>,
    inflight: HashMap<Uuid, InFlight>,
    runs: Runs,
    selected_run: Option<Uuid>,
    /// The MCP servers, in the runner's (config) order.
    servers: Vec<ServerEntry>,
    selected_server: usize,
    pub view: View,
    /// The open transcript, drawn over whichever view is under it.
    pub transcript: Option<TranscriptView>,
    pub focus: Focus,
    pub overlay: Overlay,
    /// `None` = every queue.
    selected_queue: Option<String>,
    selected: Option<Uuid>,
    filter: String,
    filtered: Option<Vec<SortKey>>,
    pub detail_scroll: usize,
    pub history_scroll: usize,
    pub notice: Option<Notice>,
    /// The approval whose detail was last drawn, and since when.
    on_screen: Option<(Uuid, Instant, Duration)>,
    /// The selection last changed because of an event, not a key.
    selection_by_event: bool,
    /// Rows of the pending list at the last draw (for paging), and its first visible row.
    pub list_rows: std::cell::Cell<usize>,
    pub list_offset: std::cell::Cell<usize>,
    /// Lines the detail had at the last draw (to clamp scrolling).
    pub detail_lines: std::cell::Cell<usize>,
    pub detail_rows: std::cell::Cell<usize>,
    /// The same for the runs list and the transcript.
    pub runs_rows: std::cell::Cell<usize>,
    pub runs_offset: std::cell::Cell<usize>,
    pub servers_rows: std::cell::Cell<usize>,
    pub servers_offset: std::cell::Cell<usize>,
    pub transcript_lines: std::cell::Cell<usize>,
    pub transcript_rows: std::cell::Cell<usize>,
    /// The help overlay's scroll (when it is taller than the terminal), and its limit.
    pub help_scroll: usize,
    pub help_max_scroll: std::cell::Cell<usize>,
    /// Whether anything changed since the last draw.
    pub dirty: bool,
}

impl ConsoleState {
    pub fn new(title: impl Into<String>, reviewer: impl Into<String>, keymap: Keymap) -> Self {
        ConsoleState {
            title: title.into(),
            reviewer: reviewer.into(),
            connection: Connection::Local,
            link_closed: false,
            now: crate::domain::now(),
            seq: 0,
            keymap,
            entries: HashMap::new(),
            all: Vec::new(),
            queues: BTreeMap::new(),
            history: VecDeque::new(),
            inflight: HashMap::new(),
            runs: Runs::default(),
            selected_run: None,
            servers: Vec::new(),
            selected_server: 0,
            view: View::Dashboard,
            transcript: None,
            focus: Focus::Pending,
            overlay: Overlay::None,
            selected_queue: None,
            selected: None,
            filter: String::new(),
            filtered: None,
            detail_scroll: 0,
            history_scroll: 0,
            notice: None,
            on_screen: None,
            selection_by_event: false,
            list_rows: std::cell::Cell::new(10),
            list_offset: std::cell::Cell::new(0),
            detail_lines: std::cell::Cell::new(0),
            detail_rows: std::cell::Cell::new(10),
            runs_rows: std::cell::Cell::new(10),
            runs_offset: std::cell::Cell::new(0),
            servers_rows: std::cell::Cell::new(10),
            servers_offset: std::cell::Cell::new(0),
            transcript_lines: std::cell::Cell::new(0),
            transcript_rows: std::cell::Cell::new(10),
            help_scroll: 0,
            help_max_scroll: std::cell::Cell::new(0),
            dirty: true,
        }
    }

    // ----- read access for panes -----

    pub fn pending_count(&self) -> usize {
        self.all.len()
    }

    /// Queue names with their pending counts (queues stay listed once seen).
    pub fn queues(&self) -> impl Iterator<Item = (&str, usize)> {
        self.queues.iter().map(|(k, v)| (k.as_str(), v.len()))
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    pub fn selected_queue(&self) -> Option<&str> {
        self.selected_queue.as_deref()
    }

    /// Index of the selected queue row (0 = all queues).
    pub fn selected_queue_row(&self) -> usize {
        match &self.selected_queue {
            None => 0,
            Some(q) => self.queues.keys().position(|k| k == q).map_or(0, |i| i + 1),
        }
    }

    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The pending list as shown: the selected queue, filtered.
    pub fn visible(&self) -> &[SortKey] {
        if let Some(f) = &self.filtered {
            return f;
        }
        match &self.selected_queue {
            None => &self.all,
            Some(q) => self.queues.get(q).map(Vec::as_slice).unwrap_or(&[]),
        }
    }

    pub fn entry(&self, id: &Uuid) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn selected_id(&self) -> Option<Uuid> {
        self.selected
    }

    pub fn selected_entry(&self) -> Option<&Entry> {
        self.selected.and_then(|id| self.entries.get(&id))
    }

    /// Position of the selection within `visible()`.
    pub fn selected_index(&self) -> Option<usize> {
        let e = self.selected_entry()?;
        self.visible().binary_search(&e.key()).ok()
    }

    /// Recent decisions, narrowed by the `/` filter like the pending list (a reviewer's
    /// name, a tool, or an outcome such as `denied`).
    pub fn history(&self) -> impl Iterator<Item = &HistoryEntry> {
        let needle = self.filter.to_lowercase();
        self.history.iter().filter(move |h| h.matches(&needle))
    }

    pub fn history_len(&self) -> usize {
        self.history().count()
    }

    pub fn inflight(&self, id: &Uuid) -> Option<&InFlight> {
        self.inflight.get(id)
    }

    pub fn inflight_count(&self) -> usize {
        self.inflight.len()
    }

    /// Runs in the order the runs view shows them.
    pub fn runs(&self) -> &[Uuid] {
        self.runs.order()
    }

    pub fn run(&self, id: &Uuid) -> Option<&RunEntry> {
        self.runs.get(id)
    }

    pub fn active_runs(&self) -> usize {
        self.runs.active()
    }

    pub fn selected_run(&self) -> Option<Uuid> {
        self.selected_run
    }

    pub fn selected_run_index(&self) -> Option<usize> {
        self.selected_run.and_then(|id| self.runs.index_of(&id))
    }

    /// The MCP servers, in the runner's order.
    pub fn servers(&self) -> &[ServerEntry] {
        &self.servers
    }

    /// The selected row of the servers view (0 when there are none).
    pub fn selected_server(&self) -> usize {
        self.selected_server
            .min(self.servers.len().saturating_sub(1))
    }

    /// The run of an approval, as the runner knows it (`None` for external submissions,
    /// whose `run_id` is the submitter's own and not a gatehouse run id).
    pub fn run_of(a: &Approval) -> Option<Uuid> {
        a.run_id.as_deref().and_then(|r| Uuid::parse_str(r).ok())
    }

    /// Whether the dashboard's detail of the selected approval is on screen (decide keys
    /// act only on what the reviewer can see).
    pub fn detail_visible(&self) -> bool {
        self.view == View::Dashboard && self.transcript.is_none()
    }

    /// Whether `e` is offered for this approval (the executor honours edits).
    pub fn editable(a: &Approval) -> bool {
        a.editable || a.run_id.is_some()
    }

    // ----- events from the runner -----

    pub fn apply(&mut self, ev: FrontendEvent, mono: Instant) {
        let before = self.selected;
        self.apply_inner(ev, mono);
        if self.selected != before {
            self.selection_by_event = true;
        }
    }

    fn apply_inner(&mut self, ev: FrontendEvent, mono: Instant) {
        self.dirty = true;
        match ev {
            FrontendEvent::Connection(c) => {
                self.link_closed = false;
                self.connection = c;
            }
            FrontendEvent::Servers(list) => {
                // keep the selected server selected if it is still there
                let name = self
                    .servers
                    .get(self.selected_server)
                    .map(|e| e.view.name.clone());
                self.servers = list.into_iter().map(ServerEntry::new).collect();
                self.selected_server = name
                    .and_then(|n| self.servers.iter().position(|e| e.view.name == n))
                    .unwrap_or(self.selected_server)
                    .min(self.servers.len().saturating_sub(1));
            }
            FrontendEvent::Snapshot {
                pending,
                recent,
                runs,
                seq,
            } => {
                self.apply_runs_snapshot(runs, seq);
                self.apply_snapshot(pending, recent, seq, mono)
            }
            FrontendEvent::Change(ev) => {
                let ev = *ev;
                if ev.seq != 0 && ev.seq <= self.seq {
                    return; // already in the snapshot
                }
                self.seq = self.seq.max(ev.seq);
                match ev.subject {
                    crate::domain::Subject::Approval(a) => self.apply_approval(a, ev.kind, mono),
                    crate::domain::Subject::Run(r) => self.apply_run(*r, ev.seq),
                }
            }
        }
    }

    fn apply_snapshot(
        &mut self,
        pending: Vec<Approval>,
        recent: Vec<Approval>,
        seq: u64,
        mono: Instant,
    ) {
        let old_index = self.selected_index();
        self.seq = seq;
        self.entries.clear();
        for v in self.queues.values_mut() {
            v.clear();
        }
        self.all.clear();
        for a in pending.into_iter().filter(Approval::is_pending) {
            let e = Entry::new(a);
            let k = e.key();
            self.all.push(k);
            self.queues
                .entry(e.approval.queue.clone())
                .or_default()
                .push(k);
            self.entries.insert(k.id, e);
        }
        self.all.sort_unstable();
        for v in self.queues.values_mut() {
            v.sort_unstable();
        }
        let mut recent: Vec<HistoryEntry> = recent
            .into_iter()
            .filter(|a| !a.is_pending())
            .map(HistoryEntry::new)
            .collect();
        recent.sort_by_key(|h| std::cmp::Reverse(h.at()));
        recent.truncate(HISTORY_LEN);
        self.history = recent.into();
        self.rebuild_filter();
        if self
            .selected
            .is_some_and(|id| !self.entries.contains_key(&id))
        {
            if let Some(id) = self.selected
                && !self.inflight.contains_key(&id)
            {
                self.notify(
                    NoticeKind::Info,
                    "the selected approval was decided elsewhere".into(),
                    mono,
                );
            }
            self.select_at(old_index.unwrap_or(0));
        } else if self.selected.is_none() {
            self.select_at(0);
        }
    }

    fn apply_runs_snapshot(&mut self, runs: Vec<RunSummary>, seq: u64) {
        let idx = self.selected_run_index();
        self.runs.replace(runs, seq);
        self.reselect_run(idx);
        // the open transcript may have moved on while the link was down
        if let Some(t) = &mut self.transcript {
            t.stale = true;
        }
    }

    fn apply_run(&mut self, r: RunSummary, seq: u64) {
        let id = r.run_id;
        let idx = self.selected_run_index();
        if !self.runs.apply(r, seq) {
            return;
        }
        self.reselect_run(idx);
        if let Some(t) = &mut self.transcript
            && t.run_id == id
        {
            t.stale = true;
        }
    }

    /// Keep the selected run if it is still listed, else the row it was on.
    fn reselect_run(&mut self, old_index: Option<usize>) {
        if self
            .selected_run
            .is_some_and(|id| self.runs.get(&id).is_some())
        {
            return;
        }
        let order = self.runs.order();
        self.selected_run = if order.is_empty() {
            None
        } else {
            Some(order[old_index.unwrap_or(0).min(order.len() - 1)])
        };
    }

    /// The run to fetch for the open transcript, if it changed since the last fetch and no
    /// fetch is under way (updates arriving meanwhile are merged into one more fetch).
    pub fn next_fetch(&mut self) -> Option<Uuid> {
        let t = self.transcript.as_mut()?;
        if t.stale && !t.loading {
            t.stale = false;
            t.loading = true;
            return Some(t.run_id);
        }
        None
    }

    /// The answer to `Effect::FetchRun`.
    pub fn on_run_fetched(&mut self, id: Uuid, result: Result<Run, String>) {
        let Some(t) = self.transcript.as_mut().filter(|t| t.run_id == id) else {
            return;
        };
        t.loading = false;
        match result {
            Ok(run) => {
                t.run = Some(run);
                t.error = None;
            }
            Err(e) => t.error = Some(e),
        }
        self.dirty = true;
    }

    fn apply_approval(&mut self, a: Approval, kind: AuditKind, mono: Instant) {
        if a.is_pending() {
            let id = a.id;
            let old_queue = self.entries.get(&id).map(|e| e.approval.queue.clone());
            if let Some(q) = &old_queue {
                if *q != a.queue && kind == AuditKind::ApprovalEscalated {
                    let text = format!(
                        "{} ({}) escalated from {} to {}",
                        sanitize(&a.tool).0,
                        short_id(&id),
                        sanitize(q).0,
                        sanitize(&a.queue).0
                    );
                    self.notify(NoticeKind::Warn, text, mono);
                }
                self.remove_pending(&id);
            }
            self.insert_pending(a);
            if self.selected.is_none() {
                self.select_at(0);
            } else if self.selected == Some(id) && self.selected_index().is_none() {
                // escalated out of the queue being viewed
                self.selected = None;
                self.select_at(0);
            }
            return;
        }
        // no longer pending: decided, expired or cancelled
        let id = a.id;
        let was_selected = self.selected == Some(id);
        let idx = self.selected_index();
        let was_pending = self.entries.contains_key(&id);
        if was_pending {
            self.remove_pending(&id);
            if !self.inflight.contains_key(&id) {
                let h = HistoryEntry::new(a.clone());
                let verb = a.status.as_str();
                let by = if h.by.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", h.by)
                };
                self.notify(
                    NoticeKind::Info,
                    format!("{} ({}) {verb}{by} — left the list", h.tool, short_id(&id)),
                    mono,
                );
            }
        }
        self.push_history(a);
        if was_selected {
            self.selected = None;
            self.select_at(idx.unwrap_or(0));
        }
        self.close_prompt_for(&id, mono);
    }

    fn close_prompt_for(&mut self, id: &Uuid, mono: Instant) {
        let target = match &self.overlay {
            Overlay::Deny(p) => Some(p.target.id),
            Overlay::Edit(p) => Some(p.target.id),
            _ => None,
        };
        if target == Some(*id) {
            self.overlay = Overlay::None;
            self.notify(
                NoticeKind::Warn,
                format!("{} was decided elsewhere; prompt closed", short_id(id)),
                mono,
            );
        }
    }

    fn push_history(&mut self, a: Approval) {
        self.history.retain(|h| h.approval.id != a.id);
        self.history.push_front(HistoryEntry::new(a));
        self.history.truncate(HISTORY_LEN);
    }

    fn insert_pending(&mut self, a: Approval) {
        let e = Entry::new(a);
        let k = e.key();
        insert_sorted(&mut self.all, k);
        insert_sorted(self.queues.entry(e.approval.queue.clone()).or_default(), k);
        if self.in_view(&e) {
            let needle = self.filter.to_lowercase();
            if let Some(f) = &mut self.filtered
                && e.matches(&needle)
            {
                insert_sorted(f, k);
            }
        }
        self.entries.insert(k.id, e);
    }

    fn remove_pending(&mut self, id: &Uuid) -> Option<Entry> {
        let e = self.entries.remove(id)?;
        let k = e.key();
        remove_sorted(&mut self.all, &k);
        if let Some(q) = self.queues.get_mut(&e.approval.queue) {
            remove_sorted(q, &k);
        }
        if let Some(f) = &mut self.filtered {
            remove_sorted(f, &k);
        }
        Some(e)
    }

    fn in_view(&self, e: &Entry) -> bool {
        self.selected_queue
            .as_ref()
            .is_none_or(|q| *q == e.approval.queue)
    }

    fn rebuild_filter(&mut self) {
        if self.filter.is_empty() {
            self.filtered = None;
            return;
        }
        let needle = self.filter.to_lowercase();
        self.filtered = None;
        let f: Vec<SortKey> = self
            .visible()
            .iter()
            .filter(|k| self.entries.get(&k.id).is_some_and(|e| e.matches(&needle)))
            .copied()
            .collect();
        self.filtered = Some(f);
    }

    fn select_at(&mut self, idx: usize) {
        let v = self.visible();
        self.selected = if v.is_empty() {
            None
        } else {
            Some(v[idx.min(v.len() - 1)].id)
        };
        self.detail_scroll = 0;
    }

    /// Keep the selection if it is still in view, else take the first row.
    fn reselect(&mut self) {
        if self.selected_index().is_none() {
            self.select_at(0);
        }
    }

    pub fn notify(&mut self, kind: NoticeKind, text: String, mono: Instant) {
        self.notice = Some(Notice {
            text,
            kind,
            at: mono,
        });
        self.dirty = true;
    }

    /// Drop an expired notice; returns when the current one expires.
    pub fn expire_notice(&mut self, mono: Instant) -> Option<Instant> {
        if let Some(n) = &self.notice {
            let end = n.at + NOTICE_TTL;
            if mono >= end {
                self.notice = None;
                self.dirty = true;
                return None;
            }
            return Some(end);
        }
        None
    }

    /// Record what the last frame showed: the guard for decide keys starts here.
    pub fn mark_drawn(&mut self, mono: Instant) {
        // the guard starts again when the detail comes back from another view
        let shown = self.selected.filter(|_| self.detail_visible());
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
        self.dirty = false;
    }

    /// Whether a visible countdown or age needs a redraw each second.
    pub fn needs_tick(&self) -> bool {
        !self.all.is_empty()
            || !self.inflight.is_empty()
            || (self.view == View::Runs && !self.runs.is_empty())
            || self.transcript.is_some()
    }

    // ----- outcomes of decisions we sent -----

    pub fn on_outcome(&mut self, id: Uuid, outcome: DecisionOutcome, mono: Instant) {
        let before = self.selected;
        self.on_outcome_inner(id, outcome, mono);
        if self.selected != before {
            self.selection_by_event = true;
        }
    }

    fn on_outcome_inner(&mut self, id: Uuid, outcome: DecisionOutcome, mono: Instant) {
        let flight = self.inflight.remove(&id);
        let label = flight.as_ref().map_or("decision", |f| f.label);
        let name = self
            .entries
            .get(&id)
            .map(|e| e.tool.clone())
            .or_else(|| {
                self.history
                    .iter()
                    .find(|h| h.approval.id == id)
                    .map(|h| h.tool.clone())
            })
            .unwrap_or_default();
        let what = format!("{name} ({})", short_id(&id));
        match outcome {
            DecisionOutcome::Applied(a) => {
                let verb = a.status.as_str();
                self.notify(NoticeKind::Ok, format!("{what} {verb}"), mono);
                if !a.is_pending() {
                    if self.entries.contains_key(&id) {
                        let idx = self.selected_index();
                        let was_selected = self.selected == Some(id);
                        self.remove_pending(&id);
                        if was_selected {
                            self.selected = None;
                            self.select_at(idx.unwrap_or(0));
                        }
                    }
                    self.push_history(a);
                }
            }
            DecisionOutcome::Conflict { message, approval } => {
                if let Some(a) = approval {
                    self.apply_approval(a, AuditKind::ApprovalDecided, mono);
                }
                self.notify(
                    NoticeKind::Error,
                    format!("{label} of {what} not applied: {}", sanitize(&message).0),
                    mono,
                );
            }
            DecisionOutcome::Refused { message } => self.notify(
                NoticeKind::Error,
                format!("{label} of {what} refused: {}", sanitize(&message).0),
                mono,
            ),
            DecisionOutcome::NotSent { message } => self.notify(
                NoticeKind::Error,
                format!(
                    "{label} of {what} NOT SENT ({}): nothing was decided",
                    sanitize(&message).0
                ),
                mono,
            ),
        }
        self.dirty = true;
    }

    /// The runner took the decision but never answered: it may or may not have applied.
    pub fn on_unknown_outcome(&mut self, id: Uuid, message: String, mono: Instant) {
        self.inflight.remove(&id);
        self.notify(
            NoticeKind::Warn,
            format!("{}: {}", short_id(&id), sanitize(&message).0),
            mono,
        );
    }

    // ----- keys -----

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
        let input = match &mut self.overlay {
            Overlay::Deny(p) => Some(&mut p.input),
            Overlay::Edit(p) => Some(&mut p.input),
            Overlay::Filter(i) => Some(i),
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

    /// Map a key to an intent through the pane that has it.
    pub fn intent_for(&self, key: &KeyEvent) -> Option<Intent> {
        use super::panes::{self, Pane};
        match &self.overlay {
            Overlay::Deny(_) | Overlay::Edit(_) | Overlay::Filter(_) => {
                return panes::Prompt.handle_key(key, self);
            }
            Overlay::Help => return panes::Help.handle_key(key, self),
            _ => {}
        }
        if self.transcript.is_some() {
            return super::run_panes::Transcript.handle_key(key, self);
        }
        if self.view == View::Runs {
            return super::run_panes::RunsList.handle_key(key, self);
        }
        if self.view == View::Servers {
            return super::servers::ServersList.handle_key(key, self);
        }
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.code == KeyCode::Esc {
            return match self.overlay {
                Overlay::Full => Some(Intent::ToggleFull),
                _ if !self.filter.is_empty() => Some(Intent::ClearFilter),
                _ => None,
            };
        }
        let action = self.keymap.action(key)?;
        let global = match action {
            Action::Quit => Some(Intent::Quit),
            Action::Help => Some(Intent::ToggleHelp),
            Action::NextPane => Some(Intent::FocusNext),
            Action::PrevPane => Some(Intent::FocusPrev),
            Action::Approve => Some(Intent::Decide(DecideKind::Approve)),
            Action::ApproveRun => Some(Intent::Decide(DecideKind::ApproveRun)),
            Action::Deny => Some(Intent::Decide(DecideKind::Deny)),
            Action::Edit => Some(Intent::Decide(DecideKind::Edit)),
            Action::Escalate => Some(Intent::Decide(DecideKind::Escalate)),
            Action::Open => Some(Intent::ToggleFull),
            Action::Filter => Some(Intent::OpenFilter),
            Action::Runs => Some(Intent::ToggleRuns),
            Action::Servers => Some(Intent::ToggleServers),
            Action::Transcript => Some(Intent::OpenTranscript),
            _ => None,
        };
        if global.is_some() {
            return global;
        }
        if matches!(self.overlay, Overlay::Full) {
            return panes::Detail.handle_key(key, self);
        }
        match self.focus {
            Focus::Queues => panes::Queues.handle_key(key, self),
            Focus::Pending => panes::Pending.handle_key(key, self),
            Focus::Detail => panes::Detail.handle_key(key, self),
            Focus::History => panes::History.handle_key(key, self),
        }
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
            CtEvent::Resize(..) => {
                self.dirty = true;
                None
            }
            _ => None,
        }
    }

    pub fn apply_intent(&mut self, intent: Intent, mono: Instant) -> Option<Effect> {
        let before = self.selected;
        let effect = self.apply_intent_inner(intent, mono);
        if self.selected != before {
            self.selection_by_event = false;
        }
        effect
    }

    fn apply_intent_inner(&mut self, intent: Intent, mono: Instant) -> Option<Effect> {
        match intent {
            Intent::Quit => return Some(Effect::Quit),
            Intent::ToggleHelp => {
                self.help_scroll = 0;
                self.overlay = match self.overlay {
                    Overlay::Help => Overlay::None,
                    _ => Overlay::Help,
                }
            }
            Intent::ScrollHelp(m) => {
                let max = self.help_max_scroll.get();
                self.help_scroll = m.apply(self.help_scroll.min(max), max + 1, 5).min(max);
            }
            Intent::FocusNext => self.focus = self.focus.step(1),
            Intent::FocusPrev => self.focus = self.focus.step(-1),
            Intent::MoveQueue(m) => {
                let rows = self.queues.len() + 1;
                let cur = self.selected_queue_row();
                let next = m.apply(cur, rows, 5);
                if next != cur {
                    self.selected_queue = if next == 0 {
                        None
                    } else {
                        self.queues.keys().nth(next - 1).cloned()
                    };
                    self.rebuild_filter();
                    self.reselect();
                    self.list_offset.set(0);
                }
            }
            Intent::MoveSelection(m) => {
                let len = self.visible().len();
                if len > 0 {
                    let cur = self.selected_index().unwrap_or(0);
                    let next = m.apply(cur, len, self.list_rows.get());
                    if next != cur || self.selected.is_none() {
                        self.select_at(next);
                    }
                }
            }
            Intent::ScrollDetail(m) => {
                let max = self
                    .detail_lines
                    .get()
                    .saturating_sub(self.detail_rows.get());
                self.detail_scroll = m
                    .apply(self.detail_scroll, max + 1, self.detail_rows.get())
                    .min(max);
            }
            Intent::ScrollHistory(m) => {
                let len = self.history.len();
                self.history_scroll = m.apply(self.history_scroll, len, 5);
            }
            Intent::ToggleFull => {
                self.overlay = match self.overlay {
                    Overlay::Full => Overlay::None,
                    _ if self.selected.is_some() => Overlay::Full,
                    _ => Overlay::None,
                };
                self.detail_scroll = 0;
            }
            Intent::OpenFilter => {
                self.overlay = Overlay::Filter(Input::new(self.filter.clone()));
            }
            Intent::ClearFilter => {
                self.filter.clear();
                self.rebuild_filter();
                self.reselect();
                if matches!(self.overlay, Overlay::Filter(_)) {
                    self.overlay = Overlay::None;
                }
            }
            Intent::CloseOverlay => self.overlay = Overlay::None,
            Intent::Decide(kind) => return self.decide(kind, mono),
            Intent::PromptKey(k) => {
                let ev = CtEvent::Key(k);
                match &mut self.overlay {
                    Overlay::Deny(p) => {
                        let changed = p.input.handle_event(&ev).is_some_and(|c| c.value);
                        if changed {
                            p.picked = None;
                            p.error = None;
                        }
                    }
                    Overlay::Edit(p) => {
                        p.input.handle_event(&ev);
                    }
                    Overlay::Filter(i) => {
                        i.handle_event(&ev);
                    }
                    _ => {}
                }
                self.after_prompt_edit();
            }
            Intent::PromptPick(d) => {
                if let Overlay::Deny(p) = &mut self.overlay {
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
                self.view = match self.view {
                    View::Runs => View::Dashboard,
                    View::Dashboard | View::Servers => View::Runs,
                };
                // The view opens at its top (active runs first), not on a run picked long ago
                // that has since moved down the list.
                if self.view == View::Runs {
                    self.selected_run = self.runs.order().first().copied();
                }
            }
            Intent::MoveRun(m) => {
                let len = self.runs.len();
                if len > 0 {
                    let cur = self.selected_run_index().unwrap_or(0);
                    let next = m.apply(cur, len, self.runs_rows.get());
                    self.selected_run = Some(self.runs.order()[next]);
                }
            }
            Intent::ToggleServers => {
                self.view = match self.view {
                    View::Servers => View::Dashboard,
                    View::Dashboard | View::Runs => View::Servers,
                };
            }
            Intent::MoveServer(m) => {
                let len = self.servers.len();
                self.selected_server =
                    m.apply(self.selected_server(), len, self.servers_rows.get());
            }
            Intent::OpenTranscript => return self.open_transcript(mono),
            Intent::CloseTranscript => self.transcript = None,
            Intent::ScrollTranscript(m) => {
                if let Some(t) = &mut self.transcript {
                    let rows = self.transcript_rows.get();
                    let max = self.transcript_lines.get().saturating_sub(rows);
                    t.scroll = m.apply(t.scroll.min(max), max + 1, rows).min(max);
                }
            }
        }
        None
    }

    fn open_transcript(&mut self, mono: Instant) -> Option<Effect> {
        let id = if self.view == View::Runs {
            let Some(id) = self.selected_run else {
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
        self.transcript = Some(TranscriptView::new(id));
        Some(Effect::FetchRun(id))
    }

    fn after_prompt_edit(&mut self) {
        match &mut self.overlay {
            Overlay::Edit(p) => p.reparse(),
            Overlay::Filter(i) if i.value() != self.filter => {
                self.filter = i.value().to_string();
                self.rebuild_filter();
                self.reselect();
                self.list_offset.set(0);
            }
            _ => {}
        }
    }

    /// The approval a decide key may act on: the one whose detail has been on screen for at
    /// least `DECIDE_GUARD`, and is still the selection.
    fn guarded_target(&mut self, mono: Instant) -> Option<&Entry> {
        let Some(id) = self.selected else {
            self.notify(NoticeKind::Info, "nothing selected".into(), mono);
            return None;
        };
        match self.on_screen {
            Some((shown, since, guard))
                if shown == id && mono.saturating_duration_since(since) >= guard => {}
            _ => {
                self.notify(
                    NoticeKind::Warn,
                    "key ignored: that approval had only just appeared — look, then press again"
                        .into(),
                    mono,
                );
                return None;
            }
        }
        if self.inflight.contains_key(&id) {
            self.notify(
                NoticeKind::Warn,
                format!("a decision on {} is already being sent", short_id(&id)),
                mono,
            );
            return None;
        }
        self.entries.get(&id)
    }

    fn decide(&mut self, kind: DecideKind, mono: Instant) -> Option<Effect> {
        if !matches!(self.overlay, Overlay::None | Overlay::Full) || !self.detail_visible() {
            return None;
        }
        let a = self.guarded_target(mono)?.approval.clone();
        let a = &a;
        let target = Target {
            id: a.id,
            arguments_sha256: a.arguments_sha256.clone(),
        };
        match kind {
            DecideKind::Approve => {
                Some(self.send(target, Verdict::Approve, None, None, None, mono))
            }
            DecideKind::ApproveRun => {
                if a.run_id.is_none() {
                    self.notify(
                        NoticeKind::Warn,
                        "approve-for-run needs a run: this is an external submission".into(),
                        mono,
                    );
                    return None;
                }
                Some(self.send(
                    target,
                    Verdict::Approve,
                    None,
                    None,
                    Some("run".into()),
                    mono,
                ))
            }
            DecideKind::Escalate => {
                self.notify(
                    NoticeKind::Info,
                    format!("escalating {} …", short_id(&a.id)),
                    mono,
                );
                Some(Effect::Escalate(a.id))
            }
            DecideKind::Deny => {
                self.overlay = Overlay::Deny(Box::new(DenyPrompt {
                    target,
                    input: Input::default(),
                    picked: None,
                    error: None,
                }));
                None
            }
            DecideKind::Edit => {
                if !Self::editable(a) {
                    self.notify(
                        NoticeKind::Warn,
                        "editing is not offered: the submitter does not honour edited arguments"
                            .into(),
                        mono,
                    );
                    return None;
                }
                let text = ascii_json(&Value::Object(a.arguments.clone()));
                let mut p = EditPrompt {
                    target,
                    input: Input::new(text),
                    parsed: Err(String::new()),
                };
                p.reparse();
                self.overlay = Overlay::Edit(Box::new(p));
                None
            }
        }
    }

    fn submit_prompt(&mut self, mono: Instant) -> Option<Effect> {
        match std::mem::replace(&mut self.overlay, Overlay::None) {
            Overlay::Deny(mut p) => {
                let reason = p.input.value().trim().to_string();
                if reason.is_empty() {
                    p.error = Some("type a reason, or pick one with ↑/↓".into());
                    self.overlay = Overlay::Deny(p);
                    return None;
                }
                if !self.entries.contains_key(&p.target.id) {
                    return None;
                }
                Some(self.send(p.target, Verdict::Deny, Some(reason), None, None, mono))
            }
            Overlay::Edit(p) => match &p.parsed {
                Ok(m) => {
                    if !self.entries.contains_key(&p.target.id) {
                        return None;
                    }
                    let m = m.clone();
                    Some(self.send(p.target, Verdict::Approve, None, Some(m), None, mono))
                }
                Err(_) => {
                    self.overlay = Overlay::Edit(p);
                    None
                }
            },
            Overlay::Filter(i) => {
                self.filter = i.value().to_string();
                self.rebuild_filter();
                self.reselect();
                None
            }
            other => {
                self.overlay = other;
                None
            }
        }
    }

    fn send(
        &mut self,
        target: Target,
        verdict: Verdict,
        reason: Option<String>,
        edited: Option<Map<String, Value>>,
        scope: Option<String>,
        mono: Instant,
    ) -> Effect {
        let label = match (verdict, &edited, &scope) {
            (Verdict::Deny, _, _) => "deny",
            (Verdict::Approve, Some(_), _) => "approve (edited)",
            (Verdict::Approve, None, Some(_)) => "approve for run",
            (Verdict::Approve, None, None) => "approve",
        };
        self.inflight.insert(
            target.id,
            InFlight {
                verdict,
                label,
                since: mono,
            },
        );
        self.notify(
            NoticeKind::Info,
            format!("sending {label} for {}…", short_id(&target.id)),
            mono,
        );
        Effect::Send(DecisionRequest {
            approval_id: target.id,
            verdict,
            reason,
            arguments_sha256: target.arguments_sha256,
            edited_arguments: edited,
            scope,
        })
    }
}

/// The last 8 hex digits of an id (UUIDv7 ids share their time prefix, so take the tail).
pub fn short_id(id: &Uuid) -> String {
    let s = id.simple().to_string();
    s[s.len() - 8..].to_string()
}

fn insert_sorted(v: &mut Vec<SortKey>, k: SortKey) {
    match v.binary_search(&k) {
        Ok(_) => {}
        Err(i) => v.insert(i, k),
    }
}

fn remove_sorted(v: &mut Vec<SortKey>, k: &SortKey) {
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
