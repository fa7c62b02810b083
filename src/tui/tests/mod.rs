//! Snapshots of every pane and overlay, and key → intent → effect tests.

use super::fixtures::{self, fixed_now};
use super::keymap::Keymap;
use super::panes;
use super::state::{ConsoleState, Effect, Focus, Intent, Layer, Move};
use super::theme::Theme;
use crate::frontend::{Connection, FrontendEvent};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use std::time::{Duration, Instant};

mod claims;
mod flows;
mod live;
mod quorum;
mod runs;

pub(super) fn key(code: KeyCode) -> KeyEvent {
    let modifiers = match code {
        KeyCode::Char(c) if c.is_ascii_uppercase() => KeyModifiers::SHIFT,
        KeyCode::BackTab => KeyModifiers::SHIFT,
        _ => KeyModifiers::NONE,
    };
    KeyEvent {
        code,
        modifiers,
        kind: KeyEventKind::Press,
        state: KeyEventState::NONE,
    }
}

pub(super) fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// A state with the sample scene, drawn once at `t0`.
pub(super) fn scene_state(t0: Instant) -> ConsoleState {
    let mut st = ConsoleState::new("gatehouse demo", "alice", Keymap::default());
    st.now = fixed_now();
    let (pending, recent) = fixtures::scene();
    st.apply(
        FrontendEvent::Snapshot {
            pending,
            recent,
            runs: Vec::new(),
            seq: 10,
        },
        t0,
    );
    st.mark_drawn(t0);
    st
}

/// A console whose only pending approvals are `pending`, drawn at `t0`.
pub(super) fn state_with(pending: Vec<crate::domain::Approval>, t0: Instant) -> ConsoleState {
    let mut st = ConsoleState::new("gatehouse", "alice", Keymap::default());
    st.now = fixed_now();
    st.apply(
        FrontendEvent::Snapshot {
            pending,
            recent: Vec::new(),
            runs: Vec::new(),
            seq: 1,
        },
        t0,
    );
    st.mark_drawn(t0);
    st
}

pub(super) fn later(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

pub(super) fn render(st: &ConsoleState, theme: &Theme, w: u16, h: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| {
        let area = f.area();
        if let Some(p) = panes::draw(st, theme, area, f.buffer_mut()) {
            f.set_cursor_position(p);
        }
    })
    .unwrap();
    t.backend().buffer().clone()
}

pub(super) fn screen_text(st: &ConsoleState, w: u16, h: u16) -> String {
    let b = render(st, &Theme::mono(), w, h);
    let mut s = String::new();
    for y in 0..h {
        for x in 0..w {
            s.push_str(b[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

/// Snapshot a state at both sizes in the default and mono themes.
pub(super) fn snap(name: &str, st: &ConsoleState) {
    for (w, h) in [(80u16, 24u16), (120, 35)] {
        for theme in ["default", "mono"] {
            let t = Theme::load(theme, false).unwrap();
            let buf = render(st, &t, w, h);
            // one folder and one naming for the snapshots of every test module
            let mut settings = insta::Settings::clone_current();
            settings.set_snapshot_path("../snapshots");
            settings.set_prepend_module_to_snapshot(false);
            settings.bind(|| {
                insta::assert_snapshot!(
                    format!("console__{name}_{w}x{h}_{theme}"),
                    format!("{buf:?}")
                )
            });
        }
    }
}

pub(super) fn select_tool(st: &mut ConsoleState, t: Instant, tool: &str, nth: usize) {
    st.apply_intent(Intent::MoveSelection(Move::Top), t);
    let mut seen = 0;
    for _ in 0..st.visible().len() {
        if st.selected_entry().unwrap().approval.tool == tool {
            if seen == nth {
                return;
            }
            seen += 1;
        }
        st.apply_intent(Intent::MoveSelection(Move::By(1)), t);
    }
    panic!("no {tool}");
}

// ---------- snapshots ----------

#[test]
pub(super) fn snapshot_dashboard_hostile_text() {
    let t0 = Instant::now();
    let st = scene_state(t0);
    // oldest first: the hostile db query is selected
    assert_eq!(st.selected_entry().unwrap().approval.tool, "query");
    snap("dashboard_escaped", &st);
}

#[test]
pub(super) fn snapshot_dashboard_refund() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "issue_refund", 0);
    snap("dashboard_refund", &st);
}

#[test]
pub(super) fn snapshot_queues_focused() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.apply_intent(Intent::FocusPrev, t0);
    assert_eq!(st.focus(), Focus::Queues);
    st.handle_key(&ch('j'), t0); // backup
    st.handle_key(&ch('j'), t0); // db
    st.handle_key(&ch('j'), t0); // primary
    assert_eq!(st.selected_queue(), Some("primary"));
    snap("queues_primary", &st);
}

#[test]
pub(super) fn snapshot_history_focused() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.handle_key(&key(KeyCode::Tab), t0);
    st.handle_key(&key(KeyCode::Tab), t0);
    assert_eq!(st.focus(), Focus::History);
    snap("history_focused", &st);
}

#[test]
pub(super) fn snapshot_full_screen() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "deploy", 0);
    st.handle_key(&key(KeyCode::Enter), t0);
    assert!(matches!(st.top(), Some(Layer::Full(_))));
    snap("full_screen", &st);
}

#[test]
pub(super) fn snapshot_help() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.handle_key(&ch('?'), t0);
    assert!(matches!(st.top(), Some(Layer::Help(_))));
    snap("help", &st);
}

#[test]
pub(super) fn snapshot_deny_prompt() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "issue_refund", 0);
    st.mark_drawn(t0);
    assert_eq!(st.handle_key(&ch('d'), later(t0, 500)), None);
    assert!(matches!(st.top(), Some(Layer::Deny(_))));
    st.handle_key(&key(KeyCode::Down), t0);
    st.handle_key(&key(KeyCode::Down), t0);
    snap("deny_prompt", &st);
    for (w, h) in [(80, 24), (120, 35)] {
        let text = screen_text(&st, w, h);
        let rows: Vec<&str> = text.lines().collect();
        // the prompt spans the width: its rows start and end on its own border, with
        // nothing of the panes under it showing at its edges
        let top = rows.iter().position(|r| r.starts_with("┌ Deny ")).unwrap();
        let bottom = top + rows[top..].iter().position(|r| r.starts_with('└')).unwrap();
        for r in &rows[top + 1..bottom] {
            assert!(r.starts_with('│') && r.ends_with('│'), "{r:?}\n{text}");
        }
        // and the arguments being denied stay in sight below it
        assert!(
            rows[bottom..]
                .iter()
                .any(|r| r.contains("\"amount\": 120.5")),
            "{text}"
        );
    }
}

#[test]
pub(super) fn snapshot_edit_prompt() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "deploy", 0);
    st.mark_drawn(t0);
    st.handle_key(&ch('e'), later(t0, 500));
    assert!(matches!(st.top(), Some(Layer::Edit(_))));
    snap("edit_prompt", &st);
}

#[test]
pub(super) fn snapshot_filter() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.handle_key(&ch('/'), t0);
    for c in "issue".chars() {
        st.handle_key(&ch(c), t0);
    }
    assert_eq!(st.visible().len(), 2);
    snap("filter", &st);
}

#[test]
pub(super) fn snapshot_empty_reconnecting() {
    let t0 = Instant::now();
    let mut st = ConsoleState::new("gatehouse console", "alice", Keymap::default());
    st.now = fixed_now();
    st.mono = t0;
    st.apply(
        FrontendEvent::Connection(Connection::Reconnecting {
            url: "http://10.0.0.5:7878".into(),
            attempt: 3,
            last_error: "connection refused".into(),
            next_try: Some(t0 + std::time::Duration::from_millis(2500)),
        }),
        t0,
    );
    st.apply(
        FrontendEvent::Snapshot {
            pending: vec![],
            recent: vec![],
            runs: Vec::new(),
            seq: 0,
        },
        t0,
    );
    snap("empty_reconnecting", &st);
    // the cause and a countdown to the next try, the URL nowhere twice
    let text = screen_text(&st, 120, 35);
    assert!(
        text.contains("○ reconnecting: connection refused · retry in 3s"),
        "{text}"
    );
}

#[test]
pub(super) fn snapshot_sending_and_notice() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "issue_refund", 0);
    st.mark_drawn(t0);
    let eff = st.handle_key(&ch('a'), later(t0, 400));
    assert!(matches!(eff, Some(Effect::Send(_))));
    snap("sending", &st);
}

#[test]
pub(super) fn snapshot_many_pending_scrolled() {
    let t0 = Instant::now();
    let mut st = ConsoleState::new("gatehouse bench", "alice", Keymap::default());
    st.now = fixed_now();
    st.apply(
        FrontendEvent::Snapshot {
            pending: fixtures::many(1000),
            recent: vec![],
            runs: Vec::new(),
            seq: 0,
        },
        t0,
    );
    for _ in 0..3 {
        st.handle_key(&key(KeyCode::PageDown), t0);
    }
    st.handle_key(&ch('j'), t0);
    snap("many_scrolled", &st);
}

// ---------- hostile text is shown escaped ----------

#[test]
pub(super) fn hostile_text_is_visible_and_badged() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.handle_key(&key(KeyCode::Enter), t0);
    let text = screen_text(&st, 120, 35);
    assert!(text.contains("/home\\u{d}ls"), "{text}");
    assert!(text.contains("\\u{1b}[2J"), "{text}");
    assert!(text.contains("invoice\\u{202e}fdp.exe"), "{text}");
    assert!(text.contains("Clean up\\u{200b} a test user."), "{text}");
    assert!(text.contains("⚠"));
    // no raw control or bidi character reaches the buffer
    for c in text.chars() {
        assert!(c == '\n' || !super::sanitize::needs_escape(c), "{c:?}");
    }
}
