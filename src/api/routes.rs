//! Route handlers: translate HTTP into runner commands and back.

use super::auth::{Identity, Role};
use super::body::JsonBody;
use super::{ApiError, ApiState};
use crate::domain::{Approval, ApprovalStatus, Verdict};
use crate::runner::{DecideRequest, ListQuery, SubmitRequest};
use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// The authenticated caller.
pub struct Caller(pub Identity);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        match token.and_then(|t| state.inner.tokens.lookup(t)) {
            Some(id) => Ok(Caller(id.clone())),
            None => {
                state.inner.refused(StatusCode::UNAUTHORIZED);
                // Audited as one counting record per minute, never one each (DESIGN §9).
                state.inner.runner.count_unauthenticated();
                Err(ApiError::unauthorized())
            }
        }
    }
}

fn require(state: &ApiState, who: &Identity, role: Role, what: &str) -> Result<(), ApiError> {
    if who.has(role) {
        return Ok(());
    }
    Err(forbid(state, who, role, what))
}

/// A counted 403 saying which role was missing.
pub(super) fn forbid(state: &ApiState, who: &Identity, role: Role, what: &str) -> ApiError {
    state.inner.refused(StatusCode::FORBIDDEN);
    ApiError::forbidden(
        "forbidden",
        format!(
            "{} may not {what} (it needs the {} role)",
            who.name,
            role.as_str()
        ),
    )
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(format!("no approval {raw:?}")))
}

/// `?wait=SECONDS` of a long poll, capped at 5 minutes.
pub(super) fn parse_wait(v: &str) -> Result<Duration, ApiError> {
    let secs: f64 = v
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| {
            ApiError::unprocessable(format!("wait: {v:?} is not a number of seconds"))
        })?;
    Ok(Duration::from_secs_f64(secs.min(300.0)))
}

/// A timeout given as seconds or a human duration ("90s", "15m").
#[derive(Deserialize)]
#[serde(untagged)]
enum TimeoutValue {
    Seconds(f64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    tool: String,
    arguments: Map<String, Value>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    timeout: Option<TimeoutValue>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    editable: Option<bool>,
    /// Where the call comes from (`{host, cwd, session, …}` from a hook): shown to reviewers,
    /// never part of the arguments hash (DESIGN §10).
    #[serde(default)]
    context: Option<Map<String, Value>>,
}

const MAX_NAME: usize = 256;
const MAX_TEXT: usize = 64 * 1024;
const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);
/// A context is a few labels, not a second arguments object.
const MAX_CONTEXT_KEYS: usize = 32;
const MAX_CONTEXT_VALUE: usize = 4096;

/// `context`: an object of at most 32 strings, keys non-empty and up to 256 bytes, values up to
/// 4 KiB.
fn parse_context(
    raw: Option<Map<String, Value>>,
) -> Result<Option<std::collections::BTreeMap<String, String>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.len() > MAX_CONTEXT_KEYS {
        return Err(ApiError::unprocessable(format!(
            "context: more than {MAX_CONTEXT_KEYS} keys"
        )));
    }
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in raw {
        if k.is_empty() || k.len() > MAX_NAME {
            return Err(ApiError::unprocessable(format!(
                "context: key {:?} must be 1 to {MAX_NAME} bytes",
                crate::text::clip(&k, 40)
            )));
        }
        let Value::String(v) = v else {
            return Err(ApiError::unprocessable(format!(
                "context.{k}: must be a string"
            )));
        };
        if v.len() > MAX_CONTEXT_VALUE {
            return Err(ApiError::unprocessable(format!(
                "context.{k}: longer than {MAX_CONTEXT_VALUE} bytes"
            )));
        }
        out.insert(k, v);
    }
    Ok(Some(out))
}

fn check_len(field: &str, v: Option<&str>, max: usize) -> Result<(), ApiError> {
    match v {
        Some("") => Err(ApiError::unprocessable(format!(
            "{field}: must not be empty"
        ))),
        Some(s) if s.len() > max => Err(ApiError::unprocessable(format!(
            "{field}: longer than {max} bytes"
        ))),
        _ => Ok(()),
    }
}

impl SubmitBody {
    /// The runner's request, with the claims `who` may make marked verified (DESIGN §9).
    pub(super) fn into_request(self, who: &Identity) -> Result<SubmitRequest, ApiError> {
        if self.tool.trim().is_empty() {
            return Err(ApiError::unprocessable("tool: must not be empty"));
        }
        check_len("tool", Some(&self.tool), MAX_NAME)?;
        for (field, v) in [
            ("agent", self.agent.as_deref()),
            ("run_id", self.run_id.as_deref()),
            ("server", self.server.as_deref()),
            ("queue", self.queue.as_deref()),
            ("idempotency_key", self.idempotency_key.as_deref()),
        ] {
            check_len(field, v, MAX_NAME)?;
        }
        if let Some(r) = &self.reasoning
            && r.len() > MAX_TEXT
        {
            return Err(ApiError::unprocessable(format!(
                "reasoning: longer than {MAX_TEXT} bytes"
            )));
        }
        let timeout = match self.timeout {
            None => None,
            Some(TimeoutValue::Seconds(s)) => {
                if !(s.is_finite() && s > 0.0 && s <= MAX_TIMEOUT.as_secs_f64()) {
                    return Err(ApiError::unprocessable(
                        "timeout: must be between 0 and 30 days",
                    ));
                }
                Some(Duration::from_secs_f64(s))
            }
            Some(TimeoutValue::Text(t)) => {
                let d = humantime::parse_duration(&t).map_err(|e| {
                    ApiError::unprocessable(format!("timeout: {t:?} is not a duration ({e})"))
                })?;
                if d.is_zero() || d > MAX_TIMEOUT {
                    return Err(ApiError::unprocessable(
                        "timeout: must be between 0 and 30 days",
                    ));
                }
                Some(d)
            }
        };
        // Claims stay claims unless the identity's `agents`/`servers` lists allow them.
        let agent_verified = self
            .agent
            .as_deref()
            .is_some_and(|a| who.may_claim_agent(a));
        let server_verified = self
            .server
            .as_deref()
            .is_some_and(|s| who.may_claim_server(s));
        Ok(SubmitRequest {
            tool: self.tool,
            arguments: self.arguments,
            reasoning: self.reasoning,
            agent: self.agent,
            roles: who.role_names(),
            agent_verified,
            run_id: self.run_id,
            server: self.server,
            server_verified,
            context: parse_context(self.context)?,
            queue: self.queue,
            timeout,
            idempotency_key: self.idempotency_key,
            editable: self.editable.unwrap_or(false),
            outcome_unknown: false,
        })
    }
}

fn approval_response(status: StatusCode, a: &Approval) -> Response {
    (status, Json(a)).into_response()
}

pub async fn submit(
    State(state): State<ApiState>,
    Caller(who): Caller,
    JsonBody(body): JsonBody<SubmitBody>,
) -> Result<Response, ApiError> {
    require(&state, &who, Role::Agent, "submit approvals")?;
    let started = std::time::Instant::now();
    let req = body.into_request(&who)?;
    let done = state.inner.runner.submit(&who.name, req).await?;
    state
        .inner
        .metrics
        .submit_seconds
        .observe(started.elapsed().as_secs_f64());
    let status = if done.approval.is_pending() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = approval_response(status, &done.approval);
    if done.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

pub async fn list(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    require(&state, &who, Role::Reviewer, "list approvals")?;
    let mut q = ListQuery {
        status: Some(ApprovalStatus::Pending),
        limit: 100,
        ..Default::default()
    };
    for (k, v) in &params {
        match k.as_str() {
            "status" => {
                q.status = match v.as_str() {
                    "all" => None,
                    s => Some(ApprovalStatus::parse(s).ok_or_else(|| {
                        ApiError::unprocessable(format!(
                            "status: {s:?} is not one of pending, approved, denied, expired, cancelled, all"
                        ))
                    })?),
                }
            }
            "queue" => q.queue = Some(v.clone()),
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| ApiError::unprocessable(format!("limit: {v:?} is not a number from 1 to 1000")))?
            }
            "after" => {
                q.after = Some(
                    Uuid::parse_str(v).map_err(|_| ApiError::unprocessable(format!("after: {v:?} is not an approval id")))?,
                )
            }
            other => return Err(ApiError::unprocessable(format!("unknown query parameter {other:?}"))),
        }
    }
    let page = state.inner.runner.list(q).await?;
    Ok(Json(
        json!({"approvals": page.approvals, "next": page.next}),
    ))
}

pub async fn get_one(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(raw): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    let mut wait = None;
    for (k, v) in &params {
        match k.as_str() {
            "wait" => wait = Some(parse_wait(v)?),
            other => {
                return Err(ApiError::unprocessable(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    let visible = |a: &Approval| who.has(Role::Reviewer) || a.requested_by == who.name;
    let current = match wait {
        Some(wait) => {
            // A long poll holds one of the identity's wait slots until it returns.
            let _slot = state.inner.wait_permit(&who.name)?;
            super::waits::long_poll(&state, id, wait, visible).await?
        }
        None => state
            .inner
            .runner
            .get(id)
            .await?
            .filter(visible)
            .ok_or_else(|| ApiError::not_found(format!("no approval {id}")))?,
    };
    Ok(approval_response(StatusCode::OK, &current))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    decision: Verdict,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    arguments_sha256: Option<String>,
    /// Edited arguments to approve instead (approvals submitted with `editable: true`).
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
    /// `"run"`: also grant the tool for the rest of the approval's run.
    #[serde(default)]
    scope: Option<String>,
}

pub async fn decide(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    Path(raw): Path<String>,
    body: Result<JsonBody<DecisionBody>, ApiError>,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    // Without a valid token the attempt was counted (one audit record per minute) by the
    // extractor; one record per attempt would let anyone fill the audit log.
    let Caller(who) = caller?;
    if !who.has(Role::Reviewer) {
        let e = require(&state, &who, Role::Reviewer, "decide approvals").err();
        let msg = e.as_ref().map(|e| e.message.clone()).unwrap_or_default();
        state
            .inner
            .runner
            .record_refusal(&who.name, Some(id), "forbidden", &msg)
            .await;
        return Err(e.unwrap_or_else(|| ApiError::forbidden("forbidden", msg)));
    }
    let JsonBody(body) = body?;
    if let Some(r) = &body.reason
        && r.len() > MAX_TEXT
    {
        return Err(ApiError::unprocessable(format!(
            "reason: longer than {MAX_TEXT} bytes"
        )));
    }
    if let Some(sha) = &body.arguments_sha256
        && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ApiError::unprocessable(
            "arguments_sha256: must be 64 hex digits",
        ));
    }
    let a = state
        .inner
        .runner
        .decide(
            &who.name,
            DecideRequest {
                id,
                verdict: body.decision,
                reason: body.reason,
                arguments_sha256: body.arguments_sha256,
                edited_arguments: body.arguments,
                scope: body.scope,
            },
        )
        .await
        .inspect_err(|e| count_forbidden(&state, e))?;
    Ok(approval_response(StatusCode::OK, &a))
}

pub async fn audit(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    require(&state, &who, Role::Reviewer, "read the audit log")?;
    let mut after = 0u64;
    let mut limit = 100usize;
    for (k, v) in &params {
        match k.as_str() {
            "after" => {
                after = v.parse().map_err(|_| {
                    ApiError::unprocessable(format!("after: {v:?} is not a sequence number"))
                })?
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        ApiError::unprocessable(format!(
                            "limit: {v:?} is not a number from 1 to 1000"
                        ))
                    })?
            }
            other => {
                return Err(ApiError::unprocessable(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    let records = state.inner.runner.audit(after, limit + 1).await?;
    let more = records.len() > limit;
    let records: Vec<_> = records.into_iter().take(limit).collect();
    let next = if more {
        records.last().map(|r| r.seq)
    } else {
        None
    };
    Ok(Json(json!({"records": records, "next": next})))
}

/// The most recent decisions (up to 200, oldest first), for a console's history pane.
pub async fn recent(
    State(state): State<ApiState>,
    Caller(who): Caller,
) -> Result<Json<Value>, ApiError> {
    require(&state, &who, Role::Reviewer, "list recent decisions")?;
    // Not a snapshot: that reads every pending approval, which over many is a stall of
    // the runner per request.
    let recent = state.inner.runner.recent().await?;
    Ok(Json(json!({"approvals": recent, "next": null})))
}

/// Move a pending approval to the next escalation tier now.
pub async fn escalate(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    require(&state, &who, Role::Reviewer, "escalate approvals")?;
    let a = state
        .inner
        .runner
        .escalate(&who.name, id)
        .await
        .inspect_err(|e| count_forbidden(&state, e))?;
    Ok(approval_response(StatusCode::OK, &a))
}

/// A runner's 403 (not a reviewer of the queue, self-approval) counts as a refusal.
fn count_forbidden(state: &ApiState, e: &crate::runner::RunnerError) {
    if matches!(e, crate::runner::RunnerError::Forbidden { .. }) {
        state.inner.refused(StatusCode::FORBIDDEN);
    }
}

/// `POST /v1/approvals/{id}/cancel`: the submitter withdraws its own pending approval (a hook
/// whose host stopped waiting), so no reviewer approves a call nobody waits for.
pub async fn cancel(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    require(&state, &who, Role::Agent, "cancel approvals")?;
    let a = state.inner.runner.cancel_approval(&who.name, id).await?;
    Ok(approval_response(StatusCode::OK, &a))
}

pub async fn grants(
    State(state): State<ApiState>,
    Caller(who): Caller,
) -> Result<Json<Value>, ApiError> {
    require(&state, &who, Role::Reviewer, "list grants")?;
    let grants = state.inner.runner.grants().await?;
    Ok(Json(json!({"grants": grants})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    run_id: String,
    tool: String,
    #[serde(default)]
    server: Option<String>,
    /// Only this identity's grant; absent: every identity's grant of the tool in the run.
    #[serde(default)]
    identity: Option<String>,
}

pub async fn revoke_grant(
    State(state): State<ApiState>,
    Caller(who): Caller,
    JsonBody(body): JsonBody<RevokeBody>,
) -> Result<Json<Value>, ApiError> {
    require(&state, &who, Role::Reviewer, "revoke grants")?;
    let g = state
        .inner
        .runner
        .revoke_grant(
            &who.name,
            &body.run_id,
            &body.tool,
            body.server.as_deref(),
            body.identity.as_deref(),
        )
        .await?;
    Ok(Json(json!({"revoked": g})))
}

/// Who the presented token stands for (the remote console shows it as the reviewer).
pub async fn whoami(Caller(who): Caller) -> Json<Value> {
    let roles: Vec<&str> = who.roles.iter().map(|r| r.as_str()).collect();
    Json(json!({"name": who.name, "roles": roles}))
}

pub async fn healthz(State(state): State<ApiState>) -> Response {
    if state.inner.runner.is_closed() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the runner has stopped",
        )
        .into_response();
    }
    Json(json!({"status": "ok"})).into_response()
}

pub async fn fallback() -> ApiError {
    ApiError::not_found("no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
