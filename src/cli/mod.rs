//! The command line (DESIGN §5). Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.

mod approvals;
mod audit;
mod bench;
mod console;
mod demo;
mod hook;
mod mcp;
mod policy;
pub mod remote;
mod run;
mod serve;
mod short_id;
mod store;

use crate::config::Config;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "A terminal approval console for AI-agent tool calls"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The seed's CustomerServiceAgent proposing refunds and deletions, in the console (offline).
    Demo {
        /// Theme: default, light, high-contrast, mono, or a path to a .toml file.
        #[arg(long)]
        theme: Option<String>,
        /// Also serve the HTTP API here (agents then need identities: see the README).
        #[arg(long)]
        listen: Option<String>,
    },
    /// The approval console, with its own runner or attached to a daemon (--connect).
    Console(console::ConsoleArgs),
    /// Run the headless daemon: the runner and the HTTP API.
    Serve(ServeArgs),
    /// Start an agent run (`--wait` follows it to the end).
    Run(run::RunArgs),
    /// List, show and cancel agent runs.
    Runs {
        #[command(subcommand)]
        action: run::RunsAction,
    },
    /// List, show and decide approvals from scripts.
    Approvals {
        #[command(subcommand)]
        action: approvals::Action,
    },
    /// Export the audit log, or verify its hash chain.
    Audit {
        #[command(subcommand)]
        action: audit::Action,
    },
    /// Check a config file and report every problem with its line.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Try another config's policies on the requests already recorded (`policy replay`).
    Policy {
        #[command(subcommand)]
        action: policy::Action,
    },
    /// A pre-tool hook for Claude Code, Codex, Gemini CLI or Cursor: asks a reviewer.
    Hook(hook::HookArgs),
    /// Move a data directory's contents into PostgreSQL (`store copy`).
    Store {
        #[command(subcommand)]
        action: store::Action,
    },
    /// Load generators that measure a running daemon.
    Bench {
        #[command(subcommand)]
        action: bench::Action,
    },
    /// A stdio MCP server that relays to the MCP gateway (`/mcp`) of a running daemon.
    Mcp(mcp::McpArgs),
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to listen on (default: [server] listen, else 127.0.0.1:7878).
    #[arg(long)]
    pub listen: Option<String>,
}

/// Options every local mode shares.
#[derive(Args, Clone, Default)]
pub struct CommonArgs {
    /// Config file (TOML).
    #[arg(long, env = "GATEHOUSE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (default: the user's data dir, e.g. ~/.local/share/gatehouse).
    #[arg(long, env = "GATEHOUSE_DATA")]
    pub data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Report every problem in the config file, each with its line and key.
    Check {
        #[arg(long, env = "GATEHOUSE_CONFIG")]
        config: PathBuf,
    },
}

/// A failure to report in one line, with its exit code.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(m: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: m.into(),
        }
    }
    pub fn runtime(m: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: m.into(),
        }
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("gatehouse: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    if prints_for_a_pipe(&cli.command) {
        stop_quietly_on_a_closed_pipe();
    }
    match cli.command {
        Command::Config {
            action: ConfigAction::Check { config },
        } => {
            let cfg = crate::preflight::load(&config).map_err(|e| {
                Failure::usage(format!(
                    "{} problem(s) in the config:\n{e}",
                    e.problems.len()
                ))
            })?;
            println!(
                "{}: ok ({} identities, {} policies, {} tools, {} agents, {} escalation tiers)",
                config.display(),
                cfg.identities.len(),
                cfg.policies.len(),
                cfg.tools.len(),
                cfg.agents.len(),
                cfg.escalation.len()
            );
            Ok(())
        }
        Command::Demo { theme, listen } => runtime()?.block_on(demo::demo(theme, listen)),
        Command::Console(args) => runtime()?.block_on(console::console(args)),
        Command::Serve(args) => {
            init_logging();
            runtime()?.block_on(serve::serve(args))
        }
        Command::Approvals { action } => runtime()?.block_on(approvals::run(action)),
        Command::Run(args) => runtime()?.block_on(run::run(args)),
        Command::Runs { action } => runtime()?.block_on(run::runs(action)),
        Command::Hook(args) => runtime()?.block_on(hook::hook(args)),
        Command::Bench { action } => runtime()?.block_on(bench::run(action)),
        Command::Audit { action } => runtime()?.block_on(audit::run(action)),
        Command::Policy { action } => runtime()?.block_on(policy::run(action)),
        Command::Mcp(args) => runtime()?.block_on(mcp::mcp(args)),
        Command::Store { action } => runtime()?.block_on(store::run(action)),
    }
}

/// Commands whose output is read by scripts and pagers (`| head`, `| less` quit early).
/// Not the daemon, the consoles, the hook (it must answer its host, or cancel) or the MCP
/// server (it answers on its own standard output); `audit export` reports a closed pipe itself.
fn prints_for_a_pipe(command: &Command) -> bool {
    matches!(
        command,
        Command::Config { .. }
            | Command::Approvals { .. }
            | Command::Run(_)
            | Command::Runs { .. }
            | Command::Policy { .. }
            | Command::Store { .. }
            | Command::Bench { .. }
    )
}

/// Rust ignores SIGPIPE, so printing to a pipe whose reader has gone fails, and `println!`
/// panics on that failure. A command that prints for a pipe ends as other Unix tools do
/// instead: quietly, by SIGPIPE. Sockets are unaffected (they are written with
/// `MSG_NOSIGNAL`).
fn stop_quietly_on_a_closed_pipe() {
    // SAFETY: restoring the default action of one signal; no handler, no pointers.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("GATEHOUSE_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        b.worker_threads(n);
    }
    b.enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))
}

/// Logs go to stderr; `RUST_LOG` overrides the default level.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn,hyper=warn"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// The config file, or the defaults when none is given.
pub fn load_config(path: Option<&PathBuf>) -> Result<Config, Failure> {
    match path {
        Some(p) => crate::preflight::load(p).map_err(|e| {
            Failure::usage(format!(
                "{} problem(s) in the config:\n{e}",
                e.problems.len()
            ))
        }),
        None => Ok(Config::default()),
    }
}

pub fn data_dir(arg: Option<&PathBuf>) -> Result<PathBuf, Failure> {
    match arg {
        Some(p) => Ok(p.clone()),
        None => dirs::data_dir()
            .map(|d| d.join("gatehouse"))
            .ok_or_else(|| Failure::usage("no data directory: pass --data DIR")),
    }
}

/// The daemon a script command talks to: `--connect`, else `$GATEHOUSE_URL` unless a data
/// directory was named (an exported URL must not make `--data` unusable).
pub fn connect_url(connect: Option<&String>, local: &CommonArgs) -> Option<String> {
    connect.cloned().or_else(|| {
        local
            .data
            .is_none()
            .then(|| std::env::var("GATEHOUSE_URL").ok())
            .flatten()
            .filter(|u| !u.is_empty())
    })
}

/// The data directory a script command (approvals, runs, run, audit) works on, never
/// created here: a given `--data` must exist; without one, the default directory is used only
/// if it exists, and stderr says which it is.
pub fn existing_data(common: &CommonArgs) -> Result<CommonArgs, Failure> {
    match &common.data {
        Some(dir) if dir.is_dir() => Ok(common.clone()),
        Some(dir) => Err(Failure::usage(format!(
            "no data directory at {}: give the --data DIR of a gatehouse console or daemon, or \
             --connect URL (or set GATEHOUSE_URL) for a running daemon",
            dir.display()
        ))),
        None => {
            let dir = data_dir(None)?;
            if !dir.is_dir() {
                return Err(Failure::usage(format!(
                    "nothing to read: pass --connect URL (or set GATEHOUSE_URL) for a running \
                     daemon, or --data DIR for a data directory (the default, {}, does not exist)",
                    dir.display()
                )));
            }
            eprintln!(
                "gatehouse: reading the data directory {} (pass --connect URL or set \
                 GATEHOUSE_URL for a running daemon)",
                dir.display()
            );
            Ok(CommonArgs {
                data: Some(dir),
                ..common.clone()
            })
        }
    }
}

/// The OS user running this process: `$USER`, else the passwd entry of our uid.
pub fn os_user() -> String {
    if let Some(u) = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
    {
        return u;
    }
    passwd_name().unwrap_or_else(|| format!("uid{}", unsafe { libc::getuid() }))
}

fn passwd_name() -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `pwd` and `buf`, which outlive the call; `out` is
    // either null or points at `pwd`, whose `pw_name` points into `buf`.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    if rc != 0 || out.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().map(str::to_string)
}
