//! `GET /v1/events` names where the stream starts (`X-Gatehouse-Position`), so a remote
//! console that loses its link before the first event resumes from there, never replaying the
//! whole audit log (issue 14 item 6).

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn the_event_stream_names_its_starting_position() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    for user in ["U-1", "U-2", "U-3"] {
        let a = api
            .submit_pending(BOT, "delete_user_account", json!({ "user_id": user }))
            .await;
        let id = a["id"].as_str().expect("an id");
        assert_eq!(api.decide(ALICE, id, "deny", Some("no")).await.status, 200);
    }
    let audit = api.get(Some(ALICE), "/v1/audit?limit=1000").await;
    let newest = audit.body["records"]
        .as_array()
        .and_then(|r| r.last())
        .and_then(|r| r["seq"].as_u64())
        .expect("records");
    assert!(newest >= 6, "{newest}");

    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let resp = http
        .get(api.url("/v1/events"))
        .bearer_auth(ALICE)
        .send()
        .await
        .expect("events answer");
    assert_eq!(resp.status(), 200);
    let position: u64 = resp.headers()["x-gatehouse-position"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a sequence number");
    assert_eq!(position, newest);
}
