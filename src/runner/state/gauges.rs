//! The gauges `/metrics` reads, set from the runner's parts at each scrape.

use super::*;

impl Runner {
    /// Set the gauges that describe the runner's state (asked for at each scrape). Queue
    /// labels are configured queues or `other`, so submitters cannot mint series.
    pub(super) fn refresh_gauges(&self) {
        use crate::metrics::{Queue, Status};
        let mut by_queue: BTreeMap<String, i64> = BTreeMap::new();
        for t in &self.cfg.tiers {
            by_queue.insert(t.queue.clone(), 0);
        }
        for q in &self.cfg.rule_queues {
            by_queue.insert(q.clone(), 0);
        }
        if self.cfg.tiers.is_empty() {
            by_queue.insert("default".into(), 0);
        }
        for (_, a) in self.approvals.pending.iter() {
            let label = if self.cfg.knows_queue(&a.queue) {
                a.queue.to_string()
            } else {
                "other".to_string()
            };
            *by_queue.entry(label).or_default() += 1;
        }
        for (queue, n) in by_queue {
            self.metrics.pending.get_or_create(&Queue { queue }).set(n);
        }
        for status in ["running", "pending_approval"] {
            let n = self
                .runs
                .active
                .values()
                .filter(|r| r.status.as_str() == status)
                .count();
            self.metrics
                .runs
                .get_or_create(&Status { status })
                .set(n as i64);
        }
        self.metrics.audit_seq.set(self.ledger.seq as i64);
        self.metrics
            .approval_waiters
            .set(self.approvals.waiters.open() as i64);
    }
}
