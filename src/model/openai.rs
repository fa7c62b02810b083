//! An OpenAI-compatible Chat Completions client (`kind = "openai"`).
//!
//! One `POST {base_url}/chat/completions` per step, non-streaming. 429, 5xx and connection
//! failures are retried with exponential backoff and jitter (honouring `Retry-After`); 401/403,
//! 404, other statuses, timeouts and unusable answers fail at once with the status and the
//! server's own message. The API key never appears in an error or in `Debug`.

use super::{Completion, Message, ModelError, ToolSpec};
use crate::config::OpenAiModelConfig;
use crate::text::error_chain;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Client, StatusCode, Url};
use serde_json::Value;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

mod wire;
use wire::{parse_completion, request_body};

/// Per-attempt timeout when the config names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts per call, the first included.
pub const MAX_ATTEMPTS: u32 = 4;
/// A `Retry-After` longer than this is shortened to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Largest response body read.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Longest excerpt of a server's error body quoted in a message.
const MAX_QUOTE: usize = 300;

pub struct OpenAiModel {
    client: Client,
    endpoint: Url,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
    max_attempts: u32,
    backoff_base: Duration,
}

impl std::fmt::Debug for OpenAiModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiModel")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "[set]"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What one attempt came to.
enum Attempt {
    Done(Result<Completion, ModelError>),
    Retry {
        message: String,
        retry_after: Option<Duration>,
    },
}

impl OpenAiModel {
    /// A client for `{base_url}/chat/completions` asking for `model`.
    pub fn new(
        base_url: &str,
        model: &str,
        api_key: Option<String>,
        timeout: Duration,
    ) -> Result<OpenAiModel, String> {
        let endpoint = endpoint(base_url)?;
        if model.trim().is_empty() {
            return Err("empty model name".into());
        }
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(OpenAiModel {
            client,
            endpoint,
            model: model.to_string(),
            api_key: api_key.filter(|k| !k.trim().is_empty()),
            timeout,
            max_attempts: MAX_ATTEMPTS,
            backoff_base: Duration::from_millis(500),
        })
    }

    /// From `[models.NAME]` with `kind = "openai"`. The key is read from the environment
    /// variable `api_key_env` now; when it is unset the base URL must be loopback (a local
    /// server needs no key), otherwise this is an error naming the variable.
    pub fn from_config(cfg: &OpenAiModelConfig) -> Result<OpenAiModel, String> {
        let base_url = Some(cfg.base_url.as_str())
            .filter(|u| !u.trim().is_empty())
            .ok_or("empty base_url")?;
        let model = Some(cfg.model.as_str())
            .filter(|m| !m.trim().is_empty())
            .ok_or("empty model")?;
        let url = endpoint(base_url)?;
        let api_key = match cfg.api_key_env.as_deref() {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.trim().is_empty() => Some(key),
                _ if is_loopback(&url) => None,
                Ok(_) => {
                    return Err(format!(
                        "environment variable {var} (api_key_env) is empty; it must hold the API key for {base_url} (or use kind = \"scripted\" to run offline)"
                    ));
                }
                Err(_) => {
                    return Err(format!(
                        "environment variable {var} (api_key_env) is not set; it must hold the API key for {base_url} (or use kind = \"scripted\" to run offline)"
                    ));
                }
            },
        };
        OpenAiModel::new(
            base_url,
            model,
            api_key,
            cfg.timeout.unwrap_or(DEFAULT_TIMEOUT),
        )
    }

    /// The base delay of the exponential backoff (default 500 ms; tests shorten it).
    pub fn with_backoff(mut self, base: Duration) -> OpenAiModel {
        self.backoff_base = base;
        self
    }

    /// Attempts per call, the first included (default 4).
    pub fn with_max_attempts(mut self, attempts: u32) -> OpenAiModel {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub async fn complete(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<Completion, ModelError> {
        let body = serde_json::to_vec(&request_body(&self.model, messages, tools))
            .map_err(|e| ModelError::Transport(format!("cannot encode the request: {e}")))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(&body).await {
                Attempt::Done(result) => return result,
                Attempt::Retry {
                    message,
                    retry_after,
                } => {
                    if attempt >= self.max_attempts {
                        return Err(ModelError::Exhausted {
                            attempts: attempt,
                            last: message,
                        });
                    }
                    let delay = retry_after.unwrap_or_else(|| self.backoff(attempt));
                    tracing::warn!(
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        "model request will be retried: {message}"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, body: &[u8]) -> Attempt {
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Attempt::Done(Err(ModelError::Transport(self.timed_out())));
            }
            Err(e) if e.is_connect() => {
                return Attempt::Retry {
                    message: self.redact(format!(
                        "cannot connect to {}: {}",
                        self.endpoint,
                        error_chain(&e)
                    )),
                    retry_after: None,
                };
            }
            Err(e) => {
                return Attempt::Done(Err(ModelError::Transport(self.redact(format!(
                    "request to {} failed: {}",
                    self.endpoint,
                    error_chain(&e)
                )))));
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = match read_capped(response).await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => {
                return Attempt::Done(Err(ModelError::Transport(self.timed_out())));
            }
            Err(e) => {
                return Attempt::Done(Err(ModelError::Transport(self.redact(format!(
                    "reading the answer from {} failed: {e}",
                    self.endpoint
                )))));
            }
        };
        if status.is_success() {
            return Attempt::Done(
                parse_completion(&body).map_err(|e| ModelError::Malformed(self.redact(e))),
            );
        }
        let detail = self.redact(format!(
            "HTTP {} from {}: {}",
            status_text(status),
            self.endpoint,
            server_message(&body)
        ));
        match status.as_u16() {
            401 | 403 => Attempt::Done(Err(ModelError::Auth(detail))),
            404 => Attempt::Done(Err(ModelError::NotFound(detail))),
            // Out of credit: asking again will not help.
            429 if error_code(&body).as_deref() == Some("insufficient_quota") => {
                Attempt::Done(Err(ModelError::Transport(detail)))
            }
            429 | 500..=599 => Attempt::Retry {
                message: detail,
                retry_after,
            },
            _ => Attempt::Done(Err(ModelError::Transport(detail))),
        }
    }

    fn timed_out(&self) -> String {
        format!(
            "no answer from {} within {}",
            self.endpoint,
            humantime::format_duration(self.timeout)
        )
    }

    /// Exponential backoff with jitter: attempt n waits between half and all of base·2ⁿ⁻¹
    /// (at most 8 s).
    fn backoff(&self, attempt: u32) -> Duration {
        let full = self
            .backoff_base
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(Duration::from_secs(8));
        let half = full / 2;
        let jitter = random_u64() % (half.as_nanos() as u64).max(1);
        half + Duration::from_nanos(jitter)
    }

    /// Servers sometimes echo the key (masked or not); never pass it on.
    fn redact(&self, text: String) -> String {
        match &self.api_key {
            Some(key) if text.contains(key.as_str()) => text.replace(key.as_str(), "[redacted]"),
            _ => text,
        }
    }
}

fn endpoint(base_url: &str) -> Result<Url, String> {
    let base = base_url.trim().trim_end_matches('/');
    let url = Url::parse(&format!("{base}/chat/completions"))
        .map_err(|e| format!("invalid base_url {base_url:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!(
            "invalid base_url {base_url:?}: scheme {other:?} (expected http or https)"
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let d = host.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
    }
}

fn random_u64() -> u64 {
    // RandomState is seeded per instance from the OS: enough randomness for jitter.
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// `Retry-After` in seconds (a number), capped at `MAX_RETRY_AFTER`. HTTP dates are ignored
/// (the backoff applies instead).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        secs.min(MAX_RETRY_AFTER.as_secs_f64()),
    ))
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

enum ReadError {
    Http(reqwest::Error),
    TooLarge,
}

impl ReadError {
    fn is_timeout(&self) -> bool {
        matches!(self, ReadError::Http(e) if e.is_timeout())
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Http(e) => f.write_str(&error_chain(e)),
            ReadError::TooLarge => write!(
                f,
                "the answer is larger than {} MiB",
                MAX_RESPONSE_BYTES / (1024 * 1024)
            ),
        }
    }
}

/// The server's own explanation: `error.message` of an OpenAI-style error body, else an
/// excerpt of the body on one line.
fn server_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let message = v
            .pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .and_then(Value::as_str);
        if let Some(m) = message {
            return quote(m);
        }
    }
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        "(empty body)".into()
    } else {
        quote(&text)
    }
}

/// `error.code` (or `error.type`) of an OpenAI-style error body.
fn error_code(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    e.get("code")
        .and_then(Value::as_str)
        .or_else(|| e.get("type").and_then(Value::as_str))
        .map(str::to_string)
}

/// One line, at most `MAX_QUOTE` characters.
fn quote(text: &str) -> String {
    let mut out: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_QUOTE)
        .collect();
    if text.trim().chars().count() > MAX_QUOTE {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn loopback_hosts_need_no_key() {
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://localhost:11434/v1",
            "http://LOCALHOST./v1",
            "http://[::1]:8000/v1",
            "http://api.localhost/v1",
        ] {
            assert!(is_loopback(&endpoint(url).unwrap()), "{url}");
        }
        for url in [
            "https://api.openai.com/v1",
            "http://10.0.0.5/v1",
            "http://localhost.example.com/v1",
        ] {
            assert!(!is_loopback(&endpoint(url).unwrap()), "{url}");
        }
        assert_eq!(
            endpoint("https://api.openai.com/v1/").unwrap().as_str(),
            "https://api.openai.com/v1/chat/completions"
        );
        assert!(endpoint("ftp://x/v1").is_err());
    }

    #[test]
    fn retry_after_is_capped_and_backoff_grows() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
        let m =
            OpenAiModel::new("http://127.0.0.1:1/v1", "m", None, Duration::from_secs(1)).unwrap();
        for attempt in 1..=3u32 {
            let full = Duration::from_millis(500) * (1 << (attempt - 1));
            let d = m.backoff(attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }
}
