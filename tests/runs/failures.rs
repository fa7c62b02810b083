//! kill -9 mid-run, model errors, and cancelling a run.

use super::*;

// ---------------------------------------------------------------------------------------
// 7–8. kill -9
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn kill_while_paused_then_decide_after_restart_runs_the_tool_once() {
    let mut w = world(vec![
        Reply::tools(
            Some("Refund it."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "F1", "amount": 99}),
            )],
        ),
        Reply::text("Refunded F1 after the restart."),
    ]);
    let id = start_run(&w.api, "Support", "Refund F1").await;
    let run = wait_status(&w.api, &id, "pending_approval").await;
    let [approval_id] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();

    w.kill_and_restart();
    let api = w.api.clone();
    let run = get_run(&api, &id).await;
    assert_eq!(run["status"], "pending_approval", "{run:#}");
    assert_eq!(run["pending"], json!([approval_id]), "{run:#}");
    assert_eq!(api.approval(&approval_id).await["status"], "pending");
    assert!(w.refunds().is_empty());
    assert_eq!(
        w.model.count(),
        1,
        "the model is not asked again for a paused turn"
    );

    let r = decide(&api, &approval_id, json!({"decision": "approve"})).await;
    assert_eq!(r.status, 200, "{r:?}");
    let run = wait_status(&api, &id, "completed").await;
    assert_eq!(run["output"], "Refunded F1 after the restart.");
    assert_eq!(w.refunds().len(), 1, "the tool ran exactly once");
    assert_eq!(w.model.count(), 2);
    assert_eq!(
        last_message(&w.model.requests()[1]),
        json!({"role": "tool", "tool_call_id": "c1", "content": "refund issued"})
    );
    assert_chain(&api.audit_all().await);
}

/// Start a run whose only call is `slow_job`, wait until the tool is running (its marker
/// written), SIGKILL the daemon (and the orphaned tool process), restart. Returns the run
/// id and the `outcome_unknown` approval's id.
async fn killed_mid_tool(w: &mut World) -> (String, String) {
    let id = start_run(&w.api, "Support", "Run the nightly job").await;
    let marker = w.path("slow.marker");
    let lines = wait_lines(&marker, 1);
    let run = get_run(&w.api, &id).await;
    assert_eq!(run["status"], "running", "{run:#}");
    assert_eq!(run["calls"][0]["state"], "executing", "{run:#}");
    assert_eq!(run["waiting_on"], "tool slow_job", "{run:#}");

    w.daemon.kill();
    // The tool runs in a process group of its own and outlives a SIGKILLed daemon: end it
    // (it is `exec sleep 30`, with the PID it wrote).
    let pid: i32 = lines[0]
        .strip_prefix("started ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("marker line {:?}", lines[0]));
    // SAFETY: kill(2) on the sleep our test's tool started; it takes no pointers.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    w.daemon = w.ws.start();
    w.api = w.daemon.api();

    let run = wait_status(&w.api, &id, "pending_approval").await;
    assert_eq!(run["calls"][0]["state"], "outcome_unknown", "{run:#}");
    assert_eq!(run["calls"][0]["call_id"], "job_1", "{run:#}");
    let [approval_id] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    // The restarted daemon's log says so (issue 11: recoveries are not silent). The line is
    // written before the API answers; the reader of its stderr may still be catching up.
    let said = format!(
        "slow_job was running when gatehouse stopped; its outcome is unknown, so it will not \
         run again unless a reviewer approves {approval_id}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !w.daemon.stderr().contains(&said) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            w.daemon.stderr()
        );
        tokio::task::yield_now().await;
    }
    let a = w.api.approval(&approval_id).await;
    assert_eq!(a["outcome_unknown"], true, "{a:#}");
    assert_eq!(a["status"], "pending", "{a:#}");
    assert_eq!(a["tool"], "slow_job", "{a:#}");
    assert_eq!(a["run_id"], id, "{a:#}");
    assert_eq!(a["arguments"], json!({"job": "nightly"}), "{a:#}");
    assert!(
        a["reasoning"].as_str().unwrap().contains("OUTCOME UNKNOWN"),
        "{a:#}"
    );
    // Never re-run on its own.
    assert_eq!(
        text_lines(&marker).len(),
        1,
        "the tool was re-run at restart"
    );
    assert_eq!(w.model.count(), 1);
    (id, approval_id)
}

#[tokio::test]
async fn an_approval_that_fell_due_while_the_daemon_was_down_expires_and_the_run_goes_on() {
    let model = ModelServer::scripted(vec![
        Reply::tools(
            Some("A wire."),
            &[call("w1", "wire_money", json!({"amount": 10}))],
        ),
        Reply::text("The wire timed out."),
    ]);
    let ws = Workspace::new();
    ws.write_config(&config(ws.dir.path(), &model, &wires_config(ws.dir.path())));
    let mut d = ws.start();
    let id = start_run(&d.api(), "Payer", "Wire 10").await;
    let run = wait_status(&d.api(), &id, "pending_approval").await;
    let [aid] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();
    let expires_at = d.api().approval(&aid).await["expires_at"].clone();
    d.kill();
    // Time must really pass (the deadline is wall-clock and persisted): down until just past
    // the approval's `expires_at` (1 s after its creation).
    tokio::time::sleep(waiting::until_past(&expires_at, Duration::from_millis(100))).await;
    let d = ws.start();
    let api = d.api();
    let run = wait_status(&api, &id, "completed").await;
    assert_eq!(run["output"], "The wire timed out.");
    assert_eq!(api.approval(&aid).await["status"], "expired");
    assert!(!ws.dir.path().join("wires.log").exists());
    let m = last_message(&model.requests()[1]);
    assert_eq!(m["tool_call_id"], "w1");
    assert!(
        m["content"]
            .as_str()
            .unwrap()
            .starts_with("No reviewer decided in time"),
        "{m}"
    );
}

fn slow_job_script() -> Vec<Reply> {
    vec![
        Reply::tools(
            Some("Starting the job."),
            &[call("job_1", "slow_job", json!({"job": "nightly"}))],
        ),
        Reply::text("Reported on the job."),
    ]
}

#[tokio::test]
async fn kill_while_a_tool_runs_then_deny_reports_failure_to_the_model() {
    let mut w = world(slow_job_script());
    let (id, approval_id) = killed_mid_tool(&mut w).await;
    let r = decide(
        &w.api,
        &approval_id,
        json!({"decision": "deny", "reason": "it already ran"}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let run = wait_status(&w.api, &id, "completed").await;
    assert_eq!(run["output"], "Reported on the job.");
    assert_eq!(
        text_lines(&w.path("slow.marker")).len(),
        1,
        "a denied retry ran"
    );
    let reqs = w.model.requests();
    assert_eq!(reqs.len(), 2);
    let m = last_message(&reqs[1]);
    assert_eq!(m["role"], "tool");
    assert_eq!(m["tool_call_id"], "job_1");
    let content = m["content"].as_str().unwrap();
    assert!(
        content.contains("outcome of this call is unknown") && content.contains("it already ran"),
        "{content}"
    );
}

#[tokio::test]
async fn kill_while_a_tool_runs_then_approve_runs_it_again() {
    let mut w = world(slow_job_script());
    let (id, approval_id) = killed_mid_tool(&mut w).await;
    let r = decide(&w.api, &approval_id, json!({"decision": "approve"})).await;
    assert_eq!(r.status, 200, "{r:?}");
    let run = wait_status(&w.api, &id, "completed").await;
    assert_eq!(run["output"], "Reported on the job.");
    assert_eq!(
        text_lines(&w.path("slow.marker")).len(),
        2,
        "run again once"
    );
    assert_eq!(
        last_message(&w.model.requests()[1]),
        json!({"role": "tool", "tool_call_id": "job_1", "content": "job finished"})
    );
}

#[tokio::test]
async fn kill_while_the_model_thinks_asks_it_again_after_restart() {
    let mut replies = vec![
        // Never delivered: the daemon is killed while the model takes its time.
        Reply::text("lost"),
        Reply::tools(
            Some("Small refund."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "N1", "amount": 5}),
            )],
        ),
        Reply::text("Refunded N1."),
    ]
    .into_iter();
    // The first answer is held until after the kill: the model is still thinking when the
    // daemon dies.
    let thinking = Gate::new();
    let model = ModelServer::start({
        let thinking = thinking.clone();
        move |n, _| {
            let reply = replies.next().expect("a scripted reply");
            if n == 0 { reply.held(&thinking) } else { reply }
        }
    });
    let mut w = world_with(model, "");
    let id = start_run(&w.api, "Support", "Refund N1").await;
    w.model.wait_requests(1, RUN_DEADLINE);
    w.kill_and_restart();
    // Its answer now goes to a connection nobody reads.
    thinking.open();
    let run = wait_status(&w.api, &id, "completed").await;
    assert_eq!(run["output"], "Refunded N1.");
    assert_eq!(run["turns"], 2, "{run:#}");
    let reqs = w.model.requests();
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert_eq!(
        reqs[0], reqs[1],
        "the cut-short turn is asked again, as it was"
    );
    assert_eq!(w.refunds().len(), 1);
}

// ---------------------------------------------------------------------------------------
// 9. Model errors
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn model_errors_fail_runs_clearly_and_transient_ones_are_retried() {
    let auth = ModelServer::scripted(vec![Reply::error(
        401,
        "Incorrect API key provided: sk-...abc.",
        "invalid_api_key",
    )]);
    let flaky = ModelServer::scripted(vec![
        Reply::error(500, "The server had an error", "server_error"),
        Reply::text("Fine after a retry."),
    ]);
    let garbage = ModelServer::scripted(vec![Reply::raw(
        200,
        "application/json",
        "<html>this is not a completion</html>",
    )]);
    let down = ModelServer::start(|_, _| {
        Reply::error(503, "overloaded", "server_error").with_header("retry-after", "0")
    });
    let mut extra = String::new();
    for (name, server) in [
        ("auth", &auth),
        ("flaky", &flaky),
        ("garbage", &garbage),
        ("down", &down),
    ] {
        extra.push_str(&format!(
            "[models.{name}]\nkind = \"openai\"\nbase_url = {}\nmodel = \"m-{name}\"\ntimeout = \"10s\"\n\n\
             [[agents]]\nname = \"{name}-agent\"\nmodel = \"{name}\"\ntools = [\"lookup\"]\n\n",
            toml_str(&server.base_url())
        ));
    }
    let w = world_with(ModelServer::scripted(vec![]), &extra);
    let api = &w.api;
    let started = Instant::now();
    let auth_run = start_run(api, "auth-agent", "hello").await;
    let flaky_run = start_run(api, "flaky-agent", "hello").await;
    let garbage_run = start_run(api, "garbage-agent", "hello").await;
    let down_run = start_run(api, "down-agent", "hello").await;

    let run = wait_run(api, &auth_run, "finished", |r| r["status"] != "running").await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("authentication"), "{error}");
    assert!(error.contains("401"), "{error}");
    assert!(error.contains("Incorrect API key"), "{error}");
    assert_eq!(auth.count(), 1, "a 401 is not retried");

    let run = wait_run(api, &flaky_run, "finished", |r| r["status"] != "running").await;
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(run["output"], "Fine after a retry.");
    let reqs = flaky.requests();
    assert_eq!(reqs.len(), 2, "one retry after the 500");
    assert_eq!(reqs[0], reqs[1], "the retry sends the same request");

    let run = wait_run(api, &garbage_run, "finished", |r| r["status"] != "running").await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("malformed"), "{error}");
    assert_eq!(garbage.count(), 1, "a malformed answer is not retried");

    let run = wait_run(api, &down_run, "finished", |r| r["status"] != "running").await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("after 4 attempts") && error.contains("503"),
        "{error}"
    );
    assert_eq!(down.count(), 4);
    // Retry-After: 0 is honoured, so four attempts take no backoff time to speak of.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    // Failures are run ends in the audit log, with the error.
    let audit = api.audit_all().await;
    let ended: Vec<&Value> = audit
        .iter()
        .filter(|r| r["kind"] == "run.ended" && r["run_id"] == auth_run.as_str())
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["details"]["run"]["status"], "failed");
}

// ---------------------------------------------------------------------------------------
// 10. Cancel
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn cancelling_a_paused_run_cancels_its_approval() {
    let w = world(vec![Reply::tools(
        Some("Refund."),
        &[call(
            "c1",
            "issue_refund",
            json!({"order_id": "G1", "amount": 700}),
        )],
    )]);
    let api = &w.api;
    let id = start_run(api, "Support", "Refund G1").await;
    let run = wait_status(api, &id, "pending_approval").await;
    let [approval_id] = <[String; 1]>::try_from(pending_ids(&run, 1)).unwrap();

    // Another agent may not see (or cancel) it.
    let r = api
        .post(Some(BOT2), &format!("/v1/runs/{id}/cancel"), &json!({}))
        .await;
    r.expect_error(404);
    // The agent that started it may.
    let r = api
        .post(Some(BOT), &format!("/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "cancelled", "{r:?}");

    let run = get_run(api, &id).await;
    assert_eq!(run["status"], "cancelled", "{run:#}");
    assert_eq!(run["pending"], json!([]), "{run:#}");
    assert!(run["waiting_on"].is_null(), "{run:#}");
    let a = api.approval(&approval_id).await;
    assert_eq!(a["status"], "cancelled", "{a:#}");
    assert_eq!(a["decision"]["by"], "billing-bot", "{a:#}");
    assert!(
        !api.list_all("pending")
            .await
            .iter()
            .any(|p| p["id"] == approval_id.as_str())
    );

    let again = api
        .post(Some(ALICE), &format!("/v1/runs/{id}/cancel"), &json!({}))
        .await;
    again.expect_error(409);
    let late = decide(api, &approval_id, json!({"decision": "approve"})).await;
    late.expect_error(409);
    assert!(w.refunds().is_empty());
    assert_eq!(w.model.count(), 1);
    let unknown = api
        .post(
            Some(ALICE),
            "/v1/runs/00000000-0000-7000-8000-000000000000/cancel",
            &json!({}),
        )
        .await;
    unknown.expect_error(404);
}
