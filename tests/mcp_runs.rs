//! MCP servers behind the gate, end to end: `gatehouse serve` with the reference filesystem
//! MCP server (`@modelcontextprotocol/server-filesystem`, a pinned version installed by
//! tests/common/npm.rs into target/) and the stand-in chat model (tests/common/model_server.rs)
//! asking for its tools. No gatehouse part is mocked; every wait is bounded.

mod common;

use common::model_server::{ModelServer, Reply, call};
use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// Two views of the same folder: `filesystem` is trusted (its annotations count) with
/// `write_file` always asking; `fs_untrusted` is not; plus `broken`, whose program is missing.
fn config(dir: &Path, files: &Path, model: &ModelServer) -> String {
    let script = common::npm::filesystem_server();
    let server = |name: &str, trusted: bool| {
        format!(
            "[[mcp_servers]]\nname = \"{name}\"\ncommand = \"node\"\nargs = [{}, {}]\ntrusted = {trusted}\napproval = \"fs\"\n",
            toml_str(script.to_str().unwrap()),
            toml_str(files.to_str().unwrap())
        )
    };
    format!(
        r#"{common}
[models.fake]
kind = "openai"
base_url = {base}
model = "test-model"
api_key_env = "PATH"
timeout = "10s"

[[agents]]
name = "Files"
model = "fake"
mcp_servers = ["filesystem", "fs_untrusted", "broken"]
max_turns = 4

{trusted}
[mcp_servers.tools.write_file]
approval = "always"

{untrusted}
[[mcp_servers]]
name = "broken"
command = {missing}

[[policies]]
name = "fs"
[[policies.rules]]
when = "tool.read_only && !tool.destructive"
action = "approve"
reason = "read-only tools of trusted servers need no reviewer"
[[policies.rules]]
action = "ask"
queue = "files"
"#,
        common = config_text(),
        base = toml_str(&model.base_url()),
        trusted = server("filesystem", true),
        untrusted = server("fs_untrusted", false),
        missing = toml_str(dir.join("no-such-mcp-server").to_str().unwrap()),
    )
}

struct World {
    /// Keeps the temporary directory (config, data, files) alive.
    _ws: Workspace,
    files: std::path::PathBuf,
    model: ModelServer,
    _daemon: Daemon,
    api: Api,
}

/// A daemon whose filesystem servers are ready, and a model that answers with `first`, then
/// "Done." to everything after.
async fn world(first: impl Fn(&Path) -> Reply + Send + 'static) -> World {
    let ws = Workspace::new();
    let files = ws.dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let f = files.clone();
    let model = ModelServer::start(move |n, _req| {
        if n == 0 {
            first(&f)
        } else {
            Reply::text("Done.")
        }
    });
    ws.write_config(&config(ws.dir.path(), &files, &model));
    let daemon = ws.start();
    let api = daemon.api();
    let w = World {
        _ws: ws,
        files,
        model,
        _daemon: daemon,
        api,
    };
    for name in ["filesystem", "fs_untrusted"] {
        w.wait_server(name, |s| s["state"] == "ready").await;
    }
    w
}

impl World {
    async fn servers(&self) -> Vec<Value> {
        let r = self.api.get(Some(ALICE), "/v1/servers").await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body["servers"].as_array().cloned().unwrap_or_default()
    }

    async fn wait_server(&self, name: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let all = self.servers().await;
            if let Some(s) = all.iter().find(|s| s["name"] == name)
                && ok(s)
            {
                return s.clone();
            }
            assert!(Instant::now() < deadline, "server {name}: {all:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn start_run(&self, input: &str) -> String {
        let r = self
            .api
            .post(
                Some(BOT),
                "/v1/runs",
                &json!({"agent": "Files", "input": input}),
            )
            .await;
        assert_eq!(r.status, 202, "{r:?}");
        r.body["run_id"].as_str().unwrap().to_string()
    }

    async fn wait_run(&self, id: &str, want: &[&str]) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let r = self
                .api
                .get(Some(ALICE), &format!("/v1/runs/{id}?wait=1"))
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            if want.iter().any(|w| r.body["status"] == *w) {
                return r.body;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} not {want:?}: {:#}",
                r.body
            );
        }
    }

    /// The tool messages the model was sent in its `n`-th request.
    fn tool_messages(&self, n: usize) -> Vec<Value> {
        let reqs = self.model.wait_requests(n + 1, DEADLINE);
        reqs[n]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "tool")
            .cloned()
            .collect()
    }
}

fn write_call(files: &Path) -> Reply {
    let path = files.join("report.txt");
    Reply::tools(
        Some("Saving the report the user asked for."),
        &[call(
            "c1",
            "filesystem__write_file",
            json!({"path": path.to_str().unwrap(), "content": "quarterly numbers"}),
        )],
    )
}

#[tokio::test]
async fn a_write_waits_for_a_reviewer_and_approval_writes_the_file() {
    let w = world(write_call).await;
    let id = w.start_run("Save the report").await;
    let run = w.wait_run(&id, &["pending_approval"]).await;
    let tools: Vec<String> = w.model.wait_requests(1, DEADLINE)[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        tools.contains(&"filesystem__write_file".to_string()),
        "{tools:?}"
    );
    assert!(
        tools.contains(&"fs_untrusted__read_text_file".to_string()),
        "{tools:?}"
    );
    let approval = w.api.approval(run["pending"][0].as_str().unwrap()).await;
    assert_eq!(approval["server"], "filesystem", "{approval:#}");
    assert_eq!(approval["tool"], "write_file", "{approval:#}");
    assert_eq!(
        approval["reasoning"],
        "Saving the report the user asked for."
    );
    let target = w.files.join("report.txt");
    assert!(!target.exists(), "nothing is written before the decision");
    let r = w
        .api
        .post(
            Some(ALICE),
            &format!(
                "/v1/approvals/{}/decision",
                approval["id"].as_str().unwrap()
            ),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let done = w.wait_run(&id, &["completed"]).await;
    assert_eq!(done["output"], "Done.");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "quarterly numbers"
    );
    let results = w.tool_messages(1);
    assert_eq!(results.len(), 1);
    assert!(
        !results[0]["content"].as_str().unwrap().contains("rror"),
        "{results:?}"
    );
}

#[tokio::test]
async fn a_denied_write_leaves_nothing_and_the_model_gets_the_reason() {
    let w = world(write_call).await;
    let id = w.start_run("Save the report").await;
    let run = w.wait_run(&id, &["pending_approval"]).await;
    let approval_id = run["pending"][0].as_str().unwrap().to_string();
    let r = w
        .api
        .post(
            Some(ALICE),
            &format!("/v1/approvals/{approval_id}/decision"),
            &json!({"decision": "deny", "reason": "no writes during the freeze"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    w.wait_run(&id, &["completed"]).await;
    assert!(!w.files.join("report.txt").exists());
    let results = w.tool_messages(1);
    assert_eq!(
        results[0]["content"],
        "The reviewer denied this action: no writes during the freeze"
    );
    assert_eq!(results[0]["tool_call_id"], "c1");
}

fn read_call(server: &'static str) -> impl Fn(&Path) -> Reply {
    move |files: &Path| {
        std::fs::write(files.join("notes.txt"), "remember the milk").unwrap();
        Reply::tools(
            None,
            &[call(
                "r1",
                &format!("{server}__read_text_file"),
                json!({"path": files.join("notes.txt").to_str().unwrap()}),
            )],
        )
    }
}

#[tokio::test]
async fn a_read_only_tool_of_a_trusted_server_needs_no_reviewer() {
    let w = world(read_call("filesystem")).await;
    let id = w.start_run("What do my notes say?").await;
    let done = w.wait_run(&id, &["completed", "pending_approval"]).await;
    assert_eq!(done["status"], "completed", "{done:#}");
    let results = w.tool_messages(1);
    assert!(
        results[0]["content"]
            .as_str()
            .unwrap()
            .contains("remember the milk"),
        "{results:?}"
    );
    let decided = w.api.list_all("all").await;
    let a = decided
        .iter()
        .find(|a| a["run_id"] == id.as_str())
        .expect("the auto-approval is recorded");
    assert_eq!(a["status"], "approved");
    assert_eq!(a["decision"]["by"], "policy:fs");
    assert_eq!(a["server"], "filesystem");
}

#[tokio::test]
async fn the_same_read_on_an_untrusted_server_asks() {
    let w = world(read_call("fs_untrusted")).await;
    let id = w.start_run("What do my notes say?").await;
    let run = w.wait_run(&id, &["pending_approval", "completed"]).await;
    assert_eq!(run["status"], "pending_approval", "{run:#}");
    let a = w.api.approval(run["pending"][0].as_str().unwrap()).await;
    assert_eq!(
        (a["server"].as_str(), a["tool"].as_str()),
        (Some("fs_untrusted"), Some("read_text_file"))
    );
    assert_eq!(a["queue"], "files");
}

#[tokio::test]
async fn a_server_that_cannot_start_is_a_clear_error_in_the_run() {
    let w = world(|_| Reply::tools(None, &[call("b1", "broken__anything", json!({}))])).await;
    let broken = w
        .wait_server("broken", |s| {
            s["state"].as_str().unwrap_or("").starts_with("failed")
        })
        .await;
    assert!(
        broken["state"]
            .as_str()
            .unwrap()
            .contains("no-such-mcp-server"),
        "{broken:#}"
    );
    let id = w.start_run("Use the broken server").await;
    w.wait_run(&id, &["completed"]).await;
    let results = w.tool_messages(1);
    let text = results[0]["content"].as_str().unwrap();
    // Failed, or already retrying: either way a clear error, never a silent success.
    assert!(
        text.contains("MCP server broken is failed")
            || text.contains("MCP server broken is restarting"),
        "{text}"
    );
    // The daemon is unharmed: the other servers still answer.
    w.wait_server("filesystem", |s| s["state"] == "ready").await;
}

#[tokio::test]
async fn a_killed_server_is_restarted_and_the_run_gets_an_answer() {
    let w = world(write_call).await;
    let before = w.wait_server("filesystem", |s| s["pid"].is_u64()).await;
    let pid = before["pid"].as_u64().unwrap() as i32;
    let id = w.start_run("Save the report").await;
    let run = w.wait_run(&id, &["pending_approval"]).await;
    // The server dies while the run waits for its reviewer.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let after = w
        .wait_server("filesystem", |s| {
            s["restarts"].as_u64() >= Some(1) && s["state"] == "ready"
        })
        .await;
    assert_ne!(after["pid"], before["pid"], "a new process");
    let approval_id = run["pending"][0].as_str().unwrap();
    let r = w
        .api
        .post(
            Some(ALICE),
            &format!("/v1/approvals/{approval_id}/decision"),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    w.wait_run(&id, &["completed"]).await;
    assert_eq!(
        std::fs::read_to_string(w.files.join("report.txt")).unwrap(),
        "quarterly numbers",
        "the restarted server ran the approved call"
    );
    let metrics = w.api.get(Some(ALICE), "/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("gatehouse_mcp_server_restarts_total{server=\"filesystem\"} 1"),
        "{text}"
    );
}
