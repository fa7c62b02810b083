//! Policies: rules with CEL conditions that approve, deny or ask for a proposed tool call.
//!
//! INTERFACE (owned by the policy helper; the runner depends on exactly this):
//! - `PolicySet::compile(&[PolicyConfig]) -> Result<PolicySet, Vec<ConfigProblem>>`
//! - `PolicySet::evaluate(&self, &CallContext, now, &RateLimits) -> PolicyOutcome`
//! - `RateLimits::record(&PolicyRef-ish key, at)` after an auto-approval is committed.

use crate::config::{ConfigProblem, PolicyConfig, RuleAction};
use crate::domain::{PolicyRef, Timestamp};
use serde_json::{Map, Value};
use std::time::Duration;

/// What a policy decided for one proposed call.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyOutcome {
    pub action: RuleAction,
    pub policy: PolicyRef,
    /// Queue named by the rule, if any.
    pub queue: Option<String>,
    /// Timeout named by the rule, if any.
    pub timeout: Option<Duration>,
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

pub struct PolicySet {}

impl PolicySet {
    pub fn compile(_policies: &[PolicyConfig]) -> Result<PolicySet, Vec<ConfigProblem>> {
        Ok(PolicySet {})
    }

    pub fn evaluate(
        &self,
        call: &CallContext<'_>,
        _now: Timestamp,
        _limits: &RateLimits,
    ) -> PolicyOutcome {
        PolicyOutcome {
            action: RuleAction::Ask,
            policy: PolicyRef {
                name: None,
                rule: None,
                reason: format!("no policy covers tool {:?}; asking", call.tool),
            },
            queue: None,
            timeout: None,
        }
    }
}

/// Sliding one-hour windows of auto-approvals per (policy, rule).
#[derive(Default, Debug)]
pub struct RateLimits {}

impl RateLimits {
    pub fn record(&mut self, _policy: &str, _rule: usize, _at: Timestamp) {}
}
