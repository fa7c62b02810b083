//! `gatehouse bench fill`: a data directory holding many pending approvals, for `bench start`.
//!
//! Everything goes through the real runner and store, exactly as submissions over HTTP do
//! (audit chain, group commit, pending index), so `gatehouse audit verify` passes on the result
//! and a daemon started on it loads what a busy one would leave behind.

use super::Failure;
use crate::policy::PolicySet;
use crate::runner::{self, RunnerConfig, SubmitRequest};
use crate::store::Store;
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Filled approvals wait this long, so that none expires while the figures are taken.
const FILL_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

pub async fn fill(data: &Path, pending: usize, concurrency: usize) -> Result<(), Failure> {
    if pending == 0 || pending > 5_000_000 {
        return Err(Failure::usage("--pending must be from 1 to 5000000"));
    }
    if concurrency == 0 || concurrency > 4096 {
        return Err(Failure::usage("--concurrency must be from 1 to 4096"));
    }
    // A fill adds to nothing: a mistyped --data must not pour 200,000 approvals into a real store.
    if let Ok(mut entries) = std::fs::read_dir(data)
        && entries.next().is_some()
    {
        return Err(Failure::usage(format!(
            "{} is not empty; bench fill makes a new data directory",
            data.display()
        )));
    }
    let store = Store::open(data).map_err(|e| Failure::runtime(e.to_string()))?;
    let policies = PolicySet::compile(&[])
        .map_err(|_| Failure::runtime("cannot compile an empty policy set"))?;
    let cfg = RunnerConfig {
        default_timeout: FILL_TIMEOUT,
        ..RunnerConfig::default()
    };
    let (runner, task) =
        runner::start(store, policies, cfg).map_err(|e| Failure::runtime(e.to_string()))?;
    eprintln!(
        "bench fill: {pending} pending approvals into {}",
        data.display()
    );
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.min(pending) {
        let (runner, next) = (runner.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= pending {
                    return Ok::<(), crate::runner::RunnerError>(());
                }
                runner.submit("bench-bot", request(n)).await?;
                if (n + 1) % (pending / 10).max(1) == 0 {
                    eprintln!("  {} submitted", n + 1);
                }
            }
        }));
    }
    let mut failure = None;
    for w in workers {
        match w.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(format!("the runner refused a submission: {e}")),
            Err(e) => failure = Some(format!("a worker failed: {e}")),
        }
    }
    // Everything acknowledged is durable already; this ends the runner and its commit task.
    runner.shutdown().await;
    let _ = task.await;
    if let Some(msg) = failure {
        return Err(Failure::runtime(msg));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "filled {} with {pending} pending approvals in {secs:.1}s ({:.0}/s)",
        data.display(),
        pending as f64 / secs
    );
    Ok(())
}

/// A refund request shaped like the demo's, different in each approval.
fn request(n: usize) -> SubmitRequest {
    let arguments: Map<String, Value> = match json!({
        "customer_id": format!("C-{:06}", n % 100_000),
        "order_id": format!("O-{n:08}"),
        "amount": 50 + (n % 950),
        "currency": "EUR",
        "note": "customer reports the parcel arrived damaged; photos attached to the ticket",
    }) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    SubmitRequest {
        tool: "issue_refund".into(),
        arguments,
        reasoning: Some(format!(
            "Order O-{n:08} arrived damaged and the customer asks for a refund of the full amount."
        )),
        agent: Some("CustomerServiceAgent".into()),
        timeout: Some(FILL_TIMEOUT),
        ..SubmitRequest::default()
    }
}
