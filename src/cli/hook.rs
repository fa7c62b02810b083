//! `gatehouse hook HOST` (DESIGN §10): a host's pre-tool hook. Reads the hook JSON on stdin,
//! submits it, waits for the reviewer and prints the host's answer. Fails closed: every
//! failure exits 2 with the reason on stderr, which blocks the call in all four hosts.

use super::Failure;
use super::remote::{Remote, error_message};
use crate::hook::{HookCall, Host, Verdict, transcript};
use clap::Args;
use reqwest::Method;
use serde_json::Value;
use std::io::Read;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

#[derive(Args)]
pub struct HookArgs {
    /// The agent that runs this hook: claude-code, codex, gemini or cursor.
    pub host: String,
    /// The daemon's URL (default: $GATEHOUSE_URL).
    #[arg(long, env = "GATEHOUSE_URL")]
    pub connect: Option<String>,
    /// The environment variable holding this agent's token.
    #[arg(long, default_value = "GATEHOUSE_TOKEN")]
    pub token_env: String,
    /// How long to wait for a reviewer (under the hosts' 10-minute hook limit).
    #[arg(long, default_value = "9m30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The agent name to submit (default: the host's name).
    #[arg(long)]
    pub agent: Option<String>,
}

/// Hook input is one small JSON object; a bigger one is not a hook call.
const MAX_INPUT: u64 = 8 * 1024 * 1024;
/// Each long poll stays under the HTTP client's 30 s timeout.
const POLL: Duration = Duration::from_secs(25);
/// The approval outlives the hook's wait by this much, so that the hook's cancel, not the
/// clock, ends it (and says why); if the cancel cannot reach the daemon, expiry follows.
const GRACE: Duration = Duration::from_secs(5);
/// How long a cancel may take once the hook has given up.
const CANCEL_WITHIN: Duration = Duration::from_secs(5);

fn fail(m: impl Into<String>) -> Failure {
    // Exit 2 blocks the call in Claude Code, Codex, Gemini CLI and Cursor.
    Failure::usage(format!("{} — the action was not run", m.into()))
}

pub async fn hook(args: HookArgs) -> Result<(), Failure> {
    let host = Host::parse(&args.host).ok_or_else(|| {
        fail(format!(
            "unknown host {:?}: use claude-code, codex, gemini or cursor",
            args.host
        ))
    })?;
    if args.timeout.is_zero() {
        return Err(fail("--timeout must be more than zero"));
    }
    let url = args
        .connect
        .clone()
        .ok_or_else(|| fail("no daemon to ask: pass --connect URL or set GATEHOUSE_URL"))?;
    let remote = Remote::new(&url, &args.token_env).map_err(|f| fail(f.message))?;
    if !remote.has_token() {
        return Err(fail(format!(
            "${} is not set: the hook needs an agent token",
            args.token_env
        )));
    }
    let mut raw = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut raw)
        .map_err(|e| fail(format!("cannot read the hook input: {e}")))?;
    if raw.len() as u64 > MAX_INPUT {
        return Err(fail(format!("the hook input is over {MAX_INPUT} bytes")));
    }
    let input: Value = serde_json::from_slice(&raw)
        .map_err(|e| fail(format!("the hook input is not JSON: {e}")))?;
    let call = host
        .read(&input)
        .map_err(|e| fail(format!("{} hook input: {e}", host.name())))?;
    let reasoning = match (host, &call.transcript) {
        (Host::ClaudeCode, Some(p)) => {
            transcript::claude_code_reasoning(p, call.tool_use_id.as_deref())
        }
        (Host::Gemini, Some(p)) => transcript::gemini_reasoning(p),
        (Host::Codex, Some(p)) => transcript::codex_reasoning(p),
        _ => None,
    };
    let agent = args
        .agent
        .clone()
        .unwrap_or_else(|| host.name().to_string());
    let body = call.submission(&agent, reasoning, (args.timeout + GRACE).as_secs_f64());
    let deadline = Instant::now() + args.timeout;
    // Listening before submitting: a signal that comes during the submission is kept and
    // acted on (cancel) once the approval's id is known.
    let mut term = signal(SignalKind::terminate()).map_err(|e| fail(format!("signals: {e}")))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| fail(format!("signals: {e}")))?;

    let (status, approval) = remote
        .call(Method::POST, "/v1/approvals", Some(&body))
        .await
        .map_err(|f| fail(f.message))?;
    if !(status == 200 || status == 201) {
        return Err(fail(format!(
            "gatehouse refused the request ({status}): {}",
            error_message(&approval)
        )));
    }
    let id = approval
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("gatehouse answered an approval without an id"))?
        .to_string();

    let waited = tokio::select! {
        r = wait(&remote, &call, &id, approval, deadline) => r,
        _ = term.recv() => Err(Stop::Killed("SIGTERM")),
        _ = int.recv() => Err(Stop::Killed("SIGINT")),
    };
    let verdict = match waited {
        Ok(v) => v,
        Err(stop) => {
            // Nobody will run this call now: no reviewer may approve it into the void.
            let cancelled = cancel(&remote, &id).await;
            let why = match stop {
                Stop::TimedOut => format!(
                    "timed out: no reviewer decided within {}",
                    humantime::format_duration(args.timeout)
                ),
                Stop::Killed(sig) => format!("the hook was stopped ({sig})"),
                Stop::Failed(m) => m,
            };
            let note = match cancelled {
                Ok(()) => format!("approval {id} cancelled"),
                Err(e) => format!("approval {id} not cancelled: {e}"),
            };
            return Err(fail(format!("{why} ({note})")));
        }
    };
    if let Some(answer) = host.answer(&call, &verdict) {
        println!("{answer}");
    }
    Ok(())
}

enum Stop {
    TimedOut,
    Killed(&'static str),
    Failed(String),
}

async fn wait(
    remote: &Remote,
    call: &HookCall,
    id: &str,
    mut approval: Value,
    deadline: Instant,
) -> Result<Verdict, Stop> {
    loop {
        if let Some(v) = Verdict::of_approval(call, &approval) {
            return Ok(v);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Stop::TimedOut);
        }
        let secs = left.min(POLL).as_secs_f64();
        let (status, next) = remote
            .call(
                Method::GET,
                &format!("/v1/approvals/{id}?wait={secs:.1}"),
                None,
            )
            .await
            .map_err(|f| Stop::Failed(f.message))?;
        if status != 200 {
            return Err(Stop::Failed(format!(
                "waiting for approval {id} ({status}): {}",
                error_message(&next)
            )));
        }
        approval = next;
    }
}

async fn cancel(remote: &Remote, id: &str) -> Result<(), String> {
    let path = format!("/v1/approvals/{id}/cancel");
    let empty = serde_json::json!({});
    let call = remote.call(Method::POST, &path, Some(&empty));
    match tokio::time::timeout(CANCEL_WITHIN, call).await {
        Err(_) => Err("the daemon did not answer".into()),
        Ok(Err(f)) => Err(f.message),
        // Decided meanwhile (409): the call still does not run, which is what matters.
        Ok(Ok((200 | 409, _))) => Ok(()),
        Ok(Ok((s, v))) => Err(format!("{s}: {}", error_message(&v))),
    }
}
