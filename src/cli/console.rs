//! `gatehouse console` (embedded runner, optionally serving the API) and
//! `gatehouse console --connect URL` (a remote console of a running daemon).

use super::serve::{BoundApi, Local, start_local};
use super::{CommonArgs, Failure, data_dir};
use crate::config::Config;
use crate::frontend::{self, FrontendLink};
use crate::tui::attention::AttentionConfig;
use crate::tui::{ConsoleOptions, Keymap, Theme, run_console};
use clap::Args;
use std::path::Path;

#[derive(Args, Clone)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Also serve the HTTP API on this address, so agents can submit while the console is open.
    #[arg(long, conflicts_with = "connect")]
    pub listen: Option<String>,
    /// Who decisions made here are recorded as (default: the identity whose os_user is you, else your OS user).
    #[arg(long, conflicts_with = "connect")]
    pub reviewer: Option<String>,
    /// Attach to a running `gatehouse serve` instead of opening a data directory.
    #[arg(long, conflicts_with_all = ["data", "listen"])]
    pub connect: Option<String>,
    /// Environment variable holding the bearer token for --connect.
    #[arg(long, default_value = "GATEHOUSE_TOKEN")]
    pub token_env: String,
    /// Theme: default, light, high-contrast, mono, or a path to a .toml file.
    #[arg(long)]
    pub theme: Option<String>,
}

/// Theme and keys from the config and flags; a bad one is a usage error naming file and key.
pub fn console_options(
    config: &Config,
    theme: Option<&str>,
    title: &str,
) -> Result<ConsoleOptions, Failure> {
    let name = theme.or(config.ui.theme.as_deref()).unwrap_or("default");
    let theme =
        Theme::load(name, Theme::no_color_env()).map_err(|e| Failure::usage(e.to_string()))?;
    let keymap =
        Keymap::with_overrides(&config.ui.keys).map_err(|e| Failure::usage(e.to_string()))?;
    let attention = AttentionConfig::parse(config.ui.bell.as_deref(), config.ui.desktop.as_deref())
        .map_err(Failure::usage)?;
    Ok(ConsoleOptions {
        theme,
        keymap,
        title: title.to_string(),
        attention,
    })
}

/// Logs go to a file: anything on stderr would draw over the console.
pub fn log_to_file(path: &Path) {
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn,hyper=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

pub async fn console(args: ConsoleArgs) -> Result<(), Failure> {
    match args.connect.clone() {
        Some(url) => remote(args, url).await,
        None => embedded(args).await,
    }
}

async fn remote(args: ConsoleArgs, url: String) -> Result<(), Failure> {
    let base = url.trim_end_matches('/').to_string();
    let token = std::env::var(&args.token_env)
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Failure::usage(format!(
                "no token: set {} (or pass --token-env VAR)",
                args.token_env
            ))
        })?;
    let config = super::load_config(args.common.config.as_ref())?;
    // the status line shows the URL; the title does not repeat it
    let opts = console_options(&config, args.theme.as_deref(), "gatehouse")?;
    // Fail before taking the terminal when the token is wrong or may not review; wait, saying
    // why and when the next try comes, while the daemon is not reachable yet.
    let reviewer = wait_for_daemon(&base, &token).await?;
    log_to_file(&std::env::temp_dir().join("gatehouse-console.log"));
    let link = frontend::remote::link(base, token, reviewer).map_err(Failure::runtime)?;
    run_console(link, opts)
        .await
        .map_err(|e| Failure::runtime(format!("console: {e}")))
}

/// Ask the daemon who the token is, trying again (with a countdown on stderr) while it
/// cannot be reached; a refusal ends it.
async fn wait_for_daemon(base: &str, token: &str) -> Result<String, Failure> {
    use crate::frontend::remote::{WhoamiError, backoff, whoami};
    use std::io::{IsTerminal, Write};
    let mut attempt = 0u32;
    loop {
        match whoami(base, token).await {
            Ok(name) => {
                if attempt > 0 && std::io::stderr().is_terminal() {
                    eprintln!();
                }
                return Ok(name);
            }
            Err(WhoamiError::Refused(m)) => {
                if attempt > 0 && std::io::stderr().is_terminal() {
                    eprintln!();
                }
                return Err(Failure::runtime(m));
            }
            Err(WhoamiError::Unreachable(cause)) => {
                attempt += 1;
                let wait = backoff(attempt);
                let until = tokio::time::Instant::now() + wait;
                let line = |left: std::time::Duration| {
                    format!(
                        "gatehouse: cannot reach {base}: {cause} · retry in {}s (try {attempt}, \
                         Ctrl-C stops)",
                        left.as_secs() + 1
                    )
                };
                if !std::io::stderr().is_terminal() {
                    // a log, not a screen: one line per try
                    eprintln!("{}", line(wait));
                    tokio::time::sleep(wait).await;
                    continue;
                }
                // one line, rewritten each second: the cause and the countdown
                loop {
                    let left = until.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    eprint!("\r\x1b[K{}", line(left));
                    let _ = std::io::stderr().flush();
                    tokio::time::sleep(left.min(std::time::Duration::from_secs(1))).await;
                }
            }
        }
    }
}

async fn embedded(args: ConsoleArgs) -> Result<(), Failure> {
    let local = start_local(&args.common)?;
    let dir = data_dir(args.common.data.as_ref())?;
    let opts = console_options(&local.config, args.theme.as_deref(), "gatehouse")?;
    let reviewer = args
        .reviewer
        .clone()
        .unwrap_or_else(|| super::approvals::reviewer_for(&local));
    log_to_file(&dir.join("console.log"));
    let link = frontend::local::link(local.runner.clone(), reviewer);
    run_with_api(local, link, opts, args.listen.as_deref()).await
}

/// Run the console over a local runner, serving the API meanwhile when `listen` is given.
pub async fn run_with_api(
    local: Local,
    link: FrontendLink,
    opts: ConsoleOptions,
    listen: Option<&str>,
) -> Result<(), Failure> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut api = None;
    if let Some(listen) = listen {
        let bound = BoundApi::bind(&local, listen).await?;
        tracing::info!("console serving the API on http://{}", bound.addr);
        api = Some(tokio::spawn(bound.serve(async {
            let _ = stop_rx.await;
        })));
    }
    let result = run_console(link, opts).await;
    let _ = stop_tx.send(());
    if let Some(task) = api {
        let _ = task.await;
    }
    // Whatever was decided is durable before the process ends.
    local.stop().await;
    result.map_err(|e| Failure::runtime(format!("console: {e}")))
}
