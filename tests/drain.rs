//! `gatehouse serve` drains on SIGTERM (DESIGN §4a, issue 14): requests in flight are
//! answered, long polls return what they have, event streams end, then the runner stops and
//! nothing acknowledged is lost.

mod common;

use common::sse::SseStream;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// Open subscriptions (long polls, event streams) as `/metrics` counts them.
async fn subscribers(api: &Api) -> u64 {
    let r = api.get(Some(ALICE), "/metrics").await;
    let text = r.body.as_str().expect("metrics text").to_string();
    // Event streams hold a subscription; long polls a waiter on their approval.
    [
        "gatehouse_event_subscribers ",
        "gatehouse_approval_waiters ",
    ]
    .iter()
    .map(|g| {
        text.lines()
            .find_map(|l| l.strip_prefix(g))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no gauge {g} in:\n{text}"))
    })
    .sum()
}

#[tokio::test]
async fn sigterm_answers_long_polls_and_ends_event_streams() {
    let ws = Workspace::new();
    let mut d = ws.start();
    let api = d.api();
    let a = api
        .submit_pending(BOT, "delete_user_account", json!({"user_id": "U-1"}))
        .await;
    let id = a["id"].as_str().expect("an id").to_string();

    let mut events = SseStream::connect(&api, None).await;
    let poll = tokio::spawn({
        let api = api.clone();
        let id = id.clone();
        async move {
            api.get(Some(BOT), &format!("/v1/approvals/{id}?wait=60"))
                .await
        }
    });
    // Both are held open by the daemon before it is told to stop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscribers(&api).await < 2 {
        assert!(
            Instant::now() < deadline,
            "the long poll never reached the daemon"
        );
        tokio::task::yield_now().await;
    }

    let started = Instant::now();
    let stopper = std::thread::spawn(move || d.stop());
    let answered = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the long poll is answered while draining, not after its 60 s")
        .expect("the poll task");
    assert_eq!(answered.status, 200, "{answered:?}");
    assert_eq!(answered.body["status"], "pending", "{answered:?}");
    assert!(
        events.ends_within(Duration::from_secs(10)).await,
        "the event stream was left open"
    );
    let status = stopper.join().expect("the stopping thread");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // Nothing acknowledged is lost: the approval is pending after a restart.
    let d = ws.start();
    let again = d.api().approval(&id).await;
    assert_eq!(again["status"], "pending", "{again}");
}
