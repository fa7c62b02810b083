//! Drawing: each pane renders itself from the state and never writes to it. Keys are the
//! views' business (`views.rs`); the layout is a pure function of the state and the area,
//! so key handling pages by the same geometry the frame was drawn with.

mod detail;
mod lists;
mod overlays;
mod status;

pub use detail::{DetailText, detail_lines};
pub(super) use detail::{LABEL_W, field, untrusted};
pub use overlays::help_lines;
pub use status::{clip_words, hints};

use super::state::{ConsoleState, Layer};
use super::theme::{Role, Theme};
use crate::domain::{ApprovalStatus, Timestamp};
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::text::Line;
use ratatui::widgets::Block;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

// ---------- layout ----------

/// Where each pane goes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Areas {
    pub queues: Rect,
    pub history: Rect,
    pub pending: Rect,
    pub detail: Rect,
    pub main: Rect,
    pub status: Rect,
    pub hints: Rect,
}

pub fn layout(st: &ConsoleState, area: Rect) -> Areas {
    let h = area.height;
    let main = Rect::new(area.x, area.y, area.width, h.saturating_sub(2));
    let status = Rect::new(area.x, area.y + h.saturating_sub(2), area.width, 1.min(h));
    let hints = Rect::new(area.x, area.y + h.saturating_sub(1), area.width, 1.min(h));
    // the pending list needs the width more than the queue names do
    let left_w = (area.width * 3 / 10).clamp(18, 28).min(area.width / 2);
    let left = Rect::new(main.x, main.y, left_w, main.height);
    let right = Rect::new(main.x + left_w, main.y, main.width - left_w, main.height);
    let q_rows = st.queue_count() as u16 + 1;
    let q_h = (q_rows + 2).min(left.height / 2).max(3.min(left.height));
    let queues = Rect::new(left.x, left.y, left.width, q_h);
    let history = Rect::new(left.x, left.y + q_h, left.width, left.height - q_h);
    // the list takes what it needs, at most 2/5: the detail matters more
    let want = st.visible().len() as u16 + 3;
    let p_h = want.min(right.height * 2 / 5).max(5).min(right.height);
    let pending = Rect::new(right.x, right.y, right.width, p_h);
    let detail = Rect::new(right.x, right.y + p_h, right.width, right.height - p_h);
    Areas {
        queues,
        history,
        pending,
        detail,
        main,
        status,
        hints,
    }
}

/// Draw the whole console. Returns where the text cursor goes, if a prompt is open.
pub fn draw(st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) -> Option<Position> {
    buf.set_style(area, theme.style(Role::Text));
    if area.width < 40 || area.height < 10 {
        let msg = format!(
            "terminal too small ({}×{}); need 40×10",
            area.width, area.height
        );
        buf.set_stringn(
            area.x,
            area.y,
            msg,
            area.width as usize,
            theme.style(Role::Warning),
        );
        return None;
    }
    let a = layout(st, area);
    // the topmost view that fills the main area, then what is stacked over it
    let screen = st.stack.iter().rposition(Layer::is_screen);
    match screen.map(|i| &st.stack[i]) {
        Some(Layer::Transcript(t)) => {
            super::run_panes::render_transcript(st, t, theme, a.main, buf)
        }
        Some(Layer::Runs(v)) => super::run_panes::render_runs(st, v, theme, a.main, buf),
        Some(Layer::Servers(v)) => super::servers::render_servers(st, v, theme, a.main, buf),
        Some(Layer::Full(f)) => detail::render_detail(st, Some(f), theme, a.main, buf),
        _ => {
            lists::render_queues(st, theme, a.queues, buf);
            lists::render_history(st, theme, a.history, buf);
            lists::render_pending(st, theme, a.pending, buf);
            detail::render_detail(st, None, theme, a.detail, buf);
        }
    }
    status::render_status(st, theme, Rect::new(area.x, a.status.y, area.width, 2), buf);
    let mut cursor = None;
    for l in &st.stack[screen.map_or(0, |i| i + 1)..] {
        cursor = match l {
            Layer::Help(h) => {
                overlays::render_help(st, h, theme, area, buf);
                None
            }
            Layer::Deny(p) => overlays::render_deny(st, p, theme, area, buf),
            Layer::Edit(p) => overlays::render_edit(st, p, theme, area, buf),
            Layer::Filter(input) => {
                // drawn in the hints row by the status line
                let label = status::FILTER_LABEL;
                let x = a.hints.x + label.width() as u16;
                let w = a.hints.width.saturating_sub(label.width() as u16 + 1) as usize;
                let col = input.visual_cursor() - input.visual_scroll(w);
                Some(Position::new(x + col as u16, a.hints.y))
            }
            _ => None,
        };
    }
    cursor
}

pub(super) fn pane_block<'a>(title: Line<'a>, focused: bool, theme: &Theme) -> Block<'a> {
    let (b, t) = if focused {
        (theme.style(Role::Focus), theme.style(Role::Focus))
    } else {
        (theme.style(Role::Border), theme.style(Role::Title))
    };
    Block::bordered().border_style(b).title(title.style(t))
}

/// A column: `s` fitted to `w - 1` columns plus a space.
pub(super) fn col(s: &str, w: usize) -> String {
    if w == 0 {
        return String::new();
    }
    let mut out = fit(s, w - 1);
    out.push(' ');
    out
}

/// Truncate (with `…`) or pad `s` to exactly `w` columns.
/// Lines `scroll..` of `lines` into `inner` (`scroll` clamped so the last line can reach the
/// bottom), and, when they do not all fit, where the view is (` 3-12/40 `) on the bottom
/// border of `area`. Returns the scroll used.
pub fn draw_scrolled(
    buf: &mut Buffer,
    area: Rect,
    inner: Rect,
    lines: &[Line<'_>],
    scroll: usize,
    mark: ratatui::style::Style,
) -> usize {
    let rows = inner.height as usize;
    let scroll = scroll.min(lines.len().saturating_sub(rows));
    for (i, line) in lines.iter().skip(scroll).take(rows).enumerate() {
        buf.set_line(inner.x, inner.y + i as u16, line, inner.width);
    }
    position_mark(buf, area, scroll, rows, lines.len(), mark);
    scroll
}

/// ` FIRST-LAST/TOTAL ` on the bottom border of `area`, when `total` lines do not fit in `rows`.
pub fn position_mark(
    buf: &mut Buffer,
    area: Rect,
    scroll: usize,
    rows: usize,
    total: usize,
    style: ratatui::style::Style,
) {
    if total <= rows || area.height == 0 {
        return;
    }
    let pos = format!(" {}-{}/{} ", scroll + 1, (scroll + rows).min(total), total);
    let x = area.x + area.width.saturating_sub(pos.width() as u16 + 2);
    buf.set_stringn(x, area.y + area.height - 1, pos, area.width as usize, style);
}

pub fn fit(s: &str, w: usize) -> String {
    let mut out = String::new();
    let mut cols = 0;
    let total = s.width();
    if total <= w {
        out.push_str(s);
        cols = total;
    } else if w > 0 {
        for c in s.chars() {
            let cw = c.width().unwrap_or(0);
            if cols + cw > w - 1 {
                break;
            }
            out.push(c);
            cols += cw;
        }
        out.push('…');
        cols += 1;
    }
    out.extend(std::iter::repeat_n(' ', w.saturating_sub(cols)));
    out
}

pub(super) fn secs_between(from: Timestamp, to: Timestamp) -> i64 {
    (to - from).num_seconds()
}

/// Age in a list row: `<1m`, `12m`, `3h05m`, `2d`. Rows never count seconds: a pane of
/// young approvals would redraw every row every second (and a remote console would send it).
/// The detail shows the exact age ([`fmt_age_exact`]).
pub fn fmt_age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => "<1m".into(),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d", s / 86400),
    }
}

/// Age to the second for the first hour, for one item's detail (its clock may tick): `45s`,
/// `12m 05s`, then `3h 05m`, `2d 3h` (the detail's creation time says the rest).
pub fn fmt_age_exact(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Time left in a list row, in whole minutes rounded down (never more than is left):
/// `<1m`, `4m`, `27m`, `1h05m`, `1d3h`, `overdue`. No seconds, for the reason of [`fmt_age`];
/// the detail counts them down.
pub fn fmt_left(secs: i64) -> String {
    match secs {
        ..0 => "overdue".into(),
        0..60 => "<1m".into(),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d{}h", secs / 86400, (secs % 86400) / 3600),
    }
}

fn left_role(secs: i64) -> Role {
    match secs {
        ..60 => Role::Danger,
        60..300 => Role::Warning,
        _ => Role::Pending,
    }
}

fn status_role(s: ApprovalStatus) -> Role {
    match s {
        ApprovalStatus::Pending => Role::Pending,
        ApprovalStatus::Approved => Role::Approved,
        ApprovalStatus::Denied => Role::Denied,
        ApprovalStatus::Expired | ApprovalStatus::Cancelled => Role::Expired,
    }
}

fn status_icon(s: ApprovalStatus) -> &'static str {
    match s {
        ApprovalStatus::Pending => "•",
        ApprovalStatus::Approved => "✓",
        ApprovalStatus::Denied => "✗",
        ApprovalStatus::Expired => "!",
        ApprovalStatus::Cancelled => "-",
    }
}

/// The first row to show of a list of `len` rows in a window of `rows`: the last offset,
/// moved as little as needed to keep `selected` in view, and never past the end.
pub(super) fn scroll_offset(
    last: usize,
    selected: Option<usize>,
    len: usize,
    rows: usize,
) -> usize {
    let mut off = last.min(len.saturating_sub(1));
    if let Some(s) = selected {
        if s < off {
            off = s;
        } else if s >= off + rows {
            off = s + 1 - rows;
        }
    }
    off.min(len.saturating_sub(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_pads_and_truncates() {
        assert_eq!(fit("abc", 5), "abc  ");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("日本語", 4), "日… ");
        assert_eq!(fit("x", 0), "");
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_age(5), "<1m");
        assert_eq!(fmt_age(59), "<1m");
        assert_eq!(fmt_age(60), "1m");
        assert_eq!(fmt_age(600), "10m");
        assert_eq!(fmt_age(3700), "1h01m");
        assert_eq!(fmt_age_exact(5), "5s");
        assert_eq!(fmt_age_exact(725), "12m 05s");
        assert_eq!(fmt_age_exact(3700), "1h 01m");
        assert_eq!(fmt_age_exact(90_000), "1d 1h");
        assert_eq!(fmt_left(-1), "overdue");
        assert_eq!(fmt_left(59), "<1m");
        assert_eq!(fmt_left(250), "4m");
        assert_eq!(fmt_left(1800), "30m");
        assert_eq!(fmt_left(3599), "59m");
    }
}
