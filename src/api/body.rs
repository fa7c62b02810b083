//! Strict JSON bodies: 413 over the limit, 400 for invalid UTF-8 or malformed JSON,
//! 422 for missing, unknown or wrong-typed fields, each naming the problem, and 422 for
//! anything that would not survive the trip to the reviewer, the hash and the tool exactly: an
//! integer outside ±(2^53−1) or a key given twice in one object (DESIGN §9 "Exact arguments").

use super::{ApiError, ApiState};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

mod exact;

pub struct JsonBody<T>(pub T);

/// A body the guard has already read whole (see `guard::guard`), so a handler parses it
/// without reading it again. The request's body holds the same bytes for handlers that read
/// it themselves (the MCP gateway).
#[derive(Clone)]
pub struct ReadBody(pub Bytes);

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let bytes = match req.extensions().get::<ReadBody>() {
            Some(ReadBody(read)) => read.clone(),
            None => read(req, state).await?,
        };
        parse(&bytes).map(JsonBody)
    }
}

/// The declared `Content-Length`, when there is a readable one.
pub fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// A request's whole body: 413 over the limit (declared or as it arrives), 408 when it does
/// not arrive within the body timeout, 400 when the client breaks it off.
pub async fn read(req: Request, state: &ApiState) -> Result<Bytes, ApiError> {
    let limit = state.inner.max_body_bytes;
    if declared_length(&req).is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    read_body(req.into_body(), state).await
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body is larger than the limit of {limit} bytes"),
    )
}

/// [`read`] for a body whose declared length was already checked.
pub async fn read_body(body: Body, state: &ApiState) -> Result<Bytes, ApiError> {
    let limit = state.inner.max_body_bytes;
    let limited = http_body_util::Limited::new(body, limit);
    let collected = tokio::time::timeout(state.inner.body_timeout, limited.collect()).await;
    match collected {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body was not received in time",
        )),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(too_large(limit));
            }
            Err(ApiError::bad_request(
                "bad_body",
                format!("could not read the request body: {e}"),
            ))
        }
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Parse a body in one pass, telling syntax (400) from shape (422) errors.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_utf8",
            format!(
                "request body is not valid UTF-8 (at byte {})",
                e.valid_up_to()
            ),
        )
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "malformed_json",
            "request body is empty; a JSON object is required",
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde reports the first problem it meets, and its category is not the whole story:
        // a wrong-typed enum field (`"decision": true`) is a *syntax* error to serde_json, and
        // a field error can come before a syntax error further on (`{"decision": "maybe"` cut
        // short). So decide by the whole text: valid JSON means a shape problem (422),
        // anything else is malformed (400).
        match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Err(syntax) => {
                ApiError::bad_request("malformed_json", format!("malformed JSON: {syntax}"))
            }
            Ok(_) if !text.trim_start().starts_with('{') => {
                // serde's "invalid length 0, expected struct SubmitBody" names our type, not
                // the problem.
                let kind = serde_json::from_str::<serde_json::Value>(text)
                    .map(|v| crate::text::json_type(&v))
                    .unwrap_or("something else");
                ApiError::unprocessable(format!(
                    "the request body must be a JSON object, not {kind}"
                ))
            }
            Ok(_) => {
                // A path through deep nesting can be thousands of characters long.
                let path = crate::text::clip(&path, 200);
                let what = match inner.classify() {
                    serde_json::error::Category::Data => strip_position(&inner.to_string()),
                    _ => format!("wrong type ({})", strip_position(&inner.to_string())),
                };
                if path == "." || path.is_empty() {
                    ApiError::unprocessable(what)
                } else {
                    ApiError::unprocessable(format!("{path}: {what}"))
                }
            }
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request("malformed_json", format!("malformed JSON: {e}")))?;
    // Only now, on text known to be valid JSON, so a malformed body stays a 400.
    exact::check(text)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code, e.message))?;
    Ok(value)
}

/// serde_json appends " at line L column C" to data errors; the path says more.
fn strip_position(m: &str) -> String {
    match m.rfind(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m.to_string(),
    }
}
