//! An HTTP client of a running daemon, for `approvals --connect` and the bench.

use super::Failure;
use reqwest::{Client, Method, Response};
use serde_json::Value;

pub struct Remote {
    pub base: String,
    client: Client,
    token: Option<String>,
}

impl Remote {
    pub fn new(url: &str, token_env: &str) -> Result<Remote, Failure> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure::usage(format!(
                "--connect {url:?}: give an http:// or https:// URL"
            )));
        }
        let token = std::env::var(token_env).ok().filter(|t| !t.is_empty());
        let client = Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?;
        Ok(Remote {
            base,
            client,
            token,
        })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Failure> {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp: Response = req.send().await.map_err(|e| {
            // "connection refused", not reqwest's "error sending request for url (…)".
            let why = crate::frontend::remote::root_cause(&e);
            Failure::runtime(format!("cannot reach {}: {why}", self.base))
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| {
            let why = crate::frontend::remote::root_cause(&e);
            Failure::runtime(format!("reading the answer from {}: {why}", self.base))
        })?;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }
}

/// The `{"error": {"message"}}` text of an answer, or the body itself.
pub fn error_message(v: &Value) -> String {
    v.pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}
