//! A pending approval as a start indexes it.

use super::{Approval, ApprovalStatus, Timestamp};
use serde::Deserialize;
use uuid::Uuid;

/// What a start needs of a pending approval without building it whole: what the runner
/// indexes and schedules it by. Read from the stored approval (unknown fields are skipped).
#[derive(Clone, Debug, Deserialize)]
pub struct PendingSummary {
    pub id: Uuid,
    #[serde(default)]
    pub run_id: Option<String>,
    pub requested_by: String,
    pub queue: String,
    pub status: ApprovalStatus,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub escalates_at: Option<Timestamp>,
}

impl PendingSummary {
    pub fn of(a: &Approval) -> PendingSummary {
        PendingSummary {
            id: a.id,
            run_id: a.run_id.clone(),
            requested_by: a.requested_by.clone(),
            queue: a.queue.clone(),
            status: a.status,
            expires_at: a.expires_at,
            escalates_at: a.escalates_at,
        }
    }

    /// As [`Approval::next_deadline`].
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.escalates_at.or(self.expires_at)
    }
}
