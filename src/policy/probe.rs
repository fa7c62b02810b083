//! Conditions tried before anything is decided by them: `config check` runs every `when`
//! once per tool the policy covers, on arguments shaped like that tool's `parameters`, and
//! reports the ones that cannot work — a type mismatch (`args.amount < "50"`) or a result that
//! is not a bool (`args.amount + 1`). At run time such a rule would only ever ask.

use super::{CallContext, IdentityFacts, PolicyProblem, PolicySet, ToolAnnotations, vars};
use cel::ExecutionError;
use serde_json::{Map, Value, json};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Arguments shaped like a JSON schema's `properties`: one value of each declared type.
pub fn sample_arguments(schema: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            let v = match p.get("type").and_then(Value::as_str) {
                Some("number") => json!(1.5),
                Some("integer") => json!(1),
                Some("string") => json!("s"),
                Some("boolean") => json!(true),
                Some("array") => json!([]),
                Some("object") => Value::Object(sample_arguments(p)),
                // Untyped or a type union: nothing to check it against.
                _ => continue,
            };
            out.insert(name.clone(), v);
        }
    }
    out
}

/// A call of a configured tool, for [`PolicySet::probe`].
pub struct SampleCall {
    pub tool: String,
    /// The policy the tool's `needs_approval` names, if it names one.
    pub policy: Option<String>,
    pub arguments: Map<String, Value>,
}

impl PolicySet {
    /// Try every condition on sample calls of the `tools` each policy covers (by its globs, or
    /// because the tool's `needs_approval` names it); with none, on a call whose arguments are
    /// unknown. Missing keys are not problems (a call may lack them); type mismatches and
    /// non-bool results are.
    pub fn probe(&self, tools: &[SampleCall]) -> Vec<PolicyProblem> {
        let mut problems = Vec::new();
        let now = crate::domain::now();
        let run = json!({"id": "run", "agent": "agent", "turns": 1, "started_by": "identity"});
        let roles = ["agent".to_string()];
        let context = std::collections::BTreeMap::new();
        for policy in &self.policies {
            let mut calls: Vec<(&str, &Map<String, Value>)> = tools
                .iter()
                .filter(|t| match &t.policy {
                    Some(named) => *named == policy.name,
                    None => policy.covers(&t.tool),
                })
                .map(|t| (t.tool.as_str(), &t.arguments))
                .collect();
            let unknown = Map::new();
            if calls.is_empty() {
                calls.push(("tool", &unknown));
            }
            for rule in &policy.rules {
                let Some(cond) = &rule.when else { continue };
                for &(tool, args) in &calls {
                    let call = CallContext {
                        tool,
                        server: Some("server"),
                        args,
                        agent: Some("agent"),
                        run: Some(&run),
                        annotations: ToolAnnotations::default(),
                        policy: None,
                        identity: IdentityFacts {
                            name: "identity",
                            roles: &roles,
                        },
                        context: Some(&context),
                    };
                    let mut ctx = cel::Context::with_env(self.env.clone());
                    if vars::bind(&mut ctx, policy.used, &call, now).is_err() {
                        continue;
                    }
                    let result = catch_unwind(AssertUnwindSafe(|| cond.program.execute(&ctx)));
                    let message = match result {
                        Ok(Ok(cel::Value::Bool(_))) => continue,
                        Ok(Ok(other)) => format!(
                            "the condition gives {}, not a bool (true or false)",
                            other.type_of()
                        ),
                        Ok(Err(e)) if is_type_error(&e) => format!(
                            "type error for tool {tool:?}: {} (checked against its parameters)",
                            super::one_line(&e.to_string(), 200)
                        ),
                        Ok(Err(_)) | Err(_) => continue,
                    };
                    problems.push(PolicyProblem {
                        key: cond.key.clone(),
                        offset: cond.offset,
                        expr_line: 1,
                        message,
                    });
                    // One problem per condition is enough to point at it.
                    break;
                }
            }
        }
        problems
    }
}

fn is_type_error(e: &ExecutionError) -> bool {
    matches!(
        e,
        ExecutionError::NoSuchOverload(_)
            | ExecutionError::ValuesNotComparable(..)
            | ExecutionError::UnsupportedBinaryOperator(..)
            | ExecutionError::UnexpectedType { .. }
            | ExecutionError::UnsupportedTargetType { .. }
    )
}
