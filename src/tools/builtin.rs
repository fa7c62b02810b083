//! The demo's tools (`kind = "builtin"`), after the seed's CustomerServiceAgent, over a small
//! fixed in-memory order book. They act on nothing outside the process: a refund or a deletion
//! only reports what it would have done.
//!
//! The names are those of `config::check::BUILTIN_TOOLS`.

use super::ToolOutput;
use crate::config::NeedsApproval;
use serde_json::{Map, Value, json};

/// One order of the demo's order book.
#[derive(Clone, Copy, Debug)]
pub struct Order {
    pub id: &'static str,
    pub total: f64,
    pub status: &'static str,
    pub items: &'static [&'static str],
}

/// The order book: some totals under the demo policy's $50 auto-approve line, some above.
pub const ORDERS: &[Order] = &[
    Order {
        id: "ORD-1001",
        total: 24.99,
        status: "delivered",
        items: &["Phone case"],
    },
    Order {
        id: "ORD-1002",
        total: 149.99,
        status: "delivered",
        items: &["Widget A", "Widget B"],
    },
    Order {
        id: "ORD-1003",
        total: 75.00,
        status: "shipped",
        items: &["Desk lamp"],
    },
    Order {
        id: "ORD-1004",
        total: 12.50,
        status: "delivered",
        items: &["USB-C cable"],
    },
    Order {
        id: "ORD-1005",
        total: 320.00,
        status: "delivered",
        items: &["Office chair"],
    },
];

pub fn order(id: &str) -> Option<&'static Order> {
    ORDERS.iter().find(|o| o.id.eq_ignore_ascii_case(id.trim()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    GetOrderDetails,
    IssueRefund,
    DeleteUserAccount,
}

impl Builtin {
    pub const ALL: &'static [Builtin] = &[
        Builtin::GetOrderDetails,
        Builtin::IssueRefund,
        Builtin::DeleteUserAccount,
    ];

    pub fn by_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.iter().copied().find(|b| b.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Builtin::GetOrderDetails => "get_order_details",
            Builtin::IssueRefund => "issue_refund",
            Builtin::DeleteUserAccount => "delete_user_account",
        }
    }

    /// The seed's docstrings.
    pub fn description(self) -> &'static str {
        match self {
            Builtin::GetOrderDetails => {
                "Retrieve order details including items, total, and status."
            }
            Builtin::IssueRefund => {
                "Issue a monetary refund for an order. Funds will be returned to the original payment method."
            }
            Builtin::DeleteUserAccount => {
                "Permanently delete a user account and all associated data. This action cannot be undone."
            }
        }
    }

    /// The seed's function parameters as a JSON schema (all of them required, as in the
    /// seed's signatures).
    pub fn parameters(self) -> Value {
        match self {
            Builtin::GetOrderDetails => json!({
                "type": "object",
                "properties": {
                    "order_id": { "type": "string", "description": "The order id, e.g. ORD-1002." }
                },
                "required": ["order_id"],
                "additionalProperties": false
            }),
            Builtin::IssueRefund => json!({
                "type": "object",
                "properties": {
                    "order_id": { "type": "string", "description": "The order to refund." },
                    "amount": { "type": "number", "description": "Amount to refund, in dollars." },
                    "reason": { "type": "string", "description": "Why the refund is issued." }
                },
                "required": ["order_id", "amount", "reason"],
                "additionalProperties": false
            }),
            Builtin::DeleteUserAccount => json!({
                "type": "object",
                "properties": {
                    "user_id": { "type": "string", "description": "The user id, e.g. U-456." },
                    "reason": { "type": "string", "description": "Why the account is deleted." }
                },
                "required": ["user_id", "reason"],
                "additionalProperties": false
            }),
        }
    }

    /// The seed's gates: lookups are free, refunds and deletions ask.
    pub fn needs_approval(self) -> NeedsApproval {
        NeedsApproval::Always(self != Builtin::GetOrderDetails)
    }

    /// Run it. The arguments have been validated against `parameters`, but a `[[tools]]`
    /// entry may give its own schema, so each field is checked again here.
    pub fn call(self, args: &Map<String, Value>) -> ToolOutput {
        match self {
            Builtin::GetOrderDetails => {
                let id = match string(args, "order_id") {
                    Ok(id) => id,
                    Err(e) => return e,
                };
                match order(id) {
                    Some(o) => ToolOutput::Ok(
                        json!({
                            "order_id": o.id,
                            "total": o.total,
                            "status": o.status,
                            "items": o.items,
                        })
                        .to_string(),
                    ),
                    None => ToolOutput::Error(format!("no order {id:?} in the order book")),
                }
            }
            Builtin::IssueRefund => {
                let (id, reason) = match (string(args, "order_id"), string(args, "reason")) {
                    (Ok(id), Ok(reason)) => (id, reason),
                    (Err(e), _) | (_, Err(e)) => return e,
                };
                let Some(amount) = args.get("amount").and_then(Value::as_f64) else {
                    return ToolOutput::Error("field \"amount\" must be a number".into());
                };
                let Some(o) = order(id) else {
                    return ToolOutput::Error(format!("no order {id:?} in the order book"));
                };
                if amount.is_nan() || amount <= 0.0 {
                    return ToolOutput::Error(format!(
                        "refund amount {amount} must be greater than zero"
                    ));
                }
                // Cents, so that 75 and 75.00 compare equal and 75.001 does not pass.
                if (amount * 100.0).round() > (o.total * 100.0).round() {
                    return ToolOutput::Error(format!(
                        "refund amount {amount:.2} exceeds the total {:.2} of order {}",
                        o.total, o.id
                    ));
                }
                if reason.trim().is_empty() {
                    return ToolOutput::Error("a refund needs a reason".into());
                }
                ToolOutput::Ok(
                    json!({ "status": "refunded", "order_id": o.id, "amount": amount }).to_string(),
                )
            }
            Builtin::DeleteUserAccount => {
                let (user, reason) = match (string(args, "user_id"), string(args, "reason")) {
                    (Ok(user), Ok(reason)) => (user, reason),
                    (Err(e), _) | (_, Err(e)) => return e,
                };
                if user.trim().is_empty() {
                    return ToolOutput::Error("field \"user_id\" is empty".into());
                }
                if reason.trim().is_empty() {
                    return ToolOutput::Error("a deletion needs a reason".into());
                }
                ToolOutput::Ok(json!({ "status": "deleted", "user_id": user }).to_string())
            }
        }
    }
}

fn string<'a>(args: &'a Map<String, Value>, field: &str) -> Result<&'a str, ToolOutput> {
    match args.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ToolOutput::Error(format!(
            "field {field:?} must be a string"
        ))),
        None => Err(ToolOutput::Error(format!(
            "missing required field {field:?}"
        ))),
    }
}
