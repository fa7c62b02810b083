//! The dashboard's lists: queues, pending approvals and the history of decisions.

use super::{
    col, fit, fmt_age, fmt_left, left_role, pane_block, scroll_offset, secs_between, status_icon,
    status_role,
};
use crate::domain::Timestamp;
use crate::tui::entries::{Entry, HistoryEntry};
use crate::tui::keymap::Action;
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

/// Widths of the pending list's columns. The tool (with its server), agent and policy take
/// what their longest visible value needs (capped), the arguments summary takes the rest; on
/// a narrow pane the policy goes first, so the summary keeps some room.
struct Cols {
    tool: usize,
    agent: usize,
    policy: usize,
    args: usize,
}

const CLAIMED: &str = " (claimed)";

/// The agent as the row shows it: a claim is marked as one.
fn agent_text(e: &Entry) -> (String, bool) {
    if e.agent.is_empty() {
        ("—".into(), false)
    } else {
        (e.agent.clone(), !e.approval.agent_verified)
    }
}

/// `tool@server`; the server may be a claim.
fn tool_text(e: &Entry) -> (String, bool) {
    if e.server.is_empty() {
        (e.tool.clone(), false)
    } else {
        (
            format!("{}@{}", e.tool, e.server),
            !e.approval.server_verified,
        )
    }
}

fn cell_width((text, claimed): (String, bool)) -> usize {
    text.width() + if claimed { CLAIMED.width() } else { 0 }
}

/// A column cell whose `(claimed)` mark is never cut off: the name gives way first, and
/// in a narrow column the mark alone is shown.
fn claimed_col((text, claimed): (String, bool), w: usize) -> String {
    let room = w.saturating_sub(1);
    if !claimed || text.width() + CLAIMED.width() <= room {
        let t = if claimed { text + CLAIMED } else { text };
        return col(&t, w);
    }
    if room >= CLAIMED.width() + 4 {
        let name = fit(&text, room - CLAIMED.width());
        return col(&format!("{name}{CLAIMED}"), w);
    }
    col(CLAIMED.trim_start(), w)
}

fn pending_cols(entries: &[&Entry], w: usize) -> Cols {
    let widest = |f: &dyn Fn(&Entry) -> usize, min: usize, max: usize| {
        entries
            .iter()
            .map(|e| f(e))
            .max()
            .unwrap_or(0)
            .clamp(min, max)
            + 1
    };
    let rest = w.saturating_sub(1 + 6 + 8);
    let mut c = Cols {
        tool: widest(&|e| cell_width(tool_text(e)), 4, 26),
        agent: widest(&|e| cell_width(agent_text(e)), 5, 21),
        policy: widest(&|e| e.policy.width(), 6, 11),
        args: 0,
    };
    let min_args = 16;
    let used = |c: &Cols| c.tool + c.agent + c.policy;
    if used(&c) + min_args > rest {
        c.policy = 0;
    }
    if used(&c) + min_args > rest {
        // narrow (80 columns): the tool keeps room for a name like `delete_user_account`
        // and the call's summary comes next; the agent (and its claim) is in the detail
        c.tool = c.tool.min(20);
        c.agent = if rest.saturating_sub(c.tool + 10) >= min_args {
            c.agent.min(10)
        } else {
            0
        };
    }
    c.args = rest.saturating_sub(used(&c));
    c
}

pub(super) fn render_pending(st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let focused = st.focus() == Focus::Pending;
    let visible = st.visible();
    // a long queue name is clipped here and never moves a column
    let queue = st
        .selected_queue()
        .map(|q| clip(&sanitize(q).0, 24))
        .unwrap_or_else(|| "all queues".into());
    let mut title = format!(" Pending · {queue} ({}) ", visible.len());
    if !st.filter().is_empty() {
        title = format!(
            " Pending · {queue} · filter \"{}\" ({}) ",
            clip(&sanitize(st.filter()).0, 24),
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
    let rows = inner.height as usize - 1;
    // virtualised: only rows [off, off + rows) are looked at
    let sel = st.selected_index();
    let off = scroll_offset(st.dashboard.list_offset, sel, visible.len(), rows);
    let shown: Vec<&Entry> = visible
        .iter()
        .skip(off)
        .take(rows)
        .filter_map(|k| st.entry(&k.id))
        .collect();
    let c = pending_cols(&shown, w);
    let mut header = format!(
        " {}{}{}",
        fit("AGE", 6),
        fit("LEFT", 8),
        col("TOOL", c.tool)
    );
    if c.agent > 0 {
        header.push_str(&col("AGENT", c.agent));
    }
    if c.policy > 0 {
        header.push_str(&col("POLICY", c.policy));
    }
    header.push_str(&fit("ARGUMENTS", c.args));
    buf.set_stringn(inner.x, inner.y, header, w, theme.style(Role::Header));
    if visible.is_empty() {
        let msg = if st.filter().is_empty() {
            "No pending approvals.".to_string()
        } else {
            format!(
                "Nothing matches the filter ({} clears it).",
                st.keymap.hint(Action::Close)
            )
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
    let sel_style = theme.style(if focused {
        Role::Selection
    } else {
        Role::SelectionInactive
    });
    for (n, e) in shown.iter().enumerate() {
        let i = off + n;
        let a = &e.approval;
        let y = inner.y + 1 + n as u16;
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
        let claim_role = |claimed: bool| if claimed { Role::Warning } else { Role::Text };
        let tool = tool_text(e);
        let agent = agent_text(e);
        let (tool_r, agent_r) = (claim_role(tool.1), claim_role(agent.1));
        let mut spans = vec![
            badge,
            Span::styled(fit(&fmt_age(age), 6), base(Role::Muted)),
            Span::styled(fit(&left, 8), base(left_r)),
            Span::styled(claimed_col(tool, c.tool), base(tool_r)),
        ];
        if c.agent > 0 {
            spans.push(Span::styled(claimed_col(agent, c.agent), base(agent_r)));
        }
        if c.policy > 0 {
            spans.push(Span::styled(col(&e.policy, c.policy), base(Role::Badge)));
        }
        // the call itself, or what is happening to it
        let call = if let Some(f) = st.inflight(&a.id) {
            Span::styled(fit(&format!("{}…", f.label), c.args), base(Role::Sending))
        } else if a.outcome_unknown {
            Span::styled(fit("OUTCOME UNKNOWN", c.args), base(Role::Danger))
        } else if let Some(q) = &e.quorum {
            // the two-person count leads the call: it is what a second reviewer looks for
            let q = format!("{q} ");
            let qw = q.width().min(c.args);
            spans.push(Span::styled(fit(&q, qw), base(Role::Badge)));
            Span::styled(fit(&e.summary, c.args.saturating_sub(qw)), base(Role::Text))
        } else {
            Span::styled(fit(&e.summary, c.args), base(Role::Text))
        };
        spans.push(call);
        buf.set_line(inner.x, y, &Line::from(spans), inner.width);
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

/// `s` cut to `w` columns with `…`, not padded.
fn clip(s: &str, w: usize) -> String {
    if s.width() <= w {
        s.to_string()
    } else {
        fit(s, w).trim_end().to_string()
    }
}

// ---------- history ----------

pub(super) fn render_history(st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) {
    {
        let focused = st.focus() == Focus::History;
        let d = &st.dashboard;
        let title = Line::from(format!(" History ({}) ", st.history_len()));
        let block = pane_block(title, focused, theme);
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
        if d.history_new > 0 {
            // decisions that arrived above the rows being read
            let mark = format!("↑ {} new", d.history_new);
            buf.set_stringn(inner.x, y, mark, w, theme.style(Role::Warning));
            y += 1;
        }
        let len = st.history_len();
        let rows = ((bottom - y) as usize / 2).max(1);
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
    // an edited call says so on its first line: the tool name gives way
    let edited = if a.requested_arguments.is_some()
        || a.decision.as_ref().is_some_and(|d| d.arguments.is_some())
    {
        " edited"
    } else {
        ""
    };
    let name_w = w.saturating_sub(2 + when.width() + 1 + edited.len());
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("{} ", status_icon(a.status)), theme.style(role)),
        Span::styled(fit(&h.tool, name_w), theme.style(Role::Text)),
        Span::styled(edited, theme.style(Role::Warning)),
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
