//! An offline model (`kind = "scripted"`) for the demo and for users without a key.
//!
//! Its answer is a pure function of the conversation since the last user message, so a run
//! that is resumed after a restart (and asks again) gets the same answer, and tests can
//! predict every step.
//!
//! Scripts:
//! - `customer_service` (built in, the default): the seed's CustomerServiceAgent. An input
//!   naming an order (`ORD-…`) is looked up with `get_order_details`; when it also asks for a
//!   refund, `issue_refund` follows with the order's total and a reason. An input asking to
//!   delete a user (`U-…`) calls `delete_user_account`. Each gated call carries reasoning text.
//!   After the results (a denial included) it answers with what happened.
//! - `ScriptedModel::steps`: a fixed list of completions, one per model turn, for tests.

use super::{Completion, Message, ToolCall, ToolSpec};
use serde_json::{Map, Value, json};

/// Names accepted for `script = "…"`.
pub const SCRIPTS: &[&str] = &["customer_service"];
pub(super) const DEFAULT_SCRIPT: &str = "customer_service";

/// A refused call's tool result starts with one of these (the runner's wording for a
/// reviewer's denial, a policy's, a timeout and a cancellation).
const DENIALS: &[&str] = &[
    "The reviewer denied this action:",
    "The policy denied this action:",
    "No reviewer decided in time, so this action was not taken:",
    "This action was cancelled:",
];

#[derive(Clone, Debug)]
pub struct ScriptedModel {
    script: Script,
}

#[derive(Clone, Debug)]
enum Script {
    CustomerService,
    Steps(Vec<Completion>),
}

impl ScriptedModel {
    /// A built-in script by name (see `SCRIPTS`).
    pub fn builtin(name: &str) -> Result<ScriptedModel, String> {
        match name {
            "customer_service" => Ok(ScriptedModel::customer_service()),
            other => Err(format!(
                "unknown script {other:?} (built in: {})",
                SCRIPTS.join(", ")
            )),
        }
    }

    pub fn customer_service() -> ScriptedModel {
        ScriptedModel {
            script: Script::CustomerService,
        }
    }

    /// A fixed script: the n-th model turn since the last user message gets `steps[n]`;
    /// past the end the model answers "Done." with no tool calls.
    pub fn steps(steps: Vec<Completion>) -> ScriptedModel {
        ScriptedModel {
            script: Script::Steps(steps),
        }
    }

    pub fn complete(&self, messages: &[Message], tools: &[ToolSpec]) -> Completion {
        match &self.script {
            Script::Steps(steps) => {
                let turn = Conversation::read(messages).turn;
                steps.get(turn).cloned().unwrap_or_else(|| say("Done."))
            }
            Script::CustomerService => customer_service(messages, tools),
        }
    }
}

/// The conversation since the last user message.
struct Conversation<'a> {
    input: &'a str,
    /// Model turns so far since the input.
    turn: usize,
    /// Model turns in the whole conversation (for unique call ids).
    all_turns: usize,
    /// Each tool call since the input, with its result when there is one.
    calls: Vec<(&'a ToolCall, Option<&'a str>)>,
}

impl<'a> Conversation<'a> {
    fn read(messages: &'a [Message]) -> Conversation<'a> {
        let start = messages
            .iter()
            .rposition(|m| matches!(m, Message::User { .. }));
        let input = match start.map(|i| &messages[i]) {
            Some(Message::User { content }) => content.as_str(),
            _ => "",
        };
        let all_turns = messages
            .iter()
            .filter(|m| matches!(m, Message::Assistant { .. }))
            .count();
        let mut conv = Conversation {
            input,
            turn: 0,
            all_turns,
            calls: Vec::new(),
        };
        for m in &messages[start.map_or(0, |i| i + 1)..] {
            match m {
                Message::Assistant { tool_calls, .. } => {
                    conv.turn += 1;
                    conv.calls.extend(tool_calls.iter().map(|c| (c, None)));
                }
                Message::Tool {
                    tool_call_id,
                    content,
                } => {
                    if let Some(slot) = conv
                        .calls
                        .iter_mut()
                        .rev()
                        .find(|(c, _)| &c.id == tool_call_id)
                    {
                        slot.1 = Some(content.as_str());
                    }
                }
                _ => {}
            }
        }
        conv
    }

    /// The latest call of `tool` whose argument `key` is `value`, and its result.
    fn call(&self, tool: &str, key: &str, value: &str) -> Option<Option<&'a str>> {
        self.calls
            .iter()
            .rev()
            .find(|(c, _)| {
                c.name == tool
                    && serde_json::from_str::<Value>(&c.arguments)
                        .ok()
                        .is_some_and(|a| a.get(key).and_then(Value::as_str) == Some(value))
            })
            .map(|(_, result)| *result)
    }

    fn call_id(&self) -> String {
        format!("call_{}_0", self.all_turns + 1)
    }
}

/// How a tool call came out, as read from its result text.
enum Outcome<'a> {
    Ok(Map<String, Value>),
    Denied(&'a str),
    Failed(&'a str),
}

fn outcome(result: Option<&str>) -> Outcome<'_> {
    let Some(text) = result else {
        return Outcome::Failed("no result came back");
    };
    if let Some((at, prefix)) = DENIALS.iter().find_map(|p| text.find(p).map(|at| (at, p))) {
        let reason = text[at + prefix.len()..].trim();
        return Outcome::Denied(if reason.is_empty() {
            "no reason given"
        } else {
            reason
        });
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Outcome::Ok(map),
        _ => {
            let text = text.trim();
            // However the runner marks a failed call ("Error: …"), say it once.
            let bare = ["Error:", "error:", "ERROR:"]
                .iter()
                .find_map(|p| text.strip_prefix(p))
                .unwrap_or(text);
            Outcome::Failed(bare.trim())
        }
    }
}

fn customer_service(messages: &[Message], tools: &[ToolSpec]) -> Completion {
    let conv = Conversation::read(messages);
    let lower = conv.input.to_lowercase();
    let order = find_id(conv.input, "ORD-");
    let user = find_id(conv.input, "U-");
    let wants_delete = lower.contains("delete") || lower.contains("remove");
    let wants_refund = lower.contains("refund") || lower.contains("money back");
    let has = |name: &str| tools.iter().any(|t| t.name == name);

    if let (true, Some(user)) = (wants_delete, &user) {
        return delete_account(&conv, user, &has);
    }
    if let Some(order) = &order {
        return order_flow(&conv, order, wants_refund, &has);
    }
    if wants_refund {
        return say(
            "I can help with a refund. Which order is it? Please tell me the order id (ORD-…).",
        );
    }
    if wants_delete {
        return say("To delete an account I need the user id (U-…). Which account is it?");
    }
    say(
        "I can look up orders, issue refunds and delete accounts. Tell me the order id (ORD-…) or the user id (U-…).",
    )
}

fn order_flow(
    conv: &Conversation<'_>,
    order: &str,
    wants_refund: bool,
    has: &dyn Fn(&str) -> bool,
) -> Completion {
    let details = match conv.call("get_order_details", "order_id", order) {
        None if !has("get_order_details") => {
            return say(&format!(
                "I can't look up order {order}: the get_order_details tool isn't available to me."
            ));
        }
        None => {
            return call(
                conv,
                format!("Looking up order {order} before doing anything else."),
                "get_order_details",
                json!({ "order_id": order }),
            );
        }
        Some(result) => match outcome(result) {
            Outcome::Ok(details) => details,
            Outcome::Denied(reason) => {
                return say(&format!(
                    "I couldn't look up order {order}: the reviewer denied it ({reason})."
                ));
            }
            Outcome::Failed(e) => {
                return say(&format!("I couldn't look up order {order}: {e}"));
            }
        },
    };
    let status = details
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let Some(total) = details.get("total").filter(|t| t.is_number()) else {
        return say(&format!(
            "Order {order} is {status}, but I couldn't read its total, so I can't act on it."
        ));
    };
    let amount = money(total);
    if !wants_refund {
        let items: Vec<&str> = details
            .get("items")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let items = if items.is_empty() {
            String::new()
        } else {
            format!(", items: {}", items.join(", "))
        };
        return say(&format!("Order {order}: {status}, total {amount}{items}."));
    }
    match conv.call("issue_refund", "order_id", order) {
        None if !has("issue_refund") => say(&format!(
            "Order {order} totals {amount}, but I can't issue refunds: the issue_refund tool isn't available to me."
        )),
        None => {
            let reason = reason(conv.input, "customer requested a refund");
            call(
                conv,
                format!(
                    "Order {order} is {status} and totals {amount}. The customer asked for a refund ({reason}), so I am issuing a full refund of {amount} to the original payment method."
                ),
                "issue_refund",
                json!({ "order_id": order, "amount": total, "reason": reason }),
            )
        }
        Some(result) => match outcome(result) {
            Outcome::Ok(_) => say(&format!(
                "I've issued a refund of {amount} for order {order}. It will be returned to the original payment method."
            )),
            Outcome::Denied(reason) => say(&format!(
                "I'm sorry, I couldn't refund order {order}: the refund of {amount} was denied by a reviewer ({reason}). Nothing has been charged back; please contact support if you'd like to discuss it."
            )),
            Outcome::Failed(e) => say(&format!(
                "The refund of {amount} for order {order} could not be issued: {e}"
            )),
        },
    }
}

fn delete_account(conv: &Conversation<'_>, user: &str, has: &dyn Fn(&str) -> bool) -> Completion {
    match conv.call("delete_user_account", "user_id", user) {
        None if !has("delete_user_account") => say(&format!(
            "I can't delete account {user}: the delete_user_account tool isn't available to me."
        )),
        None => {
            let reason = reason(conv.input, "customer requested account deletion");
            call(
                conv,
                format!(
                    "The customer asked for account {user} to be deleted ({reason}). Deletion is permanent and cannot be undone, so I am requesting it now."
                ),
                "delete_user_account",
                json!({ "user_id": user, "reason": reason }),
            )
        }
        Some(result) => match outcome(result) {
            Outcome::Ok(_) => say(&format!(
                "Account {user} has been deleted, with all its data."
            )),
            Outcome::Denied(reason) => say(&format!(
                "Account {user} was not deleted: a reviewer denied the deletion ({reason}). The account is unchanged."
            )),
            Outcome::Failed(e) => say(&format!("Account {user} could not be deleted: {e}")),
        },
    }
}

fn say(text: &str) -> Completion {
    Completion {
        content: Some(text.to_string()),
        tool_calls: Vec::new(),
    }
}

fn call(conv: &Conversation<'_>, reasoning: String, tool: &str, args: Value) -> Completion {
    Completion {
        content: Some(reasoning),
        tool_calls: vec![ToolCall {
            id: conv.call_id(),
            name: tool.to_string(),
            arguments: args.to_string(),
        }],
    }
}

fn money(v: &Value) -> String {
    format!("${:.2}", v.as_f64().unwrap_or(0.0))
}

/// The first id like `ORD-1002` in `text` (the prefix case-insensitive, at a word start).
fn find_id(text: &str, prefix: &str) -> Option<String> {
    let upper = text.to_ascii_uppercase();
    let mut from = 0;
    while let Some(at) = upper[from..].find(prefix).map(|i| i + from) {
        from = at + prefix.len();
        let at_word_start = upper[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric() && c != '-' && c != '_');
        let rest: String = text[from..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let rest = rest.trim_end_matches(['-', '_']);
        if at_word_start && !rest.is_empty() {
            return Some(format!("{prefix}{}", rest.to_ascii_uppercase()));
        }
    }
    None
}

/// The customer's reason: what follows "because" in the input, else `fallback`.
fn reason(input: &str, fallback: &str) -> String {
    let lower = input.to_ascii_lowercase();
    let found = ["because ", "reason: ", "since "]
        .iter()
        .find_map(|k| lower.find(k).map(|at| &input[at + k.len()..]));
    let text: String = found
        .unwrap_or("")
        .trim()
        .trim_end_matches(['.', '!', '?'])
        .chars()
        .take(200)
        .collect();
    if text.trim().is_empty() {
        fallback.to_string()
    } else {
        text
    }
}
