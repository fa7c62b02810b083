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

/// Sends one reply: with `None` when its writes are durable, with the error otherwise.
pub type Deferred = Box<dyn FnOnce(Option<&str>) + Send>;

#[derive(Default)]
pub struct Batch {
    pub replies: Vec<Deferred>,
    pub events: Vec<Event>,
    pub notices: Vec<crate::notify::Notice>,
    pub writes: usize,
}

pub struct InFlight {
    pub batch: Batch,
    pub task: JoinHandle<std::io::Result<()>>,
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
    pub fn defer(&mut self, reply: Deferred) {
        if self.open.writes > 0 {
            self.open.replies.push(reply);
        } else if let Some(newest) = self.in_flight.back_mut() {
            newest.batch.replies.push(reply);
        } else {
            reply(None);
        }
    }

    /// A webhook notice about the last write: sent once that write is durable.
    pub fn notice(&mut self, n: crate::notify::Notice) {
        self.open.notices.push(n);
    }

    pub fn wrote(&mut self, event: Option<Event>) {
        self.open.writes += 1;
        if let Some(e) = event {
            self.open.events.push(e);
        }
    }

    /// Start a flush when there is something to flush and a slot is free.
    pub fn maybe_start(&mut self, syncer: &Syncer) {
        if self.in_flight.len() >= MAX_IN_FLIGHT.min(syncer.max_in_flight())
            || self.open.writes == 0
        {
            return;
        }
        // Overlap only a batch worth a flush of its own; a small one waits for the running
        // flush to end (each flush also wakes every thread of sled's IO pool).
        if !self.in_flight.is_empty() && self.open.writes < MIN_OVERLAP_BATCH {
            return;
        }
        let batch = std::mem::take(&mut self.open);
        let task = syncer.commit();
        self.in_flight.push_back(InFlight {
            batch,
            task,
            started: Instant::now(),
        });
    }
}
