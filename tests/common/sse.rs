//! A minimal Server-Sent Events reader for `GET /v1/events`, over reqwest's byte stream:
//! the tests read the wire format themselves rather than trust a client library.

use super::{ALICE, Api};
use futures::StreamExt;
use serde_json::Value;
use std::time::Duration;

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: u64,
    pub event: String,
    pub data: Value,
}

/// A minimal SSE reader over reqwest's byte stream.
pub struct SseStream {
    body: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buf: String,
}

impl SseStream {
    pub async fn connect(api: &Api, last_event_id: Option<u64>) -> SseStream {
        // No overall timeout on a stream; every read below is bounded instead.
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut r = http.get(api.url("/v1/events")).bearer_auth(ALICE);
        if let Some(id) = last_event_id {
            r = r.header("last-event-id", id.to_string());
        }
        let resp = tokio::time::timeout(Duration::from_secs(10), r.send())
            .await
            .expect("events answer in time")
            .expect("events answer");
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        SseStream {
            body: resp.bytes_stream().map(|c| c.map(|b| b.to_vec())).boxed(),
            buf: String::new(),
        }
    }

    /// The next event, or `None` if none arrives within `limit`.
    pub async fn next(&mut self, limit: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let normalized = self.buf.replace("\r\n", "\n");
            self.buf = normalized;
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf[..end].to_string();
                self.buf.drain(..end + 2);
                let (mut id, mut event, mut data) = (None, None, Vec::new());
                for line in block.lines() {
                    if line.starts_with(':') {
                        continue; // a keep-alive comment
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => id = Some(value.parse::<u64>().expect("a numeric id")),
                        "event" => event = Some(value.to_string()),
                        "data" => data.push(value.to_string()),
                        _ => {}
                    }
                }
                if data.is_empty() && id.is_none() {
                    continue;
                }
                return Some(Sse {
                    id: id.expect("every event has an id"),
                    event: event.expect("every event has a type"),
                    data: serde_json::from_str(&data.join("\n")).expect("JSON data"),
                });
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(None) => panic!("the event stream ended"),
                Ok(Some(chunk)) => {
                    let chunk = chunk.expect("event stream bytes");
                    self.buf
                        .push_str(std::str::from_utf8(&chunk).expect("UTF-8 events"));
                }
            }
        }
    }

    /// Whether the stream ends (skipping what comes before the end) within `limit`.
    pub async fn ends_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    pub async fn expect(&mut self) -> Sse {
        self.next(Duration::from_secs(10))
            .await
            .expect("an event within 10 s")
    }
}
