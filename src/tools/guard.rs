//! The guard a `command` tool runs under, so that *everything* the tool started dies with
//! gatehouse, even after `kill -9`.
//!
//! `PR_SET_PDEATHSIG` asks the kernel to signal one process when its parent dies. Set on the
//! tool itself, it kills the tool but not what the tool started (a shell's `sleep`, a
//! script's background job), which then runs on behind an `outcome_unknown` approval. So
//! gatehouse starts a guard (this binary again, `/proc/self/exe`, with [`GUARD_ARG`]) as the
//! leader of the tool's process group, and the guard starts the tool in that group. The
//! guard's death signal is one it handles: it kills the whole group, itself included.
//!
//! The guard is transparent otherwise: the tool gets its standard streams, environment and
//! umask, and the guard exits as the tool did (its code, or the same signal). A tool that
//! cannot be started is reported on standard error after [`START_FAILED`], exit status 127.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};

/// The first argument that makes this binary a guard instead of the command line.
pub const GUARD_ARG: &str = "__gatehouse-tool-guard";

/// What the guard writes before saying why the tool could not be started.
pub const START_FAILED: &str = "gatehouse-tool-guard: ";

/// The guard's exit status when the tool could not be started (the shell's "not found").
pub const START_FAILED_STATUS: i32 = 127;

/// The command gatehouse spawns to run `program` under a guard; the caller adds the
/// program's arguments, environment and streams, and forks it as before.
///
/// In the library's own unit tests the running binary is the test harness, which cannot be a
/// guard: there the program is started directly (the guard is covered by the tests of the
/// real binary in `tests/`).
pub(crate) fn guarded(program: &str) -> tokio::process::Command {
    if cfg!(test) {
        return tokio::process::Command::new(program);
    }
    let mut command = tokio::process::Command::new(guard_exe());
    command
        .arg(GUARD_ARG)
        .arg(std::process::id().to_string())
        .arg("--")
        .arg(program);
    command
}

/// This very binary, even if its file was replaced or removed since it started.
fn guard_exe() -> std::path::PathBuf {
    #[cfg(target_os = "linux")]
    {
        std::path::PathBuf::from("/proc/self/exe")
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::env::current_exe().unwrap_or_else(|_| "gatehouse".into())
    }
}

/// Kill the guard's whole process group: the tool, what it started, and the guard.
extern "C" fn kill_the_group(_: libc::c_int) {
    // SAFETY: kill(2) is async-signal-safe; 0 is our own process group, which gatehouse made
    // for this guard (`process_group(0)`).
    unsafe {
        libc::kill(0, libc::SIGKILL);
    }
}

/// The guard's whole life, when the binary is started as `GUARD_ARG PARENT_PID -- PROGRAM ARGS…`
/// (`args` is everything after `GUARD_ARG`). Never returns.
pub fn run(args: Vec<OsString>) -> ! {
    let mut args = args.into_iter();
    let parent: Option<libc::pid_t> = args.next().and_then(|p| p.to_str()?.parse().ok());
    let (Some(parent), Some(_), Some(program)) = (parent, args.next(), args.next()) else {
        eprintln!("{START_FAILED}usage: {GUARD_ARG} PARENT_PID -- PROGRAM [ARGS…]");
        std::process::exit(START_FAILED_STATUS);
    };
    // SAFETY: installing a handler that calls only kill(2), then asking for SIGTERM when the
    // parent dies; no pointers are kept beyond the calls.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            kill_the_group as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
        // gatehouse died before we asked: nothing must start.
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
    let mut command = std::process::Command::new(&program);
    command.args(args);
    let guard = std::process::id() as libc::pid_t;
    // SAFETY: runs in the forked child before exec; prctl and getppid are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            // Should the guard be killed alone (SIGKILL to its pid), the tool goes with it.
            #[cfg(target_os = "linux")]
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != guard {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let status = match command.spawn().and_then(|mut child| child.wait()) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("{START_FAILED}cannot start {:?}: {e}", program);
            std::process::exit(START_FAILED_STATUS);
        }
    };
    if let Some(code) = status.code() {
        std::process::exit(code);
    }
    // Killed by a signal: die of the same one, so gatehouse reports it as before.
    if let Some(sig) = status.signal() {
        // SAFETY: restoring the default action and raising the signal on ourselves.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
        std::process::exit(128 + sig);
    }
    std::process::exit(1);
}
