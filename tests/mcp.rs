//! MCP client end to end: the real `@modelcontextprotocol/server-filesystem` (from npm, run
//! with node) behind `gatehouse::tools::mcp::McpServers`, plus servers that cannot start.

mod common;

use common::{npm, waiting};
use gatehouse::config::McpServerConfig;
use gatehouse::tools::ToolOutput;
use gatehouse::tools::mcp::{McpOptions, McpServerState, McpServerStatus, McpServers};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use toml::Spanned;

/// Starting node and the server takes well under a second; leave room for a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

fn config(name: &str, command: &str, args: Vec<String>) -> McpServerConfig {
    McpServerConfig {
        name: Spanned::new(0..0, name.to_owned()),
        command: Some(command.to_owned()),
        args,
        env: BTreeMap::new(),
        url: None,
        approval: None,
        trusted: false,
        expose: false,
        tools: BTreeMap::new(),
    }
}

/// The filesystem server, allowed to work in `dir` only.
fn filesystem(name: &str, dir: &Path) -> McpServerConfig {
    let script = npm::filesystem_server();
    config(
        name,
        "node",
        vec![script.display().to_string(), dir.display().to_string()],
    )
}

fn args(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn status_of(servers: &McpServers, name: &str) -> McpServerStatus {
    servers
        .status()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no server {name:?} in {:?}", servers.status()))
}

/// Wait (on change notifications) until `name`'s status satisfies `ok`.
async fn wait_for_status(
    servers: &McpServers,
    name: &str,
    limit: Duration,
    ok: impl Fn(&McpServerStatus) -> bool,
) -> McpServerStatus {
    let mut changes = servers.changes();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let status = status_of(servers, name);
        if ok(&status) {
            return status;
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            panic!("server {name:?} never reached the expected state; last: {status:?}");
        }
    }
}

fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; no pointers.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_server_lists_tools_and_runs_calls() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The server resolves symlinks (macOS: /var → /private/var); give it the real path.
    let root = dir.path().canonicalize().expect("canonical temp dir");
    let servers = McpServers::start(&[filesystem("fs", &root)]);
    servers.ready(READY_TIMEOUT).await;

    let status = status_of(&servers, "fs");
    assert_eq!(status.state, McpServerState::Ready, "{status:?}");
    assert!(status.pid.is_some(), "{status:?}");
    assert_eq!(status.restarts, 0);

    let tools = servers.tools("fs");
    assert_eq!(status.tools, tools.len());
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    for expected in [
        "write_file",
        "read_file",
        "read_text_file",
        "list_directory",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let read = tools
        .iter()
        .find(|t| t.name == "read_text_file")
        .expect("read_text_file");
    assert_eq!(read.read_only_hint, Some(true));
    assert!(!read.description.is_empty());
    assert_eq!(read.input_schema["type"], "object");
    assert!(read.input_schema["properties"]["path"].is_object());
    // The server is not `trusted`: its hints do not count.
    assert!(!read.annotations(false).read_only);
    assert!(read.annotations(true).read_only);
    assert_eq!(
        servers.annotations("fs", "read_text_file"),
        Some(read.annotations(false))
    );

    // Write through the server, check the disk, read it back through the server.
    let file = root.join("note.txt");
    let out = servers
        .call(
            "fs",
            "write_file",
            args(json!({"path": file, "content": "hello from gatehouse"})),
        )
        .await;
    assert!(out.is_ok(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&file).expect("written file"),
        "hello from gatehouse"
    );
    let out = servers
        .call("fs", "read_text_file", args(json!({"path": file})))
        .await;
    assert_eq!(out, ToolOutput::Ok("hello from gatehouse".into()));

    // The tool's own error (outside the allowed directory) is an Error naming the server.
    let out = servers
        .call("fs", "read_text_file", args(json!({"path": "/etc/passwd"})))
        .await;
    eprintln!("{out:?}");
    assert!(!out.is_ok(), "{out:?}");
    assert!(
        out.text()
            .starts_with("mcp server \"fs\": tool \"read_text_file\""),
        "{out:?}"
    );
    assert!(!out.text().contains('\n'), "{out:?}");

    let out = servers.call("fs", "no_such_tool", Map::new()).await;
    eprintln!("{out:?}");
    assert!(!out.is_ok(), "{out:?}");
    assert!(out.text().starts_with("mcp server \"fs\""), "{out:?}");

    let out = servers.call("nowhere", "read_text_file", Map::new()).await;
    assert_eq!(
        out,
        ToolOutput::Error("mcp server \"nowhere\" is not configured".into())
    );

    let pid = status.pid.expect("pid");
    servers.shutdown().await;
    assert_eq!(status_of(&servers, "fs").state, McpServerState::Stopped);
    assert!(
        !process_alive(pid),
        "server process {pid} survived shutdown"
    );
    let out = servers
        .call("fs", "read_text_file", args(json!({"path": file})))
        .await;
    assert_eq!(
        out,
        ToolOutput::Error("mcp server \"fs\" is stopped".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_is_restarted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().canonicalize().expect("canonical temp dir");
    let servers = McpServers::start(&[filesystem("fs", &root)]);
    servers.ready(READY_TIMEOUT).await;
    let before = status_of(&servers, "fs");
    assert_eq!(before.state, McpServerState::Ready, "{before:?}");
    let pid = before.pid.expect("pid");

    // SAFETY: kill(2) on the server's own process; no pointers.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);

    // The death is noticed without any call.
    let failed = wait_for_status(&servers, "fs", READY_TIMEOUT, |s| {
        matches!(s.state, McpServerState::Failed { .. })
    })
    .await;
    let McpServerState::Failed { error } = &failed.state else {
        unreachable!()
    };
    assert!(error.contains("exited"), "{error}");
    assert_eq!(failed.pid, None);
    assert_eq!(
        failed.tools, before.tools,
        "tools are kept while restarting"
    );

    // A call now either fails clearly or, if the restart won the race, works.
    let file = root.join("a.txt");
    std::fs::write(&file, "still here").expect("write");
    let out = servers
        .call("fs", "read_text_file", args(json!({"path": file})))
        .await;
    match &out {
        ToolOutput::Ok(text) => assert_eq!(text, "still here"),
        ToolOutput::Error(e) => assert!(
            e.starts_with("mcp server \"fs\" is not running (the server exited")
                || e.starts_with("mcp server \"fs\" exited during the call"),
            "{e}"
        ),
        other => panic!("unexpected {other:?}"),
    }

    let after = wait_for_status(&servers, "fs", READY_TIMEOUT, |s| {
        s.state == McpServerState::Ready
    })
    .await;
    assert_eq!(after.restarts, 1, "{after:?}");
    assert!(after.pid.is_some() && after.pid != Some(pid), "{after:?}");
    let out = servers
        .call("fs", "read_text_file", args(json!({"path": file})))
        .await;
    assert_eq!(out, ToolOutput::Ok("still here".into()));
    servers.shutdown().await;
}

#[tokio::test]
async fn servers_that_cannot_start_fail_clearly_and_are_retried() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = McpOptions {
        start_timeout: Duration::from_secs(1),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..McpOptions::default()
    };
    let missing = dir.path().join("no-such-mcp-server");
    let started = Instant::now();
    let servers = McpServers::start_with(
        &[
            config("missing", &missing.display().to_string(), vec![]),
            // Runs, but never answers the handshake.
            config("silent", "sleep", vec!["30".into()]),
            // Answers nothing on stdout and exits at once, with a reason on stderr.
            config(
                "crashing",
                "sh",
                vec!["-c".into(), "echo 'bad database url' >&2; exit 3".into()],
            ),
            McpServerConfig {
                url: Some("http://127.0.0.1:9/mcp".into()),
                command: None,
                ..config("unreachable", "", vec![])
            },
        ],
        options,
    );
    assert!(started.elapsed() < Duration::from_secs(1), "start blocks");
    servers.ready(Duration::from_secs(30)).await;

    let error_of = async |name: &str| {
        let status = wait_for_status(&servers, name, Duration::from_secs(30), |s| {
            matches!(s.state, McpServerState::Failed { .. })
        })
        .await;
        let McpServerState::Failed { error } = status.state else {
            unreachable!()
        };
        eprintln!("{name}: {error}");
        error
    };

    let e = error_of("missing").await;
    assert!(e.starts_with("cannot start \""), "{e}");
    assert!(e.contains("No such file"), "{e}");
    let e = error_of("silent").await;
    assert_eq!(e, "did not start within 1s");
    let e = error_of("crashing").await;
    assert_eq!(
        e,
        "initialisation failed: the server closed the connection \
         (last stderr line: bad database url)"
    );
    let e = error_of("unreachable").await;
    assert!(!e.is_empty() && !e.contains('\n'), "{e}");

    let out = servers.call("missing", "anything", Map::new()).await;
    assert!(
        out.text()
            .starts_with("mcp server \"missing\" is not running (cannot start"),
        "{out:?}"
    );
    assert!(!out.is_ok());

    // Retried with backoff.
    let s = wait_for_status(&servers, "missing", Duration::from_secs(30), |s| {
        s.restarts >= 3
    })
    .await;
    assert_eq!(s.tools, 0);
    servers.shutdown().await;
    for s in servers.status() {
        assert_eq!(s.state, McpServerState::Stopped, "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_takes_too_long_times_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().canonicalize().expect("canonical temp dir");
    // No real call answers within a millisecond; reading 32 MiB takes the server far longer
    // (an empty directory's listing once came back in time on a loaded machine).
    let big = root.join("big.txt");
    std::fs::write(&big, "x".repeat(32 << 20)).expect("write a big file");
    let options = McpOptions {
        call_timeout: Duration::from_millis(1),
        ..McpOptions::default()
    };
    let servers = McpServers::start_with(&[filesystem("fs", &root)], options);
    servers.ready(READY_TIMEOUT).await;
    let before = status_of(&servers, "fs");
    assert_eq!(before.state, McpServerState::Ready, "{before:?}");

    let out = servers
        .call("fs", "read_text_file", args(json!({"path": big})))
        .await;
    assert_eq!(
        out,
        ToolOutput::Error(
            "mcp server \"fs\": tool \"read_text_file\" did not answer within 1ms".into()
        )
    );
    // A slow call is not a dead server.
    assert_eq!(status_of(&servers, "fs"), before);

    // Dropping the last handle without shutdown() stops the server too.
    let pid = before.pid.expect("pid");
    drop(servers);
    assert!(
        waiting::process_exits_within(pid as i32, Duration::from_secs(15)).await,
        "server {pid} outlived its McpServers"
    );
}
