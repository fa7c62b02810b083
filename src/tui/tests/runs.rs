//! The runs view, transcripts and the MCP servers view.

use super::*;

use crate::domain::{ApprovalStatus, AuditKind, Event};
use crate::frontend::FrontendEvent;
use crate::tui::fixtures::{self, decided, fixed_now};
use crate::tui::keymap::Keymap;
use crate::tui::panes;
use crate::tui::state::{ConsoleState, DecideKind, Effect, Intent, Move, View};
use crate::tui::theme::Theme;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;
use std::time::Instant;

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
    assert_eq!(st.view(), View::Runs);
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
    assert!(st.transcript().as_ref().unwrap().scroll > 0);
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
    assert!(st.transcript().is_some());
    // the transcript closes back to the runs view, which closes back to the dashboard
    st.handle_key(&key(KeyCode::Esc), t0);
    assert!(st.transcript().is_none());
    assert_eq!(st.view(), View::Runs);
    st.handle_key(&ch('r'), t0);
    assert_eq!(st.view(), View::Dashboard);
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
    assert!(st.transcript().is_none());
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
    assert!(st.transcript().is_none());
    assert!(
        st.notice()
            .as_ref()
            .unwrap()
            .text
            .contains("external submission")
    );
    // the scene's run ids are the submitter's own, not gatehouse run ids
    select_tool(&mut st, t0, "issue_refund", 0);
    assert_eq!(st.handle_key(&ch('t'), t0), None);
    assert!(
        st.notice()
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
    assert!(st.transcript().is_none());
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
    assert_eq!(
        st.runs().len(),
        crate::tui::runs::FINISHED_RUNS_KEPT + active
    );
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
    let lines = crate::tui::run_panes::transcript_lines(&st, &Theme::mono(), 118);
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
        assert!(c == '\n' || !crate::tui::sanitize::needs_escape(c), "{c:?}");
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
    st.inbox.notice = None;
    st
}

#[test]
fn snapshot_servers_view() {
    let t0 = Instant::now();
    let mut st = servers_state(t0);
    assert_eq!(st.handle_key(&ch('S'), t0), None);
    assert_eq!(st.view(), View::Servers);
    st.handle_key(&ch('j'), t0);
    assert_eq!(st.selected_server(), 1);
    snap("servers_view", &st);
    let text = screen_text(&st, 120, 35);
    // the failure text is escaped, never passed through
    assert!(text.contains("refused\\u{1b}[2J"), "{text}");
    assert!(text.contains("search\\u{202e}gnp"), "{text}");
    for c in text.chars() {
        assert!(c == '\n' || !crate::tui::sanitize::needs_escape(c), "{c:?}");
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
    assert_eq!(st.view(), View::Servers);
    let text = screen_text(&st, 80, 24);
    assert!(text.contains("No MCP servers."), "{text}");
    assert!(!text.contains("mcp:"), "{text}");
}

#[test]
fn servers_warning_only_when_one_is_not_ready() {
    use crate::tui::servers::status_warning;
    use crate::tui::theme::Role;
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
    assert_eq!(st.view(), View::Runs);
    assert_eq!(st.intent_for(&ch('S')), Some(Intent::ToggleServers));
    st.handle_key(&ch('S'), t0);
    assert_eq!(st.view(), View::Servers);
    st.handle_key(&ch('S'), t0);
    assert_eq!(st.view(), View::Dashboard);
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
