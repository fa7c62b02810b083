//! Policy replay (DESIGN §13): every request recorded in the audit log, decided again under
//! another config's policies, to see what a change would do before it is made. Pure: records
//! in, a report out; nothing is written anywhere.
//!
//! A request is an `approval.created` record (the policy asked a reviewer) or an
//! `approval.decided` record made at the moment of submission by a policy (`policy:NAME`) or a
//! sticky grant (`grant:…`: the policy had asked). Re-asks after a restart (`outcome_unknown`)
//! are not requests. Calls of gatehouse's own runs are gated as the runner rc them (the
//! tool's `needs_approval`, the MCP server's `approval`); other submissions are matched to
//! policies by tool name. `now` is each request's own time, and `max_per_hour` limits are
//! replayed in order.

use super::{CallContext, IdentityFacts, PolicyOutcome, PolicySet, RateLimits, ToolAnnotations};
use crate::agent::{Gate, ToolRef, gate};
use crate::config::{Config, McpServerConfig, RuleAction};
use crate::domain::{Approval, AuditKind, AuditRecord, PolicyRef, Timestamp};
use crate::tools::Tools;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// What became of a request before any human looked at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    AutoApproved,
    AutoDenied,
    Ask,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AutoApproved => "auto-approved",
            Self::AutoDenied => "auto-denied",
            Self::Ask => "ask",
        }
    }

    fn of(action: RuleAction) -> Outcome {
        match action {
            RuleAction::Approve => Self::AutoApproved,
            RuleAction::Deny => Self::AutoDenied,
            RuleAction::Ask => Self::Ask,
        }
    }
}

/// One request whose outcome would change.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub approval_id: Uuid,
    pub at: Timestamp,
    pub tool: String,
    pub server: Option<String>,
    pub agent: Option<String>,
    pub requested_by: String,
    pub arguments: Map<String, Value>,
    pub before: Outcome,
    pub after: Outcome,
    /// The rule of the new config that decided (or why it asks).
    pub policy: PolicyRef,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Requests replayed (those in the window).
    pub requests: usize,
    /// `before → after` with how many requests went that way, unchanged ones included.
    pub counts: BTreeMap<String, usize>,
    pub changes: Vec<Change>,
}

/// What of a config decides besides its policies: how its own runs' calls are gated (tools,
/// MCP servers) and the roles its identities hold (CEL `identity`).
pub struct ReplayConfig {
    tools: Tools,
    mcp: BTreeMap<String, McpServerConfig>,
    roles: BTreeMap<String, Vec<String>>,
}

impl ReplayConfig {
    pub fn from_config(cfg: &Config) -> Result<ReplayConfig, String> {
        Ok(ReplayConfig {
            tools: Tools::from_config(&cfg.tools)?,
            mcp: cfg
                .mcp_servers
                .iter()
                .map(|s| (s.name.get_ref().clone(), s.clone()))
                .collect(),
            roles: cfg.roles_by_identity(),
        })
    }
}

/// Replay `records` (the whole log, in order) under `policies`, counting the requests made at
/// or after `since`.
pub fn replay(
    records: &[AuditRecord],
    policies: &PolicySet,
    rc: &ReplayConfig,
    since: Option<Timestamp>,
) -> Report {
    let mut report = Report::default();
    let mut limits = RateLimits::default();
    // Run ids gatehouse drove itself: their calls are gated as the runner rc them.
    let mut own_runs: BTreeSet<&str> = BTreeSet::new();
    for rec in records {
        if rec.kind == AuditKind::RunStarted
            && let Some(run) = rec.run_id.as_deref()
        {
            own_runs.insert(run);
        }
        let Some((approval, before)) = request(rec) else {
            continue;
        };
        let own = approval
            .run_id
            .as_deref()
            .is_some_and(|r| own_runs.contains(r));
        let at = approval.created_at;
        let outcome = decide(&approval, own, policies, rc, at, &limits);
        let after = Outcome::of(outcome.action);
        if after == Outcome::AutoApproved
            && let (Some(name), Some(rule)) = (&outcome.policy.name, outcome.policy.rule)
        {
            limits.record(name, rule, at);
        }
        if since.is_some_and(|s| at < s) {
            continue;
        }
        report.requests += 1;
        *report
            .counts
            .entry(format!("{} → {}", before.as_str(), after.as_str()))
            .or_default() += 1;
        if before != after {
            report.changes.push(Change {
                approval_id: approval.id,
                at,
                server: approval.server.clone(),
                agent: approval.agent.clone(),
                requested_by: approval.requested_by.clone(),
                arguments: submitted_arguments(&approval).clone(),
                tool: approval.tool,
                before,
                after,
                policy: outcome.policy,
            });
        }
    }
    report
}

/// The request a record stands for, with what its policy said then.
fn request(rec: &AuditRecord) -> Option<(Approval, Outcome)> {
    let a = rec.approval()?;
    if a.outcome_unknown {
        return None;
    }
    match rec.kind {
        AuditKind::ApprovalCreated => Some((a, Outcome::Ask)),
        AuditKind::ApprovalDecided => {
            let d = a.decision.as_ref()?;
            // Decided by a reviewer later: its creation was the request.
            if d.at != a.created_at {
                return None;
            }
            let before = if d.by.starts_with("grant:") {
                Outcome::Ask
            } else if d.by.starts_with("policy:") {
                match a.status {
                    crate::domain::ApprovalStatus::Approved => Outcome::AutoApproved,
                    _ => Outcome::AutoDenied,
                }
            } else {
                return None;
            };
            Some((a, before))
        }
        _ => None,
    }
}

/// The arguments as submitted (a reviewer's edit came after the policy).
fn submitted_arguments(a: &Approval) -> &Map<String, Value> {
    a.requested_arguments.as_ref().unwrap_or(&a.arguments)
}

fn decide(
    a: &Approval,
    own_run: bool,
    policies: &PolicySet,
    rc: &ReplayConfig,
    at: Timestamp,
    limits: &RateLimits,
) -> PolicyOutcome {
    let args = submitted_arguments(a);
    // Only verified claims reach a policy (DESIGN §9).
    let agent = a.agent.as_deref().filter(|_| a.agent_verified);
    let server = a.server.as_deref().filter(|_| a.server_verified);
    let mut call = CallContext {
        tool: &a.tool,
        server,
        args,
        agent,
        run: None,
        annotations: ToolAnnotations::default(),
        policy: None,
        identity: IdentityFacts {
            name: &a.requested_by,
            roles: rc.roles.get(&a.requested_by).map_or(&[], Vec::as_slice),
        },
        context: a.context.as_ref(),
    };
    if !own_run {
        return policies.evaluate(&call, at, limits);
    }
    let target = match &a.server {
        Some(s) => ToolRef::Mcp {
            server: s.clone(),
            tool: a.tool.clone(),
        },
        None => ToolRef::Local(a.tool.clone()),
    };
    let run_var = json!({
        "id": a.run_id,
        "agent": a.agent,
        "started_by": a.requested_by,
    });
    match gate(&rc.tools, &rc.mcp, &target) {
        Gate::Approve(why) => PolicyOutcome::approve(why),
        Gate::Ask(why) => PolicyOutcome::ask(why),
        Gate::Policy(name) => {
            call.run = Some(&run_var);
            call.policy = Some(&name);
            policies.evaluate(&call, at, limits)
        }
    }
}
