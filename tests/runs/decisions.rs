//! Approve, deny, policy decisions, parallel calls, sticky grants and invalid arguments.

use super::*;

// ---------------------------------------------------------------------------------------
// 1–2. Approve and deny
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn approved_call_runs_once_and_its_result_goes_back_to_the_model() {
    let reasoning = "The customer was charged twice for order A1; refunding the duplicate.";
    let w = world(vec![
        Reply::tools(
            Some(reasoning),
            &[call(
                "call_refund_1",
                "issue_refund",
                json!({"order_id": "A1", "amount": 120}),
            )],
        ),
        Reply::text("Refunded $120 for order A1."),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "I was charged twice for order A1").await;

    let run = wait_status(api, &id, "pending_approval").await;
    let [approval_id] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    assert_eq!(run["waiting_on"], "approval of issue_refund", "{run:#}");
    assert_eq!(run["calls"][0]["state"], "waiting", "{run:#}");
    assert_eq!(run["calls"][0]["call_id"], "call_refund_1", "{run:#}");
    assert_eq!(run["turns"], 1, "{run:#}");

    // The approval names the tool, carries the model's text as reasoning, and the arguments.
    let a = api.approval(&approval_id).await;
    assert_eq!(a["status"], "pending", "{a:#}");
    assert_eq!(a["tool"], "issue_refund", "{a:#}");
    assert_eq!(a["run_id"], id, "{a:#}");
    assert_eq!(a["agent"], "Support", "{a:#}");
    assert_eq!(a["reasoning"], reasoning, "{a:#}");
    assert_eq!(a["arguments"], json!({"order_id": "A1", "amount": 120}));
    assert_eq!(a["requested_by"], "billing-bot", "{a:#}");
    assert_eq!(
        a["queue"], "primary",
        "the refunds policy's ask rule: {a:#}"
    );
    // It is in the reviewers' pending list.
    assert!(
        api.list_all("pending")
            .await
            .iter()
            .any(|p| p["id"] == approval_id.as_str())
    );
    // The tool has not run.
    assert!(w.refunds().is_empty(), "the tool ran before approval");

    // What the model was first sent: the model name, instructions, input, tools, key.
    let recorded = w.model.recorded();
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    let first = &recorded[0].body;
    assert_eq!(first["model"], "test-model");
    assert_eq!(
        first["messages"],
        json!([
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": "I was charged twice for order A1"}
        ])
    );
    let tools = first["tools"].as_array().expect("tools offered");
    let names: Vec<&str> = tools
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["issue_refund", "delete_user_account", "slow_job", "lookup"]
    );
    let refund = &tools[0];
    assert_eq!(refund["type"], "function");
    assert_eq!(
        refund["function"]["description"],
        "Issue a monetary refund for an order."
    );
    assert_eq!(
        refund["function"]["parameters"]["required"],
        json!(["order_id", "amount"])
    );
    assert_eq!(
        recorded[0].authorization.as_deref(),
        Some(format!("Bearer {}", std::env::var("PATH").unwrap()).as_str()),
        "the api_key_env value is the bearer token"
    );
    assert_eq!(
        recorded[0].content_type.as_deref(),
        Some("application/json")
    );

    let r = decide(
        api,
        &approval_id,
        json!({"decision": "approve", "reason": "duplicate charge confirmed"}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "approved");

    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Refunded $120 for order A1.", "{run:#}");
    assert_eq!(run["turns"], 2, "{run:#}");
    assert_eq!(run["pending"], json!([]), "{run:#}");
    assert!(run["error"].is_null(), "{run:#}");
    assert!(run["waiting_on"].is_null(), "{run:#}");

    // The tool ran exactly once, with the proposed arguments on its standard input.
    assert_eq!(w.refunds(), vec![json!({"order_id": "A1", "amount": 120})]);

    // The second request carries the whole conversation: the assistant's call and its result.
    let reqs = w.model.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let msgs = reqs[1]["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4, "{msgs:#?}");
    assert_eq!(msgs[2]["role"], "assistant");
    assert_eq!(msgs[2]["content"], reasoning);
    assert_eq!(msgs[2]["tool_calls"][0]["id"], "call_refund_1");
    assert_eq!(msgs[2]["tool_calls"][0]["function"]["name"], "issue_refund");
    let args: Value = serde_json::from_str(
        msgs[2]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"order_id": "A1", "amount": 120}));
    assert_eq!(
        msgs[3],
        json!({"role": "tool", "tool_call_id": "call_refund_1", "content": "refund issued"})
    );
    assert!(
        reqs[1]["tools"].is_array(),
        "tools are offered on every turn"
    );

    // The run's conversation as the API shows it ends with the final answer.
    let conv = run["messages"].as_array().unwrap();
    assert_eq!(
        conv.last().unwrap()["content"],
        "Refunded $120 for order A1."
    );

    // It is listed; and the audit log tells the story, unbroken.
    let list = api.get(Some(ALICE), "/v1/runs").await;
    assert_eq!(list.status, 200, "{list:?}");
    assert!(
        list.body["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["run_id"] == id.as_str() && r["status"] == "completed"),
        "{list:?}"
    );
    let audit = api.audit_all().await;
    assert_chain(&audit);
    let of_run: Vec<&str> = audit
        .iter()
        .filter(|r| r["run_id"] == id.as_str())
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(of_run.first(), Some(&"run.started"), "{of_run:?}");
    assert_eq!(of_run.last(), Some(&"run.ended"), "{of_run:?}");
    let executed: Vec<&Value> = audit
        .iter()
        .filter(|r| r["kind"] == "tool.executed" && r["run_id"] == id.as_str())
        .collect();
    assert_eq!(executed.len(), 1, "{executed:#?}");
    assert_eq!(executed[0]["details"]["tool"], "issue_refund");
    assert_eq!(executed[0]["details"]["ok"], true);
    let decided = records_of(&audit, "approval.decided", &approval_id);
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["actor"], "alice");
}

#[tokio::test]
async fn denied_call_is_not_run_and_the_model_is_told_why() {
    let w = world(vec![
        // No text with the call: the reviewer is told so.
        Reply::tools(
            None,
            &[call(
                "call_del_7",
                "delete_user_account",
                json!({"user_id": "u-7"}),
            )],
        ),
        Reply::text("I could not delete the account: a ticket is needed."),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "Delete my account, I am u-7").await;
    let run = wait_status(api, &id, "pending_approval").await;
    let [approval_id] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    let a = api.approval(&approval_id).await;
    assert_eq!(a["tool"], "delete_user_account");
    assert_eq!(a["reasoning"], "no reasoning given", "{a:#}");
    assert_eq!(a["queue"], "default", "{a:#}");

    let r = decide(
        api,
        &approval_id,
        json!({"decision": "deny", "reason": "needs a support ticket"}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "denied");

    let run = wait_status(api, &id, "completed").await;
    assert_eq!(
        run["output"],
        "I could not delete the account: a ticket is needed."
    );
    let reqs = w.model.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(
        last_message(&reqs[1]),
        json!({
            "role": "tool",
            "tool_call_id": "call_del_7",
            "content": "The reviewer denied this action: needs a support ticket"
        })
    );
    // The assistant message with null content is sent back as such.
    let msgs = reqs[1]["messages"].as_array().unwrap();
    assert_eq!(msgs[msgs.len() - 2]["role"], "assistant");
    assert!(msgs[msgs.len() - 2]["content"].is_null(), "{msgs:#?}");
    assert!(
        !w.path("deletions.log").exists(),
        "a denied tool must not run"
    );
    // A second decision is refused and changes nothing.
    let again = decide(api, &approval_id, json!({"decision": "approve"})).await;
    again.expect_error(409);
    assert!(!w.path("deletions.log").exists());
    assert_eq!(w.model.count(), 2);
}

// ---------------------------------------------------------------------------------------
// 3. Policy decides
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn policy_approves_small_refunds_without_a_reviewer() {
    let w = world(vec![
        Reply::tools(
            Some("Small refund."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "B2", "amount": 20}),
            )],
        ),
        Reply::text("Refunded $20."),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "Refund $20 on B2").await;
    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Refunded $20.");
    assert_eq!(w.refunds(), vec![json!({"order_id": "B2", "amount": 20})]);
    assert_eq!(
        tool_messages(&w.model.requests()[1]),
        vec![json!({"role": "tool", "tool_call_id": "c1", "content": "refund issued"})]
    );

    let approvals = approvals_of_run(api, &id).await;
    assert_eq!(approvals.len(), 1, "{approvals:#?}");
    let a = &approvals[0];
    assert_eq!(a["status"], "approved", "{a:#}");
    assert_eq!(a["decision"]["by"], "policy:refunds", "{a:#}");
    assert_eq!(a["policy"]["name"], "refunds", "{a:#}");
    // No reviewer ever saw it pending.
    let audit = api.audit_all().await;
    let aid = a["id"].as_str().unwrap();
    assert!(records_of(&audit, "approval.created", aid).is_empty());
    let decided = records_of(&audit, "approval.decided", aid);
    assert_eq!(decided.len(), 1, "{audit:#?}");
    assert_eq!(decided[0]["actor"], "policy:refunds");
    // The run never paused.
    assert!(
        !audit
            .iter()
            .filter(|r| r["run_id"] == id.as_str())
            .any(|r| r["details"]["run"]["status"] == "pending_approval"),
        "the run paused although the policy approved"
    );
}

// ---------------------------------------------------------------------------------------
// 4. Parallel calls
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn parallel_calls_one_approved_one_denied_results_in_call_order() {
    let w = world(vec![
        Reply::tools(
            Some("Delete the old account, then refund the order."),
            &[
                call("call_a", "delete_user_account", json!({"user_id": "old"})),
                call(
                    "call_b",
                    "issue_refund",
                    json!({"order_id": "C3", "amount": 500}),
                ),
            ],
        ),
        Reply::text("Refunded C3; the account stays."),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "Close old account and refund C3").await;
    let run = wait_status(api, &id, "pending_approval").await;
    let pending = pending_ids(&run, 2);
    let (del_id, refund_id) = (pending[0].clone(), pending[1].clone());
    assert_eq!(api.approval(&del_id).await["tool"], "delete_user_account");
    assert_eq!(api.approval(&refund_id).await["tool"], "issue_refund");
    assert_eq!(
        run["waiting_on"],
        "approval of delete_user_account, approval of issue_refund"
    );

    // Decide the second call first: the run still waits on the first.
    let r = decide(api, &refund_id, json!({"decision": "approve"})).await;
    assert_eq!(r.status, 200, "{r:?}");
    let run = get_run(api, &id).await;
    assert_eq!(run["status"], "pending_approval", "{run:#}");
    assert_eq!(run["pending"], json!([del_id]), "{run:#}");
    assert_eq!(w.model.count(), 1);

    let r = decide(
        api,
        &del_id,
        json!({"decision": "deny", "reason": "keep it"}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Refunded C3; the account stays.");

    assert_eq!(w.refunds(), vec![json!({"order_id": "C3", "amount": 500})]);
    assert!(w.deletions().is_empty(), "the denied call ran");
    let reqs = w.model.requests();
    assert_eq!(reqs.len(), 2);
    // Both results, in the model's call order (not decision or completion order), right
    // after the assistant message that made the calls.
    let msgs = reqs[1]["messages"].as_array().unwrap();
    let n = msgs.len();
    assert_eq!(msgs[n - 3]["role"], "assistant");
    assert_eq!(
        msgs[n - 2..],
        [
            json!({"role": "tool", "tool_call_id": "call_a", "content": "The reviewer denied this action: keep it"}),
            json!({"role": "tool", "tool_call_id": "call_b", "content": "refund issued"}),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// 5. Sticky grant
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn approving_for_the_run_grants_the_tool_for_the_rest_of_the_run() {
    let w = world(vec![
        Reply::tools(
            Some("First refund."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "D1", "amount": 100}),
            )],
        ),
        Reply::tools(
            Some("Second refund."),
            &[call(
                "c2",
                "issue_refund",
                json!({"order_id": "D2", "amount": 300}),
            )],
        ),
        Reply::text("Both refunded."),
        // The second run, started after: no grant there.
        Reply::tools(
            Some("Another run's refund."),
            &[call(
                "c3",
                "issue_refund",
                json!({"order_id": "D3", "amount": 300}),
            )],
        ),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "Refund D1 and D2").await;
    let run = wait_status(api, &id, "pending_approval").await;
    let [first] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    let r = decide(
        api,
        &first,
        json!({"decision": "approve", "scope": "run", "reason": "both ok"}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["decision"]["scope"], "run", "{r:?}");

    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Both refunded.");
    assert_eq!(run["turns"], 3);
    assert_eq!(
        w.refunds(),
        vec![
            json!({"order_id": "D1", "amount": 100}),
            json!({"order_id": "D2", "amount": 300})
        ]
    );
    let approvals = approvals_of_run(api, &id).await;
    assert_eq!(approvals.len(), 2, "{approvals:#?}");
    let second = approvals
        .iter()
        .find(|a| a["id"] != first.as_str())
        .unwrap();
    assert_eq!(second["status"], "approved", "{second:#}");
    assert_eq!(second["decision"]["by"], "grant:alice", "{second:#}");
    assert_eq!(second["arguments"]["order_id"], "D2");
    // The grant ended with the run (DESIGN §9).
    let grants = api.get(Some(ALICE), "/v1/grants").await;
    assert_eq!(grants.body, json!({"grants": []}), "{grants:?}");
    let audit = api.audit_all().await;
    let decided = records_of(&audit, "approval.decided", second["id"].as_str().unwrap());
    assert_eq!(decided.len(), 1, "the grant's decision is audited");
    assert_eq!(decided[0]["actor"], "grant:alice");
    assert!(
        records_of(&audit, "approval.created", second["id"].as_str().unwrap()).is_empty(),
        "a granted call never waits for a reviewer"
    );
    assert_eq!(
        tool_messages(&w.model.requests()[2]),
        vec![
            json!({"role": "tool", "tool_call_id": "c1", "content": "refund issued"}),
            json!({"role": "tool", "tool_call_id": "c2", "content": "refund issued"}),
        ]
    );

    // The grant is for that run only: another run's refund asks again.
    let other = start_run(api, "Support", "Refund D3").await;
    let run = wait_status(api, &other, "pending_approval").await;
    let [p] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    assert_eq!(api.approval(&p).await["status"], "pending");
}

// ---------------------------------------------------------------------------------------
// 6. Invalid arguments
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_arguments_go_back_to_the_model_and_never_become_approvals() {
    let w = world(vec![
        Reply::tools(
            Some("Refunding."),
            &[
                call(
                    "bad_type",
                    "issue_refund",
                    json!({"order_id": "E1", "amount": "ten"}),
                ),
                call("missing", "issue_refund", json!({"order_id": "E1"})),
                raw_call("not_json", "issue_refund", "{\"order_id\": \"E1\", amount"),
                call("no_such_tool", "wire_money", json!({"to": "me"})),
            ],
        ),
        Reply::text("Sorry, I could not do it."),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "Refund E1").await;
    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Sorry, I could not do it.");
    assert!(
        approvals_of_run(api, &id).await.is_empty(),
        "an invalid call became an approval"
    );
    assert!(w.refunds().is_empty());
    let reqs = w.model.requests();
    assert_eq!(reqs.len(), 2);
    let tools = tool_messages(&reqs[1]);
    let ids: Vec<&str> = tools
        .iter()
        .map(|m| m["tool_call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bad_type", "missing", "not_json", "no_such_tool"]);
    let text = |i: usize| tools[i]["content"].as_str().unwrap().to_string();
    assert!(
        text(0).contains("amount") && text(0).contains("number"),
        "{}",
        text(0)
    );
    assert!(text(1).contains("amount"), "{}", text(1));
    assert!(text(2).contains("not valid JSON"), "{}", text(2));
    assert!(text(3).contains("wire_money"), "{}", text(3));
    for i in 0..3 {
        assert!(text(i).contains("The call was not run"), "{}", text(i));
    }
    // The audit log never recorded an approval for the run.
    let audit = api.audit_all().await;
    assert!(
        !audit
            .iter()
            .any(|r| r["kind"].as_str().unwrap().starts_with("approval.")
                && r["details"]["approval"]["run_id"] == id.as_str()),
        "approval records for an invalid call"
    );
}
