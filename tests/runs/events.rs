//! Run events on the SSE stream, and `max_turns`.

use super::*;

// ---------------------------------------------------------------------------------------
// 12. Events
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn events_carry_run_updates() {
    let w = world(vec![
        Reply::tools(
            Some("Refund."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "J1", "amount": 400}),
            )],
        ),
        Reply::text("Done with J1."),
    ]);
    let api = &w.api;
    let mut events = SseStream::connect(api, None).await;
    let id = start_run(api, "Support", "Refund J1").await;

    let mut seen: Vec<Sse> = Vec::new();
    let deadline = tokio::time::Instant::now() + RUN_DEADLINE;
    let mut decided = false;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let e = events
            .next(left)
            .await
            .unwrap_or_else(|| panic!("no completion event; saw {:#?}", kinds(&seen)));
        let run_event = e.data["run"]["run_id"] == id.as_str();
        if run_event && e.data["run"]["status"] == "pending_approval" && !decided {
            decided = true;
            let aid = e.data["run"]["pending"][0].as_str().unwrap().to_string();
            let r = decide(api, &aid, json!({"decision": "approve"})).await;
            assert_eq!(r.status, 200, "{r:?}");
        }
        let finished = run_event && e.data["run"]["status"] == "completed";
        seen.push(e);
        if finished {
            break;
        }
    }
    assert!(decided, "never saw the run pause: {:#?}", kinds(&seen));
    // Ids strictly increase.
    assert!(seen.windows(2).all(|p| p[0].id < p[1].id));
    let of_run: Vec<&Sse> = seen
        .iter()
        .filter(|e| e.data["run"]["run_id"] == id.as_str())
        .collect();
    // Every run change is a `run.updated` event (the audit kind is inside).
    assert!(of_run.iter().all(|e| e.event == "run.updated"));
    for e in &of_run {
        assert_eq!(e.data["seq"].as_u64(), Some(e.id));
    }
    let kinds_of_run: Vec<&str> = of_run
        .iter()
        .map(|e| e.data["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds_of_run.first(),
        Some(&"run.started"),
        "{kinds_of_run:?}"
    );
    assert!(kinds_of_run.contains(&"tool.executed"), "{kinds_of_run:?}");
    assert_eq!(kinds_of_run.last(), Some(&"run.ended"), "{kinds_of_run:?}");
    let statuses: Vec<&str> = of_run
        .iter()
        .map(|e| e.data["run"]["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"running"), "{statuses:?}");
    assert!(statuses.contains(&"pending_approval"), "{statuses:?}");
    // The approval's own events are there too, about the run.
    assert!(
        seen.iter()
            .any(|e| e.event == "approval.created" && e.data["approval"]["run_id"] == id.as_str())
    );
    assert!(
        seen.iter()
            .any(|e| e.event == "approval.decided" && e.data["approval"]["run_id"] == id.as_str())
    );

    // Resuming with Last-Event-ID replays the same events from the log, run ones included.
    let mut replay = SseStream::connect(api, Some(seen[0].id - 1)).await;
    for live in &seen {
        let e = replay
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("replay ended before event {}", live.id));
        assert_eq!(e.id, live.id);
        assert_eq!(e.event, live.event);
        assert_eq!(e.data["kind"], live.data["kind"]);
        assert_eq!(e.data["run"], live.data["run"], "event {}", e.id);
    }
}

fn kinds(seen: &[Sse]) -> Vec<String> {
    seen.iter()
        .map(|e| format!("{} {} {}", e.id, e.event, e.data["run"]["status"]))
        .collect()
}

// ---------------------------------------------------------------------------------------
// 13. max_turns
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_model_that_never_answers_stops_at_max_turns() {
    let model = ModelServer::start(|n, _| {
        Reply::tools(
            Some("Let me look again."),
            &[call(&format!("look_{n}"), "lookup", json!({"q": "more"}))],
        )
    });
    let w = world_with(model, "");
    let api = &w.api;
    let id = start_run(api, "Looper", "Find it").await;
    let run = wait_run(api, &id, "finished", |r| {
        ["completed", "failed", "cancelled"].contains(&r["status"].as_str().unwrap())
    })
    .await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("max_turns = 3"), "{error}");
    assert!(error.contains("3 turns"), "{error}");
    assert_eq!(run["turns"], 3);
    assert_eq!(w.model.count(), 3, "the model is asked max_turns times");
    assert_eq!(
        json_lines(&w.path("lookups.log")).len(),
        3,
        "the tool ran each turn"
    );
    assert!(
        approvals_of_run(api, &id).await.is_empty(),
        "needs_approval = false"
    );
}
