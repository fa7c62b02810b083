//! The two-person rule in the console: `1 of 2 (bob)` in the row and the detail, and after
//! our own approval the status line says what the call still waits for.

use super::*;
use crate::domain::Verdict;
use crate::frontend::DecisionOutcome;

/// The sample scene with its first refund under a two-person rule, `approved_by` so far.
fn quorum_state(t0: Instant, approved_by: &[&str]) -> ConsoleState {
    let mut st = ConsoleState::new("gatehouse demo", "alice", Keymap::default());
    st.now = fixed_now();
    let (mut pending, recent) = fixtures::scene();
    let refund = pending
        .iter_mut()
        .find(|a| a.tool == "issue_refund")
        .expect("a refund in the scene");
    refund.approvals_needed = Some(2);
    refund.approved_by = approved_by.iter().map(|s| s.to_string()).collect();
    st.apply(
        FrontendEvent::Snapshot {
            pending,
            recent,
            runs: Vec::new(),
            seq: 10,
        },
        t0,
    );
    select_tool(&mut st, t0, "issue_refund", 0);
    st.mark_drawn(t0);
    st
}

#[test]
fn a_partial_approval_shows_its_count_in_the_row_and_the_detail() {
    let t0 = Instant::now();
    let st = quorum_state(t0, &["bob"]);
    let text = screen_text(&st, 120, 35);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("issue_refund") && l.contains("1 of 2 (bob)"))
        .collect();
    assert!(!rows.is_empty(), "no row with the count:\n{text}");
    assert!(
        text.contains("Quorum   1 of 2 (bob)") && text.contains("awaits a second reviewer"),
        "{text}"
    );
    snap("quorum_partial", &st);
}

#[test]
fn after_our_approval_the_status_line_says_it_awaits_a_second_reviewer() {
    let t0 = Instant::now();
    let mut st = quorum_state(t0, &[]);
    assert!(screen_text(&st, 80, 24).contains("0 of 2"));
    let a = st.selected_entry().unwrap().approval.clone();
    let Some(Effect::Send(req)) = st.handle_key(&ch('a'), later(t0, 300)) else {
        panic!("no decision")
    };
    assert_eq!(req.verdict, Verdict::Approve);
    let mut partial = a.clone();
    partial.approved_by = vec!["alice".into()];
    st.on_outcome(a.id, DecisionOutcome::Applied(partial), later(t0, 500));
    // still pending, still listed, not in the history
    let e = st.entry(&a.id).expect("still listed");
    assert_eq!(e.quorum.as_deref(), Some("1 of 2 (alice)"));
    assert!(st.inflight(&a.id).is_none());
    assert!(st.history().all(|h| h.approval.id != a.id));
    let notice = st.notice().unwrap().text.clone();
    assert!(
        notice.ends_with("approved 1 of 2 (alice): awaits a second reviewer"),
        "{notice}"
    );
    let text = screen_text(&st, 80, 24);
    assert!(text.contains("awaits a second reviewer"), "{text}");
    snap("quorum_after_first", &st);
}
