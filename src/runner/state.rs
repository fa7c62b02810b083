//! The runner's in-memory state and its command loop.

mod cancel;
mod deadlines;
mod gateway;
mod grants;
mod quorum;
mod runs;

use deadlines::after;

use super::commit::{Deferred, GroupCommit};
use super::*;
use crate::config::RuleAction;
use crate::domain::{self, ApprovalStatus, AuditKind, Decision, GENESIS_HASH, Grant, Timestamp};
use crate::notify::Notice;
use crate::policy::{CallContext, IdentityFacts, PolicySet, RateLimits, ToolAnnotations};
use crate::store::{ApprovalWrite, Store, StoreError};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use tokio::sync::{broadcast, mpsc, watch};

const MAX_LIST: usize = 1000;
/// Unauthenticated refusals are written as one counting record per this window.
const UNAUTHENTICATED_WINDOW: chrono::Duration = chrono::Duration::minutes(1);

/// Counters for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct RunnerMetrics {
    pub pending_by_queue: BTreeMap<String, usize>,
    pub submitted: u64,
    pub replayed: u64,
    pub auto_approved: u64,
    pub auto_denied: u64,
    pub approved: u64,
    pub denied: u64,
    pub expired: u64,
    pub escalated: u64,
    pub refused_decisions: u64,
    pub refusals_not_audited: u64,
    pub notify_sent: u64,
    pub notify_failed: u64,
    pub notify_retries: u64,
    pub notify_dropped: u64,
    pub flushes: u64,
    pub flushed_writes: u64,
    pub flush_seconds: f64,
    /// Seconds from creation to a human decision: bucket upper bounds and cumulative counts.
    pub decision_latency_buckets: Vec<(f64, u64)>,
    pub decision_latency_sum: f64,
    pub decision_latency_count: u64,
    pub last_seq: u64,
    /// Active runs by status.
    pub runs_active: BTreeMap<String, usize>,
    /// Finished runs since start, by how they ended.
    pub runs_ended: BTreeMap<String, u64>,
    pub tools_ok: u64,
    pub tools_failed: u64,
}

const LATENCY_BOUNDS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
];

struct Runner {
    store: Store,
    cfg: RunnerConfig,
    policies: PolicySet,
    limits: RateLimits,
    /// Pending approvals in id (= creation) order.
    pending: BTreeMap<Uuid, Approval>,
    deadlines: BTreeSet<(Timestamp, Uuid)>,
    recent: VecDeque<Approval>,
    seq: u64,
    last_hash: String,
    events: broadcast::Sender<Event>,
    commit: GroupCommit,
    failed: Option<String>,
    fatal: watch::Sender<Option<String>>,
    metrics: RunnerMetrics,
    /// Unauthenticated refusals not yet written: since when, how many.
    unauthenticated: Option<(Timestamp, u64)>,
    /// Sticky grants by (identity, run, tool, server).
    grants: std::collections::HashMap<grants::GrantKey, Grant>,
    notifier: Option<crate::notify::Notifier>,
    /// Runs not yet finished, by id.
    runs: BTreeMap<Uuid, Run>,
    /// Finished runs for consoles' runs panes, oldest first.
    recent_runs: VecDeque<RunSummary>,
    /// Runs whose model call is under way.
    model_calls: std::collections::HashSet<Uuid>,
    /// Model and tool calls report back here.
    internal: mpsc::UnboundedSender<runs::Internal>,
    /// Tool calls started and not yet reported back.
    tools_running: usize,
    /// Shutting down: running tools finish and are recorded, nothing new starts.
    stopping: bool,
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
    let mut runner = Runner {
        store,
        cfg,
        policies,
        limits: RateLimits::default(),
        pending: BTreeMap::new(),
        deadlines: BTreeSet::new(),
        recent: VecDeque::new(),
        seq: 0,
        last_hash: GENESIS_HASH.into(),
        events: events.clone(),
        commit: GroupCommit::default(),
        failed: None,
        fatal,
        metrics: RunnerMetrics {
            decision_latency_buckets: LATENCY_BOUNDS.iter().map(|b| (*b, 0)).collect(),
            ..Default::default()
        },
        unauthenticated: None,
        grants: Default::default(),
        notifier: None,
        runs: BTreeMap::new(),
        recent_runs: VecDeque::new(),
        model_calls: Default::default(),
        internal,
        tools_running: 0,
        stopping: false,
    };
    runner.notifier = runner
        .cfg
        .webhook
        .clone()
        .map(|url| crate::notify::Notifier::start(url, runner.cfg.notify_on_create));
    runner.load()?;
    let mcp_servers = runner.cfg.agents.as_ref().and_then(|a| a.mcp.clone());
    let (tx, rx) = mpsc::channel(4096);
    let task = tokio::spawn(runner.run(rx, internal_rx));
    Ok((
        RunnerHandle {
            tx,
            events,
            fatal: fatal_rx,
            mcp: mcp_servers,
        },
        task,
    ))
}

impl Runner {
    /// Rebuild the in-memory index from the store, checking what it reads.
    fn load(&mut self) -> Result<(), StoreError> {
        let dir = self.store.dir().to_path_buf();
        let corrupt = |what: String| StoreError::Corrupt {
            dir: dir.clone(),
            what,
        };
        if let Some(last) = self.store.audit_rev().next() {
            let last = last?;
            if last.compute_hash() != last.hash {
                return Err(corrupt(format!(
                    "the last audit record (seq {}) fails its hash check",
                    last.seq
                )));
            }
            // A crash may have cut the newest change short after its audit record.
            self.store.redo_last(&last)?;
            self.seq = last.seq;
            self.last_hash = last.hash;
        }
        for run in self.store.active_runs()? {
            self.runs.insert(run.id, run);
        }
        self.load_grants()?;
        // Recently finished runs, for consoles' runs panes (newest 200, oldest first).
        let mut finished: Vec<RunSummary> = self
            .store
            .runs_before(None, 200)?
            .iter()
            .filter(|r| r.status.is_finished())
            .map(Run::summary)
            .collect();
        finished.reverse();
        self.recent_runs = finished.into();
        for a in self.store.pending()? {
            if let Some(at) = a.next_deadline() {
                self.deadlines.insert((at, a.id));
            }
            self.pending.insert(a.id, a);
        }
        let hour_ago = self.now() - chrono::Duration::hours(1);
        let mut recent = Vec::new();
        for (i, r) in self.store.audit_rev().enumerate() {
            let r = r?;
            if i == 0 {
                if r.compute_hash() != r.hash {
                    return Err(corrupt(format!(
                        "the last audit record (seq {}) fails its hash check",
                        r.seq
                    )));
                }
                self.seq = r.seq;
                self.last_hash = r.hash.clone();
            }
            let in_hour = r.at >= hour_ago;
            if recent.len() >= self.cfg.recent_limit && !in_hour {
                break;
            }
            if matches!(
                r.kind,
                AuditKind::ApprovalDecided
                    | AuditKind::ApprovalExpired
                    | AuditKind::ApprovalCancelled
            ) && let Some(a) = r.approval()
            {
                if in_hour
                    && r.actor.starts_with("policy:")
                    && a.status == ApprovalStatus::Approved
                    && let (Some(name), Some(rule)) = (&a.policy.name, a.policy.rule)
                {
                    self.limits.record(name, rule, r.at);
                }
                if recent.len() < self.cfg.recent_limit {
                    recent.push(a);
                }
            }
        }
        recent.reverse();
        self.recent = recent.into();
        self.metrics.last_seq = self.seq;
        Ok(())
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut internal: mpsc::UnboundedReceiver<runs::Internal>,
    ) {
        let mut buf = Vec::with_capacity(256);
        let mut stop = None;
        self.resume_runs();
        loop {
            if self.failed.is_none() {
                let syncer = self.store.syncer();
                self.commit.maybe_start(&syncer);
            }
            let next_deadline = match (
                self.deadlines.first().map(|(at, _)| *at),
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
                    match self.commit.in_flight.front_mut() {
                        Some(f) => (&mut f.task).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(f) = self.commit.in_flight.pop_front() {
                        self.finish_flush(f.batch, f.started, done);
                    }
                }
                n = rx.recv_many(&mut buf, 256) => {
                    if n == 0 {
                        break;
                    }
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
                    }
                    if stop.is_some() && self.tools_running == 0 {
                        break;
                    }
                }
                Some(done) = internal.recv() => {
                    if self.failed.is_none() {
                        self.internal_done(done);
                    } else {
                        self.tools_running = 0;
                    }
                    if stop.is_some() && self.tools_running == 0 {
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
            }
        }
        if self.failed.is_none() {
            self.flush_unauthenticated(true);
        }
        // Every front end is gone: make what was written durable before stopping.
        while let Some(f) = self.commit.in_flight.pop_front() {
            let r = f.task.await;
            self.finish_flush(f.batch, f.started, r);
        }
        if self.commit.open.writes > 0 && self.failed.is_none() {
            let batch = std::mem::take(&mut self.commit.open);
            let syncer = self.store.syncer();
            let r = syncer.commit().await;
            self.finish_flush(batch, std::time::Instant::now(), r);
        }
        if let Some(reply) = stop {
            let _ = reply.send(());
        }
    }

    fn finish_flush(
        &mut self,
        batch: super::commit::Batch,
        started: std::time::Instant,
        done: Result<std::io::Result<()>, tokio::task::JoinError>,
    ) {
        let result = match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the store could not make writes durable: {e}")),
            Err(e) => Err(format!("the store's flush failed: {e}")),
        };
        match result {
            Ok(()) => {
                self.metrics.flushes += 1;
                self.metrics.flushed_writes += batch.writes as u64;
                self.metrics.flush_seconds += started.elapsed().as_secs_f64();
                for e in batch.events {
                    let _ = self.events.send(e);
                }
                if let Some(n) = &self.notifier {
                    for notice in batch.notices {
                        n.send(notice);
                    }
                }
                for r in batch.replies {
                    r(None);
                }
            }
            Err(msg) => {
                // Nothing more can be promised: refuse everything and tell the process to stop.
                tracing::error!("{msg}");
                for r in batch.replies {
                    r(Some(&msg));
                }
                // Later batches cannot be durable either: their flushes came after this one.
                for f in std::mem::take(&mut self.commit.in_flight) {
                    for r in f.batch.replies {
                        r(Some(&msg));
                    }
                }
                for r in std::mem::take(&mut self.commit.open.replies) {
                    r(Some(&msg));
                }
                self.failed = Some(msg.clone());
                let _ = self.fatal.send(Some(msg));
                // Tools whose start was waiting on this flush never start.
                self.tools_running = 0;
            }
        }
    }

    fn reply<T: Send + 'static>(&mut self, tx: Reply<T>, value: Result<T, RunnerError>) {
        let deferred: Deferred = Box::new(move |err| {
            let _ = tx.send(match err {
                None => value,
                Some(e) => Err(RunnerError::Unavailable(e.to_string())),
            });
        });
        self.commit.defer(deferred);
    }

    fn handle(&mut self, cmd: Command) {
        if let Some(msg) = self.failed.clone() {
            let err = RunnerError::Unavailable(msg);
            match cmd {
                Command::Submit { reply, .. } => drop(reply.send(Err(err))),
                Command::Decide { reply, .. } => drop(reply.send(Err(err))),
                Command::Get { reply, .. } => drop(reply.send(Err(err))),
                Command::List { reply, .. } => drop(reply.send(Err(err))),
                Command::Audit { reply, .. } => drop(reply.send(Err(err))),
                Command::Snapshot { reply } => drop(reply.send(Err(err))),
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
                let r = self.submit(&who, req);
                self.reply(reply, r);
            }
            Command::Decide { who, req, reply } => {
                let r = self.decide(&who, req);
                self.reply(reply, r);
            }
            Command::Get { id, reply } => {
                let r = self.get(id);
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
                    .store
                    .audit_after(after, limit.min(MAX_LIST))
                    .map_err(store_err);
                self.reply(reply, r);
            }
            Command::Snapshot { reply } => {
                let r = Ok(Snapshot {
                    pending: self.pending.values().cloned().collect(),
                    recent: self.recent.iter().cloned().collect(),
                    runs: self
                        .recent_runs
                        .iter()
                        .cloned()
                        .chain(self.runs.values().map(Run::summary))
                        .collect(),
                    seq: self.seq,
                });
                self.reply(reply, r);
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
                let r = match self.runs.get(&id) {
                    Some(run) => Ok(Some(run.clone())),
                    None => self.store.run(id).map_err(store_err),
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
                self.reply(reply, r);
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
            Command::Position { reply } => {
                let seq = self.seq;
                self.reply(reply, Ok(seq));
            }
            Command::Grants { reply } => {
                let all = self.live_grants();
                self.reply(reply, Ok(all));
            }
            Command::Escalate { who, id, reply } => {
                let r = self.escalate_by_hand(&who, id);
                self.reply(reply, r);
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
                let mut m = self.metrics.clone();
                if let Some(n) = &self.notifier {
                    use std::sync::atomic::Ordering::Relaxed;
                    m.notify_sent = n.counters.sent.load(Relaxed);
                    m.notify_failed = n.counters.failed.load(Relaxed);
                    m.notify_retries = n.counters.retries.load(Relaxed);
                    m.notify_dropped = n.counters.dropped.load(Relaxed);
                }
                for a in self.pending.values() {
                    *m.pending_by_queue.entry(a.queue.clone()).or_default() += 1;
                }
                m.last_seq = self.seq;
                for r in self.runs.values() {
                    *m.runs_active
                        .entry(r.status.as_str().to_string())
                        .or_default() += 1;
                }
                self.reply(reply, Ok(m));
            }
        }
    }

    /// Append an audit record (and the approval change it describes) to the store.
    fn record(
        &mut self,
        kind: AuditKind,
        actor: &str,
        approval: Option<&Approval>,
        details: Value,
        idempotency: Option<(&str, &str)>,
    ) -> Result<(), RunnerError> {
        self.record_with_grant(kind, actor, approval, details, idempotency, None)
    }

    fn record_with_grant(
        &mut self,
        kind: AuditKind,
        actor: &str,
        approval: Option<&Approval>,
        mut details: Value,
        idempotency: Option<(&str, &str)>,
        grant: Option<&Grant>,
    ) -> Result<(), RunnerError> {
        if let (Some(g), Value::Object(m)) = (grant, &mut details) {
            m.insert(
                "grant".into(),
                serde_json::to_value(g).unwrap_or(Value::Null),
            );
        }
        // The audit record is the write-ahead record: it carries what `Store::redo_last`
        // needs to finish the change after a crash, the idempotency key included.
        if let (Some((_, k)), Value::Object(m)) = (idempotency, &mut details) {
            m.insert("idempotency_key".into(), Value::String(k.to_string()));
        }
        if let (Some(a), Value::Object(m)) = (approval, &mut details) {
            m.insert(
                "approval".into(),
                serde_json::to_value(a).unwrap_or(Value::Null),
            );
        }
        let rec = self.seal(
            kind,
            actor,
            approval.map(|a| a.id),
            approval.and_then(|a| a.run_id.clone()),
            details,
        );
        let written = match approval {
            Some(a) => self.store.write_approval(ApprovalWrite {
                approval: a,
                audit: &rec,
                idempotency,
                grant,
            }),
            None => match (kind, grant) {
                (AuditKind::GrantRevoked, Some(g)) => self.store.revoke_grant(&rec, g),
                _ => self.store.write_audit(&rec),
            },
        };
        if let Err(e) = written {
            return Err(self.store_failed(e));
        }
        self.seq = rec.seq;
        self.last_hash = rec.hash.clone();
        self.commit
            .wrote(approval.and_then(|a| Event::for_approval(&rec, a)));
        Ok(())
    }

    /// The next audit record of the chain, hashed.
    fn seal(
        &self,
        kind: AuditKind,
        actor: &str,
        approval_id: Option<Uuid>,
        run_id: Option<String>,
        details: Value,
    ) -> AuditRecord {
        let mut rec = AuditRecord {
            seq: self.seq + 1,
            at: self.now(),
            kind,
            actor: actor.to_string(),
            approval_id,
            run_id,
            details,
            prev_hash: self.last_hash.clone(),
            hash: String::new(),
        };
        rec.hash = rec.compute_hash();
        rec
    }

    /// A write failed: nothing more can be promised, so the runner stops accepting work.
    fn store_failed(&mut self, e: StoreError) -> RunnerError {
        let msg = format!("the store refused a write: {e}");
        tracing::error!("{msg}");
        self.failed = Some(msg.clone());
        let _ = self.fatal.send(Some(msg.clone()));
        RunnerError::Unavailable(msg)
    }

    /// A decision attempt by an authenticated identity was refused: always audited, so a
    /// reviewer probing what it may not do leaves a trace (DESIGN §9).
    fn refused(&mut self, who: &str, approval_id: Option<Uuid>, code: &str, message: &str) {
        self.metrics.refused_decisions += 1;
        let details = json!({"code": code, "message": message, "approval_id": approval_id});
        let _ = self.record(AuditKind::DecisionRefused, who, None, details, None);
    }

    /// Requests without a valid token: anyone can send a flood of them, so they are counted
    /// and written as one `requests.refused` record per minute instead of one each.
    fn count_unauthenticated(&mut self, n: u64) {
        let now = self.now();
        self.unauthenticated.get_or_insert((now, 0)).1 += n;
        self.flush_unauthenticated(false);
    }

    /// When the unauthenticated count's minute is over (or `force`), write its record.
    fn flush_unauthenticated(&mut self, force: bool) {
        let now = self.now();
        let Some((since, count)) = self.unauthenticated else {
            return;
        };
        if !force && now < since + UNAUTHENTICATED_WINDOW {
            return;
        }
        self.unauthenticated = None;
        let details = json!({
            "code": "unauthorized",
            "count": count,
            "from": since,
            "to": now,
            "message": format!("{count} requests without a valid token were refused"),
        });
        let _ = self.record(
            AuditKind::RequestsRefused,
            "(no valid token)",
            None,
            details,
            None,
        );
    }

    /// When the open unauthenticated count is due to be written.
    fn unauthenticated_due(&self) -> Option<Timestamp> {
        self.unauthenticated
            .map(|(since, _)| since + UNAUTHENTICATED_WINDOW)
    }

    fn find(&self, id: Uuid) -> Result<Option<Approval>, RunnerError> {
        if let Some(a) = self.pending.get(&id) {
            return Ok(Some(a.clone()));
        }
        self.store.approval(id).map_err(store_err)
    }

    fn get(&self, id: Uuid) -> Result<Option<Approval>, RunnerError> {
        self.find(id)
    }

    fn submit(&mut self, who: &str, req: SubmitRequest) -> Result<Submitted, RunnerError> {
        if let Some(key) = &req.idempotency_key
            && let Some(id) = self.store.idempotent(who, key).map_err(store_err)?
        {
            let sha = domain::arguments_sha256(&req.arguments);
            let first = self.find(id)?.ok_or_else(|| {
                RunnerError::Unavailable(format!("idempotency key points at missing approval {id}"))
            })?;
            // A reviewer's edit changed `arguments`; the retry repeats what was submitted.
            let submitted_sha = match &first.requested_arguments {
                Some(requested) => domain::arguments_sha256(requested),
                None => first.arguments_sha256.clone(),
            };
            if first.tool != req.tool || submitted_sha != sha {
                return Err(RunnerError::Invalid(format!(
                    "idempotency_key {key:?} was already used for a different request (approval {id})"
                )));
            }
            self.metrics.replayed += 1;
            return Ok(Submitted {
                approval: first,
                replayed: true,
            });
        }
        if let Some(q) = &req.queue
            && !self.cfg.knows_queue(q)
        {
            return Err(RunnerError::Invalid(format!(
                "queue: {q:?} is not a configured queue ({})",
                self.configured_queues()
            )));
        }
        // Policies read facts only: a claimed agent or server reads as null (DESIGN §9), and
        // a submitter's annotations are never trusted (the pessimistic defaults apply).
        let outcome = self.policies.evaluate(
            &CallContext {
                tool: &req.tool,
                server: req.server.as_deref().filter(|_| req.server_verified),
                args: &req.arguments,
                agent: req.agent.as_deref().filter(|_| req.agent_verified),
                run: None,
                annotations: ToolAnnotations::default(),
                policy: None,
                identity: IdentityFacts {
                    name: who,
                    roles: &req.roles,
                },
                context: req.context.as_ref(),
            },
            self.now(),
            &self.limits,
        );
        let idem = req.idempotency_key.clone();
        let idem = idem.as_deref().map(|k| (who, k));
        let approval = self.create_approval(who, req, outcome, idem)?;
        Ok(Submitted {
            approval,
            replayed: false,
        })
    }

    /// The queues a submission may name, for the 422 that refuses another.
    fn configured_queues(&self) -> String {
        let mut all: Vec<&str> = self.cfg.tiers.iter().map(|t| t.queue.as_str()).collect();
        all.extend(self.cfg.rule_queues.iter().map(String::as_str));
        if self.cfg.tiers.is_empty() {
            all.push("default");
        }
        all.dedup();
        format!("configured: {}", all.join(", "))
    }

    /// Create an approval for a proposed call whose policy outcome is known: decided at once
    /// (a policy, or a sticky grant), or pending in its queue.
    fn create_approval(
        &mut self,
        who: &str,
        req: SubmitRequest,
        outcome: crate::policy::PolicyOutcome,
        idem: Option<(&str, &str)>,
    ) -> Result<Approval, RunnerError> {
        let now = self.now();
        let sha = domain::arguments_sha256(&req.arguments);
        // Routing belongs to the operator: the rule's queue wins over the submitted one.
        let queue = outcome
            .queue
            .clone()
            .or(req.queue.clone())
            .or_else(|| self.cfg.tiers.first().map(|t| t.queue.clone()))
            .unwrap_or_else(|| "default".into());
        let tier = self.cfg.tiers.iter().position(|t| t.queue == queue);
        let plan = self.plan(now, tier, outcome.timeout, req.timeout);
        let mut approval = Approval {
            id: Uuid::now_v7(),
            run_id: req.run_id,
            agent: req.agent,
            agent_verified: req.agent_verified,
            tool: req.tool,
            server: req.server,
            server_verified: req.server_verified,
            arguments: req.arguments,
            arguments_sha256: sha,
            requested_arguments: None,
            context: req.context,
            reasoning: req.reasoning,
            requested_by: who.to_string(),
            queue,
            tier: tier.unwrap_or(0) as u32,
            policy: outcome.policy.clone(),
            created_at: now,
            expires_at: Some(plan.expires_at),
            escalates_at: plan.escalates_at,
            status: ApprovalStatus::Pending,
            decision: None,
            editable: req.editable,
            outcome_unknown: req.outcome_unknown,
            approvals_needed: outcome.approvals.filter(|n| *n > 1),
            approved_by: Vec::new(),
        };
        // `record` puts the key in the audit record (the write-ahead record), so a crash
        // between the record and the key's own entry is redone at start and a retry with
        // the same key replays instead of creating a duplicate.
        // A sticky grant answers what a policy would have asked a reviewer (never a deny),
        // but never whether a call cut short by a restart runs again.
        let granted = match outcome.action {
            // Nor a two-person rule: a grant made by one reviewer is not N approvals.
            RuleAction::Ask if !approval.outcome_unknown && approval.approvals_needed.is_none() => {
                self.grant_for(&approval)
            }
            _ => None,
        };
        match (outcome.action, granted) {
            (_, Some(g)) => {
                let reason = format!(
                    "{} was granted to {who} for the rest of run {} by {} (approval {})",
                    g.tool, g.run_id, g.granted_by, g.approval_id
                );
                let by = format!("grant:{}", g.granted_by);
                self.decide_at_once(&mut approval, Verdict::Approve, &by, reason, who, idem)?;
            }
            (RuleAction::Ask, None) => {
                self.record(
                    AuditKind::ApprovalCreated,
                    who,
                    Some(&approval),
                    json!({}),
                    idem,
                )?;
                self.metrics.submitted += 1;
                if let Some(at) = approval.next_deadline() {
                    self.deadlines.insert((at, approval.id));
                }
                if self.cfg.notify_on_create {
                    let reason = format!("new approval in queue {}", approval.queue);
                    let reviewers = self.tier_reviewers(&approval);
                    self.commit.notice(Notice::new(
                        AuditKind::ApprovalCreated,
                        &approval,
                        reviewers,
                        reason,
                    ));
                }
                self.pending.insert(approval.id, approval.clone());
            }
            (action, None) => {
                let by = format!(
                    "policy:{}",
                    outcome.policy.name.as_deref().unwrap_or("default")
                );
                let verdict = if action == RuleAction::Approve {
                    Verdict::Approve
                } else {
                    Verdict::Deny
                };
                let reason = outcome.policy.reason.clone();
                self.decide_at_once(&mut approval, verdict, &by, reason, who, idem)?;
                if verdict == Verdict::Approve
                    && let (Some(name), Some(rule)) = (&outcome.policy.name, outcome.policy.rule)
                {
                    self.limits.record(name, rule, now);
                }
            }
        }
        Ok(approval)
    }

    /// Decide a new submission without a reviewer (a policy, or a sticky grant).
    fn decide_at_once(
        &mut self,
        approval: &mut Approval,
        verdict: Verdict,
        by: &str,
        reason: String,
        who: &str,
        idem: Option<(&str, &str)>,
    ) -> Result<(), RunnerError> {
        approval.expires_at = None;
        approval.escalates_at = None;
        approval.status = match verdict {
            Verdict::Approve => ApprovalStatus::Approved,
            Verdict::Deny => ApprovalStatus::Denied,
        };
        approval.decision = Some(Decision {
            by: by.to_string(),
            at: approval.created_at,
            reason: Some(reason),
            arguments_sha256: Some(approval.arguments_sha256.clone()),
            arguments: None,
            scope: None,
        });
        self.record(
            AuditKind::ApprovalDecided,
            by,
            Some(approval),
            json!({"requested_by": who}),
            idem,
        )?;
        match verdict {
            Verdict::Approve => self.metrics.auto_approved += 1,
            Verdict::Deny => self.metrics.auto_denied += 1,
        }
        self.remember(approval.clone());
        Ok(())
    }

    fn remember(&mut self, a: Approval) {
        self.recent.push_back(a);
        while self.recent.len() > self.cfg.recent_limit {
            self.recent.pop_front();
        }
    }

    fn decide(&mut self, who: &str, req: DecideRequest) -> Result<Approval, RunnerError> {
        let Some(current) = self.pending.get(&req.id).cloned() else {
            return match self.store.approval(req.id).map_err(store_err)? {
                None => Err(RunnerError::NotFound(format!("no approval {}", req.id))),
                Some(a) => Err(RunnerError::Conflict {
                    code: "already_decided",
                    message: standing(&a),
                    approval: Box::new(a),
                }),
            };
        };
        if current.requested_by == who {
            let msg = format!("{who} requested this approval and cannot decide it");
            self.refused(who, Some(req.id), "self_approval", &msg);
            return Err(RunnerError::Forbidden {
                code: "self_approval",
                message: msg,
            });
        }
        self.check_reviewer(who, &current)?;
        if let Some(sha) = &req.arguments_sha256
            && !sha.eq_ignore_ascii_case(&current.arguments_sha256)
        {
            let msg = format!(
                "arguments_sha256 {sha} does not match the approval's arguments ({}); nothing was decided",
                current.arguments_sha256
            );
            self.refused(who, Some(req.id), "arguments_mismatch", &msg);
            return Err(RunnerError::Conflict {
                code: "arguments_mismatch",
                message: msg,
                approval: Box::new(current),
            });
        }
        if let Some(still_pending) = self.approve_partially(who, &current, &req)? {
            return Ok(still_pending);
        }
        if req.edited_arguments.is_some() {
            if req.verdict != Verdict::Approve {
                return Err(RunnerError::Invalid(
                    "edited arguments go with an approval, not a denial".into(),
                ));
            }
            if !current.editable {
                return Err(RunnerError::Invalid(format!(
                    "approval {} was not submitted as editable; approve or deny it as proposed",
                    current.id
                )));
            }
            if let Some(edited) = &req.edited_arguments {
                self.check_edit(&current, edited)?;
            }
        }
        let grant = match req.scope.as_deref() {
            None => None,
            Some("run") => {
                if req.verdict != Verdict::Approve || req.edited_arguments.is_some() {
                    return Err(RunnerError::Invalid(
                        "scope \"run\" goes with approving the call as proposed".into(),
                    ));
                }
                let Some(run) = current.run_id.clone() else {
                    return Err(RunnerError::Invalid(format!(
                        "approval {} belongs to no run, so there is no rest of the run to grant",
                        current.id
                    )));
                };
                Some(self.new_grant(who, &current, run))
            }
            Some(other) => {
                return Err(RunnerError::Invalid(format!(
                    "scope {other:?} is not known (use \"run\")"
                )));
            }
        };
        let now = self.now();
        let mut a = current;
        let approved_sha = match &req.edited_arguments {
            Some(edited) => domain::arguments_sha256(edited),
            None => a.arguments_sha256.clone(),
        };
        // What runs is the edit: it becomes the approval's arguments, and the call as
        // submitted stays beside it (DESIGN §9, Edits).
        if let Some(edited) = &req.edited_arguments {
            let requested = std::mem::replace(&mut a.arguments, edited.clone());
            a.requested_arguments = Some(requested);
            a.arguments_sha256 = approved_sha.clone();
        }
        if a.approvals_needed.is_some() && req.verdict == Verdict::Approve {
            a.approved_by.push(who.to_string());
        }
        a.escalates_at = None;
        a.status = match req.verdict {
            Verdict::Approve => ApprovalStatus::Approved,
            Verdict::Deny => ApprovalStatus::Denied,
        };
        a.decision = Some(Decision {
            by: who.to_string(),
            at: now,
            reason: req.reason.clone(),
            arguments_sha256: Some(approved_sha),
            arguments: req.edited_arguments,
            scope: grant.as_ref().map(|_| "run".to_string()),
        });
        self.record_with_grant(
            AuditKind::ApprovalDecided,
            who,
            Some(&a),
            json!({}),
            None,
            grant.as_ref(),
        )?;
        if let Some(g) = grant {
            self.keep_grant(g);
        }
        self.settle(&a);
        match req.verdict {
            Verdict::Approve => self.metrics.approved += 1,
            Verdict::Deny => self.metrics.denied += 1,
        }
        let secs = (now - a.created_at)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        self.metrics.decision_latency_sum += secs;
        self.metrics.decision_latency_count += 1;
        for (bound, count) in &mut self.metrics.decision_latency_buckets {
            if secs <= *bound {
                *count += 1;
            }
        }
        Ok(a)
    }

    /// Take a no-longer-pending approval out of the indexes.
    fn settle(&mut self, a: &Approval) {
        if let Some(old) = self.pending.remove(&a.id)
            && let Some(at) = old.next_deadline()
        {
            self.deadlines.remove(&(at, a.id));
        }
        self.remember(a.clone());
        self.approval_settled(a);
    }

    fn list(&self, q: ListQuery) -> Result<ApprovalPage, RunnerError> {
        let limit = q.limit.clamp(1, MAX_LIST);
        let keep = |a: &Approval| {
            q.status.is_none_or(|s| a.status == s)
                && q.queue.as_ref().is_none_or(|qq| &a.queue == qq)
                && q.requested_by.as_ref().is_none_or(|r| &a.requested_by == r)
        };
        let mut out: Vec<Approval> = Vec::new();
        let mut more = false;
        let lower = match q.after {
            Some(after) => std::ops::Bound::Excluded(after),
            None => std::ops::Bound::Unbounded,
        };
        let mut pending = self
            .pending
            .range((lower, std::ops::Bound::Unbounded))
            .map(|(_, a)| a)
            .filter(|a| keep(a))
            .peekable();
        if q.status == Some(ApprovalStatus::Pending) {
            for a in pending {
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push(a.clone());
            }
        } else {
            // Decided approvals come from the store, pending ones from memory: merge by id.
            let include_pending = q.status.is_none();
            let mut decided = self.store.approvals_after(q.after).peekable();
            loop {
                let next_decided = match decided.peek() {
                    Some(Ok(a)) => Some(a.id),
                    Some(Err(_)) => {
                        if let Some(Err(e)) = decided.next() {
                            return Err(store_err(e));
                        }
                        continue;
                    }
                    None => None,
                };
                let next_pending = if include_pending {
                    pending.peek().map(|a| a.id)
                } else {
                    None
                };
                let take_pending = match (next_pending, next_decided) {
                    (None, None) => break,
                    (Some(p), Some(d)) => p < d,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                };
                let a = if take_pending {
                    pending.next().cloned()
                } else {
                    decided.next().and_then(Result::ok)
                };
                let Some(a) = a else { break };
                if !take_pending && !keep(&a) {
                    continue;
                }
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push(a);
            }
        }
        let next = if more { out.last().map(|a| a.id) } else { None };
        Ok(ApprovalPage {
            approvals: out,
            next,
        })
    }
}

fn standing(a: &Approval) -> String {
    match &a.decision {
        Some(d) => format!(
            "approval {} is already {} (by {} at {})",
            a.id,
            a.status.as_str(),
            d.by,
            d.at.to_rfc3339()
        ),
        None => format!("approval {} is already {}", a.id, a.status.as_str()),
    }
}

fn store_err(e: StoreError) -> RunnerError {
    RunnerError::Unavailable(e.to_string())
}
