//! Long polls waiting for one approval to leave `pending`, registered by approval id.
//!
//! A long poll used to subscribe to the broadcast of every event and filter for its id: with
//! 10,000 of them open, each submission woke 10,000 tasks and cloned its event 10,000 times.
//! Here a waiter costs nothing until its own approval is decided, expires or is cancelled.

use super::super::commit::{Deferred, Outcome};
use super::*;
use std::collections::HashMap;
use tokio::sync::oneshot;

/// The waiters of pending approvals. A waiter whose long poll ended (timed out, client gone)
/// leaves a closed sender behind; those are swept as the map grows, so it stays bounded by
/// the long polls actually open (which the per-identity wait cap bounds in turn).
#[derive(Default)]
pub(super) struct Waiters {
    by_id: HashMap<Uuid, Vec<oneshot::Sender<Approval>>>,
    /// Senders registered since the last sweep of closed ones.
    since_sweep: usize,
}

/// Sweep closed senders after this many registrations, or after as many as are held.
const SWEEP_AT_LEAST: usize = 1024;

impl Waiters {
    fn register(&mut self, id: Uuid) -> oneshot::Receiver<Approval> {
        let (tx, rx) = oneshot::channel();
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_AT_LEAST.max(self.by_id.len()) {
            self.since_sweep = 0;
            self.by_id.retain(|_, v| {
                v.retain(|tx| !tx.is_closed());
                !v.is_empty()
            });
        }
        self.by_id.entry(id).or_default().push(tx);
        rx
    }

    fn take(&mut self, id: Uuid) -> Vec<oneshot::Sender<Approval>> {
        self.by_id.remove(&id).unwrap_or_default()
    }

    /// Waiters still listening (for tests and the bench's readiness check).
    pub(super) fn open(&self) -> usize {
        self.by_id
            .values()
            .flatten()
            .filter(|tx| !tx.is_closed())
            .count()
    }
}

impl Runner {
    /// The approval as it stands and, while it is pending, a receiver that gets it once it
    /// is no longer pending (decided, expired or cancelled) and that is durable.
    pub(super) fn watch(&mut self, id: Uuid) -> Result<Option<Watched>, RunnerError> {
        if let Some(current) = self.pending_approval(id)? {
            let decided = Some(self.approvals.waiters.register(id));
            return Ok(Some(Watched { current, decided }));
        }
        Ok(self.find(id)?.map(|current| Watched {
            current,
            decided: None,
        }))
    }

    /// `a`, no longer pending, was written by another daemon and is durable: its waiters
    /// here get it now.
    pub(super) fn wake_waiters_now(&mut self, a: &Approval) {
        for tx in self.approvals.waiters.take(a.id) {
            let _ = tx.send(a.clone());
        }
    }

    /// `a` was just written: if it left `pending`, its waiters get it once the write is
    /// durable (the same moment its event is published). A failed commit drops them, and
    /// their long polls read the runner's state, which then reports the failure.
    pub(super) fn wake_waiters(&mut self, a: &Approval) {
        if a.is_pending() {
            return;
        }
        let waiters = self.approvals.waiters.take(a.id);
        if waiters.is_empty() {
            return;
        }
        let a = a.clone();
        let reply: Deferred = Box::new(move |outcome| {
            if let Outcome::Durable { conflicts, .. } = outcome {
                // On a shared store this write may have lost to another daemon's: the
                // waiters get the approval as the database has it.
                let a = conflicts.get(&a.id).cloned().unwrap_or(a);
                for tx in waiters {
                    let _ = tx.send(a.clone());
                }
            }
        });
        self.ledger.commit.defer(reply, self.ledger.published);
    }
}
