//! The OpenAI client against a stand-in Chat Completions server (axum, on an ephemeral
//! loopback port), and the scripted model against the real builtin tools.

mod scripted;

use super::*;
use crate::tools::{ToolOutput, Tools};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The stand-in server

/// What the stand-in answers to one request.
enum Reply {
    /// A status, extra headers and a body.
    With(StatusCode, Vec<(&'static str, String)>, String),
    /// Wait this long, then answer 200 with a completion.
    Stall(Duration),
}

#[derive(Default)]
struct Stub {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<(HeaderMap, Value)>>,
}

impl Stub {
    fn requests(&self) -> Vec<(HeaderMap, Value)> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn chat_completions(
    State(stub): State<Arc<Stub>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).expect("the client sent JSON");
    stub.requests.lock().unwrap().push((headers, body));
    let reply = stub.replies.lock().unwrap().pop_front();
    match reply {
        Some(Reply::With(status, headers, body)) => {
            let mut r = (status, body).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
            for (k, v) in headers {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            r
        }
        Some(Reply::Stall(d)) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, completion(Some("late"), &[]).to_string()).into_response()
        }
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the test scripted no more replies",
        )
            .into_response(),
    }
}

/// Serve the stand-in; returns its base URL (`http://127.0.0.1:PORT/v1`).
async fn serve(replies: Vec<Reply>) -> (String, Arc<Stub>) {
    let stub = Arc::new(Stub {
        replies: Mutex::new(replies.into()),
        requests: Mutex::default(),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), stub)
}

/// A Chat Completions answer, as the real API shapes it.
fn completion(content: Option<&str>, calls: &[(&str, &str, &str)]) -> Value {
    let mut message = json!({ "role": "assistant", "content": content, "refusal": null });
    if !calls.is_empty() {
        message["tool_calls"] = calls
            .iter()
            .map(|(id, name, args)| {
                json!({ "id": id, "type": "function", "function": { "name": name, "arguments": args } })
            })
            .collect();
    }
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" }
        }],
        "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
    })
}

fn ok(body: Value) -> Reply {
    Reply::With(StatusCode::OK, vec![], body.to_string())
}

fn error_reply(status: u16, message: &str) -> Reply {
    Reply::With(
        StatusCode::from_u16(status).unwrap(),
        vec![],
        json!({ "error": { "message": message, "type": "invalid_request_error", "param": null, "code": null } })
            .to_string(),
    )
}

const KEY: &str = "sk-test-0123456789abcdef";

fn client(base_url: &str) -> OpenAiModel {
    OpenAiModel::new(base_url, "gpt-4o", Some(KEY.into()), Duration::from_secs(5))
        .unwrap()
        .with_backoff(Duration::from_millis(20))
}

fn refund_tools() -> Vec<ToolSpec> {
    let tools = Tools::from_config(&[]).unwrap();
    ["get_order_details", "issue_refund", "delete_user_account"]
        .iter()
        .map(|n| tools.spec(n).unwrap())
        .collect()
}

fn conversation() -> Vec<Message> {
    vec![
        Message::system("You are a customer service agent."),
        Message::user("Refund ORD-1002 please"),
        Message::Assistant {
            content: Some("Looking it up.".into()),
            tool_calls: vec![ToolCall {
                id: "call_a".into(),
                name: "get_order_details".into(),
                arguments: r#"{"order_id":"ORD-1002"}"#.into(),
            }],
        },
        Message::tool("call_a", r#"{"order_id":"ORD-1002","total":149.99}"#),
    ]
}

// ---------------------------------------------------------------------------------------------
// OpenAI client

#[tokio::test]
async fn parallel_tool_calls_and_reasoning_are_read() {
    let (url, stub) = serve(vec![ok(completion(
        Some("I'll check both orders."),
        &[
            ("call_1", "get_order_details", r#"{"order_id":"ORD-1001"}"#),
            ("call_2", "get_order_details", r#"{"order_id":"ORD-1002"}"#),
        ],
    ))])
    .await;
    let c = client(&url)
        .complete(&conversation(), &refund_tools())
        .await
        .unwrap();
    assert_eq!(c.content.as_deref(), Some("I'll check both orders."));
    assert_eq!(
        c.tool_calls,
        vec![
            ToolCall {
                id: "call_1".into(),
                name: "get_order_details".into(),
                arguments: r#"{"order_id":"ORD-1001"}"#.into()
            },
            ToolCall {
                id: "call_2".into(),
                name: "get_order_details".into(),
                arguments: r#"{"order_id":"ORD-1002"}"#.into()
            },
        ]
    );
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn final_answer_without_tool_calls() {
    let (url, _stub) = serve(vec![ok(completion(Some("All done."), &[]))]).await;
    let c = client(&url).complete(&conversation(), &[]).await.unwrap();
    assert_eq!(
        c,
        Completion {
            content: Some("All done.".into()),
            tool_calls: vec![]
        }
    );
}

#[tokio::test]
async fn request_carries_messages_in_order_and_tools_as_functions() {
    let (url, stub) = serve(vec![ok(completion(Some("ok"), &[]))]).await;
    let tools = refund_tools();
    client(&url)
        .complete(&conversation(), &tools)
        .await
        .unwrap();
    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    let (headers, body) = &requests[0];
    assert_eq!(
        headers.get(header::AUTHORIZATION).unwrap(),
        &format!("Bearer {KEY}")
    );
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(
        body["messages"],
        json!([
            { "role": "system", "content": "You are a customer service agent." },
            { "role": "user", "content": "Refund ORD-1002 please" },
            { "role": "assistant", "content": "Looking it up.", "tool_calls": [
                { "id": "call_a", "type": "function",
                  "function": { "name": "get_order_details", "arguments": "{\"order_id\":\"ORD-1002\"}" } }
            ] },
            { "role": "tool", "tool_call_id": "call_a", "content": "{\"order_id\":\"ORD-1002\",\"total\":149.99}" },
        ])
    );
    let sent_tools = body["tools"].as_array().unwrap();
    assert_eq!(sent_tools.len(), 3);
    for (sent, spec) in sent_tools.iter().zip(&tools) {
        assert_eq!(
            sent,
            &json!({ "type": "function", "function": {
                "name": spec.name, "description": spec.description, "parameters": spec.parameters
            } })
        );
    }
    assert_eq!(
        sent_tools[1]["function"]["parameters"]["required"],
        json!(["order_id", "amount", "reason"])
    );
}

#[tokio::test]
async fn no_tools_means_no_tools_field() {
    let (url, stub) = serve(vec![ok(completion(Some("ok"), &[]))]).await;
    client(&url)
        .complete(&[Message::user("hi")], &[])
        .await
        .unwrap();
    assert!(stub.requests()[0].1.get("tools").is_none());
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let (url, stub) = serve(vec![
        error_reply(
            500,
            "The server had an error while processing your request.",
        ),
        ok(completion(Some("recovered"), &[])),
    ])
    .await;
    let c = client(&url).complete(&conversation(), &[]).await.unwrap();
    assert_eq!(c.content.as_deref(), Some("recovered"));
    assert_eq!(stub.count(), 2);
    // The retry is the same request.
    let r = stub.requests();
    assert_eq!(r[0].1, r[1].1);
}

#[tokio::test]
async fn rate_limit_honours_retry_after() {
    let (url, stub) = serve(vec![
        Reply::With(
            StatusCode::TOO_MANY_REQUESTS,
            vec![("retry-after", "1".into())],
            json!({ "error": { "message": "Rate limit reached for gpt-4o" } }).to_string(),
        ),
        ok(completion(Some("after the wait"), &[])),
    ])
    .await;
    let started = Instant::now();
    let c = client(&url).complete(&conversation(), &[]).await.unwrap();
    assert_eq!(c.content.as_deref(), Some("after the wait"));
    assert_eq!(stub.count(), 2);
    // Retry-After: 1 beats the 20 ms backoff.
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unauthorized_fails_at_once_without_leaking_the_key() {
    let (url, stub) = serve(vec![
        error_reply(401, &format!("Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys.")),
        ok(completion(Some("never reached"), &[])),
    ])
    .await;
    let e = client(&url)
        .complete(&conversation(), &[])
        .await
        .unwrap_err();
    assert!(matches!(e, ModelError::Auth(_)), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("401"), "{text}");
    assert!(text.contains("Incorrect API key provided"), "{text}");
    assert!(!text.contains(KEY), "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn forbidden_is_an_auth_error() {
    let (url, stub) = serve(vec![error_reply(
        403,
        "Project does not have access to model gpt-4o",
    )])
    .await;
    let e = client(&url)
        .complete(&conversation(), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(e, ModelError::Auth(ref m) if m.contains("403") && m.contains("does not have access")),
        "{e}"
    );
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn not_found_fails_at_once() {
    let (url, stub) = serve(vec![error_reply(
        404,
        "The model `gpt-5-imaginary` does not exist or you do not have access to it.",
    )])
    .await;
    let e = client(&url)
        .complete(&conversation(), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(e, ModelError::NotFound(ref m) if m.contains("404") && m.contains("gpt-5-imaginary")),
        "{e}"
    );
    assert_eq!(stub.count(), 1);
    // A wrong base_url (nothing routed there) is a 404 too.
    let e = client(&url.replace("/v1", "/v2"))
        .complete(&conversation(), &[])
        .await
        .unwrap_err();
    assert!(matches!(e, ModelError::NotFound(_)), "{e}");
}

#[tokio::test]
async fn garbage_is_malformed() {
    let (url, stub) = serve(vec![Reply::With(
        StatusCode::OK,
        vec![],
        "<html>upstream proxy says hi</html>".into(),
    )])
    .await;
    let e = client(&url)
        .complete(&conversation(), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(e, ModelError::Malformed(ref m) if m.contains("not JSON") && m.contains("upstream proxy")),
        "{e}"
    );
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn json_without_choices_or_with_bad_tool_calls_is_malformed() {
    let bad = [
        json!({ "id": "x", "object": "chat.completion" }),
        json!({ "choices": [] }),
        json!({ "choices": [{ "message": { "role": "assistant", "content": null, "tool_calls": [
            { "id": "c", "type": "function", "function": { "arguments": "{}" } }
        ] } }] }),
        json!({ "choices": [{ "message": { "role": "assistant", "content": null }, "finish_reason": "length" }] }),
    ];
    for body in bad {
        let (url, _) = serve(vec![ok(body.clone())]).await;
        let e = client(&url)
            .complete(&conversation(), &[])
            .await
            .unwrap_err();
        assert!(matches!(e, ModelError::Malformed(_)), "{body} → {e}");
    }
}

#[tokio::test]
async fn timeout_is_an_error() {
    let (url, stub) = serve(vec![Reply::Stall(Duration::from_secs(10))]).await;
    let model = OpenAiModel::new(&url, "gpt-4o", None, Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    let e = model.complete(&conversation(), &[]).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(e, ModelError::Transport(ref m) if m.contains("within 300ms")),
        "{e}"
    );
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn persistent_server_errors_exhaust_the_attempts() {
    let replies = (0..6).map(|_| error_reply(503, "overloaded")).collect();
    let (url, stub) = serve(replies).await;
    let e = client(&url)
        .complete(&conversation(), &[])
        .await
        .unwrap_err();
    match &e {
        ModelError::Exhausted { attempts, last } => {
            assert_eq!(*attempts, 4);
            assert!(
                last.contains("503") && last.contains("overloaded"),
                "{last}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(stub.count(), 4);
    assert!(
        e.to_string()
            .starts_with("model request failed after 4 attempts: HTTP 503"),
        "{e}"
    );
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = client(&format!("http://127.0.0.1:{port}/v1"))
        .complete(&conversation(), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(e, ModelError::Exhausted { attempts: 4, ref last } if last.contains("cannot connect")),
        "{e}"
    );
}

#[tokio::test]
async fn bad_request_fails_at_once_with_the_server_message() {
    let (url, stub) = serve(vec![error_reply(
        400,
        "Invalid schema for function 'issue_refund'",
    )])
    .await;
    let e = client(&url)
        .complete(&conversation(), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(e, ModelError::Transport(ref m) if m.contains("400") && m.contains("Invalid schema")),
        "{e}"
    );
    assert_eq!(stub.count(), 1);
}

fn model_config(toml_text: &str) -> crate::config::ModelConfig {
    toml::from_str(toml_text).unwrap()
}

#[tokio::test]
async fn missing_key_is_refused_unless_loopback() {
    let var = "GATEHOUSE_TEST_NEVER_SET_API_KEY";
    assert!(std::env::var_os(var).is_none());
    let remote = model_config(&format!(
        "kind = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\nmodel = \"gpt-4o\"\napi_key_env = \"{var}\""
    ));
    let e = Model::from_config("default", &remote).unwrap_err();
    assert!(e.starts_with("models.default: "), "{e}");
    assert!(e.contains(var) && e.contains("not set"), "{e}");

    // A local server needs no key: no Authorization header is sent.
    let (url, stub) = serve(vec![ok(completion(Some("local"), &[]))]).await;
    let local = model_config(&format!(
        "kind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"llama3\"\napi_key_env = \"{var}\"\ntimeout = \"5s\""
    ));
    let model = Model::from_config("local", &local).unwrap();
    let c = model.complete(&[Message::user("hi")], &[]).await.unwrap();
    assert_eq!(c.content.as_deref(), Some("local"));
    let (headers, body) = &stub.requests()[0];
    assert!(headers.get(header::AUTHORIZATION).is_none());
    assert_eq!(body["model"], "llama3");
}

#[test]
fn from_config_errors_name_the_model() {
    let e = Model::from_config(
        "m",
        &model_config("kind = \"openai\"\nmodel = \"x\"\nbase_url = \" \""),
    )
    .unwrap_err();
    assert_eq!(e, "models.m: empty base_url");
    let e = Model::from_config(
        "s",
        &model_config("kind = \"scripted\"\nscript = \"poetry\""),
    )
    .unwrap_err();
    assert_eq!(
        e,
        "models.s: unknown script \"poetry\" (built in: customer_service)"
    );
    assert!(matches!(
        Model::from_config("s", &model_config("kind = \"scripted\"")),
        Ok(Model::Scripted(_))
    ));
    // The key never shows in Debug.
    let m = OpenAiModel::new(
        "http://127.0.0.1:9/v1",
        "x",
        Some(KEY.into()),
        Duration::from_secs(1),
    )
    .unwrap();
    assert!(!format!("{m:?}").contains(KEY));
}

#[test]
fn messages_round_trip_through_json() {
    let msgs = conversation();
    let text = serde_json::to_string(&msgs).unwrap();
    let back: Vec<Message> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, msgs);
    assert_eq!(
        serde_json::to_value(&msgs[1]).unwrap(),
        json!({ "role": "user", "content": "Refund ORD-1002 please" })
    );
}

#[test]
fn calls_are_send() {
    fn send<T: Send>(_: T) {}
    let model = Model::Scripted(ScriptedModel::customer_service());
    send(model.complete(&[], &[]));
    let tools = Tools::from_config(&[]).unwrap();
    let args = serde_json::Map::new();
    send(tools.call("issue_refund", &args));
}

#[tokio::test]
async fn insufficient_quota_is_not_retried() {
    let (url, stub) = serve(vec![Reply::With(
        StatusCode::TOO_MANY_REQUESTS,
        vec![],
        json!({ "error": { "message": "You exceeded your current quota, please check your plan and billing details.",
                           "type": "insufficient_quota", "param": null, "code": "insufficient_quota" } })
        .to_string(),
    )])
    .await;
    let e = client(&url)
        .complete(&conversation(), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(e, ModelError::Transport(ref m) if m.contains("429") && m.contains("exceeded your current quota")),
        "{e}"
    );
    assert_eq!(stub.count(), 1);
}
