//! The HTTP API (DESIGN §4, §4a): a second front end over the runner's channels.

pub mod auth;
mod body;
mod error;
mod events;
mod guard;
mod hooks;
mod metrics;
mod routes;
mod runs;
pub mod server;
mod waits;

pub use auth::{Identity, Role, TokenTable};
pub use error::ApiError;

use crate::runner::RunnerHandle;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// What the API needs besides the runner.
/// Tells long polls and event streams to end: the daemon is draining (SIGTERM) and answers
/// what is in flight before it stops.
#[derive(Clone, Debug)]
pub struct Drain(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Drain {
    fn default() -> Self {
        Drain(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Drain {
    pub fn start(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once draining has started.
    pub async fn started(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|draining| *draining).await;
    }

    /// `f` until `deadline`, or until draining starts (`Err(())` for both).
    pub async fn within<F: std::future::Future>(
        &self,
        deadline: tokio::time::Instant,
        f: F,
    ) -> Result<F::Output, ()> {
        tokio::select! {
            r = tokio::time::timeout_at(deadline, f) => r.map_err(|_| ()),
            _ = self.started() => Err(()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ApiOptions {
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    /// `[server] public_metrics`: `/metrics` without a token.
    pub public_metrics: bool,
    /// Started when the daemon drains; long polls and event streams then end.
    pub drain: Drain,
    /// `[server] max_waits_per_identity`.
    pub max_waits_per_identity: usize,
}

impl ApiOptions {
    pub fn from_config(cfg: &crate::config::Config, listen: &str) -> Self {
        let mut hosts = cfg.server.allowed_hosts.clone();
        hosts.push(guard::host_name(listen));
        Self {
            allowed_hosts: hosts,
            allowed_origins: cfg.server.allowed_origins.clone(),
            max_body_bytes: cfg.server.max_body_bytes,
            body_timeout: cfg.server.body_timeout,
            public_metrics: cfg.server.public_metrics,
            drain: Drain::default(),
            max_waits_per_identity: cfg.server.max_waits_per_identity,
        }
    }
}

pub(crate) struct Inner {
    pub runner: RunnerHandle,
    pub tokens: TokenTable,
    pub allowed_hosts: HashSet<String>,
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub public_metrics: bool,
    /// Shared with the runner: the API counts refusals and submission latency into it.
    pub metrics: crate::metrics::Metrics,
    pub drain: Drain,
    /// `/mcp`, when some MCP server is exposed (DESIGN §11).
    pub gateway: Option<crate::tools::mcp::gateway::Gateway>,
    pub waits: Arc<waits::Waits>,
    pub max_waits_per_identity: usize,
}

impl Inner {
    /// Count a refused request under the reason its status stands for.
    pub(crate) fn refused(&self, status: StatusCode) {
        self.metrics.refusal(match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            _ => "bad_request",
        });
    }

    /// A slot for one more long poll or event stream of `who` (429 past the cap).
    pub(crate) fn wait_permit(&self, who: &str) -> Result<waits::WaitPermit, ApiError> {
        self.waits.acquire(who, self.max_waits_per_identity)
    }
}

#[derive(Clone)]
pub struct ApiState {
    pub(crate) inner: Arc<Inner>,
}

/// The API's router, ready to serve.
pub fn router(runner: RunnerHandle, tokens: TokenTable, opts: ApiOptions) -> Router {
    let mut hosts: HashSet<String> = ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    hosts.extend(opts.allowed_hosts.iter().map(|h| guard::host_name(h)));
    let draining = opts.drain.clone();
    let gateway = crate::tools::mcp::gateway::Gateway::new(
        runner.clone(),
        opts.max_body_bytes,
        opts.body_timeout,
        async move { draining.started().await },
    );
    let state = ApiState {
        inner: Arc::new(Inner {
            gateway,
            metrics: runner.metrics.clone(),
            runner,
            tokens,
            allowed_hosts: hosts,
            allowed_origins: opts.allowed_origins,
            max_body_bytes: opts.max_body_bytes,
            body_timeout: opts.body_timeout,
            public_metrics: opts.public_metrics,
            drain: opts.drain,
            waits: Arc::new(waits::Waits::default()),
            max_waits_per_identity: opts.max_waits_per_identity,
        }),
    };
    Router::new()
        .route("/v1/approvals", post(routes::submit).get(routes::list))
        .route("/v1/approvals/recent", get(routes::recent))
        .route("/v1/approvals/{id}", get(routes::get_one))
        .route("/v1/approvals/{id}/decision", post(routes::decide))
        .route("/v1/approvals/{id}/escalate", post(routes::escalate))
        .route("/v1/approvals/{id}/cancel", post(routes::cancel))
        .route("/v1/runs", post(runs::start).get(runs::list))
        .route("/v1/runs/{id}", get(runs::get_one))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/servers", get(runs::servers))
        .route("/v1/events", get(events::stream))
        .route("/v1/audit", get(routes::audit))
        .route("/v1/whoami", get(routes::whoami))
        .route("/v1/grants", get(routes::grants))
        .route("/v1/grants/revoke", post(routes::revoke_grant))
        .route("/v1/hooks/claude-code", post(hooks::claude_code))
        .route("/mcp", any(mcp))
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(metrics::render))
        .fallback(routes::fallback)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}

/// `/mcp`: the MCP gateway, behind the same Host/Origin guard and body limit, for `agent`
/// identities. The identity travels with the request to the gateway's session.
async fn mcp(
    axum::extract::State(state): axum::extract::State<ApiState>,
    routes::Caller(who): routes::Caller,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !who.has(Role::Agent) {
        return routes::forbid(&state, &who, Role::Agent, "use the MCP gateway").into_response();
    }
    // An MCP request (a call waiting for its reviewer, a notification stream) holds one of the
    // identity's wait slots until its response body ends.
    let slot = match state.inner.wait_permit(&who.name) {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let Some(gateway) = state.inner.gateway.clone() else {
        return ApiError::not_found(
            "no MCP server is exposed (set expose = true on an [[mcp_servers]] entry)",
        )
        .into_response();
    };
    let (parts, body) = gateway.handle(who, req).await.into_parts();
    let body = futures::StreamExt::map(body.into_data_stream(), move |chunk| {
        let _held = &slot;
        chunk
    });
    axum::response::Response::from_parts(parts, axum::body::Body::from_stream(body))
}
