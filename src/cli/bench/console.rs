//! `gatehouse bench console`: what a remote console writes to its terminal while nothing
//! happens, and how soon a new approval shows on its screen.
//!
//! Everything is real: this binary's `serve` in a temporary directory, this binary's
//! `console --connect` in a pseudo-terminal, and a vt100 parser reading the screen back, as
//! the pty tests do. The bytes counted are the bytes the terminal receives.

use super::Failure;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::num::NonZeroU16;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Approvals filled in before the idle window stay younger than a minute through it (the
/// hard case: a list that counted their ages in seconds would redraw every row each second),
/// so the window is capped.
const MAX_IDLE: Duration = Duration::from_secs(40);
/// Longest wait for anything the bench expects to see (a daemon starting, a row showing).
const PATIENCE: Duration = Duration::from_secs(20);

#[derive(clap::Args)]
pub struct ConsoleBench {
    /// Terminal width.
    #[arg(long, default_value_t = 120)]
    width: u16,
    /// Terminal height.
    #[arg(long, default_value_t = 35)]
    height: u16,
    /// Pending approvals on screen while idle (the default fills the pane at 120×35).
    #[arg(long, default_value_t = 60)]
    pending: usize,
    /// How long to count the idle console's output (at most 40s, so every row stays younger
    /// than a minute).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// Arrivals to time, one at a time, each decided (and gone) before the next.
    #[arg(long, default_value_t = 50)]
    arrivals: usize,
}

/// The daemon, stopped when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the console's terminal has received: the screen as vt100 sees it and a byte count.
struct Screen {
    parser: vt100::Parser,
    bytes: u64,
    /// When the last bytes came: what made the screen as it is now.
    last_at: Instant,
}

/// The console in its pseudo-terminal; killed when dropped.
struct Console {
    screen: Arc<Mutex<Screen>>,
    /// Ticks once per chunk the terminal receives.
    changed: watch::Receiver<u64>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Console {
    fn text(&self) -> String {
        self.lock().parser.screen().contents()
    }

    fn rows(&self) -> Vec<String> {
        let s = self.lock();
        let (_, cols) = s.parser.screen().size();
        s.parser.screen().rows(0, cols.get()).collect()
    }

    fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Screen> {
        // a reader thread that panicked leaves a screen still worth reading
        self.screen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait (bounded) until the screen satisfies `f`; the instant the bytes that made it so
    /// arrived.
    async fn wait_for(&mut self, what: &str, f: impl Fn(&str) -> bool) -> Result<Instant, Failure> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            {
                let s = self.lock();
                if f(&s.parser.screen().contents()) {
                    return Ok(s.last_at);
                }
            }
            match tokio::time::timeout_at(deadline, self.changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(Failure::runtime(format!(
                        "the console ended while waiting for {what}; its screen:\n{}",
                        self.text()
                    )));
                }
                Err(_) => {
                    return Err(Failure::runtime(format!(
                        "timed out waiting for {what}; the console's screen:\n{}",
                        self.text()
                    )));
                }
            }
        }
    }
}

fn io_failure(what: &str) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| Failure::runtime(format!("{what}: {e}"))
}

/// `serve` in `dir`, on a port of its choosing; its address once it listens.
async fn start_daemon(exe: &Path, dir: &Path, config: &Path) -> Result<(Daemon, String), Failure> {
    let mut child = Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--data")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_failure("cannot start gatehouse serve"))?;
    let err = child.stderr.take();
    let daemon = Daemon(child);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let Some(err) = err else { return };
        let mut tx = Some(tx);
        // read to the end: a full pipe would stall the daemon
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(i) = line.find("listening on http://") {
                let url = line[i + "listening on ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(url);
                }
            }
        }
    });
    match tokio::time::timeout(PATIENCE, rx).await {
        Ok(Ok(url)) => Ok((daemon, url)),
        _ => Err(Failure::runtime(
            "gatehouse serve did not say where it listens within 20 s",
        )),
    }
}

/// `console --connect base` in a pseudo-terminal of `cols`×`rows`.
fn start_console(
    exe: &Path,
    base: &str,
    config: &Path,
    token: &str,
    cols: u16,
    rows: u16,
) -> Result<Console, Failure> {
    let pty = native_pty_system()
        .openpty(PtySize {
            rows,
            cols,
            pixel_width: 0,
            pixel_height: 0,
        })
        .map_err(|e| Failure::runtime(format!("cannot open a pseudo-terminal: {e}")))?;
    let mut cmd = CommandBuilder::new(exe);
    cmd.arg("console");
    cmd.arg("--connect");
    cmd.arg(base);
    cmd.arg("--config");
    cmd.arg(config);
    cmd.env("TERM", "xterm-256color");
    cmd.env("GATEHOUSE_TOKEN", token);
    let child = pty
        .slave
        .spawn_command(cmd)
        .map_err(|e| Failure::runtime(format!("cannot start the console: {e}")))?;
    drop(pty.slave);
    let (Some(r), Some(c)) = (NonZeroU16::new(rows), NonZeroU16::new(cols)) else {
        return Err(Failure::usage(
            "the terminal needs at least one row and column",
        ));
    };
    let screen = Arc::new(Mutex::new(Screen {
        parser: vt100::Parser::new(r, c, 0),
        bytes: 0,
        last_at: Instant::now(),
    }));
    let mut reader = pty
        .master
        .try_clone_reader()
        .map_err(|e| Failure::runtime(format!("cannot read the pseudo-terminal: {e}")))?;
    let writer = pty
        .master
        .take_writer()
        .map_err(|e| Failure::runtime(format!("cannot write to the pseudo-terminal: {e}")))?;
    let (tx, changed) = watch::channel(0u64);
    let s = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        let mut chunks = 0u64;
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            {
                let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.parser.process(&buf[..n]);
                s.bytes += n as u64;
                s.last_at = Instant::now();
            }
            chunks += 1;
            tx.send_replace(chunks);
        }
    });
    Ok(Console {
        screen,
        changed,
        writer,
        child,
        _master: pty.master,
    })
}

/// The daemon's HTTP API as the bench uses it: an agent submits, a reviewer denies.
struct Api {
    client: reqwest::Client,
    base: String,
    agent: String,
    reviewer: String,
}

impl Api {
    async fn submit(&self, order: &str) -> Result<String, Failure> {
        let body = json!({
            "tool": "bench_refund",
            "agent": "bench",
            "arguments": {"order_id": order, "amount": 75},
            "reasoning": "console bench",
        });
        let v = self
            .post(
                "/v1/approvals",
                &self.agent,
                &body,
                reqwest::StatusCode::CREATED,
            )
            .await?;
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Failure::runtime(format!("a submission's answer has no id: {v}")))
    }

    async fn deny(&self, id: &str) -> Result<(), Failure> {
        let body = json!({"decision": "deny", "reason": "console bench"});
        let path = format!("/v1/approvals/{id}/decision");
        self.post(&path, &self.reviewer, &body, reqwest::StatusCode::OK)
            .await
            .map(|_| ())
    }

    async fn post(
        &self,
        path: &str,
        token: &str,
        body: &Value,
        want: reqwest::StatusCode,
    ) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .client
            .post(&url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(|e| Failure::runtime(format!("POST {url}: {e}")))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status != want {
            return Err(Failure::runtime(format!("POST {url}: HTTP {status}: {v}")));
        }
        Ok(v)
    }
}

/// The `p`-th quantile of sorted durations, in milliseconds.
fn quantile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

const NO_PENDING: &str = "No pending approvals.";

pub async fn run(args: ConsoleBench) -> Result<(), Failure> {
    let ConsoleBench {
        width,
        height,
        pending,
        idle,
        arrivals,
    } = args;
    if width < 40 || height < 12 || width > 1000 || height > 500 {
        return Err(Failure::usage(
            "console: --width must be 40 to 1000 and --height 12 to 500",
        ));
    }
    if pending == 0 || pending > 10_000 {
        return Err(Failure::usage("console: --pending must be 1 to 10000"));
    }
    if idle < Duration::from_secs(1) || idle > MAX_IDLE {
        return Err(Failure::usage(
            "console: --idle must be 1s to 40s (the approvals must stay younger than a minute)",
        ));
    }
    if arrivals > 10_000 {
        return Err(Failure::usage("console: --arrivals must be at most 10000"));
    }
    let exe = std::env::current_exe().map_err(io_failure(
        "cannot find this program to start the daemon and console",
    ))?;
    let dir = tempfile::Builder::new()
        .prefix("gatehouse-bench-console-")
        .tempdir()
        .map_err(io_failure("cannot make a temporary directory"))?;
    let (agent, reviewer) = (
        format!("agent-{}", uuid::Uuid::new_v4().simple()),
        format!("reviewer-{}", uuid::Uuid::new_v4().simple()),
    );
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[[identities]]\nname = \"bench-reviewer\"\nroles = [\"reviewer\"]\ntoken = \"{reviewer}\"\n\n\
             [[identities]]\nname = \"bench-agent\"\nroles = [\"agent\"]\ntoken = \"{agent}\"\n"
        ),
    )
    .map_err(io_failure("cannot write the bench's config"))?;
    let (_daemon, base) = start_daemon(&exe, dir.path(), &config).await?;
    let api = Api {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?,
        base: base.clone(),
        agent,
        reviewer,
    };

    // A list of young approvals, then a console that shows it.
    let filled = Instant::now();
    let mut fill = Vec::with_capacity(pending);
    for i in 0..pending {
        fill.push(api.submit(&format!("FILL-{i:04}")).await?);
    }
    let mut console = start_console(&exe, &base, &config, &api.reviewer, width, height)?;
    let count = format!("{pending} pending");
    console
        .wait_for("the filled list", |s| {
            s.contains(&count) && s.contains("FILL-0000")
        })
        .await?;
    let full = console.text().contains(&format!("1/{pending} "));

    // Idle: nothing submitted or decided; the clock alone moves the screen.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (bytes_before, mut last) = (console.bytes(), console.rows());
    let mut changed_rows = vec![false; last.len()];
    let mut row_changes = 0usize;
    let started = Instant::now();
    while started.elapsed() < idle {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = console.rows();
        for (i, (a, b)) in last.iter().zip(&now).enumerate() {
            if a != b {
                changed_rows[i] = true;
                row_changes += 1;
            }
        }
        last = now;
    }
    let secs = started.elapsed().as_secs_f64();
    let idle_bytes = console.bytes() - bytes_before;
    let oldest = filled.elapsed();

    // Arrivals: an empty list, then one approval at a time, seen, denied and gone before the
    // next. Gaps spread them over the console's second-long clock.
    for id in &fill {
        api.deny(id).await?;
    }
    console
        .wait_for("the emptied list", |s| s.contains(NO_PENDING))
        .await?;
    let mut seen = Vec::with_capacity(arrivals);
    let mut acked = Vec::with_capacity(arrivals);
    for i in 0..arrivals {
        tokio::time::sleep(Duration::from_millis(100 + (i as u64 * 137) % 400)).await;
        let marker = format!("ARRIVAL-{i:04}");
        let sent = Instant::now();
        let id = api.submit(&marker).await?;
        acked.push(sent.elapsed());
        let at = console
            .wait_for("an arrival", |s| s.contains(&marker))
            .await?;
        seen.push(at.saturating_duration_since(sent));
        api.deny(&id).await?;
        console
            .wait_for("the arrival to be decided", |s| s.contains(NO_PENDING))
            .await?;
    }
    let _ = console.writer.write_all(b"q");
    let _ = console.writer.flush();

    println!(
        "console {width}x{height} over HTTP + SSE, {pending} pending approvals{}",
        if full {
            " (the pane full, the list scrolls)"
        } else {
            " (the pane is not full: raise --pending)"
        }
    );
    println!(
        "idle: {idle_bytes} bytes in {secs:.1} s = {:.0} bytes/s; screen rows that changed: {} ({:.1} row changes per second)",
        idle_bytes as f64 / secs,
        changed_rows.iter().filter(|c| **c).count(),
        row_changes as f64 / secs
    );
    for (i, _) in changed_rows.iter().enumerate().filter(|(_, c)| **c).take(4) {
        println!("  row {i:>2}: {}", last[i].trim_end());
    }
    if oldest >= Duration::from_secs(60) {
        println!("  (note: the oldest approval was {oldest:.0?} old by the end: not all young)");
    }
    if arrivals > 0 {
        seen.sort_unstable();
        acked.sort_unstable();
        println!(
            "arrival → on screen over {arrivals} arrivals: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (the submission's own answer: p50 {:.1} ms, max {:.1} ms)",
            quantile_ms(&seen, 0.50),
            quantile_ms(&seen, 0.99),
            quantile_ms(&seen, 1.0),
            quantile_ms(&acked, 0.50),
            quantile_ms(&acked, 1.0),
        );
    }
    Ok(())
}
