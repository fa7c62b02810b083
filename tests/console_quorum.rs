//! The two-person rule in the real console (a pty, over HTTP to a real daemon): the row shows
//! `0 of 2`, then `1 of 2 (alice)` after alice's `a`, whose status line says the call awaits a
//! second reviewer; bob's approval (over HTTP) completes it and the row leaves the list.

mod console_support;

use console_support::*;
use serde_json::json;

const QUORUM_CONFIG: &str = r#"
[[identities]]
name = "alice"
roles = ["reviewer"]
token = "alice-token-1234"

[[identities]]
name = "bob"
roles = ["reviewer"]
token = "bob-token-1234"

[[identities]]
name = "bot"
roles = ["agent"]
token = "bot-token-1234"

[[policies]]
name = "payouts"
tools = ["payout"]
[[policies.rules]]
action = "ask"
approvals = 2
"#;

#[test]
fn the_console_counts_approvals_and_says_it_awaits_a_second_reviewer() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gatehouse.toml");
    std::fs::write(&cfg, QUORUM_CONFIG).unwrap();
    let (_daemon, base) = serve_config(dir.path(), &cfg, "127.0.0.1:0");
    let id = submit(
        &base,
        "payout",
        json!({"to": "acct-9", "amount": 5000}),
        "monthly payout",
    );
    // a second payout, approved by bob alone: the console follows his partial approval
    let other = submit(
        &base,
        "payout",
        json!({"to": "acct-7", "amount": 7000}),
        "bonus",
    );
    let mut c = Console::start(
        &["console", "--connect", &base],
        &[("GATEHOUSE_TOKEN", "alice-token-1234")],
        80,
        24,
    );
    c.wait_for("the payout with its count", |s| {
        s.contains("payout") && s.contains("0 of 2")
    });
    let (code, v) = http(
        "POST",
        &format!("{base}/v1/approvals/{other}/decision"),
        "bob-token-1234",
        Some(json!({"decision": "approve"})),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "pending", "{v}");
    c.wait_for("bob's partial approval", |s| {
        s.contains("1 of 2 (bob)") && s.contains("0 of 2")
    });
    // the selection is on the oldest, the first payout
    press_until(&mut c, "a", "the partial approval", |s| {
        s.contains("awaits a second reviewer") && s.contains("1 of 2 (alice)")
    });
    let (code, v) = http(
        "GET",
        &format!("{base}/v1/approvals/{id}"),
        "alice-token-1234",
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "pending", "{v}");
    assert_eq!(v["approved_by"], json!(["alice"]), "{v}");

    let (code, v) = http(
        "POST",
        &format!("{base}/v1/approvals/{id}/decision"),
        "bob-token-1234",
        Some(json!({"decision": "approve"})),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "approved", "{v}");
    c.wait_for("the approval to leave the list", |s| {
        s.contains("approved by bob") && !s.contains("1 of 2 (alice)") && s.contains("1 of 2 (bob)")
    });
    c.send("q");
    assert!(c.wait_exit().success());
    c.assert_restored();
}
