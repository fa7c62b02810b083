//! Exact arguments (DESIGN §9): what the reviewer sees, what the hash covers and what runs are
//! the same bytes, so a body with an integer past ±(2^53−1) or a key given twice in an object
//! is refused with 422 naming the JSON path, and changes nothing.

mod common;

use common::*;
use serde_json::json;

const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn inexact_submissions_are_refused_with_their_path() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();

    let cases: [(&str, &str, &str); 6] = [
        (
            r#"{"tool": "transfer", "arguments": {"to_account": 9007199254740993}}"#,
            "integer_out_of_range",
            "arguments.to_account: ",
        ),
        (
            r#"{"tool": "transfer", "arguments": {"to_account": -9007199254740992}}"#,
            "integer_out_of_range",
            "arguments.to_account: ",
        ),
        (
            r#"{"tool": "transfer", "arguments": {"items": [{"id": 1}, {"id": 2}, {"id": 123456789012345678901234567890}]}}"#,
            "integer_out_of_range",
            "arguments.items[2].id: ",
        ),
        (
            r#"{"tool": "issue_refund", "arguments": {"order_id": "A-1", "amount": 900, "amount": 10}}"#,
            "duplicate_key",
            "arguments.amount: ",
        ),
        // The same key spelled with an escape is still the same key.
        (
            r#"{"tool": "issue_refund", "arguments": {"order": {"amount": 900, "\u0061mount": 10}}}"#,
            "duplicate_key",
            "arguments.order.amount: ",
        ),
        // At any depth, and keys that are not names are quoted.
        (
            r#"{"tool": "x", "arguments": {"rows": [[{"a b": 1, "a b": 2}]]}}"#,
            "duplicate_key",
            r#"arguments.rows[0][0]["a b"]: "#,
        ),
    ];
    for (body, code, path) in cases {
        let r = api
            .post_raw(Some(BOT), "/v1/approvals", JSON, body.as_bytes().to_vec())
            .await;
        assert_eq!(r.expect_error(422), code, "{body}: {r:?}");
        assert!(r.message().starts_with(path), "{body}: {}", r.message());
    }
    // Nothing was created.
    assert!(api.list_all("all").await.is_empty());

    // The largest exact integers pass, and two neighbours get different hashes.
    let a = api
        .submit_pending(BOT, "transfer", json!({"to_account": 9007199254740991_i64}))
        .await;
    let b = api
        .submit_pending(BOT, "transfer", json!({"to_account": 9007199254740990_i64}))
        .await;
    assert_ne!(a["arguments_sha256"], b["arguments_sha256"]);
    assert_eq!(
        a["arguments_sha256"],
        sha256_hex(r#"{"to_account":9007199254740991}"#)
    );
    assert_eq!(a["arguments"]["to_account"], 9007199254740991_i64);

    // Malformed JSON stays a 400, even when it also holds a duplicate key.
    let r = api
        .post_raw(
            Some(BOT),
            "/v1/approvals",
            JSON,
            br#"{"tool": "x", "arguments": {"a": 1, "a": 2}"#.to_vec(),
        )
        .await;
    assert_eq!(r.expect_error(400), "malformed_json", "{r:?}");
}

#[tokio::test]
async fn an_idempotent_replay_cannot_swap_in_a_neighbouring_integer() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let first = api
        .submit(
            BOT,
            &json!({"tool": "transfer", "arguments": {"to_account": 9007199254740991_i64},
                    "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    let r = api
        .post_raw(
            Some(BOT),
            "/v1/approvals",
            JSON,
            br#"{"tool": "transfer", "arguments": {"to_account": 9007199254740993}, "idempotency_key": "k1"}"#
                .to_vec(),
        )
        .await;
    assert_eq!(r.expect_error(422), "integer_out_of_range", "{r:?}");
}

#[tokio::test]
async fn edited_arguments_in_a_decision_are_checked_too() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let r = api
        .submit(
            BOT,
            &json!({"tool": "issue_refund", "arguments": {"order_id": "E-1", "amount": 120},
                    "editable": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.id();
    let path = format!("/v1/approvals/{id}/decision");
    for (body, code, at) in [
        (
            r#"{"decision": "approve", "arguments": {"order_id": "E-1", "amount": 30, "amount": 3000}}"#,
            "duplicate_key",
            "arguments.amount: ",
        ),
        (
            r#"{"decision": "approve", "arguments": {"order_id": "E-1", "amount": 90071992547409930}}"#,
            "integer_out_of_range",
            "arguments.amount: ",
        ),
    ] {
        let r = api
            .post_raw(Some(ALICE), &path, JSON, body.as_bytes().to_vec())
            .await;
        assert_eq!(r.expect_error(422), code, "{body}: {r:?}");
        assert!(r.message().starts_with(at), "{}", r.message());
    }
    let a = api.approval(&id).await;
    assert_eq!(a["status"], "pending", "{a}");
    assert_eq!(a["arguments"], json!({"order_id": "E-1", "amount": 120}));

    // A run's body goes through the same door.
    let r = api
        .post_raw(
            Some(BOT),
            "/v1/runs",
            JSON,
            br#"{"agent": "a", "input": "one", "input": "two"}"#.to_vec(),
        )
        .await;
    r.expect_error(422);
    assert!(r.message().contains("input"), "{r:?}");
}
