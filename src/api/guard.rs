//! Refuse what a web page in the reviewer's browser could send to a loopback daemon:
//! unknown `Host` names (DNS rebinding), foreign `Origin`s and cross-site fetches (CSRF),
//! and POSTs that are not JSON (simple cross-origin form posts).

use super::{ApiError, ApiState, body};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub async fn guard(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let post = req.method() == Method::POST;
    // A POST body within the limit is read whole before anything can refuse the request. A
    // server that answers (401, 403, 415, …) and closes with the body still arriving makes
    // the client's kernel see a reset: the client fails writing the body, or loses the answer
    // it was sent, instead of reading why it was refused. Over the limit, or without a
    // length, the handler reads it as before (and a 413 closes).
    let limit = state.inner.max_body_bytes as u64;
    let req = if post && body::declared_length(&req).is_some_and(|n| n > 0 && n <= limit) {
        let (parts, body) = req.into_parts();
        match body::read_body(body, &state).await {
            Ok(bytes) => {
                let mut req = Request::from_parts(parts, axum::body::Body::from(bytes.clone()));
                req.extensions_mut().insert(body::ReadBody(bytes));
                req
            }
            Err(e) => {
                if e.status != StatusCode::REQUEST_TIMEOUT {
                    state.inner.metrics.refusal("bad_request");
                }
                return close(e.into_response());
            }
        }
    } else {
        req
    };
    let mut resp = match check(&state, &req) {
        Ok(()) => {
            let resp = next.run(req).await;
            // Bodies refused by a handler (malformed, too large, invalid) count as bad requests
            // too, so `refused_total{reason="bad_request"}` sees every 400 and 422.
            if matches!(
                resp.status(),
                StatusCode::BAD_REQUEST
                    | StatusCode::PAYLOAD_TOO_LARGE
                    | StatusCode::UNPROCESSABLE_ENTITY
            ) {
                state.inner.metrics.refusal("bad_request");
            }
            resp
        }
        Err(e) => {
            state.inner.refused(e.status);
            e.into_response()
        }
    };
    // A refused POST may leave its body unread, and the server then drops the connection:
    // say so, or a keep-alive client sends its next request into a closing socket.
    if post && (resp.status().is_client_error() || resp.status().is_server_error()) {
        resp = close(resp);
    }
    resp
}

fn close(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

fn check(state: &ApiState, req: &Request) -> Result<(), ApiError> {
    let inner = &state.inner;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .ok_or_else(|| ApiError::forbidden("host_not_allowed", "a Host header is required"))?;
    let name = host_name(host);
    if !inner.allowed_hosts.contains(&name) {
        inner.metrics.refusal("host");
        return Err(ApiError::forbidden(
            "host_not_allowed",
            format!("Host {name:?} is not allowed (add it to [server] allowed_hosts)"),
        ));
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !inner.allowed_origins.iter().any(|o| o == origin) {
            inner.metrics.refusal("origin");
            return Err(ApiError::forbidden(
                "origin_not_allowed",
                format!("Origin {origin:?} is not allowed (add it to [server] allowed_origins)"),
            ));
        }
    } else if req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(ApiError::forbidden(
            "origin_not_allowed",
            "cross-site requests are not allowed",
        ));
    }
    if req.method() == Method::POST {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("POST bodies must be Content-Type: application/json (got {ct:?})"),
            ));
        }
    }
    Ok(())
}

/// `Host` without its port; IPv6 literals keep their brackets off.
pub fn host_name(host: &str) -> String {
    let h = host.trim();
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_ascii_lowercase();
    }
    h.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map(|(n, _)| n)
        .unwrap_or(h)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names() {
        assert_eq!(host_name("127.0.0.1:7878"), "127.0.0.1");
        assert_eq!(host_name("LOCALHOST"), "localhost");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("evil.example:7878"), "evil.example");
    }
}
