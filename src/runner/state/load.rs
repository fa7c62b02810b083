//! Start-up: rebuild the runner's in-memory parts from the store, checking what is read.

use super::*;

impl Runner {
    /// Rebuild the in-memory index from the store, checking what it reads.
    pub(super) fn load(&mut self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let dir = self.ledger.store.dir().to_path_buf();
        let corrupt = |what: String| StoreError::Corrupt {
            dir: dir.clone(),
            what,
        };
        if let Some(last) = self.ledger.store.audit_rev().next() {
            let last = last?;
            if last.compute_hash() != last.hash {
                return Err(corrupt(format!(
                    "the last audit record (seq {}) fails its hash check",
                    last.seq
                )));
            }
            // A crash may have cut the newest change short after its audit record.
            self.ledger.store.redo_last(&last)?;
            self.ledger.seq = last.seq;
            self.ledger.last_hash = last.hash;
        }
        for run in self.ledger.store.active_runs()? {
            self.runs.active.insert(run.id, run);
        }
        self.load_grants()?;
        // Recently finished runs, for consoles' runs panes (newest 200, oldest first).
        let mut finished: Vec<RunSummary> = self
            .ledger
            .store
            .runs_before(None, 200)?
            .iter()
            .filter(|r| r.status.is_finished())
            .map(Run::summary)
            .collect();
        finished.reverse();
        self.runs.recent = finished.into();
        // A store that reads back locally is read for the index only; the approvals are
        // read whole when something needs them.
        if self.ledger.store.reads_back_locally() {
            let pending = &mut self.approvals.pending;
            self.ledger
                .store
                .pending_summaries(&mut |s| pending.insert_summary(s))?;
        } else {
            for a in self.ledger.store.pending()? {
                self.approvals.pending.insert(a);
            }
        }
        let hour_ago = self.now() - chrono::Duration::hours(1);
        let mut recent = Vec::new();
        // Only records that settled an approval matter here, newest first.
        for r in self.ledger.store.settled_rev()? {
            let r = r?;
            let in_hour = r.at >= hour_ago;
            if recent.len() >= self.cfg.recent_limit && !in_hour {
                break;
            }
            if let Some(a) = r.approval() {
                if in_hour
                    && r.actor.starts_with("policy:")
                    && a.status == ApprovalStatus::Approved
                    && let (Some(name), Some(rule)) = (&a.policy.name, a.policy.rule)
                {
                    self.approvals.limits.record(name, rule, r.at);
                }
                if recent.len() < self.cfg.recent_limit {
                    recent.push(a);
                }
            }
        }
        recent.reverse();
        self.approvals.recent = recent.into();
        self.ledger.published = self.ledger.seq;
        // On a shared store, what other daemons write from here on comes with the commits.
        self.ledger.store.follow_from(self.ledger.seq);
        self.metrics.audit_seq.set(self.ledger.seq as i64);
        tracing::info!(
            pending = self.approvals.pending.len(),
            held = self.approvals.pending.held_count(),
            seq = self.ledger.seq,
            "loaded the store in {} ms",
            started.elapsed().as_millis()
        );
        Ok(())
    }
}
