//! `kind = "command"`: run a program directly (never through a shell), the arguments as JSON
//! on its standard input, its standard output as the result.
//!
//! The program runs in a process group of its own, so a timeout (or the call being dropped,
//! as when gatehouse stops) kills everything it started, not just the first process. And it
//! dies with gatehouse (DESIGN §9), everything it started too: it runs under a guard
//! ([`super::guard`]) that the kernel signals when gatehouse dies (`PR_SET_PDEATHSIG`) and
//! that then kills the whole group, so after a `kill -9` nothing keeps running behind an
//! `outcome_unknown` approval.
//!
//! The kernel's "parent" there is the *thread* that forked, not the process: a program
//! forked from a tokio blocking-pool thread (which exits after 10 s idle) or a worker that
//! went through `block_in_place` would be killed while gatehouse lives. So every tool process
//! is forked from one thread that lives as long as gatehouse ([`on_lifeline`]).

use super::{MAX_OUTPUT_BYTES, ToolOutput, last_lines};
use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
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
    let mut command = super::guard::guarded(program);
    command
        .args(args)
        .env_clear()
        .envs(inherited)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    die_with_gatehouse(&mut command);
    let spawned = on_lifeline(move || command.spawn()).await;
    let mut child = match spawned {
        Some(Ok(c)) => c,
        Some(Err(e)) => return ToolOutput::unavailable(format!("cannot start {program:?}: {e}")),
        None => {
            return ToolOutput::unavailable(format!(
                "cannot start {program:?}: gatehouse is stopping"
            ));
        }
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
                Err(e) => {
                    return ToolOutput::unavailable(format!("cannot wait for {program:?}: {e}"));
                }
            };
            match out {
                None => ToolOutput::Error(format!(
                    "the output of {program:?} exceeds {} MiB (the program was killed)",
                    MAX_OUTPUT_BYTES / (1024 * 1024)
                )),
                Some(_) if status.code() == Some(super::guard::START_FAILED_STATUS) => {
                    match not_started(&err) {
                        Some(why) => ToolOutput::unavailable(why),
                        None => ToolOutput::Error(failure(program, status, &err)),
                    }
                }
                Some(_) if !status.success() => ToolOutput::Error(failure(program, status, &err)),
                Some(out) => ToolOutput::Ok(String::from_utf8_lossy(&out).into_owned()),
            }
        }
    };
    // The program is done (and reaped): its group id may be reused from now on.
    group.disarm();
    output
}

/// Set up a child gatehouse starts so that it dies with gatehouse and gets the umask
/// gatehouse was started with (the store narrows gatehouse's own to 077). Spawn it through
/// [`on_lifeline`].
pub(crate) fn die_with_gatehouse(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    let umask = crate::store::umask_for_children();
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (umask, prctl, getppid); it allocates nothing (io::Error from a raw code).
    unsafe {
        command.pre_exec(move || {
            if let Some(m) = umask {
                libc::umask(m);
            }
            #[cfg(target_os = "linux")]
            {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // gatehouse died between fork and prctl: the signal will never come.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = parent;
            Ok(())
        });
    }
}

type LifelineJob = Box<dyn FnOnce() + Send>;

/// Run `spawn` on the lifeline thread: one thread that never exits while gatehouse runs, so
/// that `PR_SET_PDEATHSIG` fires only when gatehouse itself dies. The tokio runtime is entered
/// there, so tokio children and pipes register with it. `None` if the job was lost (the
/// thread could not be started, or `spawn` panicked).
pub(crate) async fn on_lifeline<T: Send + 'static>(
    spawn: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    static LIFELINE: OnceLock<Option<mpsc::Sender<LifelineJob>>> = OnceLock::new();
    let lifeline = LIFELINE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<LifelineJob>();
        std::thread::Builder::new()
            .name("gatehouse-lifeline".into())
            .spawn(move || {
                // The sender is in a static, so this loop ends only with the process.
                while let Ok(job) = rx.recv() {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .ok()
            .map(|_| tx)
    });
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: LifelineJob = Box::new(move || {
        let _entered = runtime.enter();
        let _ = tx.send(spawn());
    });
    lifeline.as_ref()?.send(job).ok()?;
    rx.await.ok()
}

/// The guard's word that the program could not be started (`cannot start "x": …`).
fn not_started(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().last()?;
    line.strip_prefix(super::guard::START_FAILED)
        .map(|why| why.trim().to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread that asks for a tool may exit (a tokio blocking thread after 10 s idle): the
    /// tool must live on, because PDEATHSIG follows the forking thread, not the process.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_tool_outlives_the_thread_that_started_it() {
        let runtime = tokio::runtime::Handle::current();
        let asker = std::thread::spawn(move || {
            runtime.block_on(async {
                // Ends with status 7 when its standard input closes, which we do only after
                // the asking thread is gone.
                let mut command = Command::new("/bin/sh");
                command
                    .args(["-c", "cat >/dev/null; exit 7"])
                    .stdin(Stdio::piped())
                    .kill_on_drop(true);
                die_with_gatehouse(&mut command);
                on_lifeline(move || command.spawn()).await
            })
        });
        let mut child = asker
            .join()
            .expect("the asking thread")
            .expect("the lifeline thread took the job")
            .expect("spawned");
        drop(child.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("the tool ends once its input closes")
            .expect("waited");
        assert_eq!(status.code(), Some(7), "{status:?}");
    }
}
