//! The remote link: a console attached to `gatehouse serve` over HTTP + Server-Sent Events.
//!
//! Events arrive by SSE; after a dropped link the stream resumes with `Last-Event-ID`, so no
//! change is missed or repeated. Decisions are POSTed; when the answer is lost the approval
//! is read back, so a decision is reported either as applied or as not sent, never guessed.

use super::*;
use crate::domain::{Approval, ApprovalStatus};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::json;
use std::time::Duration;

/// Why the daemon could not be asked who the token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WhoamiError {
    /// The daemon is not reachable (yet): worth trying again. The root cause.
    Unreachable(String),
    /// The daemon answered and said no, or the token may not review: retrying cannot help.
    Refused(String),
}

/// The role a console needs (an admin has every role).
const REVIEWER_ROLES: &[&str] = &["reviewer", "admin"];

/// Who the token belongs to, checked before the console takes the terminal: a token the
/// daemon refuses, or one without the reviewer role, is refused here (a console with it would
/// show an empty list while every request failed).
pub async fn whoami(base: &str, token: &str) -> Result<String, WhoamiError> {
    let client = client(Duration::from_secs(10)).map_err(WhoamiError::Refused)?;
    let resp = client
        .get(format!("{base}/v1/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| WhoamiError::Unreachable(root_cause(&e)))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if status != StatusCode::OK {
        let msg = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        // a daemon still starting (or briefly overloaded) is worth waiting for
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(WhoamiError::Unreachable(format!("HTTP {status}: {msg}")));
        }
        return Err(WhoamiError::Refused(format!(
            "{base} refused the token: HTTP {status}: {msg}"
        )));
    }
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| WhoamiError::Refused(format!("{base} gave no identity for the token")))?;
    let roles: Vec<&str> = v
        .get("roles")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !roles.iter().any(|r| REVIEWER_ROLES.contains(r)) {
        let has = if roles.is_empty() {
            "no role".to_string()
        } else {
            format!("only {}", roles.join(", "))
        };
        return Err(WhoamiError::Refused(format!(
            "the token of {name} lacks the reviewer role ({has}): a console needs a reviewer \
             token"
        )));
    }
    Ok(name)
}

/// The innermost cause of a request error, in words a person can act on: `connection
/// refused`, `no such host`, `timed out` (reqwest's own text only wraps these).
pub fn root_cause(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => "connection reset".into(),
                std::io::ErrorKind::TimedOut => "timed out".into(),
                _ => io.to_string(),
            };
        }
        last = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    last
}

/// How long to wait before try `attempt` (1, 2, …): 0.5 s doubling to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(5)).min(5000))
}

fn client(timeout: Duration) -> Result<Client, String> {
    Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Attach to a daemon. `reviewer` is the token's identity (see [`whoami`]).
pub fn link(base: String, token: String, reviewer: String) -> Result<FrontendLink, String> {
    let (ev_tx, ev_rx) = mpsc::channel(4096);
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<FrontendCommand>(64);
    // Reads of the event stream must not time out; requests must.
    let stream_client = Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let request_client = client(Duration::from_secs(15))?;
    let (connected_tx, connected_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(poll_servers(
        base.clone(),
        token.clone(),
        client(SERVERS_POLL)?,
        ev_tx.clone(),
        connected_rx,
    ));
    tokio::spawn(events(
        base.clone(),
        token.clone(),
        stream_client,
        request_client.clone(),
        ev_tx,
        connected_tx,
    ));
    let who = reviewer.clone();
    tokio::spawn(async move {
        while let Some(cmd) = cmd_rx.recv().await {
            let (c, b, t, w) = (
                request_client.clone(),
                base.clone(),
                token.clone(),
                who.clone(),
            );
            tokio::spawn(async move {
                match cmd {
                    FrontendCommand::Decide { request, reply } => {
                        let _ = reply.send(decide(&c, &b, &t, &w, request).await);
                    }
                    FrontendCommand::Escalate { approval_id, reply } => {
                        let _ = reply.send(escalate(&c, &b, &t, approval_id).await);
                    }
                    FrontendCommand::FetchRun { run_id, reply } => {
                        let _ = reply.send(fetch_run(&c, &b, &t, run_id).await);
                    }
                }
            });
        }
    });
    Ok(FrontendLink {
        events: ev_rx,
        commands: cmd_tx,
        reviewer,
    })
}

async fn events(
    base: String,
    token: String,
    stream: Client,
    requests: Client,
    tx: mpsc::Sender<FrontendEvent>,
    connected: tokio::sync::watch::Sender<bool>,
) {
    let mut last: Option<u64> = None;
    let mut attempt = 0u32;
    loop {
        let mut req = stream
            .get(format!("{base}/v1/events"))
            .bearer_auth(&token)
            .header("accept", "text/event-stream");
        if let Some(seq) = last {
            req = req.header("last-event-id", seq.to_string());
        }
        let result = async {
            let resp = req.send().await.map_err(|e| root_cause(&e))?;
            let status = resp.status();
            if status != StatusCode::OK {
                // the daemon's own words say why (a revoked token, a missing role)
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                return Err(
                    match body.pointer("/error/message").and_then(Value::as_str) {
                        Some(m) => format!("HTTP {status}: {m}"),
                        None => format!("HTTP {status}"),
                    },
                );
            }
            Ok(resp)
        }
        .await;
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                connected.send_replace(false);
                attempt += 1;
                if !reconnecting(&tx, &base, attempt, e).await {
                    return;
                }
                continue;
            }
        };
        attempt = 0;
        if tx
            .send(FrontendEvent::Connection(Connection::Connected {
                url: base.clone(),
            }))
            .await
            .is_err()
        {
            return;
        }
        // First connection: the stream starts at the position the daemon names, so the picture
        // so far comes from a list (taken after the stream opened, so it misses nothing), and a
        // link lost before the first event resumes from that position, never from the start of
        // the log. Reconnections resume the stream instead and need no list.
        let position: u64 = resp
            .headers()
            .get("x-gatehouse-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if last.is_none() {
            match pending(&requests, &base, &token).await {
                Ok(pending) => {
                    // History is a courtesy: without it the pane fills as decisions come.
                    let recent = recent(&requests, &base, &token).await.unwrap_or_default();
                    let runs = runs(&requests, &base, &token).await.unwrap_or_default();
                    let snap = FrontendEvent::Snapshot {
                        pending,
                        recent,
                        runs,
                        seq: 0,
                    };
                    if tx.send(snap).await.is_err() {
                        return;
                    }
                    last = Some(position);
                }
                Err(e) => {
                    attempt += 1;
                    if !reconnecting(&tx, &base, attempt, e).await {
                        return;
                    }
                    continue;
                }
            }
        }
        connected.send_replace(true);
        let mut sse = resp.bytes_stream().eventsource();
        let end = loop {
            match sse.next().await {
                None => break "the daemon closed the event stream".to_string(),
                Some(Err(e)) => break format!("event stream: {e}"),
                Some(Ok(ev)) => {
                    let Ok(e) = serde_json::from_str::<Event>(&ev.data) else {
                        continue;
                    };
                    last = Some(e.seq.max(last.unwrap_or(0)));
                    if tx.send(FrontendEvent::Change(Box::new(e))).await.is_err() {
                        return;
                    }
                }
            }
        };
        connected.send_replace(false);
        attempt += 1;
        if !reconnecting(&tx, &base, attempt, end).await {
            return;
        }
    }
}

/// How often a remote console asks for the MCP servers' state.
pub const SERVERS_POLL: Duration = Duration::from_secs(4);

/// The MCP servers' state, polled while the event stream is connected (and at once after
/// each connection). Sent only when it changed; a failed poll keeps what was last known.
async fn poll_servers(
    base: String,
    token: String,
    client: Client,
    tx: mpsc::Sender<FrontendEvent>,
    mut connected: tokio::sync::watch::Receiver<bool>,
) {
    let mut last: Option<Vec<ServerView>> = None;
    loop {
        if connected.wait_for(|c| *c).await.is_err() {
            return;
        }
        if let Ok(now) = servers(&client, &base, &token).await
            && last.as_ref() != Some(&now)
        {
            last = Some(now.clone());
            if tx.send(FrontendEvent::Servers(now)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SERVERS_POLL) => {}
            r = connected.changed() => if r.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}

/// `GET /v1/servers`. A daemon without the endpoint (404) or a token that may not list
/// servers (403) has none to show.
async fn servers(client: &Client, base: &str, token: &str) -> Result<Vec<ServerView>, String> {
    let (status, v) = get_json(client, format!("{base}/v1/servers"), token).await?;
    match status {
        StatusCode::OK => Ok(servers_from_json(&v)),
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => Ok(Vec::new()),
        s => Err(format!("HTTP {s}")),
    }
}

/// `GET url` with the token: the status and the body (`null` when it is not JSON).
async fn get_json(
    client: &Client,
    url: String,
    token: &str,
) -> Result<(StatusCode, Value), String> {
    let resp = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// `GET url` whose answer must be 200.
async fn get_ok(client: &Client, url: String, token: &str) -> Result<Value, String> {
    match get_json(client, url, token).await? {
        (StatusCode::OK, v) => Ok(v),
        (status, _) => Err(format!("HTTP {status}")),
    }
}

/// The servers of a `GET /v1/servers` answer.
pub fn servers_from_json(v: &Value) -> Vec<ServerView> {
    v["servers"]
        .as_array()
        .map(|a| a.iter().filter_map(ServerView::from_json).collect())
        .unwrap_or_default()
}

/// Report the broken link and wait before the next try. False when the console is gone.
async fn reconnecting(
    tx: &mpsc::Sender<FrontendEvent>,
    base: &str,
    attempt: u32,
    last_error: String,
) -> bool {
    let wait = backoff(attempt);
    let state = Connection::Reconnecting {
        url: base.to_string(),
        attempt,
        last_error,
        next_try: Some(std::time::Instant::now() + wait),
    };
    if tx.send(FrontendEvent::Connection(state)).await.is_err() {
        return false;
    }
    tokio::time::sleep(wait).await;
    true
}

async fn recent(client: &Client, base: &str, token: &str) -> Result<Vec<Approval>, String> {
    let v = get_ok(client, format!("{base}/v1/approvals/recent"), token).await?;
    serde_json::from_value(v["approvals"].clone()).map_err(|e| e.to_string())
}

/// The newest runs, oldest first (what the runs pane starts with).
async fn runs(client: &Client, base: &str, token: &str) -> Result<Vec<RunSummary>, String> {
    let v = get_ok(client, format!("{base}/v1/runs?limit=200"), token).await?;
    let mut runs: Vec<RunSummary> =
        serde_json::from_value(v["runs"].clone()).map_err(|e| e.to_string())?;
    runs.reverse();
    Ok(runs)
}

async fn pending(client: &Client, base: &str, token: &str) -> Result<Vec<Approval>, String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/approvals?status=pending&limit=1000");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let v = get_ok(client, url, token)
            .await
            .map_err(|e| format!("listing pending approvals: {e}"))?;
        let page: Vec<Approval> =
            serde_json::from_value(v["approvals"].clone()).map_err(|e| e.to_string())?;
        out.extend(page);
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return Ok(out),
        }
    }
}

async fn decide(
    client: &Client,
    base: &str,
    token: &str,
    who: &str,
    r: DecisionRequest,
) -> DecisionOutcome {
    let mut body = json!({
        "decision": r.verdict,
        "arguments_sha256": r.arguments_sha256,
    });
    if let Some(reason) = &r.reason {
        body["reason"] = json!(reason);
    }
    if let Some(args) = &r.edited_arguments {
        body["arguments"] = json!(args);
    }
    if let Some(scope) = &r.scope {
        body["scope"] = json!(scope);
    }
    let url = format!("{base}/v1/approvals/{}/decision", r.approval_id);
    let sent = client
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await;
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) if e.is_connect() => {
            return DecisionOutcome::NotSent {
                message: format!("not sent: cannot reach {base}: {e}"),
            };
        }
        // Sent, maybe applied, answer lost: read the approval back to know.
        Err(e) => return settle(client, base, token, who, &r, e.to_string()).await,
    };
    let status = resp.status();
    let v: Value = match resp.json().await {
        Ok(v) => v,
        Err(e) => return settle(client, base, token, who, &r, e.to_string()).await,
    };
    let message = v
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match status {
        StatusCode::OK => match serde_json::from_value(v) {
            Ok(a) => DecisionOutcome::Applied(a),
            Err(e) => DecisionOutcome::Conflict {
                message: format!("the daemon's answer was unreadable: {e}"),
                approval: None,
            },
        },
        StatusCode::CONFLICT | StatusCode::NOT_FOUND => DecisionOutcome::Conflict {
            message,
            approval: serde_json::from_value(v["approval"].clone()).ok(),
        },
        StatusCode::SERVICE_UNAVAILABLE => DecisionOutcome::NotSent { message },
        _ => DecisionOutcome::Refused {
            message: format!("HTTP {status}: {message}"),
        },
    }
}

async fn escalate(client: &Client, base: &str, token: &str, id: uuid::Uuid) -> Result<(), String> {
    let resp = client
        .post(format!("{base}/v1/approvals/{id}/escalate"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .map_err(|e| format!("cannot reach {base}: {e}"))?;
    if resp.status() == StatusCode::OK {
        return Ok(());
    }
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    Err(v
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {status}")))
}

/// `GET /v1/runs/{id}`: the summary's fields (`run_id`, …) plus `max_turns`, `messages` and
/// `calls`, read back into a [`Run`].
async fn fetch_run(
    client: &Client,
    base: &str,
    token: &str,
    id: uuid::Uuid,
) -> Result<crate::domain::Run, String> {
    let (status, v) = get_json(client, format!("{base}/v1/runs/{id}"), token)
        .await
        .map_err(|e| format!("cannot reach {base}: {e}"))?;
    if status != StatusCode::OK {
        return Err(v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}")));
    }
    run_from_json(v)
}

/// The API's run JSON as a [`Run`]: its id is under `run_id`.
pub fn run_from_json(mut v: Value) -> Result<crate::domain::Run, String> {
    if let Value::Object(m) = &mut v
        && let Some(id) = m.remove("run_id")
    {
        m.insert("id".into(), id);
    }
    serde_json::from_value(v).map_err(|e| format!("unreadable run: {e}"))
}

/// After a lost answer: applied if the approval now carries our decision, not sent if it is
/// still pending (so the reviewer may press the key again), a conflict otherwise.
async fn settle(
    client: &Client,
    base: &str,
    token: &str,
    who: &str,
    r: &DecisionRequest,
    error: String,
) -> DecisionOutcome {
    let want = match r.verdict {
        crate::domain::Verdict::Approve => ApprovalStatus::Approved,
        crate::domain::Verdict::Deny => ApprovalStatus::Denied,
    };
    for _ in 0..5 {
        let got = client
            .get(format!("{base}/v1/approvals/{}", r.approval_id))
            .bearer_auth(token)
            .send()
            .await;
        if let Ok(resp) = got
            && let Ok(a) = resp.json::<Approval>().await
        {
            return match a.status {
                ApprovalStatus::Pending => DecisionOutcome::NotSent {
                    message: format!("not applied ({error}); the approval is still pending"),
                },
                s if s == want && a.decision.as_ref().is_some_and(|d| d.by == who) => {
                    DecisionOutcome::Applied(a)
                }
                _ => DecisionOutcome::Conflict {
                    message: format!("the approval is {} (decided elsewhere)", a.status.as_str()),
                    approval: Some(a),
                },
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    DecisionOutcome::NotSent {
        message: format!(
            "no answer from the daemon ({error}); the outcome is unknown until the link is back — check the approval before deciding again"
        ),
    }
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
