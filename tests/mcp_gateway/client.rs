//! The Python MCP SDK as a test client: installed once into `target/py-mcp`, driven line by
//! line through `mcp_client.py`.

use serde_json::{Value, json};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long anything here may take on a loaded machine.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// The Python SDK, pinned so the tests see the same client each run.
const PY_MCP: &str = "mcp==1.30.0";

/// `target/py-mcp/`, with the SDK installed (once, under a lock, like `target/npm/`).
pub fn py_mcp() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = tmp.parent().unwrap_or(tmp).join("py-mcp");
        let lock_path = tmp.parent().unwrap_or(tmp).join("py-mcp.lock");
        let lock = File::create(&lock_path).expect("create target/py-mcp.lock");
        lock.lock().expect("lock target/py-mcp.lock");
        let marker = dir.join(format!("installed-{PY_MCP}"));
        if marker.exists() {
            return dir;
        }
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--target")
            .arg(&dir)
            .arg(PY_MCP)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run pip (needed for the MCP gateway tests): {e}"));
        assert!(
            dir.join("mcp").exists(),
            "pip install {PY_MCP} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        fs::write(&marker, "").expect("write the install marker");
        dir
    })
    .clone()
}

/// The Python client, driven line by line (see `mcp_client.py`).
pub struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Value>,
    /// Every event seen so far, for failure messages.
    seen: Vec<Value>,
    /// Events no `expect` has taken yet.
    backlog: Vec<Value>,
}

impl Client {
    pub fn http(url: &str, token: &str) -> Client {
        Client::start(&format!("{url}/mcp"), token)
    }

    /// Through `gatehouse mcp --connect URL`, launched by the SDK's stdio client.
    pub fn stdio(url: &str, token: &str) -> Client {
        let argv = json!([super::common::bin(), "mcp", "--connect", url]);
        Client::start(&format!("stdio:{argv}"), token)
    }

    pub fn start(target: &str, token: &str) -> Client {
        let dir = tempfile::tempdir().expect("a temp dir").keep();
        let script = dir.join("mcp_client.py");
        fs::write(&script, include_str!("mcp_client.py")).expect("write the client");
        let mut child = Command::new("python3")
            .arg(&script)
            .args([target, token])
            .env("PYTHONPATH", py_mcp())
            .env("NO_PROXY", "*")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v =
                    serde_json::from_str(&line).unwrap_or(json!({"event": "text", "line": line}));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut c = Client {
            child,
            stdin,
            events,
            seen: Vec::new(),
            backlog: Vec::new(),
        };
        let init = c.expect(|e| e["event"] == "initialized");
        assert_eq!(init["server"], "gatehouse", "{init}");
        assert_eq!(init["list_changed"], true, "{init}");
        c
    }

    pub fn send(&mut self, command: Value) {
        let stdin = self.stdin.as_mut().expect("client stdin open");
        writeln!(stdin, "{command}").expect("write to the client");
        stdin.flush().expect("flush the client's stdin");
    }

    /// The first event matching `want`, in arrival order. Events that did not match an
    /// earlier `expect` count too: a notification may arrive before the result it follows.
    pub fn expect(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&want) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => {
                    self.seen.push(e.clone());
                    if want(&e) {
                        return e;
                    }
                    assert_ne!(e["event"], "fatal", "the client failed: {:#?}", self.seen);
                    self.backlog.push(e);
                }
                Err(_) => panic!(
                    "no expected event within {DEADLINE:?}; seen: {:#?}",
                    self.seen
                ),
            }
        }
    }

    pub fn list(&mut self) -> Vec<Value> {
        self.send(json!({"op": "list"}));
        let e = self.expect(|e| e["event"] == "tools");
        e["tools"].as_array().cloned().unwrap_or_default()
    }

    pub fn call(&mut self, tag: &str, tool: &str, args: Value, progress: bool) {
        self.send(
            json!({"op": "call", "tag": tag, "tool": tool, "args": args, "progress": progress}),
        );
        self.expect(|e| e["event"] == "sent" && e["tag"] == tag);
    }

    /// How the call tagged `tag` ended: a result, or an error.
    pub fn outcome(&mut self, tag: &str) -> Value {
        self.expect(|e| e["tag"] == tag && (e["event"] == "result" || e["event"] == "error"))
    }

    pub fn exit(mut self) {
        self.send(json!({"op": "exit"}));
        self.stdin = None;
        let status = super::common::wait_bounded(&mut self.child, DEADLINE);
        assert!(
            status.is_some_and(|s| s.success()),
            "client exit {status:?}: {:#?}",
            self.seen
        );
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
