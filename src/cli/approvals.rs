//! `gatehouse approvals list | show ID | approve ID | deny ID --reason R`,
//! against a daemon (`--connect URL`) or a data directory directly (`--data DIR`).

use super::remote::{Remote, error_message};
use super::serve::{Local, start_local_hinted};
use super::short_id::{self, Among};
use super::{CommonArgs, Failure};
use crate::domain::{self, Approval, ApprovalStatus, Verdict};
use crate::runner::{DecideRequest, ListQuery, RunnerError};
use crate::text::{escape, json_for_terminal};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum Action {
    /// List approvals (pending by default).
    List {
        #[command(flatten)]
        target: Target,
        /// pending, approved, denied, expired, cancelled or all.
        #[arg(long, default_value = "pending")]
        status: String,
        /// Only approvals in this queue (an [[escalation]] or rule queue, or `default`).
        #[arg(long)]
        queue: Option<String>,
        /// At most this many approvals, oldest first (1 to 1000 against a daemon).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one approval as JSON.
    Show {
        /// The approval's id, or the short id the console shows (its last 8 hex digits;
        /// any unambiguous tail of 4 or more).
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Approve an approval.
    Approve {
        /// The approval's id, or the short id the console shows (its last 8 hex digits;
        /// any unambiguous tail of 4 or more).
        id: String,
        #[command(flatten)]
        target: Target,
        /// Why it is approved (recorded in the approval and the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Refuse unless the approval's arguments have this SHA-256 (what you reviewed).
        #[arg(long)]
        arguments_sha256: Option<String>,
    },
    /// Move an approval to the next escalation tier now.
    Escalate {
        /// The approval's id, or the short id the console shows (its last 8 hex digits;
        /// any unambiguous tail of 4 or more).
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Deny an approval with a reason the agent is told.
    Deny {
        /// The approval's id, or the short id the console shows (its last 8 hex digits;
        /// any unambiguous tail of 4 or more).
        id: String,
        #[command(flatten)]
        target: Target,
        /// Why it is denied: the agent is told this reason, so it can adjust (required).
        #[arg(long)]
        reason: String,
        /// Refuse unless the approval's arguments have this SHA-256 (what you reviewed).
        #[arg(long)]
        arguments_sha256: Option<String>,
    },
}

#[derive(Args, Clone)]
pub struct Target {
    /// URL of a running daemon, e.g. http://127.0.0.1:7878 (default: $GATEHOUSE_URL, unless
    /// --data is given). Without one, a data directory is read: --data DIR, else the default
    /// one if it exists.
    #[arg(long, conflicts_with = "data")]
    pub connect: Option<String>,
    /// Environment variable holding the bearer token (a reviewer's to decide; an agent's to
    /// start runs).
    #[arg(long, default_value = "GATEHOUSE_TOKEN")]
    pub token_env: String,
    #[command(flatten)]
    pub local: CommonArgs,
    /// Who local decisions are recorded as (default: the OS user).
    #[arg(long)]
    pub reviewer: Option<String>,
}

/// Added to "data directory … is in use by PID …": the daemon holding it is the way in.
pub const IN_USE_HINT: &str =
    "; to act on the running daemon, pass --connect URL (or set GATEHOUSE_URL)";

enum Backend {
    Remote(Remote),
    Local(Box<Local>, String),
}

impl Target {
    /// The daemon named by `--connect`, with its token; `None` for a local data directory.
    pub fn remote(&self) -> Result<Option<Remote>, Failure> {
        let Some(url) = super::connect_url(self.connect.as_ref(), &self.local) else {
            return Ok(None);
        };
        let r = Remote::new(&url, &self.token_env)?;
        if !r.has_token() {
            return Err(Failure::usage(format!(
                "no token: set {} (or pass --token-env VAR)",
                self.token_env
            )));
        }
        Ok(Some(r))
    }
}

impl Backend {
    fn open(t: &Target) -> Result<Backend, Failure> {
        match t.remote()? {
            Some(r) => Ok(Backend::Remote(r)),
            None => {
                let local = start_local_hinted(&super::existing_data(&t.local)?, IN_USE_HINT)?;
                let who = t.reviewer.clone().unwrap_or_else(|| reviewer_for(&local));
                Ok(Backend::Local(Box::new(local), who))
            }
        }
    }

    async fn close(self) {
        if let Backend::Local(l, _) = self {
            l.stop().await;
        }
    }
}

/// The identity whose `os_user` is ours, else the OS user name.
pub fn reviewer_for(local: &Local) -> String {
    let user = super::os_user();
    local
        .config
        .identities
        .iter()
        .find(|i| i.os_user.as_deref() == Some(user.as_str()))
        .map(|i| i.name.get_ref().clone())
        .unwrap_or(user)
}

fn runner_failure(e: RunnerError) -> Failure {
    Failure::runtime(e.to_string())
}

fn remote_failure(status: u16, v: &Value) -> Failure {
    Failure::runtime(format!("{} (HTTP {status})", error_message(v)))
}

pub async fn run(action: Action) -> Result<(), Failure> {
    let target = match &action {
        Action::List { target, .. }
        | Action::Show { target, .. }
        | Action::Approve { target, .. }
        | Action::Escalate { target, .. }
        | Action::Deny { target, .. } => target.clone(),
    };
    let backend = Backend::open(&target)?;
    let result = act(&backend, action).await;
    backend.close().await;
    result
}

async fn act(backend: &Backend, action: Action) -> Result<(), Failure> {
    match action {
        Action::List {
            status,
            queue,
            limit,
            json,
            ..
        } => {
            let status_filter = match status.as_str() {
                "all" => None,
                s => Some(ApprovalStatus::parse(s).ok_or_else(|| {
                    Failure::usage(format!(
                        "--status {s:?}: use pending, approved, denied, expired, cancelled or all"
                    ))
                })?),
            };
            let approvals: Vec<Approval> = match backend {
                Backend::Remote(r) => {
                    let mut path = format!(
                        "/v1/approvals?status={status}&limit={}",
                        limit.clamp(1, 1000)
                    );
                    if let Some(q) = &queue {
                        path.push_str(&format!("&queue={}", urlencode(q)));
                    }
                    let (code, v) = r.call(Method::GET, &path, None).await?;
                    if code != 200 {
                        return Err(remote_failure(code, &v));
                    }
                    serde_json::from_value(v["approvals"].clone())
                        .map_err(|e| Failure::runtime(format!("unexpected answer: {e}")))?
                }
                Backend::Local(l, _) => {
                    l.runner
                        .list(ListQuery {
                            status: status_filter,
                            queue,
                            limit,
                            ..Default::default()
                        })
                        .await
                        .map_err(runner_failure)?
                        .approvals
                }
            };
            if json {
                println!("{}", json_for_terminal(&json!({"approvals": approvals})));
            } else {
                print_table(&approvals);
            }
            Ok(())
        }
        Action::Escalate { id, .. } => {
            let id = resolve(backend, &id, Among::PendingFirst).await?;
            let a = match backend {
                Backend::Remote(r) => {
                    let path = format!("/v1/approvals/{id}/escalate");
                    let (code, v) = r.call(Method::POST, &path, Some(&json!({}))).await?;
                    if code != 200 {
                        return Err(remote_failure(code, &v));
                    }
                    serde_json::from_value::<Approval>(v)
                        .map_err(|e| Failure::runtime(format!("unexpected answer: {e}")))?
                }
                Backend::Local(l, who) => {
                    l.runner.escalate(who, id).await.map_err(runner_failure)?
                }
            };
            println!(
                "escalated {} ({}) to queue {} (tier {})",
                a.id,
                escape(&a.tool).0,
                escape(&a.queue).0,
                a.tier
            );
            Ok(())
        }
        Action::Show { id, .. } => {
            let a = fetch(backend, &id).await?;
            println!(
                "{}",
                json_for_terminal(&serde_json::to_value(&a).unwrap_or_default())
            );
            Ok(())
        }
        Action::Approve {
            id,
            reason,
            arguments_sha256,
            ..
        } => decide(backend, &id, Verdict::Approve, reason, arguments_sha256).await,
        Action::Deny {
            id,
            reason,
            arguments_sha256,
            ..
        } => {
            if reason.trim().is_empty() {
                return Err(Failure::usage(
                    "--reason is empty: say why it is denied (the agent is told, so it can adjust)",
                ));
            }
            decide(backend, &id, Verdict::Deny, Some(reason), arguments_sha256).await
        }
    }
}

/// The full id for what the user typed (a whole id or the console's short id).
async fn resolve(backend: &Backend, raw: &str, among: Among) -> Result<uuid::Uuid, Failure> {
    match backend {
        Backend::Remote(r) => short_id::approval_remote(r, raw, among).await,
        Backend::Local(l, _) => short_id::approval_local(&l.runner, raw, among).await,
    }
}

async fn fetch(backend: &Backend, id: &str) -> Result<Approval, Failure> {
    let id = resolve(backend, id, Among::All).await?;
    match backend {
        Backend::Remote(r) => {
            let (code, v) = r
                .call(Method::GET, &format!("/v1/approvals/{id}"), None)
                .await?;
            if code != 200 {
                return Err(remote_failure(code, &v));
            }
            serde_json::from_value(v)
                .map_err(|e| Failure::runtime(format!("unexpected answer: {e}")))
        }
        Backend::Local(l, _) => l
            .runner
            .get(id)
            .await
            .map_err(runner_failure)?
            .ok_or_else(|| Failure::runtime(format!("no approval {id}"))),
    }
}

async fn decide(
    backend: &Backend,
    id: &str,
    verdict: Verdict,
    reason: Option<String>,
    arguments_sha256: Option<String>,
) -> Result<(), Failure> {
    let id = resolve(backend, id, Among::PendingFirst).await?;
    let a = match backend {
        Backend::Remote(r) => {
            let mut body = json!({"decision": verdict});
            if let Some(reason) = &reason {
                body["reason"] = json!(reason);
            }
            if let Some(sha) = &arguments_sha256 {
                body["arguments_sha256"] = json!(sha);
            }
            let (code, v) = r
                .call(
                    Method::POST,
                    &format!("/v1/approvals/{id}/decision"),
                    Some(&body),
                )
                .await?;
            if code != 200 {
                return Err(remote_failure(code, &v));
            }
            serde_json::from_value::<Approval>(v)
                .map_err(|e| Failure::runtime(format!("unexpected answer: {e}")))?
        }
        Backend::Local(l, who) => l
            .runner
            .decide(
                who,
                DecideRequest {
                    id,
                    verdict,
                    reason,
                    arguments_sha256,
                    edited_arguments: None,
                    scope: None,
                },
            )
            .await
            .map_err(runner_failure)?,
    };
    // Under a two-person rule an approval that is not the last leaves the call pending.
    if a.is_pending()
        && let (Some(count), Some(awaits)) = (a.quorum_summary(), a.quorum_awaits())
    {
        println!(
            "approved partially {} ({}): {}, {awaits}",
            a.id,
            escape(&a.tool).0,
            escape(&count).0
        );
        return Ok(());
    }
    let by = a.decision.as_ref().map(|d| d.by.as_str()).unwrap_or("?");
    println!(
        "{} {} ({}) by {}",
        a.status.as_str(),
        a.id,
        escape(&a.tool).0,
        escape(by).0
    );
    Ok(())
}

fn print_table(approvals: &[Approval]) {
    if approvals.is_empty() {
        println!("no approvals");
        return;
    }
    let now = domain::now();
    println!(
        "{:<36}  {:<9}  {:>6}  {:>6}  {:<12}  {:<16}  {:<20}  SERVER",
        "ID", "STATUS", "AGE", "LEFT", "QUEUE", "AGENT", "TOOL"
    );
    for a in approvals {
        let age = short_duration((now - a.created_at).num_seconds());
        let left = match (a.status, a.expires_at) {
            (ApprovalStatus::Pending, Some(at)) => short_duration((at - now).num_seconds()),
            _ => "-".into(),
        };
        let (agent, _) = escape(a.agent.as_deref().unwrap_or("-"));
        let (tool, _) = escape(&a.tool);
        let (queue, _) = escape(&a.queue);
        let (server, _) = escape(a.server.as_deref().unwrap_or("-"));
        println!(
            "{:<36}  {:<9}  {age:>6}  {left:>6}  {queue:<12}  {agent:<16}  {tool:<20}  {server}",
            a.id,
            a.status.as_str()
        );
    }
}

fn short_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
