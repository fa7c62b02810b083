//! `kind = "command"`: run a program directly (never through a shell), the arguments as JSON
//! on its standard input, its standard output as the result.
//!
//! The program runs in a process group of its own, so a timeout (or the call being dropped)
//! kills everything it started, not just the first process.

use super::{MAX_OUTPUT_BYTES, ToolOutput, last_lines};
use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Standard error kept (its end) for the error message.
const STDERR_KEEP: usize = 64 * 1024;
/// Lines of standard error quoted when the program fails.
const STDERR_LINES: usize = 5;

/// Variables a command inherits from gatehouse; everything else (API keys, tokens) stays out.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "TZ", "TMPDIR", "USER", "LOGNAME"];

pub(super) async fn run(
    argv: &[String],
    env: &BTreeMap<String, String>,
    input: &[u8],
    timeout: Duration,
) -> ToolOutput {
    let Some((program, args)) = argv.split_first() else {
        return ToolOutput::Error("no command to run".into());
    };
    let inherited = std::env::vars_os().filter(|(k, _)| {
        k.to_str()
            .is_some_and(|k| INHERITED_ENV.contains(&k) || k.starts_with("LC_"))
    });
    let mut child = match Command::new(program)
        .args(args)
        .env_clear()
        .envs(inherited)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return ToolOutput::Error(format!("cannot start {program:?}: {e}")),
    };
    let mut group = GroupGuard(child.id().map(|pid| pid as libc::pid_t));
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let work = async {
        let feed = async {
            if let Some(mut stdin) = stdin {
                // A program that does not read its input is fine: ignore EPIPE.
                let _ = stdin.write_all(input).await;
                let _ = stdin.shutdown().await;
            }
        };
        let out = async {
            let out = read_capped(stdout, MAX_OUTPUT_BYTES).await;
            if out.is_none() {
                // Too much output: stop the program rather than let it block on a full pipe.
                group.kill();
            }
            out
        };
        let err = read_tail(stderr, STDERR_KEEP);
        let ((), out, err) = tokio::join!(feed, out, err);
        let status = child.wait().await;
        (out, err, status)
    };
    let result = tokio::time::timeout(timeout, work).await;
    let output = match result {
        Err(_) => {
            group.kill();
            let _ = child.start_kill();
            let _ = child.wait().await;
            return ToolOutput::Error(format!(
                "timed out after {} (the program was killed)",
                humantime::format_duration(timeout)
            ));
        }
        Ok((out, err, status)) => {
            let status = match status {
                Ok(s) => s,
                Err(e) => return ToolOutput::Error(format!("cannot wait for {program:?}: {e}")),
            };
            match out {
                None => ToolOutput::Error(format!(
                    "the output of {program:?} exceeds {} MiB (the program was killed)",
                    MAX_OUTPUT_BYTES / (1024 * 1024)
                )),
                Some(_) if !status.success() => ToolOutput::Error(failure(program, status, &err)),
                Some(out) => ToolOutput::Ok(String::from_utf8_lossy(&out).into_owned()),
            }
        }
    };
    // The program is done (and reaped): its group id may be reused from now on.
    group.disarm();
    output
}

fn failure(program: &str, status: ExitStatus, stderr: &[u8]) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("{program:?} exited with status {code}"),
        (None, Some(sig)) => format!("{program:?} was killed by signal {sig}"),
        (None, None) => format!("{program:?} failed ({status})"),
    };
    let tail = last_lines(&String::from_utf8_lossy(stderr), STDERR_LINES);
    if tail.is_empty() {
        format!("{how} (nothing on standard error)")
    } else {
        format!("{how}: {tail}")
    }
}

/// Everything up to `cap` bytes; `None` past it.
async fn read_capped(stream: Option<impl AsyncRead + Unpin>, cap: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let Some(stream) = stream else {
        return Some(out);
    };
    // Read one byte past the cap to tell "exactly cap" from "more".
    match stream.take(cap as u64 + 1).read_to_end(&mut out).await {
        Ok(_) if out.len() > cap => None,
        _ => Some(out),
    }
}

/// The last `keep` bytes, reading to the end (so the program never blocks on stderr).
async fn read_tail(stream: Option<impl AsyncRead + Unpin>, keep: usize) -> Vec<u8> {
    let mut tail = Vec::new();
    let Some(mut stream) = stream else {
        return tail;
    };
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * keep {
                    tail.drain(..tail.len() - keep);
                }
            }
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    tail
}

/// Kills the program's process group when the call ends early (timeout, too much output, or
/// the call future dropped), unless disarmed once the program has been reaped.
struct GroupGuard(Option<libc::pid_t>);

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill(2) with a negative pid signals that process group; it takes no
            // pointers. The group leader is our child, not yet reaped, so the id is still ours.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
