//! The HTTP side of the gateway: rmcp's Streamable HTTP service, with the caller's identity
//! handed to the session, and a watch on each `tools/call` response stream, so a client that
//! drops the request withdraws its approval.

use super::GatewaySession;
use crate::api::Identity;
use crate::runner::RunnerHandle;
use axum::body::{Body, BodyDataStream, Bytes};
use axum::http::{Method, Request, Response, StatusCode};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tokio_stream::Stream;

/// SSE comments on a waiting request's stream, so no proxy or client drops it as idle.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A session nobody used for this long is closed. Longer than any reasonable review: a call
/// waiting for a reviewer without progress notifications sends the session nothing.
const SESSION_IDLE: Duration = Duration::from_secs(24 * 3600);

/// `/mcp`.
#[derive(Clone)]
pub struct Gateway {
    service: StreamableHttpService<GatewaySession, LocalSessionManager>,
    drops: Arc<Drops>,
    max_body_bytes: usize,
    /// A body not received within this is refused (slow clients cannot hold the server).
    body_timeout: Duration,
}

impl Gateway {
    /// `None` when no MCP server is exposed (then `/mcp` answers 404).
    pub fn new(
        runner: RunnerHandle,
        max_body_bytes: usize,
        body_timeout: Duration,
        stopping: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Option<Gateway> {
        let servers = runner.mcp_servers()?;
        if servers.exposed().is_empty() {
            return None;
        }
        let mut sessions = LocalSessionManager::default();
        sessions.session_config.keep_alive = Some(SESSION_IDLE);
        // Host, Origin and authentication are checked by gatehouse's router before this.
        let config = StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .with_sse_keep_alive(Some(KEEP_ALIVE))
            .with_max_request_body_bytes(max_body_bytes);
        // A draining daemon ends every session: waiting calls withdraw their approvals now
        // instead of holding the drain open.
        let stop = config.cancellation_token.clone();
        // MCP sessions live in memory: calls that waited when gatehouse last stopped have no
        // client any more, so their approvals are withdrawn rather than left to a reviewer.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(withdraw_orphans(runner.clone(), crate::domain::now()));
            rt.spawn(async move {
                stopping.await;
                stop.cancel();
            });
        }
        let drops = Arc::new(Drops::default());
        let shared = drops.clone();
        let service = StreamableHttpService::new(
            move || {
                Ok(GatewaySession {
                    runner: runner.clone(),
                    servers: servers.clone(),
                    owner: Arc::new(OnceLock::new()),
                    drops: shared.clone(),
                })
            },
            Arc::new(sessions),
            config,
        );
        Some(Gateway {
            service,
            drops,
            max_body_bytes,
            body_timeout,
        })
    }

    /// Serve one HTTP request of an authenticated `agent` identity.
    pub async fn handle(&self, who: Identity, req: Request<Body>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(who);
        let mut watch = None;
        let body = if parts.method == Method::POST {
            let read = axum::body::to_bytes(body, self.max_body_bytes);
            let bytes = match tokio::time::timeout(self.body_timeout, read).await {
                Ok(Ok(b)) => b,
                Err(_) => {
                    return plain(
                        StatusCode::REQUEST_TIMEOUT,
                        "the request body was not received in time".into(),
                    );
                }
                Ok(Err(e)) => {
                    let status = if e.to_string().contains("length limit") {
                        StatusCode::PAYLOAD_TOO_LARGE
                    } else {
                        StatusCode::BAD_REQUEST
                    };
                    return plain(status, format!("cannot read the request body: {e}"));
                }
            };
            let session = parts
                .headers
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok());
            if let (Some(session), Some(id)) = (session, tool_call_id(&bytes)) {
                watch = Some(self.drops.register(session, &id));
            }
            Body::from(bytes)
        } else {
            body
        };
        let delete = parts.method == Method::DELETE;
        let resp = self.service.handle(Request::from_parts(parts, body)).await;
        let mut resp = resp.map(Body::new);
        // rmcp answers a closed session 202; clients (the Python SDK) expect 200 or 204.
        if delete && resp.status() == StatusCode::ACCEPTED {
            *resp.status_mut() = StatusCode::NO_CONTENT;
        }
        match watch {
            Some(guard) => resp.map(|inner| {
                Body::from_stream(Watched {
                    inner: inner.into_data_stream(),
                    guard: Some(guard),
                })
            }),
            None => resp,
        }
    }
}

/// Withdraw every pending gateway approval made before `started` (its session died with the
/// last process; later ones belong to this process's sessions).
async fn withdraw_orphans(runner: RunnerHandle, started: crate::domain::Timestamp) {
    let mut after = None;
    loop {
        let query = crate::runner::ListQuery {
            status: Some(crate::domain::ApprovalStatus::Pending),
            limit: 500,
            after,
            ..Default::default()
        };
        let page = match runner.list(query).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the MCP calls left from before a restart");
                return;
            }
        };
        for a in &page.approvals {
            let via = a.context.as_ref().and_then(|c| c.get("via"));
            if via.map(String::as_str) == Some(super::VIA) && a.created_at < started {
                match runner.cancel_approval(&a.requested_by, a.id).await {
                    Ok(_) => {
                        tracing::info!(id = %a.id, "withdrew an MCP call whose client is gone")
                    }
                    Err(e) => tracing::warn!(id = %a.id, error = %e, "cannot withdraw an MCP call"),
                }
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return,
        }
    }
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r
}

/// The JSON-RPC id of a `tools/call` request body, as text.
fn tool_call_id(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v.get("method")?.as_str()? != "tools/call" {
        return None;
    }
    match v.get("id")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

type Key = (String, String);

/// Whether a `tools/call`'s response stream was dropped before it ended, by (session,
/// request id).
#[derive(Default)]
pub(super) struct Drops {
    watched: Mutex<HashMap<Key, watch::Receiver<bool>>>,
}

impl Drops {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, watch::Receiver<bool>>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(self: &Arc<Self>, session: &str, id: &str) -> DropGuard {
        let key = (session.to_owned(), id.to_owned());
        let (tx, rx) = watch::channel(false);
        self.map().insert(key.clone(), rx);
        DropGuard {
            drops: self.clone(),
            key,
            tx: Some(tx),
        }
    }

    /// Resolves when the client dropped this request; never for a request not watched or
    /// answered in full.
    pub(super) async fn dropped(&self, session: &str, id: &str) {
        let rx = self
            .map()
            .get(&(session.to_owned(), id.to_owned()))
            .cloned();
        if let Some(mut rx) = rx
            && rx.wait_for(|d| *d).await.is_ok()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}

/// Held by a response body: says "dropped" when dropped before the body ended.
struct DropGuard {
    drops: Arc<Drops>,
    key: Key,
    tx: Option<watch::Sender<bool>>,
}

impl DropGuard {
    /// The body was read to its end: the request was answered.
    fn finished(mut self) {
        self.tx = None;
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.drops.map().remove(&self.key);
        if let Some(tx) = self.tx.take() {
            tx.send_replace(true);
        }
    }
}

/// A response body that tells its [`DropGuard`] whether it was read to the end.
struct Watched {
    inner: BodyDataStream,
    guard: Option<DropGuard>,
}

impl Stream for Watched {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(None) = polled
            && let Some(guard) = self.guard.take()
        {
            guard.finished();
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::tool_call_id;

    #[test]
    fn tool_call_ids() {
        let call = |id: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{}}}}"#)
        };
        assert_eq!(tool_call_id(call("7").as_bytes()).as_deref(), Some("7"));
        assert_eq!(
            tool_call_id(call(r#""a""#).as_bytes()).as_deref(),
            Some("a")
        );
        assert_eq!(
            tool_call_id(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            None
        );
        assert_eq!(tool_call_id(b"not json"), None);
    }
}
