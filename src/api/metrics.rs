//! `GET /metrics`: Prometheus text exposition.

use super::ApiState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

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

pub async fn render(State(state): State<ApiState>) -> Response {
    let c = &state.inner.counters;
    let mut out = String::new();
    let m = state.inner.runner.metrics().await.unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP gatehouse_pending Pending approvals by queue.\n# TYPE gatehouse_pending gauge"
    );
    for (q, n) in &m.pending_by_queue {
        let _ = writeln!(out, "gatehouse_pending{{queue=\"{}\"}} {n}", escape(q));
    }
    let _ = writeln!(
        out,
        "# HELP gatehouse_submissions_total Approval requests by outcome.\n# TYPE gatehouse_submissions_total counter"
    );
    for (k, v) in [
        ("queued", m.submitted),
        ("auto_approved", m.auto_approved),
        ("auto_denied", m.auto_denied),
        ("idempotent_replay", m.replayed),
    ] {
        let _ = writeln!(out, "gatehouse_submissions_total{{outcome=\"{k}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP gatehouse_decisions_total Decisions by outcome.\n# TYPE gatehouse_decisions_total counter"
    );
    for (k, v) in [
        ("approved", m.approved),
        ("denied", m.denied),
        ("expired", m.expired),
        ("escalated", m.escalated),
    ] {
        let _ = writeln!(out, "gatehouse_decisions_total{{outcome=\"{k}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP gatehouse_refused_total Refused requests.\n# TYPE gatehouse_refused_total counter"
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
    let _ = writeln!(
        out,
        "# HELP gatehouse_commits_total Group commits (flush + fsync).\n# TYPE gatehouse_commits_total counter\ngatehouse_commits_total {}\n# TYPE gatehouse_committed_writes_total counter\ngatehouse_committed_writes_total {}\n# TYPE gatehouse_commit_seconds_total counter\ngatehouse_commit_seconds_total {:.6}",
        m.flushes, m.flushed_writes, m.flush_seconds
    );
    let _ = writeln!(
        out,
        "# HELP gatehouse_submit_seconds Durable submission latency.\n# TYPE gatehouse_submit_seconds histogram"
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
    let _ = writeln!(
        out,
        "# HELP gatehouse_decision_seconds Time from request to a human decision.\n# TYPE gatehouse_decision_seconds histogram"
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
    let _ = writeln!(
        out,
        "# TYPE gatehouse_audit_seq gauge\ngatehouse_audit_seq {}",
        m.last_seq
    );
    let _ = writeln!(
        out,
        "# HELP gatehouse_webhook_total Webhook notices by outcome.\n# TYPE gatehouse_webhook_total counter"
    );
    for (k, v) in [
        ("sent", m.notify_sent),
        ("failed", m.notify_failed),
        ("retried", m.notify_retries),
        ("dropped", m.notify_dropped),
    ] {
        let _ = writeln!(out, "gatehouse_webhook_total{{outcome=\"{k}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP gatehouse_runs Active agent runs by status.\n# TYPE gatehouse_runs gauge"
    );
    for status in ["running", "pending_approval"] {
        let n = m.runs_active.get(status).copied().unwrap_or(0);
        let _ = writeln!(out, "gatehouse_runs{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP gatehouse_runs_ended_total Finished runs by outcome.\n# TYPE gatehouse_runs_ended_total counter"
    );
    for status in ["completed", "failed", "cancelled"] {
        let n = m.runs_ended.get(status).copied().unwrap_or(0);
        let _ = writeln!(out, "gatehouse_runs_ended_total{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP gatehouse_tool_calls_total Tool calls of runs by result.\n# TYPE gatehouse_tool_calls_total counter\ngatehouse_tool_calls_total{{result=\"ok\"}} {}\ngatehouse_tool_calls_total{{result=\"error\"}} {}",
        m.tools_ok, m.tools_failed
    );
    let servers = state.inner.runner.mcp_status();
    if !servers.is_empty() {
        let _ = writeln!(
            out,
            "# HELP gatehouse_mcp_server_up Whether an MCP server is ready.\n# TYPE gatehouse_mcp_server_up gauge"
        );
        for s in &servers {
            let up = matches!(s.state, crate::tools::mcp::McpServerState::Ready) as u8;
            let _ = writeln!(
                out,
                "gatehouse_mcp_server_up{{server=\"{}\"}} {up}",
                escape(&s.name)
            );
        }
        let _ = writeln!(out, "# TYPE gatehouse_mcp_server_restarts_total counter");
        for s in &servers {
            let _ = writeln!(
                out,
                "gatehouse_mcp_server_restarts_total{{server=\"{}\"}} {}",
                escape(&s.name),
                s.restarts
            );
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
