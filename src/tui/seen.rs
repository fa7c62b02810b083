//! "Seen in full" (DESIGN §9): a decide key acts only on an approval whose whole arguments
//! have been on screen, in the detail pane or scrolled through full-screen. After each frame
//! the console records which arguments lines were on screen; the geometry comes from the
//! same pure layout the frame was drawn with, so drawing never writes back.

use super::panes::{self, DetailText};
use super::state::{ConsoleState, Layer};
use super::theme::Theme;
use ratatui::layout::Rect;
use uuid::Uuid;

/// Which lines of one approval's arguments have been on screen.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    id: Option<Uuid>,
    /// The arguments' hash: another call under the same id starts again.
    sha: String,
    lines: Vec<bool>,
    /// The width the detail was wrapped to, and which of its wrapped rows were on screen: a
    /// line longer than the pane is seen once all its rows were, over several scrolls.
    width: usize,
    rows: Vec<bool>,
}

/// Rows a page move covers in each list.
pub struct PageRows {
    pub pending: usize,
    pub history: usize,
    pub main: usize,
}

/// The inside of a bordered pane.
fn inner(r: Rect) -> Rect {
    Rect::new(
        r.x + 1,
        r.y + 1,
        r.width.saturating_sub(2),
        r.height.saturating_sub(2),
    )
}

impl ConsoleState {
    pub(super) fn page_rows(&self) -> PageRows {
        let a = panes::layout(self, self.viewport);
        PageRows {
            pending: (a.pending.height as usize).saturating_sub(3).max(1),
            history: ((a.history.height as usize).saturating_sub(2) / 2).max(1),
            main: (a.main.height as usize).saturating_sub(3).max(1),
        }
    }

    /// Where the detail of the shown approval is drawn: full-screen or the dashboard's pane.
    fn detail_area(&self) -> Rect {
        let a = panes::layout(self, self.viewport);
        match self.screen() {
            Some(Layer::Full(_)) => inner(a.main),
            _ => inner(a.detail),
        }
    }

    fn detail_text(&self, width: usize) -> Option<DetailText> {
        let a = self.shown_approval()?;
        // the styles do not change how lines wrap; any theme measures the same
        Some(panes::detail_lines(self, a, &Theme::mono(), width))
    }

    /// Lines of the shown detail and rows it has on screen.
    pub(super) fn detail_size(&self) -> (usize, usize) {
        let area = self.detail_area();
        let lines = self
            .detail_text(area.width as usize)
            .map_or(0, |d| d.lines.len());
        (lines, area.height as usize)
    }

    pub(super) fn transcript_size(&self) -> (usize, usize) {
        let a = inner(panes::layout(self, self.viewport).main);
        let lines = super::run_panes::transcript_lines(self, &Theme::mono(), a.width as usize);
        (lines.len(), a.height as usize)
    }

    pub(super) fn help_max_scroll(&self) -> usize {
        let (r, lines) = panes::help_lines(self, &Theme::mono(), self.viewport);
        lines
            .len()
            .saturating_sub(r.height.saturating_sub(2) as usize)
    }

    /// After a frame: the arguments lines that were wholly on screen count as seen.
    pub(super) fn record_seen(&mut self) {
        // an overlay (help, a prompt) hides the detail; under another view it is not drawn
        let top_ok = matches!(self.stack.last(), None | Some(Layer::Full(_)));
        let Some(id) = self.decidable_on_screen().filter(|_| top_ok) else {
            return;
        };
        let Some(sha) = self
            .inbox
            .entry(&id)
            .map(|e| e.approval.arguments_sha256.clone())
        else {
            return;
        };
        let area = self.detail_area();
        if area.width < 10 || area.height == 0 {
            return;
        }
        let Some(d) = self.detail_text(area.width as usize) else {
            return;
        };
        let rows = area.height as usize;
        let scroll = match self.screen() {
            Some(Layer::Full(f)) => f.scroll,
            _ => self.dashboard.detail_scroll,
        }
        .min(d.lines.len().saturating_sub(rows));
        if self.seen.id != Some(id) || self.seen.sha != sha {
            self.seen = Seen {
                id: Some(id),
                sha,
                lines: vec![false; d.arg_lines],
                width: 0,
                rows: Vec::new(),
            };
        }
        let width = area.width as usize;
        if self.seen.width != width || self.seen.rows.len() != d.arg_rows.len() {
            // wrapped differently: rows seen at the old width say nothing now
            self.seen.width = width;
            self.seen.rows = vec![false; d.arg_rows.len()];
        }
        let end = (scroll + rows).min(d.arg_rows.len());
        for r in &mut self.seen.rows[scroll.min(end)..end] {
            *r = true;
        }
        // a line counts when every row it wraps to has been on screen
        let mut whole = vec![true; d.arg_lines];
        for (row, arg) in d.arg_rows.iter().enumerate() {
            if let Some(i) = arg
                && !self.seen.rows[row]
            {
                whole[*i] = false;
            }
        }
        for (i, w) in whole.into_iter().enumerate() {
            if w && let Some(s) = self.seen.lines.get_mut(i) {
                *s = true;
            }
        }
    }

    /// Whether the whole arguments of `id` (as they stand) have been on screen.
    pub fn arguments_seen(&self, id: &Uuid) -> bool {
        let Some(e) = self.inbox.entry(id) else {
            return false;
        };
        self.seen.id == Some(*id)
            && self.seen.sha == e.approval.arguments_sha256
            && self.seen.lines.iter().all(|s| *s)
    }
}
