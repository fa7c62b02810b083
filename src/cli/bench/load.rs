//! A lean closed-loop HTTP/1.1 load: one keep-alive connection per worker, each sending its
//! next request when the last is answered (as `wrk` does). Lean on purpose: the generator
//! shares the machine with the server it measures, so every cycle it spends is one the
//! server does not get; reqwest's pool and per-request builder cost about twice as much.

use super::super::Failure;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Where requests go: `host:port` to connect to, and the request's parts.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: String,
    pub host: String,
    pub path: String,
    pub auth: Option<String>,
}

impl Target {
    /// `base` is `http://HOST:PORT` (a path on it is ignored); `path` is added to it.
    pub fn parse(flag: &str, base: &str, path: &str, token: Option<&str>) -> Result<Self, Failure> {
        let url = reqwest::Url::parse(base)
            .map_err(|e| Failure::usage(format!("{flag} {base:?}: not a URL ({e})")))?;
        if url.scheme() != "http" {
            return Err(Failure::usage(format!(
                "{flag} {base:?}: only http:// is supported (the load is for a local daemon)"
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| Failure::usage(format!("{flag} {base:?}: no host")))?
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        Ok(Target {
            addr: format!("{host}:{port}"),
            host: format!("{host}:{port}"),
            path: path.to_string(),
            auth: token.map(|t| format!("Bearer {t}")),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.host, self.path)
    }
}

/// One connection: a request sender kept alive across requests.
pub struct Conn {
    target: Arc<Target>,
    path: String,
    send: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(target: Arc<Target>) -> Result<Conn, String> {
        let stream = TcpStream::connect(&target.addr)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {} failed: {e}", target.addr))?;
        // The connection's IO runs beside the worker; it ends when `send` is dropped.
        tokio::spawn(conn);
        let path = target.path.clone();
        Ok(Conn { target, path, send })
    }

    /// Send the next requests to `path` instead of the target's.
    pub fn set_path(&mut self, path: String) {
        self.path = path;
    }

    /// POST a JSON body; the status and the whole response body.
    pub async fn post(&mut self, body: String) -> Result<(u16, Bytes), String> {
        let t = &self.target;
        let mut req = hyper::Request::post(self.path.as_str())
            .header(hyper::header::HOST, t.host.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(auth) = &t.auth {
            req = req.header(hyper::header::AUTHORIZATION, auth.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build a request: {e}"))?;
        self.send
            .ready()
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("response body failed: {e}"))?
            .to_bytes();
        Ok((status, bytes))
    }
}

/// Latencies in microseconds and the errors of one load.
#[derive(Default)]
pub struct Tally {
    pub lat: Vec<u32>,
    pub errors: u64,
    /// The first error's message, so a run that fails says why.
    pub first_error: Option<String>,
}

impl Tally {
    /// Count one request's answer: the body of a 2xx, `None` (counted as an error) otherwise,
    /// after which the caller opens a new connection (the server closes after an error).
    pub fn answer(&mut self, since: Instant, r: Result<(u16, Bytes), String>) -> Option<Bytes> {
        match r {
            Ok((status, bytes)) if (200..300).contains(&status) => {
                self.ok(since);
                Some(bytes)
            }
            Ok((status, bytes)) => {
                self.error(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ));
                None
            }
            Err(e) => {
                self.error(e);
                None
            }
        }
    }

    /// The tallies of every worker, joined.
    pub async fn join(workers: Vec<tokio::task::JoinHandle<Tally>>, who: &str) -> Tally {
        let mut all = Tally::default();
        for w in workers {
            match w.await {
                Ok(t) => all.merge(t),
                Err(e) => all.error(format!("a {who} failed: {e}")),
            }
        }
        all
    }

    pub fn ok(&mut self, since: Instant) {
        self.lat
            .push(since.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.lat.extend(other.lat);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// The `p`-quantile in milliseconds (nearest rank); `lat` must be sorted.
    pub fn quantile_ms(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return 0.0;
        }
        let i = ((self.lat.len() as f64 * p).ceil() as usize).clamp(1, self.lat.len()) - 1;
        self.lat[i] as f64 / 1000.0
    }

    pub fn summary(&mut self, elapsed: Duration) -> String {
        self.lat.sort_unstable();
        let rate = self.lat.len() as f64 / elapsed.as_secs_f64();
        let mut s = format!(
            "{rate:.0}/s ({} in {:.2}s), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, errors {}",
            self.lat.len(),
            elapsed.as_secs_f64(),
            self.quantile_ms(0.50),
            self.quantile_ms(0.99),
            self.lat.last().copied().unwrap_or(0) as f64 / 1000.0,
            self.errors
        );
        if let Some(e) = &self.first_error {
            s.push_str(&format!(" (first: {e})"));
        }
        s
    }

    pub fn rate(&self, elapsed: Duration) -> f64 {
        self.lat.len() as f64 / elapsed.as_secs_f64()
    }
}

/// The body of worker `w`'s `n`th submission: distinct arguments, so each is a new approval.
pub fn submission(w: usize, n: u64) -> String {
    format!(
        r#"{{"tool":"bench_refund","agent":"bench","arguments":{{"worker":{w},"n":{n},"amount":75.5}},"reasoning":"load test"}}"#
    )
}

/// `concurrency` workers submit until `duration` has passed. Each 2xx answer's body is handed
/// to `answered` (the decision load takes ids from it).
pub async fn closed_loop(
    targets: &[Arc<Target>],
    concurrency: usize,
    duration: Duration,
    answered: Option<tokio::sync::mpsc::UnboundedSender<Bytes>>,
) -> (Tally, Duration) {
    let started = Instant::now();
    let end = started + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        // Worker k talks to target k mod n (daemons sharing one database split the load).
        let target = targets[w % targets.len().max(1)].clone();
        let answered = answered.clone();
        workers.push(tokio::spawn(async move {
            let mut tally = Tally {
                lat: Vec::with_capacity(1 << 15),
                ..Tally::default()
            };
            let mut conn = None;
            let mut n = 0u64;
            while Instant::now() < end {
                let c = match &mut conn {
                    Some(c) => c,
                    None => match Conn::open(target.clone()).await {
                        Ok(c) => conn.insert(c),
                        Err(e) => {
                            tally.error(e);
                            // Refused connections fail at once: do not spin on them.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let body = submission(w, n);
                n += 1;
                let t = Instant::now();
                match tally.answer(t, c.post(body).await) {
                    Some(bytes) => {
                        if let Some(tx) = &answered {
                            let _ = tx.send(bytes);
                        }
                    }
                    None => conn = None,
                }
            }
            tally
        }));
    }
    (Tally::join(workers, "worker").await, started.elapsed())
}
