//! The dashboard's lists: queues, pending approvals and the history of decisions.

use super::{
    col, fit, fmt_age, fmt_left, left_role, pane_block, scroll_offset, secs_between, status_icon,
    status_role,
};
use crate::domain::Timestamp;
use crate::tui::entries::HistoryEntry;
use crate::tui::sanitize::sanitize;
use crate::tui::state::{ConsoleState, Focus};
use crate::tui::theme::{Role, Theme};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;
use unicode_width::UnicodeWidthStr;

// ---------- queues ----------

pub(super) fn render_queues(st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) {
    {
        let focused = st.focus() == Focus::Queues;
        let block = pane_block(Line::from(" Queues "), focused, theme);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height == 0 || inner.width < 4 {
            return;
        }
        let mut rows: Vec<(String, usize)> = vec![("all queues".into(), st.pending_count())];
        rows.extend(st.queues().map(|(q, n)| (sanitize(q).0.into_owned(), n)));
        let sel = st.selected_queue_row();
        let h = inner.height as usize;
        let off = sel.saturating_sub(h.saturating_sub(1));
        let w = inner.width as usize;
        for (i, (name, n)) in rows.iter().enumerate().skip(off).take(h) {
            let y = inner.y + (i - off) as u16;
            let count = n.to_string();
            let name_w = w.saturating_sub(count.len() + 1);
            let style = if i == sel {
                theme.style(if focused {
                    Role::Selection
                } else {
                    Role::SelectionInactive
                })
            } else if *n > 0 {
                theme.style(Role::Text)
            } else {
                theme.style(Role::Muted)
            };
            let count_style = if i == sel {
                style
            } else if *n > 0 {
                theme.style(Role::Pending)
            } else {
                theme.style(Role::Muted)
            };
            let line = Line::from(vec![
                Span::styled(fit(name, name_w), style),
                Span::styled(" ", style),
                Span::styled(count, count_style),
            ]);
            buf.set_line(inner.x, y, &line, inner.width);
        }
    }
}

// ---------- pending list ----------

pub(super) fn render_pending(st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) {
    {
        let focused = st.focus() == Focus::Pending;
        let visible = st.visible();
        let queue = st
            .selected_queue()
            .map(|q| sanitize(q).0.into_owned())
            .unwrap_or_else(|| "all queues".into());
        let mut title = format!(" Pending · {queue} ({}) ", visible.len());
        if !st.filter().is_empty() {
            title = format!(
                " Pending · {queue} · filter \"{}\" ({}) ",
                sanitize(st.filter()).0,
                visible.len()
            );
        }
        let block = pane_block(Line::from(title), focused, theme);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 2 || inner.width < 20 {
            return;
        }
        let w = inner.width as usize;
        // columns: badge(1) age(5) left(7) tool agent server policy
        let rest = w.saturating_sub(1 + 6 + 8);
        // The tool is what a reviewer must read: it keeps room for a full name like
        // `delete_user_account` at 80 columns; the other columns share what is left.
        let tool_w = (rest * 40 / 100).max(22.min(rest));
        let others = rest - tool_w;
        let agent_w = others * 40 / 100;
        let server_w = others * 30 / 100;
        let policy_w = others.saturating_sub(agent_w + server_w);
        let header = format!(
            " {}{}{}{}{}{}",
            fit("AGE", 6),
            fit("LEFT", 8),
            col("TOOL", tool_w),
            col("AGENT", agent_w),
            col("SERVER", server_w),
            fit("POLICY", policy_w)
        );
        buf.set_stringn(inner.x, inner.y, header, w, theme.style(Role::Header));
        let rows = inner.height as usize - 1;
        if visible.is_empty() {
            let msg = if st.filter().is_empty() {
                "No pending approvals."
            } else {
                "Nothing matches the filter (Esc clears it)."
            };
            buf.set_stringn(
                inner.x + 1,
                inner.y + 1,
                msg,
                w.saturating_sub(1),
                theme.style(Role::Muted),
            );
            return;
        }
        // virtualised: only rows [off, off + rows) are looked at
        let sel = st.selected_index();
        let off = scroll_offset(st.dashboard.list_offset, sel, visible.len(), rows);
        let sel_style = theme.style(if focused {
            Role::Selection
        } else {
            Role::SelectionInactive
        });
        for (i, key) in visible.iter().enumerate().skip(off).take(rows) {
            let Some(e) = st.entry(&key.id) else { continue };
            let a = &e.approval;
            let y = inner.y + 1 + (i - off) as u16;
            let selected = Some(i) == sel;
            let base = |r: Role| {
                if selected { sel_style } else { theme.style(r) }
            };
            let age = secs_between(a.created_at, st.now);
            let (left, left_r) = match a.expires_at {
                Some(t) => {
                    let s = secs_between(st.now, t);
                    (fmt_left(s), left_role(s))
                }
                None => ("—".into(), Role::Muted),
            };
            let badge = if a.outcome_unknown {
                Span::styled("‼", base(Role::Danger))
            } else if e.escaped {
                Span::styled("⚠", base(Role::Warning))
            } else {
                Span::styled(" ", base(Role::Text))
            };
            let last = if let Some(f) = st.inflight(&a.id) {
                Span::styled(fit(&format!("{}…", f.label), policy_w), base(Role::Sending))
            } else if a.outcome_unknown {
                Span::styled(fit("OUTCOME UNKNOWN", policy_w), base(Role::Danger))
            } else {
                Span::styled(fit(&e.policy, policy_w), base(Role::Badge))
            };
            let line = Line::from(vec![
                badge,
                Span::styled(fit(&fmt_age(age), 6), base(Role::Muted)),
                Span::styled(fit(&left, 8), base(left_r)),
                Span::styled(col(&e.tool, tool_w), base(Role::Text)),
                Span::styled(
                    col(if e.agent.is_empty() { "—" } else { &e.agent }, agent_w),
                    base(Role::Text),
                ),
                Span::styled(
                    col(
                        if e.server.is_empty() {
                            "—"
                        } else {
                            &e.server
                        },
                        server_w,
                    ),
                    base(Role::Muted),
                ),
                last,
            ]);
            buf.set_line(inner.x, y, &line, inner.width);
        }
        // a scroll indicator when the list is longer than the pane
        if visible.len() > rows {
            let pos = format!(" {}/{} ", sel.map_or(0, |s| s + 1), visible.len());
            let x = area.x + area.width.saturating_sub(pos.width() as u16 + 2);
            buf.set_stringn(
                x,
                area.y + area.height - 1,
                pos,
                area.width as usize,
                theme.style(Role::Muted),
            );
        }
    }
}

// ---------- history ----------

pub(super) fn render_history(st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) {
    {
        let focused = st.focus() == Focus::History;
        let d = &st.dashboard;
        let mut title = vec![Span::raw(format!(" History ({}) ", st.history_len()))];
        if d.history_new > 0 {
            // decisions that arrived above the rows being read
            title.push(Span::styled(
                format!(" {} new ↑ ", d.history_new),
                theme.style(Role::Warning),
            ));
        }
        let block = pane_block(Line::from(title), focused, theme);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height == 0 || inner.width < 8 {
            return;
        }
        let w = inner.width as usize;
        let mut y = inner.y;
        let bottom = inner.y + inner.height;
        if st.history_len() == 0 {
            buf.set_stringn(inner.x, y, "No decisions yet.", w, theme.style(Role::Muted));
            return;
        }
        let len = st.history_len();
        let rows = (inner.height as usize / 2).max(1);
        let off = scroll_offset(d.history_offset, Some(d.history_sel), len, rows);
        for (i, h) in st.history().enumerate().skip(off) {
            if y >= bottom {
                break;
            }
            let sel = i == d.history_sel && focused;
            for line in history_lines(h, st.now, w, theme) {
                if y >= bottom {
                    break;
                }
                let line = if sel {
                    line.patch_style(theme.style(Role::SelectionInactive))
                } else {
                    line
                };
                buf.set_line(inner.x, y, &line, inner.width);
                y += 1;
            }
        }
    }
}

fn history_lines(h: &HistoryEntry, now: Timestamp, w: usize, theme: &Theme) -> Vec<Line<'static>> {
    let a = &h.approval;
    let role = status_role(a.status);
    let when = format!(" {} ago", fmt_age(secs_between(h.at(), now)));
    let badge = if h.escaped { "⚠" } else { " " };
    let name_w = w.saturating_sub(2 + when.width() + 1);
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("{} ", status_icon(a.status)), theme.style(role)),
        Span::styled(fit(&h.tool, name_w), theme.style(Role::Text)),
        Span::styled(badge, theme.style(Role::Warning)),
        Span::styled(when, theme.style(Role::Muted)),
    ])];
    let who = if h.by.is_empty() { "?" } else { &h.by };
    // The server of the tool leads the second line: the first keeps its room for the tool.
    let mut second = String::from("  ");
    if !h.server.is_empty() {
        let server_w = (w * 2 / 5).max(6);
        let server = if h.server.width() > server_w {
            fit(&h.server, server_w)
        } else {
            h.server.clone()
        };
        second.push_str(&format!("@{server} "));
    }
    second.push_str(&format!("{} by {who}", a.status.as_str()));
    if !h.reason.is_empty() {
        second.push_str(": ");
        second.push_str(&h.reason);
    }
    lines.push(Line::from(Span::styled(
        fit(&second, w),
        theme.style(Role::Muted),
    )));
    lines
}
