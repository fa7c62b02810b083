//! How the views follow the inbox: a selection kept (or moved to its neighbour) when its
//! approval leaves, prompts about it closed, the filtered list and the history's place kept,
//! the runs view's selection and the open transcript refreshed, list windows kept around
//! their selections.

use super::entries::SortKey;
use super::inbox::{Changed, NoticeKind};
use super::state::{ConsoleState, Layer, short_id};
use crate::domain::Run;
use std::time::Instant;
use uuid::Uuid;

impl ConsoleState {
    /// Keep the views in step with what changed in the inbox.
    pub(super) fn follow(
        &mut self,
        ch: Changed,
        old_index: Option<usize>,
        history_before: usize,
        mono: Instant,
    ) {
        self.follow_filter(&ch);
        let sel = self.dashboard.selected;
        if let Some(id) = sel.filter(|id| !self.inbox.is_pending(id)) {
            if ch.snapshot && self.inbox.inflight(&id).is_none() {
                self.inbox.notify(
                    NoticeKind::Info,
                    "the selected approval was decided elsewhere".into(),
                    mono,
                );
            }
            self.dashboard.selected = None;
            self.select_at(old_index.unwrap_or(0));
        } else if sel.is_none() || self.selected_index().is_none() {
            // nothing was selected, or the selection left the queue being viewed
            self.dashboard.selected = None;
            self.select_at(0);
        }
        // a prompt about an approval that is no longer pending closes
        for id in &ch.left {
            let target = match self.stack.last() {
                Some(Layer::Deny(p)) => Some(p.target.id),
                Some(Layer::Edit(p)) => Some(p.target.id),
                _ => None,
            };
            if target == Some(*id) {
                self.stack.pop();
                self.inbox.notify(
                    NoticeKind::Warn,
                    format!("{} was decided elsewhere; prompt closed", short_id(id)),
                    mono,
                );
            }
        }
        // the pending approval open full-screen was decided: it is shown as decided
        for l in &mut self.stack {
            if let Layer::Full(f) = l
                && !f.decided
                && ch.left.contains(&f.id)
            {
                f.decided = true;
            }
        }
        self.follow_history(ch.history_added, history_before);
        if ch.runs_snapshot || !ch.runs.is_empty() {
            self.reselect_run(ch.runs_snapshot, &ch.runs);
        }
        self.clamp_offsets();
    }

    /// New decisions land at the top of the history: while the reviewer reads further down,
    /// the rows they read stay put and the pane says how many arrived above.
    fn follow_history(&mut self, added: usize, before: usize) {
        let now = self.history_len();
        // under a filter only the decisions it lets through count
        let added = if self.dashboard.filter.is_empty() {
            added.min(now)
        } else {
            now.saturating_sub(before)
        };
        if added == 0 {
            return;
        }
        let d = &mut self.dashboard;
        if d.history_offset > 0 || d.history_sel > 0 {
            d.history_sel = (d.history_sel + added).min(now.saturating_sub(1));
        }
        if d.history_offset > 0 {
            d.history_offset += added;
            d.history_new += added;
        }
    }

    fn reselect_run(&mut self, snapshot: bool, changed: &[Uuid]) {
        let order: Vec<Uuid> = self.inbox.runs.order().to_vec();
        let mut stale = Vec::new();
        for l in &mut self.stack {
            match l {
                Layer::Runs(v) => {
                    if v.selected.is_some_and(|id| order.contains(&id)) {
                        continue;
                    }
                    v.selected = order.first().copied();
                }
                Layer::Transcript(t) if snapshot || changed.contains(&t.run_id) => {
                    stale.push(t.run_id);
                    t.stale = true;
                }
                _ => {}
            }
        }
    }

    /// The run to fetch for the open transcript, if it changed since the last fetch and no
    /// fetch is under way (updates arriving meanwhile are merged into one more fetch).
    pub fn next_fetch(&mut self) -> Option<Uuid> {
        let t = self.transcript_mut()?;
        if t.stale && !t.loading {
            t.stale = false;
            t.loading = true;
            return Some(t.run_id);
        }
        None
    }

    /// The answer to `Effect::FetchRun`.
    pub fn on_run_fetched(&mut self, id: Uuid, result: Result<Run, String>) {
        let Some(t) = self.transcript_mut().filter(|t| t.run_id == id) else {
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

    /// Keep the filtered list in step: whole after a snapshot, else only the rows that moved
    /// (a burst of events with a filter set must not go through every pending row each time).
    fn follow_filter(&mut self, ch: &Changed) {
        if ch.snapshot {
            self.rebuild_filter();
            return;
        }
        let Some(filtered) = self.dashboard.filtered.as_mut() else {
            return;
        };
        for k in &ch.removed {
            super::entries::remove_sorted(filtered, k);
        }
        let needle = self.dashboard.filter.to_lowercase();
        let queue = self.dashboard.queue.as_deref();
        for k in &ch.added {
            if let Some(e) = self.inbox.entry(&k.id)
                && queue.is_none_or(|q| q == e.approval.queue)
                && e.matches(&needle)
            {
                super::entries::insert_sorted(filtered, *k);
            }
        }
    }

    pub(super) fn rebuild_filter(&mut self) {
        let d = &self.dashboard;
        if d.filter.is_empty() {
            self.dashboard.filtered = None;
            return;
        }
        let needle = d.filter.to_lowercase();
        let f: Vec<SortKey> = self
            .inbox
            .pending(d.queue.as_deref())
            .iter()
            .filter(|k| self.inbox.entry(&k.id).is_some_and(|e| e.matches(&needle)))
            .copied()
            .collect();
        self.dashboard.filtered = Some(f);
    }

    pub(super) fn select_at(&mut self, idx: usize) {
        let v = self.visible();
        let next = if v.is_empty() {
            None
        } else {
            Some(v[idx.min(v.len() - 1)].id)
        };
        if next != self.dashboard.selected {
            self.dashboard.detail_scroll = 0;
        }
        self.dashboard.selected = next;
        self.clamp_offsets();
    }

    /// Keep the selection if it is still in view, else take the first row.
    pub(super) fn reselect(&mut self) {
        if self.selected_index().is_none() {
            self.select_at(0);
        }
    }

    /// Move the list windows as little as needed to keep their selections in view (the
    /// sizes come from the layout of the viewport, so drawing never writes back).
    pub(super) fn clamp_offsets(&mut self) {
        let a = super::panes::layout(self, self.viewport);
        let rows = (a.pending.height as usize).saturating_sub(3).max(1);
        let sel = self.selected_index();
        let len = self.visible().len();
        self.dashboard.list_offset =
            super::panes::scroll_offset(self.dashboard.list_offset, sel, len, rows);
        let mark = usize::from(self.dashboard.history_new > 0);
        let hrows = ((a.history.height as usize).saturating_sub(2 + mark) / 2).max(1);
        let hlen = self.history_len();
        let d = &mut self.dashboard;
        d.history_sel = d.history_sel.min(hlen.saturating_sub(1));
        d.history_offset =
            super::panes::scroll_offset(d.history_offset, Some(d.history_sel), hlen, hrows);
        if d.history_offset == 0 {
            d.history_new = 0;
        }
        let main_rows = (a.main.height as usize).saturating_sub(3).max(1);
        let runs_len = self.inbox.runs.len();
        let run_sel = self.selected_run_index();
        let servers_len = self.servers().len();
        let server_sel = self.selected_server();
        for l in &mut self.stack {
            match l {
                Layer::Runs(v) => {
                    v.offset = super::panes::scroll_offset(v.offset, run_sel, runs_len, main_rows)
                }
                Layer::Servers(v) => {
                    v.offset = super::panes::scroll_offset(
                        v.offset,
                        Some(server_sel),
                        servers_len,
                        main_rows,
                    )
                }
                _ => {}
            }
        }
    }
}
