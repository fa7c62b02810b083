//! What the reviewer reads: claims marked as claims, hook context, shell commands first,
//! one-line argument summaries, edits in the history, a decided approval opened from it,
//! the "N new ↑" mark, hints and notices that fit.

use super::*;
use crate::domain::{ApprovalStatus, Event, Subject};
use crate::frontend::FrontendEvent;
use crate::tui::fixtures::{self, approval, decided, fixed_now};
use crate::tui::keymap::Keymap;
use crate::tui::state::{ConsoleState, Effect, Focus, Intent, Layer, Move};
use crossterm::event::KeyCode;
use serde_json::json;
use std::time::Instant;
use unicode_width::UnicodeWidthStr;

fn claims_state(t0: Instant) -> ConsoleState {
    let mut st = ConsoleState::new("gatehouse", "alice", Keymap::default());
    st.now = fixed_now();
    let (pending, recent) = fixtures::claims_scene();
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

fn line_with<'a>(screen: &'a str, needle: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{screen}"))
}

#[test]
fn hook_submission_shows_claims_context_and_the_command_first() {
    let t0 = Instant::now();
    let st = claims_state(t0);
    // oldest first: the MCP call (90 s), then the Bash call (40 s)
    assert_eq!(st.selected_entry().unwrap().approval.tool, "create_issue");
    let mut st = st;
    st.handle_key(&ch('j'), t0);
    assert_eq!(st.selected_entry().unwrap().approval.tool, "Bash");
    snap("hook_bash_claimed", &st);
    for (w, h) in [(80, 24), (120, 35)] {
        let s = screen_text(&st, w, h);
        // the list row marks the claim, and shows the command as the summary
        let row = line_with(&s, " Bash ");
        // at 80 columns the agent column gives way to the call's summary
        assert_eq!(row.contains("claude-code (claimed)"), w == 120, "{row}");
        assert!(row.contains("$ rm -rf build"), "{row}");
        // the detail: the command is its first line, the agent a claim, the context shown
        let first = s
            .lines()
            .skip_while(|l| !l.contains("┌ Bash · "))
            .nth(1)
            .unwrap();
        assert!(first.contains("$ rm -rf build && make release"), "{first}");
        assert!(line_with(&s, "│Agent    ").contains("(claimed)"));
        assert!(line_with(&s, "│Dir    ").contains("/home/dev/shop"));
        assert!(line_with(&s, "│Session  ").contains("5f0c2a9e-session"));
    }
    // an unverified server is a claim too
    st.handle_key(&ch('k'), t0);
    let s = screen_text(&st, 120, 35);
    assert!(line_with(&s, " create_issue").contains("(claimed)"));
    assert!(line_with(&s, "create_issue @ github").contains("(claimed)"));
}

#[test]
fn rows_tell_calls_apart_and_filter_matches_arguments() {
    let t0 = Instant::now();
    let mut st = claims_state(t0);
    let s = screen_text(&st, 120, 35);
    let a = line_with(&s, "amount=75 ");
    let b = line_with(&s, "amount=1200 ");
    assert_ne!(a, b);
    // AGENT and POLICY readable at 120 columns
    assert!(a.contains("CustomerServiceAgent"), "{a}");
    assert!(a.contains("refunds"), "{a}");
    // `/` matches argument text
    st.apply_intent(Intent::OpenFilter, t0);
    for c in "1200".chars() {
        st.handle_key(&ch(c), t0);
    }
    assert_eq!(st.visible().len(), 1);
    assert_eq!(
        st.selected_entry().unwrap().approval.arguments["amount"],
        json!(1200)
    );
}

#[test]
fn a_long_queue_name_never_moves_the_columns() {
    let t0 = Instant::now();
    let mut st = claims_state(t0);
    let header = |st: &ConsoleState| {
        let s = screen_text(st, 120, 35);
        let h = line_with(&s, "AGE   LEFT").to_string();
        (h.find("TOOL"), h.find("AGENT"), h.find("ARGUMENTS"))
    };
    let all = header(&st);
    // select the queue with the long name
    st.dashboard.focus = Focus::Queues;
    while st.selected_queue() != Some("engineering-oncall-secondary-escalations") {
        st.handle_key(&ch('j'), t0);
    }
    let s = screen_text(&st, 120, 35);
    let title = line_with(&s, "Pending · ");
    assert!(title.contains("engineering-oncall-seco…"), "{title}");
    assert!(header(&st).0.is_some());
    assert_eq!(all.0, header(&st).0);
    snap("long_queue", &st);
}

#[test]
fn history_shows_edits_and_opens_the_decided_approval() {
    let t0 = Instant::now();
    let mut st = claims_state(t0);
    let s = screen_text(&st, 120, 35);
    assert!(line_with(&s, "✓ issue_").contains("edited"), "{s}");
    st.dashboard.focus = Focus::History;
    let pending_before = st.selected_id();
    assert_eq!(
        st.intent_for(&key(KeyCode::Enter)),
        Some(Intent::OpenHistory)
    );
    st.handle_key(&key(KeyCode::Enter), t0);
    let Some(Layer::Full(f)) = st.top() else {
        panic!("not opened")
    };
    assert!(f.decided);
    assert_eq!(
        st.shown_approval().unwrap().status,
        ApprovalStatus::Approved
    );
    assert_ne!(Some(f.id), pending_before);
    snap("history_opened_edited", &st);
    let s = screen_text(&st, 120, 35);
    assert!(line_with(&s, "Decision").contains("APPROVED by alice"));
    assert!(line_with(&s, "Decision").contains("edited"));
    assert!(line_with(&s, "Reason").contains("only the damaged item"));
    assert!(s.contains("Arguments (edited by the reviewer: this ran)"));
    assert!(s.contains("Requested arguments (as submitted)"));
    assert!(line_with(&s, "\"amount\": 30").contains("30"));
    assert!(line_with(&s, "\"amount\": 75").contains("75"));
    // decide keys do nothing on a decided approval
    for c in ['a', 'A', 'd', 'e', 'x'] {
        assert_eq!(st.intent_for(&ch(c)), None, "{c}");
    }
    assert_eq!(
        st.apply_intent(Intent::Decide(crate::tui::state::DecideKind::Approve), t0),
        None
    );
    assert!(st.notice().unwrap().text.contains("already decided"));
    st.handle_key(&key(KeyCode::Esc), t0);
    assert!(st.stack.is_empty());
}

fn decided_event(seq: u64, n: u128) -> FrontendEvent {
    let a = decided(
        approval(
            n,
            "send_email",
            "billing",
            Some("mailer"),
            None,
            None,
            json!({"to": format!("c{n}@example.com")}),
            None,
            10,
            None,
        ),
        ApprovalStatus::Denied,
        "bob",
        Some("spam"),
        1,
    );
    FrontendEvent::Change(Box::new(Event {
        seq,
        at: fixed_now(),
        kind: crate::domain::AuditKind::ApprovalDecided,
        subject: Subject::Approval(a),
    }))
}

#[test]
fn new_decisions_stay_visible_or_are_counted() {
    let t0 = Instant::now();
    let mut st = ConsoleState::new("gatehouse", "alice", Keymap::default());
    st.now = fixed_now();
    st.viewport = ratatui::layout::Rect::new(0, 0, 80, 24);
    for i in 0..12 {
        st.apply(decided_event(i + 1, 100 + i as u128), t0);
    }
    st.dashboard.focus = Focus::History;
    // at the top, one `j`: the newest arrivals are still on screen
    st.handle_key(&ch('j'), t0);
    st.apply(decided_event(20, 200), t0);
    let s = screen_text(&st, 80, 24);
    assert!(s.contains("c200@example.com") || st.dashboard.history_offset == 0);
    assert_eq!(st.dashboard.history_offset, 0, "{s}");
    // far down: arrivals above are counted, and the rows being read stay put
    st.apply_intent(Intent::ScrollHistory(Move::Bottom), t0);
    let reading = st.selected_history().unwrap().approval.id;
    st.apply(decided_event(21, 201), t0);
    st.apply(decided_event(22, 202), t0);
    assert_eq!(st.selected_history().unwrap().approval.id, reading);
    let s = screen_text(&st, 80, 24);
    assert!(s.contains("↑ 2 new"), "{s}");
    // back to the top: the mark goes
    st.apply_intent(Intent::ScrollHistory(Move::Top), t0);
    let s = screen_text(&st, 80, 24);
    assert!(!s.contains("new"), "{s}");
}

#[test]
fn hints_come_from_the_keymap_and_name_x_s_and_a() {
    let t0 = Instant::now();
    let mut st = claims_state(t0);
    st.apply(FrontendEvent::Servers(fixtures::servers_scene()), t0);
    st.handle_key(&ch('j'), t0); // the Bash call: it has a run, so `A` applies
    let hints = st.hints();
    for (k, label) in [("x", "escalate"), ("S", "servers"), ("A", "approve run")] {
        assert!(hints.contains(&(k.to_string(), label)), "{hints:?}");
    }
    // every hint's key maps to an intent in the same view
    for (k, _) in &hints {
        let first = if k == "/" {
            "/"
        } else {
            k.split('/').next().unwrap()
        };
        let code = match first {
            "Enter" => KeyCode::Enter,
            "Tab" => KeyCode::Tab,
            "Esc" => KeyCode::Esc,
            c => KeyCode::Char(c.chars().next().unwrap()),
        };
        assert!(st.intent_for(&key(code)).is_some(), "{k}");
    }
    // in the deny prompt, `k` is text: the hint names ↑
    st.mark_drawn(later(t0, 0));
    assert!(st.handle_key(&ch('d'), later(t0, 2000)).is_none());
    assert!(matches!(st.top(), Some(Layer::Deny(_))));
    assert!(st.hints().contains(&("↑".to_string(), "pick a reason")));
    assert_eq!(st.intent_for(&ch('k')), Some(Intent::PromptKey(ch('k'))));
    // Ctrl-C cancels the prompt through the keymap, then quits from the dashboard
    let ctrl_c = crossterm::event::KeyEvent::new(
        KeyCode::Char('c'),
        crossterm::event::KeyModifiers::CONTROL,
    );
    st.handle_key(&ctrl_c, t0);
    assert!(st.stack.is_empty());
    assert_eq!(st.handle_key(&ctrl_c, t0), Some(Effect::Quit));
}

#[test]
fn notices_are_cut_between_words() {
    use crate::tui::panes::clip_words;
    let t = "approve of issue_refund (00000001) refused: the approval is no longer pending";
    let c = clip_words(t, 40);
    assert!(c.ends_with('…'));
    assert!(c.width() <= 40);
    let body = c.trim_end_matches('…');
    assert!(t.starts_with(body));
    // the cut is at a word boundary
    assert_eq!(t.as_bytes()[body.len()], b' ', "{c}");
    assert_eq!(clip_words("short", 40), "short");
}

/// A state at 80×24 with one approval whose only argument is far longer than the screen.
fn long_state(t0: Instant) -> ConsoleState {
    let mut st = ConsoleState::new("gatehouse", "alice", Keymap::default());
    st.now = fixed_now();
    st.resize(ratatui::layout::Rect::new(0, 0, 80, 24));
    let long: String = (0..2000).map(|i| format!("w{i} ")).collect();
    let a = approval(
        31,
        "write_file",
        "default",
        Some("editor"),
        None,
        None,
        json!({"path": "/srv/notes.txt", "content": long}),
        None,
        5,
        None,
    );
    st.apply(
        FrontendEvent::Snapshot {
            pending: vec![a],
            recent: Vec::new(),
            runs: Vec::new(),
            seq: 1,
        },
        t0,
    );
    st.mark_drawn(t0);
    st
}

#[test]
fn a_value_longer_than_the_screen_is_seen_over_several_pages() {
    let t0 = Instant::now();
    let mut st = long_state(t0);
    let t = later(t0, 2000);
    let r = st.handle_key(&ch('a'), t);
    assert!(r.is_none(), "{r:?}");
    assert!(
        st.notice().unwrap().text.contains("Enter"),
        "{:?}",
        st.notice()
    );
    snap("not_seen_in_full", &st);
    // full-screen: the end alone is not enough
    st.handle_key(&key(KeyCode::Enter), t);
    st.mark_drawn(t);
    st.handle_key(&ch('G'), t);
    st.mark_drawn(t);
    assert!(st.handle_key(&ch('a'), t).is_none());
    assert!(st.notice().unwrap().text.contains("scroll"));
    // page by page from the top, each page drawn: then it may be approved
    st.handle_key(&ch('g'), t);
    st.mark_drawn(t);
    for _ in 0..40 {
        st.handle_key(&key(KeyCode::PageDown), t);
        st.mark_drawn(t);
    }
    assert!(matches!(st.handle_key(&ch('a'), t), Some(Effect::Send(_))));
}

#[test]
fn keys_typed_between_frames_do_not_count_as_seen() {
    let t0 = Instant::now();
    let mut st = long_state(t0);
    let t = later(t0, 2000);
    st.handle_key(&key(KeyCode::Enter), t);
    st.mark_drawn(t);
    // pages turned faster than frames: the pages in between were never drawn
    for _ in 0..40 {
        st.handle_key(&key(KeyCode::PageDown), t);
    }
    st.mark_drawn(t);
    assert!(st.handle_key(&ch('a'), t).is_none());
}

#[test]
fn hostile_context_is_escaped_and_badged() {
    let t0 = Instant::now();
    let mut st = ConsoleState::new("gatehouse", "alice", Keymap::default());
    st.now = fixed_now();
    let mut a = approval(
        41,
        "Bash",
        "coding",
        Some("codex"),
        None,
        None,
        json!({"cmd": ["ls", "-la", "my dir"]}),
        None,
        5,
        None,
    );
    a.context = Some(
        [("cwd".to_string(), "/tmp\u{1b}[2J\u{202e}x".to_string())]
            .into_iter()
            .collect(),
    );
    st.apply(
        FrontendEvent::Snapshot {
            pending: vec![a],
            recent: Vec::new(),
            runs: Vec::new(),
            seq: 1,
        },
        t0,
    );
    let s = screen_text(&st, 120, 35);
    assert!(
        line_with(&s, "│Dir ").contains("/tmp\\u{1b}[2J\\u{202e}x"),
        "{s}"
    );
    assert!(!s.contains('\u{202e}'));
    assert!(line_with(&s, " Bash ").contains('⚠'), "{s}");
    // an array command reads as a command line, quoted where it needs to be
    assert!(s.contains("$ ls -la \"my dir\""), "{s}");
}

#[test]
fn a_summary_never_turns_a_line_break_into_a_space() {
    let args = json!({"command": "ls\nrm -rf /srv", "timeout": 5});
    let m = args.as_object().unwrap();
    assert_eq!(crate::tui::entries::args_summary(m), "$ ls\\nrm -rf /srv");
    let m = json!({"b": "x\ty", "a": [1, 2]});
    assert_eq!(
        crate::tui::entries::args_summary(m.as_object().unwrap()),
        "a=[1,2] b=x\\ty"
    );
}
