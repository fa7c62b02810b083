//! `gatehouse bench submit`: a closed-loop load generator against a running daemon.
//! Each worker submits, waits for the durable acknowledgement, and submits again.

mod fill;
mod start;
mod waiters;

use super::Failure;

mod console;
use clap::Subcommand;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum Action {
    /// Durable submissions per second and their latency.
    Submit {
        /// A daemon's URL; give it several times to split the load across daemons that
        /// share one database (worker k talks to daemon k mod n).
        #[arg(long, required = true)]
        connect: Vec<String>,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Environment variable holding an agent token.
        #[arg(long, default_value = "GATEHOUSE_TOKEN")]
        token_env: String,
    },
    /// Time to render one console frame with many pending approvals (virtualised list).
    Render {
        #[arg(long, default_value_t = 100_000)]
        pending: usize,
        #[arg(long, default_value_t = 120)]
        width: u16,
        #[arg(long, default_value_t = 35)]
        height: u16,
        #[arg(long, default_value_t = 500)]
        frames: u32,
    },
    /// Bytes an idle console writes per second and how soon an arrival shows (real daemon,
    /// real console in a pseudo-terminal).
    Console(console::ConsoleBench),
    /// Submit throughput without and then with many long polls open on other approvals.
    Waiters {
        #[arg(long)]
        connect: String,
        #[arg(long, default_value_t = 10_000)]
        waiters: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Environment variable holding an agent token.
        #[arg(long, default_value = "GATEHOUSE_TOKEN")]
        token_env: String,
    },
    /// Make a new data directory holding many pending approvals (through the real runner).
    Fill {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 200_000)]
        pending: usize,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// Time `gatehouse serve` from exec to its first answered request, and its memory then.
    Start {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
}

pub async fn run(action: Action) -> Result<(), Failure> {
    match action {
        Action::Console(args) => console::run(args).await,
        Action::Submit {
            connect,
            concurrency,
            duration,
            token_env,
        } => submit(connect, concurrency, duration, token_env).await,
        Action::Waiters {
            connect,
            waiters,
            concurrency,
            duration,
            token_env,
        } => {
            waiters::waiters(waiters::WaitersArgs {
                connect,
                waiters,
                concurrency,
                duration,
                token_env,
            })
            .await
        }
        Action::Fill {
            data,
            pending,
            concurrency,
        } => fill::fill(&data, pending, concurrency).await,
        Action::Start { data, config, runs } => start::start(&data, config.as_ref(), runs).await,
        Action::Render {
            pending,
            width,
            height,
            frames,
        } => {
            if width < 20 || height < 5 || frames == 0 || pending > 10_000_000 {
                return Err(Failure::usage(
                    "render: need width >= 20, height >= 5, frames >= 1, pending <= 10000000",
                ));
            }
            let per = crate::tui::bench_render(pending, width, height, frames);
            println!(
                "rendered {frames} frames of {width}x{height} with {pending} pending: {:.1} us per frame",
                per.as_secs_f64() * 1e6
            );
            Ok(())
        }
    }
}

async fn submit(
    connect: Vec<String>,
    concurrency: usize,
    duration: Duration,
    token_env: String,
) -> Result<(), Failure> {
    if concurrency == 0 || concurrency > 4096 {
        return Err(Failure::usage("--concurrency must be from 1 to 4096"));
    }
    if duration.is_zero() || duration > Duration::from_secs(600) {
        return Err(Failure::usage(
            "--duration must be more than 0 and at most 10m",
        ));
    }
    let token = std::env::var(&token_env)
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Failure::usage(format!("no token: set {token_env} to an agent token")))?;
    let urls: Vec<String> = connect
        .iter()
        .map(|c| format!("{}/v1/approvals", c.trim_end_matches('/')))
        .collect();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?;
    // One request to each first, so a wrong URL or token fails fast with its message.
    for url in &urls {
        probe(&client, url, &token).await?;
    }
    eprintln!(
        "bench: {concurrency} workers for {} against {}",
        humantime::format_duration(duration),
        urls.join(", ")
    );
    // Parsed once: the generator should spend its CPU on requests, not on re-parsing them.
    let urls = urls
        .iter()
        .map(|u| reqwest::Url::parse(u).map_err(|e| Failure::usage(format!("--connect: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let auth =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            Failure::usage(format!(
                "{token_env} holds characters a header cannot carry"
            ))
        })?;
    let started = Instant::now();
    let end = started + duration;
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        let url = urls[w % urls.len()].clone();
        let auth = auth.clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut n = 0u64;
            while Instant::now() < end {
                let body = format!(
                    r#"{{"tool":"bench_refund","agent":"bench","arguments":{{"worker":{w},"n":{n},"amount":75.5}},"reasoning":"load test"}}"#
                );
                n += 1;
                let t = Instant::now();
                let r = client
                    .post(url.clone())
                    .header(reqwest::header::AUTHORIZATION, auth.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        reqwest::header::HeaderValue::from_static("application/json"),
                    )
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
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, e) = w
            .await
            .map_err(|e| Failure::runtime(format!("a worker failed: {e}")))?;
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i] as f64 / 1000.0
    };
    println!(
        "submitted {} durable approvals in {elapsed:.2}s: {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; errors {errors}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    Ok(())
}

/// One submission, so a wrong URL or token fails fast with its message.
async fn probe(client: &reqwest::Client, url: &str, token: &str) -> Result<(), Failure> {
    let probe = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(r#"{"tool":"bench_probe","arguments":{}}"#)
        .send()
        .await
        .map_err(|e| Failure::runtime(format!("cannot reach {url}: {e}")))?;
    if !probe.status().is_success() {
        let status = probe.status();
        let text = probe.text().await.unwrap_or_default();
        return Err(Failure::runtime(format!(
            "the daemon refused a submission: HTTP {status}: {text}"
        )));
    }
    Ok(())
}
