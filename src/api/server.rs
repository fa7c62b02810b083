//! The accept loop: a connection cap and header timeouts, so stalled sockets cannot hold
//! the server (DESIGN §4a). Over the cap, new connections are closed at once. On shutdown it
//! drains: no new connections, requests in flight answered, long polls and event streams
//! ended (through [`super::Drain`]), idle connections closed.

use super::Drain;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// How long a drain waits for connections to finish before it gives up on them.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Serve until `shutdown` resolves; then drain and return.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
    drain: Drain,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                "connection cap of {} reached; closing a new connection",
                limits.max_connections
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    drain.start();
    let open = graceful.count();
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("drained {open} open connection(s)"),
        _ = tokio::time::sleep(DRAIN_LIMIT) => tracing::warn!(
            "connections still open after {DRAIN_LIMIT:?} of draining; closing them"
        ),
    }
}
