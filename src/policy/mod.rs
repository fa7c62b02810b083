//! Policies: rules with CEL conditions that approve, deny or ask for a proposed tool call.
//!
//! INTERFACE (the runner and the config checker depend on exactly this):
//! - `PolicySet::compile(&[PolicyConfig]) -> Result<PolicySet, Vec<PolicyProblem>>` (problems
//!   carry the byte offset of the key in the config text; `crate::preflight` makes lines)
//! - `PolicySet::evaluate(&self, &CallContext, now, &RateLimits) -> PolicyOutcome`
//! - `RateLimits::record(policy, rule, at)` after an auto-approval by that rule is committed
//!   (recording every auto-approval is fine: only rules with `max_per_hour` look at the counts).
//!
//! # Choosing the policy
//! `call.policy` names it directly (`needs_approval = "POLICY"`); otherwise the first policy
//! whose `tools` globs match the tool name applies (no globs: every tool). No policy: ask.
//!
//! # Rules
//! Tried in order; a rule without `when` always matches; the first match decides. A `when`
//! that fails to evaluate, or gives anything but a bool, stops the policy and asks: an error
//! never approves or denies. No rule matched: ask. `max_per_hour` on an approve rule asks
//! once that rule auto-approved that many calls in the hour before `now`. `approvals = N` on a
//! rule that asks (or may ask) puts a two-person rule on the approval it creates.
//!
//! # CEL variables
//! - `tool`: map `{name: string, read_only: bool, destructive: bool, idempotent: bool,
//!   open_world: bool}` (annotations as the caller trusted them).
//! - `tool_name`: string, the same as `tool.name`.
//! - `server`: string (MCP server name) or null.
//! - `args`: map, the call's arguments. JSON numbers become `int` when integral and within
//!   i64 (also `30.0`), `double` otherwise; comparisons mix the two (`args.amount < 50` holds
//!   for 30 and 30.5), arithmetic does not (`args.amount * 1.5` fails for an int: write
//!   `double(args.amount) * 1.5`). Nested more than 64 levels deep, a call's conditions ask.
//! - `agent`: string, or null when absent or only claimed: a submission's `agent` is seen
//!   only when verified (the identity may claim it, or gatehouse drives the run). Likewise
//!   `server`.
//! - `identity`: map `{name: string, roles: list of strings}`, the authenticated submitter
//!   (for runs, the identity that started the run): the one fact that is never a claim.
//! - `context`: map of strings (hooks: `host`, `cwd`, `session`, …; MCP: `client`), `{}` when
//!   absent. Supplied by the submitter: a claim, like everything but `identity`.
//! - `run`: the run as JSON converted like `args` (a map), or null.
//! - `now`: timestamp (UTC): `now.getHours()`, `now.getHours('Europe/Berlin')`,
//!   `now.getDayOfWeek()` (0 = Sunday), `now > timestamp('2025-01-01T00:00:00Z')`.
//!
//! The standard library plus the `strings`, `lists` and `math` extensions are available.

mod compile;
pub mod probe;
mod rate;
pub mod replay;
mod vars;

#[cfg(test)]
mod tests;

pub use compile::PolicyProblem;
pub use rate::RateLimits;

use crate::config::RuleAction;
use crate::domain::{PolicyRef, Timestamp};
use globset::GlobSet;
use serde_json::{Map, Value};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use vars::Used;

/// What a policy decided for one proposed call.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyOutcome {
    pub action: RuleAction,
    pub policy: PolicyRef,
    /// Queue named by the rule, if any.
    pub queue: Option<String>,
    /// Timeout named by the rule, if any.
    pub timeout: Option<Duration>,
    /// Distinct reviewers who must approve when the rule asks (`approvals = N`, N ≥ 2).
    pub approvals: Option<u32>,
}

impl PolicyOutcome {
    /// Ask a reviewer, for `reason`, with no policy involved.
    pub fn ask(reason: String) -> PolicyOutcome {
        ask(None, None, reason)
    }

    /// Approve, for `reason`, with no policy involved (`needs_approval = false`).
    pub fn approve(reason: String) -> PolicyOutcome {
        PolicyOutcome {
            action: RuleAction::Approve,
            ..ask(None, None, reason)
        }
    }
}

/// Everything a rule's `when` may look at.
#[derive(Clone, Debug)]
pub struct CallContext<'a> {
    pub tool: &'a str,
    pub server: Option<&'a str>,
    pub args: &'a Map<String, Value>,
    pub agent: Option<&'a str>,
    pub run: Option<&'a Value>,
    /// MCP annotations, already reduced to trusted values (pessimistic defaults otherwise).
    pub annotations: ToolAnnotations,
    /// `needs_approval = "POLICY"` names the policy directly; otherwise policies are matched by tool glob.
    pub policy: Option<&'a str>,
    /// The authenticated submitter.
    pub identity: IdentityFacts<'a>,
    pub context: Option<&'a std::collections::BTreeMap<String, String>>,
}

/// Who submitted a call, as authenticated (never a claim).
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityFacts<'a> {
    pub name: &'a str,
    pub roles: &'a [String],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToolAnnotations {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

impl Default for ToolAnnotations {
    /// The MCP spec's pessimistic defaults.
    fn default() -> Self {
        Self {
            read_only: false,
            destructive: true,
            idempotent: false,
            open_world: true,
        }
    }
}

/// The compiled `[[policies]]` of a config.
pub struct PolicySet {
    env: Arc<cel::Env>,
    policies: Vec<Policy>,
}

struct Policy {
    name: String,
    /// `None`: covers every tool.
    tools: Option<GlobSet>,
    rules: Vec<Rule>,
    /// Variables any of the rules refers to: only those are built per call.
    used: Used,
}

struct Rule {
    when: Option<Condition>,
    action: RuleAction,
    reason: Option<String>,
    queue: Option<String>,
    timeout: Option<Duration>,
    max_per_hour: Option<u32>,
    approvals: Option<u32>,
}

struct Condition {
    program: cel::Program,
    /// The source on one line, shortened, for reasons shown to reviewers.
    shown: String,
    /// Where it is written (`policies[i].rules[j].when`, and its byte offset), for problems
    /// found after compiling ([`PolicySet::probe`]).
    key: String,
    offset: usize,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.policies.iter().map(|p| &p.name))
            .finish()
    }
}

/// The CEL environment every rule compiles and runs in; built once per process.
fn env() -> Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        // Declaring the bundled extensions on a fresh stdlib cannot conflict.
        for ext in [
            cel::extensions::strings as fn(&mut cel::Env) -> _,
            cel::extensions::lists,
            cel::extensions::math,
        ] {
            env.add_extension(ext).expect("cel extension");
        }
        Arc::new(env)
    })
    .clone()
}

impl PolicySet {
    /// No policies: every call asks.
    pub fn empty() -> PolicySet {
        PolicySet {
            env: env(),
            policies: Vec::new(),
        }
    }

    /// Decide one proposed call. Never fails: anything unexpected asks.
    pub fn evaluate(
        &self,
        call: &CallContext<'_>,
        now: Timestamp,
        limits: &RateLimits,
    ) -> PolicyOutcome {
        let policy = match call.policy {
            Some(name) => match self.policies.iter().find(|p| p.name == name) {
                Some(p) => p,
                None => {
                    return ask(
                        None,
                        None,
                        format!("policy {name:?} does not exist; asking"),
                    );
                }
            },
            None => match self.policies.iter().find(|p| p.covers(call.tool)) {
                Some(p) => p,
                None => {
                    return ask(
                        None,
                        None,
                        format!("no policy covers tool {:?}; asking", call.tool),
                    );
                }
            },
        };
        policy.evaluate(&self.env, call, now, limits)
    }

    /// Whether a `max_per_hour` rule may count a call of `tool` (so its outcome depends on
    /// auto-approvals made elsewhere, e.g. by another daemon on a shared store).
    pub fn counts_rate(&self, tool: &str) -> bool {
        self.policies
            .iter()
            .any(|p| p.covers(tool) && p.rules.iter().any(|r| r.max_per_hour.is_some()))
    }
}

impl Policy {
    fn covers(&self, tool: &str) -> bool {
        self.tools.as_ref().is_none_or(|set| set.is_match(tool))
    }

    fn evaluate(
        &self,
        env: &Arc<cel::Env>,
        call: &CallContext<'_>,
        now: Timestamp,
        limits: &RateLimits,
    ) -> PolicyOutcome {
        let name = &self.name;
        // Built at the first rule with a condition, then shared by the rest.
        let mut ctx: Option<Result<cel::Context<'_, '_>, String>> = None;

        for (i, rule) in self.rules.iter().enumerate() {
            let n = i + 1;
            let why = match &rule.when {
                None => format!("rule {n} matched (always)"),
                Some(cond) => {
                    let ctx = ctx.get_or_insert_with(|| {
                        let mut c = cel::Context::with_env(env.clone());
                        vars::bind(&mut c, self.used, call, now).map(|()| c)
                    });
                    let result = match ctx {
                        Ok(ctx) => run(&cond.program, ctx),
                        Err(e) => Err(e.clone()),
                    };
                    match result {
                        Ok(true) => format!("rule {n} matched ({})", cond.shown),
                        Ok(false) => continue,
                        Err(e) => {
                            return ask(
                                Some(name),
                                Some(n),
                                format!("rule {n} failed to evaluate: {e}; asking"),
                            );
                        }
                    }
                }
            };
            let with_reason = |why: String| match &rule.reason {
                Some(r) if !r.trim().is_empty() => format!("{why}: {}", r.trim()),
                _ => why,
            };
            let (action, reason) = match rule.action {
                RuleAction::Approve => match rule.max_per_hour {
                    Some(max) if limits.count(name, n, now) >= max as usize => (
                        RuleAction::Ask,
                        format!(
                            "rule {n} auto-approves at most {max} per hour; limit reached, asking"
                        ),
                    ),
                    _ => (RuleAction::Approve, with_reason(why)),
                },
                RuleAction::Deny => (
                    RuleAction::Deny,
                    match &rule.reason {
                        Some(r) if !r.trim().is_empty() => r.trim().to_string(),
                        _ => format!("denied by policy {name} rule {n}"),
                    },
                ),
                RuleAction::Ask => (RuleAction::Ask, with_reason(why)),
            };
            return PolicyOutcome {
                action,
                policy: PolicyRef {
                    name: Some(name.clone()),
                    rule: Some(n),
                    reason,
                },
                queue: rule.queue.clone(),
                timeout: rule.timeout,
                // Only an asking outcome waits for reviewers; the quorum is theirs.
                approvals: rule.approvals.filter(|_| action == RuleAction::Ask),
            };
        }
        ask(
            Some(name),
            None,
            format!("no rule of policy {name} matched; asking"),
        )
    }
}

/// Run one condition: `Ok(bool)`, or why it could not decide.
fn run(program: &cel::Program, ctx: &cel::Context<'_, '_>) -> Result<bool, String> {
    // The interpreter is third-party code: a panic in it asks rather than taking the runner down.
    match catch_unwind(AssertUnwindSafe(|| program.execute(ctx))) {
        Ok(Ok(cel::Value::Bool(b))) => Ok(b),
        Ok(Ok(other)) => Err(format!("result is {}, not bool", other.type_of())),
        Ok(Err(e)) => Err(one_line(&e.to_string(), 200)),
        Err(_) => Err("the CEL interpreter panicked".into()),
    }
}

fn ask(policy: Option<&str>, rule: Option<usize>, reason: String) -> PolicyOutcome {
    PolicyOutcome {
        action: RuleAction::Ask,
        policy: PolicyRef {
            name: policy.map(str::to_owned),
            rule,
            reason,
        },
        queue: None,
        timeout: None,
        approvals: None,
    }
}

/// `s` with runs of whitespace collapsed to one space, cut to `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max + 3));
    for (count, word) in s.split_whitespace().enumerate() {
        if count > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > max {
        let cut: String = out.chars().take(max.saturating_sub(1)).collect();
        return format!("{cut}…");
    }
    out
}

/// A CEL parse failure on one line: `line L, column C: message`, for each error.
fn parse_message(e: &cel::ParseErrors) -> String {
    let parts: Vec<String> = e
        .errors
        .iter()
        .take(3)
        .map(|e| {
            let (l, c) = e.pos;
            let msg = one_line(&e.msg, 200);
            // Both 1-based.
            if l > 0 && c > 0 {
                format!("line {l}, column {c}: {msg}")
            } else {
                msg
            }
        })
        .collect();
    if parts.is_empty() {
        one_line(&e.to_string(), 300)
    } else {
        parts.join("; ")
    }
}
