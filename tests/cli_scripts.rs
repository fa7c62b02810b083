//! The command line as scripts and on-call engineers use it (issue 11 item 9), with the real
//! binary: where `approvals` reads from, the console's short ids, an empty deny reason,
//! `runs list --json`, `runs cancel`'s line, `audit verify --file -`, the hint on a live data
//! directory, and help text on every argument. (Split from `tests/cli.rs` to keep files short.)

mod common;

use common::model_server::{ModelServer, Reply, call};
use common::*;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

/// `gatehouse ARGS…` with `GATEHOUSE_TOKEN` set to `token`, and a home with no data directory
/// (so nothing leaks in from the user running the tests).
fn gatehouse(home: &Path, args: &[&str], token: Option<&str>, url: Option<&str>) -> Finished {
    let mut c = command();
    c.args(args)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("xdg-data"));
    if let Some(t) = token {
        c.env("GATEHOUSE_TOKEN", t);
    }
    if let Some(u) = url {
        c.env("GATEHOUSE_URL", u);
    }
    run(c)
}

#[track_caller]
fn ok(f: &Finished) -> &str {
    assert_eq!(f.code, Some(0), "{f:?}");
    assert!(!f.stderr.contains("panicked"), "{f:?}");
    &f.stdout
}

#[track_caller]
fn fails(f: &Finished, code: i32, needle: &str) {
    assert_eq!(f.code, Some(code), "{f:?}");
    assert!(f.stderr.contains(needle), "no {needle:?} in {f:?}");
    assert!(!f.stderr.contains("panicked"), "{f:?}");
}

/// The console's short id: the last 8 hex digits.
fn short(id: &str) -> String {
    id.replace('-', "")[24..].to_string()
}

#[test]
fn approvals_find_their_daemon_and_take_short_ids() {
    let ws = Workspace::new();
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let d = ws.start();
    let url = d.url.as_str();
    let (a, b) = block_on(async {
        let api = d.api();
        let a = api
            .submit_pending(BOT, "deploy", json!({"env": "prod"}))
            .await;
        let b = api
            .submit_pending(BOT, "reboot", json!({"host": "db1"}))
            .await;
        (
            a["id"].as_str().unwrap().to_string(),
            b["id"].as_str().unwrap().to_string(),
        )
    });

    // Neither --connect nor --data: $GATEHOUSE_URL is the daemon.
    let out = gatehouse(home, &["approvals", "list"], Some(ALICE), Some(url));
    let table = ok(&out);
    assert!(table.contains(&a) && table.contains(&b), "{table}");
    // Nothing at all: a clear usage error, and no data directory appears.
    let out = gatehouse(home, &["approvals", "list"], Some(ALICE), None);
    fails(&out, 2, "pass --connect URL (or set GATEHOUSE_URL)");
    assert!(!home.join("xdg-data/gatehouse").exists());
    // A --data that does not exist is not created either; a --data wins over an exported
    // $GATEHOUSE_URL.
    let missing = home.join("no-such-dir");
    let out = gatehouse(
        home,
        &["approvals", "list", "--data", missing.to_str().unwrap()],
        None,
        Some(url),
    );
    fails(&out, 2, "no data directory at");
    assert!(!missing.exists());

    // The short id the console shows.
    let out = gatehouse(
        home,
        &["approvals", "show", &short(&a)],
        Some(ALICE),
        Some(url),
    );
    let shown: Value = serde_json::from_str(ok(&out)).unwrap();
    assert_eq!(shown["id"], a.as_str());
    fails(
        &gatehouse(home, &["approvals", "show", "zz99"], Some(ALICE), Some(url)),
        2,
        "is not an approval id",
    );

    // An empty (or blank) reason is refused before anything is sent.
    for reason in ["", "   "] {
        fails(
            &gatehouse(
                home,
                &["approvals", "deny", &short(&b), "--reason", reason],
                Some(ALICE),
                Some(url),
            ),
            2,
            "--reason is empty",
        );
    }
    let out = gatehouse(
        home,
        &["approvals", "deny", &short(&b), "--reason", "not now"],
        Some(ALICE),
        Some(url),
    );
    assert_eq!(ok(&out), format!("denied {b} (reboot) by alice\n"));
    let out = gatehouse(
        home,
        &["approvals", "approve", &short(&a)],
        Some(BOB),
        Some(url),
    );
    assert_eq!(ok(&out), format!("approved {a} (deploy) by bob\n"));
    // Decided already: the short id still finds it, and the daemon says why not.
    fails(
        &gatehouse(
            home,
            &["approvals", "approve", &short(&a)],
            Some(ALICE),
            Some(url),
        ),
        1,
        "HTTP 409",
    );

    // On the live daemon's data directory, the error says how to get in.
    let data = ws.data();
    let data = data.to_str().unwrap();
    fails(
        &gatehouse(home, &["approvals", "list", "--data", data], None, None),
        1,
        "pass --connect URL (or set GATEHOUSE_URL)",
    );
    fails(
        &gatehouse(home, &["audit", "verify", "--data", data], None, None),
        1,
        "gatehouse audit export --connect URL | gatehouse audit verify --file -",
    );

    // ... and that pipe works: `--file -` reads standard input.
    let export = gatehouse(home, &["audit", "export"], Some(ALICE), Some(url));
    let export = ok(&export).to_string();
    let mut verify = command()
        .args(["audit", "verify", "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = verify.stdin.take().unwrap();
    stdin.write_all(export.as_bytes()).unwrap();
    drop(stdin);
    let status = wait_bounded(&mut verify, PROCESS_TIMEOUT).expect("verify finishes");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut verify.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{out}");
    assert_eq!(out, "standard input: ok, 4 records, the chain is intact\n");
}

#[test]
fn runs_list_as_json_and_cancel_with_a_line() {
    let model = ModelServer::scripted(vec![Reply::tools(
        Some("Refunding."),
        &[call(
            "c1",
            "issue_refund",
            json!({"order_id": "R-1", "amount": 500}),
        )],
    )]);
    let ws = Workspace::new();
    ws.write_config(&format!(
        r#"{common}
[models.fake]
kind = "openai"
base_url = {base}
model = "test-model"
api_key_env = "PATH"

[[agents]]
name = "Support"
instructions = "Refund when asked."
model = "fake"
tools = ["issue_refund"]

[[tools]]
name = "issue_refund"
description = "Refund."
parameters = {{ type = "object", properties = {{ order_id = {{ type = "string" }}, amount = {{ type = "number" }} }}, required = ["order_id", "amount"] }}
kind = "command"
command = ["/bin/cat"]
needs_approval = "refunds"
"#,
        common = config_text(),
        base = toml_str(&model.base_url()),
    ));
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let d = ws.start();
    let url = d.url.as_str();

    let out = gatehouse(
        home,
        &["run", "Support", "Refund R-1"],
        Some(BOT),
        Some(url),
    );
    let line = ok(&out).lines().next().unwrap_or_default().to_string();
    let run_id = line
        .strip_prefix("run ")
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected {line:?}"))
        .to_string();

    let out = gatehouse(home, &["runs", "list", "--json"], Some(ALICE), Some(url));
    let listed: Value = serde_json::from_str(ok(&out)).unwrap();
    assert_eq!(listed["runs"][0]["run_id"], run_id.as_str(), "{listed}");
    assert!(listed.get("next").is_some(), "{listed}");

    let out = gatehouse(
        home,
        &["runs", "cancel", &short(&run_id)],
        Some(ALICE),
        Some(url),
    );
    assert_eq!(ok(&out), format!("cancelled {run_id} (Support)\n"));
}

/// Every positional argument and the options scripts use most carry help text.
#[test]
fn help_text_on_ids_reasons_queues_and_limits() {
    let home = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &[&str]); 7] = [
        (&["approvals", "show"], &["<ID>"]),
        (&["approvals", "approve"], &["<ID>", "--reason"]),
        (&["approvals", "deny"], &["<ID>", "--reason"]),
        (&["approvals", "escalate"], &["<ID>"]),
        (&["approvals", "list"], &["--queue", "--limit", "--connect"]),
        (&["runs", "cancel"], &["<ID>"]),
        (&["runs", "list"], &["--limit", "--json"]),
    ];
    for (cmd, args) in cases {
        let mut argv = cmd.to_vec();
        argv.push("--help");
        let out = gatehouse(home.path(), &argv, None, None);
        let help = ok(&out);
        let lines: Vec<&str> = help.lines().collect();
        for arg in args {
            let at = lines
                .iter()
                .position(|l| l.trim_start().starts_with(arg))
                .unwrap_or_else(|| panic!("{cmd:?}: no {arg} in\n{help}"));
            // `  <ID>  The approval's id…`, or clap's long layout with the text on the next,
            // deeper-indented line.
            let words: Vec<&str> = lines[at].split_whitespace().collect();
            let inline = words.len() > 2 || (words.len() == 2 && !words[1].starts_with('<'));
            let indent = |l: &str| l.len() - l.trim_start().len();
            let below = lines.get(at + 1).is_some_and(|next| {
                indent(next) > indent(lines[at]) && !next.trim_start().starts_with('-')
            });
            assert!(inline || below, "{cmd:?}: {arg} has no help text\n{help}");
        }
    }
}
