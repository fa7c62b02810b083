//! A clock tests move by hand: escalation and expiry are tested by setting the time, never
//! by sleeping. The runner notices moved time when it next handles a command (what fell due
//! before a command arrived happens first).

use super::Clock;
use crate::domain::Timestamp;
use std::sync::{Arc, Mutex};

/// A clock the test moves by hand.
#[derive(Clone)]
pub struct TestClock(Arc<Mutex<Timestamp>>);

impl TestClock {
    pub fn new() -> TestClock {
        TestClock(Arc::new(Mutex::new(crate::domain::now())))
    }

    pub fn clock(&self) -> Clock {
        let t = self.0.clone();
        Clock::new(move || *t.lock().unwrap())
    }

    pub fn start(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }

    /// Set the clock to `ms` milliseconds after `from`.
    pub fn at(&self, from: Timestamp, ms: i64) {
        *self.0.lock().unwrap() = from + chrono::Duration::milliseconds(ms);
    }
}
