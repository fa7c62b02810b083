//! Sliding one-hour windows of auto-approvals per (policy, rule), for `max_per_hour`.

use crate::domain::Timestamp;
use std::collections::{HashMap, VecDeque};

/// The window a `max_per_hour` limit counts over.
pub const WINDOW_MS: i64 = 60 * 60 * 1000;

/// How many `record` calls between sweeps that drop windows gone quiet.
const SWEEP_EVERY: u32 = 1024;

/// Auto-approvals committed in the last hour, per policy and 1-based rule.
///
/// Memory is bounded by the approvals of the last hour: every `record` drops the
/// entries of its window that are an hour old or more, and every so often the
/// windows of all rules are pruned and empty ones forgotten.
#[derive(Clone, Default, Debug)]
pub struct RateLimits {
    windows: HashMap<String, HashMap<usize, VecDeque<i64>>>,
    /// Latest time seen by `record`, what sweeps prune against.
    latest_ms: i64,
    since_sweep: u32,
}

impl RateLimits {
    /// Note an auto-approval by rule `rule` (1-based) of `policy`, committed at `at`.
    pub fn record(&mut self, policy: &str, rule: usize, at: Timestamp) {
        let at_ms = at.timestamp_millis();
        self.latest_ms = self.latest_ms.max(at_ms);
        let window = match self.windows.get_mut(policy) {
            Some(rules) => rules.entry(rule).or_default(),
            None => self
                .windows
                .entry(policy.to_owned())
                .or_default()
                .entry(rule)
                .or_default(),
        };
        // Kept sorted, so pruning and counting only look at one end.
        match window.back() {
            Some(&last) if last > at_ms => {
                let pos = window.partition_point(|&t| t <= at_ms);
                window.insert(pos, at_ms);
            }
            _ => window.push_back(at_ms),
        }
        prune(window, self.latest_ms);

        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.since_sweep = 0;
            self.prune(at);
        }
    }

    /// Drop every entry an hour old or more at `now`, and windows left empty.
    pub fn prune(&mut self, now: Timestamp) {
        let now_ms = now.timestamp_millis().max(self.latest_ms);
        self.windows.retain(|_, rules| {
            rules.retain(|_, w| {
                prune(w, now_ms);
                !w.is_empty()
            });
            !rules.is_empty()
        });
    }

    /// Entries held, over all windows (what memory use is proportional to).
    pub fn retained(&self) -> usize {
        self.windows
            .values()
            .flat_map(|rules| rules.values())
            .map(VecDeque::len)
            .sum()
    }

    /// Auto-approvals by this rule within the hour before `now` (later ones count too:
    /// a clock that stepped back must not reopen the limit).
    pub fn count(&self, policy: &str, rule: usize, now: Timestamp) -> usize {
        let cutoff = now.timestamp_millis().saturating_sub(WINDOW_MS);
        self.windows
            .get(policy)
            .and_then(|rules| rules.get(&rule))
            .map(|w| w.len() - w.partition_point(|&t| t <= cutoff))
            .unwrap_or(0)
    }
}

fn prune(window: &mut VecDeque<i64>, now_ms: i64) {
    let cutoff = now_ms.saturating_sub(WINDOW_MS);
    while window.front().is_some_and(|&t| t <= cutoff) {
        window.pop_front();
    }
}
