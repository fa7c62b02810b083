//! Plain domain types: no I/O here, so every front end and the store share one vocabulary.

pub mod canonical;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use canonical::{arguments_sha256, canonical_json};

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
    #[serde(default)]
    pub agent: Option<String>,
    pub tool: String,
    #[serde(default)]
    pub server: Option<String>,
    pub arguments: Map<String, Value>,
    pub arguments_sha256: String,
    #[serde(default)]
    pub reasoning: Option<String>,
    pub requested_by: String,
    pub queue: String,
    /// Position in the escalation chain (0 = first tier).
    pub tier: u32,
    pub policy: PolicyRef,
    pub created_at: Timestamp,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    pub status: ApprovalStatus,
    #[serde(default)]
    pub decision: Option<Decision>,
    /// The submitter's executor honours edited arguments.
    #[serde(default)]
    pub editable: bool,
}

impl Approval {
    pub fn is_pending(&self) -> bool {
        self.status == ApprovalStatus::Pending
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
    /// A decision attempt that was refused (wrong role, self-approval, mismatched hash).
    #[serde(rename = "decision.refused")]
    DecisionRefused,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApprovalCreated => "approval.created",
            Self::ApprovalDecided => "approval.decided",
            Self::ApprovalEscalated => "approval.escalated",
            Self::ApprovalExpired => "approval.expired",
            Self::ApprovalCancelled => "approval.cancelled",
            Self::DecisionRefused => "decision.refused",
        }
    }

    /// Whether this kind is published on the event stream.
    pub fn is_event(self) -> bool {
        !matches!(self, Self::DecisionRefused)
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
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.remove("hash");
        }
        hex::encode(Sha256::digest(canonical_json(&v).as_bytes()))
    }

    /// The approval snapshot carried by approval kinds.
    pub fn approval(&self) -> Option<Approval> {
        self.details
            .get("approval")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
    }
}

/// A change published to every front end (console, SSE clients, long-polls).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub kind: AuditKind,
    pub at: Timestamp,
    pub approval: Approval,
}

impl Event {
    pub fn from_record(r: &AuditRecord) -> Option<Event> {
        if !r.kind.is_event() {
            return None;
        }
        Some(Event {
            seq: r.seq,
            kind: r.kind,
            at: r.at,
            approval: r.approval()?,
        })
    }
}
