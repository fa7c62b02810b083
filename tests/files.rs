//! Files (DESIGN §9): the data directory is 0700 and its files 0600 whatever the umask, with
//! the real binary under umask 022; an older directory is tightened when opened; and the tools
//! gatehouse starts get the umask gatehouse was started with, not its private one.
//!
//! The umask is process-wide, so every test here sets the same 022 before spawning.

mod common;

use common::model_server::{ModelServer, Reply, call};
use common::*;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn umask_022() {
    // SAFETY: umask(2) swaps the process's file mode mask and cannot fail.
    unsafe {
        libc::umask(0o022);
    }
}

/// Every entry under `dir` (itself included) whose mode is not 0700 (directories) or 0600
/// (files), as `path mode`.
fn loose(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mode = std::fs::symlink_metadata(dir).unwrap().permissions().mode() & 0o777;
    if mode != 0o700 {
        out.push(format!("{} {mode:o}", dir.display()));
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(loose(&entry.path()));
        } else {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            if mode != 0o600 {
                out.push(format!("{} {mode:o}", entry.path().display()));
            }
        }
    }
    out
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test]
async fn the_data_directory_is_private_under_umask_022() {
    umask_022();
    let ws = Workspace::new();
    let mut d = ws.start();
    let api = d.api();
    // Enough writes, and one value large enough for sled to put in a blob file of its own.
    for n in 0..50 {
        api.submit_pending(BOT, "transfer", json!({"n": n})).await;
    }
    let big = "x".repeat(200_000);
    api.submit_pending(BOT, "transfer", json!({"note": big}))
        .await;
    assert!(loose(&ws.data()).is_empty(), "{:?}", loose(&ws.data()));
    assert!(d.stop().success());
    let data = ws.data();
    assert!(count_files(&data) >= 3, "too few files to mean anything");
    assert_eq!(loose(&data), Vec::<String>::new());
}

#[tokio::test]
async fn an_older_world_readable_directory_is_tightened_on_open() {
    umask_022();
    let ws = Workspace::new();
    let mut d = ws.start();
    d.api()
        .submit_pending(BOT, "transfer", json!({"n": 1}))
        .await;
    assert!(d.stop().success());
    // As an older gatehouse left it.
    fn loosen(p: &Path) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let mode = if e.file_type().unwrap().is_dir() {
                loosen(&e.path());
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    loosen(&ws.data());
    assert!(!loose(&ws.data()).is_empty());
    let mut d = ws.start();
    assert_eq!(loose(&ws.data()), Vec::<String>::new());
    // Served (so its signal handler is in place) before it is asked to stop.
    assert_eq!(d.api().get(None, "/healthz").await.status, 200);
    assert!(d.stop().success());
}

#[tokio::test]
async fn a_command_tool_gets_the_umask_gatehouse_was_started_with() {
    umask_022();
    let model = ModelServer::scripted(vec![
        Reply::tools(None, &[call("c1", "show_umask", json!({}))]),
        Reply::text("done"),
    ]);
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
instructions = "Show the umask."
model = "fake"
tools = ["show_umask"]

[[tools]]
name = "show_umask"
description = "Print the umask."
parameters = {{ type = "object", properties = {{}} }}
kind = "command"
command = ["/bin/sh", "-c", "echo umask=$(umask)"]
needs_approval = false
"#,
        common = config_text(),
        base = toml_str(&model.base_url()),
    ));
    let d = ws.start();
    let api = d.api();
    let r = api
        .post(
            Some(BOT),
            "/v1/runs",
            &json!({"agent": "Support", "input": "go"}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.body["run_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    loop {
        let run = api
            .get(Some(ALICE), &format!("/v1/runs/{id}?wait=1&status=running"))
            .await;
        if run.body["status"] == "completed" {
            break;
        }
        assert_ne!(run.body["status"], "failed", "{run:?}");
        assert!(Instant::now() < deadline, "run not completed: {run:?}");
    }
    let requests = model.wait_requests(2, Duration::from_secs(10));
    let told: Value = requests[1]["messages"].clone();
    assert!(
        told.to_string().contains("umask=0022"),
        "the tool should have run under umask 022: {told}"
    );
}
