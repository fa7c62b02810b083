//! Plain domain types: no I/O here, so every front end and the store share one vocabulary.

pub mod canonical;
pub mod mcp;
pub mod message;
pub mod pending;
pub mod run;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

pub use canonical::{arguments_sha256, canonical_json};
pub use mcp::{McpServerState, McpServerStatus};
pub use message::{Message, ToolCall, ToolOutput};
pub use pending::PendingSummary;
pub use run::{CallState, Run, RunCall, RunStatus, RunSummary};

/// Wall-clock instant, serialised as RFC 3339 with milliseconds.
pub type Timestamp = DateTime<Utc>;

pub fn now() -> Timestamp {
    // Millisecond precision: what we store is exactly what we show and compare.
    let t = Utc::now();
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "expired" => Self::Expired,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// What a reviewer (or a policy, or the clock) chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Deny,
}

/// The decision that stands on an approval. Immutable once written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Identity name, `policy:NAME`, or `timeout`.
    pub by: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Hash of the arguments that were approved (the shown ones, or the edited ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments_sha256: Option<String>,
    /// The reviewer's edited arguments, when the approved call differs from the proposed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Map<String, Value>>,
    /// `"run"`: the approval also granted this tool for the rest of its run (a sticky grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A sticky grant: later calls of `tool` (on `server`) in `run_id`, submitted by the same
/// `identity`, need no reviewer (DESIGN §9). It never approves another identity's call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// The identity whose calls it approves. `None` only in grants stored by versions that
    /// keyed grants by run alone: those are dropped at start, never widened to anyone.
    #[serde(default)]
    pub identity: Option<String>,
    pub run_id: String,
    pub tool: String,
    #[serde(default)]
    pub server: Option<String>,
    /// The reviewer who granted it.
    #[serde(alias = "by")]
    pub granted_by: String,
    pub at: Timestamp,
    /// The approval whose decision made the grant.
    pub approval_id: Uuid,
    /// For an external run id: `at` + `[server] grant_ttl`. `None`: it ends with the
    /// gatehouse run it belongs to.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

impl Grant {
    /// Whether this grant approves a call by `identity` of `tool` on `server` in `run_id` at `now`.
    pub fn covers(
        &self,
        identity: &str,
        run_id: &str,
        tool: &str,
        server: Option<&str>,
        now: Timestamp,
    ) -> bool {
        self.identity.as_deref() == Some(identity)
            && self.run_id == run_id
            && self.tool == tool
            && self.server.as_deref() == server
            && self.expires_at.is_none_or(|at| now < at)
    }
}

/// Which policy rule decided or asked, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// Policy name; `None` when no policy matched (the default is to ask).
    pub name: Option<String>,
    /// 1-based rule index within the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    pub reason: String,
}

/// One proposed tool call waiting for (or past) a human decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: Uuid,
    #[serde(default)]
    pub run_id: Option<String>,
    /// The agent's name: a claim unless `agent_verified` (DESIGN §9).
    #[serde(default)]
    pub agent: Option<String>,
    /// True when gatehouse drives the run itself, or the submitting identity may make this
    /// claim (`[[identities]] agents`). Policies see `agent` only when verified.
    #[serde(default)]
    pub agent_verified: bool,
    pub tool: String,
    /// The MCP server name: a claim unless `server_verified`.
    #[serde(default)]
    pub server: Option<String>,
    /// True for gatehouse's own MCP servers and for claims the identity may make
    /// (`[[identities]] servers`).
    #[serde(default)]
    pub server_verified: bool,
    /// What will run: the submitted call, or the reviewer's edit once edited and approved.
    pub arguments: Map<String, Value>,
    pub arguments_sha256: String,
    /// The call as submitted, kept when a reviewer's edit replaced `arguments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_arguments: Option<Map<String, Value>>,
    /// Where the call comes from (hooks: host, cwd, session, event, tool_use_id; MCP: client).
    /// Shown to reviewers and visible to CEL as `context`; not part of the arguments hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub reasoning: Option<String>,
    pub requested_by: String,
    pub queue: String,
    /// Position in the escalation chain (0 = first tier).
    pub tier: u32,
    pub policy: PolicyRef,
    pub created_at: Timestamp,
    /// When the approval expires for good (denied by `timeout`): the earlier of its timeout
    /// and the end of the last escalation tier. Never an escalation instant.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// When it moves on to the next escalation tier if still undecided; `None` in the last
    /// tier, outside the chain, or when it expires first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalates_at: Option<Timestamp>,
    pub status: ApprovalStatus,
    #[serde(default)]
    pub decision: Option<Decision>,
    /// The submitter's executor honours edited arguments.
    #[serde(default)]
    pub editable: bool,
    /// gatehouse stopped while this call ran: approving runs it again, denying reports the
    /// failure to the agent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outcome_unknown: bool,
    /// Approvals a two-person rule (`approvals = N`, N ≥ 2) asks for; `None`: one decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_needed: Option<u32>,
    /// Reviewers who approved so far, in order. Under a quorum the approval stays `pending`
    /// until `approvals_needed` distinct reviewers are here; the last one decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
}

impl Approval {
    /// The reason its decision gives, or "no reason given": what an agent is told.
    pub fn decision_reason(&self) -> String {
        self.decision
            .as_ref()
            .and_then(|d| d.reason.clone())
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "no reason given".into())
    }

    pub fn is_pending(&self) -> bool {
        self.status == ApprovalStatus::Pending
    }

    /// Approvals still missing under a two-person rule (0 once none are, or without one).
    pub fn approvals_missing(&self) -> u32 {
        self.approvals_needed
            .unwrap_or(1)
            .saturating_sub(self.approved_by.len() as u32)
    }

    /// `1 of 2 (alice)` while a quorum is partly met; `None` without a quorum.
    pub fn quorum_summary(&self) -> Option<String> {
        let needed = self.approvals_needed.filter(|n| *n > 1)?;
        let mut s = format!("{} of {needed}", self.approved_by.len());
        if !self.approved_by.is_empty() {
            s.push_str(&format!(" ({})", self.approved_by.join(", ")));
        }
        Some(s)
    }

    /// What a partly met quorum waits for: `awaits a second reviewer`, `awaits 2 more reviewers`.
    pub fn quorum_awaits(&self) -> Option<String> {
        self.approvals_needed?;
        Some(match (self.approvals_missing(), self.approved_by.len()) {
            (0, _) => return None,
            (1, 1) => "awaits a second reviewer".into(),
            (1, _) => "awaits one more reviewer".into(),
            (n, _) => format!("awaits {n} more reviewers"),
        })
    }

    /// The next instant the clock acts on this approval: its escalation, else its expiry.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.escalates_at.or(self.expires_at)
    }
}

/// Kinds of audit record. The `approval.*` kinds double as the event stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditKind {
    #[serde(rename = "approval.created")]
    ApprovalCreated,
    #[serde(rename = "approval.decided")]
    ApprovalDecided,
    #[serde(rename = "approval.escalated")]
    ApprovalEscalated,
    #[serde(rename = "approval.expired")]
    ApprovalExpired,
    #[serde(rename = "approval.cancelled")]
    ApprovalCancelled,
    /// A reviewer approved under a two-person rule and more approvals are needed: the
    /// approval stays pending, with the reviewer added to `approved_by`.
    #[serde(rename = "approval.approved_partially")]
    ApprovalApprovedPartially,
    /// A decision attempt that was refused (wrong role, self-approval, mismatched hash).
    #[serde(rename = "decision.refused")]
    DecisionRefused,
    /// Requests without a valid token, counted over a minute (one record, not one each).
    #[serde(rename = "requests.refused")]
    RequestsRefused,
    /// A sticky grant was withdrawn.
    #[serde(rename = "grant.revoked")]
    GrantRevoked,
    #[serde(rename = "run.started")]
    RunStarted,
    /// A run moved on: the model answered, a call was decided or started, the run paused.
    #[serde(rename = "run.updated")]
    RunUpdated,
    /// A tool call of a run finished (its result, clipped, is in the details).
    #[serde(rename = "tool.executed")]
    ToolExecuted,
    /// A run completed, failed or was cancelled.
    #[serde(rename = "run.ended")]
    RunEnded,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApprovalCreated => "approval.created",
            Self::ApprovalDecided => "approval.decided",
            Self::ApprovalEscalated => "approval.escalated",
            Self::ApprovalExpired => "approval.expired",
            Self::ApprovalCancelled => "approval.cancelled",
            Self::ApprovalApprovedPartially => "approval.approved_partially",
            Self::DecisionRefused => "decision.refused",
            Self::RequestsRefused => "requests.refused",
            Self::GrantRevoked => "grant.revoked",
            Self::RunStarted => "run.started",
            Self::RunUpdated => "run.updated",
            Self::ToolExecuted => "tool.executed",
            Self::RunEnded => "run.ended",
        }
    }

    pub fn is_run(self) -> bool {
        matches!(
            self,
            Self::RunStarted | Self::RunUpdated | Self::ToolExecuted | Self::RunEnded
        )
    }

    /// The Server-Sent Events name: every run kind is published as `run.updated`.
    pub fn event_name(self) -> &'static str {
        if self.is_run() {
            "run.updated"
        } else {
            self.as_str()
        }
    }

    /// Whether this kind is published on the event stream.
    pub fn is_event(self) -> bool {
        !matches!(
            self,
            Self::DecisionRefused | Self::RequestsRefused | Self::GrantRevoked
        )
    }
}

/// An audit record's details with the approval added, as one object (see
/// [`AuditRecord::seal_text_with`]).
struct WithApproval<'a> {
    details: &'a Map<String, Value>,
    approval: &'a Approval,
}

impl Serialize for WithApproval<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.details.len() + 1))?;
        for (k, v) in self.details {
            m.serialize_entry(k, v)?;
        }
        m.serialize_entry("approval", self.approval)?;
        m.end()
    }
}

/// One link of the tamper-evident audit chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub at: Timestamp,
    pub kind: AuditKind,
    pub actor: String,
    #[serde(default)]
    pub approval_id: Option<Uuid>,
    #[serde(default)]
    pub run_id: Option<String>,
    /// Kind-specific details; approval kinds carry the approval as it stood after the change.
    pub details: Value,
    pub prev_hash: String,
    pub hash: String,
}

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl AuditRecord {
    /// SHA-256 over the canonical JSON of the record without its own `hash`.
    pub fn compute_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.canonical_without_hash().as_bytes()))
    }

    /// Set `hash`, and return the record's JSON for storage when the canonical text the hash
    /// covers can be it: that text plus `hash` reads back as this very record, so the record
    /// is serialised once instead of twice. `None` when some number would read back otherwise
    /// (see [`canonical::reads_back_exactly`]); the store then serialises the record itself.
    pub fn seal_text(&mut self) -> Option<String> {
        use sha2::{Digest, Sha256};
        let mut text = self.canonical_without_hash();
        self.hash = hex::encode(Sha256::digest(text.as_bytes()));
        if !canonical::reads_back_exactly(&self.details) || !text.ends_with('}') {
            return None;
        }
        text.pop();
        text.push_str(",\"hash\":\"");
        text.push_str(&self.hash);
        text.push_str("\"}");
        Some(text)
    }

    /// RFC 8785 form of the record minus `hash`, written field by field in sorted key order
    /// (cheaper than cloning the record into a `Value`; a test checks both agree).
    fn canonical_without_hash(&self) -> String {
        self.canonical_with(|o| {
            canonical::write_value(o, &self.details);
            true
        })
        .0
    }

    /// [`AuditRecord::canonical_without_hash`] with the details written by `details`, which
    /// says whether what it wrote reads back exactly.
    fn canonical_with(&self, details: impl FnOnce(&mut String) -> bool) -> (String, bool) {
        use canonical::write_string;
        let mut o = String::with_capacity(256);
        o.push_str("{\"actor\":");
        write_string(&mut o, &self.actor);
        o.push_str(",\"approval_id\":");
        match &self.approval_id {
            Some(id) => write_string(&mut o, &id.to_string()),
            None => o.push_str("null"),
        }
        o.push_str(",\"at\":");
        write_string(
            &mut o,
            &self.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        );
        o.push_str(",\"details\":");
        let exact = details(&mut o);
        o.push_str(",\"kind\":");
        write_string(&mut o, self.kind.as_str());
        o.push_str(",\"prev_hash\":");
        write_string(&mut o, &self.prev_hash);
        o.push_str(",\"run_id\":");
        match &self.run_id {
            Some(r) => write_string(&mut o, r),
            None => o.push_str("null"),
        }
        o.push_str(&format!(",\"seq\":{}}}", self.seq));
        (o, exact)
    }

    /// [`AuditRecord::seal_text`] for a record whose details are its `details` object plus
    /// `"approval": approval`, written without turning the approval into a `Value` (see
    /// [`canonical::direct`]). The text and hash are the ones `seal_text` gives once the
    /// approval is in `details`; `details` itself is left without it. `None` (and no hash)
    /// when the text cannot be the stored record or cannot be written directly: the caller
    /// then puts the approval into `details` and calls `seal_text`.
    pub fn seal_text_with(&mut self, approval: &Approval) -> Option<String> {
        use sha2::{Digest, Sha256};
        let Value::Object(details) = &self.details else {
            return None;
        };
        if details.contains_key("approval") {
            return None;
        }
        let with = WithApproval { details, approval };
        let (mut text, exact) =
            self.canonical_with(|o| canonical::direct::write(o, &with).unwrap_or(false));
        if !exact || !text.ends_with('}') {
            return None;
        }
        self.hash = hex::encode(Sha256::digest(text.as_bytes()));
        text.pop();
        text.push_str(",\"hash\":\"");
        text.push_str(&self.hash);
        text.push_str("\"}");
        Some(text)
    }

    /// The approval snapshot carried by approval kinds.
    pub fn approval(&self) -> Option<Approval> {
        self.details
            .get("approval")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
    }
}

/// What an event is about. (The approval is not boxed: most events are about one, and an
/// event is built once and cloned per subscriber anyway.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    Approval(Approval),
    Run(Box<RunSummary>),
}

/// A change published to every front end (console, SSE clients, long-polls). On the wire
/// the subject is one key, `approval` or `run`, beside `seq`, `kind` and `at`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub kind: AuditKind,
    pub at: Timestamp,
    #[serde(flatten)]
    pub subject: Subject,
}

impl Event {
    /// The event for a record whose approval the caller already holds.
    pub fn for_approval(r: &AuditRecord, approval: &Approval) -> Option<Event> {
        r.kind.is_event().then(|| Event {
            seq: r.seq,
            kind: r.kind,
            at: r.at,
            subject: Subject::Approval(approval.clone()),
        })
    }

    pub fn for_run(r: &AuditRecord, run: RunSummary) -> Event {
        Event {
            seq: r.seq,
            kind: r.kind,
            at: r.at,
            subject: Subject::Run(Box::new(run)),
        }
    }

    pub fn from_record(r: &AuditRecord) -> Option<Event> {
        if !r.kind.is_event() {
            return None;
        }
        let subject = if r.kind.is_run() {
            Subject::Run(Box::new(
                serde_json::from_value(r.details.get("run")?.clone()).ok()?,
            ))
        } else {
            Subject::Approval(r.approval()?)
        };
        Some(Event {
            seq: r.seq,
            kind: r.kind,
            at: r.at,
            subject,
        })
    }
}

#[cfg(test)]
mod audit_tests;
