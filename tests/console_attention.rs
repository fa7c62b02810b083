//! Attention (DESIGN §13) in the real console, read as raw bytes from a pty: the bell and an
//! OSC 777 / OSC 9 desktop notification on arrival, at most one per second, nothing while the
//! reviewer types a deny reason, and the window title `gatehouse · N pending`, pushed at start
//! and popped at exit.

mod console_support;

use console_support::*;
use serde_json::json;
use std::time::{Duration, Instant};

const PUSH_TITLE: &[u8] = b"\x1b[22;0t";
const POP_TITLE: &[u8] = b"\x1b[23;0t";

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn raw(c: &Console) -> Vec<u8> {
    c.raw.lock().unwrap().clone()
}

/// Wait (bounded) until the bytes written so far satisfy `f`.
fn wait_raw(c: &Console, what: &str, f: impl Fn(&[u8]) -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if f(&raw(c)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "timed out waiting for {what}; bytes:\n{}",
        String::from_utf8_lossy(&raw(c)).escape_debug()
    );
}

fn title(n: usize) -> Vec<u8> {
    format!("\x1b]2;gatehouse · {n} pending\x1b\\").into_bytes()
}

fn console_with(dir: &std::path::Path, base: &str, ui: &str) -> Console {
    let cfg = dir.join("console.toml");
    std::fs::write(&cfg, format!("[ui]\n{ui}\n")).unwrap();
    Console::start(
        &[
            "console",
            "--connect",
            base,
            "--config",
            cfg.to_str().unwrap(),
        ],
        &[("GATEHOUSE_TOKEN", "alice-token-1234")],
        80,
        24,
    )
}

#[test]
fn bell_and_osc777_on_arrival_once_a_second_silent_while_typing_title_restored() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, base) = serve(dir.path());
    let mut c = console_with(dir.path(), &base, "bell = \"new\"\ndesktop = \"osc777\"");
    c.wait_for("the empty dashboard", |s| {
        s.contains("No pending approvals.")
    });
    wait_raw(&c, "the title", |b| count(b, &title(0)) == 1);
    let b = raw(&c);
    let pushed = find(&b, PUSH_TITLE).expect("the title pushed");
    assert!(
        pushed < find(&b, &title(0)).unwrap(),
        "pushed after setting"
    );
    assert_eq!(count(&b, b"\x07"), 0, "a bell with nothing new");

    // one arrival: one bell, one notification naming tool, agent and queue
    submit(
        &base,
        "issue_refund",
        json!({"order_id": "A1", "amount": 75}),
        "r",
    );
    wait_raw(&c, "the bell and the title", |b| {
        count(b, b"\x07") == 1 && count(b, &title(1)) == 1
    });
    let b = raw(&c);
    let note = b"\x1b]777;notify;gatehouse;approval: issue_refund by billing-bot (claimed) in queue default\x1b\\";
    assert_eq!(
        count(&b, note),
        1,
        "{}",
        String::from_utf8_lossy(&b).escape_debug()
    );

    // a burst: three arrivals at once ring at most once more (one signal per second)
    let burst_start = Instant::now();
    for i in 0..3 {
        submit(&base, "lookup", json!({"q": i}), "r");
    }
    let burst = burst_start.elapsed();
    wait_raw(&c, "the title of the burst", |b| count(b, &title(4)) == 1);
    let bells = count(&raw(&c), b"\x07");
    if burst < Duration::from_millis(900) {
        assert!(bells <= 2, "{bells} bells for one burst");
    }

    // typing a deny reason: no bell, no notification, no title while the prompt is open
    press_until(&mut c, "d", "the deny prompt", |s| s.contains("Reason:"));
    c.send("not now");
    c.wait_for("the typed reason", |s| s.contains("not now"));
    let mark = raw(&c).len();
    submit(&base, "delete_user_account", json!({"user_id": "u1"}), "r");
    c.wait_for("the arrival counted", |s| s.contains("5 pending"));
    // the status line was redrawn after the event was handled: anything it caused is out
    let during = raw(&c)[mark..].to_vec();
    assert_eq!(count(&during, b"\x07"), 0, "a bell while typing");
    assert_eq!(
        count(&during, b"\x1b]777"),
        0,
        "a notification while typing"
    );
    assert_eq!(count(&during, b"\x1b]2;"), 0, "a title while typing");
    // closing the prompt brings the title up to date, and rings nothing after the fact
    c.send("\x1b");
    wait_raw(&c, "the title after the prompt", |b| {
        count(b, &title(5)) == 1
    });
    assert_eq!(count(&raw(&c)[mark..], b"\x07"), 0);

    c.send("q");
    assert!(c.wait_exit().success());
    c.assert_restored();
    let b = raw(&c);
    let popped = find(&b, POP_TITLE).expect("the title popped");
    assert!(
        popped > find(&b, &title(5)).unwrap(),
        "popped before the last title"
    );
}

#[test]
fn osc9_without_a_bell() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, base) = serve(dir.path());
    let mut c = console_with(dir.path(), &base, "desktop = \"osc9\"");
    c.wait_for("the empty dashboard", |s| {
        s.contains("No pending approvals.")
    });
    submit(
        &base,
        "issue_refund",
        json!({"order_id": "A1", "amount": 75}),
        "r",
    );
    wait_raw(&c, "the notification", |b| {
        count(
            b,
            b"\x1b]9;gatehouse approval: issue_refund by billing-bot (claimed) in queue default\x1b\\",
        ) == 1
    });
    assert_eq!(count(&raw(&c), b"\x07"), 0, "bell is off");
    c.send("q");
    assert!(c.wait_exit().success());
}
