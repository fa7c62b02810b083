//! The MCP servers: the servers view (`S`) and the status line's warning when one is not
//! ready. Fed by `FrontendEvent::Servers`, the whole list each time.

use super::json::wrap_line_indent;
use super::panes::{col, fit, pane_block, untrusted};
use super::sanitize::{has_escapes, sanitize};
use super::state::ConsoleState;
use super::theme::{Role, Theme};
use super::views::ServersView;
use crate::frontend::ServerView;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;
use unicode_width::UnicodeWidthStr;

/// One server as the console shows it, sanitised once on arrival.
#[derive(Clone, Debug)]
pub struct ServerEntry {
    pub view: ServerView,
    pub name: String,
    /// The state in one word (`ready`, `failed`, …).
    pub word: String,
    /// Why it failed, on one line; empty unless it failed.
    pub error: String,
    /// Its name or error needed escaping: show the warning badge.
    pub escaped: bool,
}

impl ServerEntry {
    pub fn new(view: ServerView) -> ServerEntry {
        let one_line = |s: &str| sanitize(s.trim()).0.into_owned();
        ServerEntry {
            name: one_line(&view.name),
            word: one_line(view.word()),
            error: view.error().map(one_line).unwrap_or_default(),
            escaped: has_escapes(&view.name) || has_escapes(&view.state),
            view,
        }
    }

    /// The style of its state: ready ok, on its way pending, failed danger.
    pub fn role(&self) -> Role {
        if self.view.ready {
            return Role::Approved;
        }
        match self.view.word() {
            "failed" => Role::Danger,
            "starting" | "restarting" => Role::Pending,
            _ => Role::Expired,
        }
    }
}

/// The status line's warning when any server is not ready (`⚠ mcp: postgres failed`), with
/// its role: danger if one failed, warning otherwise. `None` when all are ready, or none.
/// `short` leaves out how many more are not ready, for a narrow status line.
pub fn status_warning(st: &ConsoleState, short: bool) -> Option<(String, Role)> {
    let not_ready: Vec<&ServerEntry> = st.servers().iter().filter(|s| !s.view.ready).collect();
    // a failed server first: it is the one that needs a human
    let first = not_ready
        .iter()
        .find(|s| s.view.failed())
        .or(not_ready.first())?;
    let mut text = format!("⚠ mcp: {} {}", clip(&first.name, 20), clip(&first.word, 12));
    if not_ready.len() > 1 && !short {
        text.push_str(&format!(" (+{})", not_ready.len() - 1));
    }
    let role = if first.view.failed() {
        Role::Danger
    } else {
        Role::Warning
    };
    Some((text, role))
}

/// `s` cut to `w` columns with `…`, not padded.
fn clip(s: &str, w: usize) -> String {
    if s.width() <= w {
        s.to_string()
    } else {
        fit(s, w).trim_end().to_string()
    }
}

/// The servers view (`S`): one line per server.
pub fn render_servers(
    st: &ConsoleState,
    v: &ServersView,
    theme: &Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    {
        let servers = st.servers();
        let ready = servers.iter().filter(|s| s.view.ready).count();
        let title = format!(" MCP servers ({}) · {ready} ready ", servers.len());
        let block = pane_block(Line::from(title), true, theme);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 2 || inner.width < 30 {
            return;
        }
        let w = inner.width as usize;
        // columns: badge(1) name state(12) tools(6) restarts(9) error
        let rest = w.saturating_sub(1 + 12 + 6 + 9);
        let name_w = (rest * 35 / 100).clamp(12.min(rest), 28);
        let error_w = rest - name_w;
        let header = format!(
            " {}{}{}{}{}",
            col("NAME", name_w),
            col("STATE", 12),
            col("TOOLS", 6),
            col("RESTARTS", 9),
            fit("ERROR", error_w),
        );
        buf.set_stringn(inner.x, inner.y, header, w, theme.style(Role::Header));
        let avail = inner.height as usize - 1;
        // under the list, the selected server's failure in full (the row clips it)
        let footer = st
            .servers()
            .get(st.selected_server())
            .map(|e| failure_lines(e, theme, w))
            .unwrap_or_default();
        let rows = avail.saturating_sub(footer.len()).max(avail.min(3));
        if servers.is_empty() {
            buf.set_stringn(
                inner.x + 1,
                inner.y + 1,
                "No MCP servers.",
                w.saturating_sub(1),
                theme.style(Role::Muted),
            );
            return;
        }
        let sel = st.selected_server();
        let off = super::panes::scroll_offset(v.offset, Some(sel), servers.len(), rows);
        let sel_style = theme.style(Role::Selection);
        for (i, e) in servers.iter().enumerate().skip(off).take(rows) {
            let y = inner.y + 1 + (i - off) as u16;
            let base = |r: Role| {
                if i == sel { sel_style } else { theme.style(r) }
            };
            let badge = if e.escaped {
                Span::styled("⚠", base(Role::Warning))
            } else {
                Span::styled(" ", base(Role::Text))
            };
            let line = Line::from(vec![
                badge,
                Span::styled(col(&e.name, name_w), base(Role::Text)),
                Span::styled(col(&e.word, 12), base(e.role())),
                Span::styled(col(&e.view.tools.to_string(), 6), base(Role::Muted)),
                Span::styled(col(&e.view.restarts.to_string(), 9), base(Role::Muted)),
                Span::styled(fit(&e.error, error_w), base(Role::Danger)),
            ]);
            buf.set_line(inner.x, y, &line, inner.width);
        }
        let bottom = inner.y + inner.height;
        let top = inner.y + 1 + servers.len().min(rows) as u16;
        for (y, l) in (top..bottom).zip(&footer) {
            buf.set_line(inner.x, y, l, inner.width);
        }
        if servers.len() > rows {
            let pos = format!(" {}/{} ", sel + 1, servers.len());
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

/// Error lines shown for the selected server.
const FAILURE_LINES: usize = 6;

/// A blank line, then why the server failed, wrapped (escaped, at most `FAILURE_LINES`).
fn failure_lines(e: &ServerEntry, theme: &Theme, width: usize) -> Vec<Line<'static>> {
    let Some(error) = e.view.error() else {
        return Vec::new();
    };
    let muted = theme.style(Role::Muted);
    let mut head = vec![Span::styled(" ", muted)];
    head.extend(untrusted(
        &e.view.name,
        theme.style(Role::Text),
        theme,
        false,
    ));
    head.push(Span::styled(
        format!(
            " failed{}:",
            match e.view.restarts {
                0 => String::new(),
                1 => " (restarted once)".to_string(),
                n => format!(" (restarted {n} times)"),
            }
        ),
        theme.style(Role::Danger),
    ));
    let mut body = vec![Span::raw("   ")];
    body.extend(untrusted(error, theme.style(Role::Danger), theme, false));
    let mut out = vec![Line::from(""), Line::from(head)];
    let mut wrapped = wrap_line_indent(&Line::from(body), width, true, 3);
    if wrapped.len() > FAILURE_LINES {
        wrapped.truncate(FAILURE_LINES);
        if let Some(last) = wrapped.last_mut() {
            last.spans.push(Span::styled(" …", muted));
        }
    }
    out.extend(wrapped);
    out
}
