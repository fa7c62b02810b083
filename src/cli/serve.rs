//! `gatehouse serve`, and the start-up every local mode shares.

use super::{CommonArgs, Failure, ServeArgs, data_dir, load_config};
use crate::api::server::{ServeLimits, serve as serve_http};
use crate::api::{ApiOptions, TokenTable, router};
use crate::config::Config;
use crate::policy::PolicySet;
use crate::runner::{self, RunnerConfig, RunnerHandle};
use crate::store::{Store, StoreError};

/// A runner on an opened data directory, with its config.
pub struct Local {
    pub config: Config,
    pub runner: RunnerHandle,
    pub task: tokio::task::JoinHandle<()>,
}

/// Open the store and start the runner. Config problems exit 2; store problems exit 1.
pub fn start_local(common: &CommonArgs) -> Result<Local, Failure> {
    start_local_hinted(common, "")
}

/// [`start_local`], with `in_use_hint` added when another process holds the data directory.
pub fn start_local_hinted(common: &CommonArgs, in_use_hint: &str) -> Result<Local, Failure> {
    let config = load_config(common.config.as_ref())?;
    let dir = data_dir(common.data.as_ref())?;
    let policies = PolicySet::compile(&config.policies).map_err(|p| {
        Failure::usage(format!(
            "invalid policies: {}",
            p.first().map(|p| p.message.as_str()).unwrap_or("")
        ))
    })?;
    let runner_cfg = RunnerConfig::from_config(&config).map_err(Failure::usage)?;
    let store = Store::open_configured(&config.store, &dir).map_err(|e| match e {
        StoreError::InUse { .. } => Failure::runtime(format!("{e}{in_use_hint}")),
        e => Failure::runtime(e.to_string()),
    })?;
    let (runner, task) =
        runner::start(store, policies, runner_cfg).map_err(|e| Failure::runtime(e.to_string()))?;
    Ok(Local {
        config,
        runner,
        task,
    })
}

impl Local {
    /// Make everything durable and stop.
    pub async fn stop(self) {
        self.runner.shutdown().await;
        let _ = self.task.await;
    }
}

/// The HTTP API over a local runner, bound and ready to serve.
pub struct BoundApi {
    pub addr: std::net::SocketAddr,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: ServeLimits,
    drain: crate::api::Drain,
}

impl BoundApi {
    /// Tokens from the config (a missing `token_env` is a usage error), then bind `listen`.
    pub async fn bind(local: &Local, listen: &str) -> Result<BoundApi, Failure> {
        let tokens = TokenTable::from_config(&local.config).map_err(Failure::usage)?;
        if tokens.is_empty() {
            tracing::warn!(
                "no [[identities]] configured: every API request will be refused with 401"
            );
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Failure::runtime(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::runtime(format!("cannot read the listening address: {e}")))?;
        let options = ApiOptions::from_config(&local.config, &addr.to_string());
        let drain = options.drain.clone();
        let app = router(local.runner.clone(), tokens, options);
        let limits = ServeLimits {
            max_connections: local.config.server.max_connections,
            header_timeout: local.config.server.header_timeout,
        };
        Ok(BoundApi {
            addr,
            listener,
            app,
            limits,
            drain,
        })
    }

    /// Serve until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        serve_http(self.listener, self.app, self.limits, shutdown, self.drain).await
    }
}

pub async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let files = raise_open_files_limit();
    let local = start_local(&args.common)?;
    if let Some(files) = files
        && (local.config.server.max_connections as u64) > files
    {
        tracing::warn!(
            "[server] max_connections is {} but this process may open only {files} files; \
             raise its hard limit (ulimit -Hn) or lower max_connections",
            local.config.server.max_connections
        );
    }
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| local.config.server.listen.clone());
    let api = BoundApi::bind(&local, &listen).await?;
    let addr = api.addr;
    // The line tests and scripts wait for; the address is the real one (port 0 resolved).
    tracing::info!(
        "gatehouse listening on http://{addr} (data {})",
        data_dir(args.common.data.as_ref())?.display()
    );
    eprintln!("listening on http://{addr}");
    let runner = local.runner.clone();
    let shutdown = async move {
        tokio::select! {
            _ = terminate() => tracing::info!("shutting down"),
            _ = runner.failed() => {}
        }
    };
    api.serve(shutdown).await;
    let failure = local.runner.failure();
    local.stop().await;
    match failure {
        Some(msg) => Err(Failure::runtime(msg)),
        None => Ok(()),
    }
}

/// Every connection (a long poll, an event stream) holds a file: raise the soft limit on open
/// files to the hard one, since the usual soft default (1024) is below `max_connections`.
/// Returns the limit now in force, if it can be read.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
                return None;
            }
            if r.rlim_cur < r.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: r.rlim_max,
                    rlim_max: r.rlim_max,
                };
                // Refused (e.g. a hard limit above what the kernel allows): the old one stays.
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    r = raised;
                }
            }
        }
        // rlim_t is u64 on Linux but not on every Unix.
        #[allow(clippy::unnecessary_cast)]
        Some(r.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

/// SIGINT, SIGTERM or SIGHUP.
pub async fn terminate() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut hup = signal(SignalKind::hangup()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match &mut term { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
            _ = async { match &mut hup { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
