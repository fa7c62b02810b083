//! `POST /v1/hooks/claude-code` (DESIGN §10): Claude Code's `"type": "http"` hook. The same
//! JSON as `gatehouse hook claude-code` reads on stdin; the answer is the same JSON it prints,
//! after waiting up to `?wait=S` (default 570) for a reviewer.
//!
//! Claude Code reads a non-2xx answer as "no decision" and goes on, so every problem is
//! answered 200 with a deny: a bad token or a missing role (a misconfigured hook must not
//! quietly stop gating), a body or hook JSON gatehouse cannot read, a submission it refuses,
//! a reviewer who does not decide in time. Only the guard's refusals of what a browser could
//! send (a foreign `Host` or `Origin`, a non-JSON body) keep their status: Claude Code sends
//! none of them.
//!
//! The daemon does not read `transcript_path`: a caller could name any file on the daemon's
//! machine. The command form reads it on the agent's own machine.

use super::routes::{Caller, SubmitBody, forbid};
use super::{ApiError, ApiState, Role, body::JsonBody};
use crate::domain::Approval;
use crate::hook::{HookCall, Host, Verdict};
use crate::runner::RunnerHandle;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

const DEFAULT_WAIT: Duration = Duration::from_secs(570);
/// Claude Code stops waiting for a hook after 10 minutes.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// As in the command form: the approval outlives the wait, so the cancel ends it.
const GRACE: Duration = Duration::from_secs(5);

pub async fn claude_code(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    input: Result<JsonBody<Value>, ApiError>,
) -> Json<Value> {
    // Every refusal is counted (and a bad token audited) as on any route; only the answer
    // differs: a deny Claude Code obeys, where a 401 or 400 would let the tool run.
    let refused =
        |input: &Value, why: &str| deny_only(input, format!("gatehouse refused this call: {why}"));
    let input = match input {
        Ok(JsonBody(v)) => v,
        Err(e) => {
            state.inner.metrics.refusal("bad_request");
            return refused(&Value::Null, &e.message);
        }
    };
    let who = match caller {
        Ok(Caller(who)) => who,
        Err(e) => return refused(&input, &e.message),
    };
    if !who.has(Role::Agent) {
        let e = forbid(&state, &who, Role::Agent, "submit approvals");
        return refused(&input, &e.message);
    }
    let params = match params {
        Ok(Query(p)) => p,
        Err(e) => {
            state.inner.metrics.refusal("bad_request");
            return refused(&input, &e.body_text());
        }
    };
    answer_call(&state, who, params, input).await
}

/// The call of an agent identity, answered: allowed, or denied with the reason.
async fn answer_call(
    state: &ApiState,
    who: crate::api::Identity,
    params: HashMap<String, String>,
    input: Value,
) -> Json<Value> {
    let mut wait = DEFAULT_WAIT;
    let mut agent = Host::ClaudeCode.name().to_string();
    for (k, v) in &params {
        match k.as_str() {
            "wait" => {
                wait = match v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(|s| Duration::from_secs_f64(s).min(MAX_WAIT))
                {
                    Some(w) => w,
                    None => {
                        return deny_only(
                            &input,
                            format!(
                                "gatehouse refused this call: wait: {v:?} is not a number of seconds"
                            ),
                        );
                    }
                }
            }
            "agent" => agent = v.clone(),
            other => {
                return deny_only(
                    &input,
                    format!("gatehouse refused this call: unknown query parameter {other:?}"),
                );
            }
        }
    }
    let call = match Host::ClaudeCode.read(&input) {
        Ok(c) => c,
        Err(e) => {
            return deny_only(&input, format!("gatehouse cannot read this hook call: {e}"));
        }
    };
    let deny = |m: String| Json(answer(&call, &Verdict::Deny { reason: m }));
    let body = call.submission(&agent, None, (wait + GRACE).as_secs_f64());
    let req = match serde_json::from_value::<SubmitBody>(body)
        .map_err(|e| ApiError::unprocessable(e.to_string()))
        .and_then(|b| b.into_request(&who))
    {
        Ok(r) => r,
        Err(e) => return deny(format!("gatehouse refused this call: {}", e.message)),
    };
    let runner = &state.inner.runner;
    let _slot = match state.inner.wait_permit(&who.name) {
        Ok(slot) => slot,
        Err(e) => return deny(format!("gatehouse refused this call: {}", e.message)),
    };
    let submitted = match runner.submit(&who.name, req).await {
        Ok(s) => s.approval,
        Err(e) => {
            let e = ApiError::from(e);
            return deny(format!("gatehouse refused this call: {}", e.message));
        }
    };
    let mut pending = CancelOnDrop {
        runner: runner.clone(),
        who: who.name.clone(),
        id: Some(submitted.id),
    };
    // Waits on this approval alone in the runner (answered once its decision is durable),
    // like a long poll, instead of reading every event.
    let current = match super::waits::long_poll(state, submitted.id, wait, |_| true).await {
        Ok(a) => a,
        // Fail closed: the call does not run when gatehouse cannot say it may.
        Err(e) => {
            return deny(format!(
                "gatehouse could not wait for the decision: {}",
                e.message
            ));
        }
    };
    if current.is_pending() {
        // Claude Code stops waiting now: no reviewer may approve it into the void.
        pending.id = None;
        let _ = runner.cancel_approval(&who.name, current.id).await;
        return deny(format!(
            "timed out: no reviewer decided within {}",
            humantime::format_duration(Duration::from_secs(wait.as_secs()))
        ));
    }
    pending.id = None;
    Json(answer(&call, &verdict(&call, &current)))
}

fn verdict(call: &HookCall, a: &Approval) -> Verdict {
    let json = serde_json::to_value(a).unwrap_or(Value::Null);
    Verdict::of_approval(call, &json).unwrap_or(Verdict::Deny {
        reason: "gatehouse could not read the decision; not running it".into(),
    })
}

fn answer(call: &HookCall, v: &Verdict) -> Value {
    Host::ClaudeCode.answer(call, v).unwrap_or(Value::Null)
}

/// A deny for input that is not a readable hook call, in the event's shape when it has one.
fn deny_only(input: &Value, reason: String) -> Json<Value> {
    let call = HookCall {
        event: input
            .get("hook_event_name")
            .and_then(Value::as_str)
            .unwrap_or("PreToolUse")
            .to_string(),
        ..HookCall::default()
    };
    Json(answer(&call, &Verdict::Deny { reason }))
}

/// Cancels the approval when the request goes away before it was decided (Claude Code gave
/// up, or the connection dropped).
struct CancelOnDrop {
    runner: RunnerHandle,
    who: String,
    id: Option<Uuid>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let runner = self.runner.clone();
            let who = std::mem::take(&mut self.who);
            tokio::spawn(async move {
                let _ = runner.cancel_approval(&who, id).await;
            });
        }
    }
}
