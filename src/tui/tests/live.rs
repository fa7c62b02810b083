//! Live updates: arrivals, decisions elsewhere, escalations, outcomes, filter, bounds.

use super::*;

use crate::domain::{ApprovalStatus, AuditKind, Event};
use crate::frontend::{DecisionOutcome, FrontendEvent};
use crate::tui::fixtures::{self, approval, decided, fixed_now};
use crate::tui::keymap::Keymap;
use crate::tui::panes;
use crate::tui::state::{ConsoleState, Effect, Layer};
use crate::tui::theme::Theme;
use crossterm::event::KeyCode;
use ratatui::Terminal;
use serde_json::json;
use std::time::{Duration, Instant};

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
    let n = st.notice().unwrap();
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
    let Some(Layer::Deny(p)) = st.top() else {
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
    assert!(st.stack.is_empty());
    assert!(st.notice().unwrap().text.contains("prompt closed"));
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
    assert!(st.notice().unwrap().text.contains("escalated"));
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
    assert!(st.notice().unwrap().text.contains("NOT SENT"));
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
    assert!(st.notice().unwrap().text.contains("not applied"));
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
    assert!(st.stack.is_empty());
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
    assert!(st.stack.is_empty());
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
    let d = crate::tui::bench_render(2000, 120, 35, 5);
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
    assert_eq!(st.history_len(), crate::tui::state::HISTORY_LEN);
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
