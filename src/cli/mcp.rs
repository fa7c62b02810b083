//! `gatehouse mcp --connect URL [--token-env VAR]` (DESIGN §11): a stdio MCP server for
//! clients that only launch stdio servers, relaying every JSON-RPC message to the gateway at
//! `URL/mcp` over Streamable HTTP and every answer back.
//!
//! Messages are relayed as they are; each request gets its own HTTP request, so a call
//! waiting for a reviewer does not hold up the others. When the daemon cannot be reached or
//! drops a request, the client gets a JSON-RPC error for it: never silence, never success.

use super::Failure;
use clap::Args;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

#[derive(Args)]
pub struct McpArgs {
    /// The daemon (`http://127.0.0.1:7878`), or its `/mcp` endpoint.
    #[arg(long, env = "GATEHOUSE_URL")]
    connect: String,
    /// The environment variable holding an `agent` identity's token.
    #[arg(long, default_value = "GATEHOUSE_TOKEN")]
    token_env: String,
}

/// A JSON-RPC error code for "the bridge could not get an answer" (implementation-defined
/// server error range).
const BRIDGE_ERROR: i64 = -32000;

struct Bridge {
    http: reqwest::Client,
    endpoint: String,
    token: String,
    /// `Mcp-Session-Id` and `MCP-Protocol-Version`, once initialised.
    session: Mutex<(Option<String>, Option<String>)>,
    out: mpsc::UnboundedSender<String>,
}

pub async fn mcp(args: McpArgs) -> Result<(), Failure> {
    let token = std::env::var(&args.token_env)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            Failure::usage(format!(
                "set {} to the token of an identity with the agent role",
                args.token_env
            ))
        })?;
    let endpoint = endpoint(&args.connect)?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?;
    let (out, mut lines) = mpsc::unbounded_channel::<String>();
    // One writer: messages from concurrent requests never interleave on stdout.
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = lines.recv().await {
            if stdout.write_all(line.as_bytes()).await.is_err()
                || stdout.write_all(b"\n").await.is_err()
                || stdout.flush().await.is_err()
            {
                return;
            }
        }
    });
    let bridge = Arc::new(Bridge {
        http,
        endpoint,
        token,
        session: Mutex::new((None, None)),
        out,
    });
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let line = match stdin.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => return Err(Failure::runtime(format!("cannot read stdin: {e}"))),
        };
        if line.trim().is_empty() {
            continue;
        }
        let message: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let error = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("parse error: {e}")}});
                let _ = bridge.out.send(error.to_string());
                continue;
            }
        };
        if message.get("method").and_then(Value::as_str) == Some("initialize") {
            // Everything after needs the session this opens: relay it before reading on.
            bridge.relay(message).await;
            let b = bridge.clone();
            tasks.spawn(async move { b.listen().await });
        } else {
            let b = bridge.clone();
            tasks.spawn(async move { b.relay(message).await });
        }
    }
    // The client closed stdin: it is done. End the session, so its waiting calls are
    // withdrawn rather than left for a reviewer to approve.
    tasks.abort_all();
    bridge.close().await;
    drop(bridge);
    let _ = writer.await;
    Ok(())
}

/// `URL` as given when it names a path, else `URL/mcp`.
fn endpoint(url: &str) -> Result<String, Failure> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Failure::usage(format!("--connect {url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Failure::usage(format!(
            "--connect {url:?}: expected an http:// or https:// URL"
        )));
    }
    if parsed.path().trim_end_matches('/').is_empty() {
        Ok(format!("{}/mcp", url.trim_end_matches('/')))
    } else {
        Ok(url.to_owned())
    }
}

impl Bridge {
    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, &self.endpoint)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream");
        let (session, version) = self
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        if let Some(v) = version {
            r = r.header("mcp-protocol-version", v);
        }
        r
    }

    /// POST one message; write whatever comes back. A request that gets no answer gets an
    /// error answer from here.
    async fn relay(&self, message: Value) {
        let id = message
            .get("id")
            .cloned()
            .filter(|_| message.get("method").is_some());
        let answered = match self.post(&message).await {
            Ok(answered) => answered,
            Err(e) => {
                if let Some(id) = &id {
                    self.fail(id, &e);
                }
                return;
            }
        };
        if let (Some(id), false) = (&id, answered) {
            self.fail(id, "gatehouse closed the request without an answer");
        }
    }

    /// Whether a response to the message came back.
    async fn post(&self, message: &Value) -> Result<bool, String> {
        let resp = self
            .request(reqwest::Method::POST)
            .json(message)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot reach gatehouse at {}: {}",
                    self.endpoint,
                    crate::text::error_chain(&e)
                )
            })?;
        let status = resp.status();
        if status == StatusCode::ACCEPTED {
            return Ok(true);
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let detail = serde_json::from_str::<Value>(&body)
                .map(|v| super::remote::error_message(&v))
                .unwrap_or(body);
            return Err(format!(
                "gatehouse answered HTTP {status}: {}",
                detail.trim()
            ));
        }
        if let Some(s) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.session.lock().unwrap_or_else(|p| p.into_inner()).0 = Some(s.to_owned());
        }
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if sse {
            self.forward_events(resp).await
        } else {
            let body = resp.text().await.map_err(|e| e.to_string())?;
            Ok(self.forward(&body))
        }
    }

    /// Write one message from gatehouse; whether it was a response (not a notification).
    fn forward(&self, data: &str) -> bool {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return false;
        };
        if let Some(version) = v.pointer("/result/protocolVersion").and_then(Value::as_str) {
            self.session.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(version.to_owned());
        }
        let response = v.get("id").is_some() && v.get("method").is_none();
        let _ = self.out.send(v.to_string());
        response
    }

    /// Relay the events of an SSE response until it ends; whether a response came.
    async fn forward_events(&self, mut resp: reqwest::Response) -> Result<bool, String> {
        let mut buf = String::new();
        let mut data: Vec<String> = Vec::new();
        let mut answered = false;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => return Ok(answered),
                Err(e) if answered => {
                    tracing::debug!(error = %e, "event stream ended");
                    return Ok(true);
                }
                Err(e) => {
                    return Err(format!(
                        "gatehouse dropped the request: {}",
                        crate::text::error_chain(&e)
                    ));
                }
            };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find('\n') {
                let line: String = buf.drain(..=end).collect();
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if !data.is_empty() {
                        answered |= self.forward(&data.join("\n"));
                        data.clear();
                    }
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.strip_prefix(' ').unwrap_or(d).to_owned());
                }
            }
        }
    }

    /// The session's own stream: server-initiated messages (`tools/list_changed`).
    async fn listen(&self) {
        let Ok(resp) = self.request(reqwest::Method::GET).send().await else {
            return;
        };
        if resp.status().is_success() {
            let _ = self.forward_events(resp).await;
        }
    }

    async fn close(&self) {
        if self
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .is_some()
        {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                self.request(reqwest::Method::DELETE).send(),
            )
            .await;
        }
    }

    fn fail(&self, id: &Value, message: &str) {
        let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": BRIDGE_ERROR, "message": message}});
        let _ = self.out.send(error.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint("http://127.0.0.1:7878").ok().as_deref(),
            Some("http://127.0.0.1:7878/mcp")
        );
        assert_eq!(
            endpoint("http://h:1/").ok().as_deref(),
            Some("http://h:1/mcp")
        );
        assert_eq!(
            endpoint("http://h:1/mcp").ok().as_deref(),
            Some("http://h:1/mcp")
        );
        assert!(endpoint("ftp://h").is_err());
        assert!(endpoint("nope").is_err());
    }
}
