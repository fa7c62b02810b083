//! The command line (DESIGN §5) with the real binary: `approvals` against a running daemon
//! and on a local data directory, `config check`, and the exit codes 0/1/2.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// `gatehouse ARGS…` with `GATEHOUSE_TOKEN` set to `token` (unset for `None`).
fn gatehouse(args: &[&str], token: Option<&str>) -> Finished {
    let mut c = command();
    c.args(args);
    if let Some(t) = token {
        c.env("GATEHOUSE_TOKEN", t);
    }
    run(c)
}

#[track_caller]
fn ok(f: &Finished) -> &str {
    assert_eq!(f.code, Some(0), "{f:?}");
    &f.stdout
}

#[track_caller]
fn fails(f: &Finished, code: i32, needle: &str) {
    assert_eq!(f.code, Some(code), "{f:?}");
    assert!(f.stderr.contains(needle), "no {needle:?} in {f:?}");
    assert!(!f.stderr.contains("panicked"), "{f:?}");
}

fn id(a: &Value) -> String {
    a["id"].as_str().unwrap().to_string()
}

#[test]
fn approvals_against_a_running_daemon() {
    let ws = Workspace::new();
    let d = ws.start();
    let url = d.url.clone();
    let (refund, deploy, wipe, auto) = block_on(async {
        let api = d.api();
        let refund = api
            .submit_pending(
                BOT,
                "issue_refund",
                json!({"order_id": "C-1", "amount": 70}),
            )
            .await;
        let deploy = api
            .submit_pending(BOT, "deploy", json!({"env": "prod"}))
            .await;
        let wipe = api
            .submit_pending(BOT, "wipe_disk", json!({"disk": "sda"}))
            .await;
        let auto = api
            .submit(
                BOT,
                &json!({"tool": "issue_refund", "arguments": {"order_id": "C-2", "amount": 7}}),
            )
            .await;
        assert_eq!(auto.status, 200);
        (refund, deploy, wipe, auto.body)
    });
    let c = url.as_str();

    // list: the pending ones, as a table or JSON, filtered by status and queue.
    let out = gatehouse(&["approvals", "list", "--connect", c], Some(ALICE));
    let table = ok(&out);
    assert!(table.starts_with("ID"), "{table}");
    for a in [&refund, &deploy, &wipe] {
        assert!(table.contains(&id(a)), "{table}");
    }
    assert!(!table.contains(&id(&auto)), "{table}");
    let out = gatehouse(
        &["approvals", "list", "--connect", c, "--status", "approved"],
        Some(ALICE),
    );
    assert!(ok(&out).contains(&id(&auto)));
    let out = gatehouse(
        &[
            "approvals",
            "list",
            "--connect",
            c,
            "--queue",
            "primary",
            "--json",
        ],
        Some(ALICE),
    );
    let listed: Value = serde_json::from_str(ok(&out)).expect("--json prints JSON");
    assert_eq!(listed["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(listed["approvals"][0]["id"], refund["id"]);
    let out = gatehouse(
        &["approvals", "list", "--connect", c, "--status", "denied"],
        Some(ALICE),
    );
    assert_eq!(ok(&out).trim(), "no approvals");
    fails(
        &gatehouse(
            &["approvals", "list", "--connect", c, "--status", "bogus"],
            Some(ALICE),
        ),
        2,
        "--status",
    );

    // show: the approval as JSON.
    let out = gatehouse(
        &["approvals", "show", &id(&deploy), "--connect", c],
        Some(BOB),
    );
    let shown: Value = serde_json::from_str(ok(&out)).expect("show prints JSON");
    assert_eq!(shown, deploy);
    let unknown = uuid::Uuid::now_v7().to_string();
    fails(
        &gatehouse(&["approvals", "show", &unknown, "--connect", c], Some(BOB)),
        1,
        "HTTP 404",
    );

    // approve, then approve again: the second is refused with the decision that stands.
    let out = gatehouse(
        &["approvals", "approve", &id(&refund), "--connect", c],
        Some(ALICE),
    );
    assert_eq!(
        ok(&out),
        format!("approved {} (issue_refund) by alice\n", id(&refund))
    );
    let again = gatehouse(
        &["approvals", "approve", &id(&refund), "--connect", c],
        Some(BOB),
    );
    fails(&again, 1, "already approved");
    assert!(again.stderr.contains("by alice"), "{again:?}");
    fails(
        &gatehouse(
            &[
                "approvals",
                "deny",
                &id(&refund),
                "--connect",
                c,
                "--reason",
                "x",
            ],
            Some(BOB),
        ),
        1,
        "HTTP 409",
    );

    // deny needs a reason.
    fails(
        &gatehouse(
            &["approvals", "deny", &id(&deploy), "--connect", c],
            Some(ALICE),
        ),
        2,
        "--reason",
    );
    let out = gatehouse(
        &[
            "approvals",
            "deny",
            &id(&deploy),
            "--connect",
            c,
            "--reason",
            "change freeze",
        ],
        Some(ALICE),
    );
    assert_eq!(
        ok(&out),
        format!("denied {} (deploy) by alice\n", id(&deploy))
    );

    // Tokens: none is a usage error; another variable with --token-env; wrong ones fail.
    fails(
        &gatehouse(&["approvals", "list", "--connect", c], None),
        2,
        "GATEHOUSE_TOKEN",
    );
    fails(
        &gatehouse(&["approvals", "list", "--connect", c], Some("")),
        2,
        "GATEHOUSE_TOKEN",
    );
    fails(
        &gatehouse(
            &[
                "approvals",
                "list",
                "--connect",
                c,
                "--token-env",
                "BOB_TOKEN",
            ],
            Some(ALICE),
        ),
        2,
        "BOB_TOKEN",
    );
    fails(
        &gatehouse(&["approvals", "list", "--connect", c], Some("wrong")),
        1,
        "HTTP 401",
    );
    fails(
        &gatehouse(
            &["approvals", "approve", &id(&wipe), "--connect", c],
            Some(BOT),
        ),
        1,
        "HTTP 403",
    );
    fails(
        &gatehouse(
            &[
                "approvals",
                "approve",
                &id(&wipe),
                "--connect",
                c,
                "--arguments-sha256",
                &sha256_hex("{}"),
            ],
            Some(ALICE),
        ),
        1,
        "does not match",
    );
    let mut cmd = command();
    cmd.args([
        "approvals",
        "approve",
        &id(&wipe),
        "--connect",
        c,
        "--token-env",
        "BOB_TOKEN",
        "--reason",
        "backed up",
        "--arguments-sha256",
        wipe["arguments_sha256"].as_str().unwrap(),
    ])
    .env("BOB_TOKEN", BOB);
    let out = run(cmd);
    assert_eq!(
        ok(&out),
        format!("approved {} (wipe_disk) by bob\n", id(&wipe))
    );

    // Usage errors and unreachable daemons.
    fails(
        &gatehouse(&["approvals", "list", "--connect", "ftp://x"], Some(ALICE)),
        2,
        "--connect",
    );
    fails(&gatehouse(&["approvals", "frobnicate"], Some(ALICE)), 2, "");
    fails(
        &gatehouse(
            &["approvals", "list", "--connect", c, "--data", "/tmp/x"],
            Some(ALICE),
        ),
        2,
        "",
    );
    // A port that is bound but not listening: connections are refused, and no other test's
    // daemon can take the port meanwhile.
    let (_reserved, closed) = block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let url = format!("http://{}", s.local_addr().unwrap());
        (s, url)
    });
    // In words a person can act on, not reqwest's "error sending request for url".
    fails(
        &gatehouse(&["approvals", "list", "--connect", &closed], Some(ALICE)),
        1,
        &format!("cannot reach {closed}: connection refused"),
    );

    // What the CLI did is what the daemon holds.
    block_on(async {
        let api = d.api();
        let r = api.approval(&id(&refund)).await;
        assert_eq!(
            (r["status"].as_str(), r["decision"]["by"].as_str()),
            (Some("approved"), Some("alice"))
        );
        let r = api.approval(&id(&deploy)).await;
        assert_eq!(r["status"], "denied");
        assert_eq!(r["decision"]["reason"], "change freeze");
        let r = api.approval(&id(&wipe)).await;
        assert_eq!(r["decision"]["by"], "bob");
        assert_eq!(r["decision"]["reason"], "backed up");
        let audit = api.audit_all().await;
        assert_eq!(
            records_of(&audit, "approval.decided", &id(&refund)).len(),
            1
        );
        assert_chain(&audit);
    });
}

#[test]
fn approvals_on_a_local_data_directory() {
    let ws = Workspace::new();
    let mut d = ws.start();
    let (a, b, done) = block_on(async {
        let api = d.api();
        let a = api
            .submit_pending(BOT, "deploy", json!({"env": "prod"}))
            .await;
        let b = api
            .submit_pending(BOT2, "rotate_keys", json!({"kid": 7}))
            .await;
        let done = api
            .submit_pending(BOT, "reboot", json!({"host": "db1"}))
            .await;
        assert_eq!(
            api.decide(ALICE, &id(&done), "approve", None).await.status,
            200
        );
        (a, b, done)
    });
    let data = ws.data();
    let data = data.to_str().unwrap();

    // While the daemon runs, the data directory is its alone.
    fails(
        &gatehouse(&["approvals", "list", "--data", data], None),
        1,
        &format!("is in use by PID {}", d.pid),
    );
    assert!(d.stop().success(), "{}", d.stderr());

    let out = gatehouse(&["approvals", "list", "--data", data], None);
    let table = ok(&out);
    assert!(
        table.contains(&id(&a)) && table.contains(&id(&b)),
        "{table}"
    );
    assert!(!table.contains(&id(&done)), "{table}");
    let out = gatehouse(
        &[
            "approvals",
            "list",
            "--data",
            data,
            "--status",
            "all",
            "--json",
        ],
        None,
    );
    let listed: Value = serde_json::from_str(ok(&out)).unwrap();
    assert_eq!(listed["approvals"].as_array().unwrap().len(), 3);

    let out = gatehouse(
        &[
            "approvals",
            "approve",
            &id(&a),
            "--data",
            data,
            "--reviewer",
            "bob",
        ],
        None,
    );
    assert_eq!(ok(&out), format!("approved {} (deploy) by bob\n", id(&a)));
    fails(
        &gatehouse(
            &[
                "approvals",
                "approve",
                &id(&a),
                "--data",
                data,
                "--reviewer",
                "carol",
            ],
            None,
        ),
        1,
        "already approved",
    );
    let out = gatehouse(
        &[
            "approvals",
            "deny",
            &id(&b),
            "--data",
            data,
            "--reviewer",
            "bob",
            "--reason",
            "not now",
        ],
        None,
    );
    assert_eq!(
        ok(&out),
        format!("denied {} (rotate_keys) by bob\n", id(&b))
    );
    let out = gatehouse(&["approvals", "show", &id(&a), "--data", data], None);
    let shown: Value = serde_json::from_str(ok(&out)).unwrap();
    assert_eq!(shown["status"], "approved");
    assert_eq!(shown["decision"]["by"], "bob");
    fails(
        &gatehouse(&["approvals", "show", "nope", "--data", data], None),
        2,
        "\"nope\" is not an approval id",
    );
    let out = gatehouse(&["approvals", "list", "--data", data], None);
    assert_eq!(ok(&out).trim(), "no approvals");

    // The daemon, restarted, sees the local decisions; the log is one chain.
    let d = ws.start();
    block_on(async {
        let api = d.api();
        assert_eq!(api.approval(&id(&a)).await["decision"]["by"], "bob");
        let r = api.approval(&id(&b)).await;
        assert_eq!(r["status"], "denied");
        assert_eq!(r["decision"]["reason"], "not now");
        assert!(api.list_all("pending").await.is_empty());
        assert_chain(&api.audit_all().await);
    });
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid_configs")
}

#[test]
fn config_check_reports_problems_and_exit_codes() {
    let mut checked = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let rel = format!("tests/invalid_configs/{name}");
        let mut c = command();
        // The valid fixtures' token variable is set, as a reader's would be.
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("BOT_TOKEN", "bot-token")
            .args(["config", "check", "--config", &rel]);
        let out = run(c);
        if name.starts_with("valid_") {
            assert!(ok(&out).starts_with(&format!("{rel}: ok")), "{out:?}");
            continue;
        }
        assert_eq!(out.code, Some(2), "{name}: {out:?}");
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
        let problems: Vec<&str> = expected.lines().collect();
        assert!(
            out.stderr
                .contains(&format!("{} problem(s) in the config", problems.len())),
            "{name}: {out:?}"
        );
        // Each problem on its own line, with the file as given, its line and its key.
        for p in problems {
            let line = format!("tests/invalid_configs/{p}");
            assert!(
                out.stderr.lines().any(|l| l == line),
                "{name}: missing {line:?} in\n{}",
                out.stderr
            );
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} invalid configs");
    fails(
        &gatehouse(
            &["config", "check", "--config", "/nonexistent/gatehouse.toml"],
            None,
        ),
        2,
        "cannot read",
    );
    fails(&gatehouse(&["config", "check"], None), 2, "--config");

    // serve with a bad config is a usage error too, before touching the data directory.
    let ws = Workspace::new();
    ws.write_config("[server]\nlisten = 5\n");
    let out = serve_expecting_failure(&ws.config(), &ws.data());
    fails(&out, 2, "server.listen");
    assert!(
        !ws.data().exists(),
        "a bad config must not create the data directory"
    );
}

/// `audit export` from a running daemon, `audit verify` of the export, and of exports
/// tampered with in each way the chain must catch; then `audit verify --data`.
#[test]
fn audit_export_and_verify_catch_tampering() {
    let ws = Workspace::new();
    let mut d = ws.start();
    block_on(async {
        let api = d.api();
        for i in 0..4 {
            let a = api.submit_pending(BOT, "deploy", json!({"n": i})).await;
            if i % 2 == 0 {
                assert_eq!(
                    api.decide(ALICE, &id(&a), "deny", Some("no")).await.status,
                    200
                );
            }
        }
    });
    let url = d.url.clone();
    let export = gatehouse(&["audit", "export", "--connect", &url], Some(ALICE));
    let text = ok(&export).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        7,
        "6 records and the end-of-export line:\n{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let verify = |name: &str, content: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        gatehouse(&["audit", "verify", "--file", p.to_str().unwrap()], None)
    };
    assert!(ok(&verify("intact.jsonl", text.clone())).contains("ok, 6 records"));

    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[2] = edited[2].replacen("\"deploy\"", "\"Deploy\"", 1);
    fails(
        &verify("edited.jsonl", edited.join("\n")),
        1,
        "record seq 3 (line 3) was edited",
    );

    let mut removed: Vec<&str> = lines.clone();
    removed.remove(3);
    fails(
        &verify("removed.jsonl", removed.join("\n")),
        1,
        "record(s) 4..4 were removed",
    );

    let mut swapped: Vec<&str> = lines.clone();
    swapped.swap(1, 2);
    fails(
        &verify("swapped.jsonl", swapped.join("\n")),
        1,
        "records are out of order",
    );

    fails(
        &verify("truncated.jsonl", lines[..5].join("\n")),
        1,
        "the export is truncated: it ends after record seq 5",
    );

    d.stop();
    let data = ws.data();
    let f = gatehouse(&["audit", "verify", "--data", data.to_str().unwrap()], None);
    assert!(ok(&f).contains("ok, 6 records"), "{f:?}");
}

/// Output read by a pipe that closes early (`| head`) ends the command quietly, as it does any
/// Unix tool: by SIGPIPE, not a panic (exit 101) with a backtrace. The pipe's reading end is
/// closed before the command starts, so its first line already finds no reader.
#[test]
fn printing_into_a_closed_pipe_is_not_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = command()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("BOT_TOKEN", "bot-token")
        .args(["config", "check", "--config"])
        .arg(fixtures().join("valid_offline.toml"))
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
}
