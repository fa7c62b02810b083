//! Snapshots of every pane and overlay, and key → intent → effect tests.

use super::fixtures::{self, approval, decided, fixed_now};
use super::keymap::{Action, Keymap};
use super::panes;
use super::state::{ConsoleState, DecideKind, Effect, Focus, Intent, Move, Overlay, View};
use super::theme::Theme;
use crate::domain::{ApprovalStatus, AuditKind, Event, Verdict};
use crate::frontend::{Connection, DecisionOutcome, FrontendEvent};
use crossterm::event::{
    Event as CtEvent, KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use serde_json::json;
use std::time::{Duration, Instant};

fn key(code: KeyCode) -> KeyEvent {
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

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// A state with the sample scene, drawn once at `t0`.
fn scene_state(t0: Instant) -> ConsoleState {
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

fn later(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

fn render(st: &ConsoleState, theme: &Theme, w: u16, h: u16) -> Buffer {
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

fn screen_text(st: &ConsoleState, w: u16, h: u16) -> String {
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
fn snap(name: &str, st: &ConsoleState) {
    for (w, h) in [(80u16, 24u16), (120, 35)] {
        for theme in ["default", "mono"] {
            let t = Theme::load(theme, false).unwrap();
            let buf = render(st, &t, w, h);
            insta::assert_snapshot!(format!("{name}_{w}x{h}_{theme}"), format!("{buf:?}"));
        }
    }
}

fn select_tool(st: &mut ConsoleState, t: Instant, tool: &str, nth: usize) {
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
fn snapshot_dashboard_hostile_text() {
    let t0 = Instant::now();
    let st = scene_state(t0);
    // oldest first: the hostile db query is selected
    assert_eq!(st.selected_entry().unwrap().approval.tool, "query");
    snap("dashboard_escaped", &st);
}

#[test]
fn snapshot_dashboard_refund() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "issue_refund", 0);
    snap("dashboard_refund", &st);
}

#[test]
fn snapshot_queues_focused() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.apply_intent(Intent::FocusPrev, t0);
    assert_eq!(st.focus, Focus::Queues);
    st.handle_key(&ch('j'), t0); // backup
    st.handle_key(&ch('j'), t0); // db
    st.handle_key(&ch('j'), t0); // primary
    assert_eq!(st.selected_queue(), Some("primary"));
    snap("queues_primary", &st);
}

#[test]
fn snapshot_history_focused() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.handle_key(&key(KeyCode::Tab), t0);
    st.handle_key(&key(KeyCode::Tab), t0);
    assert_eq!(st.focus, Focus::History);
    snap("history_focused", &st);
}

#[test]
fn snapshot_full_screen() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "deploy", 0);
    st.handle_key(&key(KeyCode::Enter), t0);
    assert!(matches!(st.overlay, Overlay::Full));
    snap("full_screen", &st);
}

#[test]
fn snapshot_help() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.handle_key(&ch('?'), t0);
    assert!(matches!(st.overlay, Overlay::Help));
    snap("help", &st);
}

#[test]
fn snapshot_deny_prompt() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "issue_refund", 0);
    st.mark_drawn(t0);
    assert_eq!(st.handle_key(&ch('d'), later(t0, 500)), None);
    assert!(matches!(st.overlay, Overlay::Deny(_)));
    st.handle_key(&key(KeyCode::Down), t0);
    st.handle_key(&key(KeyCode::Down), t0);
    snap("deny_prompt", &st);
}

#[test]
fn snapshot_edit_prompt() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "deploy", 0);
    st.mark_drawn(t0);
    st.handle_key(&ch('e'), later(t0, 500));
    assert!(matches!(st.overlay, Overlay::Edit(_)));
    snap("edit_prompt", &st);
}

#[test]
fn snapshot_filter() {
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
fn snapshot_empty_reconnecting() {
    let t0 = Instant::now();
    let mut st = ConsoleState::new("gatehouse console", "alice", Keymap::default());
    st.now = fixed_now();
    st.apply(
        FrontendEvent::Connection(Connection::Reconnecting {
            url: "http://10.0.0.5:7878".into(),
            attempt: 3,
            last_error: "connection refused".into(),
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
}

#[test]
fn snapshot_sending_and_notice() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "issue_refund", 0);
    st.mark_drawn(t0);
    let eff = st.handle_key(&ch('a'), later(t0, 400));
    assert!(matches!(eff, Some(Effect::Send(_))));
    snap("sending", &st);
}

#[test]
fn snapshot_many_pending_scrolled() {
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
fn hostile_text_is_visible_and_badged() {
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

// ---------- keys → intents ----------

#[test]
fn every_keymap_action_has_an_intent() {
    let t0 = Instant::now();
    let st = scene_state(t0);
    let km = Keymap::default();
    for a in Action::ALL {
        for k in km.keys(*a) {
            let mut mods = KeyModifiers::NONE;
            if k.ctrl {
                mods |= KeyModifiers::CONTROL;
            }
            if k.alt {
                mods |= KeyModifiers::ALT;
            }
            let ev = KeyEvent {
                code: k.code,
                modifiers: mods,
                kind: KeyEventKind::Press,
                state: KeyEventState::NONE,
            };
            let want = match a {
                Action::Down => Intent::MoveSelection(Move::By(1)),
                Action::Up => Intent::MoveSelection(Move::By(-1)),
                Action::PageDown => Intent::MoveSelection(Move::Page(1)),
                Action::PageUp => Intent::MoveSelection(Move::Page(-1)),
                Action::Top => Intent::MoveSelection(Move::Top),
                Action::Bottom => Intent::MoveSelection(Move::Bottom),
                Action::NextPane => Intent::FocusNext,
                Action::PrevPane => Intent::FocusPrev,
                Action::Approve => Intent::Decide(DecideKind::Approve),
                Action::ApproveRun => Intent::Decide(DecideKind::ApproveRun),
                Action::Deny => Intent::Decide(DecideKind::Deny),
                Action::Edit => Intent::Decide(DecideKind::Edit),
                Action::Escalate => Intent::Decide(DecideKind::Escalate),
                Action::Open => Intent::ToggleFull,
                Action::Filter => Intent::OpenFilter,
                Action::Runs => Intent::ToggleRuns,
                Action::Servers => Intent::ToggleServers,
                Action::Transcript => Intent::OpenTranscript,
                Action::Help => Intent::ToggleHelp,
                Action::Quit => Intent::Quit,
            };
            assert_eq!(st.intent_for(&ev), Some(want), "{a:?} {k}");
        }
    }
}

#[test]
fn movement_depends_on_focused_pane() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.focus = Focus::Queues;
    assert_eq!(
        st.intent_for(&ch('j')),
        Some(Intent::MoveQueue(Move::By(1)))
    );
    st.focus = Focus::Detail;
    assert_eq!(
        st.intent_for(&ch('k')),
        Some(Intent::ScrollDetail(Move::By(-1)))
    );
    st.focus = Focus::History;
    assert_eq!(
        st.intent_for(&key(KeyCode::Down)),
        Some(Intent::ScrollHistory(Move::By(1)))
    );
}

#[test]
fn overridden_keys_drive_intents_and_hints() {
    let mut o = std::collections::BTreeMap::new();
    o.insert("approve".to_string(), toml::Value::String("y".into()));
    let km = Keymap::with_overrides(&o).unwrap();
    let t0 = Instant::now();
    let mut st = ConsoleState::new("t", "alice", km);
    st.now = fixed_now();
    let (p, r) = fixtures::scene();
    st.apply(
        FrontendEvent::Snapshot {
            pending: p,
            recent: r,
            runs: Vec::new(),
            seq: 1,
        },
        t0,
    );
    assert_eq!(
        st.intent_for(&ch('y')),
        Some(Intent::Decide(DecideKind::Approve))
    );
    assert_eq!(st.intent_for(&ch('a')), None);
    assert!(panes::hints(&st).contains(&("y".to_string(), "approve")));
}

// ---------- decisions ----------

#[test]
fn approve_carries_the_shown_hash() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "issue_refund", 0);
    st.mark_drawn(t0);
    let a = st.selected_entry().unwrap().approval.clone();
    let Some(Effect::Send(req)) = st.handle_key(&ch('a'), later(t0, 300)) else {
        panic!("no decision")
    };
    assert_eq!(req.approval_id, a.id);
    assert_eq!(req.verdict, Verdict::Approve);
    assert_eq!(req.arguments_sha256, a.arguments_sha256);
    assert_eq!(req.scope, None);
    assert_eq!(req.edited_arguments, None);
    // still listed (as sending) until the runner says Applied
    assert!(st.entry(&a.id).is_some());
    assert!(st.inflight(&a.id).is_some());
    // a second key while in flight sends nothing
    assert_eq!(st.handle_key(&ch('a'), later(t0, 400)), None);
    let mut done = a.clone();
    done.status = ApprovalStatus::Approved;
    st.on_outcome(a.id, DecisionOutcome::Applied(done), later(t0, 500));
    assert!(st.entry(&a.id).is_none());
    assert!(st.inflight(&a.id).is_none());
    assert_eq!(st.history().next().unwrap().approval.id, a.id);
    assert!(st.notice.as_ref().unwrap().text.contains("approved"));
}

#[test]
fn approve_run_has_scope_run_and_needs_a_run() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "issue_refund", 0);
    st.mark_drawn(t0);
    let Some(Effect::Send(req)) = st.handle_key(&ch('A'), later(t0, 300)) else {
        panic!()
    };
    assert_eq!(req.scope.as_deref(), Some("run"));
    // the db query has no run: A refuses
    select_tool(&mut st, t0, "query", 0);
    st.mark_drawn(t0);
    assert_eq!(st.handle_key(&ch('A'), later(t0, 300)), None);
    assert!(st.notice.as_ref().unwrap().text.contains("needs a run"));
}

#[test]
fn deny_prompt_submits_reason_and_esc_cancels() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "delete_user_account", 0);
    st.mark_drawn(t0);
    let id = st.selected_id().unwrap();
    let sha = st
        .selected_entry()
        .unwrap()
        .approval
        .arguments_sha256
        .clone();
    st.handle_key(&ch('d'), later(t0, 300));
    // empty reason is not submitted
    assert_eq!(st.handle_key(&key(KeyCode::Enter), t0), None);
    assert!(matches!(st.overlay, Overlay::Deny(_)));
    // Esc cancels
    st.handle_key(&key(KeyCode::Esc), t0);
    assert!(matches!(st.overlay, Overlay::None));
    assert!(st.inflight(&id).is_none());
    // again, with a typed reason ("q" and "a" are text here, not keys)
    st.handle_key(&ch('d'), later(t0, 300));
    for c in "not qa".chars() {
        assert_eq!(st.handle_key(&ch(c), t0), None);
    }
    let Some(Effect::Send(req)) = st.handle_key(&key(KeyCode::Enter), t0) else {
        panic!()
    };
    assert_eq!(req.approval_id, id);
    assert_eq!(req.verdict, Verdict::Deny);
    assert_eq!(req.reason.as_deref(), Some("not qa"));
    assert_eq!(req.arguments_sha256, sha);
}

#[test]
fn deny_prompt_common_reason() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.handle_key(&ch('d'), later(t0, 1000));
    st.handle_key(&key(KeyCode::Down), t0);
    st.handle_key(&key(KeyCode::Down), t0);
    let Some(Effect::Send(req)) = st.handle_key(&key(KeyCode::Enter), t0) else {
        panic!()
    };
    assert_eq!(req.reason.as_deref(), Some(super::state::COMMON_REASONS[1]));
}

#[test]
fn edit_only_when_offered_and_valid() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    // external submission, not editable
    select_tool(&mut st, t0, "query", 0);
    st.mark_drawn(t0);
    assert_eq!(st.handle_key(&ch('e'), later(t0, 300)), None);
    assert!(matches!(st.overlay, Overlay::None));
    // editable external submission
    select_tool(&mut st, t0, "deploy", 0);
    st.mark_drawn(t0);
    let a = st.selected_entry().unwrap().approval.clone();
    st.handle_key(&ch('e'), later(t0, 300));
    let Overlay::Edit(p) = &st.overlay else {
        panic!()
    };
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(p.input.value()).unwrap(),
        serde_json::Value::Object(a.arguments.clone())
    );
    // break it: not an object
    st.handle_paste("", t0);
    let mut ctrl_u = ch('u');
    ctrl_u.modifiers = KeyModifiers::CONTROL;
    st.handle_key(&ctrl_u, t0); // delete line
    st.handle_paste("[1,2]", t0);
    assert_eq!(st.handle_key(&key(KeyCode::Enter), t0), None);
    let Overlay::Edit(p) = &st.overlay else {
        panic!()
    };
    assert!(p.parsed.as_ref().unwrap_err().contains("object"));
    st.handle_key(&ctrl_u, t0);
    st.handle_paste("{\"service\":\"billing\",\"version\":\"2.4.0\"}", t0);
    let Some(Effect::Send(req)) = st.handle_key(&key(KeyCode::Enter), t0) else {
        panic!()
    };
    assert_eq!(req.verdict, Verdict::Approve);
    assert_eq!(
        req.arguments_sha256, a.arguments_sha256,
        "hash of what was shown"
    );
    assert_eq!(
        serde_json::Value::Object(req.edited_arguments.unwrap()),
        json!({"service": "billing", "version": "2.4.0"})
    );
    // runs inside gatehouse are editable too
    select_tool(&mut st, t0, "issue_refund", 0);
    st.mark_drawn(later(t0, 1000));
    st.handle_key(&ch('e'), later(t0, 1400));
    assert!(matches!(st.overlay, Overlay::Edit(_)));
}

#[test]
fn edit_prompt_shows_non_ascii_escaped() {
    let a = approval(
        77,
        "t",
        "q",
        None,
        None,
        Some("r"),
        json!({"x": "a\u{202e}b é"}),
        None,
        1,
        None,
    );
    let s = super::state::ascii_json(&serde_json::Value::Object(a.arguments.clone()));
    assert_eq!(s, "{\"x\":\"a\\u202eb \\u00e9\"}");
    assert!(s.is_ascii());
}

// ---------- the guard: keys typed before the approval was on screen ----------

#[test]
fn decide_keys_ignored_until_on_screen() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    // selected for the reviewer by the snapshot: guarded for a second
    assert_eq!(st.handle_key(&ch('a'), later(t0, 100)), None);
    assert!(st.notice.as_ref().unwrap().text.contains("ignored"));
    assert_eq!(st.handle_key(&ch('d'), later(t0, 999)), None);
    assert!(matches!(st.overlay, Overlay::None));
    // moved there by the reviewer: 300 ms
    st.handle_key(&ch('j'), later(t0, 1000));
    st.mark_drawn(later(t0, 1000));
    assert_eq!(st.handle_key(&ch('a'), later(t0, 1299)), None);
    assert!(matches!(
        st.handle_key(&ch('a'), later(t0, 1300)),
        Some(Effect::Send(_))
    ));
    let mut st = scene_state(t0);
    // moved, not yet drawn: the key is for what was on screen, which is not the selection
    st.handle_key(&ch('j'), later(t0, 1000));
    assert_eq!(st.handle_key(&ch('a'), later(t0, 1000)), None);
    // drawn, and looked at
    st.mark_drawn(later(t0, 1000));
    assert!(matches!(
        st.handle_key(&ch('a'), later(t0, 1300)),
        Some(Effect::Send(_))
    ));
}

#[test]
fn selection_changed_under_the_key_never_decides() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    let shown = st.selected_id().unwrap();
    // the shown approval is decided elsewhere in the same batch as the key
    let mut a = st.entry(&shown).unwrap().approval.clone();
    a = decided(a, ApprovalStatus::Approved, "bob", None, 0);
    st.apply(
        FrontendEvent::Change(Box::new(Event {
            seq: 11,
            kind: AuditKind::ApprovalDecided,
            at: fixed_now(),
            subject: crate::domain::Subject::Approval(a),
        })),
        later(t0, 1000),
    );
    assert_ne!(st.selected_id(), Some(shown));
    assert_eq!(st.handle_key(&ch('a'), later(t0, 1000)), None);
    // once drawn, the replacement is guarded for the longer, unasked delay
    st.mark_drawn(later(t0, 1000));
    assert_eq!(st.handle_key(&ch('a'), later(t0, 1500)), None);
    assert!(matches!(
        st.handle_key(&ch('a'), later(t0, 2000)),
        Some(Effect::Send(_))
    ));
}

#[test]
fn paste_never_decides() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    let later_t = later(t0, 5000);
    let ev = CtEvent::Paste("a".into());
    assert_eq!(st.handle_event(&ev, later_t), None);
    let ev = CtEvent::Paste("aAd\r\n".into());
    assert_eq!(st.handle_event(&ev, later_t), None);
    assert!(matches!(st.overlay, Overlay::None));
    assert_eq!(st.inflight_count(), 0);
    // inside the deny prompt, a paste with a newline fills the reason but does not submit
    st.handle_key(&ch('d'), later_t);
    assert_eq!(
        st.handle_event(&CtEvent::Paste("dup\r\nlicate".into()), later_t),
        None
    );
    let Overlay::Deny(p) = &st.overlay else {
        panic!()
    };
    assert_eq!(p.input.value(), "dup  licate");
    assert_eq!(st.inflight_count(), 0);
}

// ---------- live updates ----------

#[test]
fn new_arrivals_never_move_the_selection() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "issue_refund", 0);
    let sel = st.selected_id().unwrap();
    let idx = st.selected_index().unwrap();
    // one older (sorts above) and one newer (sorts below)
    let older = approval(
        100,
        "issue_refund",
        "primary",
        None,
        None,
        None,
        json!({}),
        None,
        99_999,
        None,
    );
    let newer = approval(
        101,
        "issue_refund",
        "primary",
        None,
        None,
        None,
        json!({}),
        None,
        0,
        None,
    );
    for (i, a) in [older, newer].into_iter().enumerate() {
        st.apply(
            FrontendEvent::Change(Box::new(Event {
                seq: 20 + i as u64,
                kind: AuditKind::ApprovalCreated,
                at: fixed_now(),
                subject: crate::domain::Subject::Approval(a),
            })),
            t0,
        );
    }
    assert_eq!(st.selected_id(), Some(sel));
    assert_eq!(st.selected_index(), Some(idx + 1));
    assert_eq!(st.pending_count(), 7);
    // and a whole new snapshot (reconnect) keeps it too
    let (p, r) = fixtures::scene();
    st.apply(
        FrontendEvent::Snapshot {
            pending: p,
            recent: r,
            runs: Vec::new(),
            seq: 30,
        },
        t0,
    );
    assert_eq!(st.selected_id(), Some(sel));
}

#[test]
fn first_arrival_is_selected_when_nothing_was() {
    let t0 = Instant::now();
    let mut st = ConsoleState::new("t", "alice", Keymap::default());
    st.apply(
        FrontendEvent::Snapshot {
            pending: vec![],
            recent: vec![],
            runs: Vec::new(),
            seq: 0,
        },
        t0,
    );
    assert_eq!(st.selected_id(), None);
    let a = approval(1, "x", "q", None, None, None, json!({}), None, 0, None);
    let id = a.id;
    st.apply(
        FrontendEvent::Change(Box::new(Event {
            seq: 1,
            kind: AuditKind::ApprovalCreated,
            at: fixed_now(),
            subject: crate::domain::Subject::Approval(a),
        })),
        t0,
    );
    assert_eq!(st.selected_id(), Some(id));
    // but it cannot be decided until it has been on screen
    assert_eq!(st.handle_key(&ch('a'), t0), None);
}

#[test]
fn decided_elsewhere_leaves_with_a_notice() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    select_tool(&mut st, t0, "issue_refund", 0);
    let idx = st.selected_index().unwrap();
    let a = st.selected_entry().unwrap().approval.clone();
    let d = decided(a.clone(), ApprovalStatus::Denied, "bob", Some("nope"), 0);
    st.apply(
        FrontendEvent::Change(Box::new(Event {
            seq: 11,
            kind: AuditKind::ApprovalDecided,
            at: fixed_now(),
            subject: crate::domain::Subject::Approval(d),
        })),
        t0,
    );
    assert!(st.entry(&a.id).is_none());
    assert_eq!(st.pending_count(), 4);
    let n = st.notice.as_ref().unwrap();
    assert!(n.text.contains("denied by bob"), "{}", n.text);
    assert!(n.text.contains("left the list"));
    // the neighbour below takes the selection
    assert_eq!(st.selected_index(), Some(idx));
    assert_eq!(st.history().next().unwrap().approval.id, a.id);
    // a replayed event (seq already seen) changes nothing
    let before = st.history_len();
    let d2 = decided(a, ApprovalStatus::Denied, "bob", Some("nope"), 0);
    st.apply(
        FrontendEvent::Change(Box::new(Event {
            seq: 11,
            kind: AuditKind::ApprovalDecided,
            at: fixed_now(),
            subject: crate::domain::Subject::Approval(d2),
        })),
        t0,
    );
    assert_eq!(st.history_len(), before);
}

#[test]
fn expiry_closes_an_open_prompt() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.handle_key(&ch('d'), later(t0, 1000));
    let Overlay::Deny(p) = &st.overlay else {
        panic!()
    };
    let id = p.target.id;
    let a = st.entry(&id).unwrap().approval.clone();
    let e = decided(
        a,
        ApprovalStatus::Expired,
        "timeout",
        Some("approval timed out"),
        0,
    );
    st.apply(
        FrontendEvent::Change(Box::new(Event {
            seq: 11,
            kind: AuditKind::ApprovalExpired,
            at: fixed_now(),
            subject: crate::domain::Subject::Approval(e),
        })),
        t0,
    );
    assert!(matches!(st.overlay, Overlay::None));
    assert!(st.notice.as_ref().unwrap().text.contains("prompt closed"));
}

#[test]
fn escalation_moves_between_queues() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    let counts = |st: &ConsoleState| {
        st.queues()
            .map(|(q, n)| (q.to_string(), n))
            .collect::<Vec<_>>()
    };
    assert!(counts(&st).contains(&("primary".into(), 3)));
    let mut a = st
        .visible()
        .iter()
        .map(|k| st.entry(&k.id).unwrap().approval.clone())
        .find(|a| a.queue == "primary")
        .unwrap();
    a.queue = "backup".into();
    a.tier = 1;
    st.apply(
        FrontendEvent::Change(Box::new(Event {
            seq: 11,
            kind: AuditKind::ApprovalEscalated,
            at: fixed_now(),
            subject: crate::domain::Subject::Approval(a),
        })),
        t0,
    );
    assert!(counts(&st).contains(&("primary".into(), 2)));
    assert!(counts(&st).contains(&("backup".into(), 2)));
    assert!(st.notice.as_ref().unwrap().text.contains("escalated"));
}

#[test]
fn outcomes_not_sent_and_conflict_keep_or_fix_the_list() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    let later_t = later(t0, 1000);
    let id = st.selected_id().unwrap();
    st.handle_key(&ch('a'), later_t);
    st.on_outcome(
        id,
        DecisionOutcome::NotSent {
            message: "link down".into(),
        },
        later_t,
    );
    assert!(st.entry(&id).is_some(), "not sent: still pending");
    assert!(st.notice.as_ref().unwrap().text.contains("NOT SENT"));
    st.handle_key(&ch('a'), later_t);
    let a = st.entry(&id).unwrap().approval.clone();
    let other = decided(a, ApprovalStatus::Denied, "bob", None, 0);
    st.on_outcome(
        id,
        DecisionOutcome::Conflict {
            message: "already decided".into(),
            approval: Some(other),
        },
        later_t,
    );
    assert!(st.entry(&id).is_none());
    assert!(st.notice.as_ref().unwrap().text.contains("not applied"));
}

#[test]
fn filter_narrows_and_esc_clears() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.handle_key(&ch('/'), t0);
    for c in "deploy".chars() {
        st.handle_key(&ch(c), t0);
    }
    assert_eq!(st.visible().len(), 1);
    assert_eq!(st.selected_entry().unwrap().approval.tool, "deploy");
    st.handle_key(&key(KeyCode::Enter), t0);
    assert!(matches!(st.overlay, Overlay::None));
    assert_eq!(st.filter(), "deploy");
    // a new matching arrival shows up in the filtered view
    let a = approval(
        200,
        "deploy",
        "backup",
        None,
        None,
        None,
        json!({}),
        None,
        0,
        None,
    );
    st.apply(
        FrontendEvent::Change(Box::new(Event {
            seq: 40,
            kind: AuditKind::ApprovalCreated,
            at: fixed_now(),
            subject: crate::domain::Subject::Approval(a),
        })),
        t0,
    );
    assert_eq!(st.visible().len(), 2);
    st.handle_key(&key(KeyCode::Esc), t0);
    assert_eq!(st.filter(), "");
    assert_eq!(st.visible().len(), 6);
}

#[test]
fn quit_and_help() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.handle_key(&ch('?'), t0);
    // q closes help rather than quitting
    assert_eq!(st.handle_key(&ch('q'), t0), None);
    assert!(matches!(st.overlay, Overlay::None));
    assert_eq!(st.handle_key(&ch('q'), t0), Some(Effect::Quit));
}

#[test]
fn works_at_small_sizes() {
    let t0 = Instant::now();
    let st = scene_state(t0);
    for (w, h) in [(80, 24), (40, 10), (20, 5), (200, 60)] {
        let _ = render(&st, &Theme::default_theme(), w, h);
    }
}

#[test]
fn bench_render_runs() {
    let d = super::bench_render(2000, 120, 35, 5);
    assert!(d > Duration::ZERO);
}

#[test]
fn history_is_bounded() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    for i in 0..300u64 {
        let a = approval(
            1000 + i as u128,
            "x",
            "q",
            None,
            None,
            None,
            json!({}),
            None,
            0,
            None,
        );
        let d = decided(a, ApprovalStatus::Approved, "bob", None, 0);
        st.apply(
            FrontendEvent::Change(Box::new(Event {
                seq: 100 + i,
                kind: AuditKind::ApprovalDecided,
                at: fixed_now(),
                subject: crate::domain::Subject::Approval(d),
            })),
            t0,
        );
    }
    assert_eq!(st.history_len(), super::state::HISTORY_LEN);
}

/// `cargo test --release --lib tui::tests::bench_100k -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_100k() {
    for (w, h) in [(120u16, 35u16), (80, 24)] {
        let d = super::bench_render(100_000, w, h, 500);
        println!("bench_render(100_000, {w}, {h}, 500): {d:?} per frame");
    }
    let d = super::bench_render(10, 120, 35, 500);
    println!("bench_render(10, 120, 35, 500): {d:?} per frame");
}

/// Bytes the console writes per idle second: one frame per second (the countdown tick), of
/// which only changed cells are written. Printed for the notes; asserted under 200.
#[test]
fn idle_bytes_per_second() {
    use ratatui::backend::CrosstermBackend;
    use ratatui::layout::Rect;
    use ratatui::{TerminalOptions, Viewport};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    #[derive(Clone, Default)]
    struct Count(Arc<AtomicUsize>);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.fetch_add(b.len(), Ordering::SeqCst);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let count = Count::default();
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    let theme = Theme::default_theme();
    let mut term = Terminal::with_options(
        CrosstermBackend::new(count.clone()),
        TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, 120, 35)),
        },
    )
    .unwrap();
    let frame = |st: &ConsoleState, term: &mut Terminal<CrosstermBackend<Count>>| {
        let before = count.0.load(Ordering::SeqCst);
        term.draw(|f| {
            let area = f.area();
            panes::draw(st, &theme, area, f.buffer_mut());
        })
        .unwrap();
        count.0.load(Ordering::SeqCst) - before
    };
    let first = frame(&st, &mut term);
    assert!(first > 1000, "the first frame draws everything");
    // a redraw with nothing changed writes (almost) nothing
    let still = frame(&st, &mut term);
    let secs = 120;
    let mut total = 0;
    for _ in 0..secs {
        st.now += chrono::Duration::seconds(1);
        total += frame(&st, &mut term);
    }
    // the loop wraps each frame in synchronized-update escapes (2 × 8 bytes)
    let per_sec = total / secs + 16;
    println!("idle: first frame {first} B, unchanged redraw {still} B, ticking {per_sec} B/s");
    assert!(still < 32, "{still}");
    assert!(per_sec < 200, "{per_sec} bytes per idle second");
}

#[test]
fn x_escalates_the_approval_on_screen_after_the_guard() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.mark_drawn(t0);
    let id = st.selected_entry().unwrap().approval.id;
    // Too early: the approval has not been on screen long enough.
    assert_eq!(st.handle_key(&ch('x'), t0), None);
    assert_eq!(
        st.handle_key(&ch('x'), later(t0, 1500)),
        Some(Effect::Escalate(id))
    );
}

#[test]
fn the_filter_narrows_history_by_reviewer_tool_and_outcome() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    let all = st.history_len();
    assert!(all >= 3, "the scene has history");
    let type_filter = |st: &mut ConsoleState, text: &str| {
        st.handle_key(&key(KeyCode::Esc), t0);
        st.handle_key(&ch('/'), t0);
        for c in text.chars() {
            st.handle_key(&ch(c), t0);
        }
        st.handle_key(&key(KeyCode::Enter), t0);
    };
    type_filter(&mut st, "bob");
    assert!(st.history_len() >= 1 && st.history_len() < all);
    assert!(st.history().all(|h| h.by.contains("bob")));
    type_filter(&mut st, "denied");
    assert!(
        st.history()
            .all(|h| h.approval.status == ApprovalStatus::Denied)
    );
    assert!(st.history_len() >= 1);
    // Esc clears the filter: everything is back.
    st.handle_key(&key(KeyCode::Esc), t0);
    assert_eq!(st.history_len(), all);
}

// ---------- runs and transcripts ----------

/// The scene plus the runs fixtures and their approvals.
fn runs_state(t0: Instant) -> ConsoleState {
    let mut st = ConsoleState::new("gatehouse demo", "alice", Keymap::default());
    st.now = fixed_now();
    let (mut pending, recent) = fixtures::scene();
    pending.extend(fixtures::run_approvals());
    st.apply(
        FrontendEvent::Snapshot {
            pending,
            recent,
            runs: fixtures::runs_scene(),
            seq: 10,
        },
        t0,
    );
    st.mark_drawn(t0);
    st
}

fn run_event(seq: u64, s: crate::domain::RunSummary) -> FrontendEvent {
    FrontendEvent::Change(Box::new(Event {
        seq,
        kind: AuditKind::RunUpdated,
        at: fixed_now(),
        subject: crate::domain::Subject::Run(Box::new(s)),
    }))
}

/// Select the pending approval of sample run `n`.
fn select_run_approval(st: &mut ConsoleState, t: Instant, n: u128) {
    let want = fixtures::run_id(n).to_string();
    st.apply_intent(Intent::MoveSelection(Move::Top), t);
    for _ in 0..st.visible().len() {
        if st.selected_entry().unwrap().approval.run_id.as_deref() == Some(want.as_str()) {
            return;
        }
        st.apply_intent(Intent::MoveSelection(Move::By(1)), t);
    }
    panic!("no approval of run {n}");
}

/// The transcript of run 1, opened from its approval and fetched.
fn transcript_state(t0: Instant) -> ConsoleState {
    let mut st = runs_state(t0);
    select_run_approval(&mut st, t0, 1);
    let run = fixtures::run_id(1);
    assert_eq!(
        st.selected_entry().unwrap().approval.run_id,
        Some(run.to_string())
    );
    assert_eq!(st.handle_key(&ch('t'), t0), Some(Effect::FetchRun(run)));
    st.on_run_fetched(run, Ok(fixtures::transcript_run()));
    st
}

#[test]
fn snapshot_runs_view() {
    let t0 = Instant::now();
    let mut st = runs_state(t0);
    assert_eq!(st.handle_key(&ch('r'), t0), None);
    assert_eq!(st.view, View::Runs);
    // active runs first, newest first: the running one, then the two waiting
    assert_eq!(st.selected_run(), Some(fixtures::run_id(3)));
    st.handle_key(&ch('j'), t0);
    assert_eq!(st.selected_run(), Some(fixtures::run_id(1)));
    snap("runs_view", &st);
}

#[test]
fn snapshot_transcript() {
    let t0 = Instant::now();
    let st = transcript_state(t0);
    snap("transcript", &st);
}

#[test]
fn snapshot_transcript_end() {
    let t0 = Instant::now();
    let mut st = transcript_state(t0);
    // draw once so the transcript knows its length, then jump to the end
    render(&st, &Theme::mono(), 80, 24);
    st.handle_key(&ch('G'), t0);
    assert!(st.transcript.as_ref().unwrap().scroll > 0);
    snap("transcript_end", &st);
}

#[test]
fn snapshot_outcome_unknown() {
    let t0 = Instant::now();
    let mut st = runs_state(t0);
    select_run_approval(&mut st, t0, 2);
    assert!(st.selected_entry().unwrap().approval.outcome_unknown);
    snap("outcome_unknown", &st);
    let text = screen_text(&st, 120, 35);
    assert!(
        text.contains("OUTCOME UNKNOWN — approve re-runs, deny reports failure"),
        "{text}"
    );
    assert!(text.contains("t opens the"), "{text}");
    assert!(text.contains(&fixtures::run_id(2).to_string()), "{text}");
}

#[test]
fn runs_view_keys() {
    let t0 = Instant::now();
    let mut st = runs_state(t0);
    assert_eq!(st.intent_for(&ch('r')), Some(Intent::ToggleRuns));
    st.handle_key(&ch('r'), t0);
    assert_eq!(st.intent_for(&ch('j')), Some(Intent::MoveRun(Move::By(1))));
    assert_eq!(st.intent_for(&ch('k')), Some(Intent::MoveRun(Move::By(-1))));
    assert_eq!(
        st.intent_for(&key(KeyCode::End)),
        Some(Intent::MoveRun(Move::Bottom))
    );
    assert_eq!(
        st.intent_for(&key(KeyCode::Enter)),
        Some(Intent::OpenTranscript)
    );
    assert_eq!(st.intent_for(&ch('t')), Some(Intent::OpenTranscript));
    assert_eq!(st.intent_for(&key(KeyCode::Esc)), Some(Intent::ToggleRuns));
    assert_eq!(
        st.intent_for(&ch('q')),
        Some(Intent::Quit),
        "q quits everywhere (DESIGN §6); Esc closes the view"
    );
    assert_eq!(st.intent_for(&ch('?')), Some(Intent::ToggleHelp));
    assert_eq!(
        st.intent_for(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Intent::Quit)
    );
    // decide keys do nothing here: no approval is on screen
    for c in ['a', 'A', 'd', 'e', 'x', '/'] {
        assert_eq!(st.intent_for(&ch(c)), None, "{c}");
    }
    st.handle_key(&key(KeyCode::End), t0);
    assert_eq!(st.selected_run(), Some(fixtures::run_id(6)));
    assert_eq!(
        st.handle_key(&key(KeyCode::Enter), later(t0, 2000)),
        Some(Effect::FetchRun(fixtures::run_id(6)))
    );
    assert!(st.transcript.is_some());
    // the transcript closes back to the runs view, which closes back to the dashboard
    st.handle_key(&key(KeyCode::Esc), t0);
    assert!(st.transcript.is_none());
    assert_eq!(st.view, View::Runs);
    st.handle_key(&ch('r'), t0);
    assert_eq!(st.view, View::Dashboard);
}

#[test]
fn transcript_keys_and_decide_guard() {
    let t0 = Instant::now();
    let mut st = transcript_state(t0);
    assert_eq!(
        st.intent_for(&ch('j')),
        Some(Intent::ScrollTranscript(Move::By(1)))
    );
    assert_eq!(
        st.intent_for(&key(KeyCode::PageDown)),
        Some(Intent::ScrollTranscript(Move::Page(1)))
    );
    assert_eq!(st.intent_for(&ch('t')), Some(Intent::CloseTranscript));
    assert_eq!(st.intent_for(&ch('q')), Some(Intent::Quit));
    assert_eq!(
        st.intent_for(&key(KeyCode::Esc)),
        Some(Intent::CloseTranscript)
    );
    for c in ['a', 'A', 'd', 'e', 'x'] {
        assert_eq!(st.intent_for(&ch(c)), None, "{c}");
    }
    // even a decide intent sent directly is refused while the detail is hidden
    assert_eq!(
        st.apply_intent(Intent::Decide(DecideKind::Approve), later(t0, 5000)),
        None
    );
    st.mark_drawn(later(t0, 100));
    st.handle_key(&key(KeyCode::Esc), t0);
    assert!(st.transcript.is_none());
    // back on the dashboard the guard starts again: the detail was hidden
    st.mark_drawn(later(t0, 200));
    assert_eq!(st.handle_key(&ch('a'), later(t0, 300)), None);
    assert!(matches!(
        st.handle_key(&ch('a'), later(t0, 600)),
        Some(Effect::Send(_))
    ));
}

#[test]
fn transcript_needs_a_gatehouse_run() {
    let t0 = Instant::now();
    let mut st = runs_state(t0);
    // the hostile db query: an external submission
    select_tool(&mut st, t0, "query", 0);
    assert_eq!(st.handle_key(&ch('t'), t0), None);
    assert!(st.transcript.is_none());
    assert!(
        st.notice
            .as_ref()
            .unwrap()
            .text
            .contains("external submission")
    );
    // the scene's run ids are the submitter's own, not gatehouse run ids
    select_tool(&mut st, t0, "issue_refund", 0);
    assert_eq!(st.handle_key(&ch('t'), t0), None);
    assert!(
        st.notice
            .as_ref()
            .unwrap()
            .text
            .contains("not a gatehouse run")
    );
}

#[test]
fn transcript_refreshes_on_run_events_one_fetch_at_a_time() {
    let t0 = Instant::now();
    let mut st = runs_state(t0);
    select_run_approval(&mut st, t0, 1);
    let id = fixtures::run_id(1);
    assert_eq!(st.handle_key(&ch('t'), t0), Some(Effect::FetchRun(id)));
    assert_eq!(st.next_fetch(), None, "a fetch is under way");
    // an update while the fetch is under way: one more fetch once it is back
    let mut s = fixtures::runs_scene()[0].clone();
    s.turns = 3;
    st.apply(run_event(11, s.clone()), t0);
    assert_eq!(st.next_fetch(), None);
    st.on_run_fetched(id, Ok(fixtures::transcript_run()));
    assert_eq!(st.next_fetch(), Some(id));
    assert_eq!(st.next_fetch(), None);
    st.on_run_fetched(id, Err("no run".into()));
    let text = screen_text(&st, 120, 35);
    assert!(text.contains("could not refresh: no run"), "{text}");
    assert!(text.contains("phone case arrived damaged"), "{text}");
    // other runs' events do not refetch
    let other = fixtures::runs_scene()[2].clone();
    st.apply(run_event(12, other), t0);
    assert_eq!(st.next_fetch(), None);
    // an answer for a transcript no longer open is dropped
    st.handle_key(&key(KeyCode::Esc), t0);
    st.on_run_fetched(id, Ok(fixtures::transcript_run()));
    assert!(st.transcript.is_none());
}

#[test]
fn run_events_newest_wins_and_finished_runs_are_bounded() {
    let t0 = Instant::now();
    let mut st = runs_state(t0);
    let id = fixtures::run_id(3);
    let mut s = fixtures::runs_scene()[2].clone();
    s.status = crate::domain::RunStatus::Completed;
    s.output = Some("done".into());
    st.apply(run_event(20, s.clone()), t0);
    assert_eq!(
        st.run(&id).unwrap().summary.status,
        crate::domain::RunStatus::Completed
    );
    // an older state (a lower seq) never overwrites a newer one
    let mut old = s.clone();
    old.status = crate::domain::RunStatus::Running;
    st.apply(run_event(15, old), t0);
    assert_eq!(
        st.run(&id).unwrap().summary.status,
        crate::domain::RunStatus::Completed
    );
    // a new run arrives by event
    let mut new = fixtures::run_summary(
        50,
        crate::domain::RunStatus::Running,
        "hi",
        0,
        Some("model"),
        None,
        None,
        0,
    );
    st.apply(run_event(21, new.clone()), t0);
    assert!(st.run(&fixtures::run_id(50)).is_some());
    assert_eq!(st.runs().len(), 8);
    // 600 finished runs: the 500 newest are kept, every active one stays
    let mut seq = 30;
    for i in 0..600u128 {
        let mut f = fixtures::run_summary(
            100 + i,
            crate::domain::RunStatus::Completed,
            "x",
            1,
            None,
            Some("ok"),
            None,
            10,
        );
        f.updated_at = fixed_now() - chrono::Duration::seconds(10_000 - i as i64);
        seq += 1;
        st.apply(run_event(seq, f), t0);
    }
    let active = st.active_runs();
    assert_eq!(active, 3, "runs 1, 2 and 50");
    assert_eq!(st.runs().len(), super::runs::FINISHED_RUNS_KEPT + active);
    assert!(st.run(&fixtures::run_id(699)).is_some());
    assert!(st.run(&fixtures::run_id(100)).is_none());
    new.status = crate::domain::RunStatus::Completed;
    st.apply(run_event(seq + 1, new), t0);
    assert_eq!(st.active_runs(), 2);
}

#[test]
fn transcript_shows_every_call_state_escaped() {
    use crate::domain::{CallState, RunCall};
    let t0 = Instant::now();
    let mut st = transcript_state(t0);
    let mut run = fixtures::transcript_run();
    let args = |v: serde_json::Value| v.as_object().unwrap().clone();
    let call = |id: &str, state: CallState| RunCall {
        call_id: id.into(),
        tool: "issue_refund".into(),
        server: None,
        arguments: Some(args(json!({"amount": 10}))),
        state,
    };
    run.calls = vec![
        call(
            "c1",
            CallState::Approved {
                approval_id: None,
                by: "alice".into(),
                arguments: args(json!({"amount": 5})),
            },
        ),
        call(
            "c2",
            CallState::Denied {
                approval_id: None,
                by: "bob".into(),
                message: "too much\u{7}".into(),
            },
        ),
        call(
            "c3",
            CallState::Executing {
                started_at: fixed_now() - chrono::Duration::seconds(7),
                arguments: args(json!({"amount": 10})),
            },
        ),
        call(
            "c4",
            CallState::OutcomeUnknown {
                approval_id: fixtures::run_approvals()[1].id,
                arguments: args(json!({"amount": 10})),
            },
        ),
    ];
    run.output = Some("All done.".into());
    let id = run.id;
    st.on_run_fetched(id, Ok(run));
    let lines = super::run_panes::transcript_lines(&st, &Theme::mono(), 118);
    let text: String = lines
        .iter()
        .map(|l| l.to_string() + "\n")
        .collect::<String>();
    for want in [
        "[approved] issue_refund",
        "approved by alice",
        "with edited arguments:",
        "\"amount\": 5",
        "[denied] issue_refund",
        "too much\\u{7}",
        "[executing] issue_refund",
        "executing for 7s",
        "[outcome_unknown] issue_refund",
        "OUTCOME UNKNOWN — approve re-runs, deny reports failure",
        "── Final output",
        "All done.",
        "── User",
        "Please refund order ORD-1001",
        "→ issue_refund  call call_2",
        "\"reason\": \"arrived damaged\"",
        "── Result of get_order_details  call call_1",
        "customer\\u{1b}[2J called twice",
        "arguments (not valid JSON):",
    ] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }
    let screen = screen_text(&st, 120, 35);
    assert!(screen.contains("⚠ text escaped"), "{screen}");
    for c in screen.chars() {
        assert!(c == '\n' || !super::sanitize::needs_escape(c), "{c:?}");
    }
}

// ---------- MCP servers ----------

fn servers_event() -> FrontendEvent {
    FrontendEvent::Servers(fixtures::servers_scene())
}

/// The scene with the MCP servers, and a decided call of a server's tool in the history.
fn servers_state(t0: Instant) -> ConsoleState {
    let mut st = scene_state(t0);
    st.apply(servers_event(), t0);
    let (pending, _) = fixtures::scene();
    let query = pending.into_iter().find(|a| a.tool == "query").unwrap();
    let denied = decided(
        query,
        ApprovalStatus::Denied,
        "bob",
        Some("not on prod"),
        30,
    );
    st.apply(
        FrontendEvent::Change(Box::new(Event {
            seq: 11,
            kind: AuditKind::ApprovalDecided,
            at: fixed_now(),
            subject: crate::domain::Subject::Approval(denied),
        })),
        t0,
    );
    st.notice = None;
    st
}

#[test]
fn snapshot_servers_view() {
    let t0 = Instant::now();
    let mut st = servers_state(t0);
    assert_eq!(st.handle_key(&ch('S'), t0), None);
    assert_eq!(st.view, View::Servers);
    st.handle_key(&ch('j'), t0);
    assert_eq!(st.selected_server(), 1);
    snap("servers_view", &st);
    let text = screen_text(&st, 120, 35);
    // the failure text is escaped, never passed through
    assert!(text.contains("refused\\u{1b}[2J"), "{text}");
    assert!(text.contains("search\\u{202e}gnp"), "{text}");
    for c in text.chars() {
        assert!(c == '\n' || !super::sanitize::needs_escape(c), "{c:?}");
    }
}

#[test]
fn snapshot_servers_warning() {
    let t0 = Instant::now();
    let st = servers_state(t0);
    snap("servers_warning", &st);
    for (w, h) in [(80, 24), (120, 35)] {
        let text = screen_text(&st, w, h);
        let want = if w == 80 {
            "⚠ mcp: postgres failed │ 4 pending · 3 queue"
        } else {
            "⚠ mcp: postgres failed (+3) │ 4 pending · 3 queues"
        };
        assert!(text.contains(want), "{text}");
        // the history shows the server beside the tool, whose name stays whole
        assert!(text.contains("│✗ query "), "{text}");
        assert!(text.contains("@postgres denied"), "{text}");
        // the servers key is offered now that there are servers
        assert!(text.contains(" S servers"), "{text}");
    }
}

#[test]
fn snapshot_servers_view_empty() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    st.apply(FrontendEvent::Servers(Vec::new()), t0);
    st.handle_key(&ch('S'), t0);
    assert_eq!(st.view, View::Servers);
    let text = screen_text(&st, 80, 24);
    assert!(text.contains("No MCP servers."), "{text}");
    assert!(!text.contains("mcp:"), "{text}");
}

#[test]
fn servers_warning_only_when_one_is_not_ready() {
    use super::servers::status_warning;
    use super::theme::Role;
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    assert_eq!(status_warning(&st, false), None);
    let mut list = fixtures::servers_scene();
    list.retain(|s| s.ready);
    st.apply(FrontendEvent::Servers(list.clone()), t0);
    assert_eq!(status_warning(&st, false), None);
    assert!(!screen_text(&st, 120, 35).contains("mcp:"));
    // one on its way: a warning, not danger
    let mut starting = fixtures::servers_scene()[2].clone();
    starting.name = "files".into();
    list.push(starting);
    st.apply(FrontendEvent::Servers(list.clone()), t0);
    assert_eq!(
        status_warning(&st, false),
        Some(("⚠ mcp: files restarting".to_string(), Role::Warning))
    );
    // a failed one comes first, as danger; its name is escaped
    let mut failed = fixtures::servers_scene()[1].clone();
    failed.name = "pg\u{1b}[31m".into();
    list.push(failed);
    st.apply(FrontendEvent::Servers(list), t0);
    assert_eq!(
        status_warning(&st, false),
        Some(("⚠ mcp: pg\\u{1b}[31m failed (+1)".to_string(), Role::Danger))
    );
    // all ready again: gone
    st.apply(FrontendEvent::Servers(Vec::new()), t0);
    assert_eq!(status_warning(&st, false), None);
}

#[test]
fn servers_view_keys() {
    let t0 = Instant::now();
    let mut st = servers_state(t0);
    assert_eq!(st.intent_for(&ch('S')), Some(Intent::ToggleServers));
    st.handle_key(&ch('S'), t0);
    assert_eq!(
        st.intent_for(&ch('j')),
        Some(Intent::MoveServer(Move::By(1)))
    );
    assert_eq!(
        st.intent_for(&ch('k')),
        Some(Intent::MoveServer(Move::By(-1)))
    );
    assert_eq!(
        st.intent_for(&key(KeyCode::End)),
        Some(Intent::MoveServer(Move::Bottom))
    );
    assert_eq!(st.intent_for(&ch('S')), Some(Intent::ToggleServers));
    assert_eq!(
        st.intent_for(&key(KeyCode::Esc)),
        Some(Intent::ToggleServers)
    );
    assert_eq!(st.intent_for(&ch('q')), Some(Intent::Quit));
    assert_eq!(st.intent_for(&ch('?')), Some(Intent::ToggleHelp));
    assert_eq!(st.intent_for(&ch('r')), Some(Intent::ToggleRuns));
    assert_eq!(
        st.intent_for(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Intent::Quit)
    );
    // decide keys do nothing here: no approval is on screen
    for c in ['a', 'A', 'd', 'e', 'x', '/', 't'] {
        assert_eq!(st.intent_for(&ch(c)), None, "{c}");
    }
    assert_eq!(st.intent_for(&key(KeyCode::Enter)), None);
    assert_eq!(
        st.apply_intent(Intent::Decide(DecideKind::Approve), later(t0, 5000)),
        None
    );
    st.handle_key(&key(KeyCode::End), t0);
    assert_eq!(st.selected_server(), 4);
    // the selection follows its server when the list changes
    let mut list = fixtures::servers_scene();
    list.rotate_left(1);
    st.apply(FrontendEvent::Servers(list), t0);
    assert_eq!(st.selected_server(), 3);
    // `r` goes to the runs view, `S` from there back here, `S` again to the dashboard
    st.handle_key(&ch('r'), t0);
    assert_eq!(st.view, View::Runs);
    assert_eq!(st.intent_for(&ch('S')), Some(Intent::ToggleServers));
    st.handle_key(&ch('S'), t0);
    assert_eq!(st.view, View::Servers);
    st.handle_key(&ch('S'), t0);
    assert_eq!(st.view, View::Dashboard);
    // back on the dashboard the decide guard starts again
    st.mark_drawn(later(t0, 100));
    assert_eq!(st.handle_key(&ch('a'), later(t0, 200)), None);
}

#[test]
fn servers_key_is_overridable() {
    let mut o = std::collections::BTreeMap::new();
    o.insert("servers".to_string(), toml::Value::String("F2".into()));
    let km = Keymap::with_overrides(&o).unwrap();
    let t0 = Instant::now();
    let mut st = ConsoleState::new("t", "alice", km);
    st.apply(servers_event(), t0);
    assert_eq!(st.intent_for(&ch('S')), None);
    assert_eq!(
        st.intent_for(&key(KeyCode::F(2))),
        Some(Intent::ToggleServers)
    );
    assert!(panes::hints(&st).contains(&("F2".to_string(), "servers")));
    // `S` bound elsewhere conflicts with the default
    let mut o = std::collections::BTreeMap::new();
    o.insert("runs".to_string(), toml::Value::String("S".into()));
    assert_eq!(
        Keymap::with_overrides(&o).unwrap_err().to_string(),
        "ui.keys.runs: key S is already bound to servers"
    );
}
