//! The real `gatehouse` binary in a pseudo-terminal, read back with vt100: the console as a
//! reviewer sees it, fed by a real runner (embedded, or `gatehouse serve` over HTTP + SSE).

mod console_support;

use console_support::*;
use serde_json::json;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn decide_on_screen(c: &mut Console, base: &str) {
    // approve
    let id = submit(
        base,
        "issue_refund",
        json!({"order_id": "ORD-7", "amount": 120}),
        "customer asked",
    );
    c.wait_for("the refund on screen", |s| s.contains("issue_refund"));
    settle();
    c.send("a");
    let v = decided(base, &id);
    assert_eq!(v["status"], "approved", "{v}");
    assert_eq!(v["decision"]["by"], "alice");
    assert_eq!(v["decision"]["arguments_sha256"], v["arguments_sha256"]);

    // deny with a typed reason
    let id = submit(
        base,
        "delete_user_account",
        json!({"user_id": "U-9"}),
        "user asked",
    );
    c.wait_for("the deletion on screen", |s| {
        s.contains("delete_user_account")
    });
    settle();
    c.send("d");
    c.wait_for("the reason prompt", |s| s.contains("Reason"));
    c.send("open invoices remain");
    c.wait_for("the typed reason", |s| s.contains("open invoices remain"));
    c.send("\r");
    let v = decided(base, &id);
    assert_eq!(v["status"], "denied", "{v}");
    assert_eq!(v["decision"]["reason"], "open invoices remain");
    assert_eq!(v["decision"]["by"], "alice");

    // pasted text never decides, even when it holds decide keys
    let id = submit(
        base,
        "issue_refund",
        json!({"order_id": "ORD-8", "amount": 99}),
        "paste test",
    );
    c.wait_for("the third approval", |s| s.contains("ORD-8"));
    settle();
    c.send("\x1b[200~aAd\r\x1b[201~");
    keys_handled(c);
    assert!(
        !c.text().contains("sending"),
        "a paste decided:\n{}",
        c.text()
    );
    let (_, v) = http(
        "GET",
        &format!("{base}/v1/approvals/{id}"),
        "alice-token-1234",
        None,
    );
    assert_eq!(v["status"], "pending", "a paste decided: {v}");
    let pasted = id;

    // `A` approves and grants the tool for the rest of the run
    let (code, v) = http(
        "POST",
        &format!("{base}/v1/approvals"),
        "bot-token-1234",
        Some(json!({"tool": "lookup_invoice", "arguments": {"n": 1}, "run_id": "run-42"})),
    );
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    c.wait_for("the run's approval", |s| s.contains("lookup_invoice"));
    // The paste test's approval is still first in line: move to the new one.
    c.send("j");
    c.wait_for("its detail", |s| s.contains("run-42"));
    settle();
    c.send("A");
    let v = decided(base, &id);
    assert_eq!(v["status"], "approved", "{v}");
    assert_eq!(v["decision"]["scope"], "run", "{v}");
    let (code, v) = http(
        "POST",
        &format!("{base}/v1/approvals"),
        "bot-token-1234",
        Some(json!({"tool": "lookup_invoice", "arguments": {"n": 2}, "run_id": "run-42"})),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["decision"]["by"], "grant:alice");
    let (_, grants) = http(
        "GET",
        &format!("{base}/v1/grants"),
        "alice-token-1234",
        None,
    );
    assert_eq!(grants["grants"][0]["run_id"], "run-42");

    // hostile text is shown escaped, with a warning badge, never interpreted
    submit(
        base,
        "run_shell",
        json!({"cmd": "/home\rls", "note": "\u{1b}[2J\u{1b}]0;pwned\u{7}x\u{202e}gpj.exe"}),
        "fine\u{200b}",
    );
    c.wait_for("the hostile approval", |s| s.contains("run_shell"));
    c.send("j");
    c.wait_for("escaped text in the detail", |s| {
        s.contains("\\u{1b}[2J") && s.contains("\\u{202e}") && s.contains("/home\\u{d}ls")
    });
    let text = c.text();
    assert!(text.contains('⚠'), "no warning badge:\n{text}");
    assert!(
        !text.contains('\u{202e}'),
        "raw bidi override reached the screen"
    );
    // By now a decision the paste had sent would long have been applied.
    let (_, v) = http(
        "GET",
        &format!("{base}/v1/approvals/{pasted}"),
        "alice-token-1234",
        None,
    );
    assert_eq!(v["status"], "pending", "a paste decided: {v}");
}

#[test]
fn embedded_console_decides_what_agents_submit_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let data = dir.path().join("data");
    let mut c = Console::start(
        &[
            "console",
            "--config",
            cfg.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--reviewer",
            "alice",
        ],
        &[],
        120,
        35,
    );
    let base = format!("http://{}", api_from_log(&data.join("console.log")));
    c.wait_for("the dashboard", |s| s.contains("Pending"));
    decide_on_screen(&mut c, &base);
    c.send("q");
    let st = c.wait_exit();
    assert!(st.success(), "{st:?}");
    c.assert_restored();
}

#[test]
fn remote_console_decides_over_http_and_sse() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, base) = serve(dir.path());
    // Decided before the console connects: it is in the history pane from the start.
    let earlier = submit(&base, "rotate_keys", json!({"kid": 7}), "earlier");
    let (code, _) = http(
        "POST",
        &format!("{base}/v1/approvals/{earlier}/decision"),
        "alice-token-1234",
        Some(json!({"decision": "deny", "reason": "not now"})),
    );
    assert_eq!(code, 200);
    let (code, _) = http(
        "GET",
        &format!("{base}/v1/approvals/recent"),
        "bot-token-1234",
        None,
    );
    assert_eq!(code, 403, "agents do not read others' decisions");
    let mut c = Console::start(
        &["console", "--connect", &base],
        &[("GATEHOUSE_TOKEN", "alice-token-1234")],
        120,
        35,
    );
    c.wait_for("the connected dashboard", |s| {
        s.contains("Pending") && s.contains("alice")
    });
    decide_on_screen(&mut c, &base);
    c.send("q");
    let st = c.wait_exit();
    assert!(st.success(), "{st:?}");
    c.assert_restored();
}

#[test]
fn remote_console_survives_a_daemon_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (daemon, base) = serve_on(dir.path(), &addr);
    let first = submit(
        &base,
        "issue_refund",
        json!({"order_id": "ORD-A", "amount": 70}),
        "before",
    );
    let mut c = Console::start(
        &["console", "--connect", &base],
        &[("GATEHOUSE_TOKEN", "alice-token-1234")],
        120,
        35,
    );
    c.wait_for("the first approval", |s| s.contains("ORD-A"));
    drop(daemon); // SIGKILL
    c.wait_for("the broken link in the status line", |s| {
        s.contains("reconnecting")
    });
    // A decision while the link is down is reported as not sent, and nothing is decided.
    settle();
    c.send("a");
    c.wait_for("the not-sent notice", |s| {
        s.contains("not sent") || s.contains("cannot reach")
    });
    let (_daemon, _) = serve_on(dir.path(), &addr);
    c.wait_for("the link back", |s| !s.contains("reconnecting"));
    let (_, v) = http(
        "GET",
        &format!("{base}/v1/approvals/{first}"),
        "alice-token-1234",
        None,
    );
    assert_eq!(
        v["status"], "pending",
        "a decision sent into a dead link was applied: {v}"
    );
    // Events resume: a new submission shows up, and deciding works again.
    submit(
        &base,
        "delete_user_account",
        json!({"user_id": "U-B"}),
        "after",
    );
    c.wait_for("the approval made after the restart", |s| {
        s.contains("delete_user_account")
    });
    settle();
    c.send("a");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, list) = http(
            "GET",
            &format!("{base}/v1/approvals?status=approved"),
            "alice-token-1234",
            None,
        );
        if list["approvals"].as_array().is_some_and(|a| !a.is_empty()) {
            assert_eq!(list["approvals"][0]["decision"]["by"], "alice");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing was approved after the restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.send("q");
    assert!(c.wait_exit().success());
}

#[test]
fn remote_console_refuses_a_bad_token_before_taking_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, base) = serve(dir.path());
    let out = Command::new(BIN)
        .args(["console", "--connect", &base])
        .env("GATEHOUSE_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the token: HTTP 401"), "{err}");
}

fn signal_restores(sig: libc::c_int) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let data = dir.path().join("data");
    let mut c = Console::start(
        &[
            "console",
            "--config",
            cfg.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
        &[],
        80,
        24,
    );
    c.wait_for("the dashboard", |s| s.contains("Pending"));
    let pid = c.child.process_id().unwrap() as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(pid, sig);
    }
    let st = c.wait_exit();
    assert!(st.success(), "{st:?}");
    c.assert_restored();
    // The data directory was released: a second process may open it.
    let out = Command::new(BIN)
        .args(["approvals", "list", "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sighup_restores_the_terminal() {
    signal_restores(libc::SIGHUP);
}

#[test]
fn sigterm_restores_the_terminal() {
    signal_restores(libc::SIGTERM);
}

#[test]
fn demo_shows_the_agent_waiting_at_a_gate() {
    let mut c = Console::start(&["demo"], &[], 80, 24);
    c.wait_for("a gated call", |s| {
        s.contains("issue_refund") && s.contains("delete_user_account")
    });
    c.wait_for("the auto-approved small refund in history", |s| {
        s.contains("approved by policy")
    });
    c.send("q");
    let st = c.wait_exit();
    assert!(st.success(), "{st:?}");
    c.assert_restored();
}

#[test]
fn demo_runs_view_and_transcript_show_what_led_to_the_request() {
    let mut c = Console::start(&["demo"], &[], 80, 24);
    c.wait_for("a run paused at a gate", |s| {
        s.contains("issue_refund") || s.contains("delete_user_account")
    });
    // the runs view lists the paused runs
    c.send("r");
    c.wait_for("the runs view with a paused run", |s| {
        s.contains("Runs (") && s.contains("pending_approval") && s.contains("approval of")
    });
    c.send("r");
    c.wait_for("the dashboard again", |s| s.contains("Pending ·"));
    // the selected approval belongs to a run: its detail offers the transcript
    c.wait_for("the transcript hint in the detail", |s| {
        s.contains("opens the")
    });
    c.send("t");
    c.wait_for("the transcript with the customer's request", |s| {
        s.contains("Transcript · run") && s.contains("── User") && s.contains("because")
    });
    // at its end, the call that waits for the reviewer
    c.send("G");
    c.wait_for("the call waiting for a reviewer", |s| {
        s.contains("[waiting]") && s.contains("waiting for a reviewer")
    });
    let text = c.text();
    assert!(!text.contains('\u{1b}'), "raw escape reached the screen");
    // decide keys do nothing while the transcript is open
    std::thread::sleep(Duration::from_millis(1300));
    c.send("a");
    keys_handled(&mut c);
    assert!(!c.text().contains("sending approve"), "{}", c.text());
    c.send("\x1b");
    c.wait_for("the dashboard after Esc", |s| {
        s.contains("Pending ·") && !s.contains("Transcript · run")
    });
    c.send("q");
    let st = c.wait_exit();
    assert!(st.success(), "{st:?}");
    c.assert_restored();
}

const AGENT_CONFIG: &str = r#"
[models.demo]
kind = "scripted"
script = "customer_service"

[[agents]]
name = "CustomerServiceAgent"
instructions = "Deletions need approval."
model = "demo"
tools = ["get_order_details", "delete_user_account"]

[[tools]]
name = "get_order_details"
kind = "builtin"
needs_approval = false

[[tools]]
name = "delete_user_account"
kind = "builtin"
needs_approval = true
"#;

#[test]
fn remote_console_opens_a_run_transcript_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gatehouse.toml");
    std::fs::write(&cfg, format!("{CONFIG}\n{AGENT_CONFIG}")).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap(), "--data"])
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let _daemon = Daemon(child);
    let mut all = String::new();
    let mut buf = [0u8; 1024];
    let base = loop {
        let n = err.read(&mut buf).unwrap();
        assert!(n > 0, "daemon exited: {all}");
        all.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(i) = all.find("listening on http://") {
            let rest = &all[i + "listening on ".len()..];
            if rest.contains('\n') {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        }
    };
    std::thread::spawn(move || while matches!(err.read(&mut buf), Ok(n) if n > 0) {});
    let (code, v) = http(
        "POST",
        &format!("{base}/v1/runs"),
        "bot-token-1234",
        Some(json!({
            "agent": "CustomerServiceAgent",
            "input": "Please delete user U-456 because they asked us to close their account."
        })),
    );
    assert_eq!(code, 202, "{v}");
    let mut c = Console::start(
        &["console", "--connect", &base],
        &[("GATEHOUSE_TOKEN", "alice-token-1234")],
        100,
        30,
    );
    c.wait_for("the run's approval", |s| s.contains("delete_user_account"));
    c.wait_for("the transcript hint", |s| s.contains("opens the"));
    c.send("t");
    c.wait_for("the transcript fetched over HTTP", |s| {
        s.contains("Transcript · run") && s.contains("── User") && s.contains("close their account")
    });
    c.send("\x1b");
    c.wait_for("back on the dashboard", |s| !s.contains("Transcript · run"));
    c.send("r");
    c.wait_for("the runs view over HTTP", |s| {
        s.contains("Runs (1)") && s.contains("pending_approval")
    });
    c.send("q"); // closes the runs view
    c.wait_for("the dashboard", |s| !s.contains("Runs (1)"));
    c.send("q");
    assert!(c.wait_exit().success());
}

/// An agent using an MCP server that can never start: it fails, and is retried.
const BROKEN_MCP_CONFIG: &str = r#"
[models.demo]
kind = "scripted"
script = "customer_service"

[[agents]]
name = "DbAgent"
instructions = "Query the database."
model = "demo"
tools = []
mcp_servers = ["warehouse"]

[[mcp_servers]]
name = "warehouse"
command = "sh"
args = ["-c", "echo 'bad database url' >&2; exit 3"]
"#;

/// The status line warns of the failed server, and `S` shows why it failed.
fn check_broken_server(c: &mut Console) {
    c.wait_for("the MCP warning in the status line", |s| {
        s.contains("⚠ mcp: warehouse")
    });
    c.send("S");
    c.wait_for("the servers view with the failure", |s| {
        s.contains("MCP servers (1) · 0 ready") && s.contains("bad database url")
    });
    // decide keys do nothing here
    c.send("a");
    c.send("S");
    c.wait_for("back on the dashboard", |s| {
        s.contains("Pending") && !s.contains("MCP servers (1)")
    });
}

#[test]
fn consoles_show_a_failed_mcp_server() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gatehouse.toml");
    std::fs::write(&cfg, format!("{CONFIG}\n{BROKEN_MCP_CONFIG}")).unwrap();

    // in process
    let data = dir.path().join("embedded");
    let mut c = Console::start(
        &[
            "console",
            "--config",
            cfg.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--reviewer",
            "alice",
        ],
        &[],
        100,
        30,
    );
    check_broken_server(&mut c);
    c.send("q");
    assert!(c.wait_exit().success());
    drop(c);

    // over HTTP: polled from GET /v1/servers
    let (_daemon, base) = serve_config(dir.path(), &cfg, "127.0.0.1:0");
    let mut c = Console::start(
        &["console", "--connect", &base],
        &[("GATEHOUSE_TOKEN", "alice-token-1234")],
        100,
        30,
    );
    check_broken_server(&mut c);
    c.send("q");
    assert!(c.wait_exit().success());
}
