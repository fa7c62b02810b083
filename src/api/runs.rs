//! `/v1/runs`: start, read, list and cancel agent runs.

use super::auth::Role;
use super::body::JsonBody;
use super::routes::Caller;
use super::{ApiError, ApiState};
use crate::domain::{Run, Subject};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    agent: String,
    input: String,
}

/// Agents start runs; reviewers read them (and cancel them); an agent reads its own.
fn may_read(who: &super::auth::Identity, run: &Run) -> bool {
    who.has(Role::Reviewer) || run.started_by == who.name
}

fn parse_run_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(format!("no run {raw:?}")))
}

/// The run as the API shows it: the summary's fields plus the conversation and the calls
/// of the current turn.
fn run_json(run: &Run) -> Value {
    let mut v = serde_json::to_value(run.summary()).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.insert("max_turns".into(), json!(run.max_turns));
        m.insert(
            "messages".into(),
            serde_json::to_value(&run.messages).unwrap_or_default(),
        );
        m.insert(
            "calls".into(),
            serde_json::to_value(&run.calls).unwrap_or_default(),
        );
    }
    v
}

pub async fn start(
    State(state): State<ApiState>,
    Caller(who): Caller,
    JsonBody(body): JsonBody<StartBody>,
) -> Result<Response, ApiError> {
    if !who.has(Role::Agent) {
        return Err(super::routes::forbid(
            &state,
            &who,
            Role::Agent,
            "start runs",
        ));
    }
    let run = state
        .inner
        .runner
        .start_run(&who.name, &body.agent, &body.input)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"run_id": run.run_id, "status": run.status, "run": run})),
    )
        .into_response())
}

pub async fn get_one(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(raw): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let id = parse_run_id(&raw)?;
    let mut wait = None;
    let mut seen = None;
    for (k, v) in &params {
        match k.as_str() {
            // `?wait=S&status=X`: return as soon as the status is not X (the caller's last
            // view), so a change that happened before the request is not waited out.
            "status" => {
                seen = Some(
                    serde_json::from_value::<crate::domain::RunStatus>(Value::String(v.clone()))
                        .map_err(|_| {
                            ApiError::unprocessable(format!(
                                "status: {v:?} is not a run status (running, pending_approval, completed, failed, cancelled)"
                            ))
                        })?,
                );
            }
            "wait" => wait = Some(super::routes::parse_wait(v)?),
            other => {
                return Err(ApiError::unprocessable(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    let runner = &state.inner.runner;
    // A long poll holds one of the identity's wait slots until it returns.
    let _slot = match wait {
        Some(_) => Some(state.inner.wait_permit(&who.name)?),
        None => None,
    };
    let mut events = wait.map(|_| runner.subscribe());
    let not_found = || ApiError::not_found(format!("no run {id}"));
    let mut run = runner
        .run(id)
        .await?
        .filter(|r| may_read(&who, r))
        .ok_or_else(not_found)?;
    // `?wait=S` returns once the run has finished or changed status, or when S runs out.
    if let (Some(wait), Some(events)) = (wait, events.as_mut()) {
        let deadline = tokio::time::Instant::now() + wait;
        let status = seen.unwrap_or(run.status);
        while !run.status.is_finished() && run.status == status {
            match state.inner.drain.within(deadline, events.recv()).await {
                Err(_) => break,
                Ok(Ok(e)) => {
                    if let Subject::Run(s) = &e.subject
                        && s.run_id == id
                        && let Some(r) = runner.run(id).await?
                    {
                        run = r;
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    if let Some(r) = runner.run(id).await? {
                        run = r;
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
            }
        }
    }
    Ok(Json(run_json(&run)).into_response())
}

pub async fn list(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if !who.has(Role::Reviewer) && !who.has(Role::Agent) {
        return Err(super::routes::forbid(
            &state,
            &who,
            Role::Reviewer,
            "list runs",
        ));
    }
    let mut limit = 100usize;
    let mut before = None;
    for (k, v) in &params {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse()
                    .map_err(|_| ApiError::unprocessable(format!("limit: {v:?} is not a number")))?
            }
            "after" | "before" => {
                before =
                    Some(Uuid::parse_str(v).map_err(|_| {
                        ApiError::unprocessable(format!("{k}: {v:?} is not a run id"))
                    })?)
            }
            other => {
                return Err(ApiError::unprocessable(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    let page = state.inner.runner.runs(before, limit).await?;
    let runs: Vec<_> = page
        .runs
        .into_iter()
        .filter(|r| who.has(Role::Reviewer) || r.started_by == who.name)
        .collect();
    Ok(Json(json!({"runs": runs, "next": page.next})))
}

/// `GET /v1/servers`: the MCP servers and their state.
pub async fn servers(
    State(state): State<ApiState>,
    Caller(who): Caller,
) -> Result<Json<Value>, ApiError> {
    if !who.has(Role::Reviewer) {
        return Err(super::routes::forbid(
            &state,
            &who,
            Role::Reviewer,
            "list servers",
        ));
    }
    let servers: Vec<Value> = state
        .inner
        .runner
        .mcp_status()
        .into_iter()
        .map(|s| {
            json!({
                "name": s.name,
                "state": s.state.to_string(),
                "tools": s.tools,
                "restarts": s.restarts,
                "pid": s.pid,
            })
        })
        .collect();
    Ok(Json(json!({ "servers": servers })))
}

pub async fn cancel(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_run_id(&raw)?;
    let runner = &state.inner.runner;
    let run = runner
        .run(id)
        .await?
        .filter(|r| may_read(&who, r))
        .ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
    if !who.has(Role::Reviewer) && run.started_by != who.name {
        return Err(super::routes::forbid(
            &state,
            &who,
            Role::Reviewer,
            "cancel this run",
        ));
    }
    let summary = runner.cancel_run(&who.name, id).await?;
    Ok(Json(serde_json::to_value(summary).unwrap_or_default()))
}
