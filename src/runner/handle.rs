//! The cloneable handle front ends hold.

use super::*;
use tokio::sync::{broadcast, mpsc, watch};

#[derive(Clone)]
pub struct RunnerHandle {
    pub(super) tx: mpsc::Sender<Command>,
    /// Reviewers' decisions and withdrawals: the runner takes these before queued
    /// submissions and starts their commit at once, so under a submit flood a decision is
    /// acknowledged within about one flush rather than behind every queued submission.
    pub(super) urgent: mpsc::Sender<Command>,
    pub(super) events: broadcast::Sender<Event>,
    pub(super) fatal: watch::Receiver<Option<String>>,
    /// The MCP servers the runner's agents use (their state is read, not owned, here).
    pub(super) mcp: Option<crate::tools::mcp::McpServers>,
    /// The counters the runner updates; front ends count into and encode the same ones.
    pub metrics: crate::metrics::Metrics,
}

impl RunnerHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, RunnerError> {
        Self::ask_on(&self.tx, make).await
    }

    /// As [`RunnerHandle::ask`], on the channel the runner serves first.
    async fn ask_urgent<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, RunnerError> {
        Self::ask_on(&self.urgent, make).await
    }

    async fn ask_on<T>(
        tx: &mpsc::Sender<Command>,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, RunnerError> {
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply))
            .await
            .map_err(|_| RunnerError::Unavailable("the runner has stopped".into()))?;
        rx.await
            .map_err(|_| RunnerError::Unavailable("the runner has stopped".into()))?
    }

    pub async fn submit(&self, who: &str, req: SubmitRequest) -> Result<Submitted, RunnerError> {
        let who = who.to_string();
        self.ask(|reply| Command::Submit { who, req, reply }).await
    }

    pub async fn decide(&self, who: &str, req: DecideRequest) -> Result<Approval, RunnerError> {
        let who = who.to_string();
        self.ask_urgent(|reply| Command::Decide { who, req, reply })
            .await
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Approval>, RunnerError> {
        self.ask(|reply| Command::Get { id, reply }).await
    }

    /// The approval, and while it is pending a receiver that gets it once decided (long polls
    /// wait on this instead of filtering every event).
    pub async fn watch(&self, id: Uuid) -> Result<Option<Watched>, RunnerError> {
        self.ask(|reply| Command::Watch { id, reply }).await
    }

    pub async fn list(&self, query: ListQuery) -> Result<ApprovalPage, RunnerError> {
        self.ask(|reply| Command::List { query, reply }).await
    }

    pub async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, RunnerError> {
        self.ask(|reply| Command::Audit {
            after,
            limit,
            reply,
        })
        .await
    }

    pub async fn snapshot(&self) -> Result<Snapshot, RunnerError> {
        self.ask(|reply| Command::Snapshot { reply }).await
    }

    /// The most recent decisions, oldest first (see [`Command::Recent`]).
    pub async fn recent(&self) -> Result<Vec<Approval>, RunnerError> {
        self.ask(|reply| Command::Recent { reply }).await
    }

    /// The metrics, with the gauges about the runner's state set as of now.
    pub async fn metrics(&self) -> Result<crate::metrics::Metrics, RunnerError> {
        self.ask(|reply| Command::Metrics { reply }).await
    }

    pub async fn escalate(&self, who: &str, id: Uuid) -> Result<Approval, RunnerError> {
        let who = who.to_string();
        self.ask_urgent(|reply| Command::Escalate { who, id, reply })
            .await
    }

    pub async fn grants(&self) -> Result<Vec<crate::domain::Grant>, RunnerError> {
        self.ask(|reply| Command::Grants { reply }).await
    }

    pub async fn revoke_grant(
        &self,
        who: &str,
        run_id: &str,
        tool: &str,
        server: Option<&str>,
        identity: Option<&str>,
    ) -> Result<Vec<crate::domain::Grant>, RunnerError> {
        let (who, run_id, tool, server, identity) = (
            who.to_string(),
            run_id.to_string(),
            tool.to_string(),
            server.map(str::to_string),
            identity.map(str::to_string),
        );
        self.ask(|reply| Command::RevokeGrant {
            who,
            run_id,
            tool,
            server,
            identity,
            reply,
        })
        .await
    }

    pub async fn position(&self) -> Result<u64, RunnerError> {
        self.ask(|reply| Command::Position { reply }).await
    }

    /// A request without a valid token was refused. Never waits: under a flood a full
    /// queue drops the count here (the API's own 401 counter still has it).
    pub fn count_unauthenticated(&self) {
        let _ = self.tx.try_send(Command::CountUnauthenticated { n: 1 });
    }

    pub async fn record_refusal(
        &self,
        who: &str,
        approval_id: Option<Uuid>,
        code: &str,
        message: &str,
    ) {
        let _ = self
            .tx
            .send(Command::RecordRefusal {
                who: who.to_string(),
                approval_id,
                code: code.to_string(),
                message: message.to_string(),
            })
            .await;
    }

    /// Live events, published only once durable. Subscribe before reading state to miss nothing.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// How many subscriptions are open (consoles, event streams, long polls).
    pub fn subscribers(&self) -> usize {
        self.events.receiver_count()
    }

    /// Resolves when the runner stopped because the store failed; carries the reason.
    pub async fn failed(&self) -> String {
        let mut rx = self.fatal.clone();
        loop {
            if let Some(msg) = rx.borrow().clone() {
                return msg;
            }
            if rx.changed().await.is_err() {
                return "the runner has stopped".into();
            }
        }
    }

    /// Why the runner stopped, if the store failed.
    pub fn failure(&self) -> Option<String> {
        self.fatal.borrow().clone()
    }

    /// Stop the runner after everything written so far is durable.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown { reply: tx }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Whether the runner task has stopped (for `/healthz`).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl RunnerHandle {
    /// Name, state, tool count and restarts of every MCP server in use.
    pub fn mcp_status(&self) -> Vec<crate::tools::mcp::McpServerStatus> {
        self.mcp.as_ref().map(|m| m.status()).unwrap_or_default()
    }

    /// Wakes on any MCP server's change of state.
    pub fn mcp_changes(&self) -> Option<watch::Receiver<u64>> {
        self.mcp.as_ref().map(|m| m.changes())
    }

    pub async fn start_run(
        &self,
        who: &str,
        agent: &str,
        input: &str,
    ) -> Result<RunSummary, RunnerError> {
        let (who, agent, input) = (who.to_string(), agent.to_string(), input.to_string());
        self.ask(|reply| Command::StartRun {
            who,
            agent,
            input,
            reply,
        })
        .await
    }

    pub async fn run(&self, id: Uuid) -> Result<Option<Run>, RunnerError> {
        self.ask(|reply| Command::GetRun { id, reply }).await
    }

    pub async fn runs(&self, before: Option<Uuid>, limit: usize) -> Result<RunPage, RunnerError> {
        self.ask(|reply| Command::ListRuns {
            before,
            limit,
            reply,
        })
        .await
    }

    pub async fn cancel_run(&self, who: &str, id: Uuid) -> Result<RunSummary, RunnerError> {
        let who = who.to_string();
        self.ask(|reply| Command::CancelRun { who, id, reply })
            .await
    }

    /// An MCP client's `tools/call` through the gateway: the approval, pending or decided
    /// at once (by the server's `approval` mode, a policy, or a grant of this session).
    pub async fn submit_mcp_call(&self, who: &str, call: McpCall) -> Result<Approval, RunnerError> {
        let who = who.to_string();
        self.ask(|reply| Command::SubmitMcpCall { who, call, reply })
            .await
    }

    /// Audit what an approved gateway call returned (`tool.executed`).
    pub async fn mcp_call_done(
        &self,
        id: Uuid,
        ok: bool,
        output: String,
    ) -> Result<(), RunnerError> {
        self.ask(|reply| Command::McpCallDone {
            id,
            ok,
            output,
            reply,
        })
        .await
    }

    /// The MCP servers in use (by agents or the gateway), if any.
    pub fn mcp_servers(&self) -> Option<crate::tools::mcp::McpServers> {
        self.mcp.clone()
    }

    /// Withdraw `who`'s own pending approval: its status becomes `cancelled`.
    pub async fn cancel_approval(&self, who: &str, id: Uuid) -> Result<Approval, RunnerError> {
        let who = who.to_string();
        self.ask_urgent(|reply| Command::CancelApproval { who, id, reply })
            .await
    }
}
