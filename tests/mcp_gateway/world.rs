//! A daemon exposing the reference filesystem server, and waits on its approvals.

use super::client::DEADLINE;
use super::common::{Api, Daemon, Workspace, config_text, toml_str};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `filesystem` (trusted, exposed) in `files`: reads pass by policy, `write_file` asks.
pub fn gateway_config(files: &Path) -> String {
    format!(
        r#"{common}
[[mcp_servers]]
name = "filesystem"
command = "node"
args = [{script}, {files}]
trusted = true
expose = true
approval = "fs"
[mcp_servers.tools.write_file]
approval = "always"

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
        script = toml_str(super::common::npm::filesystem_server().to_str().unwrap()),
        files = toml_str(files.to_str().unwrap()),
    )
}

pub struct World {
    pub ws: Workspace,
    pub files: PathBuf,
    pub daemon: Daemon,
    pub api: Api,
}

pub fn world() -> World {
    let ws = Workspace::new();
    // Canonical: the filesystem server compares resolved paths.
    let files = ws.dir.path().join("files");
    fs::create_dir_all(&files).unwrap();
    let files = files.canonicalize().unwrap();
    ws.write_config(&gateway_config(&files));
    let daemon = ws.start();
    let api = daemon.api();
    World {
        ws,
        files,
        daemon,
        api,
    }
}

/// The first approval matching `want`, waited for.
pub async fn approval_where(api: &Api, status: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(a) = api.list_all(status).await.into_iter().find(&want) {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no {status} approval as wanted: {:#?}",
            api.list_all("all").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn pending_write(api: &Api, path: &Path) -> Value {
    let p = path.to_str().unwrap().to_owned();
    approval_where(api, "pending", move |a| {
        a["tool"] == "write_file" && a["arguments"]["path"] == p.as_str()
    })
    .await
}
