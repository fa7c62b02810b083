//! `POST /v1/approvals/{id}/cancel` (DESIGN §10): a submitter withdraws its own pending
//! approval, so no reviewer approves a call nobody waits for any more.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn only_the_submitter_cancels_its_own_pending_approval() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let a = api
        .submit_pending(
            BOT,
            "issue_refund",
            json!({"order_id": "A-1", "amount": 500}),
        )
        .await;
    let id = a["id"].as_str().expect("an id").to_string();
    let path = format!("/v1/approvals/{id}/cancel");

    // Another agent learns nothing (404), a reviewer has no business cancelling (403).
    let r = api.post(Some(BOT2), &path, &json!({})).await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = api.post(Some(ALICE), &path, &json!({})).await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = api.get(Some(ALICE), &format!("/v1/approvals/{id}")).await;
    assert_eq!(r.body["status"], "pending", "{r:?}");

    let r = api.post(Some(BOT), &path, &json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["decision"]["by"], "billing-bot");

    // Cancelled is final: a reviewer's approval and a second cancel are refused.
    let r = api
        .post(
            Some(ALICE),
            &format!("/v1/approvals/{id}/decision"),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.body["error"]["code"], "already_decided", "{r:?}");
    let r = api.post(Some(BOT), &path, &json!({})).await;
    assert_eq!(r.status, 409, "{r:?}");

    // The audit log says who cancelled it.
    let audit = api.get(Some(ALICE), "/v1/audit?limit=100").await;
    let records = audit.body["records"].as_array().expect("records").clone();
    let cancelled = records_of(&records, "approval.cancelled", &id);
    assert_eq!(cancelled.len(), 1, "{records:?}");
    assert_eq!(cancelled[0]["actor"], "billing-bot");
    assert_chain(&records);
}
