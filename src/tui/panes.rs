//! Panes as components: each maps keys to intents and renders itself from the state.

use super::json::{json_lines, wrap_line, wrap_line_indent};
use super::keymap::Action;
use super::sanitize::{sanitize, segments};
use super::state::{
    COMMON_REASONS, ConsoleState, Focus, HistoryEntry, Intent, Move, NoticeKind, Overlay, View,
    short_id,
};
use super::theme::{Role, Theme};
use crate::domain::{ApprovalStatus, Timestamp};
use crate::frontend::Connection;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Widget};
use tui_input::Input;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// A pane: keys in, intents out; draws itself from the state.
pub trait Pane {
    fn handle_key(&self, key: &KeyEvent, st: &ConsoleState) -> Option<Intent>;
    fn render(&self, st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer);
}

pub struct Queues;
pub struct Pending;
pub struct Detail;
pub struct History;
pub struct StatusLine;
pub struct Help;
/// The deny-reason, edit and filter prompts.
pub struct Prompt;

pub(super) fn movement(key: &KeyEvent, st: &ConsoleState) -> Option<Move> {
    st.keymap.action(key).and_then(Move::from_action)
}

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
    let left_w = (area.width * 3 / 10).clamp(18, 32).min(area.width / 2);
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
    if st.transcript.is_some() {
        super::run_panes::Transcript.render(st, theme, a.main, buf);
    } else if st.view == View::Runs {
        super::run_panes::RunsList.render(st, theme, a.main, buf);
    } else if st.view == View::Servers {
        super::servers::ServersList.render(st, theme, a.main, buf);
    } else if matches!(st.overlay, Overlay::Full) {
        Detail.render(st, theme, a.main, buf);
    } else {
        Queues.render(st, theme, a.queues, buf);
        History.render(st, theme, a.history, buf);
        Pending.render(st, theme, a.pending, buf);
        Detail.render(st, theme, a.detail, buf);
    }
    StatusLine.render(st, theme, Rect::new(area.x, a.status.y, area.width, 2), buf);
    match &st.overlay {
        Overlay::Help => {
            Help.render(st, theme, area, buf);
            None
        }
        Overlay::Deny(_) | Overlay::Edit(_) => {
            Prompt.render(st, theme, area, buf);
            prompt_cursor(st, area)
        }
        Overlay::Filter(input) => {
            // drawn in the hints row by the status line
            let label = filter_label(st);
            let x = a.hints.x + label.width() as u16;
            let w = a.hints.width.saturating_sub(label.width() as u16 + 1) as usize;
            let col = input.visual_cursor() - input.visual_scroll(w);
            Some(Position::new(x + col as u16, a.hints.y))
        }
        _ => None,
    }
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

/// Compact age: `45s`, `12m`, `3h05m`, `2d`.
pub fn fmt_age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d", s / 86400),
    }
}

/// Compact time left: `45s`, `4m12s`, `27m`, `1h05m`, `overdue`.
pub fn fmt_left(secs: i64) -> String {
    match secs {
        ..0 => "overdue".into(),
        0..60 => format!("{secs}s"),
        60..600 => format!("{}m{:02}s", secs / 60, secs % 60),
        600..3600 => format!("{}m", secs / 60),
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

// ---------- queues ----------

impl Pane for Queues {
    fn handle_key(&self, key: &KeyEvent, st: &ConsoleState) -> Option<Intent> {
        movement(key, st).map(Intent::MoveQueue)
    }

    fn render(&self, st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) {
        let focused = st.focus == Focus::Queues;
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

impl Pane for Pending {
    fn handle_key(&self, key: &KeyEvent, st: &ConsoleState) -> Option<Intent> {
        movement(key, st).map(Intent::MoveSelection)
    }

    fn render(&self, st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) {
        let focused = st.focus == Focus::Pending;
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
        st.list_rows.set(rows.max(1));
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
            st.list_offset.set(0);
            return;
        }
        // virtualised: only rows [off, off + rows) are looked at
        let sel = st.selected_index();
        let off = scroll_offset(st.list_offset.get(), sel, visible.len(), rows);
        st.list_offset.set(off);
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

// ---------- detail ----------

impl Pane for Detail {
    fn handle_key(&self, key: &KeyEvent, st: &ConsoleState) -> Option<Intent> {
        movement(key, st).map(Intent::ScrollDetail)
    }

    fn render(&self, st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) {
        let focused = st.focus == Focus::Detail || matches!(st.overlay, Overlay::Full);
        let Some(e) = st.selected_entry() else {
            let block = pane_block(Line::from(" Detail "), focused, theme);
            let inner = block.inner(area);
            block.render(area, buf);
            if inner.height > 0 {
                buf.set_stringn(
                    inner.x + 1,
                    inner.y,
                    "Select an approval to see it here.",
                    inner.width.saturating_sub(1) as usize,
                    theme.style(Role::Muted),
                );
            }
            return;
        };
        let a = &e.approval;
        let mut title = vec![Span::raw(format!(" {} · {} ", e.tool, short_id(&a.id)))];
        if a.outcome_unknown {
            title.push(Span::styled(" OUTCOME UNKNOWN ", theme.style(Role::Danger)));
            title.push(Span::raw(" "));
        }
        if e.escaped {
            title.push(Span::styled(" ⚠ text escaped ", theme.style(Role::Warning)));
            title.push(Span::raw(" "));
        }
        let block = pane_block(Line::from(title), focused, theme);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height == 0 || inner.width < 10 {
            return;
        }
        let width = inner.width as usize;
        let lines = detail_lines(st, theme, width);
        let rows = inner.height as usize;
        st.detail_lines.set(lines.len());
        st.detail_rows.set(rows);
        let max_scroll = lines.len().saturating_sub(rows);
        let scroll = st.detail_scroll.min(max_scroll);
        for (i, line) in lines.iter().skip(scroll).take(rows).enumerate() {
            buf.set_line(inner.x, inner.y + i as u16, line, inner.width);
        }
        if lines.len() > rows {
            let pos = format!(
                " {}-{}/{} ",
                scroll + 1,
                (scroll + rows).min(lines.len()),
                lines.len()
            );
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

/// Untrusted text as spans: escapes in the escape style.
pub(super) fn untrusted(
    s: &str,
    style: Style,
    theme: &Theme,
    multiline: bool,
) -> Vec<Span<'static>> {
    segments(s, multiline)
        .into_iter()
        .map(|(t, esc)| {
            Span::styled(
                t.into_owned(),
                if esc {
                    theme.style(Role::Escape)
                } else {
                    style
                },
            )
        })
        .collect()
}

pub(super) const LABEL_W: usize = 9;

pub(super) fn field(label: &str, mut value: Vec<Span<'static>>, theme: &Theme) -> Line<'static> {
    let mut spans = vec![Span::styled(
        format!("{label:<LABEL_W$}"),
        theme.style(Role::Muted),
    )];
    spans.append(&mut value);
    Line::from(spans)
}

/// The detail of the selected approval, wrapped to `width`.
pub fn detail_lines(st: &ConsoleState, theme: &Theme, width: usize) -> Vec<Line<'static>> {
    let Some(e) = st.selected_entry() else {
        return Vec::new();
    };
    let a = &e.approval;
    let text = theme.style(Role::Text);
    let opt = |s: &Option<String>| -> Vec<Span<'static>> {
        match s {
            Some(s) => untrusted(s, text, theme, false),
            None => vec![Span::styled("—", theme.style(Role::Muted))],
        }
    };
    let mut raw: Vec<Line<'static>> = Vec::new();
    let mut fields: Vec<usize> = Vec::new();
    if let Some(f) = st.inflight(&a.id) {
        raw.push(Line::from(Span::styled(
            format!(
                "⏳ sending {}… (not decided until the runner confirms)",
                f.label
            ),
            theme.style(Role::Sending),
        )));
    }
    let muted = theme.style(Role::Muted);
    let sep = || Span::styled(" · ", muted);
    if a.outcome_unknown {
        raw.push(Line::from(Span::styled(
            format!("‼ {}", super::run_panes::OUTCOME_UNKNOWN),
            theme.style(Role::Danger),
        )));
        raw.push(Line::from(Span::styled(
            "  gatehouse stopped while this call ran: it may or may not have taken effect.",
            theme.style(Role::Danger),
        )));
    }
    // line 1: tool @ server, and the warning badge
    let mut tool = untrusted(&a.tool, theme.style(Role::Title), theme, false);
    if let Some(server) = &a.server {
        tool.push(Span::styled(" @ ", muted));
        tool.extend(untrusted(server, text, theme, false));
    }
    if e.escaped {
        tool.push(Span::raw("  "));
        tool.push(Span::styled(
            "⚠ escaped characters",
            theme.style(Role::Warning),
        ));
    }
    raw.push(Line::from(tool));
    // line 2: who
    let mut who = opt(&a.agent);
    if a.run_id.is_none() {
        who.push(sep());
        who.push(Span::styled("external submission", muted));
    }
    if a.agent.as_deref() != Some(a.requested_by.as_str()) {
        who.push(sep());
        who.push(Span::styled("from ", muted));
        who.extend(untrusted(&a.requested_by, text, theme, false));
    }
    fields.push(raw.len());
    raw.push(field("Agent", who, theme));
    // the run, what it is doing, and how to see what led here
    if let Some(r) = &a.run_id {
        let mut run = untrusted(r, text, theme, false);
        match ConsoleState::run_of(a) {
            Some(id) => {
                if let Some(re) = st.run(&id) {
                    run.push(sep());
                    run.push(Span::styled(
                        re.summary.status.as_str(),
                        theme.style(super::run_panes::run_status_role(re.summary.status)),
                    ));
                    run.push(Span::styled(format!(" turn {}", re.summary.turns), muted));
                }
                run.push(sep());
                run.push(Span::styled(
                    st.keymap.hint(Action::Transcript),
                    theme.style(Role::StatusKey),
                ));
                run.push(Span::styled(" opens the transcript", muted));
            }
            None => {
                run.push(sep());
                run.push(Span::styled("the submitter's run (no transcript)", muted));
            }
        }
        fields.push(raw.len());
        raw.push(field("Run", run, theme));
    }
    // line 3: the policy rule that asked, and why
    let mut policy = match &a.policy.name {
        Some(n) => untrusted(n, theme.style(Role::Badge), theme, false),
        None => vec![Span::styled("no rule matched", theme.style(Role::Badge))],
    };
    if let Some(r) = a.policy.rule {
        policy.push(Span::styled(format!(" rule {r}"), theme.style(Role::Badge)));
    }
    policy.push(Span::styled(": ", muted));
    policy.extend(untrusted(&a.policy.reason, text, theme, false));
    fields.push(raw.len());
    raw.push(field("Policy", policy, theme));
    // line 4: queue, age, time left
    let mut queue = untrusted(&a.queue, text, theme, false);
    queue.push(Span::styled(format!(" tier {}", a.tier), muted));
    queue.push(sep());
    queue.push(Span::styled(
        format!("{} old", fmt_age(secs_between(a.created_at, st.now))),
        muted,
    ));
    queue.push(sep());
    queue.push(match a.expires_at {
        Some(t) => {
            let s = secs_between(st.now, t);
            let long = if s < 0 {
                "overdue".to_string()
            } else {
                format!(
                    "{}{}m {:02}s left",
                    if s >= 3600 {
                        format!("{}h ", s / 3600)
                    } else {
                        String::new()
                    },
                    (s % 3600) / 60,
                    s % 60
                )
            };
            Span::styled(long, theme.style(left_role(s)))
        }
        None => Span::styled("no deadline", muted),
    });
    fields.push(raw.len());
    raw.push(field("Queue", queue, theme));
    // the arguments: exactly what will run
    raw.push(Line::from(vec![
        Span::styled("Arguments", theme.style(Role::Header)),
        Span::styled(
            format!(
                "  sha256 {}…",
                &a.arguments_sha256[..a.arguments_sha256.len().min(16)]
            ),
            muted,
        ),
    ]));
    let json_start = raw.len();
    raw.extend(json_lines(
        &serde_json::Value::Object(a.arguments.clone()),
        theme,
    ));
    let json_end = raw.len();
    raw.push(Line::from(Span::styled(
        "Reasoning",
        theme.style(Role::Header),
    )));
    match a.reasoning.as_deref() {
        Some(r) if !r.is_empty() => {
            // keep real line breaks; escape everything else
            let spans = untrusted(r, text, theme, true);
            let mut cur: Vec<Span<'static>> = Vec::new();
            for sp in spans {
                let style = sp.style;
                let content = sp.content.into_owned();
                let mut parts = content.split('\n').peekable();
                while let Some(p) = parts.next() {
                    if !p.is_empty() {
                        cur.push(Span::styled(p.to_string(), style));
                    }
                    if parts.peek().is_some() {
                        raw.push(Line::from(std::mem::take(&mut cur)));
                    }
                }
            }
            raw.push(Line::from(cur));
        }
        _ => raw.push(Line::from(Span::styled("(no reasoning given)", muted))),
    }
    let editable = if ConsoleState::editable(a) {
        "edits honoured"
    } else {
        "edits not offered"
    };
    fields.push(raw.len());
    raw.push(field(
        "Id",
        vec![Span::styled(format!("{}  {editable}", a.id), muted)],
        theme,
    ));
    fields.push(raw.len());
    raw.push(field(
        "Created",
        vec![Span::styled(
            a.created_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            muted,
        )],
        theme,
    ));
    let mut out = Vec::with_capacity(raw.len());
    for (i, l) in raw.iter().enumerate() {
        if (json_start..json_end).contains(&i) {
            out.extend(wrap_line(l, width, false));
        } else if fields.contains(&i) {
            out.extend(wrap_line_indent(l, width, true, LABEL_W));
        } else {
            out.extend(wrap_line(l, width, true));
        }
    }
    out
}

// ---------- history ----------

impl Pane for History {
    fn handle_key(&self, key: &KeyEvent, st: &ConsoleState) -> Option<Intent> {
        movement(key, st).map(Intent::ScrollHistory)
    }

    fn render(&self, st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) {
        let focused = st.focus == Focus::History;
        let block = pane_block(
            Line::from(format!(" History ({}) ", st.history_len())),
            focused,
            theme,
        );
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
        for (i, h) in st.history().enumerate().skip(st.history_scroll) {
            if y >= bottom {
                break;
            }
            let first = i == st.history_scroll;
            let sel = first && focused;
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

// ---------- status line and hints ----------

fn filter_label(_st: &ConsoleState) -> String {
    " / filter: ".to_string()
}

/// Key hints for the current context, generated from the keymap.
pub fn hints(st: &ConsoleState) -> Vec<(String, &'static str)> {
    let k = &st.keymap;
    let mut v = Vec::new();
    let move_hint = || {
        (
            format!("{}/{}", k.hint(Action::Down), k.hint(Action::Up)),
            "move",
        )
    };
    if st.transcript.is_some() {
        v.push(("Esc".to_string(), "close"));
        v.push((
            format!("{}/{}", k.hint(Action::Down), k.hint(Action::Up)),
            "scroll",
        ));
        v.push((
            format!("{}/{}", k.hint(Action::PageDown), k.hint(Action::PageUp)),
            "page",
        ));
        v.push((k.hint(Action::Bottom), "end"));
        v.push((k.hint(Action::Help), "help"));
        return v;
    }
    // the servers key is offered where there are servers to see
    let servers = !st.servers().is_empty();
    if st.view == View::Runs {
        v.push((k.hint(Action::Open), "transcript"));
        v.push(move_hint());
        v.push((k.hint(Action::Runs), "close"));
        if servers {
            v.push((k.hint(Action::Servers), "servers"));
        }
        v.push((k.hint(Action::Help), "help"));
        return v;
    }
    if st.view == View::Servers {
        v.push((k.hint(Action::Servers), "close"));
        v.push(move_hint());
        v.push((k.hint(Action::Runs), "runs"));
        v.push((k.hint(Action::Help), "help"));
        return v;
    }
    let sel = st.selected_entry();
    if let Some(e) = sel {
        v.push((k.hint(Action::Approve), "approve"));
        v.push((k.hint(Action::Deny), "deny"));
        if e.approval.run_id.is_some() {
            v.push((k.hint(Action::ApproveRun), "approve run"));
        }
        if ConsoleState::editable(&e.approval) {
            v.push((k.hint(Action::Edit), "edit"));
        }
        let open = if matches!(st.overlay, Overlay::Full) {
            "close"
        } else {
            "open"
        };
        v.push((k.hint(Action::Open), open));
        if ConsoleState::run_of(&e.approval).is_some() {
            v.push((k.hint(Action::Transcript), "transcript"));
        }
    }
    v.push((k.hint(Action::Help), "help"));
    v.push((k.hint(Action::Quit), "quit"));
    v.push((k.hint(Action::Runs), "runs"));
    if servers {
        v.push((k.hint(Action::Servers), "servers"));
    }
    v.push((k.hint(Action::Filter), "filter"));
    v.push((k.hint(Action::NextPane), "pane"));
    v.push(move_hint());
    v
}

impl Pane for StatusLine {
    fn handle_key(&self, _key: &KeyEvent, _st: &ConsoleState) -> Option<Intent> {
        None
    }

    /// Two rows: status, then a notice, the filter input or key hints.
    fn render(&self, st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) {
        if area.height == 0 {
            return;
        }
        let status = theme.style(Role::Status);
        let row = Rect::new(area.x, area.y, area.width, 1);
        buf.set_style(row, status);
        let (conn, conn_role) = if st.link_closed {
            ("disconnected from runner".to_string(), Role::Danger)
        } else {
            match &st.connection {
                Connection::Local => ("● local".to_string(), Role::Status),
                Connection::Connected { url } => (format!("● {}", sanitize(url).0), Role::Status),
                // the URL is shown while connected; when reconnecting the error matters more
                Connection::Reconnecting {
                    url: _,
                    attempt,
                    last_error,
                } => (
                    format!("○ reconnecting (try {attempt}): {}", sanitize(last_error).0),
                    Role::Warning,
                ),
            }
        };
        let mut spans = vec![
            Span::styled(format!(" {} ", sanitize(&st.title).0), status),
            Span::styled("│ ", status),
            Span::styled(
                format!("{} ", sanitize(&st.reviewer).0),
                status.patch(theme.style(Role::StatusKey)),
            ),
            Span::styled("│ ", status),
            Span::styled(format!("{conn} "), status.patch(theme.style(conn_role))),
            Span::styled("│ ", status),
        ];
        let warning_at = spans.len();
        spans.push(Span::styled(
            format!(
                "{} pending · {} queue{}",
                st.pending_count(),
                st.queue_count(),
                if st.queue_count() == 1 { "" } else { "s" }
            ),
            status,
        ));
        if !st.runs().is_empty() {
            spans.push(Span::styled(
                format!(
                    " · {} run{} active",
                    st.active_runs(),
                    if st.active_runs() == 1 { "" } else { "s" }
                ),
                status,
            ));
        }
        if st.inflight_count() > 0 {
            spans.push(Span::styled(
                format!(" · {} sending", st.inflight_count()),
                status.patch(theme.style(Role::Sending)),
            ));
        }
        // an MCP server that is not ready is a health problem like the link: shown beside it,
        // shortened when the counts would not fit
        let used: usize = spans.iter().map(|s| s.width()).sum();
        let warning = super::servers::status_warning(st, false)
            .filter(|(w, _)| used + w.width() + 3 <= row.width as usize)
            .or_else(|| super::servers::status_warning(st, true));
        if let Some((warning, role)) = warning {
            spans.splice(
                warning_at..warning_at,
                [
                    Span::styled(format!("{warning} "), status.patch(theme.style(role))),
                    Span::styled("│ ", status),
                ],
            );
        }
        buf.set_line(row.x, row.y, &Line::from(spans), row.width);
        if area.height < 2 {
            return;
        }
        let row = Rect::new(area.x, area.y + 1, area.width, 1);
        let w = row.width as usize;
        if let Overlay::Filter(input) = &st.overlay {
            let label = filter_label(st);
            buf.set_stringn(row.x, row.y, &label, w, theme.style(Role::Header));
            let iw = w.saturating_sub(label.width() + 1);
            let x = row.x + label.width() as u16;
            render_input(input, Rect::new(x, row.y, iw as u16, 1), theme, buf);
            return;
        }
        if let Some(n) = &st.notice {
            let role = match n.kind {
                NoticeKind::Info => Role::Info,
                NoticeKind::Ok => Role::Approved,
                NoticeKind::Warn => Role::Warning,
                NoticeKind::Error => Role::Danger,
            };
            buf.set_stringn(row.x, row.y, format!(" {}", n.text), w, theme.style(role));
            return;
        }
        let mut spans = Vec::new();
        let mut used = 0;
        for (key, label) in hints(st) {
            let piece = key.width() + label.len() + 3;
            if used + piece > w {
                break;
            }
            spans.push(Span::styled(
                format!(" {key}"),
                theme.style(Role::StatusKey),
            ));
            spans.push(Span::styled(format!(" {label} "), theme.style(Role::Muted)));
            used += piece;
        }
        buf.set_line(row.x, row.y, &Line::from(spans), row.width);
    }
}

fn render_input(input: &Input, area: Rect, theme: &Theme, buf: &mut Buffer) {
    let w = area.width as usize;
    buf.set_style(area, theme.style(Role::Input));
    let scroll = input.visual_scroll(w);
    let mut col = 0;
    let mut x = area.x;
    for c in input.value().chars() {
        let cw = c.width().unwrap_or(0);
        if col < scroll {
            col += cw;
            continue;
        }
        if (x - area.x) as usize + cw > w {
            break;
        }
        let mut s = String::new();
        if super::sanitize::needs_escape(c) {
            s.push('?');
        } else {
            s.push(c);
        }
        buf.set_stringn(x, area.y, &s, cw.max(1), theme.style(Role::Input));
        x += cw.max(1) as u16;
        col += cw;
    }
}

// ---------- overlays ----------

pub(super) fn popup(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width.saturating_sub(2));
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

impl Pane for Help {
    fn handle_key(&self, key: &KeyEvent, st: &ConsoleState) -> Option<Intent> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.code == KeyCode::Esc {
            return Some(Intent::ToggleHelp);
        }
        match st.keymap.action(key) {
            Some(Action::Help) | Some(Action::Quit) => Some(Intent::ToggleHelp),
            _ => movement(key, st).map(Intent::ScrollHelp),
        }
    }

    fn render(&self, st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) {
        let k = &st.keymap;
        let key_w = Action::ALL
            .iter()
            .map(|a| k.hint_all(*a).width())
            .max()
            .unwrap_or(4)
            + 2;
        let mut lines: Vec<Line> = Action::ALL
            .iter()
            .map(|a| {
                Line::from(vec![
                    Span::styled(fit(&k.hint_all(*a), key_w), theme.style(Role::Header)),
                    Span::styled(a.describe(), theme.style(Role::Overlay)),
                ])
            })
            .collect();
        lines.push(Line::from(""));
        for note in [
            "Prompts: Enter submits, Esc cancels; ↑/↓ picks a common deny reason.",
            "⚠ marks text with control or invisible characters, shown as \\u{..}; ‼ marks a call \
             whose outcome is unknown (gatehouse stopped while it ran).",
            "Decide keys are ignored until the approval has been on screen 0.3 s (1 s when it \
             replaced one decided elsewhere). Pasted text never decides.",
            "The runs and servers views and the transcript close with Esc (or the key that \
             opened them); decide keys work only on the dashboard.",
        ] {
            lines.push(Line::from(Span::styled(note, theme.style(Role::Muted))));
        }
        let w = (lines.iter().map(|l| l.width()).max().unwrap_or(40) as u16 + 4)
            .min(area.width.saturating_sub(2));
        let mut wrapped = Vec::new();
        for l in &lines {
            wrapped.extend(wrap_line(l, w.saturating_sub(3) as usize, true));
        }
        let r = popup(area, w, wrapped.len() as u16 + 2);
        Clear.render(r, buf);
        let rows = r.height.saturating_sub(2) as usize;
        let over = wrapped.len() > rows;
        let title = if over {
            " Help · Esc closes · ↓/↑ scroll "
        } else {
            " Help · Esc closes "
        };
        let block = Block::bordered()
            .border_style(theme.style(Role::Focus))
            .title(Line::from(title).style(theme.style(Role::Focus)))
            .style(theme.style(Role::Overlay));
        let inner = block.inner(r);
        block.render(r, buf);
        let max = wrapped.len().saturating_sub(rows);
        st.help_max_scroll.set(max);
        let scroll = st.help_scroll.min(max);
        if over {
            let pos = format!(
                " {}-{}/{} ",
                scroll + 1,
                (scroll + rows).min(wrapped.len()),
                wrapped.len()
            );
            let x = r.x + r.width.saturating_sub(pos.width() as u16 + 2);
            buf.set_stringn(
                x,
                r.y + r.height - 1,
                pos,
                r.width as usize,
                theme.style(Role::Focus),
            );
        }
        for (i, l) in wrapped
            .iter()
            .skip(scroll)
            .take(inner.height as usize)
            .enumerate()
        {
            buf.set_line(
                inner.x + 1,
                inner.y + i as u16,
                l,
                inner.width.saturating_sub(1),
            );
        }
    }
}

impl Pane for Prompt {
    fn handle_key(&self, key: &KeyEvent, st: &ConsoleState) -> Option<Intent> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let filter = matches!(st.overlay, Overlay::Filter(_));
        let deny = matches!(st.overlay, Overlay::Deny(_));
        Some(match key.code {
            KeyCode::Enter if key.kind == KeyEventKind::Press => Intent::PromptSubmit,
            KeyCode::Enter => return None,
            KeyCode::Esc if filter => Intent::ClearFilter,
            KeyCode::Esc => Intent::CloseOverlay,
            KeyCode::Char('c') if ctrl => {
                if filter {
                    Intent::ClearFilter
                } else {
                    Intent::CloseOverlay
                }
            }
            KeyCode::Up if deny => Intent::PromptPick(-1),
            KeyCode::Down if deny => Intent::PromptPick(1),
            KeyCode::Tab | KeyCode::BackTab => return None,
            _ => Intent::PromptKey(*key),
        })
    }

    fn render(&self, st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) {
        match &st.overlay {
            Overlay::Deny(p) => {
                let name = st
                    .entry(&p.target.id)
                    .map(|e| e.tool.clone())
                    .unwrap_or_default();
                let r = popup(area, 72, 12);
                Clear.render(r, buf);
                let block = Block::bordered()
                    .border_style(theme.style(Role::Denied))
                    .title(
                        Line::from(format!(" Deny {name} · {} ", short_id(&p.target.id)))
                            .style(theme.style(Role::Denied)),
                    )
                    .style(theme.style(Role::Overlay));
                let inner = block.inner(r);
                block.render(r, buf);
                if inner.height < 3 {
                    return;
                }
                let w = inner.width as usize;
                buf.set_stringn(
                    inner.x + 1,
                    inner.y,
                    "Reason:",
                    w,
                    theme.style(Role::Header),
                );
                render_input(
                    &p.input,
                    Rect::new(inner.x + 9, inner.y, inner.width.saturating_sub(10), 1),
                    theme,
                    buf,
                );
                if let Some(err) = &p.error {
                    buf.set_stringn(
                        inner.x + 1,
                        inner.y + 1,
                        err,
                        w.saturating_sub(1),
                        theme.style(Role::Danger),
                    );
                }
                buf.set_stringn(
                    inner.x + 1,
                    inner.y + 2,
                    "Common reasons (↑/↓ to pick):",
                    w.saturating_sub(1),
                    theme.style(Role::Muted),
                );
                for (i, r) in COMMON_REASONS.iter().enumerate() {
                    let y = inner.y + 3 + i as u16;
                    if y + 1 >= inner.y + inner.height {
                        break;
                    }
                    let picked = p.picked == Some(i);
                    let style = if picked {
                        theme.style(Role::Selection)
                    } else {
                        theme.style(Role::Overlay)
                    };
                    buf.set_stringn(
                        inner.x + 1,
                        y,
                        fit(
                            &format!("{} {r}", if picked { "▸" } else { " " }),
                            w.saturating_sub(2),
                        ),
                        w.saturating_sub(2),
                        style,
                    );
                }
                let k = "Enter deny · Esc cancel";
                buf.set_stringn(
                    inner.x + 1,
                    inner.y + inner.height - 1,
                    k,
                    w.saturating_sub(1),
                    theme.style(Role::Muted),
                );
            }
            Overlay::Edit(p) => {
                let name = st
                    .entry(&p.target.id)
                    .map(|e| e.tool.clone())
                    .unwrap_or_default();
                let r = popup(area, 100, 8);
                Clear.render(r, buf);
                let block = Block::bordered()
                    .border_style(theme.style(Role::Focus))
                    .title(
                        Line::from(format!(
                            " Edit arguments of {name} · {} ",
                            short_id(&p.target.id)
                        ))
                        .style(theme.style(Role::Focus)),
                    )
                    .style(theme.style(Role::Overlay));
                let inner = block.inner(r);
                block.render(r, buf);
                if inner.height < 4 {
                    return;
                }
                let w = inner.width as usize;
                render_input(
                    &p.input,
                    Rect::new(inner.x + 1, inner.y, inner.width.saturating_sub(2), 1),
                    theme,
                    buf,
                );
                let (msg, role) = match &p.parsed {
                    Ok(_) => ("✓ a valid JSON object".to_string(), Role::Approved),
                    Err(e) => (format!("✗ {}", sanitize(e).0), Role::Danger),
                };
                buf.set_stringn(
                    inner.x + 1,
                    inner.y + 2,
                    msg,
                    w.saturating_sub(2),
                    theme.style(role),
                );
                buf.set_stringn(
                    inner.x + 1,
                    inner.y + 3,
                    "Non-ASCII characters are shown as \\uXXXX JSON escapes.",
                    w.saturating_sub(2),
                    theme.style(Role::Muted),
                );
                buf.set_stringn(
                    inner.x + 1,
                    inner.y + inner.height - 1,
                    "Enter approve the edited call · Esc cancel",
                    w.saturating_sub(2),
                    theme.style(Role::Muted),
                );
            }
            _ => {}
        }
    }
}

fn prompt_cursor(st: &ConsoleState, area: Rect) -> Option<Position> {
    match &st.overlay {
        Overlay::Deny(p) => {
            let r = popup(area, 72, 12);
            let w = r.width.saturating_sub(2 + 10) as usize;
            let col = p.input.visual_cursor() - p.input.visual_scroll(w);
            Some(Position::new(r.x + 1 + 9 + col as u16, r.y + 1))
        }
        Overlay::Edit(p) => {
            let r = popup(area, 100, 8);
            let w = r.width.saturating_sub(2 + 2) as usize;
            let col = p.input.visual_cursor() - p.input.visual_scroll(w);
            Some(Position::new(r.x + 2 + col as u16, r.y + 1))
        }
        _ => None,
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
        assert_eq!(fmt_age(5), "5s");
        assert_eq!(fmt_age(600), "10m");
        assert_eq!(fmt_age(3700), "1h01m");
        assert_eq!(fmt_left(-1), "overdue");
        assert_eq!(fmt_left(250), "4m10s");
        assert_eq!(fmt_left(1800), "30m");
    }
}
