//! `[server] max_waits_per_identity` (DESIGN §9): one identity's long polls and event streams
//! are capped, so an agent token cannot hold every connection; others are unaffected.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// A gauge of `/metrics`.
async fn gauge(api: &Api, name: &str) -> u64 {
    let r = api.get(Some(ALICE), "/metrics").await;
    let text = r.body.as_str().expect("metrics text").to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no gauge {name} in:\n{text}"))
}

/// Open waits: event streams hold a subscription, long polls a waiter on their approval.
async fn subscribers(api: &Api) -> u64 {
    gauge(api, "gatehouse_event_subscribers").await + waiters(api).await
}

async fn waiters(api: &Api) -> u64 {
    gauge(api, "gatehouse_approval_waiters").await
}

/// Waits until `/metrics` counts `n` long polls waiting.
async fn until_waiters(api: &Api, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while waiters(api).await != n {
        assert!(
            Instant::now() < deadline,
            "waiters stayed at {} instead of {n}",
            waiters(api).await
        );
        tokio::task::yield_now().await;
    }
}

/// A long poll of `id` by `token`, started in the background, with how long it took.
fn poll(
    api: &Api,
    token: &'static str,
    id: &str,
    wait: u32,
) -> tokio::task::JoinHandle<(Resp, Duration)> {
    let (api, path) = (api.clone(), format!("/v1/approvals/{id}?wait={wait}"));
    tokio::spawn(async move {
        let started = Instant::now();
        let r = api.get(Some(token), &path).await;
        (r, started.elapsed())
    })
}

#[tokio::test]
async fn one_identity_cannot_hold_more_than_its_waits() {
    let ws = Workspace::new();
    ws.write_config(&config_text().replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nmax_waits_per_identity = 2",
    ));
    let d = ws.start();
    let api = d.api();
    let a = api
        .submit_pending(BOT, "delete_user_account", json!({"user_id": "U-1"}))
        .await;
    let id = a["id"].as_str().expect("an id").to_string();
    let path = format!("/v1/approvals/{id}?wait=30");

    let polls: Vec<_> = (0..2)
        .map(|_| {
            let (api, path) = (api.clone(), path.clone());
            tokio::spawn(async move { api.get(Some(BOT), &path).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscribers(&api).await < 2 {
        assert!(Instant::now() < deadline, "the long polls never arrived");
        tokio::task::yield_now().await;
    }

    // A third wait of the same identity is refused at once, with when to retry.
    let r = api.get(Some(BOT), &path).await;
    assert_eq!(r.expect_error(429), "too_many_waits", "{r:?}");
    assert_eq!(r.headers["retry-after"], "1", "{r:?}");
    // The MCP gateway's requests count too (checked before anything else about them).
    let r = api
        .post(
            Some(BOT),
            "/mcp",
            &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        )
        .await;
    assert_eq!(r.expect_error(429), "too_many_waits", "{r:?}");
    // Plain reads are not waits, and other identities keep their own slots.
    let r = api.get(Some(BOT), &format!("/v1/approvals/{id}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = api
        .get(Some(ALICE), &format!("/v1/approvals/{id}?wait=1"))
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    // Deciding ends the two polls; their slots come back.
    let r = api.decide(ALICE, &id, "approve", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    for p in polls {
        let r = p.await.expect("the poll task");
        assert_eq!(r.body["status"], "approved", "{r:?}");
    }
    let r = api.get(Some(BOT), &path).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// Long polls wait on their own approval only (DESIGN §4, issue 14): a decision, an expiry or a
/// cancellation of it ends them with the new status; others' decisions leave them waiting.
#[tokio::test]
async fn long_polls_wake_on_decision_expiry_and_cancel_of_their_approval() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let pending = |tool: &'static str, extra: serde_json::Value| {
        let api = api.clone();
        async move {
            let mut body = json!({"tool": tool, "arguments": {"n": 1}});
            if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            let r = api.submit(BOT, &body).await;
            assert_eq!(r.status, 201, "{r:?}");
            assert_eq!(r.body["status"], "pending", "{r:?}");
            r.id()
        }
    };
    let decided = pending("deploy", json!({})).await;
    let expiring = pending("deploy", json!({"timeout": "2s"})).await;
    let cancelled = pending("deploy", json!({})).await;
    let untouched = pending("deploy", json!({})).await;

    // Two polls on one approval, one on each other.
    let on_decided = [
        poll(&api, BOT, &decided, 60),
        poll(&api, ALICE, &decided, 60),
    ];
    let on_expiring = poll(&api, BOT, &expiring, 60);
    let on_cancelled = poll(&api, BOT, &cancelled, 60);
    let on_untouched = poll(&api, BOT, &untouched, 60);
    until_waiters(&api, 5).await;

    let r = api.decide(ALICE, &decided, "deny", Some("no")).await;
    assert_eq!(r.status, 200, "{r:?}");
    for p in on_decided {
        let (r, took) = p.await.expect("the poll task");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["status"], "denied", "{r:?}");
        assert!(took < Duration::from_secs(30), "{took:?}");
    }

    let r = api
        .post(
            Some(BOT),
            &format!("/v1/approvals/{cancelled}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let (r, _) = on_cancelled.await.expect("the poll task");
    assert_eq!(r.body["status"], "cancelled", "{r:?}");

    let (r, took) = on_expiring.await.expect("the poll task");
    assert_eq!(r.body["status"], "expired", "{r:?}");
    assert!(
        took < Duration::from_secs(30),
        "woke at expiry, not at its wait: {took:?}"
    );

    // Only the untouched approval's poll is left, still waiting.
    assert_eq!(waiters(&api).await, 1);
    assert!(!on_untouched.is_finished());
    let r = api.decide(ALICE, &untouched, "approve", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let (r, _) = on_untouched.await.expect("the poll task");
    assert_eq!(r.body["status"], "approved", "{r:?}");
    until_waiters(&api, 0).await;
}

/// A long poll whose approval stays pending ends at its wait with the approval as it stands,
/// and leaves no waiter behind; a poll on an approval the caller may not see is a 404.
#[tokio::test]
async fn a_long_poll_ends_at_its_wait_and_leaves_nothing_behind() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let id = api
        .submit_pending(BOT, "deploy", json!({"env": "prod"}))
        .await["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let (r, took) = poll(&api, BOT, &id, 1).await.expect("the poll task");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "pending", "{r:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "wait=1 took {took:?}"
    );
    until_waiters(&api, 0).await;

    // Another agent cannot wait on (or learn of) billing-bot's approval.
    let (r, took) = poll(&api, BOT2, &id, 5).await.expect("the poll task");
    assert_eq!(r.expect_error(404), "not_found", "{r:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(waiters(&api).await, 0);
}
