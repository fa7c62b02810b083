//! Group commit: replies and events wait for the flush that makes their writes durable.

use crate::domain::Event;
use crate::store::Syncer;
use tokio::task::JoinHandle;

/// Sends one reply: with `None` when its writes are durable, with the error otherwise.
pub type Deferred = Box<dyn FnOnce(Option<&str>) + Send>;

#[derive(Default)]
pub struct Batch {
    pub replies: Vec<Deferred>,
    pub events: Vec<Event>,
    pub writes: usize,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.writes == 0
    }
}

/// The pipeline: `open` collects what the next flush covers; `in_flight` is being flushed.
#[derive(Default)]
pub struct GroupCommit {
    pub open: Batch,
    pub in_flight: Option<(Batch, JoinHandle<std::io::Result<()>>, std::time::Instant)>,
}

impl GroupCommit {
    /// Queue a reply behind every write applied so far.
    pub fn defer(&mut self, reply: Deferred) {
        if self.open.writes > 0 {
            self.open.replies.push(reply);
        } else if let Some((batch, _, _)) = &mut self.in_flight {
            batch.replies.push(reply);
        } else {
            reply(None);
        }
    }

    pub fn wrote(&mut self, event: Option<Event>) {
        self.open.writes += 1;
        if let Some(e) = event {
            self.open.events.push(e);
        }
    }

    /// Start a flush when there is something to flush and none is running.
    pub fn maybe_start(&mut self, syncer: &Syncer) {
        if self.in_flight.is_some() || self.open.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.open);
        let syncer = syncer.clone();
        let task = tokio::task::spawn_blocking(move || syncer.sync());
        self.in_flight = Some((batch, task, std::time::Instant::now()));
    }
}
