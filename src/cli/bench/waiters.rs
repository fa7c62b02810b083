//! `gatehouse bench waiters`: what many open long polls cost the submissions of everyone else.
//!
//! It measures durable submissions per second, then opens `--waiters` long polls
//! (`GET /v1/approvals/{id}?wait=`) on pending approvals of its own, waits until the daemon
//! holds every one of them (`gatehouse_approval_waiters` on `/metrics`), and measures again;
//! then it closes them, waits until the daemon has let them go, and measures a third time.
//! The cost is counted against the mean of the two runs without polls: each run leaves the
//! store bigger, and a store twice as big is a little slower, which a before/after pair
//! would blame on the polls.
//! One identity holds all the polls, so the daemon's `[server] max_waits_per_identity` (default
//! 256) and `max_connections` (default 4096) must be above `--waiters` (see the README).

use super::Failure;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct WaitersArgs {
    pub connect: String,
    pub waiters: usize,
    pub concurrency: usize,
    pub duration: Duration,
    pub token_env: String,
}

/// Each long poll asks to wait this long: longer than the bench, so none ends by itself.
const POLL_WAIT_SECS: u64 = 300;

pub async fn waiters(args: WaitersArgs) -> Result<(), Failure> {
    let WaitersArgs {
        connect,
        waiters,
        concurrency,
        duration,
        token_env,
    } = args;
    if waiters == 0 || waiters > 100_000 {
        return Err(Failure::usage("--waiters must be from 1 to 100000"));
    }
    if concurrency == 0 || concurrency > 4096 {
        return Err(Failure::usage("--concurrency must be from 1 to 4096"));
    }
    if duration.is_zero() || duration > Duration::from_secs(120) {
        return Err(Failure::usage(
            "--duration must be more than 0 and at most 2m",
        ));
    }
    // Every long poll is a socket of this process.
    let files = crate::cli::serve::raise_open_files_limit().unwrap_or(u64::MAX);
    let needed = (waiters + concurrency + 64) as u64;
    if files < needed {
        return Err(Failure::usage(format!(
            "{waiters} long polls need about {needed} open files but this process may open \
             {files}; raise the hard limit (ulimit -Hn) or lower --waiters"
        )));
    }
    let token = std::env::var(&token_env)
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Failure::usage(format!("no token: set {token_env} to an agent token")))?;
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        Failure::usage(format!(
            "{token_env} holds characters a header cannot carry"
        ))
    })?;
    let base = connect.trim_end_matches('/').to_string();
    let submit_url = reqwest::Url::parse(&format!("{base}/v1/approvals"))
        .map_err(|e| Failure::usage(format!("--connect: {e}")))?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(POLL_WAIT_SECS + 30))
        .build()
        .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?;
    let bench = Bench {
        client,
        auth,
        base,
        submit_url,
    };
    // Fails fast with the daemon's message on a wrong URL, token or config.
    bench.submit(0).await?;
    let before = bench.waiting().await?;

    eprintln!("bench: {concurrency} workers submitting for {duration:?}, no long polls");
    let quiet = bench.load(concurrency, duration).await?;
    eprintln!("  {}", quiet.line());

    eprintln!("bench: submitting {waiters} approvals to wait on");
    let ids = bench.pending(waiters, concurrency).await?;
    eprintln!("bench: opening {waiters} long polls");
    let polls: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let (client, auth) = (bench.client.clone(), bench.auth.clone());
            let url = format!("{}/v1/approvals/{id}?wait={POLL_WAIT_SECS}", bench.base);
            tokio::spawn(async move {
                let r = client.get(url).header(AUTHORIZATION, auth).send().await;
                match r {
                    Ok(r) => format!(
                        "HTTP {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ),
                    Err(e) => e.to_string(),
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(done) = polls.iter().position(|p| p.is_finished()) {
            let why = match polls.into_iter().nth(done) {
                Some(p) => p.await.unwrap_or_else(|e| e.to_string()),
                None => String::new(),
            };
            return Err(Failure::runtime(format!(
                "a long poll ended early ({why}); is [server] max_waits_per_identity above \
                 --waiters, and max_connections above both?"
            )));
        }
        let now = bench.waiting().await?;
        if now >= before + waiters {
            break;
        }
        if Instant::now() > deadline {
            return Err(Failure::runtime(format!(
                "only {} of {waiters} long polls reached the daemon within 120s",
                now.saturating_sub(before)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    eprintln!(
        "bench: {concurrency} workers submitting for {duration:?}, {waiters} long polls open"
    );
    let busy = bench.load(concurrency, duration).await?;
    eprintln!("  {}", busy.line());
    let ended = polls.iter().filter(|p| p.is_finished()).count();
    for p in &polls {
        p.abort();
    }
    eprintln!("bench: closing the long polls");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = bench.waiting().await?;
        if now <= before {
            break;
        }
        if Instant::now() > deadline {
            return Err(Failure::runtime(format!(
                "the daemon still holds {} closed long polls after 120s",
                now - before
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("bench: {concurrency} workers submitting for {duration:?}, no long polls again");
    let after = bench.load(concurrency, duration).await?;
    eprintln!("  {}", after.line());
    let without = (quiet.per_second() + after.per_second()) / 2.0;
    let cost = 100.0 * (1.0 - busy.per_second() / without.max(f64::MIN_POSITIVE));
    println!("without long polls: {}", quiet.line());
    println!("with {waiters} long polls: {}", busy.line());
    println!("without long polls again: {}", after.line());
    println!(
        "cost of the long polls: {cost:.1}% of submit throughput (against {without:.0}/s, the \
         mean without); {ended} polls ended during the load"
    );
    if ended > 0 {
        return Err(Failure::runtime(format!(
            "{ended} long polls ended before their wait, woken by other approvals"
        )));
    }
    Ok(())
}

#[derive(Clone)]
struct Bench {
    client: reqwest::Client,
    auth: HeaderValue,
    base: String,
    submit_url: reqwest::Url,
}

struct Load {
    done: usize,
    errors: usize,
    secs: f64,
    p99_ms: f64,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.done as f64 / self.secs
    }

    fn line(&self) -> String {
        format!(
            "{} durable submissions in {:.2}s: {:.0}/s, p99 {:.2} ms, errors {}",
            self.done,
            self.secs,
            self.per_second(),
            self.p99_ms,
            self.errors
        )
    }
}

impl Bench {
    /// Submit one approval (pending: no policy covers the bench's tools); its id.
    async fn submit(&self, n: usize) -> Result<String, Failure> {
        let body = format!(
            r#"{{"tool":"bench_refund","agent":"bench","arguments":{{"n":{n},"amount":75.5}},"reasoning":"load test"}}"#
        );
        let r = self
            .client
            .post(self.submit_url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::runtime(format!("cannot reach {}: {e}", self.submit_url)))?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(Failure::runtime(format!(
                "the daemon refused a submission: HTTP {status}: {text}"
            )));
        }
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Failure::runtime(format!("a submission's answer is not JSON: {e}")))?;
        match (v["id"].as_str(), v["status"].as_str()) {
            (Some(id), Some("pending")) => Ok(id.to_string()),
            _ => Err(Failure::runtime(format!(
                "a bench submission was not left pending (a policy decided it?): {text}"
            ))),
        }
    }

    /// `n` pending approvals, submitted by `concurrency` workers.
    async fn pending(&self, n: usize, concurrency: usize) -> Result<Vec<String>, Failure> {
        let next = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..concurrency.min(n))
            .map(|_| {
                let (this, next) = (self.clone(), next.clone());
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok::<_, Failure>(ids);
                        }
                        ids.push(this.submit(i).await?);
                    }
                })
            })
            .collect();
        let mut ids = Vec::with_capacity(n);
        for w in workers {
            let got = w
                .await
                .map_err(|e| Failure::runtime(format!("a worker failed: {e}")))??;
            ids.extend(got);
        }
        Ok(ids)
    }

    /// Long polls the daemon holds (`gatehouse_approval_waiters`, see below).
    async fn waiting(&self) -> Result<usize, Failure> {
        let url = format!("{}/metrics", self.base);
        let r = self
            .client
            .get(&url)
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await
            .map_err(|e| Failure::runtime(format!("cannot read {url}: {e}")))?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(Failure::runtime(format!("{url}: HTTP {status}: {text}")));
        }
        // Long polls are approval waiters; daemons before them held an event subscription
        // for each, so both gauges together count them on either.
        let gauge = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|n| n.trim().parse::<usize>().ok())
        };
        match (
            gauge("gatehouse_approval_waiters"),
            gauge("gatehouse_event_subscribers"),
        ) {
            (None, None) => Err(Failure::runtime(format!(
                "{url} counts neither approval waiters nor event subscribers"
            ))),
            (a, b) => Ok(a.unwrap_or(0) + b.unwrap_or(0)),
        }
    }

    /// Closed-loop submissions for `duration`: each worker waits for the durable answer.
    async fn load(&self, concurrency: usize, duration: Duration) -> Result<Load, Failure> {
        let started = Instant::now();
        let end = started + duration;
        let workers: Vec<_> = (0..concurrency)
            .map(|w| {
                let (client, url, auth) = (
                    self.client.clone(),
                    self.submit_url.clone(),
                    self.auth.clone(),
                );
                tokio::spawn(async move {
                    let (mut lat, mut errors, mut n) = (Vec::new(), 0usize, 0u64);
                    while Instant::now() < end {
                        let body = format!(
                            r#"{{"tool":"bench_refund","agent":"bench","arguments":{{"worker":{w},"n":{n},"amount":75.5}},"reasoning":"load test"}}"#
                        );
                        n += 1;
                        let t = Instant::now();
                        let r = client
                            .post(url.clone())
                            .header(AUTHORIZATION, auth.clone())
                            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                            .body(body)
                            .send()
                            .await;
                        match r {
                            Ok(resp) if resp.status().is_success() => {
                                let _ = resp.bytes().await;
                                lat.push(t.elapsed().as_micros() as u32);
                            }
                            _ => errors += 1,
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        let (mut all, mut errors) = (Vec::new(), 0);
        for w in workers {
            let (lat, e) = w
                .await
                .map_err(|e| Failure::runtime(format!("a worker failed: {e}")))?;
            all.extend(lat);
            errors += e;
        }
        let secs = started.elapsed().as_secs_f64();
        all.sort_unstable();
        let p99_ms = match all.len() {
            0 => 0.0,
            len => all[((len as f64 * 0.99).ceil() as usize).clamp(1, len) - 1] as f64 / 1000.0,
        };
        Ok(Load {
            done: all.len(),
            errors,
            secs,
            p99_ms,
        })
    }
}
