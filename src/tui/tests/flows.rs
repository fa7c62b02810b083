//! Keys → intents → effects, decisions and the decide guard.

use super::*;

use crate::domain::{ApprovalStatus, AuditKind, Event, Verdict};
use crate::frontend::{DecisionOutcome, FrontendEvent};
use crate::tui::fixtures::{self, approval, decided, fixed_now};
use crate::tui::keymap::{Action, Keymap};
use crate::tui::panes;
use crate::tui::state::{ConsoleState, DecideKind, Effect, Focus, Intent, Layer, Move};
use crossterm::event::{
    Event as CtEvent, KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers,
};
use serde_json::json;
use std::time::Instant;

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
                Action::Close => continue, // Esc: only with something to close
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
    st.dashboard.focus = Focus::Queues;
    assert_eq!(
        st.intent_for(&ch('j')),
        Some(Intent::MoveQueue(Move::By(1)))
    );
    st.dashboard.focus = Focus::Detail;
    assert_eq!(
        st.intent_for(&ch('k')),
        Some(Intent::ScrollDetail(Move::By(-1)))
    );
    st.dashboard.focus = Focus::History;
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
    assert!(st.notice().unwrap().text.contains("approved"));
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
    assert!(st.notice().unwrap().text.contains("needs a run"));
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
    assert!(matches!(st.top(), Some(Layer::Deny(_))));
    // Esc cancels
    st.handle_key(&key(KeyCode::Esc), t0);
    assert!(st.stack.is_empty());
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
    assert_eq!(
        req.reason.as_deref(),
        Some(crate::tui::state::COMMON_REASONS[1])
    );
}

#[test]
fn edit_only_when_offered_and_valid() {
    let t0 = Instant::now();
    let mut st = scene_state(t0);
    // external submission, not editable
    select_tool(&mut st, t0, "query", 0);
    st.mark_drawn(t0);
    assert_eq!(st.handle_key(&ch('e'), later(t0, 300)), None);
    assert!(st.stack.is_empty());
    // editable external submission
    select_tool(&mut st, t0, "deploy", 0);
    st.mark_drawn(t0);
    let a = st.selected_entry().unwrap().approval.clone();
    st.handle_key(&ch('e'), later(t0, 300));
    let Some(Layer::Edit(p)) = st.top() else {
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
    let Some(Layer::Edit(p)) = st.top() else {
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
    assert!(matches!(st.top(), Some(Layer::Edit(_))));
}

/// A `run_id` alone (an external client's own run) does not make an approval editable: the
/// runner would refuse the edit, so the console does not open it; the submitter's
/// `editable: true` does.
#[test]
fn a_run_id_alone_does_not_offer_edits() {
    for editable in [false, true] {
        let t0 = Instant::now();
        let mut a = approval(
            78,
            "wire_money",
            "primary",
            Some("billing-bot"),
            None,
            Some("run-42"),
            json!({"amount": 10}),
            Some("pay"),
            30,
            Some(600),
        );
        a.editable = editable;
        let mut st = super::state_with(vec![a], t0);
        st.handle_key(&ch('e'), later(t0, 1400));
        assert_eq!(
            matches!(st.top(), Some(Layer::Edit(_))),
            editable,
            "editable: {editable}"
        );
    }
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
    let s = crate::tui::state::ascii_json(&serde_json::Value::Object(a.arguments.clone()));
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
    assert!(st.notice().unwrap().text.contains("ignored"));
    assert_eq!(st.handle_key(&ch('d'), later(t0, 999)), None);
    assert!(st.stack.is_empty());
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
    assert!(st.stack.is_empty());
    assert_eq!(st.inflight_count(), 0);
    // inside the deny prompt, a paste with a newline fills the reason but does not submit
    st.handle_key(&ch('d'), later_t);
    assert_eq!(
        st.handle_event(&CtEvent::Paste("dup\r\nlicate".into()), later_t),
        None
    );
    let Some(Layer::Deny(p)) = st.top() else {
        panic!()
    };
    assert_eq!(p.input.value(), "dup  licate");
    assert_eq!(st.inflight_count(), 0);
}

/// An approval no policy covers says so in its row, as its detail does ("no policy"), not
/// "default", which reads like a policy's name.
#[test]
fn a_call_no_policy_covers_says_so_in_its_row() {
    let t0 = Instant::now();
    let mut a = approval(
        79,
        "Bash",
        "primary",
        Some("claude-code"),
        None,
        None,
        json!({"command": "ls"}),
        None,
        5,
        Some(600),
    );
    a.policy.name = None;
    a.policy.rule = None;
    a.policy.reason = "no policy covers tool \"Bash\"".into();
    let st = super::state_with(vec![a], t0);
    let text = super::screen_text(&st, 120, 35);
    let row = text
        .lines()
        .find(|l| l.contains("Bash") && l.contains("claude-code"))
        .unwrap_or_else(|| panic!("no row for the call:\n{text}"));
    assert!(row.contains("no policy"), "{row}");
    assert!(!row.contains("default"), "{row}");
}
