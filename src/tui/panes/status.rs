//! The status line (who, connection, counts) and the row under it (a notice, the filter
//! input, or the key hints of the view on top).

use super::overlays::render_input;
use crate::frontend::Connection;
use crate::tui::sanitize::sanitize;
use crate::tui::state::{ConsoleState, Layer, NoticeKind};
use crate::tui::theme::{Role, Theme};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// The label of the filter input in the hints row.
pub(super) const FILTER_LABEL: &str = " / filter: ";

/// Key hints for the view on top, generated from its bindings and the keymap.
pub fn hints(st: &ConsoleState) -> Vec<(String, &'static str)> {
    st.hints()
}

/// `text` cut to `w` columns at a word boundary, with `…` when cut: a notice never ends in
/// half a word.
pub fn clip_words(text: &str, w: usize) -> String {
    if text.width() <= w {
        return text.to_string();
    }
    let mut out = String::new();
    let mut cols = 0;
    let mut last_space = None;
    for c in text.chars() {
        let cw = c.width().unwrap_or(0);
        if cols + cw + 1 > w {
            break;
        }
        if c == ' ' {
            last_space = Some(out.len());
        }
        out.push(c);
        cols += cw;
    }
    if let Some(i) = last_space.filter(|i| *i > 0) {
        out.truncate(i);
    }
    let mut out = out.trim_end_matches([' ', ':', ',', '—', ';']).to_string();
    out.push('…');
    out
}

/// Two rows: status, then a notice, the filter input or key hints.
pub(super) fn render_status(st: &ConsoleState, theme: &Theme, area: Rect, buf: &mut Buffer) {
    {
        if area.height == 0 {
            return;
        }
        let status = theme.style(Role::Status);
        let row = Rect::new(area.x, area.y, area.width, 1);
        buf.set_style(row, status);
        let (conn, conn_role) = if st.inbox.link_closed {
            ("disconnected from runner".to_string(), Role::Danger)
        } else {
            match st.connection() {
                Connection::Local => ("● local".to_string(), Role::Status),
                Connection::Connected { url } => (format!("● {}", sanitize(url).0), Role::Status),
                // the URL is shown while connected; when reconnecting the error matters more
                Connection::Reconnecting {
                    url: _,
                    attempt,
                    last_error,
                    next_try,
                } => {
                    // the cause, and when the next try comes
                    let when = match next_try.map(|t| t.saturating_duration_since(st.mono)) {
                        Some(d) if !d.is_zero() => format!("retry in {}s", d.as_secs() + 1),
                        Some(_) => "retrying…".to_string(),
                        None => format!("try {attempt}"),
                    };
                    (
                        format!("○ reconnecting: {} · {when}", sanitize(last_error).0),
                        Role::Warning,
                    )
                }
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
        let warning = crate::tui::servers::status_warning(st, false)
            .filter(|(w, _)| used + w.width() + 3 <= row.width as usize)
            .or_else(|| crate::tui::servers::status_warning(st, true));
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
        if let Some(Layer::Filter(input)) = st.top() {
            let label = FILTER_LABEL;
            buf.set_stringn(row.x, row.y, label, w, theme.style(Role::Header));
            let iw = w.saturating_sub(label.width() + 1);
            let x = row.x + label.width() as u16;
            render_input(input, Rect::new(x, row.y, iw as u16, 1), theme, buf);
            return;
        }
        if let Some(n) = st.notice() {
            let role = match n.kind {
                NoticeKind::Info => Role::Info,
                NoticeKind::Ok => Role::Approved,
                NoticeKind::Warn => Role::Warning,
                NoticeKind::Error => Role::Danger,
            };
            let text = clip_words(&n.text, w.saturating_sub(1));
            buf.set_stringn(row.x, row.y, format!(" {text}"), w, theme.style(role));
            return;
        }
        let mut spans = Vec::new();
        let mut used = 0;
        for (key, label) in hints(st) {
            let piece = key.width() + label.len() + 3;
            if used + piece > w {
                continue; // a later, shorter hint may still fit
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
