//! `kind = "http"`: POST the arguments as JSON to the tool's URL; the response body is the
//! result. Redirects are not followed (the arguments go to the configured URL only).

use super::{MAX_OUTPUT_BYTES, ToolOutput};
use crate::text::error_chain;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Url};
use serde_json::{Map, Value};
use std::time::Duration;

/// Longest excerpt of an error body quoted in the result.
const MAX_QUOTE: usize = 500;

pub(super) async fn post(
    client: &Client,
    target: &Url,
    args: &Map<String, Value>,
    timeout: Duration,
) -> ToolOutput {
    let shown = shown_url(target);
    let url = &shown;
    let timed_out = || {
        ToolOutput::Error(format!(
            "timed out after {} waiting for {url}",
            humantime::format_duration(timeout)
        ))
    };
    let body = Value::Object(args.clone()).to_string();
    let response = client
        .post(target.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(timeout)
        .send()
        .await;
    let mut response = match response {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return timed_out(),
        // Nothing listening, or no route: the tool never saw the call.
        Err(e) if e.is_connect() => {
            return ToolOutput::unavailable(format!("POST {url} failed: {}", error_chain(&e)));
        }
        Err(e) => return ToolOutput::Error(format!("POST {url} failed: {}", error_chain(&e))),
    };
    let status = response.status();
    let mut body = Vec::new();
    let mut too_large = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_OUTPUT_BYTES {
                    too_large = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => return timed_out(),
            Err(e) => {
                return ToolOutput::Error(format!(
                    "reading the answer of {url} failed: {}",
                    error_chain(&e)
                ));
            }
        }
    }
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() {
        let status = match status.canonical_reason() {
            Some(reason) => format!("{} {reason}", status.as_u16()),
            None => status.as_u16().to_string(),
        };
        let excerpt: String = text.trim().chars().take(MAX_QUOTE).collect();
        return ToolOutput::Error(if excerpt.is_empty() {
            format!("HTTP {status} from {url}")
        } else {
            format!("HTTP {status} from {url}: {excerpt}")
        });
    }
    if too_large {
        return ToolOutput::Error(format!(
            "the answer of {url} exceeds {} MiB",
            MAX_OUTPUT_BYTES / (1024 * 1024)
        ));
    }
    ToolOutput::Ok(text.into_owned())
}

/// The URL without credentials or query (either may hold a secret), for messages.
fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}
