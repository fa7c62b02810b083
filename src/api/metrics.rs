//! `GET /metrics`: Prometheus text exposition.

//!
//! Hand-written rather than through `prometheus-client`: the values are snapshots the runner
//! already keeps (one `Metrics` reply per scrape), not live registries, and every family goes
//! through [`family`], so HELP and TYPE cannot be forgotten.

use super::routes::Caller;
use super::{ApiError, ApiState};
use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The `queue` label of approvals pending in a queue the config does not name.
const OTHER_QUEUE: &str = "other";

const BOUNDS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// A fixed-bucket latency histogram, lock-free.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 10],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, secs: f64) {
        for (i, b) in BOUNDS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Starts a metric family: every family gets both its HELP and its TYPE line.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `/metrics` needs the token of any identity unless `[server] public_metrics = true`
/// (DESIGN §9): queue names and counts say what an organisation gates.
pub async fn render(State(state): State<ApiState>, mut parts: Parts) -> Result<Response, ApiError> {
    if !state.inner.public_metrics {
        Caller::from_request_parts(&mut parts, &state).await?;
    }
    Ok(exposition(&state).await.into_response())
}

async fn exposition(state: &ApiState) -> impl IntoResponse {
    let c = &state.inner.counters;
    let mut out = String::new();
    let m = state.inner.runner.metrics().await.unwrap_or_default();
    family(
        &mut out,
        "gatehouse_pending",
        "gauge",
        "Pending approvals by queue (queues not in the config count as \"other\").",
    );
    // Only configured names become label values, so submitters cannot mint series; every
    // configured queue is shown, at 0 when empty.
    let mut pending: BTreeMap<&str, u64> = state
        .inner
        .metric_queues
        .iter()
        .map(|q| (q.as_str(), 0))
        .collect();
    for (q, n) in &m.pending_by_queue {
        let label = if state.inner.metric_queues.contains(q) {
            q.as_str()
        } else {
            OTHER_QUEUE
        };
        *pending.entry(label).or_default() += *n as u64;
    }
    for (q, n) in &pending {
        let _ = writeln!(out, "gatehouse_pending{{queue=\"{}\"}} {n}", escape(q));
    }
    family(
        &mut out,
        "gatehouse_event_subscribers",
        "gauge",
        "Open event streams, consoles and hook waits (each holds one subscription to the event feed).",
    );
    let _ = writeln!(
        out,
        "gatehouse_event_subscribers {}",
        state.inner.runner.subscribers()
    );
    family(
        &mut out,
        "gatehouse_approval_waiters",
        "gauge",
        "Open long polls (?wait=), each waiting for one pending approval's decision.",
    );
    let _ = writeln!(out, "gatehouse_approval_waiters {}", m.approval_waiters);
    family(
        &mut out,
        "gatehouse_submissions_total",
        "counter",
        "Approval requests by outcome.",
    );
    for (k, v) in [
        ("queued", m.submitted),
        ("auto_approved", m.auto_approved),
        ("auto_denied", m.auto_denied),
        ("idempotent_replay", m.replayed),
    ] {
        let _ = writeln!(out, "gatehouse_submissions_total{{outcome=\"{k}\"}} {v}");
    }
    family(
        &mut out,
        "gatehouse_decisions_total",
        "counter",
        "Approvals decided, by outcome (an escalation is not a decision).",
    );
    for (k, v) in [
        ("approved", m.approved),
        ("denied", m.denied),
        ("expired", m.expired),
    ] {
        let _ = writeln!(out, "gatehouse_decisions_total{{outcome=\"{k}\"}} {v}");
    }
    family(
        &mut out,
        "gatehouse_escalations_total",
        "counter",
        "Approvals moved to the next escalation tier.",
    );
    let _ = writeln!(out, "gatehouse_escalations_total {}", m.escalated);
    family(
        &mut out,
        "gatehouse_refused_total",
        "counter",
        "Refused requests by reason (bad_request: malformed or invalid bodies, 400/413/415/422).",
    );
    for (k, v) in [
        ("unauthorized", c.unauthorized.load(Ordering::Relaxed)),
        ("forbidden", c.forbidden.load(Ordering::Relaxed)),
        ("host", c.host_refused.load(Ordering::Relaxed)),
        ("origin", c.origin_refused.load(Ordering::Relaxed)),
        ("bad_request", c.bad_requests.load(Ordering::Relaxed)),
        (
            "decision_audited",
            m.refused_decisions - m.refusals_not_audited,
        ),
        ("decision_not_audited", m.refusals_not_audited),
    ] {
        let _ = writeln!(out, "gatehouse_refused_total{{reason=\"{k}\"}} {v}");
    }
    family(
        &mut out,
        "gatehouse_commits_total",
        "counter",
        "Group commits (flush + fsync).",
    );
    let _ = writeln!(out, "gatehouse_commits_total {}", m.flushes);
    family(
        &mut out,
        "gatehouse_committed_writes_total",
        "counter",
        "Writes made durable by group commits.",
    );
    let _ = writeln!(out, "gatehouse_committed_writes_total {}", m.flushed_writes);
    family(
        &mut out,
        "gatehouse_commit_seconds_total",
        "counter",
        "Time spent in group commits.",
    );
    let _ = writeln!(out, "gatehouse_commit_seconds_total {:.6}", m.flush_seconds);
    family(
        &mut out,
        "gatehouse_submit_seconds",
        "histogram",
        "Durable submission latency.",
    );
    for (i, b) in BOUNDS.iter().enumerate() {
        let _ = writeln!(
            out,
            "gatehouse_submit_seconds_bucket{{le=\"{b}\"}} {}",
            c.submit_latency.buckets[i].load(Ordering::Relaxed)
        );
    }
    let count = c.submit_latency.count.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "gatehouse_submit_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "gatehouse_submit_seconds_sum {:.6}",
        c.submit_latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "gatehouse_submit_seconds_count {count}");
    family(
        &mut out,
        "gatehouse_decision_seconds",
        "histogram",
        "Time from request to a human decision.",
    );
    for (b, n) in &m.decision_latency_buckets {
        let _ = writeln!(out, "gatehouse_decision_seconds_bucket{{le=\"{b}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "gatehouse_decision_seconds_bucket{{le=\"+Inf\"}} {}",
        m.decision_latency_count
    );
    let _ = writeln!(
        out,
        "gatehouse_decision_seconds_sum {:.3}",
        m.decision_latency_sum
    );
    let _ = writeln!(
        out,
        "gatehouse_decision_seconds_count {}",
        m.decision_latency_count
    );
    family(
        &mut out,
        "gatehouse_audit_seq",
        "gauge",
        "Sequence number of the last audit record.",
    );
    let _ = writeln!(out, "gatehouse_audit_seq {}", m.last_seq);
    family(
        &mut out,
        "gatehouse_webhook_total",
        "counter",
        "Webhook notices by outcome.",
    );
    for (k, v) in [
        ("sent", m.notify_sent),
        ("failed", m.notify_failed),
        ("retried", m.notify_retries),
        ("dropped", m.notify_dropped),
    ] {
        let _ = writeln!(out, "gatehouse_webhook_total{{outcome=\"{k}\"}} {v}");
    }
    family(
        &mut out,
        "gatehouse_runs",
        "gauge",
        "Active agent runs by status.",
    );
    for status in ["running", "pending_approval"] {
        let n = m.runs_active.get(status).copied().unwrap_or(0);
        let _ = writeln!(out, "gatehouse_runs{{status=\"{status}\"}} {n}");
    }
    family(
        &mut out,
        "gatehouse_runs_ended_total",
        "counter",
        "Finished runs by outcome.",
    );
    for status in ["completed", "failed", "cancelled"] {
        let n = m.runs_ended.get(status).copied().unwrap_or(0);
        let _ = writeln!(out, "gatehouse_runs_ended_total{{status=\"{status}\"}} {n}");
    }
    family(
        &mut out,
        "gatehouse_tool_calls_total",
        "counter",
        "Tool calls of runs by result.",
    );
    let _ = writeln!(
        out,
        "gatehouse_tool_calls_total{{result=\"ok\"}} {}\ngatehouse_tool_calls_total{{result=\"error\"}} {}",
        m.tools_ok, m.tools_failed
    );
    let servers = state.inner.runner.mcp_status();
    if !servers.is_empty() {
        family(
            &mut out,
            "gatehouse_mcp_server_up",
            "gauge",
            "Whether an MCP server is ready.",
        );
        for s in &servers {
            let up = matches!(s.state, crate::tools::mcp::McpServerState::Ready) as u8;
            let _ = writeln!(
                out,
                "gatehouse_mcp_server_up{{server=\"{}\"}} {up}",
                escape(&s.name)
            );
        }
        family(
            &mut out,
            "gatehouse_mcp_server_restarts_total",
            "counter",
            "Restarts of an MCP server.",
        );
        for s in &servers {
            let _ = writeln!(
                out,
                "gatehouse_mcp_server_restarts_total{{server=\"{}\"}} {}",
                escape(&s.name),
                s.restarts
            );
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// The queue names `/metrics` may use as label values: every `[[escalation]]` queue, every
/// rule's queue, and `default` when no tiers are configured (DESIGN §4).
pub fn configured_queues(cfg: &crate::config::Config) -> HashSet<String> {
    let mut q: HashSet<String> = cfg
        .escalation
        .iter()
        .map(|t| t.queue.get_ref().clone())
        .collect();
    q.extend(
        cfg.policies
            .iter()
            .flat_map(|p| p.rules.iter().filter_map(|r| r.queue.clone())),
    );
    if cfg.escalation.is_empty() {
        q.insert("default".to_string());
    }
    q
}
