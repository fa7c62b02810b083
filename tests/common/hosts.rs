//! The hook hosts themselves (Claude Code, Gemini CLI, Codex), installed once from npm into
//! `target/npm/` at pinned versions, and helpers to run one against a stand-in model with
//! `gatehouse hook HOST` as its hook.

use super::*;
use std::process::Command;
use std::sync::OnceLock;

pub const CLAUDE_CODE: (&str, &str) = ("@anthropic-ai/claude-code", "2.1.332");
pub const GEMINI_CLI: (&str, &str) = ("@google/gemini-cli", "0.61.0");
pub const CODEX: (&str, &str) = ("@openai/codex", "0.171.0");

/// How long one host run may take (a first start of a host is slow on a loaded machine).
pub const HOST_TIMEOUT: Duration = Duration::from_secs(180);

/// The Claude Code executable (a native binary inside the npm package).
pub fn claude_bin() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| npm::install(CLAUDE_CODE.0, CLAUDE_CODE.1, "bin/claude.exe"))
        .clone()
}

/// The Gemini CLI script, run with `node`.
pub fn gemini_script() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| npm::install(GEMINI_CLI.0, GEMINI_CLI.1, "bundle/gemini.js"))
        .clone()
}

/// The Codex launcher script, run with `node`.
pub fn codex_script() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| npm::install(CODEX.0, CODEX.1, "bin/codex.js"))
        .clone()
}

/// A host command with nothing of this machine's environment that could reach a real
/// provider or a real gatehouse.
pub fn host_command(program: &Path, home: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("NO_PROXY", "*")
        .env("LANG", "C.UTF-8");
    c
}

/// `gatehouse hook HOST …` as a shell command line for a host's settings.
pub fn hook_command(host: &str, daemon_url: &str, extra: &str) -> String {
    format!("'{}' hook {host} --connect {daemon_url} {extra}", bin())
}

/// Run a host to its end (bounded), capturing its output.
pub fn run_host(cmd: Command) -> Finished {
    run_within(cmd, HOST_TIMEOUT, "the host")
}

/// Wait (bounded) for the one approval with this status; returns it.
pub async fn wait_approval(api: &Api, status: &str, limit: Duration) -> Value {
    waiting::approval_with_status(api, status, limit).await
}

/// Wait for the call the host waits on, decide it as alice (`verdict`, `reason`) and return it
/// as it was while pending.
pub async fn decide_waiting(api: &Api, verdict: &str, reason: Option<&str>) -> Value {
    let a = wait_approval(api, "pending", HOST_TIMEOUT).await;
    let id = a["id"].as_str().expect("an approval id");
    let r = api.decide(ALICE, id, verdict, reason).await;
    assert_eq!(r.status, 200, "{r:?}");
    a
}

/// The test config plus these TOML lines (policies for the hosts' tools).
pub fn hook_config(extra: &str) -> String {
    format!("{}\n{extra}\n", config_text())
}

/// A host's home and working directories, both temporary; each host's tests add how to start
/// the host in them.
pub struct Session {
    pub home: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

impl Session {
    pub fn new() -> Session {
        Session {
            home: tempfile::tempdir().expect("home"),
            work: tempfile::tempdir().expect("work dir"),
        }
    }

    /// The file the hosts' tool call creates when it is let through.
    pub fn marker(&self) -> std::path::PathBuf {
        self.work.path().join("marker.txt")
    }
}
