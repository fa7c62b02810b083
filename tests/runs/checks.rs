//! Policy denials and expiries, reviewer edits, and what the run API refuses.

use super::*;

// ---------------------------------------------------------------------------------------
// Policy denial, expiry, edited arguments, API checks
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn policy_denials_and_expiries_go_back_to_the_model() {
    let model = ModelServer::scripted(vec![
        Reply::tools(
            Some("Two wires."),
            &[
                call("big", "wire_money", json!({"amount": 5000})),
                call("small", "wire_money", json!({"amount": 10})),
            ],
        ),
        Reply::text("Neither wire went out."),
    ]);
    let ws = Workspace::new();
    ws.write_config(&config(ws.dir.path(), &model, &wires_config(ws.dir.path())));
    let d = ws.start();
    let api = d.api();
    let id = start_run(&api, "Payer", "Wire 5000 and 10").await;
    let run = wait_status(&api, &id, "pending_approval").await;
    // Only the small wire waits; the big one was denied by the policy at once.
    let [small] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    assert_eq!(run["calls"][0]["state"], "denied", "{run:#}");
    assert_eq!(run["calls"][1]["state"], "waiting", "{run:#}");
    // Nobody decides: it expires after 3 s and the run goes on.
    let run = wait_status(&api, &id, "completed").await;
    assert_eq!(run["output"], "Neither wire went out.");
    let a = api.approval(&small).await;
    assert_eq!(a["status"], "expired", "{a:#}");
    assert_eq!(a["decision"]["by"], "timeout", "{a:#}");
    assert!(!ws.dir.path().join("wires.log").exists(), "a wire went out");
    let tools = tool_messages(&model.requests()[1]);
    assert_eq!(tools.len(), 2, "{tools:#?}");
    assert_eq!(
        tools[0],
        json!({
            "role": "tool",
            "tool_call_id": "big",
            "content": "The policy denied this action: wires over $1000 are never allowed"
        })
    );
    assert_eq!(tools[1]["tool_call_id"], "small");
    let expired = tools[1]["content"].as_str().unwrap();
    assert!(
        expired.starts_with("No reviewer decided in time, so this action was not taken: ")
            && expired.contains("approval timed out"),
        "{expired}"
    );
    let approvals = approvals_of_run(&api, &id).await;
    let big = approvals
        .iter()
        .find(|a| a["arguments"]["amount"] == 5000)
        .expect("the denied call is recorded");
    assert_eq!(big["status"], "denied", "{big:#}");
    assert_eq!(big["decision"]["by"], "policy:wires", "{big:#}");
}

#[tokio::test]
async fn a_reviewer_edit_is_checked_against_the_schema_and_is_what_runs() {
    let w = world(vec![
        Reply::tools(
            Some("Refund in full."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "M1", "amount": 120}),
            )],
        ),
        Reply::text("Refunded part of M1."),
    ]);
    let api = &w.api;
    let id = start_run(api, "Support", "Refund M1").await;
    let run = wait_status(api, &id, "pending_approval").await;
    let [aid] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    assert_eq!(api.approval(&aid).await["editable"], true);

    // An edit that breaks the tool's schema is refused and changes nothing.
    let bad = decide(
        api,
        &aid,
        json!({"decision": "approve", "arguments": {"order_id": "M1", "amount": "sixty"}}),
    )
    .await;
    bad.expect_error(422);
    assert!(bad.message().contains("amount"), "{bad:?}");
    assert_eq!(api.approval(&aid).await["status"], "pending");
    assert_eq!(get_run(api, &id).await["status"], "pending_approval");

    let edited = json!({"order_id": "M1", "amount": 60});
    let r = decide(
        api,
        &aid,
        json!({"decision": "approve", "arguments": edited}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Refunded part of M1.");
    // The edit ran, not the proposal; the approval keeps both.
    assert_eq!(w.refunds(), vec![edited.clone()]);
    // The approval's arguments are what ran; the call as proposed is kept beside it.
    let a = api.approval(&aid).await;
    assert_eq!(a["arguments"], edited, "{a:#}");
    assert_eq!(
        a["requested_arguments"],
        json!({"order_id": "M1", "amount": 120})
    );
    assert_eq!(
        a["arguments_sha256"],
        sha256_hex(r#"{"amount":60,"order_id":"M1"}"#)
    );
    assert_eq!(a["decision"]["arguments"], edited, "{a:#}");
    // The model is told its call was changed, so it cannot report the proposal as done.
    let tools = tool_messages(&w.model.requests()[1]);
    let told = tools[0]["content"].as_str().unwrap_or("");
    assert!(
        told.starts_with(
            r#"The reviewer changed the arguments to {"amount":60,"order_id":"M1"} before running it: "#
        ),
        "{told}"
    );
}

#[tokio::test]
async fn run_api_refuses_what_it_should() {
    let w = world(vec![Reply::text("Hello.")]);
    let api = &w.api;
    let r = api
        .post(
            Some(BOT),
            "/v1/runs",
            &json!({"agent": "Nobody", "input": "hi"}),
        )
        .await;
    r.expect_error(422);
    assert!(r.message().contains("agent: no agent \"Nobody\""), "{r:?}");
    api.post(
        Some(BOT),
        "/v1/runs",
        &json!({"agent": "Support", "input": "  "}),
    )
    .await
    .expect_error(422);
    api.post(Some(BOT), "/v1/runs", &json!({"agent": "Support"}))
        .await
        .expect_error(422);
    // A reviewer is not an agent: it cannot start runs.
    api.post(
        Some(ALICE),
        "/v1/runs",
        &json!({"agent": "Support", "input": "hi"}),
    )
    .await
    .expect_error(403);
    api.post(
        None,
        "/v1/runs",
        &json!({"agent": "Support", "input": "hi"}),
    )
    .await
    .expect_error(401);
    assert_eq!(w.model.count(), 0);

    let id = start_run(api, "Support", "Say hello").await;
    let run = wait_status(api, &id, "completed").await;
    assert_eq!(run["output"], "Hello.");
    // The agent that started it reads it; another agent does not see it at all.
    let own = api.get(Some(BOT), &format!("/v1/runs/{id}")).await;
    assert_eq!(own.status, 200, "{own:?}");
    api.get(Some(BOT2), &format!("/v1/runs/{id}"))
        .await
        .expect_error(404);
    let list = api.get(Some(BOT2), "/v1/runs").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["runs"], json!([]), "{list:?}");
    api.get(Some(ALICE), "/v1/runs/not-a-run")
        .await
        .expect_error(404);
}
