//! A webhook receiver on 127.0.0.1 for `[notify] webhook`: records every notice, and can hold
//! the requests about chosen tools' calls unanswered (a stalled receiver).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Inner {
    notices: Mutex<Vec<Value>>,
    /// Tools whose notices are never answered.
    stalled: Mutex<BTreeSet<String>>,
    arrived: tokio::sync::Notify,
}

pub struct Webhook {
    pub url: String,
    inner: Arc<Inner>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn receive(State(inner): State<Arc<Inner>>, body: String) -> StatusCode {
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let tool = v["tool"].as_str().unwrap_or_default().to_string();
    inner.notices.lock().expect("lock").push(v);
    inner.arrived.notify_waiters();
    if inner.stalled.lock().expect("lock").contains(&tool) {
        // Hold the request open until the daemon gives up on it.
        std::future::pending::<()>().await;
    }
    StatusCode::NO_CONTENT
}

impl Webhook {
    /// Start the receiver on the current tokio runtime.
    pub async fn start() -> Webhook {
        let inner = Arc::new(Inner::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Webhook {
            url,
            inner,
            _stop: stop,
        }
    }

    /// Never answer notices about calls of `tool`.
    pub fn stall(&self, tool: &str) {
        self.inner
            .stalled
            .lock()
            .expect("lock")
            .insert(tool.to_string());
    }

    pub fn notices(&self) -> Vec<Value> {
        self.inner.notices.lock().expect("lock").clone()
    }

    /// The first notice matching `want`, waiting up to `limit` for it.
    pub async fn wait_for(&self, limit: Duration, want: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let arrived = self.inner.arrived.notified();
            if let Some(n) = self.notices().into_iter().find(|n| want(n)) {
                return Some(n);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }
}
