//! The pending approvals the runner tracks: a compact entry for every one, and the whole
//! approval only for the most recently written few.
//!
//! A decoded approval costs about 2.5 KB, so holding 200,000 of them took most of a start's
//! half a gigabyte and, under load, every new one was fresh memory the kernel had to zero.
//! The entry keeps what the runner filters and schedules by (queue, requester, run); the rest
//! is read back from the store on demand. That needs a store that reads locally and sees its
//! own writes before they are flushed (sled); on a shared store (PostgreSQL) a read is a round
//! trip, and another daemon may be mid-write, so there every approval stays held.

use crate::domain::{Approval, PendingSummary, Timestamp};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use uuid::Uuid;

/// How many whole approvals a runner on a local store holds: the newest written, which are
/// the ones reviewers and deadlines touch most.
pub(in crate::runner) const HELD: usize = 4096;

/// What the runner keeps of every pending approval.
pub(super) struct Entry {
    pub queue: Arc<str>,
    pub requested_by: Arc<str>,
    /// The run that asked, as written in the approval (each its own: not shared).
    pub run_id: Option<Box<str>>,
    /// When the clock next acts on it (its escalation, else its expiry).
    pub deadline: Option<Timestamp>,
    held: Option<Box<Approval>>,
    /// Which write put it in (matches its place in `written`).
    write: u64,
}

impl Entry {
    /// The whole approval, when it is held.
    pub fn held(&self) -> Option<&Approval> {
        self.held.as_deref()
    }
}

pub(super) struct PendingBook {
    entries: BTreeMap<Uuid, Entry>,
    /// Every entry's deadline, soonest first.
    deadlines: BTreeSet<(Timestamp, Uuid)>,
    /// Held approvals in the order they were written (id, write number); what is let go
    /// goes from the front. An approval written again has an older place that no longer
    /// counts.
    written: VecDeque<(Uuid, u64)>,
    writes: u64,
    held: usize,
    /// At most this many approvals held; `None`: all of them (a shared store).
    cap: Option<usize>,
    /// Queue and identity names (a few, from the config), shared by every entry that
    /// carries them.
    names: HashSet<Arc<str>>,
}

impl PendingBook {
    pub fn new(cap: Option<usize>) -> PendingBook {
        PendingBook {
            entries: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            written: VecDeque::new(),
            writes: 0,
            held: 0,
            cap,
            names: HashSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn contains(&self, id: &Uuid) -> bool {
        self.entries.contains_key(id)
    }

    pub fn entry(&self, id: &Uuid) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// Entries in id (= creation) order, from `lower`.
    pub fn range(
        &self,
        lower: std::ops::Bound<Uuid>,
    ) -> impl Iterator<Item = (&Uuid, &Entry)> + '_ {
        self.entries.range((lower, std::ops::Bound::Unbounded))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, &Entry)> + '_ {
        self.entries.iter()
    }

    /// Track `a`, just written to the store, holding it whole.
    pub fn insert(&mut self, a: Approval) {
        let id = a.id;
        let entry = Entry {
            queue: self.name(&a.queue),
            requested_by: self.name(&a.requested_by),
            run_id: a.run_id.as_deref().map(Box::from),
            deadline: a.next_deadline(),
            held: Some(Box::new(a)),
            write: self.writes,
        };
        self.put(id, entry);
        self.held += 1;
        if self.cap.is_some() {
            self.written.push_back((id, self.writes));
            self.trim();
        }
        self.writes += 1;
    }

    /// Track a pending approval read at start without holding it.
    pub fn insert_summary(&mut self, s: PendingSummary) {
        let entry = Entry {
            queue: self.name(&s.queue),
            requested_by: self.name(&s.requested_by),
            deadline: s.next_deadline(),
            run_id: s.run_id.map(String::into_boxed_str),
            held: None,
            write: u64::MAX,
        };
        self.put(s.id, entry);
    }

    fn put(&mut self, id: Uuid, entry: Entry) {
        if let Some(at) = entry.deadline {
            self.deadlines.insert((at, id));
        }
        if let Some(old) = self.entries.insert(id, entry) {
            self.forget(id, &old);
        }
    }

    /// No longer pending.
    pub fn remove(&mut self, id: &Uuid) -> Option<Entry> {
        let old = self.entries.remove(id)?;
        self.forget(*id, &old);
        Some(old)
    }

    fn forget(&mut self, id: Uuid, old: &Entry) {
        if old.held.is_some() {
            self.held -= 1;
        }
        let now = self.entries.get(&id).and_then(|e| e.deadline);
        if let Some(at) = old.deadline
            && now != Some(at)
        {
            self.deadlines.remove(&(at, id));
        }
    }

    /// Put a deadline [`PendingBook::pop_due`] took back on the schedule.
    pub fn reschedule(&mut self, at: Timestamp, id: Uuid) {
        if self
            .entries
            .get(&id)
            .is_some_and(|e| e.deadline == Some(at))
        {
            self.deadlines.insert((at, id));
        }
    }

    /// The soonest deadline of any pending approval.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// The soonest deadline at or before `now`, taken off the schedule (the approval stays
    /// tracked until it is written again or removed).
    pub fn pop_due(&mut self, now: Timestamp) -> Option<(Timestamp, Uuid)> {
        let &(at, _) = self.deadlines.first()?;
        if at > now {
            return None;
        }
        self.deadlines.pop_first()
    }

    /// Let go of the oldest held approvals beyond the cap.
    fn trim(&mut self) {
        let Some(cap) = self.cap else { return };
        while self.held > cap || self.written.len() > 2 * cap + 16 {
            let Some((id, write)) = self.written.pop_front() else {
                break;
            };
            if let Some(e) = self.entries.get_mut(&id)
                && e.write == write
                && e.held.take().is_some()
            {
                self.held -= 1;
            }
        }
    }

    fn name(&mut self, s: &str) -> Arc<str> {
        if let Some(n) = self.names.get(s) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(s);
        // Names of approvals long gone would pile up: start over now and then (entries keep
        // their own copies alive; only the sharing of new ones restarts).
        if self.names.len() >= 4 * HELD {
            self.names.clear();
        }
        self.names.insert(n.clone());
        n
    }

    /// How many whole approvals are held (for tests and the log).
    pub fn held_count(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(n: u128, queue: &str) -> Approval {
        let mut a: Approval = serde_json::from_value(serde_json::json!({
            "id": Uuid::from_u128(n),
            "tool": "t",
            "arguments": {},
            "arguments_sha256": "",
            "requested_by": "bot",
            "queue": queue,
            "tier": 0,
            "policy": {"name": null, "reason": "no policy matched"},
            "created_at": "2026-11-30T00:00:00Z",
            "status": "pending",
        }))
        .expect("a valid approval");
        a.id = Uuid::from_u128(n);
        a
    }

    #[test]
    fn holds_at_most_the_cap_and_keeps_every_entry() {
        let mut book = PendingBook::new(Some(3));
        for n in 1..=10 {
            book.insert(approval(n, "billing"));
        }
        assert_eq!(book.len(), 10);
        assert_eq!(book.held_count(), 3);
        // The newest three are held, the older ones only indexed.
        assert!(
            book.entry(&Uuid::from_u128(10))
                .and_then(Entry::held)
                .is_some()
        );
        assert!(
            book.entry(&Uuid::from_u128(7))
                .and_then(Entry::held)
                .is_none()
        );
        let first = book.entry(&Uuid::from_u128(1)).map(|e| e.queue.to_string());
        assert_eq!(first.as_deref(), Some("billing"));
        book.remove(&Uuid::from_u128(10));
        assert_eq!(book.held_count(), 2);
        // Written again: held again, and counted once.
        book.insert(approval(9, "ops"));
        assert_eq!(book.held_count(), 2);
        assert_eq!(book.len(), 9);
    }

    #[test]
    fn deadlines_follow_the_entries() {
        let at = |m: i64| {
            chrono::DateTime::from_timestamp(1_800_000_000 + m * 60, 0).expect("a valid instant")
        };
        let mut book = PendingBook::new(Some(8));
        let mut a = approval(1, "billing");
        a.expires_at = Some(at(10));
        book.insert(a.clone());
        let mut b = approval(2, "billing");
        b.escalates_at = Some(at(5));
        book.insert(b);
        assert_eq!(book.next_deadline(), Some(at(5)));
        // Written again with a later deadline: the old one is gone from the schedule.
        a.escalates_at = Some(at(20));
        book.insert(a);
        book.remove(&Uuid::from_u128(2));
        assert_eq!(book.next_deadline(), Some(at(20)));
        assert_eq!(book.pop_due(at(19)), None);
        assert_eq!(book.pop_due(at(20)), Some((at(20), Uuid::from_u128(1))));
        assert_eq!(book.next_deadline(), None);
        assert!(book.contains(&Uuid::from_u128(1)));
    }

    #[test]
    fn a_shared_store_holds_everything() {
        let mut book = PendingBook::new(None);
        for n in 1..=100 {
            book.insert(approval(n, "billing"));
        }
        assert_eq!(book.held_count(), 100);
        assert!(book.written.is_empty());
    }

    #[test]
    fn rewriting_one_approval_does_not_grow_without_bound() {
        let mut book = PendingBook::new(Some(4));
        for _ in 0..1000 {
            book.insert(approval(1, "billing"));
        }
        assert!(book.written.len() <= 2 * 4 + 16);
        assert_eq!(book.held_count(), 1);
    }
}
