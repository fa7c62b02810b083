//! `GET /metrics`: the OpenMetrics text of [`crate::metrics::Metrics`], encoded by
//! `prometheus-client`. Counters are live; the gauges about the runner's state are set by
//! the runner when asked, just before encoding, and the few about the HTTP side here.

use super::routes::Caller;
use super::{ApiError, ApiState};
use crate::metrics::Server;
use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

/// `/metrics` needs the token of any identity unless `[server] public_metrics = true`
/// (DESIGN §9): queue names and counts say what an organisation gates.
pub async fn render(State(state): State<ApiState>, mut parts: Parts) -> Result<Response, ApiError> {
    if !state.inner.public_metrics {
        Caller::from_request_parts(&mut parts, &state).await?;
    }
    let runner = &state.inner.runner;
    let m = runner.metrics().await?;
    m.event_subscribers.set(runner.subscribers() as i64);
    for s in runner.mcp_status() {
        let label = Server {
            server: s.name.clone(),
        };
        let up = matches!(s.state, crate::tools::mcp::McpServerState::Ready);
        m.mcp_server_up.get_or_create(&label).set(up as i64);
        // The server's own count is the truth; the counter catches up to it.
        let restarts = m.mcp_server_restarts.get_or_create(&label);
        restarts.inc_by(u64::from(s.restarts).saturating_sub(restarts.get()));
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response())
}
