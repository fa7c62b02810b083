//! The reviewer's side of the gate, with the real binary in a pty: a call whose arguments do
//! not fit cannot be approved until read in full (DESIGN §9 "Seen in full", at 60×15); a
//! remote console refuses a token that may not review; one started before its daemon says
//! why it waits and counts down to the next try.

mod console_support;

use console_support::*;
use serde_json::{Map, Value, json};
use std::process::Command;

/// The detail's scroll indicator on screen: `(first, last, total)` of ` 12-22/47 `.
fn scroll_position(screen: &str) -> Option<(usize, usize, usize)> {
    for line in screen.lines().rev() {
        for part in line.split(' ') {
            let part = part.trim_matches(|c: char| !c.is_ascii_digit());
            let Some((range, total)) = part.split_once('/') else {
                continue;
            };
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            if let (Ok(a), Ok(b), Ok(t)) = (a.parse(), b.parse(), total.parse()) {
                return Some((a, b, t));
            }
        }
    }
    None
}

fn status(base: &str, id: &str) -> Value {
    let (code, v) = http(
        "GET",
        &format!("{base}/v1/approvals/{id}"),
        "alice-token-1234",
        None,
    );
    assert_eq!(code, 200, "{v}");
    v["status"].clone()
}

#[test]
fn a_long_call_cannot_be_approved_until_read_in_full_at_60x15() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, base) = serve(dir.path());
    let mut args = Map::new();
    for i in 0..40 {
        args.insert(format!("line_{i:02}"), json!(format!("value {i:02}")));
    }
    let id = submit(&base, "bulk_update", Value::Object(args), "many fields");
    let mut c = Console::start(
        &["console", "--connect", &base],
        &[("GATEHOUSE_TOKEN", "alice-token-1234")],
        60,
        15,
    );
    c.wait_for("the approval", |s| s.contains("bulk_update"));
    // on the dashboard only the first lines fit: `a` says to open it, and nothing is decided
    press_until(&mut c, "a", "the open-it-first notice", |s| {
        s.contains("not yet") && s.contains("Enter")
    });
    assert_eq!(status(&base, &id), "pending");
    // full-screen, jumping to the end skips the middle: still not seen in full
    c.send("\r");
    c.wait_for("the full-screen detail", |s| {
        scroll_position(s).is_some_and(|(a, _, _)| a == 1)
    });
    c.send("G");
    c.wait_for("the end", |s| {
        scroll_position(s).is_some_and(|(_, b, t)| b == t)
    });
    press_until(&mut c, "a", "the scroll-through notice", |s| {
        s.contains("not yet") && s.contains("scroll")
    });
    assert_eq!(status(&base, &id), "pending");
    // back to the top, then page by page to the end, each page drawn before the next
    c.send("g");
    c.wait_for("the top", |s| {
        scroll_position(s).is_some_and(|(a, _, _)| a == 1)
    });
    loop {
        let (_, last, total) = scroll_position(&c.text()).unwrap();
        if last == total {
            break;
        }
        c.send("\x1b[6~"); // PgDn
        c.wait_for("the next page", |s| {
            scroll_position(s).is_some_and(|(_, b, _)| b > last)
        });
    }
    assert!(c.text().contains("line_39"));
    c.send("a");
    // A long poll: it answers once the console's decision has landed (or after 8 s).
    let (code, v) = http(
        "GET",
        &format!("{base}/v1/approvals/{id}?wait=8"),
        "alice-token-1234",
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["status"],
        "approved",
        "not approved after reading it all; screen:\n{}",
        c.text()
    );
    c.send("q");
    assert!(c.wait_exit().success());
    c.assert_restored();
}

#[test]
fn remote_console_refuses_a_token_without_the_reviewer_role() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, base) = serve(dir.path());
    submit(
        &base,
        "issue_refund",
        json!({"amount": 5}),
        "pending meanwhile",
    );
    let out = Command::new(BIN)
        .args(["console", "--connect", &base])
        .env("GATEHOUSE_TOKEN", "bot-token-1234")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the token of bot lacks the reviewer role (only agent)"),
        "{err}"
    );
}

#[test]
fn remote_console_waits_for_its_daemon_with_the_cause_and_a_countdown() {
    let dir = tempfile::tempdir().unwrap();
    // a port nobody listens on (yet)
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut c = Console::start(
        &["console", "--connect", &base],
        &[("GATEHOUSE_TOKEN", "alice-token-1234")],
        120,
        35,
    );
    c.wait_for("the cause and a countdown", |s| {
        s.contains("connection refused") && s.contains("retry in")
    });
    // still retrying a few tries later: it did not exit
    c.wait_for("a later try", |s| s.contains("(try 3"));
    assert!(c.child.try_wait().unwrap().is_none(), "the console exited");
    let (_daemon, url) = serve_on(dir.path(), &format!("127.0.0.1:{port}"));
    assert_eq!(url, base);
    submit(&base, "issue_refund", json!({"amount": 5}), "now it is up");
    c.wait_for("the dashboard", |s| {
        s.contains("Pending") && s.contains("issue_refund")
    });
    // the URL shows once, in the status line
    let text = c.text();
    assert_eq!(text.matches(&base[7..]).count(), 1, "{text}");
    c.send("q");
    assert!(c.wait_exit().success());
    c.assert_restored();
}

#[test]
fn history_opens_the_decided_approval_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, base) = serve(dir.path());
    let id = submit(
        &base,
        "issue_refund",
        json!({"order_id": "ORD-77", "amount": 75}),
        "customer asked",
    );
    let mut c = Console::start(
        &["console", "--connect", &base],
        &[("GATEHOUSE_TOKEN", "alice-token-1234")],
        80,
        24,
    );
    c.wait_for("the approval", |s| s.contains("ORD-77"));
    press_until(&mut c, "d", "the deny prompt", |s| s.contains("Reason:"));
    c.send("wrong order");
    c.wait_for("the typed reason", |s| s.contains("wrong order"));
    // the arguments stay in sight under the prompt
    assert!(
        c.text().contains("\"order_id\": \"ORD-77\""),
        "{}",
        c.text()
    );
    c.send("\r");
    c.wait_for("the denial in the history", |s| {
        s.contains("denied by alice")
    });
    assert_eq!(status(&base, &id), "denied");
    // to the history pane, then Enter: the decided approval, not a pending one
    c.send("\t\t");
    c.wait_for("the history's hint", |s| s.contains("open decided"));
    c.send("\r");
    c.wait_for("the decided approval", |s| {
        s.contains("DENIED by alice") && s.contains("wrong order") && s.contains("ORD-77")
    });
    c.send("\x1b");
    c.wait_for("the dashboard again", |s| {
        s.contains("No pending approvals.")
    });
    c.send("q");
    assert!(c.wait_exit().success());
    c.assert_restored();
}
