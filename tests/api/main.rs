//! The HTTP API (DESIGN §4, §4a) against the real daemon: every route, every error status,
//! idempotency, racing reviewers, long polls, Server-Sent Events and the audit chain.

#[path = "../common/mod.rs"]
mod common;
mod refusals;
mod streams;

use common::sse::SseStream;
use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

fn ids(list: &Value) -> Vec<String> {
    list["approvals"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|a| a["id"].as_str().expect("an id").to_string())
        .collect()
}

#[tokio::test]
async fn submit_get_and_list() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();

    // 201: the refund policy asks for amounts of 50 and more, in queue `primary`.
    let r = api
        .submit(
            BOT,
            &json!({
                "tool": "issue_refund",
                "arguments": {"order_id": "A-1", "amount": 120},
                "reasoning": "the customer was charged twice",
                "agent": "CustomerServiceAgent",
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let big = r.body.clone();
    assert_eq!(big["status"], "pending");
    assert_eq!(big["decision"], Value::Null);
    assert_eq!(big["queue"], "primary");
    assert_eq!(big["tool"], "issue_refund");
    assert_eq!(big["agent"], "CustomerServiceAgent");
    assert_eq!(big["requested_by"], "billing-bot");
    assert_eq!(big["reasoning"], "the customer was charged twice");
    assert_eq!(big["arguments"], json!({"order_id": "A-1", "amount": 120}));
    assert_eq!(big["policy"]["name"], "refunds");
    assert!(big["expires_at"].is_string(), "{big}");
    // RFC 8785: sorted keys, no whitespace.
    assert_eq!(
        big["arguments_sha256"],
        sha256_hex(r#"{"amount":120,"order_id":"A-1"}"#)
    );
    let big_id = big["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&big_id).is_ok(), "{big_id}");

    // 200: the policy approves small refunds at once.
    let r = api
        .submit(
            BOT,
            &json!({"tool": "issue_refund", "arguments": {"order_id": "A-2", "amount": 20}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "approved");
    assert_eq!(r.body["decision"]["by"], "policy:refunds");
    assert!(
        !r.body["decision"]["reason"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{r:?}"
    );
    let small_id = r.id();

    // No matching policy: asks, in the default queue; a requested queue is honoured when
    // the operator configured it (DESIGN §9), and refused with 422 naming it otherwise.
    let del = api
        .submit_pending(BOT, "delete_user_account", json!({"user": "u-9"}))
        .await;
    assert_eq!(del["queue"], "default");
    let r = api
        .submit(
            BOT,
            &json!({"tool": "deploy", "arguments": {"env": "prod"}, "queue": "ops", "timeout": "90s"}),
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("\"ops\""),
        "{r:?}"
    );
    let r = api
        .submit(
            BOT,
            &json!({"tool": "deploy", "arguments": {"env": "prod"}, "queue": "primary", "timeout": "90s"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["queue"], "primary");
    let deploy_id = r.id();

    // GET: the same object; the submitter may read its own, another agent may not.
    let got = api.approval(&big_id).await;
    assert_eq!(got, big);
    let r = api.get(Some(BOT), &format!("/v1/approvals/{big_id}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["id"], big_id.as_str());
    api.get(Some(BOT2), &format!("/v1/approvals/{big_id}"))
        .await
        .expect_error(404);
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(
        api.get(Some(ALICE), &format!("/v1/approvals/{unknown}"))
            .await
            .expect_error(404),
        "not_found"
    );
    api.get(Some(ALICE), "/v1/approvals/not-an-id")
        .await
        .expect_error(404);
    api.get(Some(ALICE), "/v1/nothing-here")
        .await
        .expect_error(404);

    // Lists: pending by default, and filters by status and queue.
    let r = api.get(Some(ALICE), "/v1/approvals").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        ids(&r.body),
        vec![
            big_id.clone(),
            del["id"].as_str().unwrap().into(),
            deploy_id.clone()
        ]
    );
    assert_eq!(r.body["next"], Value::Null);
    let r = api.get(Some(ALICE), "/v1/approvals?status=approved").await;
    assert_eq!(ids(&r.body), vec![small_id.clone()]);
    let r = api.get(Some(ALICE), "/v1/approvals?status=denied").await;
    assert_eq!(r.body, json!({"approvals": [], "next": null}));
    let r = api.get(Some(ALICE), "/v1/approvals?status=all").await;
    assert_eq!(ids(&r.body).len(), 4, "{r:?}");
    let r = api.get(Some(ALICE), "/v1/approvals?queue=primary").await;
    assert_eq!(ids(&r.body), vec![big_id.clone(), deploy_id.clone()]);
    let r = api.get(Some(ALICE), "/v1/approvals?queue=default").await;
    assert_eq!(ids(&r.body), vec![del["id"].as_str().unwrap().to_string()]);
    let r = api
        .get(Some(ALICE), "/v1/approvals?queue=primary&status=approved")
        .await;
    assert_eq!(ids(&r.body), Vec::<String>::new());

    // Paging with `limit`, `after` and `next`, in creation order.
    let mut paged = Vec::new();
    for i in 0..5 {
        let a = api.submit_pending(BOT, "page_tool", json!({"i": i})).await;
        paged.push(a["id"].as_str().unwrap().to_string());
    }
    for status in ["pending", "all"] {
        let mut seen = Vec::new();
        let mut path = format!("/v1/approvals?queue=default&status={status}&limit=2");
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(pages <= 10, "paging does not end");
            let r = api.get(Some(ALICE), &path).await;
            assert_eq!(r.status, 200, "{r:?}");
            let page = ids(&r.body);
            assert!(page.len() <= 2, "{r:?}");
            seen.extend(page.clone());
            match r.body["next"].as_str() {
                Some(next) => {
                    assert_eq!(Some(next), page.last().map(String::as_str));
                    path =
                        format!("/v1/approvals?queue=default&status={status}&limit=2&after={next}");
                }
                None => break,
            }
        }
        // The policy-approved refund asked for no queue either: it is in `default` too.
        let mut expected = Vec::new();
        if status == "all" {
            expected.push(small_id.clone());
        }
        expected.push(del["id"].as_str().unwrap().to_string());
        expected.extend(paged.clone());
        assert_eq!(seen, expected, "status={status}");
        assert_eq!(pages, expected.len().div_ceil(2), "status={status}");
    }

    // Bad list queries are 422.
    for q in [
        "status=bogus",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "after=not-an-id",
        "colour=blue",
    ] {
        api.get(Some(ALICE), &format!("/v1/approvals?{q}"))
            .await
            .expect_error(422);
    }
}

#[tokio::test]
async fn decisions_conflicts_and_hashes() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let a = api
        .submit_pending(
            BOT,
            "issue_refund",
            json!({"order_id": "B-1", "amount": 500}),
        )
        .await;
    let id = a["id"].as_str().unwrap().to_string();

    let r = api
        .decide(ALICE, &id, "approve", Some("checked the order"))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["status"], "approved");
    assert_eq!(r.body["decision"]["by"], "alice");
    assert_eq!(r.body["decision"]["reason"], "checked the order");
    let standing = r.body.clone();

    // A second decision: 409, carrying the decision that stands, and nothing changes.
    for (token, verdict) in [(BOB, "deny"), (ALICE, "approve"), (ROOT, "deny")] {
        let r = api.decide(token, &id, verdict, Some("too late")).await;
        assert_eq!(r.expect_error(409), "already_decided");
        assert_eq!(r.body["approval"], standing, "{r:?}");
    }
    assert_eq!(api.approval(&id).await, standing);

    // arguments_sha256 must match the arguments (case-insensitive hex).
    let b = api
        .submit_pending(
            BOT,
            "issue_refund",
            json!({"order_id": "B-2", "amount": 75}),
        )
        .await;
    let bid = b["id"].as_str().unwrap().to_string();
    let path = format!("/v1/approvals/{bid}/decision");
    let r = api
        .post(
            Some(ALICE),
            &path,
            &json!({"decision": "approve", "arguments_sha256": sha256_hex("{}")}),
        )
        .await;
    assert_eq!(r.expect_error(409), "arguments_mismatch");
    assert_eq!(r.body["approval"], b);
    assert_eq!(api.approval(&bid).await, b);
    let r = api
        .post(
            Some(ALICE),
            &path,
            &json!({"decision": "approve", "arguments_sha256": "abc"}),
        )
        .await;
    r.expect_error(422);
    assert_eq!(api.approval(&bid).await, b);
    let sha = b["arguments_sha256"].as_str().unwrap().to_uppercase();
    let r = api
        .post(
            Some(BOB),
            &path,
            &json!({"decision": "deny", "reason": "amount looks wrong", "arguments_sha256": sha}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "denied");
    assert_eq!(r.body["decision"]["by"], "bob");

    // A policy decision stands like any other.
    let p = api
        .submit(
            BOT,
            &json!({"tool": "issue_refund", "arguments": {"order_id": "B-3", "amount": 5}}),
        )
        .await;
    assert_eq!(p.status, 200, "{p:?}");
    let r = api.decide(ALICE, &p.id(), "deny", Some("no")).await;
    r.expect_error(409);
    assert_eq!(r.body["approval"]["decision"]["by"], "policy:refunds");

    // 404 for unknown approvals.
    let unknown = uuid::Uuid::now_v7().to_string();
    api.decide(ALICE, &unknown, "approve", None)
        .await
        .expect_error(404);
    api.decide(ALICE, "not-an-id", "approve", None)
        .await
        .expect_error(404);
    api.get(Some(ALICE), &format!("/v1/approvals/{id}/decision"))
        .await
        .expect_error(405);

    // Exactly one decided record per approval, none for the refused attempts.
    let audit = api.audit_all().await;
    assert_eq!(records_of(&audit, "approval.decided", &id).len(), 1);
    assert_eq!(records_of(&audit, "approval.decided", &bid).len(), 1);
    assert_eq!(records_of(&audit, "approval.decided", &p.id()).len(), 1);
    assert_chain(&audit);
}

#[tokio::test]
async fn idempotency_keys() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let body = json!({
        "tool": "issue_refund",
        "arguments": {"order_id": "I-1", "amount": 300},
        "idempotency_key": "retry-me",
    });
    let first = api.submit(BOT, &body).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert!(first.headers.get("idempotent-replayed").is_none());
    let id = first.id();

    // The same key and body from the same identity: the first approval, again and again.
    for _ in 0..3 {
        let again = api.submit(BOT, &body).await;
        assert_eq!(again.status, 201, "{again:?}");
        assert_eq!(again.body, first.body);
        assert_eq!(again.headers["idempotent-replayed"], "true");
    }
    // Concurrent retries too.
    let retries = futures::future::join_all((0..8).map(|_| api.submit(BOT, &body))).await;
    for r in &retries {
        assert_eq!(r.id(), id, "{r:?}");
    }
    // The same key from another identity is another approval.
    let other = api.submit(BOT2, &body).await;
    assert_eq!(other.status, 201, "{other:?}");
    assert_ne!(other.id(), id);
    assert_eq!(other.body["requested_by"], "other-bot");
    // The same key with different arguments, or another tool, is refused.
    let mut changed = body.clone();
    changed["arguments"]["amount"] = json!(301);
    let r = api.submit(BOT, &changed).await;
    r.expect_error(422);
    assert!(r.message().contains("idempotency_key"), "{r:?}");
    let mut changed = body.clone();
    changed["tool"] = json!("issue_credit");
    api.submit(BOT, &changed).await.expect_error(422);

    let pending = api.list_all("pending").await;
    let listed: Vec<&str> = pending.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![id.as_str(), other.id().as_str()]);
    let audit = api.audit_all().await;
    assert_eq!(records_of(&audit, "approval.created", &id).len(), 1);

    // After a decision the key still answers with the approval, now decided.
    let r = api.decide(ALICE, &id, "deny", Some("duplicate")).await;
    assert_eq!(r.status, 200);
    let again = api.submit(BOT, &body).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.id(), id);
    assert_eq!(again.body["status"], "denied");

    // A policy-decided submission is idempotent as well.
    let small = json!({
        "tool": "issue_refund",
        "arguments": {"order_id": "I-2", "amount": 3},
        "idempotency_key": "small",
    });
    let a = api.submit(BOT, &small).await;
    let b = api.submit(BOT, &small).await;
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(a.body, b.body);
    assert_eq!(api.list_all("approved").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_reviewers_get_one_200_and_one_409() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let mut ids = Vec::new();
    for i in 0..20 {
        let a = api
            .submit_pending(
                BOT,
                "issue_refund",
                json!({"order_id": format!("R-{i}"), "amount": 100 + i}),
            )
            .await;
        ids.push(a["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let (x, y) = (api.clone(), api.clone());
        let (i1, i2) = (id.clone(), id.clone());
        let alice = tokio::spawn(async move { x.decide(ALICE, &i1, "approve", Some("a")).await });
        let bob = tokio::spawn(async move { y.decide(BOB, &i2, "deny", Some("b")).await });
        let (ra, rb) = (alice.await.unwrap(), bob.await.unwrap());
        let mut statuses = [ra.status, rb.status];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "{ra:?} {rb:?}");
        let (winner, loser) = if ra.status == 200 { (ra, rb) } else { (rb, ra) };
        assert_eq!(loser.expect_error(409), "already_decided");
        assert_eq!(
            loser.body["approval"], winner.body,
            "the 409 carries the standing decision"
        );
        assert_eq!(api.approval(id).await, winner.body);
    }
    let audit = api.audit_all().await;
    for id in &ids {
        assert_eq!(
            records_of(&audit, "approval.decided", id).len(),
            1,
            "approval {id}"
        );
    }
    assert_chain(&audit);
    assert!(api.list_all("pending").await.is_empty());
}
