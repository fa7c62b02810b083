//! Shared helpers for the integration tests: the real `gatehouse` binary, spawned as a daemon
//! on 127.0.0.1 with an ephemeral port and a real data directory in a temp dir, and a small
//! HTTP client for its API. No mocks anywhere.

#![allow(dead_code)]

pub mod model_server;
pub mod postgres;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Reviewer, plain token in the config.
pub const ALICE: &str = "alice-token";
/// Reviewer, token stored as `sha256:HEX` in the config.
pub const BOB: &str = "bob-token";
/// Agent `billing-bot`.
pub const BOT: &str = "bot-token";
/// Agent `other-bot`.
pub const BOT2: &str = "bot2-token";
/// `carol` holds both the agent and the reviewer role.
pub const CAROL: &str = "carol-token";
/// Admin `root`.
pub const ROOT: &str = "root-token";

/// How long a daemon may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long any child process may run before a test gives up on it.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gatehouse")
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The test config: identities for every role and the seed's refund policy
/// (`args.amount < 50` is approved at once, anything else asks in queue `primary`).
pub fn config_text() -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[identities]]
name = "alice"
roles = ["reviewer"]
token = "{ALICE}"

[[identities]]
name = "bob"
roles = ["reviewer"]
token = "sha256:{bob}"

[[identities]]
name = "billing-bot"
roles = ["agent"]
token = "{BOT}"

[[identities]]
name = "other-bot"
roles = ["agent"]
token = "{BOT2}"

[[identities]]
name = "carol"
roles = ["agent", "reviewer"]
token = "{CAROL}"

[[identities]]
name = "root"
roles = ["admin"]
token = "{ROOT}"

[[policies]]
name = "refunds"
tools = ["issue_refund"]
[[policies.rules]]
when = "args.amount < 50"
action = "approve"
[[policies.rules]]
action = "ask"
queue = "primary"
timeout = "30m"
"#,
        bob = sha256_hex(BOB)
    )
}

/// A command for the binary with no ambient gatehouse settings leaking in.
pub fn command() -> Command {
    let mut c = Command::new(bin());
    for var in [
        "GATEHOUSE_CONFIG",
        "GATEHOUSE_DATA",
        "GATEHOUSE_URL",
        "GATEHOUSE_TOKEN",
        "RUST_LOG",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        c.env_remove(var);
    }
    c.env("NO_PROXY", "*");
    c
}

/// Where a test keeps its config file and data directory.
pub struct Workspace {
    pub dir: TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        let ws = Workspace {
            dir: tempfile::tempdir().expect("a temp dir"),
        };
        ws.write_config(&config_text());
        ws
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config(), text).expect("write config");
    }

    /// `gatehouse serve` on this workspace's config and data directory.
    pub fn start(&self) -> Daemon {
        Daemon::start(&self.config(), &self.data())
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

/// A running `gatehouse serve`; killed (SIGKILL) on drop.
pub struct Daemon {
    child: Option<Child>,
    pub url: String,
    pub pid: u32,
    stderr: Arc<Mutex<String>>,
    stderr_done: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Spawn `serve` and wait (bounded) for `listening on http://…` on its stderr.
    pub fn start(config: &Path, data: &Path) -> Daemon {
        Daemon::start_with_env(config, data, &[])
    }

    /// [`Daemon::start`] with extra environment variables (e.g. a database URL).
    pub fn start_with_env(config: &Path, data: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = command()
            .envs(env.iter().copied())
            .args(["serve", "--config"])
            .arg(config)
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gatehouse serve");
        let pid = child.id();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let pipe = child.stderr.take().expect("piped stderr");
        let log = stderr.clone();
        // Keep draining stderr for the daemon's whole life, so its logging never blocks.
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut line = String::new();
            let mut sent = false;
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                log.lock().unwrap().push_str(&line);
                if !sent && let Some(rest) = line.trim().strip_prefix("listening on ") {
                    let _ = tx.send(rest.to_string());
                    sent = true;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let url = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(url) => break url,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    let _ = reader.join();
                    panic!(
                        "gatehouse serve ended before listening ({status:?}):\n{}",
                        stderr.lock().unwrap()
                    );
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                let _ = reader.join();
                panic!(
                    "gatehouse serve exited before listening ({status}):\n{}",
                    stderr.lock().unwrap()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gatehouse serve did not listen within {START_TIMEOUT:?}:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "unexpected listening line {url:?}"
        );
        Daemon {
            child: Some(child),
            url,
            pid,
            stderr,
            stderr_done: Some(reader),
        }
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url)
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.stderr_done.take() {
            let _ = r.join();
        }
    }

    /// SIGTERM, and wait (bounded) for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("daemon still running");
        // SAFETY: a plain kill(2) on our own child's PID, which has not been reaped yet.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = wait_bounded(&mut c, PROCESS_TIMEOUT);
        if let Some(r) = self.stderr_done.take() {
            let _ = r.join();
        }
        status.unwrap_or_else(|| panic!("gatehouse serve ignored SIGTERM:\n{}", self.stderr()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let status = self.child.as_mut().map(|c| c.try_wait());
            eprintln!(
                "--- gatehouse serve (pid {}, {}, exit status {status:?}) stderr ---\n{}",
                self.pid,
                self.url,
                self.stderr()
            );
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait for a child at most `limit`; on timeout kill it and return `None`.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let status = waiting::exits_within(child, limit);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Run a prepared command to its end (bounded by [`PROCESS_TIMEOUT`]), capturing its output.
pub fn run(cmd: Command) -> Finished {
    run_within(cmd, PROCESS_TIMEOUT, "gatehouse")
}

/// Run a prepared command (`what`, for messages) to its end within `limit`, capturing its
/// output.
pub fn run_within(mut cmd: Command, limit: Duration, what: &str) -> Finished {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let drain = |mut p: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = p.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = wait_bounded(&mut child, limit);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!("{what} did not finish within {limit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    Finished {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// `gatehouse serve` that is expected to refuse to start: its exit code and stderr.
pub fn serve_expecting_failure(config: &Path, data: &Path) -> Finished {
    let mut c = command();
    c.args(["serve", "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0"]);
    run(c)
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// Assert the status and the `{"error": {"code", "message"}}` shape; returns the code.
    #[track_caller]
    pub fn expect_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "unexpected answer: {self:?}");
        let err = self
            .body
            .get("error")
            .unwrap_or_else(|| panic!("no error object in {}", self.body));
        let code = err["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error.code is not a string in {}", self.body));
        let message = err["message"]
            .as_str()
            .unwrap_or_else(|| panic!("error.message is not a string in {}", self.body));
        assert!(!code.is_empty() && !message.is_empty(), "{}", self.body);
        code.to_string()
    }

    #[track_caller]
    pub fn message(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[track_caller]
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {self:?}"))
            .to_string()
    }
}

/// A client of the daemon's HTTP API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(20))
                // The daemon closes idle keep-alive connections after its header timeout (1 s
                // in some tests); never reuse one that may be closing under our feet.
                .pool_idle_timeout(Duration::from_millis(500))
                .build()
                .expect("an HTTP client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub async fn send(&self, r: reqwest::RequestBuilder) -> Resp {
        self.try_send(r).await.expect("the daemon answers")
    }

    pub async fn try_send(&self, r: reqwest::RequestBuilder) -> Result<Resp, reqwest::Error> {
        let resp = r.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, token: Option<&str>, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::GET, token, path))
            .await
    }

    pub async fn post(&self, token: Option<&str>, path: &str, body: &Value) -> Resp {
        self.send(self.request(reqwest::Method::POST, token, path).json(body))
            .await
    }

    /// POST raw bytes with the given `Content-Type` (none when `None`).
    pub async fn post_raw(
        &self,
        token: Option<&str>,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Resp {
        let mut r = self.request(reqwest::Method::POST, token, path);
        if let Some(ct) = content_type {
            r = r.header(reqwest::header::CONTENT_TYPE, ct);
        }
        self.send(r.body(body)).await
    }

    pub async fn submit(&self, token: &str, body: &Value) -> Resp {
        self.post(Some(token), "/v1/approvals", body).await
    }

    /// Submit a call no policy decides; asserts 201 and returns the approval.
    pub async fn submit_pending(&self, token: &str, tool: &str, args: Value) -> Value {
        let r = self
            .submit(token, &json!({"tool": tool, "arguments": args}))
            .await;
        assert_eq!(r.status, 201, "submit: {r:?}");
        assert_eq!(r.body["status"], "pending", "{r:?}");
        r.body
    }

    pub async fn decide(
        &self,
        token: &str,
        id: &str,
        decision: &str,
        reason: Option<&str>,
    ) -> Resp {
        let mut body = json!({"decision": decision});
        if let Some(r) = reason {
            body["reason"] = json!(r);
        }
        self.post(Some(token), &format!("/v1/approvals/{id}/decision"), &body)
            .await
    }

    /// The approval as a reviewer sees it.
    pub async fn approval(&self, id: &str) -> Value {
        let r = self.get(Some(ALICE), &format!("/v1/approvals/{id}")).await;
        assert_eq!(r.status, 200, "get {id}: {r:?}");
        r.body
    }

    /// Every approval with the given status filter (`all` for every status), across pages.
    pub async fn list_all(&self, status: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..100 {
            let mut path = format!("/v1/approvals?status={status}&limit=1000");
            if let Some(a) = &after {
                path.push_str(&format!("&after={a}"));
            }
            let r = self.get(Some(ALICE), &path).await;
            assert_eq!(r.status, 200, "list: {r:?}");
            out.extend(r.body["approvals"].as_array().expect("approvals").clone());
            match r.body["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => return out,
            }
        }
        panic!("more than 100 pages of approvals");
    }

    /// The whole audit log, across pages.
    pub async fn audit_all(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0u64;
        for _ in 0..1000 {
            let r = self
                .get(Some(ALICE), &format!("/v1/audit?after={after}&limit=1000"))
                .await;
            assert_eq!(r.status, 200, "audit: {r:?}");
            out.extend(r.body["records"].as_array().expect("records").clone());
            match r.body["next"].as_u64() {
                Some(n) => after = n,
                None => return out,
            }
        }
        panic!("more than 1000 pages of audit records");
    }
}

/// Records of one kind about one approval.
pub fn records_of<'a>(records: &'a [Value], kind: &str, id: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["kind"] == kind && r["approval_id"] == id)
        .collect()
}

/// Assert the audit log is one unbroken hash chain: seqs 1, 2, 3, …, each `prev_hash` the
/// previous `hash`, and each `hash` the record's own (recomputed with the library's code).
#[track_caller]
pub fn assert_chain(records: &[Value]) {
    let mut prev = gatehouse::domain::GENESIS_HASH.to_string();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"].as_u64(), Some(i as u64 + 1), "seq gap at {r}");
        assert_eq!(
            r["prev_hash"].as_str(),
            Some(prev.as_str()),
            "broken link at {r}"
        );
        let typed: gatehouse::domain::AuditRecord =
            serde_json::from_value(r.clone()).expect("an audit record");
        assert_eq!(typed.compute_hash(), typed.hash, "hash mismatch at {r}");
        prev = typed.hash;
    }
}

/// Run a future to completion on a fresh single-threaded runtime (for plain `#[test]`s).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}
pub mod host_models;
pub mod hosts;
pub mod npm;
pub mod pip;
pub mod sse;
pub mod waiting;
pub mod webhook;

/// A TOML basic string (JSON string escapes are valid TOML escapes).
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}
