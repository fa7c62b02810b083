//! The inbox: what the console knows, and nothing about how it is shown. Pending approvals
//! indexed by id and kept in sorted per-queue vectors (so the list can be virtualised), the
//! history of decisions, runs, MCP servers, decisions in flight and the current notice.
//! Updated only from `FrontendEvent`s and decision outcomes; views read it.

use super::entries::{Entry, HistoryEntry, SortKey, insert_sorted, remove_sorted, short_id};
use super::runs::{RunEntry, Runs};
use super::sanitize::sanitize;
use super::servers::ServerEntry;
use crate::domain::{Approval, AuditKind, Verdict};
use crate::frontend::{Connection, FrontendEvent, ServerView};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How many decided approvals the history keeps.
pub const HISTORY_LEN: usize = 200;
/// How long a notice stays in the status line.
pub const NOTICE_TTL: Duration = Duration::from_secs(6);

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

/// A decision sent and not yet answered.
#[derive(Clone, Debug)]
pub struct InFlight {
    pub verdict: Verdict,
    pub label: &'static str,
    pub since: Instant,
}

/// What changed in the inbox, for the views to follow (keep a selection, close a prompt).
#[derive(Clone, Debug, Default)]
pub struct Changed {
    /// Approvals that left the pending list.
    pub left: Vec<Uuid>,
    /// Pending rows taken out and put in (an update is both), in that order: a filtered
    /// view follows them without going through every row.
    pub removed: Vec<SortKey>,
    pub added: Vec<SortKey>,
    /// Decisions added to the top of the history.
    pub history_added: usize,
    /// A whole snapshot replaced the lists.
    pub snapshot: bool,
    /// Runs changed (the runs view keeps its selection), and which one.
    pub runs: Vec<Uuid>,
    pub runs_snapshot: bool,
}

pub struct Inbox {
    pub connection: Connection,
    /// The runner's event channel closed.
    pub link_closed: bool,
    pub seq: u64,
    entries: HashMap<Uuid, Entry>,
    all: Vec<SortKey>,
    queues: BTreeMap<String, Vec<SortKey>>,
    history: VecDeque<HistoryEntry>,
    inflight: HashMap<Uuid, InFlight>,
    pub runs: Runs,
    /// The MCP servers, in the runner's (config) order.
    servers: Vec<ServerEntry>,
    pub notice: Option<Notice>,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox::new()
    }
}

impl Inbox {
    pub fn new() -> Inbox {
        Inbox {
            connection: Connection::Local,
            link_closed: false,
            seq: 0,
            entries: HashMap::new(),
            all: Vec::new(),
            queues: BTreeMap::new(),
            history: VecDeque::new(),
            inflight: HashMap::new(),
            runs: Runs::default(),
            servers: Vec::new(),
            notice: None,
        }
    }

    // ----- reading -----

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

    pub fn queue_name(&self, i: usize) -> Option<&str> {
        self.queues.keys().nth(i).map(String::as_str)
    }

    pub fn queue_index(&self, q: &str) -> Option<usize> {
        self.queues.keys().position(|k| k == q)
    }

    /// The pending approvals of a queue (`None`: every queue), oldest first.
    pub fn pending(&self, queue: Option<&str>) -> &[SortKey] {
        match queue {
            None => &self.all,
            Some(q) => self.queues.get(q).map(Vec::as_slice).unwrap_or(&[]),
        }
    }

    pub fn entry(&self, id: &Uuid) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn is_pending(&self, id: &Uuid) -> bool {
        self.entries.contains_key(id)
    }

    /// Decided approvals, newest first.
    pub fn history(&self) -> impl Iterator<Item = &HistoryEntry> {
        self.history.iter()
    }

    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    pub fn history_entry(&self, id: &Uuid) -> Option<&HistoryEntry> {
        self.history.iter().find(|h| h.approval.id == *id)
    }

    pub fn inflight(&self, id: &Uuid) -> Option<&InFlight> {
        self.inflight.get(id)
    }

    pub fn inflight_count(&self) -> usize {
        self.inflight.len()
    }

    pub fn run(&self, id: &Uuid) -> Option<&RunEntry> {
        self.runs.get(id)
    }

    pub fn servers(&self) -> &[ServerEntry] {
        &self.servers
    }

    /// The tool name of an approval, pending or decided (for notices).
    pub fn tool_of(&self, id: &Uuid) -> String {
        self.entries
            .get(id)
            .map(|e| e.tool.clone())
            .or_else(|| self.history_entry(id).map(|h| h.tool.clone()))
            .unwrap_or_default()
    }

    // ----- changing -----

    pub fn apply(&mut self, ev: FrontendEvent, mono: Instant) -> Changed {
        let mut ch = Changed::default();
        match ev {
            FrontendEvent::Connection(c) => {
                self.link_closed = false;
                self.connection = c;
            }
            FrontendEvent::Servers(list) => self.set_servers(list),
            FrontendEvent::Snapshot {
                pending,
                recent,
                runs,
                seq,
            } => {
                self.runs.replace(runs, seq);
                ch.runs_snapshot = true;
                self.apply_snapshot(pending, recent, seq, &mut ch);
            }
            FrontendEvent::Change(ev) => {
                let ev = *ev;
                if ev.seq != 0 && ev.seq <= self.seq {
                    return ch; // already in the snapshot
                }
                self.seq = self.seq.max(ev.seq);
                match ev.subject {
                    crate::domain::Subject::Approval(a) => {
                        self.apply_approval(a, ev.kind, mono, &mut ch)
                    }
                    crate::domain::Subject::Run(r) => {
                        let id = r.run_id;
                        if self.runs.apply(*r, ev.seq) {
                            ch.runs.push(id);
                        }
                    }
                }
            }
        }
        ch
    }

    fn set_servers(&mut self, list: Vec<ServerView>) {
        self.servers = list.into_iter().map(ServerEntry::new).collect();
    }

    fn apply_snapshot(
        &mut self,
        pending: Vec<Approval>,
        recent: Vec<Approval>,
        seq: u64,
        ch: &mut Changed,
    ) {
        self.seq = seq;
        ch.snapshot = true;
        let before: Vec<Uuid> = self.entries.keys().copied().collect();
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
        ch.left = before
            .into_iter()
            .filter(|id| !self.entries.contains_key(id))
            .collect();
        let mut recent: Vec<HistoryEntry> = recent
            .into_iter()
            .filter(|a| !a.is_pending())
            .map(HistoryEntry::new)
            .collect();
        recent.sort_by_key(|h| std::cmp::Reverse(h.at()));
        recent.truncate(HISTORY_LEN);
        self.history = recent.into();
    }

    fn apply_approval(&mut self, a: Approval, kind: AuditKind, mono: Instant, ch: &mut Changed) {
        let id = a.id;
        if a.is_pending() {
            if let Some(q) = self.entries.get(&id).map(|e| e.approval.queue.clone()) {
                if q != a.queue && kind == AuditKind::ApprovalEscalated {
                    let text = format!(
                        "{} ({}) escalated from {} to {}",
                        sanitize(&a.tool).0,
                        short_id(&id),
                        sanitize(&q).0,
                        sanitize(&a.queue).0
                    );
                    self.notify(NoticeKind::Warn, text, mono);
                }
                if let Some(e) = self.remove_pending(&id) {
                    ch.removed.push(e.key());
                }
            }
            ch.added.push(self.insert_pending(a));
            return;
        }
        // no longer pending: decided, expired or cancelled
        if let Some(e) = self.remove_pending(&id) {
            ch.removed.push(e.key());
            ch.left.push(id);
            if !self.inflight.contains_key(&id) {
                let h = HistoryEntry::new(a.clone());
                let by = if h.by.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", h.by)
                };
                let text = format!(
                    "{} ({}) {}{by} — left the list",
                    h.tool,
                    short_id(&id),
                    a.status.as_str()
                );
                self.notify(NoticeKind::Info, text, mono);
            }
        }
        self.push_history(a);
        ch.history_added += 1;
    }

    /// A decision of ours was applied: the approval leaves the list for the history.
    pub fn decided(&mut self, a: Approval) -> Changed {
        let mut ch = Changed::default();
        if let Some(e) = self.remove_pending(&a.id) {
            ch.removed.push(e.key());
            ch.left.push(a.id);
        }
        self.push_history(a);
        ch.history_added = 1;
        ch
    }

    /// The runner's answer to an escalation or a decision of ours that lost a race.
    pub fn apply_decided_elsewhere(&mut self, a: Approval, mono: Instant) -> Changed {
        let mut ch = Changed::default();
        self.apply_approval(a, AuditKind::ApprovalDecided, mono, &mut ch);
        ch
    }

    fn push_history(&mut self, a: Approval) {
        self.history.retain(|h| h.approval.id != a.id);
        self.history.push_front(HistoryEntry::new(a));
        self.history.truncate(HISTORY_LEN);
    }

    fn insert_pending(&mut self, a: Approval) -> SortKey {
        let e = Entry::new(a);
        let k = e.key();
        insert_sorted(&mut self.all, k);
        insert_sorted(self.queues.entry(e.approval.queue.clone()).or_default(), k);
        self.entries.insert(k.id, e);
        k
    }

    fn remove_pending(&mut self, id: &Uuid) -> Option<Entry> {
        let e = self.entries.remove(id)?;
        let k = e.key();
        remove_sorted(&mut self.all, &k);
        if let Some(q) = self.queues.get_mut(&e.approval.queue) {
            remove_sorted(q, &k);
        }
        Some(e)
    }

    pub fn start_flight(&mut self, id: Uuid, flight: InFlight) {
        self.inflight.insert(id, flight);
    }

    pub fn end_flight(&mut self, id: &Uuid) -> Option<InFlight> {
        self.inflight.remove(id)
    }

    pub fn notify(&mut self, kind: NoticeKind, text: String, mono: Instant) {
        self.notice = Some(Notice {
            text,
            kind,
            at: mono,
        });
    }

    /// Drop an expired notice; returns when the current one expires, and whether it dropped.
    pub fn expire_notice(&mut self, mono: Instant) -> (Option<Instant>, bool) {
        if let Some(n) = &self.notice {
            let end = n.at + NOTICE_TTL;
            if mono >= end {
                self.notice = None;
                return (None, true);
            }
            return (Some(end), false);
        }
        (None, false)
    }
}
