//! `gatehouse bench submit`: durable submissions per second against a running daemon, the
//! box's HTTP ceiling measured with the same load in the same run, and the latency of
//! decisions made while the submissions run.

use super::super::Failure;
use super::load::{self, Conn, Tally, Target};
use hyper::body::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct SubmitBench {
    /// Daemons sharing one database split the load: worker k talks to daemon k mod n.
    pub connect: Vec<String>,
    pub ceiling: Option<String>,
    pub concurrency: usize,
    pub duration: Duration,
    pub token_env: String,
    pub decide_rate: u32,
    pub reviewer_token_env: String,
    /// Ceiling and gatehouse measured in turn this many times (the median share is reported).
    pub rounds: u32,
}

/// What one round measured, for the summary over rounds.
struct Round {
    share: Option<f64>,
    p99_ms: f64,
    decision_p99_ms: Option<f64>,
}

/// How many connections the decisions are spread over: enough that one slow answer does not
/// hold the rate back, few enough not to add much load of their own.
const DECIDERS: u32 = 8;

pub async fn run(b: SubmitBench) -> Result<(), Failure> {
    if b.concurrency == 0 || b.concurrency > 4096 {
        return Err(Failure::usage("--concurrency must be from 1 to 4096"));
    }
    if b.duration.is_zero() || b.duration > Duration::from_secs(600) {
        return Err(Failure::usage(
            "--duration must be more than 0 and at most 10m",
        ));
    }
    if b.decide_rate > 100_000 {
        return Err(Failure::usage("--decide-rate must be at most 100000"));
    }
    if b.rounds == 0 || b.rounds > 20 {
        return Err(Failure::usage("--rounds must be from 1 to 20"));
    }
    let token = env_token(&b.token_env, "an agent")?;
    let targets = b
        .connect
        .iter()
        .map(|c| Target::parse("--connect", c, "/v1/approvals", Some(&token)).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = b.connect.first() else {
        return Err(Failure::usage("--connect: give a daemon's URL"));
    };
    // Decisions go to the first daemon (on a shared database, any daemon decides any).
    let reviewer = if b.decide_rate > 0 {
        let t = env_token(&b.reviewer_token_env, "a reviewer")?;
        Some(Arc::new(Target::parse(
            "--connect",
            first,
            "/v1/approvals",
            Some(&t),
        )?))
    } else {
        None
    };
    // One request to each first, so a wrong URL or token fails fast with its message.
    for target in &targets {
        probe(target).await?;
    }
    let mut rounds = Vec::new();
    for n in 1..=b.rounds {
        if b.rounds > 1 {
            println!("round {n} of {}", b.rounds);
        }
        rounds.push(round(&b, &targets, reviewer.clone()).await?);
    }
    if b.rounds > 1 {
        println!("over {} rounds: {}", b.rounds, over_rounds(&rounds));
    }
    Ok(())
}

/// One measurement: the ceiling (when given), then gatehouse with its decisions.
async fn round(
    b: &SubmitBench,
    targets: &[Arc<Target>],
    reviewer: Option<Arc<Target>>,
) -> Result<Round, Failure> {
    let ceiling_rate = match &b.ceiling {
        Some(url) => {
            let ceiling = Arc::new(Target::parse("--ceiling", url, "/v1/approvals", None)?);
            probe(&ceiling).await?;
            eprintln!(
                "bench: ceiling, {} connections for {} against {}",
                b.concurrency,
                humantime::format_duration(b.duration),
                ceiling.url()
            );
            let (mut t, elapsed) =
                load::closed_loop(&[ceiling], b.concurrency, b.duration, None).await;
            println!("ceiling:   {}", t.summary(elapsed));
            Some(t.rate(elapsed))
        }
        None => None,
    };
    eprintln!(
        "bench: gatehouse, {} connections for {} against {}{}",
        b.concurrency,
        humantime::format_duration(b.duration),
        targets
            .iter()
            .map(|t| t.url())
            .collect::<Vec<_>>()
            .join(", "),
        match b.decide_rate {
            0 => String::new(),
            r => format!(", deciding {r} approvals per second"),
        }
    );
    let (answered, ids) = match reviewer {
        Some(_) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let deciding = match (reviewer, ids) {
        (Some(reviewer), Some(ids)) => Some(tokio::spawn(decide_load(
            reviewer,
            b.decide_rate,
            b.duration,
            ids,
        ))),
        _ => None,
    };
    // The daemons' own counters around the load: the runner's busy time and the commits.
    let before = super::scrape::read(targets).await;
    let (mut t, elapsed) = load::closed_loop(targets, b.concurrency, b.duration, answered).await;
    println!("gatehouse: {} durable submissions", t.summary(elapsed));
    match (before, super::scrape::read(targets).await) {
        (Ok(before), Ok(after)) => println!(
            "runner:    {}",
            super::scrape::summary(
                before,
                after,
                elapsed.as_secs_f64(),
                t.lat.len() as u64,
                targets.len()
            )
        ),
        (Err(e), _) | (_, Err(e)) => println!("runner:    /metrics not read ({e})"),
    }
    let rate = t.rate(elapsed);
    let share = ceiling_rate.filter(|c| *c > 0.0).map(|c| rate / c * 100.0);
    if let Some(share) = share {
        println!("ratio:     {share:.1}% of the ceiling");
    }
    let p99_ms = t.quantile_ms(0.99);
    let mut decision_p99_ms = None;
    if let Some(d) = deciding {
        let (mut t, elapsed) = d
            .await
            .map_err(|e| Failure::runtime(format!("the decision load failed: {e}")))?;
        println!("decisions: {}", t.summary(elapsed));
        decision_p99_ms = Some(t.quantile_ms(0.99));
    }
    Ok(Round {
        share,
        p99_ms,
        decision_p99_ms,
    })
}

/// The median share of the ceiling and its range, and the worst p99s, over the rounds.
fn over_rounds(rounds: &[Round]) -> String {
    let mut parts = Vec::new();
    let mut shares: Vec<f64> = rounds.iter().filter_map(|r| r.share).collect();
    shares.sort_by(f64::total_cmp);
    if let (Some(lo), Some(hi)) = (shares.first(), shares.last()) {
        let mid = shares.len() / 2;
        let median = if shares.len() % 2 == 1 {
            shares[mid]
        } else {
            (shares[mid - 1] + shares[mid]) / 2.0
        };
        parts.push(format!(
            "median {median:.1}% of the ceiling ({lo:.1}–{hi:.1}%)"
        ));
    }
    let worst = |f: &dyn Fn(&Round) -> Option<f64>| {
        rounds
            .iter()
            .filter_map(f)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
    };
    if let Some(p) = worst(&|r| Some(r.p99_ms)) {
        parts.push(format!("worst p99 {p:.2} ms"));
    }
    if let Some(p) = worst(&|r| r.decision_p99_ms) {
        parts.push(format!("worst decision p99 {p:.2} ms"));
    }
    parts.join(", ")
}

fn env_token(var: &str, whose: &str) -> Result<String, Failure> {
    std::env::var(var)
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Failure::usage(format!("no token: set {var} to {whose} token")))
}

async fn probe(target: &Arc<Target>) -> Result<(), Failure> {
    let mut c = Conn::open(target.clone()).await.map_err(Failure::runtime)?;
    let (status, body) = c
        .post(r#"{"tool":"bench_probe","arguments":{}}"#.to_string())
        .await
        .map_err(|e| Failure::runtime(format!("{}: {e}", target.url())))?;
    if !(200..300).contains(&status) {
        return Err(Failure::runtime(format!(
            "{} refused a submission: HTTP {status}: {}",
            target.url(),
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Submitted {
    id: String,
    status: String,
}

/// Approve submitted approvals at `rate` per second while the submissions run, each on one
/// of [`DECIDERS`] connections at its share of the rate, and time each acknowledgement.
async fn decide_load(
    reviewer: Arc<Target>,
    rate: u32,
    duration: Duration,
    mut answered: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
) -> (Tally, Duration) {
    let queue: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let started = Instant::now();
    let end = started + duration;
    // Pending ids from the submissions' answers, newest last.
    let feeder = {
        let queue = queue.clone();
        tokio::spawn(async move {
            while let Some(body) = answered.recv().await {
                if let Ok(s) = serde_json::from_slice::<Submitted>(&body)
                    && s.status == "pending"
                    && let Ok(mut q) = queue.lock()
                {
                    q.push_back(s.id);
                }
            }
        })
    };
    let deciders = DECIDERS.min(rate);
    let period = Duration::from_secs_f64(f64::from(deciders) / f64::from(rate));
    let mut workers = Vec::new();
    for _ in 0..deciders {
        let queue = queue.clone();
        let reviewer = reviewer.clone();
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut conn: Option<Conn> = None;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if Instant::now() >= end {
                    break;
                }
                let id = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(id) = id else { continue };
                let c = match &mut conn {
                    Some(c) => c,
                    None => match Conn::open(reviewer.clone()).await {
                        Ok(c) => conn.insert(c),
                        Err(e) => {
                            tally.error(e);
                            continue;
                        }
                    },
                };
                c.set_path(format!("/v1/approvals/{id}/decision"));
                let t = Instant::now();
                let r = c
                    .post(r#"{"decision":"approve","reason":"bench"}"#.to_string())
                    .await;
                if tally.answer(t, r).is_none() {
                    conn = None;
                }
            }
            tally
        }));
    }
    let all = Tally::join(workers, "decider").await;
    feeder.abort();
    (all, started.elapsed())
}
