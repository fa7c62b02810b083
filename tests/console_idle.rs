//! A calm idle console over the remote link (the real binary in a pseudo-terminal, read back
//! with vt100, fed by `gatehouse serve` over HTTP + SSE): with a full pane of young approvals a
//! second's redraw changes the detail's clock and nothing else, and an approval submitted
//! while it idles shows up. How many bytes and how fast: `gatehouse bench console`.

mod console_support;

use console_support::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// The selected approval's age as the detail counts it: `Queue … · 12s old · …`.
fn detail_age(screen: &str) -> Option<u64> {
    let line = screen
        .lines()
        .find(|l| l.contains("Queue ") && l.contains(" old"))?;
    let before = &line[..line.find("s old")?];
    before.rsplit(' ').next()?.parse().ok()
}

/// The screen's text and rows, read at one instant.
fn capture(c: &Console) -> (String, Vec<String>) {
    let p = c.screen.lock().unwrap();
    let s = p.screen();
    (s.contents(), s.rows(0, s.size().1.get()).collect())
}

/// The screen once the detail's clock shows an age past `after` (any age for `None`).
fn next_tick(c: &Console, after: Option<u64>) -> (u64, Vec<String>) {
    let start = Instant::now();
    loop {
        let (text, rows) = capture(c);
        if let Some(a) = detail_age(&text).filter(|a| after.is_none_or(|b| *a > b)) {
            return (a, rows);
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the detail's clock did not move past {after:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_idle_pane_of_young_approvals_changes_only_the_detail_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, base) = serve(dir.path());
    let filled = Instant::now();
    let n = 30;
    for i in 0..n {
        submit(
            &base,
            "issue_refund",
            json!({"order_id": format!("ORD-{i:03}"), "amount": 100 + i}),
            "idle test",
        );
    }
    let c = Console::start(
        &["console", "--connect", &base],
        &[("GATEHOUSE_TOKEN", "alice-token-1234")],
        120,
        35,
    );
    // the pane is full: the list scrolls, and says where the selection is
    c.wait_for("a full pane of pending approvals", |s| {
        s.contains(&format!("{n} pending")) && s.contains(&format!(" 1/{n} "))
    });
    // two consecutive ticks of the clock, the first after the whole screen was drawn
    let (first, _) = next_tick(&c, None);
    let (a, before) = next_tick(&c, Some(first));
    let (_, after) = next_tick(&c, Some(a));
    assert!(
        filled.elapsed() < Duration::from_secs(55),
        "the approvals were not young any more ({:?}): the test ran too slowly to show anything",
        filled.elapsed()
    );
    let changed: Vec<(usize, &String, &String)> = before
        .iter()
        .zip(&after)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| (i, x, y))
        .collect();
    // the list rows show `<1m` and minutes left: none of them moves with the seconds
    let list_rows = after.iter().filter(|r| r.contains("ORD-")).count();
    assert!(
        list_rows >= 5,
        "too few list rows on screen:\n{}",
        after.join("\n")
    );
    assert_eq!(
        changed.len(),
        1,
        "more than the detail's clock changed: {changed:#?}"
    );
    let (_, was, now) = changed[0];
    assert!(
        was.contains("Queue ") && now.contains(" old") && now.contains(" left"),
        "the row that changed is not the detail's clock: {was:?} → {now:?}"
    );
}

#[test]
fn an_approval_submitted_while_the_console_idles_shows_up() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, base) = serve(dir.path());
    submit(&base, "issue_refund", json!({"order_id": "ORD-1"}), "first");
    let c = Console::start(
        &["console", "--connect", &base],
        &[("GATEHOUSE_TOKEN", "alice-token-1234")],
        120,
        35,
    );
    c.wait_for("the first approval", |s| s.contains("ORD-1"));
    // idle: the clock has ticked since the list was drawn
    let (first, _) = next_tick(&c, None);
    next_tick(&c, Some(first));
    submit(&base, "rotate_keys", json!({"kid": "ARRIVAL-7"}), "second");
    c.wait_for("the arrival as a row of the list", |s| {
        s.lines()
            .any(|l| l.contains("rotate_keys") && l.contains("ARRIVAL-7") && l.contains("<1m"))
            && s.contains("2 pending")
    });
}

/// `gatehouse bench console` runs end to end (its figures are not judged here: a benchmark,
/// not a timed test) and refuses an idle window the young approvals would outlive.
#[test]
fn the_console_bench_runs_and_refuses_a_window_too_long() {
    let out = std::process::Command::new(BIN)
        .args(["bench", "console", "--pending", "15", "--idle", "1s"])
        .args(["--arrivals", "3", "--width", "80", "--height", "24"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("console 80x24 over HTTP + SSE, 15 pending"),
        "{text}"
    );
    assert!(
        text.contains("bytes/s; screen rows that changed: "),
        "{text}"
    );
    assert!(
        text.contains("arrival → on screen over 3 arrivals: p50 "),
        "{text}"
    );
    let out = std::process::Command::new(BIN)
        .args(["bench", "console", "--idle", "2m"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--idle must be 1s to 40s"), "{err}");
}
