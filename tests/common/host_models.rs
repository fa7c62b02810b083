//! Stand-in model servers for the hook hosts (Claude Code, Gemini CLI, Codex): one real HTTP
//! server on 127.0.0.1 that records every request (path and JSON body) and answers each from a
//! function of the request, in the provider's own streaming protocol:
//! - Anthropic Messages (`POST /v1/messages`, SSE `message_start` … `message_stop`);
//! - Gemini `streamGenerateContent?alt=sse` (SSE of `GenerateContentResponse`);
//! - OpenAI Responses (`POST /v1/responses`, SSE `response.created` … `response.completed`).
//!
//! It runs on a thread of its own (a test blocked on a host process never starves it).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub body: Value,
}

/// An answer: status, content type, body.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    pub fn json(v: Value) -> Answer {
        Answer {
            status: 200,
            content_type: "application/json",
            body: v.to_string(),
        }
    }
    pub fn sse(events: &[(Option<&str>, Value)]) -> Answer {
        let mut body = String::new();
        for (name, data) in events {
            if let Some(n) = name {
                body.push_str(&format!("event: {n}\n"));
            }
            body.push_str(&format!("data: {data}\n\n"));
        }
        Answer {
            status: 200,
            content_type: "text/event-stream",
            body,
        }
    }
    pub fn not_found(uri: &str) -> Answer {
        Answer {
            status: 404,
            content_type: "application/json",
            body: json!({"error": {"message": format!("stand-in: nothing at {uri}")}}).to_string(),
        }
    }
}

type Responder = Box<dyn FnMut(&Exchange) -> Answer + Send>;

struct Inner {
    seen: Mutex<Vec<Exchange>>,
    /// Signalled on every request, for [`HostModel::wait_for`].
    arrived: Condvar,
    responder: Mutex<Responder>,
}

pub struct HostModel {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostModel {
    pub fn start(responder: impl FnMut(&Exchange) -> Answer + Send + 'static) -> HostModel {
        let inner = Arc::new(Inner {
            seen: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            responder: Mutex::new(Box::new(responder)),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the stand-in");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("local addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(answer).with_state(inner.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the stand-in");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    r = axum::serve(listener, app) => r.expect("stand-in server"),
                    _ = stop_rx => {}
                }
            });
        });
        HostModel {
            addr,
            inner,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Exchange> {
        self.inner.seen.lock().unwrap().clone()
    }

    /// Wait (bounded) until a request matches; returns it.
    #[track_caller]
    pub fn wait_for(&self, what: &str, limit: Duration, f: impl Fn(&Exchange) -> bool) -> Exchange {
        let seen = self.inner.seen.lock().unwrap();
        let (seen, _) = self
            .inner
            .arrived
            .wait_timeout_while(seen, limit, |seen| !seen.iter().any(&f))
            .unwrap();
        seen.iter()
            .find(|e| f(e))
            .cloned()
            .unwrap_or_else(|| panic!("no request {what} within {limit:?}; got {seen:#?}"))
    }
}

impl Drop for HostModel {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn answer(
    State(inner): State<Arc<Inner>>,
    method: axum::http::Method,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let ex = Exchange {
        method: method.to_string(),
        uri: uri.to_string(),
        body,
    };
    inner.seen.lock().unwrap().push(ex.clone());
    inner.arrived.notify_all();
    let a = (inner.responder.lock().unwrap())(&ex);
    (
        StatusCode::from_u16(a.status).expect("a status"),
        [(header::CONTENT_TYPE, a.content_type)],
        a.body,
    )
        .into_response()
}

/// The whole request body as text, to look for what a host sent the model.
pub fn body_text(e: &Exchange) -> String {
    e.body.to_string()
}

// ---- Anthropic Messages ----

/// A streamed assistant message of these content blocks (`text` or `tool_use`).
pub fn anthropic_sse(blocks: &[Value]) -> Answer {
    let mut events = vec![(
        Some("message_start"),
        json!({"type": "message_start", "message": {
            "id": "msg_standin", "type": "message", "role": "assistant", "model": "claude-standin",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    )];
    let mut stop = "end_turn";
    for (i, b) in blocks.iter().enumerate() {
        if b["type"] == "tool_use" {
            stop = "tool_use";
            events.push((
                Some("content_block_start"),
                json!({"type": "content_block_start", "index": i, "content_block":
                    {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}}),
            ));
            events.push((
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": i, "delta":
                    {"type": "input_json_delta", "partial_json": b["input"].to_string()}}),
            ));
        } else {
            events.push((
                Some("content_block_start"),
                json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
            ));
            events.push((
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": b["text"]}}),
            ));
        }
        events.push((
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    events.push((
        Some("message_delta"),
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": 5}}),
    ));
    events.push((Some("message_stop"), json!({"type": "message_stop"})));
    Answer::sse(&events)
}

/// The same message, not streamed (for requests with `"stream": false`).
pub fn anthropic_json(blocks: &[Value]) -> Answer {
    let stop = if blocks.iter().any(|b| b["type"] == "tool_use") {
        "tool_use"
    } else {
        "end_turn"
    };
    Answer::json(json!({
        "id": "msg_standin", "type": "message", "role": "assistant", "model": "claude-standin",
        "content": blocks, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5}}))
}

pub fn anthropic(e: &Exchange, blocks: &[Value]) -> Answer {
    if e.body["stream"] == true {
        anthropic_sse(blocks)
    } else {
        anthropic_json(blocks)
    }
}

// ---- Gemini streamGenerateContent ----

/// One streamed candidate with these parts (`{"text"}` or `{"functionCall"}`).
pub fn gemini_sse(parts: &[Value]) -> Answer {
    Answer::sse(&[(
        None,
        json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
               "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
               "modelVersion": "gemini-standin"}),
    )])
}

// ---- OpenAI Responses ----

/// A streamed response of these output items (`message` or `function_call`).
pub fn responses_sse(items: &[Value]) -> Answer {
    let resp = |status: &str, output: &[Value]| {
        json!({"id": "resp_standin", "object": "response", "created_at": 0, "status": status,
               "model": "gpt-standin", "output": output,
               "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
                         "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
                         "total_tokens": 15}})
    };
    let mut events = vec![(
        Some("response.created"),
        json!({"type": "response.created", "response": resp("in_progress", &[])}),
    )];
    for (i, item) in items.iter().enumerate() {
        events.push((
            Some("response.output_item.done"),
            json!({"type": "response.output_item.done", "output_index": i, "item": item}),
        ));
    }
    events.push((
        Some("response.completed"),
        json!({"type": "response.completed", "response": resp("completed", items)}),
    ));
    Answer::sse(&events)
}
