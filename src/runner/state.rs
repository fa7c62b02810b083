//! The runner's in-memory state and its command loop.

mod cancel;
mod deadlines;
mod follow;
mod gate;
mod gateway;
mod gauges;
mod grants;
mod list;
mod load;
mod pending;
#[cfg(test)]
pub(super) use pending::HELD;
mod quorum;
mod record;
mod reply;
mod resume;
mod runs;
mod submit;
mod waiters;

use deadlines::after;
use list::standing;

use super::ledger::Ledger;
use super::*;
use crate::config::RuleAction;
use crate::domain::{self, ApprovalStatus, AuditKind, Decision, Grant, Timestamp};
use crate::notify::Notice;
use crate::policy::{CallContext, IdentityFacts, PolicySet, RateLimits, ToolAnnotations};
use crate::store::{ApprovalWrite, Store, StoreError};
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use tokio::sync::{broadcast, mpsc, watch};

const MAX_LIST: usize = 1000;
/// Unauthenticated refusals are written as one counting record per this window.
const UNAUTHENTICATED_WINDOW: chrono::Duration = chrono::Duration::minutes(1);

/// The runner: one part per job, each owning its state. Commands and internal reports are
/// dispatched by the loop below to methods that may touch several parts; the parts keep
/// their own invariants.
struct Runner {
    cfg: RunnerConfig,
    policies: PolicySet,
    /// The store, the sequence and hash head, and the group commit: what is durable when.
    ledger: Ledger,
    /// Pending approvals, their deadlines, recent decisions, grants and rate limits.
    approvals: Approvals,
    /// Agent runs gatehouse drives.
    runs: runs::Runs,
    /// The counters every part updates (shared with the HTTP API and the notifier).
    metrics: crate::metrics::Metrics,
    notifier: Option<crate::notify::Notifier>,
    /// Shutting down: running tools finish and are recorded, nothing new starts.
    stopping: bool,
}

/// The approvals part: everything about approvals the runner keeps in memory.
struct Approvals {
    /// Pending approvals in id (= creation) order, with when each next escalates or
    /// expires; whole only the newest (see [`pending`]).
    pending: pending::PendingBook,
    /// Decided approvals for consoles' history panes, oldest first.
    recent: VecDeque<Approval>,
    limits: RateLimits,
    /// Sticky grants by (identity, run, tool, server).
    grants: std::collections::HashMap<grants::GrantKey, Grant>,
    /// Unauthenticated refusals not yet written: since when, how many.
    unauthenticated: Option<(Timestamp, u64)>,
    /// Long polls waiting for a pending approval to be decided, by approval id.
    waiters: waiters::Waiters,
}

impl Approvals {
    /// Nothing yet, holding pending approvals as `store` allows (see [`pending`]).
    fn for_store(store: &Store) -> Approvals {
        Approvals {
            pending: pending::PendingBook::new(store.reads_back_locally().then_some(pending::HELD)),
            recent: VecDeque::new(),
            limits: RateLimits::default(),
            grants: Default::default(),
            unauthenticated: None,
            waiters: Default::default(),
        }
    }
}

/// Load the store's state and start the runner task.
pub fn start(
    store: Store,
    policies: PolicySet,
    cfg: RunnerConfig,
) -> Result<(RunnerHandle, tokio::task::JoinHandle<()>), StoreError> {
    let (events, _) = broadcast::channel(8192);
    let (internal, internal_rx) = mpsc::unbounded_channel();
    let (fatal, fatal_rx) = watch::channel(None);
    let cfg_metrics = cfg.metrics.clone();
    let approvals = Approvals::for_store(&store);
    let mut runner = Runner {
        ledger: Ledger::new(store, events.clone(), fatal),
        cfg,
        policies,
        approvals,
        runs: runs::Runs::new(internal),
        metrics: cfg_metrics,
        notifier: None,
        stopping: false,
    };
    runner.notifier = runner.cfg.webhook.clone().map(|url| {
        crate::notify::Notifier::start(url, runner.cfg.notify_on_create, runner.metrics.clone())
    });
    runner.load()?;
    let mcp_servers = runner.cfg.agents.as_ref().and_then(|a| a.mcp.clone());
    let (tx, rx) = mpsc::channel(4096);
    let (urgent, urgent_rx) = mpsc::channel(1024);
    let metrics = runner.metrics.clone();
    let busy = metrics.runner_busy_seconds.clone();
    let task = tokio::spawn(super::busy::Timed::new(
        runner.run(rx, urgent_rx, internal_rx),
        busy,
    ));
    Ok((
        RunnerHandle {
            tx,
            urgent,
            events,
            fatal: fatal_rx,
            mcp: mcp_servers,
            metrics,
        },
        task,
    ))
}

impl Runner {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut urgent: mpsc::Receiver<Command>,
        mut internal: mpsc::UnboundedReceiver<runs::Internal>,
    ) {
        let mut buf = Vec::with_capacity(256);
        let mut urgent_buf = Vec::with_capacity(64);
        let mut urgent_open = true;
        let mut rx_owed = false;
        let mut stop = None;
        self.resume_runs();
        let syncer = self.ledger.store.syncer();
        // On a shared store every commit reads what other daemons wrote; an idle runner
        // starts an empty one now and then to do the same.
        let shared = syncer.shared();
        let mut poll_at = tokio::time::Instant::now() + follow::POLL;
        let mut reconnect_at = tokio::time::Instant::now();
        let wake = self.ledger.store.wake_hint();
        loop {
            if self.ledger.failed.is_none() {
                let poll = shared && tokio::time::Instant::now() >= poll_at;
                if self.ledger.commit.maybe_start(&syncer, poll) {
                    poll_at = tokio::time::Instant::now() + follow::POLL;
                }
            }
            if self.ledger.failed.is_none() {
                // A deadline kept across turns of the loop: commands arriving all the time
                // (clients retrying on 503) must not keep postponing the next attempt.
                reconnect_at = tokio::time::Instant::now() + follow::RECONNECT;
            }
            let polling = shared
                && self.ledger.failed.is_none()
                && stop.is_none()
                && self.ledger.commit.in_flight.is_empty();
            let next_deadline = match (
                self.approvals.pending.next_deadline(),
                self.unauthenticated_due(),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = next_deadline.map(|at| {
                let wait = (at - self.now()).to_std().unwrap_or(Duration::ZERO);
                tokio::time::Instant::now() + wait
            });
            tokio::select! {
                biased;
                done = async {
                    match self.ledger.commit.in_flight.front_mut() {
                        Some(f) => (&mut f.task).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(f) = self.ledger.commit.in_flight.pop_front() {
                        let urgent = f.batch.urgent;
                        self.finish_flush(f.batch, f.started, done);
                        // A decision's reply just woke its request's task (into this worker's
                        // next slot): let it answer now rather than after the runner has
                        // handled everything queued meanwhile. Interleaved runs of `bench
                        // submit --decide-rate 200`: decision p99 5.4-5.5 ms against 5.2-7.8.
                        if urgent {
                            tokio::task::yield_now().await;
                        }
                    }
                }
                // Decisions before queued submissions (see `RunnerHandle::urgent`).
                // A flood of decisions must not starve submissions: after an urgent batch
                // the queued submissions get their turn.
                n = urgent.recv_many(&mut urgent_buf, 64),
                    if urgent_open && (!rx_owed || rx.is_empty()) => {
                    rx_owed = true;
                    if n == 0 {
                        urgent_open = false;
                        continue;
                    }
                    self.fire_deadlines();
                    for cmd in urgent_buf.drain(..) {
                        self.handle_urgent(cmd);
                    }
                }
                n = rx.recv_many(&mut buf, 256) => {
                    if n == 0 {
                        break;
                    }
                    rx_owed = false;
                    // What fell due before these commands arrived happens first (a decision
                    // racing the expiry it came after finds the approval expired); with an
                    // injected clock this is also how moved time takes effect.
                    self.fire_deadlines();
                    for cmd in buf.drain(..) {
                        if let Command::Shutdown { reply } = cmd {
                            stop = Some(reply);
                            self.stopping = true;
                            continue;
                        }
                        self.handle(cmd);
                        // A decision that arrived meanwhile does not wait for the rest of
                        // this drain (up to 256 submissions), and its commit starts now.
                        let mut took = false;
                        // Bounded, so a flood of decisions cannot hold this drain forever.
                        for _ in 0..8 {
                            let Ok(cmd) = urgent.try_recv() else { break };
                            took |= self.handle_urgent(cmd);
                        }
                        if took && self.ledger.failed.is_none() {
                            self.ledger.commit.maybe_start(&syncer, false);
                        }
                    }
                    if stop.is_some() && self.runs.tools_running == 0 {
                        break;
                    }
                }
                Some(done) = internal.recv() => {
                    if self.ledger.failed.is_none() {
                        self.internal_done(done);
                    } else {
                        self.runs.tools_running = 0;
                    }
                    if stop.is_some() && self.runs.tools_running == 0 {
                        break;
                    }
                }
                _ = async {
                    match sleep {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.fire_deadlines();
                    self.flush_unauthenticated(false);
                }
                _ = tokio::time::sleep_until(poll_at), if polling => {}
                // Another daemon committed: read it now rather than at the next poll.
                _ = async {
                    match &wake {
                        Some(w) => w.notified().await,
                        None => std::future::pending().await,
                    }
                }, if polling => {
                    poll_at = tokio::time::Instant::now();
                }
                // Backoff between attempts to reach a database that is down: nothing can
                // tell this runner it is back but trying.
                _ = tokio::time::sleep_until(reconnect_at),
                    if shared && self.ledger.failed.is_some() && stop.is_none() => {
                    if !self.recover() {
                        reconnect_at = tokio::time::Instant::now() + follow::RECONNECT;
                    }
                }
            }
        }
        if self.ledger.failed.is_none() {
            self.flush_unauthenticated(true);
        }
        // Every front end is gone: make what was written durable before stopping.
        while let Some(f) = self.ledger.commit.in_flight.pop_front() {
            let r = f.task.await;
            self.finish_flush(f.batch, f.started, r);
        }
        let open = &self.ledger.commit.open;
        if (open.writes > 0 || !open.parked.is_empty()) && self.ledger.failed.is_none() {
            let batch = std::mem::take(&mut self.ledger.commit.open);
            let r = syncer.commit().await;
            self.finish_flush(batch, std::time::Instant::now(), r);
        }
        // A clean stop hands this daemon's runs to the others at once, not when the lease
        // lapses.
        if self.ledger.failed.is_none() {
            self.ledger.store.release_runs();
        }
        if let Some(reply) = stop {
            let _ = reply.send(());
        }
    }

    /// A command from the urgent channel; its batch commits without waiting for a slot when
    /// it wrote something. Returns whether it did.
    fn handle_urgent(&mut self, cmd: Command) -> bool {
        let before = self.ledger.seq;
        self.handle(cmd);
        let wrote = self.ledger.seq != before && self.ledger.commit.open.writes > 0;
        if wrote {
            self.ledger.commit.open.urgent = true;
        }
        wrote
    }

    fn handle(&mut self, cmd: Command) {
        if let Some(msg) = self.ledger.failed.clone() {
            let err = RunnerError::Unavailable(msg);
            match cmd {
                Command::Submit { reply, .. } => drop(reply.send(Err(err))),
                Command::Decide { reply, .. } => drop(reply.send(Err(err))),
                Command::Get { reply, .. } => drop(reply.send(Err(err))),
                Command::Watch { reply, .. } => drop(reply.send(Err(err))),
                Command::List { reply, .. } => drop(reply.send(Err(err))),
                Command::Audit { reply, .. } => drop(reply.send(Err(err))),
                Command::Snapshot { reply } => drop(reply.send(Err(err))),
                Command::Recent { reply } => drop(reply.send(Err(err))),
                Command::Metrics { reply } => drop(reply.send(Err(err))),
                Command::Position { reply } => drop(reply.send(Err(err))),
                Command::Grants { reply } => drop(reply.send(Err(err))),
                Command::RevokeGrant { reply, .. } => drop(reply.send(Err(err))),
                Command::Escalate { reply, .. } => drop(reply.send(Err(err))),
                Command::StartRun { reply, .. } => drop(reply.send(Err(err))),
                Command::GetRun { reply, .. } => drop(reply.send(Err(err))),
                Command::ListRuns { reply, .. } => drop(reply.send(Err(err))),
                Command::CancelRun { reply, .. } => drop(reply.send(Err(err))),
                Command::CancelApproval { reply, .. } => drop(reply.send(Err(err))),
                Command::SubmitMcpCall { reply, .. } => drop(reply.send(Err(err))),
                Command::McpCallDone { reply, .. } => drop(reply.send(Err(err))),
                Command::RecordRefusal { .. } | Command::CountUnauthenticated { .. } => {}
                Command::Shutdown { reply } => drop(reply.send(())),
            }
            return;
        }
        match cmd {
            Command::Submit { who, req, reply } => {
                // On a shared store another daemon's auto-approvals count toward this one's
                // `max_per_hour`: evaluate only after a commit has read them (any submission
                // answered before this one arrived is then counted).
                if self.ledger.store.shared() && self.policies.counts_rate(&req.tool) {
                    let cmd = Command::Submit { who, req, reply };
                    self.ledger.commit.open.parked.push(cmd);
                    return;
                }
                let r = self.submit(&who, req);
                self.reply(reply, r);
            }
            Command::Decide { who, req, reply } => {
                let id = req.id;
                let r = self.decide(&who, req);
                self.reply_about(reply, r, Some(id));
            }
            Command::Get { id, reply } => {
                let r = self.get(id);
                self.reply(reply, r);
            }
            Command::Watch { id, reply } => {
                let r = self.watch(id);
                self.reply(reply, r);
            }
            Command::List { query, reply } => {
                let r = self.list(query);
                self.reply(reply, r);
            }
            Command::Audit {
                after,
                limit,
                reply,
            } => {
                let r = self
                    .ledger
                    .store
                    .audit_after(after, limit.min(MAX_LIST))
                    .map_err(store_err);
                self.reply(reply, r);
            }
            Command::Snapshot { reply } => {
                let snapshot = Snapshot {
                    recent: self.approvals.recent.iter().cloned().collect(),
                    runs: self
                        .runs
                        .recent
                        .iter()
                        .cloned()
                        .chain(self.runs.active.values().map(Run::summary))
                        .collect(),
                    seq: 0,
                };
                self.reply_published(reply, move |seq| Snapshot { seq, ..snapshot });
            }
            Command::Recent { reply } => {
                let recent = self.approvals.recent.iter().cloned().collect();
                self.reply(reply, Ok(recent));
            }
            Command::StartRun {
                who,
                agent,
                input,
                reply,
            } => {
                let r = self.start_run(&who, &agent, input);
                self.reply(reply, r);
            }
            Command::GetRun { id, reply } => {
                let r = match self.runs.active.get(&id) {
                    Some(run) => Ok(Some(run.clone())),
                    None => self.ledger.store.run(id).map_err(store_err),
                };
                self.reply(reply, r);
            }
            Command::ListRuns {
                before,
                limit,
                reply,
            } => {
                let limit = limit.clamp(1, MAX_LIST);
                let r = self
                    .ledger
                    .store
                    .runs_before(before, limit + 1)
                    .map_err(store_err)
                    .map(|mut runs| {
                        let more = runs.len() > limit;
                        runs.truncate(limit);
                        let next = if more {
                            runs.last().map(|r| r.id)
                        } else {
                            None
                        };
                        RunPage {
                            runs: runs.iter().map(Run::summary).collect(),
                            next,
                        }
                    });
                self.reply(reply, r);
            }
            Command::CancelApproval { who, id, reply } => {
                let r = self.withdraw(&who, id);
                self.reply_about(reply, r, Some(id));
            }
            Command::SubmitMcpCall { who, call, reply } => {
                let r = self.submit_mcp_call(&who, call);
                self.reply(reply, r);
            }
            Command::McpCallDone {
                id,
                ok,
                output,
                reply,
            } => {
                let r = self.mcp_call_done(id, ok, &output);
                self.reply(reply, r);
            }
            Command::CancelRun { who, id, reply } => {
                let r = self.cancel_run(&who, id);
                self.reply(reply, r);
            }
            Command::Position { reply } => self.reply_published(reply, |seq| seq),
            Command::Grants { reply } => {
                let all = self.live_grants();
                self.reply(reply, Ok(all));
            }
            Command::Escalate { who, id, reply } => {
                let r = self.escalate_by_hand(&who, id);
                self.reply_about(reply, r, Some(id));
            }
            Command::RevokeGrant {
                who,
                run_id,
                tool,
                server,
                identity,
                reply,
            } => {
                let r = self.revoke(&who, run_id, tool, server, identity);
                self.reply(reply, r);
            }
            Command::RecordRefusal {
                who,
                approval_id,
                code,
                message,
            } => {
                self.refused(&who, approval_id, &code, &message);
            }
            Command::CountUnauthenticated { n } => self.count_unauthenticated(n),
            // Handled by the loop before dispatch.
            Command::Shutdown { reply } => drop(reply.send(())),
            Command::Metrics { reply } => {
                self.refresh_gauges();
                let m = self.metrics.clone();
                self.reply(reply, Ok(m));
            }
        }
    }
}

fn store_err(e: StoreError) -> RunnerError {
    RunnerError::Unavailable(e.to_string())
}
