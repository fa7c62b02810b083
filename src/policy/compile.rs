//! Compiling `[[policies]]`: globs and CEL conditions checked once, every problem reported
//! with the byte offset of its key in the config text (the policy module knows spans, not
//! lines: `crate::preflight` turns offsets into lines).

use super::vars::{self, Used};
use super::{Condition, Policy, PolicySet, Rule, env, one_line, parse_message};
use crate::config::{PolicyConfig, RuleAction};
use globset::{Glob, GlobSetBuilder};
use std::collections::HashMap;

/// One problem in the policies of a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyProblem {
    /// The dotted config key, e.g. `policies[0].rules[2].when`.
    pub key: String,
    /// Byte offset in the config text of the value the problem is about.
    pub offset: usize,
    /// For a CEL error, the line within the condition (1: its first line).
    pub expr_line: usize,
    pub message: String,
}

impl std::fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl PolicySet {
    /// Compile every policy, or report every problem found, each with where it stands in the
    /// config text.
    pub fn compile(policies: &[PolicyConfig]) -> Result<PolicySet, Vec<PolicyProblem>> {
        match Self::compile_all(policies) {
            (set, problems) if problems.is_empty() => Ok(set),
            (_, problems) => Err(problems),
        }
    }

    /// Every problem, beside the set of what did compile (a condition that failed is left
    /// out): `config check` probes the rest in the same pass. Never for deciding calls.
    pub fn compile_all(policies: &[PolicyConfig]) -> (PolicySet, Vec<PolicyProblem>) {
        let env = env();
        let mut problems = Vec::new();
        let mut compiled = Vec::with_capacity(policies.len());
        let mut names: HashMap<&str, usize> = HashMap::new();

        for (i, p) in policies.iter().enumerate() {
            let name = p.name.get_ref();
            if let Some(first) = names.get(name.as_str()) {
                problems.push(PolicyProblem {
                    offset: p.name.span().start,
                    expr_line: 1,
                    key: format!("policies[{i}].name"),
                    message: format!(
                        "duplicate policy name {name:?} (first defined by policies[{first}])"
                    ),
                });
            } else {
                names.insert(name, i);
            }

            let tools = if p.tools.is_empty() {
                None
            } else {
                let mut set = GlobSetBuilder::new();
                for (k, glob) in p.tools.iter().enumerate() {
                    match Glob::new(glob.get_ref()) {
                        Ok(g) => {
                            set.add(g);
                        }
                        Err(e) => problems.push(PolicyProblem {
                            offset: glob.span().start,
                            expr_line: 1,
                            key: format!("policies[{i}].tools[{k}]"),
                            message: format!("invalid glob: {}", one_line(&e.to_string(), 300)),
                        }),
                    }
                }
                match set.build() {
                    Ok(set) => Some(set),
                    Err(e) => {
                        problems.push(PolicyProblem {
                            offset: p.name.span().start,
                            expr_line: 1,
                            key: format!("policies[{i}].tools"),
                            message: format!("invalid globs: {}", one_line(&e.to_string(), 300)),
                        });
                        None
                    }
                }
            };

            let mut rules = Vec::with_capacity(p.rules.len());
            let mut used = Used::default();
            for (j, r) in p.rules.iter().enumerate() {
                let action = *r.action.get_ref();
                if r.max_per_hour.is_some() && action != RuleAction::Approve {
                    problems.push(PolicyProblem {
                        offset: r.action.span().start,
                        expr_line: 1,
                        key: format!("policies[{i}].rules[{j}].max_per_hour"),
                        message: "max_per_hour only applies to rules with action = \"approve\""
                            .into(),
                    });
                }
                let when = match &r.when {
                    None => None,
                    Some(src) if src.get_ref().trim().is_empty() => {
                        problems.push(PolicyProblem {
                            offset: src.span().start,
                            expr_line: 1,
                            key: format!("policies[{i}].rules[{j}].when"),
                            message:
                                "empty condition: leave `when` out for a rule that always matches"
                                    .into(),
                        });
                        None
                    }
                    Some(src) => match env.compile(src.get_ref()) {
                        Ok(program) => {
                            if let Some(unknown) = vars::unknown(&program) {
                                problems.push(PolicyProblem {
                                offset: src.span().start,
                                expr_line: 1,
                                key: format!("policies[{i}].rules[{j}].when"),
                                message: format!(
                                    "unknown variable {unknown:?} (known: {}; the call's arguments are args.NAME)",
                                    vars::NAMES.join(", ")
                                ),
                            });
                            }
                            used = used.union(Used::of(&program));
                            Some(Condition {
                                program,
                                shown: one_line(src.get_ref(), 120),
                                key: format!("policies[{i}].rules[{j}].when"),
                                offset: src.span().start,
                            })
                        }
                        Err(e) => {
                            problems.push(PolicyProblem {
                                offset: src.span().start,
                                expr_line: e.errors.first().map_or(1, |e| e.pos.0.max(1) as usize),
                                key: format!("policies[{i}].rules[{j}].when"),
                                message: format!("invalid CEL: {}", parse_message(&e)),
                            });
                            None
                        }
                    },
                };
                rules.push(Rule {
                    when,
                    action,
                    reason: r.reason.clone(),
                    queue: r.queue.clone(),
                    timeout: r.timeout,
                    max_per_hour: r.max_per_hour,
                    // The config checker refuses values below 2 and above u32; a bad value
                    // that got here anyway means one approval, never none.
                    approvals: r
                        .approvals
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n >= 2),
                });
            }

            compiled.push(Policy {
                name: name.clone(),
                tools,
                rules,
                used,
            });
        }

        (
            PolicySet {
                env,
                policies: compiled,
            },
            problems,
        )
    }
}
