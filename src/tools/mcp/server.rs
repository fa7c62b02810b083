//! One MCP server: its shared state, and the supervisor task that starts it, watches it and
//! restarts it with backoff.

use super::{McpOptions, McpServerState, McpServerStatus, McpTool};
use crate::config::McpServerConfig;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{ClientInitializeError, NotificationContext, QuitReason, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpError;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, Peer, RoleClient};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{ChildStderr, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A server that stayed up this long has its backoff reset: its next failure is new trouble,
/// not the same crash loop.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long a stopping server may take to exit (rmcp closes its input, waits, sends SIGTERM,
/// waits, kills).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for a dead server's last words on standard error.
const STDERR_GRACE: Duration = Duration::from_millis(500);
/// Error messages are cut to this many characters.
const MAX_ERROR_CHARS: usize = 300;

pub(super) type Phase = McpServerState;

/// What rmcp runs for our side of the session: no client capabilities (no sampling, roots
/// or elicitation), and a tool list the server says has changed is listed again.
struct Client {
    /// Weak: the session must not keep a removed server alive.
    server: Weak<Server>,
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("gatehouse", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn on_tool_list_changed(&self, context: NotificationContext<RoleClient>) {
        let Some(server) = self.server.upgrade() else {
            return;
        };
        match context.peer.list_all_tools().await {
            Ok(listed) => {
                let tools: Vec<McpTool> = listed.iter().cloned().map(McpTool::from_rmcp).collect();
                tracing::info!(server = %server.name(), tools = tools.len(), "mcp tools changed");
                server.update(|s| {
                    s.tools = tools;
                    s.listed = listed;
                    s.tools_version = s.tools_version.wrapping_add(1);
                });
            }
            Err(e) => {
                tracing::warn!(server = %server.name(), error = %e, "cannot list changed mcp tools")
            }
        }
    }
}

pub(super) struct Server {
    pub(super) config: McpServerConfig,
    state: Mutex<State>,
    changes: Arc<watch::Sender<u64>>,
}

struct State {
    phase: Phase,
    /// The connection while ready; calls clone it.
    peer: Option<Peer<RoleClient>>,
    tools: Vec<McpTool>,
    /// The tools exactly as the server listed them, for the gateway to pass on unchanged.
    listed: Vec<rmcp::model::Tool>,
    /// Bumped whenever the tool list is replaced, so the gateway can tell its clients.
    tools_version: u64,
    pid: Option<u32>,
    restarts: u32,
    /// The first start attempt has ended (either way).
    tried: bool,
}

impl Server {
    pub(super) fn new(config: McpServerConfig, changes: Arc<watch::Sender<u64>>) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                phase: Phase::Starting,
                peer: None,
                tools: Vec::new(),
                listed: Vec::new(),
                tools_version: 0,
                pid: None,
                restarts: 0,
                tried: false,
            }),
            changes,
        }
    }

    pub(super) fn name(&self) -> &str {
        self.config.name.get_ref()
    }

    /// The state; a panic elsewhere while holding the lock leaves it usable (every update is
    /// a few plain assignments).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the state and tell the watchers.
    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state());
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(super) fn tried(&self) -> bool {
        self.state().tried
    }

    pub(super) fn tools(&self) -> Vec<McpTool> {
        self.state().tools.clone()
    }

    /// The tools as the server listed them, and the version of that list.
    pub(super) fn listed(&self) -> (Vec<rmcp::model::Tool>, u64) {
        let s = self.state();
        (s.listed.clone(), s.tools_version)
    }

    pub(super) fn status(&self) -> McpServerStatus {
        let s = self.state();
        McpServerStatus {
            name: self.name().to_owned(),
            state: s.phase.clone(),
            tools: s.tools.len(),
            restarts: s.restarts,
            pid: s.pid,
        }
    }

    /// The connection to call on, waiting (until `deadline`) for a server that is starting.
    /// The error completes "mcp server NAME …".
    pub(super) async fn peer_by(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<Peer<RoleClient>, String> {
        // Subscribe before looking, so a change in between is not missed.
        let mut changes = self.changes.subscribe();
        loop {
            {
                let state = self.state();
                match (&state.phase, &state.peer) {
                    (Phase::Ready, Some(peer)) => return Ok(peer.clone()),
                    (Phase::Failed { error }, _) => {
                        return Err(format!("is not running ({error}; retrying)"));
                    }
                    (Phase::Stopped, _) => return Err("is stopped".into()),
                    _ => {}
                }
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Err("is still starting".into()),
            }
        }
    }
}

/// A started server.
struct Connection {
    running: RunningService<RoleClient, Client>,
    listed: Vec<rmcp::model::Tool>,
    pid: Option<u32>,
    /// Logs the server's standard error; ends with its last line.
    stderr: Option<JoinHandle<Option<String>>>,
}

/// Start the server, watch it, restart it with backoff when it fails, until `stop` says so
/// (or its sender, held by `McpServers`, is gone).
pub(super) async fn supervise(
    server: Arc<Server>,
    options: McpOptions,
    mut stop: watch::Receiver<bool>,
) {
    let name = server.name().to_owned();
    let mut backoff = options.initial_backoff;
    loop {
        let attempt = tokio::select! {
            r = connect(&server, options.start_timeout) => r,
            _ = stopped(&mut stop) => break,
        };
        let error = match attempt {
            Err(e) => e,
            Ok(conn) => {
                let Connection {
                    running,
                    listed,
                    pid,
                    stderr,
                } = conn;
                let tools: Vec<McpTool> = listed.iter().cloned().map(McpTool::from_rmcp).collect();
                tracing::info!(server = %name, tools = tools.len(), ?pid, "mcp server ready");
                server.update(|s| {
                    s.phase = Phase::Ready;
                    s.peer = Some(running.peer().clone());
                    if s.listed != listed {
                        s.tools_version = s.tools_version.wrapping_add(1);
                    }
                    s.tools = tools;
                    s.listed = listed;
                    s.pid = pid;
                    s.tried = true;
                });
                let up_since = Instant::now();
                let cancel = running.cancellation_token();
                let finished = running.waiting();
                tokio::pin!(finished);
                let quit = tokio::select! {
                    q = &mut finished => q,
                    _ = stopped(&mut stop) => {
                        cancel.cancel();
                        let _ = tokio::time::timeout(STOP_GRACE, finished).await;
                        kill_group(pid);
                        break;
                    }
                };
                kill_group(pid);
                if up_since.elapsed() >= STABLE_AFTER {
                    backoff = options.initial_backoff;
                }
                let why = match (quit, pid) {
                    (Ok(QuitReason::Closed | QuitReason::Cancelled), Some(_)) => {
                        "the server exited"
                    }
                    (Ok(QuitReason::Closed | QuitReason::Cancelled), None) => {
                        "the server closed the session"
                    }
                    (Ok(_) | Err(_), _) => "the connection failed",
                };
                with_last_words(why.to_owned(), stderr).await
            }
        };
        tracing::warn!(server = %name, %error, retry_in = ?backoff, "mcp server failed");
        server.update(|s| {
            s.phase = Phase::Failed {
                error: one_line(&error),
            };
            s.peer = None;
            s.pid = None;
            s.tried = true;
        });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop) => break,
        }
        backoff = (backoff * 2).min(options.max_backoff);
        server.update(|s| {
            s.phase = Phase::Restarting;
            s.restarts += 1;
        });
    }
    server.update(|s| {
        s.phase = Phase::Stopped;
        s.peer = None;
        s.pid = None;
        s.tried = true;
    });
}

/// Resolves once `McpServers` shuts down or is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Start the server and list its tools, within `timeout`. The error is one line, without
/// the server's name.
async fn connect(server: &Arc<Server>, timeout: Duration) -> Result<Connection, String> {
    let config = &server.config;
    let client = Client {
        server: Arc::downgrade(server),
    };
    match (&config.command, &config.url) {
        (Some(program), None) => {
            let mut command = Command::new(program);
            // kill_on_drop: even if rmcp's cleanup cannot run (runtime shutting down).
            command
                .args(&config.args)
                .envs(&config.env)
                .kill_on_drop(true);
            // Its own process group: whatever it starts (`npx` starts node) can be stopped
            // with it, and a Ctrl-C meant for gatehouse does not reach it.
            #[cfg(unix)]
            command.process_group(0);
            // It dies with gatehouse, forked from the thread that lives as long as gatehouse.
            crate::tools::command::die_with_gatehouse(&mut command);
            // Standard error is piped to our log: inherited, it would draw over the console.
            let spawned = crate::tools::command::on_lifeline(move || {
                TokioChildProcess::builder(command)
                    .stderr(Stdio::piped())
                    .spawn()
            })
            .await
            .ok_or_else(|| format!("cannot start {program:?}: gatehouse is stopping"))?;
            let (transport, stderr) =
                spawned.map_err(|e| format!("cannot start {program:?}: {e}"))?;
            let pid = transport.id();
            let stderr = stderr.map(|e| tokio::spawn(log_stderr(server.name().to_owned(), e)));
            match handshake(client, transport, timeout).await {
                Ok((running, listed)) => Ok(Connection {
                    running,
                    listed,
                    pid,
                    stderr,
                }),
                Err(e) => {
                    kill_group(pid);
                    Err(with_last_words(e, stderr).await)
                }
            }
        }
        (None, Some(url)) => {
            let transport = StreamableHttpClientTransport::from_uri(url.as_str());
            let (running, listed) = handshake(client, transport, timeout).await?;
            Ok(Connection {
                running,
                listed,
                pid: None,
                stderr: None,
            })
        }
        (Some(_), Some(_)) => Err("both command and url are set (set only one)".into()),
        (None, None) => Err("neither command nor url is set".into()),
    }
}

/// Initialise the MCP session and list every tool (all pages).
async fn handshake<T, E, A>(
    client: Client,
    transport: T,
    timeout: Duration,
) -> Result<(RunningService<RoleClient, Client>, Vec<rmcp::model::Tool>), String>
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    const CLOSED: &str = "the server closed the connection";
    let start = async {
        let running = rmcp::serve_client(client, transport).await.map_err(|e| {
            let why = match &e {
                // A stdio server that exits at once: which of the two rmcp reports is a race.
                ClientInitializeError::ConnectionClosed(_) => CLOSED.to_owned(),
                ClientInitializeError::TransportError { error, .. }
                    if error
                        .error
                        .downcast_ref::<std::io::Error>()
                        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
                {
                    CLOSED.to_owned()
                }
                // The transport's own error says it better than rmcp's wrapper (which names
                // the transport's Rust type).
                ClientInitializeError::TransportError { error, .. } => {
                    // The HTTP client's error does not chain its cause ("connection refused").
                    match error
                        .error
                        .downcast_ref::<StreamableHttpError<reqwest::Error>>()
                    {
                        Some(StreamableHttpError::Client(e)) => crate::text::error_chain(e),
                        _ => crate::text::error_chain(error.error.as_ref()),
                    }
                }
                other => crate::text::error_chain(other),
            };
            format!("initialisation failed: {why}")
        })?;
        let tools = running
            .peer()
            .list_all_tools()
            .await
            .map_err(|e| format!("listing tools failed: {}", crate::text::error_chain(&e)))?;
        Ok((running, tools))
    };
    tokio::time::timeout(timeout, start)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "did not start within {}",
                humantime::format_duration(timeout)
            ))
        })
}

/// Log each line the server writes to standard error; return the last non-empty one.
async fn log_stderr(server: String, stderr: ChildStderr) -> Option<String> {
    let mut lines = BufReader::new(stderr).lines();
    let mut last = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        // Escaped: the log may end up on a terminal.
        tracing::info!(target: "gatehouse::mcp", server = %server, "{}", crate::text::escape(&line).0);
        last = Some(line);
    }
    last
}

/// `error`, with the server's last line on standard error when it wrote one (that is
/// usually why it died).
async fn with_last_words(error: String, stderr: Option<JoinHandle<Option<String>>>) -> String {
    let Some(handle) = stderr else {
        return error;
    };
    match tokio::time::timeout(STDERR_GRACE, handle).await {
        Ok(Ok(Some(line))) => format!("{error} (last stderr line: {})", line.trim()),
        _ => error,
    }
}

/// Kill what is left of a stdio server's process group (its leader has exited or been
/// killed by rmcp, but children such as the node behind `npx` may linger).
fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pgid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kill(2) with a negative pid signals that process group; it takes no
        // pointers. The group was made for this server (process_group(0)) and is only
        // signalled right after the server ended, so its id has not been reused.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// One line, escaped for a terminal, and not too long: server errors can quote anything.
pub(super) fn one_line(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let (escaped, _) = crate::text::escape(&flat);
    crate::text::clip(&escaped, MAX_ERROR_CHARS)
}
