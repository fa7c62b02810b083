//! `[server] max_waits_per_identity` (DESIGN §9): one identity's long polls and event streams
//! are capped, so an agent token cannot hold every connection; others are unaffected.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// Open subscriptions (long polls, event streams) as `/metrics` counts them.
async fn subscribers(api: &Api) -> u64 {
    let r = api.get(Some(ALICE), "/metrics").await;
    let text = r.body.as_str().expect("metrics text").to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("gatehouse_event_subscribers "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no subscriber gauge in:\n{text}"))
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
