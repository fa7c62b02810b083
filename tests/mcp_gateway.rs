//! The MCP gateway end to end (DESIGN §11): the real `gatehouse serve` exposing the reference
//! filesystem server (`@modelcontextprotocol/server-filesystem`, from npm) at `/mcp`, and a
//! real MCP client, the official Python SDK (`mcp` from PyPI, installed into `target/py-mcp`)
//! over streamable HTTP and, through `gatehouse mcp`, over stdio.

#[path = "mcp_gateway/client.rs"]
mod client;
mod common;
#[path = "mcp_gateway/world.rs"]
mod world;

use client::{Client, DEADLINE, py_mcp};
use common::model_server::{ModelServer, Reply};
use common::{ALICE, BOT, BOT2, Daemon, Workspace, config_text, toml_str};
use serde_json::{Value, json};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use world::{approval_where, gateway_config, pending_write, world};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_listed_and_every_call_is_gated() {
    let w = world();
    let mut c = Client::http(&w.daemon.url, BOT);

    // Listed under SERVER__TOOL, with schema and (trusted) annotations as the server sent them.
    let tools = c.list();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for name in [
        "filesystem__write_file",
        "filesystem__read_text_file",
        "filesystem__list_directory",
    ] {
        assert!(names.contains(&name), "{names:?}");
    }
    let read = tools
        .iter()
        .find(|t| t["name"] == "filesystem__read_text_file")
        .unwrap();
    assert_eq!(read["annotations"]["readOnlyHint"], true, "{read}");
    assert_eq!(
        read["inputSchema"]["properties"]["path"]["type"], "string",
        "{read}"
    );

    // A trusted read-only tool passes by policy, its result returned unchanged.
    let notes = w.files.join("notes.txt");
    fs::write(&notes, "line one\nline two").unwrap();
    c.call(
        "read",
        "filesystem__read_text_file",
        json!({"path": notes}),
        false,
    );
    let r = c.outcome("read");
    assert_eq!(r["event"], "result", "{r}");
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["text"], "line one\nline two", "{r}");
    let read_approval = approval_where(&w.api, "approved", |a| a["tool"] == "read_text_file").await;
    assert_eq!(
        read_approval["decision"]["by"], "policy:fs",
        "{read_approval}"
    );

    // A write waits for a reviewer (the client told it waits), and approval writes the file.
    let report = w.files.join("report.txt");
    c.call(
        "write",
        "filesystem__write_file",
        json!({"path": report, "content": "approved"}),
        true,
    );
    let a = pending_write(&w.api, &report).await;
    assert_eq!(a["requested_by"], "billing-bot", "{a}");
    assert_eq!(a["agent"], "billing-bot", "{a}");
    assert_eq!(a["server"], "filesystem", "{a}");
    assert_eq!(a["server_verified"], true, "{a}");
    // `approval = "always"` asks in the first tier's queue (here: `default`), no policy.
    assert_eq!(a["queue"], "default", "{a}");
    assert_eq!(a["context"]["via"], "mcp", "{a}");
    assert!(
        a["context"]["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("mcp ")),
        "{a}"
    );
    let session = a["run_id"].as_str().expect("the MCP session id").to_owned();
    assert_eq!(
        read_approval["run_id"],
        session.as_str(),
        "one session, one run id"
    );
    let progress = c.expect(|e| e["event"] == "progress" && e["tag"] == "write");
    assert!(
        progress["message"]
            .as_str()
            .unwrap()
            .contains("waiting for a reviewer"),
        "{progress}"
    );
    assert!(!report.exists(), "written before approval");
    let write_id = a["id"].as_str().unwrap().to_owned();
    let d = w
        .api
        .decide(ALICE, &write_id, "approve", Some("fine"))
        .await;
    assert_eq!(d.status, 200, "{d:?}");
    let r = c.outcome("write");
    assert_eq!(r["event"], "result", "{r}");
    assert_eq!(r["isError"], false, "{r}");
    assert!(
        r["text"].as_str().unwrap().contains("Successfully wrote"),
        "{r}"
    );
    assert_eq!(fs::read_to_string(&report).unwrap(), "approved");

    // Denied: nothing written, and the client reads the reviewer's reason.
    let secret = w.files.join("secret.txt");
    c.call(
        "deny",
        "filesystem__write_file",
        json!({"path": secret, "content": "no"}),
        false,
    );
    let a = pending_write(&w.api, &secret).await;
    let d = w
        .api
        .decide(
            ALICE,
            a["id"].as_str().unwrap(),
            "deny",
            Some("not in this folder"),
        )
        .await;
    assert_eq!(d.status, 200, "{d:?}");
    let r = c.outcome("deny");
    assert_eq!(r["event"], "result", "{r}");
    assert_eq!(r["isError"], true, "{r}");
    assert_eq!(
        r["text"], "The reviewer denied this action: not in this folder",
        "{r}"
    );
    assert!(!secret.exists(), "a denied write ran");

    // `A` grants write_file for the rest of this MCP session: the next write runs at once.
    let first = w.files.join("first.txt");
    c.call(
        "g1",
        "filesystem__write_file",
        json!({"path": first, "content": "1"}),
        false,
    );
    let a = pending_write(&w.api, &first).await;
    let body = json!({"decision": "approve", "scope": "run"});
    let d = w
        .api
        .post(
            Some(ALICE),
            &format!("/v1/approvals/{}/decision", a["id"].as_str().unwrap()),
            &body,
        )
        .await;
    assert_eq!(d.status, 200, "{d:?}");
    assert_eq!(c.outcome("g1")["isError"], false);
    let second = w.files.join("second.txt");
    c.call(
        "g2",
        "filesystem__write_file",
        json!({"path": second, "content": "2"}),
        false,
    );
    let r = c.outcome("g2");
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(fs::read_to_string(&second).unwrap(), "2");
    // ... but not for another identity's session.
    let mut other = Client::http(&w.daemon.url, BOT2);
    let third = w.files.join("third.txt");
    other.call(
        "o",
        "filesystem__write_file",
        json!({"path": third, "content": "3"}),
        false,
    );
    pending_write(&w.api, &third).await;
    assert!(!third.exists());
    drop(other);

    // Arguments the tool cannot take go back to the client; no reviewer is asked.
    let before = w.api.list_all("all").await.len();
    c.call("bad", "filesystem__write_file", json!({"path": 5}), false);
    let r = c.outcome("bad");
    assert_eq!(r["isError"], true, "{r}");
    assert!(r["text"].as_str().unwrap().contains("not run"), "{r}");
    assert_eq!(w.api.list_all("all").await.len(), before);
    // An unknown tool is a protocol error.
    c.call("nope", "filesystem__no_such_tool", json!({}), false);
    let r = c.outcome("nope");
    assert_eq!(r["event"], "error", "{r}");
    c.exit();

    // Every call is in the audit log.
    let audit = w.api.audit_all().await;
    common::assert_chain(&audit);
    let created = audit
        .iter()
        .filter(|r| r["kind"] == "approval.created")
        .count();
    assert!(created >= 4, "{audit:#?}");
    // ... and so is what an approved call returned.
    let executed = audit
        .iter()
        .find(|r| r["kind"] == "tool.executed" && r["details"]["approval_id"] == write_id.as_str())
        .unwrap_or_else(|| panic!("no tool.executed for {write_id}: {audit:#?}"));
    assert_eq!(executed["details"]["ok"], true, "{executed}");
    assert_eq!(
        executed["details"]["session"],
        session.as_str(),
        "{executed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_or_dropped_call_withdraws_its_approval() {
    let w = world();
    let mut c = Client::http(&w.daemon.url, BOT);
    let one = w.files.join("one.txt");
    c.call(
        "one",
        "filesystem__write_file",
        json!({"path": one, "content": "1"}),
        false,
    );
    let a = pending_write(&w.api, &one).await;
    c.send(json!({"op": "cancel", "tag": "one"}));
    c.expect(|e| e["event"] == "cancel_sent");
    let id = a["id"].as_str().unwrap().to_owned();
    let cancelled = approval_where(&w.api, "cancelled", |x| x["id"] == id.as_str()).await;
    assert_eq!(cancelled["decision"]["by"], "billing-bot", "{cancelled}");
    // A reviewer can no longer approve what nobody waits for.
    let d = w.api.decide(ALICE, &id, "approve", None).await;
    assert_eq!(d.status, 409, "{d:?}");

    // A client that dies mid-call (its connection drops) withdraws it too.
    let two = w.files.join("two.txt");
    c.call(
        "two",
        "filesystem__write_file",
        json!({"path": two, "content": "2"}),
        false,
    );
    let a = pending_write(&w.api, &two).await;
    drop(c); // SIGKILL: no cancellation, no session end; only the connection closes.
    let id = a["id"].as_str().unwrap().to_owned();
    approval_where(&w.api, "cancelled", |x| x["id"] == id.as_str()).await;
    assert!(!one.exists() && !two.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_bridge_relays_calls_and_decisions() {
    let w = world();
    let mut c = Client::stdio(&w.daemon.url, BOT);
    let tools = c.list();
    assert!(
        tools.iter().any(|t| t["name"] == "filesystem__write_file"),
        "{tools:?}"
    );
    let out = w.files.join("bridged.txt");
    c.call(
        "w",
        "filesystem__write_file",
        json!({"path": out, "content": "via stdio"}),
        true,
    );
    let a = pending_write(&w.api, &out).await;
    w.api
        .decide(ALICE, a["id"].as_str().unwrap(), "approve", None)
        .await;
    let r = c.outcome("w");
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(fs::read_to_string(&out).unwrap(), "via stdio");
    let no = w.files.join("refused.txt");
    c.call(
        "d",
        "filesystem__write_file",
        json!({"path": no, "content": "x"}),
        false,
    );
    let a = pending_write(&w.api, &no).await;
    w.api
        .decide(ALICE, a["id"].as_str().unwrap(), "deny", Some("no"))
        .await;
    let r = c.outcome("d");
    assert_eq!(r["text"], "The reviewer denied this action: no", "{r}");
    assert!(!no.exists());
    c.exit();

    // A bad token is refused with a clear message, not a hang.
    let mut cmd = common::command();
    cmd.args(["mcp", "--connect", &w.daemon.url])
        .env("GATEHOUSE_TOKEN", "wrong");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{init}").unwrap();
    drop(stdin);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["id"], 0, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("401"),
        "{answer}"
    );
    assert!(common::wait_bounded(&mut child, DEADLINE).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_a_call_waits_never_reports_success_nor_runs_it_later() {
    let mut w = world();
    // The stdio bridge answers a request the daemon dropped with an error at once; the
    // Python SDK's own HTTP transport waits out the client's timeout (as its users set one).
    let mut bridged = Client::stdio(&w.daemon.url, BOT);
    let mut direct = Client::http(&w.daemon.url, BOT);
    let one = w.files.join("bridged.txt");
    let two = w.files.join("direct.txt");
    bridged.call(
        "w",
        "filesystem__write_file",
        json!({"path": one, "content": "x"}),
        false,
    );
    let timeout = json!({"op": "call", "tag": "w", "tool": "filesystem__write_file",
        "args": {"path": two, "content": "y"}, "timeout": 15});
    direct.send(timeout);
    let a1 = pending_write(&w.api, &one).await;
    let a2 = pending_write(&w.api, &two).await;
    w.daemon.kill();
    let e = bridged.outcome("w");
    assert_eq!(e["event"], "error", "{e}");
    assert!(e["message"].as_str().unwrap().contains("gatehouse"), "{e}");
    let e = direct.outcome("w");
    assert_eq!(
        e["event"], "error",
        "the client was told a killed call ended: {e}"
    );
    // After the restart nobody waits for those calls: they are withdrawn, never run.
    let daemon = Daemon::start(&w.ws.config(), &w.ws.data());
    let api = daemon.api();
    for a in [a1, a2] {
        let id = a["id"].as_str().unwrap().to_owned();
        let withdrawn = approval_where(&api, "cancelled", |x| x["id"] == id.as_str()).await;
        assert_eq!(withdrawn["decision"]["by"], "billing-bot", "{withdrawn}");
        assert_eq!(api.decide(ALICE, &id, "approve", None).await.status, 409);
    }
    assert!(
        !one.exists() && !two.exists(),
        "a call ran after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_agents_reach_mcp_and_both_protocol_revisions_work() {
    let w = world();
    let init = |version: &str| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}})
    };
    let post = |token: Option<&str>, body: &Value| {
        let r = w
            .api
            .request(reqwest::Method::POST, token, "/mcp")
            .header("accept", "application/json, text/event-stream")
            .json(body);
        w.api.send(r)
    };
    assert_eq!(post(None, &init("2025-06-18")).await.status, 401);
    let r = post(Some(ALICE), &init("2025-06-18")).await;
    assert_eq!(r.status, 403, "a reviewer is not an agent: {r:?}");
    let evil = w
        .api
        .request(reqwest::Method::POST, Some(BOT), "/mcp")
        .header("origin", "https://evil.example")
        .header("accept", "application/json, text/event-stream")
        .json(&init("2025-06-18"));
    assert_eq!(w.api.send(evil).await.status, 403);
    for version in ["2025-06-18", "2025-11-25"] {
        let r = post(Some(BOT), &init(version)).await;
        assert_eq!(r.status, 200, "{r:?}");
        let text = r
            .body
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| r.body.to_string());
        let data = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|d| !d.is_empty())
            .map(str::to_owned)
            .unwrap_or(text);
        let v: Value = serde_json::from_str(&data).unwrap_or_else(|_| panic!("{data}"));
        assert_eq!(v["result"]["protocolVersion"], version, "{v}");
        assert!(r.headers.get("mcp-session-id").is_some(), "{r:?}");
    }

    // A session belongs to the identity that opened it: another agent's token cannot use it.
    let r = post(Some(BOT), &init("2025-06-18")).await;
    let session = r.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let in_session = |token: &str, body: Value| {
        let r = w
            .api
            .request(reqwest::Method::POST, Some(token), "/mcp")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body);
        w.api.send(r)
    };
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(in_session(BOT, initialized).await.status, 202);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let theirs = in_session(BOT2, list.clone()).await;
    let text = theirs.body.to_string();
    assert!(text.contains("belongs to another identity"), "{theirs:?}");
    assert!(!text.contains("write_file"), "{theirs:?}");
    let mine = in_session(BOT, list).await;
    assert!(
        mine.body.to_string().contains("filesystem__write_file"),
        "{mine:?}"
    );
}

/// The start-up race: a run started at once after `serve` listens is offered the MCP
/// server's tools (before, its first turn saw none while the server was starting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_at_once_sees_the_mcp_tools() {
    let ws = Workspace::new();
    let files = ws.dir.path().join("files");
    fs::create_dir_all(&files).unwrap();
    let model = ModelServer::scripted(vec![Reply::text("Done.")]);
    let config = format!(
        "{}\n[models.fake]\nkind = \"openai\"\nbase_url = {}\nmodel = \"m\"\napi_key_env = \"PATH\"\n\n[[agents]]\nname = \"Files\"\nmodel = \"fake\"\nmcp_servers = [\"filesystem\"]\n",
        gateway_config(&files),
        toml_str(&model.base_url())
    );
    ws.write_config(&config);
    let daemon = ws.start();
    let api = daemon.api();
    let r = api
        .post(
            Some(BOT),
            "/v1/runs",
            &json!({"agent": "Files", "input": "list"}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let first = &model.wait_requests(1, DEADLINE)[0];
    let tools: Vec<&str> = first["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["function"]["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        tools.contains(&"filesystem__write_file"),
        "first turn offered {tools:?}"
    );
    // And the gateway's first tools/list, too.
    let mut c = Client::http(&daemon.url, BOT);
    assert!(
        c.list()
            .iter()
            .any(|t| t["name"] == "filesystem__read_text_file")
    );
}

/// An upstream server's `tools/list_changed` reaches the gateway's clients, and the new tool
/// is listed and callable. The upstream is the Python SDK's FastMCP over stdio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_changed_is_passed_on() {
    let ws = Workspace::new();
    let script = ws.dir.path().join("shifting.py");
    fs::write(&script, include_str!("mcp_gateway/shifting_server.py")).unwrap();
    let config = format!(
        "{}\n[[mcp_servers]]\nname = \"shifting\"\ncommand = \"python3\"\nargs = [{}]\nenv = {{ PYTHONPATH = {} }}\nexpose = true\napproval = \"never\"\n",
        config_text(),
        toml_str(script.to_str().unwrap()),
        toml_str(py_mcp().to_str().unwrap()),
    );
    ws.write_config(&config);
    let daemon = ws.start();
    let mut c = Client::http(&daemon.url, BOT);
    let before = c.list();
    assert!(
        before.iter().any(|t| t["name"] == "shifting__add_tool"),
        "{before:?}"
    );
    assert!(
        !before.iter().any(|t| t["name"] == "shifting__surprise"),
        "{before:?}"
    );
    c.call(
        "add",
        "shifting__add_tool",
        json!({"name": "surprise"}),
        false,
    );
    let r = c.outcome("add");
    assert_eq!(r["isError"], false, "{r}");
    c.expect(|e| e["event"] == "notification" && e["method"] == "notifications/tools/list_changed");
    let after = c.list();
    assert!(
        after.iter().any(|t| t["name"] == "shifting__surprise"),
        "{after:?}"
    );
    c.call("new", "shifting__surprise", json!({}), false);
    let r = c.outcome("new");
    assert_eq!(r["text"], "extra", "{r}");
    // `approval = "never"` still records each call, decided at once.
    let api = daemon.api();
    approval_where(&api, "approved", |a| a["tool"] == "surprise").await;
    c.exit();
}
