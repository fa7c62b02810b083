//! What gatehouse counts, kept in `prometheus-client` metrics that every part updates in place
//! (the runner, the HTTP API, the webhook notifier) and `/metrics` encodes.
//!
//! Counters and histograms are live atomics: nothing is copied per scrape. The few figures
//! that are facts about the runner's state (pending approvals by queue, active runs, the audit
//! head) are gauges the runner sets when asked at scrape time, so they cannot drift from the
//! state they describe.
//!
//! Label values are bounded by construction: outcomes, reasons and statuses are fixed words,
//! queue labels are configured queue names (or `other`), server labels configured MCP servers.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Status {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolResult {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Queue {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Server {
    pub server: String,
}

/// Submission latency buckets (seconds): a durable submission takes milliseconds.
const SUBMIT_BOUNDS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];
/// Time-to-decision buckets (seconds): people take seconds to hours.
const DECISION_BOUNDS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
];

/// Every metric, shared by cloning (the registry holds the same atomics).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

pub struct Inner {
    registry: Registry,
    /// The series of fixed label words, looked up without the family's lock.
    fixed: Vec<(&'static str, &'static str, Counter)>,
    pub submissions: Family<Outcome, Counter>,
    pub decisions: Family<Outcome, Counter>,
    pub escalations: Counter,
    pub refused: Family<Reason, Counter>,
    pub commits: Counter,
    pub committed_writes: Counter,
    pub commit_seconds: Counter<f64, AtomicU64>,
    pub runner_busy_seconds: Counter<f64, AtomicU64>,
    pub submit_seconds: Histogram,
    pub decision_seconds: Histogram,
    pub audit_seq: Gauge,
    pub pending: Family<Queue, Gauge>,
    pub event_subscribers: Gauge,
    pub approval_waiters: Gauge,
    pub webhook: Family<Outcome, Counter>,
    pub runs: Family<Status, Gauge>,
    pub runs_ended: Family<Status, Counter>,
    pub tool_calls: Family<ToolResult, Counter>,
    pub mcp_server_up: Family<Server, Gauge>,
    pub mcp_server_restarts: Family<Server, Counter>,
}

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let submissions = Family::<Outcome, Counter>::default();
        registry.register(
            "gatehouse_submissions",
            "Approval requests by outcome",
            submissions.clone(),
        );
        let decisions = Family::<Outcome, Counter>::default();
        registry.register(
            "gatehouse_decisions",
            "Approvals decided, by outcome (an escalation is not a decision)",
            decisions.clone(),
        );
        let escalations = Counter::default();
        registry.register(
            "gatehouse_escalations",
            "Approvals moved to the next escalation tier",
            escalations.clone(),
        );
        let refused = Family::<Reason, Counter>::default();
        registry.register(
            "gatehouse_refused",
            "Refused requests by reason (bad_request: malformed or invalid bodies, 400/413/415/422)",
            refused.clone(),
        );
        let commits = Counter::default();
        registry.register(
            "gatehouse_commits",
            "Group commits (flush + fsync, or one database transaction)",
            commits.clone(),
        );
        let committed_writes = Counter::default();
        registry.register(
            "gatehouse_committed_writes",
            "Writes made durable by group commits",
            committed_writes.clone(),
        );
        let commit_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "gatehouse_commit_seconds",
            "Time spent in group commits",
            commit_seconds.clone(),
        );
        let runner_busy_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "gatehouse_runner_busy_seconds",
            "Time the runner spent handling commands and commits: it makes every change, one at a time, so near one second per second it is what limits the daemon",
            runner_busy_seconds.clone(),
        );
        let submit_seconds = Histogram::new(SUBMIT_BOUNDS);
        registry.register(
            "gatehouse_submit_seconds",
            "Durable submission latency",
            submit_seconds.clone(),
        );
        let decision_seconds = Histogram::new(DECISION_BOUNDS);
        registry.register(
            "gatehouse_decision_seconds",
            "Time from request to a human decision",
            decision_seconds.clone(),
        );
        let audit_seq = Gauge::default();
        registry.register(
            "gatehouse_audit_seq",
            "Sequence number of the last audit record",
            audit_seq.clone(),
        );
        let pending = Family::<Queue, Gauge>::default();
        registry.register(
            "gatehouse_pending",
            "Pending approvals by queue (queues not in the config count as \"other\")",
            pending.clone(),
        );
        let event_subscribers = Gauge::default();
        registry.register(
            "gatehouse_event_subscribers",
            "Open event streams, consoles and hook waits (each holds one subscription to the event feed)",
            event_subscribers.clone(),
        );
        let approval_waiters = Gauge::default();
        registry.register(
            "gatehouse_approval_waiters",
            "Open long polls (?wait=), each waiting for one pending approval's decision",
            approval_waiters.clone(),
        );
        let webhook = Family::<Outcome, Counter>::default();
        registry.register(
            "gatehouse_webhook",
            "Webhook notices by outcome",
            webhook.clone(),
        );
        let runs = Family::<Status, Gauge>::default();
        registry.register(
            "gatehouse_runs",
            "Active agent runs by status",
            runs.clone(),
        );
        let runs_ended = Family::<Status, Counter>::default();
        registry.register(
            "gatehouse_runs_ended",
            "Finished runs by outcome",
            runs_ended.clone(),
        );
        let tool_calls = Family::<ToolResult, Counter>::default();
        registry.register(
            "gatehouse_tool_calls",
            "Tool calls of runs by result",
            tool_calls.clone(),
        );
        let mcp_server_up = Family::<Server, Gauge>::default();
        registry.register(
            "gatehouse_mcp_server_up",
            "Whether an MCP server is ready",
            mcp_server_up.clone(),
        );
        let mcp_server_restarts = Family::<Server, Counter>::default();
        registry.register(
            "gatehouse_mcp_server_restarts",
            "Restarts of an MCP server",
            mcp_server_restarts.clone(),
        );
        // Families with fixed label words show every series from the start, at 0, so a
        // dashboard's rate() sees the first event; the hot ones are kept at hand.
        let mut fixed = Vec::new();
        for outcome in [
            "queued",
            "auto_approved",
            "auto_denied",
            "idempotent_replay",
        ] {
            let c = submissions.get_or_create_owned(&Outcome { outcome });
            fixed.push(("submissions", outcome, c));
        }
        for outcome in ["approved", "denied", "expired"] {
            let c = decisions.get_or_create_owned(&Outcome { outcome });
            fixed.push(("decisions", outcome, c));
        }
        for reason in [
            "unauthorized",
            "forbidden",
            "host",
            "origin",
            "bad_request",
            "decision_audited",
            "decision_not_audited",
        ] {
            let c = refused.get_or_create_owned(&Reason { reason });
            fixed.push(("refused", reason, c));
        }
        for outcome in ["sent", "failed", "retried", "dropped"] {
            let c = webhook.get_or_create_owned(&Outcome { outcome });
            fixed.push(("webhook", outcome, c));
        }
        for status in ["running", "pending_approval"] {
            runs.get_or_create_owned(&Status { status });
        }
        for status in ["completed", "failed", "cancelled"] {
            let c = runs_ended.get_or_create_owned(&Status { status });
            fixed.push(("runs_ended", status, c));
        }
        for result in ["ok", "error"] {
            let c = tool_calls.get_or_create_owned(&ToolResult { result });
            fixed.push(("tool_calls", result, c));
        }
        Metrics(Arc::new(Inner {
            registry,
            fixed,
            submissions,
            decisions,
            escalations,
            refused,
            commits,
            committed_writes,
            commit_seconds,
            runner_busy_seconds,
            submit_seconds,
            decision_seconds,
            audit_seq,
            pending,
            event_subscribers,
            approval_waiters,
            webhook,
            runs,
            runs_ended,
            tool_calls,
            mcp_server_up,
            mcp_server_restarts,
        }))
    }

    /// The counter of a fixed label word of a family (`submissions`, `decisions`,
    /// `refused`, `webhook`, `runs_ended`, `tool_calls`).
    fn fixed(&self, family: &str, label: &str) -> Option<&Counter> {
        self.fixed
            .iter()
            .find(|(f, l, _)| *f == family && *l == label)
            .map(|(_, _, c)| c)
    }

    fn bump(&self, family: &str, label: &'static str) {
        match self.fixed(family, label) {
            Some(c) => {
                c.inc();
            }
            // Every caller passes one of the words registered above; a new word is a bug
            // worth a log line, not a crash.
            None => tracing::warn!("metrics: no series {family}{{{label}}}"),
        }
    }

    pub fn submitted(&self, outcome: &'static str) {
        self.bump("submissions", outcome);
    }

    pub fn decided(&self, outcome: &'static str) {
        self.bump("decisions", outcome);
    }

    pub fn refusal(&self, reason: &'static str) {
        self.bump("refused", reason);
    }

    pub fn webhook(&self, outcome: &'static str) {
        self.bump("webhook", outcome);
    }

    pub fn run_ended(&self, status: &'static str) {
        self.bump("runs_ended", status);
    }

    pub fn tool_call(&self, ok: bool) {
        self.bump("tool_calls", if ok { "ok" } else { "error" });
    }

    /// A fixed series' current value (0 for a word not registered), for tests and summaries.
    pub fn value(&self, family: &str, label: &str) -> u64 {
        self.fixed(family, label).map_or(0, |c| c.get())
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_series_show_at_zero_and_count() {
        let m = Metrics::new();
        let before = m.encode();
        assert!(
            before.contains("gatehouse_submissions_total{outcome=\"queued\"} 0\n"),
            "{before}"
        );
        m.submitted("queued");
        m.refusal("host");
        m.decision_seconds.observe(2.0);
        let after = m.encode();
        assert!(
            after.contains("gatehouse_submissions_total{outcome=\"queued\"} 1\n"),
            "{after}"
        );
        assert!(after.contains("gatehouse_refused_total{reason=\"host\"} 1\n"));
        assert!(after.contains("gatehouse_decision_seconds_bucket{le=\"5.0\"} 1\n"));
        assert!(after.ends_with("# EOF\n"), "{after}");
        assert_eq!(m.value("submissions", "queued"), 1);
        assert_eq!(m.value("submissions", "no_such_word"), 0);
    }
}
