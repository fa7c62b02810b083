//! A stand-in chat model for the run tests: a real HTTP server on 127.0.0.1 (ephemeral port)
//! speaking the OpenAI Chat Completions protocol (`POST /v1/chat/completions`). It records
//! every request body, so tests can assert on exactly what gatehouse sent the model, and
//! answers from a script: a queue of replies, or a function of the request. It can answer
//! with any status and any body (401, 500, garbage).
//!
//! It runs on a thread of its own with its own runtime, so a test that blocks (e.g. waiting
//! for a CLI process) never starves it; it stops when dropped.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One answer of the stand-in model.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A JSON body with this status (and extra headers).
    Json {
        status: u16,
        body: Value,
        headers: Vec<(String, String)>,
    },
    /// Raw bytes with this status and content type.
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
    /// This reply, sent only once the test opens the gate: the call stays in flight until
    /// the test decides it ends (or the server is dropped).
    Held { gate: Gate, then: Box<Reply> },
}

/// A gate a held reply waits behind; the test opens it. Clones share one gate.
#[derive(Clone, Debug)]
pub struct Gate(Arc<tokio::sync::watch::Sender<bool>>);

impl Gate {
    pub fn new() -> Gate {
        Gate(Arc::new(tokio::sync::watch::channel(false).0))
    }

    /// Let every reply held behind this gate go, now and from now on.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn passed(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|open| *open).await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

/// One tool call of a scripted completion.
#[derive(Clone, Debug)]
pub struct Call {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text, exactly as the model sends them.
    pub arguments: String,
}

/// A call with these arguments (encoded as JSON text, as OpenAI does).
pub fn call(id: &str, name: &str, args: Value) -> Call {
    Call {
        id: id.into(),
        name: name.into(),
        arguments: args.to_string(),
    }
}

/// A call whose argument text is given verbatim (it may be invalid JSON).
pub fn raw_call(id: &str, name: &str, arguments: &str) -> Call {
    Call {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
    }
}

fn completion(message: Value, finish_reason: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    })
}

impl Reply {
    /// A final answer: text and no tool calls.
    pub fn text(content: &str) -> Reply {
        Reply::ok(completion(
            json!({"role": "assistant", "content": content}),
            "stop",
        ))
    }

    /// Tool calls, with the model's text (its reasoning) or `null` content.
    pub fn tools(content: Option<&str>, calls: &[Call]) -> Reply {
        let calls: Vec<Value> = calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments}
                })
            })
            .collect();
        Reply::ok(completion(
            json!({"role": "assistant", "content": content, "tool_calls": calls}),
            "tool_calls",
        ))
    }

    pub fn ok(body: Value) -> Reply {
        Reply::status(200, body)
    }

    pub fn status(status: u16, body: Value) -> Reply {
        Reply::Json {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// An OpenAI-style error body: `{"error": {"message", "type", "code"}}`.
    pub fn error(status: u16, message: &str, code: &str) -> Reply {
        Reply::status(
            status,
            json!({"error": {"message": message, "type": code, "code": code, "param": null}}),
        )
    }

    pub fn raw(status: u16, content_type: &str, body: &str) -> Reply {
        Reply::Raw {
            status,
            content_type: content_type.into(),
            body: body.into(),
        }
    }

    /// This reply, held until `gate` opens.
    pub fn held(self, gate: &Gate) -> Reply {
        Reply::Held {
            gate: gate.clone(),
            then: Box::new(self),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Json { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }
}

/// What the model was sent, one entry per HTTP request.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The request body (a JSON string value holding the raw text if it was not JSON).
    pub body: Value,
}

type Responder = Box<dyn FnMut(usize, &Value) -> Reply + Send>;

struct Inner {
    requests: Mutex<Vec<Recorded>>,
    /// Signalled on every new request, for [`ModelServer::wait_requests`].
    arrived: Condvar,
    responder: Mutex<Responder>,
}

pub struct ModelServer {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ModelServer {
    /// Answer request `n` (0-based) with `responder(n, body)`.
    pub fn start(responder: impl FnMut(usize, &Value) -> Reply + Send + 'static) -> ModelServer {
        let inner = Arc::new(Inner {
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            responder: Mutex::new(Box::new(responder)),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the model server");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("local addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(inner.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the model server");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    r = axum::serve(listener, app) => r.expect("model server"),
                    _ = stop_rx => {}
                }
            });
        });
        ModelServer {
            addr,
            inner,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Answer with `replies` in order; past their end, a 400 error (not retried by clients)
    /// saying the script ran out.
    pub fn scripted(replies: Vec<Reply>) -> ModelServer {
        let mut queue: VecDeque<Reply> = replies.into();
        ModelServer::start(move |n, _| {
            queue.pop_front().unwrap_or_else(|| {
                Reply::error(
                    400,
                    &format!("test model server: no scripted reply for request {n}"),
                    "script_exhausted",
                )
            })
        })
    }

    /// The `base_url` for `[models.NAME]`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Every request body so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        self.recorded().into_iter().map(|r| r.body).collect()
    }

    pub fn count(&self) -> usize {
        self.inner.requests.lock().unwrap().len()
    }

    /// Wait (bounded) until at least `n` requests have arrived; returns all of them.
    #[track_caller]
    pub fn wait_requests(&self, n: usize, limit: Duration) -> Vec<Value> {
        let reqs = self.inner.requests.lock().unwrap();
        let (reqs, _) = self
            .inner
            .arrived
            .wait_timeout_while(reqs, limit, |r| r.len() < n)
            .unwrap();
        let got: Vec<Value> = reqs.iter().map(|r| r.body.clone()).collect();
        assert!(
            got.len() >= n,
            "the model got {} requests within {limit:?}, expected {n}: {got:#?}",
            got.len()
        );
        got
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn complete(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let parsed: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let n = {
        let mut reqs = inner.requests.lock().unwrap();
        reqs.push(Recorded {
            authorization: text(header::AUTHORIZATION),
            content_type: text(header::CONTENT_TYPE),
            body: parsed.clone(),
        });
        inner.arrived.notify_all();
        reqs.len() - 1
    };
    let mut reply = (inner.responder.lock().unwrap())(n, &parsed);
    // Awaited, not blocked on: the server's one thread keeps answering other requests.
    while let Reply::Held { gate, then } = reply {
        gate.passed().await;
        reply = *then;
    }
    match reply {
        Reply::Json {
            status,
            body,
            headers,
        } => {
            let mut r = (
                StatusCode::from_u16(status).expect("a status"),
                axum::Json(body),
            )
                .into_response();
            for (k, v) in headers {
                r.headers_mut().insert(
                    header::HeaderName::from_bytes(k.as_bytes()).expect("a header name"),
                    v.parse().expect("a header value"),
                );
            }
            r
        }
        Reply::Raw {
            status,
            content_type,
            body,
        } => (
            StatusCode::from_u16(status).expect("a status"),
            [(header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response(),
        Reply::Held { .. } => unreachable!("held replies are awaited above"),
    }
}
