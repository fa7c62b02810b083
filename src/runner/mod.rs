//! The runner task: the one owner of the store and of all mutation.
//!
//! Front ends (HTTP API, console, CLI) send typed [`Command`]s over an `mpsc` and learn of
//! changes from a `broadcast` of [`Event`]s. Nothing is acknowledged before it is durable:
//! writes are applied to sled at once, and every reply and event waits for the group commit
//! (one flush + fsync) that covers it. While one commit is in flight new writes keep being
//! applied and share the next one, so concurrent requests share fsyncs.

mod busy;
mod commit;
mod handle;
mod ledger;
mod state;

pub use handle::RunnerHandle;

use crate::domain::{Approval, AuditRecord, Event, Run, RunSummary, Timestamp, Verdict};
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::sync::oneshot;
use uuid::Uuid;

/// One escalation tier (`[[escalation]]`).
#[derive(Clone, Debug)]
pub struct EscalationTier {
    pub queue: String,
    pub reviewers: Vec<String>,
    pub after: Duration,
}

/// The runner's source of "now". Real time by default; tests hand in a clock they advance,
/// so escalation and expiry are tested without sleeping.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    pub fn new(f: impl Fn() -> Timestamp + Send + Sync + 'static) -> Clock {
        Clock(std::sync::Arc::new(f))
    }

    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(crate::domain::now)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

#[derive(Clone, Debug)]
pub struct RunnerConfig {
    pub tiers: Vec<EscalationTier>,
    /// How long an approval outside the escalation chain waits when its rule names no timeout.
    pub default_timeout: Duration,
    /// How long a grant made in an external run (not one gatehouse drives) lasts.
    pub grant_ttl: Duration,
    /// Queues a rule names (`[[policies.rules]] queue`): a submission may ask for these too.
    pub rule_queues: Vec<String>,
    /// Each identity's roles (`[[identities]]`): who is an admin, and what policies see as
    /// `identity.roles` for runs started by that identity.
    pub identities: std::collections::BTreeMap<String, Vec<String>>,
    pub clock: Clock,
    /// How many decided approvals the runner keeps at hand for consoles' history panes.
    pub recent_limit: usize,
    /// `[notify] webhook`, and whether new approvals are announced too.
    pub webhook: Option<String>,
    pub notify_on_create: bool,
    /// The agents runs can use (`[[agents]]`); `None` when the config has none.
    pub agents: Option<std::sync::Arc<crate::agent::Agents>>,
    /// The counters the runner updates; the HTTP API encodes the same ones.
    pub metrics: crate::metrics::Metrics,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            tiers: Vec::new(),
            default_timeout: Duration::from_secs(3600),
            grant_ttl: Duration::from_secs(3600),
            rule_queues: Vec::new(),
            identities: Default::default(),
            clock: Clock::default(),
            recent_limit: 200,
            webhook: None,
            notify_on_create: false,
            agents: None,
            metrics: crate::metrics::Metrics::default(),
        }
    }
}

impl RunnerConfig {
    /// The runner's settings from a checked config. Errors (a model or tool that cannot be
    /// built) are one line naming the part.
    pub fn from_config(cfg: &crate::config::Config) -> Result<Self, String> {
        // Exposed MCP servers live with the agents' (the gateway gates them the same way).
        let agents = if cfg.agents.is_empty() && !cfg.mcp_servers.iter().any(|s| s.expose) {
            None
        } else {
            Some(std::sync::Arc::new(crate::agent::Agents::from_config(cfg)?))
        };
        Ok(Self {
            tiers: cfg
                .escalation
                .iter()
                .map(|t| EscalationTier {
                    queue: t.queue.get_ref().clone(),
                    reviewers: t.reviewers.clone(),
                    after: t.after,
                })
                .collect(),
            default_timeout: cfg.server.default_timeout,
            grant_ttl: cfg.server.grant_ttl,
            rule_queues: cfg
                .policies
                .iter()
                .flat_map(|p| p.rules.iter())
                .filter_map(|r| r.queue.clone())
                .collect(),
            identities: cfg.roles_by_identity(),
            clock: Clock::default(),
            recent_limit: 200,
            webhook: cfg.notify.webhook.clone(),
            notify_on_create: cfg.notify.on_create,
            agents,
            metrics: crate::metrics::Metrics::default(),
        })
    }
}

impl RunnerConfig {
    /// Whether the identity `who` holds the admin role.
    pub fn is_admin(&self, who: &str) -> bool {
        self.identities
            .get(who)
            .is_some_and(|roles| roles.iter().any(|r| r == "admin"))
    }

    /// Whether a submitted `queue` is one the operator configured: an `[[escalation]]` queue,
    /// a rule's queue, or `default` when there are no tiers.
    pub fn knows_queue(&self, queue: &str) -> bool {
        self.tiers.iter().any(|t| t.queue == queue)
            || self.rule_queues.iter().any(|q| q == queue)
            || (self.tiers.is_empty() && queue == "default")
    }
}

/// An external approval request, already checked for shape by the front end.
#[derive(Clone, Debug, Default)]
pub struct SubmitRequest {
    pub tool: String,
    pub arguments: Map<String, Value>,
    pub reasoning: Option<String>,
    pub agent: Option<String>,
    /// The submitting identity's roles, as policies see them (`identity.roles`).
    pub roles: Vec<String>,
    /// The front end checked the claim against the identity (`[[identities]] agents`), or
    /// the call comes from a run gatehouse drives.
    pub agent_verified: bool,
    pub run_id: Option<String>,
    pub server: Option<String>,
    /// As `agent_verified`, for `server` (`[[identities]] servers`, or gatehouse's own MCP).
    pub server_verified: bool,
    /// Optional strings about where the call comes from (DESIGN §10); not hashed.
    pub context: Option<std::collections::BTreeMap<String, String>>,
    pub queue: Option<String>,
    pub timeout: Option<Duration>,
    pub idempotency_key: Option<String>,
    pub editable: bool,
    /// A reviewer decides whether a call cut short by a restart runs again.
    pub outcome_unknown: bool,
}

/// A call of an exposed MCP server's tool by an MCP client (DESIGN §11).
#[derive(Clone, Debug)]
pub struct McpCall {
    pub server: String,
    /// The server's own name of the tool.
    pub tool: String,
    pub arguments: Map<String, Value>,
    /// The MCP session: grants made with `A` hold for the rest of it.
    pub session: String,
    /// `client` (the client's name and version) and `via`.
    pub context: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct Submitted {
    pub approval: Approval,
    /// True when an idempotency key matched an earlier submission.
    pub replayed: bool,
}

#[derive(Clone, Debug)]
pub struct DecideRequest {
    pub id: Uuid,
    pub verdict: Verdict,
    pub reason: Option<String>,
    /// Hash of the arguments the reviewer saw; a mismatch refuses the decision.
    pub arguments_sha256: Option<String>,
    /// Approve this instead of the proposed arguments (only for editable approvals).
    pub edited_arguments: Option<Map<String, Value>>,
    /// `Some("run")`: also grant the tool for the rest of the approval's run.
    pub scope: Option<String>,
}

/// An approval a long poll waits on.
#[derive(Debug)]
pub struct Watched {
    pub current: Approval,
    /// While `current` is pending: receives the approval once it is decided, expired or
    /// cancelled and durable. Closed without a value if the store failed meanwhile.
    pub decided: Option<oneshot::Receiver<Approval>>,
}

/// Which approvals a list asks for.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// `None` lists every status.
    pub status: Option<crate::domain::ApprovalStatus>,
    pub queue: Option<String>,
    pub requested_by: Option<String>,
    pub limit: usize,
    pub after: Option<Uuid>,
}

#[derive(Clone, Debug)]
pub struct ApprovalPage {
    pub approvals: Vec<Approval>,
    pub next: Option<Uuid>,
}

/// Where a new in-process console starts: the recent decisions and runs, and the log
/// position they are current at. The pending approvals it pages through with `List`, like a
/// remote console: one answer holding them all would read every approval not held in memory
/// back from the store while the runner serves nothing else (over 200,000 pending, 1.3 s).
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub recent: Vec<Approval>,
    /// Active runs and recently finished ones, oldest first.
    pub runs: Vec<RunSummary>,
    pub seq: u64,
}

#[derive(Clone, Debug)]
pub struct RunPage {
    pub runs: Vec<RunSummary>,
    pub next: Option<Uuid>,
}

/// Why the runner refused a command. Front ends map these to their own words (HTTP statuses).
#[derive(Clone, Debug, PartialEq)]
pub enum RunnerError {
    NotFound(String),
    /// The approval as it stands; `code` says why: `already_decided` or `arguments_mismatch`.
    Conflict {
        code: &'static str,
        message: String,
        approval: Box<Approval>,
    },
    Forbidden {
        code: &'static str,
        message: String,
    },
    Invalid(String),
    /// The run has already finished (completed, failed or cancelled).
    RunFinished(String),
    /// The store failed; nothing more is accepted.
    Unavailable(String),
}

impl std::fmt::Display for RunnerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound(m) | Self::Invalid(m) | Self::Unavailable(m) | Self::RunFinished(m) => {
                f.write_str(m)
            }
            Self::Conflict { message, .. } | Self::Forbidden { message, .. } => {
                f.write_str(message)
            }
        }
    }
}

pub type Reply<T> = oneshot::Sender<Result<T, RunnerError>>;

/// Everything the runner can be asked to do.
pub enum Command {
    Submit {
        who: String,
        req: SubmitRequest,
        reply: Reply<Submitted>,
    },
    Decide {
        who: String,
        req: DecideRequest,
        reply: Reply<Approval>,
    },
    Get {
        id: Uuid,
        reply: Reply<Option<Approval>>,
    },
    /// One approval, and while it is pending a receiver for it once it is not (long polls).
    Watch {
        id: Uuid,
        reply: Reply<Option<Watched>>,
    },
    List {
        query: ListQuery,
        reply: Reply<ApprovalPage>,
    },
    Audit {
        after: u64,
        limit: usize,
        reply: Reply<Vec<AuditRecord>>,
    },
    Snapshot {
        reply: Reply<Snapshot>,
    },
    /// The decided approvals kept for history panes.
    Recent {
        reply: Reply<Vec<Approval>>,
    },
    /// A decision attempt refused before it reached the runner (e.g. missing role): audit it.
    RecordRefusal {
        who: String,
        approval_id: Option<Uuid>,
        code: String,
        message: String,
    },
    /// `n` more requests were refused for want of a valid token (401): counted, and written
    /// as one audit record per minute.
    CountUnauthenticated {
        n: u64,
    },
    Metrics {
        reply: Reply<crate::metrics::Metrics>,
    },
    /// The sequence number of the newest record; the reply comes once it is durable and
    /// published, so a subscriber that asks after subscribing misses nothing.
    Position {
        reply: Reply<u64>,
    },
    /// A reviewer moves a pending approval to the next escalation tier now.
    Escalate {
        who: String,
        id: Uuid,
        reply: Reply<Approval>,
    },
    Grants {
        reply: Reply<Vec<crate::domain::Grant>>,
    },
    RevokeGrant {
        who: String,
        run_id: String,
        tool: String,
        server: Option<String>,
        /// Only this identity's grant; `None`: every identity's.
        identity: Option<String>,
        reply: Reply<Vec<crate::domain::Grant>>,
    },
    /// Start an agent run.
    StartRun {
        who: String,
        agent: String,
        input: String,
        reply: Reply<RunSummary>,
    },
    GetRun {
        id: Uuid,
        reply: Reply<Option<Run>>,
    },
    /// Runs newest first, before the `before` cursor.
    ListRuns {
        before: Option<Uuid>,
        limit: usize,
        reply: Reply<RunPage>,
    },
    /// Cancel a run; its pending approvals become `cancelled`.
    CancelRun {
        who: String,
        id: Uuid,
        reply: Reply<RunSummary>,
    },
    /// A `tools/call` of an MCP client through the gateway, gated as an agent run's MCP call.
    SubmitMcpCall {
        who: String,
        call: McpCall,
        reply: Reply<Approval>,
    },
    /// An approved gateway call came back from its MCP server: audit the execution.
    McpCallDone {
        id: Uuid,
        ok: bool,
        output: String,
        reply: Reply<()>,
    },
    /// The submitter withdraws its own pending approval (nobody waits for it any more).
    CancelApproval {
        who: String,
        id: Uuid,
        reply: Reply<Approval>,
    },
    /// Stop: finish the commit in flight, make the rest durable, answer, and end.
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

pub use state::start;

#[cfg(test)]
mod pending_tests;
#[cfg(test)]
mod priority_tests;
#[cfg(test)]
mod test_clock;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod trust_tests;
