//! Overlays drawn over a view: the help, and the deny and edit prompts.

use super::fit;
use crate::tui::json::wrap_line;
use crate::tui::keymap::Action;
use crate::tui::sanitize::sanitize;
use crate::tui::state::{COMMON_REASONS, ConsoleState, DenyPrompt, EditPrompt, short_id};
use crate::tui::theme::{Role, Theme};
use crate::tui::views::HelpView;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Widget};
use tui_input::Input;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

pub(super) fn render_input(input: &Input, area: Rect, theme: &Theme, buf: &mut Buffer) {
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
        if crate::tui::sanitize::needs_escape(c) {
            s.push('?');
        } else {
            s.push(c);
        }
        buf.set_stringn(x, area.y, &s, cw.max(1), theme.style(Role::Input));
        x += cw.max(1) as u16;
        col += cw;
    }
}

/// A centred popup of `w`×`h` at most. One that would leave a column or two of the panes
/// under it at its sides takes the whole width instead: slivers of borders beside a popup
/// read as stray characters.
pub(in crate::tui) fn popup(area: Rect, w: u16, h: u16) -> Rect {
    let w = if w + 4 >= area.width { area.width } else { w };
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// The help text wrapped for `area`, and the popup it goes in.
pub fn help_lines(st: &ConsoleState, theme: &Theme, area: Rect) -> (Rect, Vec<Line<'static>>) {
    {
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
        let prompts = format!(
            "Prompts: {} submits, {} cancels; {}/{} picks a common deny reason.",
            k.hint_in_prompt(Action::Open),
            k.hint_in_prompt(Action::Close),
            k.hint_in_prompt(Action::Up),
            k.hint_in_prompt(Action::Down)
        );
        lines.push(Line::from(Span::styled(prompts, theme.style(Role::Muted))));
        for note in [
            "⚠ marks text with control or invisible characters, shown as \\u{..}; ‼ marks a call \
             whose outcome is unknown (gatehouse stopped while it ran).",
            "Decide keys act only on an approval whose whole arguments have been on screen (open \
             long ones with Enter and scroll to the end), after it has been shown 0.3 s (1 s \
             when it replaced one decided elsewhere). Pasted text never decides.",
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
        (popup(area, w, wrapped.len() as u16 + 2), wrapped)
    }
}

/// The help overlay; scrolled when it is taller than the terminal.
pub(super) fn render_help(
    st: &ConsoleState,
    h: &HelpView,
    theme: &Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    {
        let (r, wrapped) = help_lines(st, theme, area);
        Clear.render(r, buf);
        let rows = r.height.saturating_sub(2) as usize;
        let over = wrapped.len() > rows;
        let k = &st.keymap;
        let mut title = format!(" Help · {} closes ", k.hint(Action::Close));
        if over {
            title.push_str(&format!(
                "· {}/{} scroll ",
                k.hint(Action::Down),
                k.hint(Action::Up)
            ));
        }
        let block = Block::bordered()
            .border_style(theme.style(Role::Focus))
            .title(Line::from(title).style(theme.style(Role::Focus)))
            .style(theme.style(Role::Overlay));
        let inner = block.inner(r);
        block.render(r, buf);
        let max = wrapped.len().saturating_sub(rows);
        let scroll = h.scroll.min(max);
        if over {
            super::position_mark(
                buf,
                r,
                scroll,
                rows,
                wrapped.len(),
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

/// The deny prompt: placed under the arguments' first rows so the reviewer still sees what
/// they deny. Returns where the text cursor goes.
pub(super) fn render_deny(
    st: &ConsoleState,
    p: &DenyPrompt,
    theme: &Theme,
    area: Rect,
    buf: &mut Buffer,
) -> Option<Position> {
    let r = deny_area(area);
    {
        let name = st
            .entry(&p.target.id)
            .map(|e| e.tool.clone())
            .unwrap_or_default();
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
            return None;
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
            format!(
                "Common reasons ({}/{} to pick):",
                st.keymap.hint_in_prompt(Action::Up),
                st.keymap.hint_in_prompt(Action::Down)
            ),
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
        let k = format!(
            "{} deny · {} cancel",
            st.keymap.hint_in_prompt(Action::Open),
            st.keymap.hint_in_prompt(Action::Close)
        );
        buf.set_stringn(
            inner.x + 1,
            inner.y + inner.height - 1,
            k,
            w.saturating_sub(1),
            theme.style(Role::Muted),
        );
    }
    let w = r.width.saturating_sub(2 + 10) as usize;
    let col = p.input.visual_cursor() - p.input.visual_scroll(w);
    Some(Position::new(r.x + 1 + 9 + col as u16, r.y + 1))
}

/// The edit prompt. Returns where the text cursor goes.
pub(super) fn render_edit(
    st: &ConsoleState,
    p: &EditPrompt,
    theme: &Theme,
    area: Rect,
    buf: &mut Buffer,
) -> Option<Position> {
    let r = popup(area, 100, 8);
    {
        let name = st
            .entry(&p.target.id)
            .map(|e| e.tool.clone())
            .unwrap_or_default();
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
            return None;
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
            format!(
                "{} approve the edited call · {} cancel",
                st.keymap.hint_in_prompt(Action::Open),
                st.keymap.hint_in_prompt(Action::Close)
            ),
            w.saturating_sub(2),
            theme.style(Role::Muted),
        );
    }
    let w = r.width.saturating_sub(2 + 2) as usize;
    let col = p.input.visual_cursor() - p.input.visual_scroll(w);
    Some(Position::new(r.x + 2 + col as u16, r.y + 1))
}

/// Where the deny prompt goes: across the top, over the queues and the pending list, so the
/// detail below (the arguments being denied) stays in sight even at 80×24. Full width, so no
/// wide character of the panes under it is cut at its edge.
fn deny_area(area: Rect) -> Rect {
    let h = (COMMON_REASONS.len() as u16 + 5).min(area.height.saturating_sub(2) / 2);
    Rect::new(area.x, area.y, area.width, h)
}
