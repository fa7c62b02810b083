//! `gatehouse bench start`: how long `gatehouse serve` takes from exec to its first answered
//! request over a data directory, and how much memory it holds then.

use super::Failure;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a start may take before the bench gives up on it.
const START_LIMIT: Duration = Duration::from_secs(120);

pub async fn start(data: &Path, config: Option<&PathBuf>, runs: u32) -> Result<(), Failure> {
    if runs == 0 || runs > 100 {
        return Err(Failure::usage("--runs must be from 1 to 100"));
    }
    if !data.join("GATEHOUSE").is_file() {
        return Err(Failure::usage(format!(
            "{} is not a gatehouse data directory (make one with gatehouse bench fill)",
            data.display()
        )));
    }
    let exe = std::env::current_exe()
        .map_err(|e| Failure::runtime(format!("cannot find this executable: {e}")))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?;
    let mut times = Vec::new();
    for run in 1..=runs {
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("GATEHOUSE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let started = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| Failure::runtime(format!("cannot start {}: {e}", exe.display())))?;
        let mut serving = Serving(child);
        let addr = serving.address()?;
        let url = format!("http://{addr}/healthz");
        loop {
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => break,
                _ if started.elapsed() > START_LIMIT => {
                    return Err(Failure::runtime(format!(
                        "{url} did not answer 200 within {}s",
                        START_LIMIT.as_secs()
                    )));
                }
                // The address is printed once the listener is bound, so this is rare: retry.
                _ => tokio::task::yield_now().await,
            }
        }
        let ready = started.elapsed();
        let (hwm, rss) = memory(serving.0.id())?;
        println!(
            "run {run}: first 200 on /healthz after {:.0} ms; peak RSS (VmHWM) {:.1} MB, RSS {:.1} MB",
            ready.as_secs_f64() * 1000.0,
            hwm as f64 / 1024.0,
            rss as f64 / 1024.0
        );
        times.push(ready);
        serving.stop()?;
    }
    times.sort();
    println!(
        "cold start over {}: median {:.0} ms, best {:.0} ms, worst {:.0} ms ({runs} runs)",
        data.display(),
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times[0].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0,
    );
    Ok(())
}

/// The daemon under test; killed if the bench ends early, so none is left behind.
struct Serving(Child);

impl Serving {
    /// The address from the `listening on http://ADDR` line on its stderr.
    fn address(&mut self) -> Result<String, Failure> {
        let stderr = self
            .0
            .stderr
            .take()
            .ok_or_else(|| Failure::runtime("the daemon's stderr is not piped"))?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.map_err(|e| Failure::runtime(format!("reading its stderr: {e}")))?;
            if let Some(addr) = line.strip_prefix("listening on http://") {
                let addr = addr.trim().to_string();
                // Keep draining stderr, so the daemon never blocks writing to a full pipe.
                std::thread::spawn(move || lines.for_each(drop));
                return Ok(addr);
            }
            seen.push(line);
        }
        Err(Failure::runtime(format!(
            "gatehouse serve ended without listening:\n{}",
            seen.join("\n")
        )))
    }

    /// SIGTERM, then wait for it to drain and exit.
    fn stop(mut self) -> Result<(), Failure> {
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: kill(2) with a child's PID that has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self
            .0
            .wait()
            .map_err(|e| Failure::runtime(format!("waiting for the daemon: {e}")))?;
        if !status.success() {
            return Err(Failure::runtime(format!(
                "gatehouse serve exited with {status} after SIGTERM"
            )));
        }
        Ok(())
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Peak and current resident set of `pid`, in KiB (`/proc/PID/status`).
fn memory(pid: u32) -> Result<(u64, u64), Failure> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| Failure::runtime(format!("cannot read /proc/{pid}/status: {e}")))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| Failure::runtime(format!("no {name} in /proc/{pid}/status")))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}
