//! Group commit: replies and events wait for the flush that makes their writes durable.
//!
//! Up to [`MAX_IN_FLIGHT`] flushes overlap (sled's flush and fsync are safe from several
//! threads, and a device serves two syncs better than one after another); each covers every
//! write applied before it started, and batches are released strictly in the order they
//! started, so replies and events keep their order.

use crate::domain::Event;
use crate::store::Syncer;
use std::collections::VecDeque;
use std::time::Instant;
use tokio::task::JoinHandle;

pub const MAX_IN_FLIGHT: usize = 2;
pub const MIN_OVERLAP_BATCH: usize = 32;

/// How the commit a reply waited for ended.
pub enum Outcome<'a> {
    /// Durable. `conflicts`: approvals whose write in this commit did not apply because
    /// another daemon changed them first, as the database has them (always empty on sled).
    Durable {
        conflicts: &'a std::collections::HashMap<uuid::Uuid, crate::domain::Approval>,
        /// The newest record published so far.
        published: u64,
        /// Runs another daemon took over from this one: nothing more may happen in them here
        /// (a tool whose start waited on this commit does not start).
        lost_runs: &'a [uuid::Uuid],
    },
    Failed(&'a str),
}

/// Sends one reply once the commit it waits for has ended.
pub type Deferred = Box<dyn FnOnce(&Outcome<'_>) + Send>;

#[derive(Default)]
pub struct Batch {
    pub replies: Vec<Deferred>,
    pub events: Vec<Event>,
    pub notices: Vec<crate::notify::Notice>,
    pub writes: usize,
    /// The newest record written into this batch (as numbered before the commit).
    pub last_seq: u64,
    /// Commands that must see every other daemon's records committed before they arrived
    /// (a submission a `max_per_hour` rule may count): handled once this commit, which reads
    /// those records, has ended.
    pub parked: Vec<super::Command>,
    /// A reviewer's decision (or withdrawal, escalation) was written into this batch: it
    /// starts at once, beside the flushes in flight, rather than waiting for a slot.
    pub urgent: bool,
}

pub struct InFlight {
    pub batch: Batch,
    pub task: JoinHandle<std::io::Result<crate::store::Committed>>,
    pub started: Instant,
}

/// The pipeline: `open` collects what the next flush covers; `in_flight` are being flushed,
/// oldest first.
#[derive(Default)]
pub struct GroupCommit {
    pub open: Batch,
    pub in_flight: VecDeque<InFlight>,
}

impl GroupCommit {
    /// Queue a reply behind every write applied so far.
    pub fn defer(&mut self, reply: Deferred, published: u64) {
        if self.open.writes > 0 {
            self.open.replies.push(reply);
        } else if let Some(newest) = self.in_flight.back_mut() {
            newest.batch.replies.push(reply);
        } else {
            reply(&Outcome::Durable {
                conflicts: &Default::default(),
                published,
                lost_runs: &[],
            });
        }
    }

    /// A webhook notice about the last write: sent once that write is durable.
    pub fn notice(&mut self, n: crate::notify::Notice) {
        self.open.notices.push(n);
    }

    pub fn wrote(&mut self, seq: u64, event: Option<Event>) {
        self.open.writes += 1;
        self.open.last_seq = seq;
        if let Some(e) = event {
            self.open.events.push(e);
        }
    }

    /// Start a flush when there is something to flush and a slot is free. `poll`: on a
    /// shared store, start one even with nothing written, to read other daemons' records.
    /// Returns whether one started.
    pub fn maybe_start(&mut self, syncer: &Syncer, poll: bool) -> bool {
        let slots = MAX_IN_FLIGHT.min(syncer.max_in_flight());
        // One more slot for a decision, where flushes may overlap at all: its reply then
        // waits for one flush (and the ones before it, which started earlier), not for a
        // slot to free and then a flush.
        let urgent = self.open.urgent && self.open.writes > 0 && slots > 1;
        let slots = if urgent { slots + 1 } else { slots };
        if self.in_flight.len() >= slots {
            return false;
        }
        let read = (poll || !self.open.parked.is_empty()) && self.in_flight.is_empty();
        if self.open.writes == 0 && !read {
            return false;
        }
        // Overlap only a batch worth a flush of its own; a small one waits for the running
        // flush to end (each flush also wakes every thread of sled's IO pool).
        if !urgent && !self.in_flight.is_empty() && self.open.writes < MIN_OVERLAP_BATCH {
            return false;
        }
        let batch = std::mem::take(&mut self.open);
        let task = syncer.commit();
        self.in_flight.push_back(InFlight {
            batch,
            task,
            started: Instant::now(),
        });
        true
    }
}
