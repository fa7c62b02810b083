//! A commit's outcome: replies, events and webhook notices go out; on a store several
//! daemons share, the records other daemons wrote are applied to this runner's memory first,
//! in the database's order, so every daemon publishes the same gap-free order of events.

use super::super::commit::{Batch, Outcome};
use super::*;
use crate::store::Committed;
use std::collections::HashMap;

/// How often an idle runner on a shared store looks for other daemons' records.
pub(super) const POLL: Duration = Duration::from_millis(250);
/// How often a runner whose shared store lost its database tries it again.
pub(super) const RECONNECT: Duration = Duration::from_millis(500);

impl Runner {
    pub(super) fn finish_flush(
        &mut self,
        mut batch: Batch,
        started: std::time::Instant,
        done: Result<std::io::Result<Committed>, tokio::task::JoinError>,
    ) {
        let result = match done {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(format!("the store could not make writes durable: {e}")),
            Err(e) => Err(format!("the store's flush failed: {e}")),
        };
        let committed = match result {
            Ok(c) => c,
            Err(msg) => return self.flush_failed(batch, msg),
        };
        // A shared store's idle polls are reads, not commits.
        if batch.writes > 0 {
            self.metrics.commits.inc();
            self.metrics.committed_writes.inc_by(batch.writes as u64);
            self.metrics
                .commit_seconds
                .inc_by(started.elapsed().as_secs_f64());
        }
        let parked = std::mem::take(&mut batch.parked);
        let settled = self.ledger.store.settle(committed);
        let mut events = Vec::new();
        let mut newest = None;
        for (r, apply) in &settled.foreign {
            if *apply {
                self.apply_foreign(r);
            }
            events.extend(Event::from_record(r));
            newest = Some(r.seq);
        }
        // A unit may be committed by an earlier commit than the one its reply waits for (a
        // commit takes every unit staged when it starts, and reads commit too), so lost races
        // are kept for the next commit's replies as well.
        self.ledger.flushes += 1;
        let flushes = self.ledger.flushes;
        self.ledger
            .conflicts
            .retain(|_, (at, _)| *at + 1 >= flushes);
        for (a, apply) in settled.dropped {
            if apply {
                self.adopt(a.clone());
            }
            self.ledger.conflicts.insert(a.id, (flushes, a));
        }
        let conflicts: HashMap<Uuid, Approval> = self
            .ledger
            .conflicts
            .iter()
            .map(|(id, (_, a))| (*id, a.clone()))
            .collect();
        match settled.own {
            Some(own) => {
                events.extend(own.iter().filter_map(Event::from_record));
                if let Some(r) = own.last() {
                    newest = Some(r.seq);
                }
            }
            None => {
                events.extend(batch.events);
                if batch.writes > 0 {
                    newest = Some(batch.last_seq);
                }
            }
        }
        if let Some(seq) = newest {
            self.ledger.published = self.ledger.published.max(seq);
            // Other daemons' records count in the chain this one numbers from.
            self.ledger.seq = self.ledger.seq.max(seq);
        }
        for e in events {
            let _ = self.ledger.events.send(e);
        }
        if !self.stopping {
            for run in settled.taken {
                self.take_over_run(run);
            }
        }
        if let Some(n) = &self.notifier {
            for notice in batch.notices {
                n.send(notice);
            }
        }
        for id in &settled.lost_runs {
            if self.runs.active.remove(id).is_some() {
                tracing::warn!(
                    "run {id} was taken over by another daemon while this one stalled past its \
                     lease; it is no longer driven here"
                );
            }
        }
        let outcome = Outcome::Durable {
            conflicts: &conflicts,
            published: self.ledger.published,
            lost_runs: &settled.lost_runs,
        };
        for r in batch.replies {
            r(&outcome);
        }
        // What parked submissions waited for has been read: evaluate them now.
        for cmd in parked {
            if let Command::Submit { who, req, reply } = cmd {
                let r = self.submit(&who, req);
                self.reply(reply, r);
            } else {
                self.handle(cmd);
            }
        }
    }

    /// Nothing more can be promised: refuse everything and tell the process to stop.
    fn flush_failed(&mut self, mut batch: Batch, msg: String) {
        tracing::error!("{msg}");
        let mut parked = std::mem::take(&mut batch.parked);
        for f in &mut self.ledger.commit.in_flight {
            parked.append(&mut f.batch.parked);
        }
        parked.append(&mut self.ledger.commit.open.parked);
        let failed = Outcome::Failed(&msg);
        for r in batch.replies {
            r(&failed);
        }
        // Later batches cannot be durable either: their flushes came after this one.
        for f in std::mem::take(&mut self.ledger.commit.in_flight) {
            for r in f.batch.replies {
                r(&failed);
            }
        }
        for r in std::mem::take(&mut self.ledger.commit.open.replies) {
            r(&failed);
        }
        self.ledger.failed = Some(msg.clone());
        // Parked commands are refused like every other command while the store is down.
        for cmd in parked {
            self.handle(cmd);
        }
        // Tools whose start was waiting on this flush never start.
        self.runs.tools_running = 0;
        if self.ledger.store.shared() {
            // The database is elsewhere and may come back: refuse work (503) until it does,
            // then reload (see `recover`).
            tracing::warn!("refusing writes until the database answers again");
            return;
        }
        let _ = self.ledger.fatal.send(Some(msg));
    }

    /// On a shared store after a failed commit: once the database answers, drop what was not
    /// acknowledged, reload every part from the database and serve again. Returns whether it
    /// did.
    pub(super) fn recover(&mut self) -> bool {
        if let Err(e) = self.ledger.store.reconnect() {
            tracing::debug!("the database still does not answer: {e}");
            return false;
        }
        let failed = Outcome::Failed("the store lost its database; try again");
        for r in std::mem::take(&mut self.ledger.commit.open).replies {
            r(&failed);
        }
        let unauthenticated = self.approvals.unauthenticated.take();
        self.approvals = Approvals {
            unauthenticated,
            ..Approvals::for_store(&self.ledger.store)
        };
        self.runs.active.clear();
        self.runs.recent.clear();
        match self.load() {
            Ok(()) => {
                tracing::info!(
                    "the database answers again: reloaded (audit position {})",
                    self.ledger.seq
                );
                self.ledger.failed = None;
                self.resume_runs();
                true
            }
            Err(e) => {
                tracing::warn!("reloading from the database failed: {e}");
                false
            }
        }
    }

    /// A record another daemon wrote: redo in memory what it describes (each record carries
    /// its approval as written, and any grant it made or withdrew).
    fn apply_foreign(&mut self, r: &AuditRecord) {
        let grant = r
            .details
            .get("grant")
            .and_then(|g| serde_json::from_value::<Grant>(g.clone()).ok());
        if let Some(g) = grant {
            if r.kind == AuditKind::GrantRevoked {
                self.forget_grant(&g);
            } else {
                self.keep_grant(g);
            }
        }
        let Some(a) = r.approval() else {
            return;
        };
        // Policies' approvals count toward `max_per_hour` on every daemon.
        if r.kind == AuditKind::ApprovalDecided
            && r.actor.starts_with("policy:")
            && a.status == ApprovalStatus::Approved
            && let (Some(name), Some(rule)) = (&a.policy.name, a.policy.rule)
        {
            self.approvals.limits.record(name, rule, r.at);
        }
        self.adopt(a);
    }

    /// Take the approval as the database has it into memory, replacing this runner's copy.
    pub(super) fn adopt(&mut self, a: Approval) {
        self.approvals.pending.remove(&a.id);
        self.approvals.recent.retain(|r| r.id != a.id);
        if a.is_pending() {
            self.approvals.pending.insert(a);
        } else {
            self.wake_waiters_now(&a);
            self.remember(a.clone());
            self.approval_settled(&a);
        }
    }
}
