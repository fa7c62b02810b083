//! The scripted model that drives the demo and the tests: its refund and deletion scripts.

use super::*;

/// Drive the scripted model with the real builtin tools until it answers. `decide` plays the
/// reviewer for gated calls: `Ok(())` runs the call, `Err(reason)` denies it.
async fn drive(
    input: &str,
    decide: impl Fn(&ToolCall) -> Result<(), String>,
) -> (Vec<Message>, String) {
    let model = Model::from_config(
        "demo",
        &model_config("kind = \"scripted\"\nscript = \"customer_service\""),
    )
    .unwrap();
    let tools = Tools::from_config(&[]).unwrap();
    let specs = refund_tools();
    let mut messages = vec![
        Message::system("You are a customer service agent."),
        Message::user(input),
    ];
    for _ in 0..10 {
        let c = model.complete(&messages, &specs).await.unwrap();
        // Deterministic: asked again, the same answer.
        assert_eq!(model.complete(&messages, &specs).await.unwrap(), c);
        let calls = c.tool_calls.clone();
        messages.push(c.clone().into());
        if calls.is_empty() {
            return (messages, c.content.unwrap());
        }
        for call in calls {
            let args = tools
                .validate_raw(&call.name, &call.arguments)
                .expect("valid arguments");
            let gated = tools.needs_approval(&call.name)
                != Some(crate::config::NeedsApproval::Always(false));
            let result = match if gated { decide(&call) } else { Ok(()) } {
                Ok(()) => match tools.call(&call.name, &args).await {
                    ToolOutput::Ok(t) => t,
                    other => format!("Error: {}", other.text()),
                },
                Err(reason) => format!("The reviewer denied this action: {reason}"),
            };
            messages.push(Message::tool(call.id, result));
        }
    }
    panic!("the script did not finish: {messages:#?}");
}

fn calls(messages: &[Message]) -> Vec<(String, Value, Option<String>)> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Assistant {
                content,
                tool_calls,
            } => Some(tool_calls.iter().map(move |c| {
                (
                    c.name.clone(),
                    serde_json::from_str(&c.arguments).unwrap(),
                    content.clone(),
                )
            })),
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test]
async fn scripted_refund_looks_up_then_refunds_the_total() {
    let (messages, answer) = drive(
        "Please refund order ORD-1002 because the widgets arrived broken.",
        |_| Ok(()),
    )
    .await;
    let calls = calls(&messages);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].0, "get_order_details");
    assert_eq!(calls[0].1, json!({ "order_id": "ORD-1002" }));
    assert_eq!(calls[1].0, "issue_refund");
    assert_eq!(
        calls[1].1,
        json!({ "order_id": "ORD-1002", "amount": 149.99, "reason": "the widgets arrived broken" })
    );
    let reasoning = calls[1].2.as_deref().unwrap();
    assert!(
        reasoning.contains("$149.99") && reasoning.contains("the widgets arrived broken"),
        "{reasoning}"
    );
    assert!(
        answer.contains("issued a refund of $149.99 for order ORD-1002"),
        "{answer}"
    );
}

#[tokio::test]
async fn scripted_refund_reacts_to_a_denial() {
    let (messages, answer) = drive("refund ord-1005 please", |call| {
        assert_eq!(call.name, "issue_refund");
        Err("refunds over $300 need a manager".into())
    })
    .await;
    assert_eq!(calls(&messages)[1].1["amount"], json!(320.0));
    assert!(answer.contains("denied"), "{answer}");
    assert!(
        answer.contains("refunds over $300 need a manager"),
        "{answer}"
    );
    assert!(answer.contains("ORD-1005"), "{answer}");
    assert!(!answer.contains("issued a refund"), "{answer}");
}

#[tokio::test]
async fn scripted_unknown_order_and_lookup_only() {
    let (messages, answer) = drive("Refund ORD-9999 now", |_| panic!("nothing to approve")).await;
    assert_eq!(calls(&messages).len(), 1);
    assert!(!answer.contains("Error:"), "{answer}");
    assert!(
        answer.contains("couldn't look up order ORD-9999") && answer.contains("no order"),
        "{answer}"
    );

    let (messages, answer) = drive("Where is my order ORD-1003?", |_| {
        panic!("nothing to approve")
    })
    .await;
    assert_eq!(calls(&messages).len(), 1);
    assert_eq!(
        answer,
        "Order ORD-1003: shipped, total $75.00, items: Desk lamp."
    );
}

#[tokio::test]
async fn scripted_deletion_runs_or_is_denied() {
    let (messages, answer) = drive("Delete account for user U-456, they requested it", |_| {
        Ok(())
    })
    .await;
    let calls_made = calls(&messages);
    assert_eq!(calls_made.len(), 1);
    assert_eq!(calls_made[0].0, "delete_user_account");
    assert_eq!(calls_made[0].1["user_id"], "U-456");
    assert!(calls_made[0].2.as_deref().unwrap().contains("U-456"));
    assert!(
        answer.contains("Account U-456 has been deleted"),
        "{answer}"
    );

    let (_, answer) = drive("Please delete U-456 because they asked by email", |call| {
        assert_eq!(
            serde_json::from_str::<Value>(&call.arguments).unwrap()["reason"],
            "they asked by email"
        );
        Err("identity not verified".into())
    })
    .await;
    assert!(
        answer.contains("was not deleted") && answer.contains("identity not verified"),
        "{answer}"
    );
}

#[tokio::test]
async fn scripted_without_ids_asks_for_them() {
    let (messages, answer) = drive("I want a refund", |_| panic!()).await;
    assert!(calls(&messages).is_empty());
    assert!(answer.contains("order id"), "{answer}");
}

#[test]
fn scripted_respects_the_offered_tools() {
    let model = ScriptedModel::customer_service();
    let c = model.complete(&[Message::user("Delete U-1")], &[]);
    assert!(c.tool_calls.is_empty());
    assert!(c.content.unwrap().contains("isn't available"));
}

#[test]
fn scripted_steps_follow_the_turns() {
    let step = |text: &str, call: Option<&str>| Completion {
        content: Some(text.into()),
        tool_calls: call
            .map(|name| ToolCall {
                id: format!("id_{name}"),
                name: name.into(),
                arguments: "{}".into(),
            })
            .into_iter()
            .collect(),
    };
    let model = ScriptedModel::steps(vec![step("first", Some("a")), step("second", None)]);
    let mut messages = vec![Message::user("go")];
    let c1 = model.complete(&messages, &[]);
    assert_eq!(c1, step("first", Some("a")));
    messages.push(c1.into());
    messages.push(Message::tool("id_a", "result"));
    assert_eq!(model.complete(&messages, &[]), step("second", None));
    messages.push(step("second", None).into());
    assert_eq!(
        model.complete(&messages, &[]).content.as_deref(),
        Some("Done.")
    );
    // A new user message starts the script again.
    messages.push(Message::user("again"));
    assert_eq!(model.complete(&messages, &[]), step("first", Some("a")));
}
