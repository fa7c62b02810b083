//! The HTTP API (DESIGN §4, §4a) against the real daemon: every route, every error status,
//! idempotency, racing reviewers, long polls, Server-Sent Events and the audit chain.

mod common;

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
async fn authentication_and_roles() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let a = api
        .submit_pending(BOT, "delete_user_account", json!({"user": "u-1"}))
        .await;
    let id = a["id"].as_str().unwrap().to_string();
    let audit_before = api.audit_all().await;

    // 401 without a token, with a wrong one, with another scheme; always with WWW-Authenticate.
    let decision = format!("/v1/approvals/{id}/decision");
    let approval = format!("/v1/approvals/{id}");
    let gets = [
        "/v1/approvals",
        approval.as_str(),
        "/v1/audit",
        "/v1/events",
    ];
    for path in gets {
        for token in [None, Some("wrong-token"), Some("")] {
            let r = api.get(token, path).await;
            assert_eq!(r.expect_error(401), "unauthorized", "{path}");
            let www = r
                .headers
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap());
            assert!(
                www.is_some_and(|v| v.starts_with("Bearer")),
                "{path}: {www:?}"
            );
        }
    }
    let r = api
        .send(
            api.request(reqwest::Method::GET, None, "/v1/approvals")
                .header("authorization", format!("Basic {ALICE}")),
        )
        .await;
    r.expect_error(401);
    // A token that is only a prefix, or the stored digest itself, is not the token.
    api.get(Some("alice"), "/v1/approvals")
        .await
        .expect_error(401);
    api.get(
        Some(&format!("sha256:{}", sha256_hex(BOB))),
        "/v1/approvals",
    )
    .await
    .expect_error(401);
    api.submit("wrong", &json!({"tool": "t", "arguments": {}}))
        .await
        .expect_error(401);
    api.post(None, &decision, &json!({"decision": "approve"}))
        .await
        .expect_error(401);

    // bob's token is stored hashed in the config and works.
    let r = api.get(Some(BOB), "/v1/approvals").await;
    assert_eq!(ids(&r.body), vec![id.clone()]);

    // 403 for a missing role.
    assert_eq!(
        api.submit(ALICE, &json!({"tool": "t", "arguments": {}}))
            .await
            .expect_error(403),
        "forbidden"
    );
    for path in ["/v1/approvals", "/v1/audit", "/v1/events"] {
        api.get(Some(BOT), path).await.expect_error(403);
    }
    let r = api.decide(BOT, &id, "approve", None).await;
    assert_eq!(r.expect_error(403), "forbidden");
    let r = api.decide(BOT2, &id, "deny", Some("no")).await;
    r.expect_error(403);

    // No self-approval, even with the reviewer role.
    let own = api
        .submit_pending(CAROL, "drop_table", json!({"table": "users"}))
        .await;
    let own_id = own["id"].as_str().unwrap().to_string();
    let r = api.decide(CAROL, &own_id, "approve", None).await;
    assert_eq!(r.expect_error(403), "self_approval");
    let r = api.decide(CAROL, &own_id, "deny", Some("mine")).await;
    assert_eq!(r.expect_error(403), "self_approval");
    // carol may decide someone else's.
    let other = api
        .submit_pending(BOT, "rotate_keys", json!({"kid": 3}))
        .await;
    let other_id = other["id"].as_str().unwrap().to_string();
    let r = api.decide(CAROL, &other_id, "approve", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["decision"]["by"], "carol");

    // Nothing refused changed anything: both are still pending, and no approval was added.
    assert_eq!(api.approval(&id).await, a);
    assert_eq!(api.approval(&own_id).await, own);
    let all: Vec<String> = api
        .list_all("all")
        .await
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all, vec![id.clone(), own_id.clone(), other_id.clone()]);
    let audit = api.audit_all().await;
    assert!(records_of(&audit, "approval.decided", &id).is_empty());
    assert!(records_of(&audit, "approval.decided", &own_id).is_empty());
    // Refused decisions by identities are audited: two by agents, two self-approvals (those
    // without a token are counted into one record per minute instead).
    let refused: Vec<&Value> = audit[audit_before.len()..]
        .iter()
        .filter(|r| r["kind"] == "decision.refused")
        .collect();
    let actors: Vec<&str> = refused
        .iter()
        .map(|r| r["actor"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors,
        vec!["billing-bot", "other-bot", "carol", "carol"],
        "{refused:?}"
    );
    assert_chain(&audit);

    // An admin holds every role: it submits, lists and decides someone else's.
    let r = api
        .submit(ROOT, &json!({"tool": "t", "arguments": {}}))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = api.decide(ROOT, &own_id, "deny", Some("not today")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "denied");
    assert_eq!(r.body["decision"]["reason"], "not today");
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
async fn malformed_requests_are_refused_and_change_nothing() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let a = api
        .submit_pending(BOT, "delete_user_account", json!({"user": "u-1"}))
        .await;
    let id = a["id"].as_str().unwrap().to_string();
    let decision = format!("/v1/approvals/{id}/decision");
    let audit_before = api.audit_all().await;
    let json_ct = Some("application/json");

    // 400: malformed JSON, invalid UTF-8, empty body, trailing garbage. A body that is both
    // malformed and of the wrong shape (cut short after an unknown field or a bad value) is
    // malformed JSON first.
    let malformed: [&[u8]; 8] = [
        b"{\"tool\": \"x\", \"arguments\": {",
        b"not json",
        b"",
        b"   ",
        b"{\"decision\": \"approve\"} trailing",
        b"{\"tool\": \"x\", \"arguments\": {}} trailing",
        b"{\"decision\": \"maybe\"",
        b"{\"tool\": 7, \"arguments\": {}, \"colour\": ",
    ];
    let bad_utf8: [&[u8]; 3] = [
        b"{\"tool\": \"caf\xff\", \"arguments\": {}}",
        b"{\"decision\": \"appr\xc3\x28ove\"}",
        b"\xfe\xff{}",
    ];
    for (path, token) in [("/v1/approvals", BOT), (decision.as_str(), ALICE)] {
        for (bodies, code) in [
            (&malformed[..], "malformed_json"),
            (&bad_utf8[..], "invalid_utf8"),
        ] {
            for body in bodies {
                let r = api
                    .post_raw(Some(token), path, json_ct, body.to_vec())
                    .await;
                assert_eq!(
                    r.expect_error(400),
                    code,
                    "{path} {:?}: {r:?}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    // 415: POST bodies must be JSON.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let body = br#"{"tool": "x", "arguments": {}}"#.to_vec();
        let r = api.post_raw(Some(BOT), "/v1/approvals", ct, body).await;
        assert_eq!(r.expect_error(415), "unsupported_media_type", "{ct:?}");
        let body = br#"{"decision": "approve"}"#.to_vec();
        api.post_raw(Some(ALICE), &decision, ct, body)
            .await
            .expect_error(415);
    }
    // A charset parameter is fine.
    let r = api
        .post_raw(
            Some(BOT),
            "/v1/approvals",
            Some("application/json; charset=utf-8"),
            br#"{"tool": "x", "arguments": {"ok": true}, "idempotency_key": "charset"}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let charset_id = r.id();

    // 422: missing, wrong-typed, unknown fields; bad values. Messages name the field.
    for (body, field) in [
        (json!({"tool": "x"}), "arguments"),
        (json!({"arguments": {}}), "tool"),
        (json!({"tool": "x", "arguments": "x"}), "arguments"),
        (json!({"tool": "x", "arguments": [1, 2]}), "arguments"),
        (json!({"tool": 7, "arguments": {}}), "tool"),
        (
            json!({"tool": "x", "arguments": {}, "colour": "red"}),
            "colour",
        ),
        (
            json!({"tool": "x", "arguments": {}, "timeout": "soon"}),
            "timeout",
        ),
        (
            json!({"tool": "x", "arguments": {}, "timeout": -5}),
            "timeout",
        ),
        (
            json!({"tool": "x", "arguments": {}, "timeout": 0}),
            "timeout",
        ),
        (
            json!({"tool": "x", "arguments": {}, "timeout": "0s"}),
            "timeout",
        ),
        (
            json!({"tool": "x", "arguments": {}, "timeout": "400d"}),
            "timeout",
        ),
        (
            json!({"tool": "x", "arguments": {}, "timeout": true}),
            "timeout",
        ),
        (json!({"tool": "", "arguments": {}}), "tool"),
        (json!({"tool": "x", "arguments": {}, "queue": ""}), "queue"),
        (
            json!({"tool": "x", "arguments": {}, "reasoning": 5}),
            "reasoning",
        ),
        (json!(["tool", "x"]), ""),
        (json!("x"), ""),
    ] {
        let r = api.submit(BOT, &body).await;
        assert_eq!(r.expect_error(422), "invalid_request", "{body}: {r:?}");
        assert!(
            r.message().contains(field),
            "{body}: message {:?} does not name {field:?}",
            r.message()
        );
    }
    for (body, field) in [
        (json!({}), "decision"),
        (json!({"decision": "maybe"}), "decision"),
        (json!({"decision": true}), "decision"),
        (json!({"decision": "approve", "reason": 5}), "reason"),
        (json!({"decision": "approve", "by": "mallory"}), "by"),
    ] {
        let r = api.post(Some(ALICE), &decision, &body).await;
        assert_eq!(r.expect_error(422), "invalid_request", "{body}: {r:?}");
        assert!(
            r.message().contains(field),
            "{body}: message {:?} does not name {field:?}",
            r.message()
        );
    }

    // 413: over the 1 MiB default, with and without a Content-Length.
    let filler = "x".repeat(1024 * 1024);
    let big = format!(r#"{{"tool": "x", "arguments": {{"blob": "{filler}"}}}}"#).into_bytes();
    let r = api
        .post_raw(Some(BOT), "/v1/approvals", json_ct, big.clone())
        .await;
    assert_eq!(r.expect_error(413), "payload_too_large");
    // The rest of the body is left unread and the connection ends: the answer says so.
    assert_eq!(r.headers["connection"], "close");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let r = api
        .send(
            api.request(reqwest::Method::POST, Some(BOT), "/v1/approvals")
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks))),
        )
        .await;
    assert_eq!(r.expect_error(413), "payload_too_large");
    let r = api
        .post_raw(
            Some(ALICE),
            &decision,
            json_ct,
            format!(r#"{{"decision": "approve", "reason": "{filler}"}}"#).into_bytes(),
        )
        .await;
    r.expect_error(413);

    // Nothing above changed anything but the one good submission.
    assert_eq!(api.approval(&id).await, a);
    let all: Vec<String> = api
        .list_all("all")
        .await
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all, vec![id.clone(), charset_id.clone()]);
    let audit = api.audit_all().await;
    assert_eq!(audit.len(), audit_before.len() + 1, "{audit:?}");
    assert_eq!(audit.last().unwrap()["approval_id"], charset_id.as_str());

    // Just under the limit is accepted.
    let filler = "y".repeat(1024 * 1024 - 200);
    let body = format!(r#"{{"tool": "x", "arguments": {{"blob": "{filler}"}}}}"#);
    assert!(body.len() < 1024 * 1024);
    let r = api
        .post_raw(Some(BOT), "/v1/approvals", json_ct, body.into_bytes())
        .await;
    assert_eq!(r.status, 201, "status {}", r.status);
    assert_eq!(
        r.body["arguments"]["blob"].as_str().map(str::len),
        Some(filler.len())
    );
}

#[tokio::test]
async fn host_and_origin_allow_lists() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let port = d.url.rsplit(':').next().unwrap().to_string();
    let submit = |host: Option<String>, origin: Option<&str>, fetch_site: Option<&str>| {
        let mut r = api
            .request(reqwest::Method::POST, Some(BOT), "/v1/approvals")
            .json(&json!({"tool": "t", "arguments": {"x": 1}}));
        if let Some(h) = host {
            r = r.header("host", h);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(s) = fetch_site {
            r = r.header("sec-fetch-site", s);
        }
        r
    };

    // DNS rebinding: a foreign Host is refused, on every route.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("127.0.0.1.evil.example:{port}"),
    ] {
        let r = api.send(submit(Some(host.clone()), None, None)).await;
        assert_eq!(r.expect_error(403), "host_not_allowed", "{host}");
        let r = api
            .send(
                api.request(reqwest::Method::GET, Some(ALICE), "/v1/approvals")
                    .header("host", host.clone()),
            )
            .await;
        r.expect_error(403);
        let r = api
            .send(
                api.request(reqwest::Method::GET, None, "/healthz")
                    .header("host", host.clone()),
            )
            .await;
        r.expect_error(403);
    }
    // CSRF: a foreign Origin, or a cross-site fetch, is refused.
    for origin in [
        "http://evil.example",
        "null",
        &format!("http://127.0.0.1:{port}"),
    ] {
        let r = api.send(submit(None, Some(origin), None)).await;
        assert_eq!(r.expect_error(403), "origin_not_allowed", "{origin}");
    }
    let r = api.send(submit(None, None, Some("cross-site"))).await;
    r.expect_error(403);
    let r = api
        .send(
            api.request(reqwest::Method::GET, Some(ALICE), "/v1/approvals")
                .header("origin", "http://evil.example"),
        )
        .await;
    r.expect_error(403);

    // Nothing was created by the refused requests.
    assert!(api.list_all("all").await.is_empty());
    assert!(api.audit_all().await.is_empty());

    // Loopback names are allowed.
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let r = api.send(submit(Some(host.clone()), None, None)).await;
        assert_eq!(r.status, 201, "{host}: {r:?}");
    }
    let r = api.send(submit(None, None, Some("same-origin"))).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(api.list_all("all").await.len(), 3);

    // The refusals are counted.
    let metrics = api.get(Some(ALICE), "/metrics").await.body;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("gatehouse_refused_total{reason=\"host\"} 9"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gatehouse_refused_total{reason=\"origin\"} 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn healthz_and_metrics() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let r = api.get(None, "/healthz").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "ok");

    let a = api
        .submit_pending(
            BOT,
            "issue_refund",
            json!({"order_id": "M-1", "amount": 99}),
        )
        .await;
    api.submit_pending(
        BOT,
        "issue_refund",
        json!({"order_id": "M-2", "amount": 98}),
    )
    .await;
    api.submit_pending(BOT, "other", json!({})).await;
    let r = api
        .submit(
            BOT,
            &json!({"tool": "issue_refund", "arguments": {"order_id": "M-3", "amount": 1}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = api
        .decide(ALICE, a["id"].as_str().unwrap(), "approve", None)
        .await;
    assert_eq!(r.status, 200);
    api.get(Some("nope"), "/v1/approvals")
        .await
        .expect_error(401);

    let r = api.get(Some(ALICE), "/metrics").await;
    assert_eq!(r.status, 200);
    let ct = r.headers["content-type"].to_str().unwrap();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = r.body.as_str().expect("metrics are text").to_string();
    for line in [
        "gatehouse_pending{queue=\"primary\"} 1",
        "gatehouse_pending{queue=\"default\"} 1",
        "gatehouse_decisions_total{outcome=\"approved\"} 1",
        "gatehouse_decisions_total{outcome=\"denied\"} 0",
        "gatehouse_submissions_total{outcome=\"auto_approved\"} 1",
        "gatehouse_submissions_total{outcome=\"queued\"} 3",
        "gatehouse_refused_total{reason=\"unauthorized\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    // Every sample line is `name{labels} number` or `name number`.
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = l.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {l:?}");
    }
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

#[tokio::test]
async fn long_poll_returns_on_decision_or_after_the_wait() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let a = api
        .submit_pending(BOT, "deploy", json!({"env": "prod"}))
        .await;
    let id = a["id"].as_str().unwrap().to_string();

    // The agent waits; a reviewer decides once the long poll is open.
    let open = waiting::subscribers(&api).await;
    let waiter = {
        let api = api.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = api
                .get(Some(BOT), &format!("/v1/approvals/{id}?wait=5"))
                .await;
            (r, started.elapsed())
        })
    };
    waiting::wait_subscribers(&api, open + 1, "the agent's long poll").await;
    assert!(
        !waiter.is_finished(),
        "the long poll returned before the decision"
    );
    let decided_at = Instant::now();
    let r = api.decide(ALICE, &id, "approve", Some("go")).await;
    assert_eq!(r.status, 200);
    let (r, took) = waiter.await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "approved");
    assert_eq!(r.body["decision"]["by"], "alice");
    // Well before its 5 s wait ends: the decision ended it.
    assert!(
        took < Duration::from_millis(4500) && decided_at.elapsed() < Duration::from_secs(2),
        "the long poll took {took:?}"
    );

    // On a decided approval it answers at once.
    let started = Instant::now();
    let r = api
        .get(Some(BOT), &format!("/v1/approvals/{id}?wait=5"))
        .await;
    assert_eq!(r.body["status"], "approved");
    assert!(started.elapsed() < Duration::from_secs(1));

    // Still pending: it answers pending when the wait ends.
    let b = api
        .submit_pending(BOT, "deploy", json!({"env": "staging"}))
        .await;
    let bid = b["id"].as_str().unwrap();
    let started = Instant::now();
    let r = api
        .get(Some(ALICE), &format!("/v1/approvals/{bid}?wait=1"))
        .await;
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "pending");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "wait=1 took {took:?}"
    );
    // A decision on another approval does not end the wait early.
    let c = api
        .submit_pending(BOT, "deploy", json!({"env": "dev"}))
        .await;
    let open = waiting::subscribers(&api).await;
    let waiter = {
        let api = api.clone();
        let bid = bid.to_string();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = api
                .get(Some(BOT), &format!("/v1/approvals/{bid}?wait=1"))
                .await;
            (r, started.elapsed())
        })
    };
    waiting::wait_subscribers(&api, open + 1, "the long poll on the other approval").await;
    let r = api
        .decide(ALICE, c["id"].as_str().unwrap(), "deny", Some("no"))
        .await;
    assert_eq!(r.status, 200);
    let (r, took) = waiter.await.unwrap();
    assert_eq!(r.body["status"], "pending");
    assert!(took >= Duration::from_millis(900), "{took:?}");

    for bad in ["-1", "soon", "NaN"] {
        api.get(Some(ALICE), &format!("/v1/approvals/{bid}?wait={bad}"))
            .await
            .expect_error(422);
    }
}

#[tokio::test]
async fn events_stream_and_resume_with_last_event_id() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    // Something before the subscription, which a fresh subscriber does not get.
    let early = api.submit_pending(BOT, "early", json!({})).await;

    let mut events = SseStream::connect(&api, None).await;
    let a1 = api
        .submit_pending(
            BOT,
            "issue_refund",
            json!({"order_id": "E-1", "amount": 80}),
        )
        .await;
    let e = events.expect().await;
    assert_eq!(e.event, "approval.created");
    assert_eq!(e.data["kind"], "approval.created");
    assert_eq!(e.data["seq"].as_u64(), Some(e.id));
    assert_eq!(e.data["approval"], a1);
    let first_seq = e.id;
    assert!(first_seq >= 2, "{e:?}");
    drop(events);

    // While nobody listens: creations, decisions (human and policy), and a refused decision.
    let a2 = api
        .submit_pending(BOT, "deploy", json!({"env": "prod"}))
        .await;
    let a1_id = a1["id"].as_str().unwrap();
    let a2_id = a2["id"].as_str().unwrap();
    assert_eq!(
        api.decide(ALICE, a1_id, "approve", Some("ok")).await.status,
        200
    );
    api.decide(BOT, a2_id, "approve", None)
        .await
        .expect_error(403);
    let auto = api
        .submit(
            BOT,
            &json!({"tool": "issue_refund", "arguments": {"order_id": "E-2", "amount": 10}}),
        )
        .await;
    assert_eq!(auto.status, 200);
    let a3 = api
        .submit_pending(BOT, "deploy", json!({"env": "dev"}))
        .await;
    assert_eq!(
        api.decide(BOB, a2_id, "deny", Some("freeze")).await.status,
        200
    );
    let expected: Vec<(&str, String)> = vec![
        ("approval.created", a2_id.to_string()),
        ("approval.decided", a1_id.to_string()),
        ("approval.decided", auto.id()),
        ("approval.created", a3["id"].as_str().unwrap().to_string()),
        ("approval.decided", a2_id.to_string()),
    ];

    // Resume after the first event: exactly the later ones, in order, none twice.
    let mut events = SseStream::connect(&api, Some(first_seq)).await;
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        got.push(events.expect().await);
    }
    let kinds: Vec<(&str, String)> = got
        .iter()
        .map(|e| {
            (
                e.event.as_str(),
                e.data["approval"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(kinds, expected);
    let seqs: Vec<u64> = got.iter().map(|e| e.id).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(seqs[0] > first_seq);
    // They are exactly the audit log's event records after first_seq (the refusal is not one).
    let audit = api.audit_all().await;
    let from_log: Vec<u64> = audit
        .iter()
        .filter(|r| r["seq"].as_u64().unwrap() > first_seq && r["kind"] != "decision.refused")
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, from_log);
    assert_eq!(got[1].data["approval"]["status"], "approved");
    assert_eq!(got[2].data["approval"]["decision"]["by"], "policy:refunds");
    assert_eq!(got[4].data["approval"]["decision"]["reason"], "freeze");
    // Nothing more until something happens; then it arrives live, once.
    assert!(events.next(Duration::from_millis(300)).await.is_none());
    let a4 = api
        .submit_pending(BOT, "deploy", json!({"env": "qa"}))
        .await;
    let e = events.expect().await;
    assert_eq!(e.event, "approval.created");
    assert_eq!(e.data["approval"], a4);
    assert_eq!(e.id, seqs.last().unwrap() + 1);
    assert!(events.next(Duration::from_millis(300)).await.is_none());

    // Resuming from 0 replays everything, including what came before the first subscriber.
    let mut all = SseStream::connect(&api, Some(0)).await;
    let e = all.expect().await;
    assert_eq!(e.id, 1);
    assert_eq!(e.data["approval"], early);

    // Resuming at the newest event: nothing is replayed, the next one arrives live.
    let newest = api.audit_all().await.last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    let mut at_end = SseStream::connect(&api, Some(newest)).await;
    assert!(at_end.next(Duration::from_millis(300)).await.is_none());
    let a5 = api
        .submit_pending(BOT, "deploy", json!({"env": "eu"}))
        .await;
    let e = at_end.expect().await;
    assert_eq!((e.id, &e.data["approval"]), (newest + 1, &a5));

    // A Last-Event-ID that is not a number, or is ahead of the log (a client that saw another
    // daemon), is refused rather than silently skipping events until the log catches up.
    for bad in ["yesterday", "-1", "1000000"] {
        let r = api
            .send(
                api.request(reqwest::Method::GET, Some(ALICE), "/v1/events")
                    .header("last-event-id", bad),
            )
            .await;
        r.expect_error(422);
    }
}

#[tokio::test]
async fn audit_pages_and_hash_chain() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let mut ids = Vec::new();
    for i in 0..12 {
        let a = api
            .submit_pending(
                BOT,
                "issue_refund",
                json!({"order_id": format!("H-{i}"), "amount": 60}),
            )
            .await;
        ids.push(a["id"].as_str().unwrap().to_string());
    }
    for (i, id) in ids.iter().enumerate().take(6) {
        let verdict = if i % 2 == 0 { "approve" } else { "deny" };
        assert_eq!(api.decide(ALICE, id, verdict, Some("r")).await.status, 200);
    }
    api.decide(BOT, &ids[7], "approve", None)
        .await
        .expect_error(403);
    let total = 12 + 6 + 1;

    // Page through with limit 5: next is the last seq of a full page, null at the end.
    let mut records: Vec<Value> = Vec::new();
    let mut after = 0u64;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 10, "paging does not end");
        let r = api
            .get(Some(BOB), &format!("/v1/audit?after={after}&limit=5"))
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let page = r.body["records"].as_array().unwrap().clone();
        assert!(page.len() <= 5);
        records.extend(page.clone());
        match r.body["next"].as_u64() {
            Some(n) => {
                assert_eq!(page.len(), 5);
                assert_eq!(Some(n), page.last().unwrap()["seq"].as_u64());
                after = n;
            }
            None => break,
        }
    }
    assert_eq!(records.len(), total);
    assert_eq!(pages, total.div_ceil(5));
    assert_chain(&records);
    assert_eq!(records[0]["prev_hash"], "0".repeat(64));
    for (i, r) in records.iter().enumerate().skip(1) {
        assert_eq!(r["prev_hash"], records[i - 1]["hash"]);
    }
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for r in &records {
        *kinds
            .entry(r["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
        assert!(r["at"].is_string() && r["actor"].is_string(), "{r}");
    }
    assert_eq!(kinds["approval.created"], 12);
    assert_eq!(kinds["approval.decided"], 6);
    assert_eq!(kinds["decision.refused"], 1);
    // The decided records carry the approval as it stood.
    let decided = records_of(&records, "approval.decided", &ids[1]);
    assert_eq!(decided[0]["details"]["approval"]["status"], "denied");
    assert_eq!(decided[0]["actor"], "alice");

    // A page from the middle; past the end is empty.
    let r = api.get(Some(ALICE), "/v1/audit?after=3&limit=2").await;
    let seqs: BTreeSet<u64> = r.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, BTreeSet::from([4, 5]));
    assert_eq!(r.body["next"], 5);
    let r = api
        .get(Some(ALICE), &format!("/v1/audit?after={}", total + 10))
        .await;
    assert_eq!(r.body, json!({"records": [], "next": null}));
    for q in ["after=-1", "after=x", "limit=0", "limit=5000", "since=1"] {
        api.get(Some(ALICE), &format!("/v1/audit?{q}"))
            .await
            .expect_error(422);
    }
}

/// A refused POST (401, 403, 415) is answered after its body has arrived, and closes its
/// connection saying so: the client reads why it was refused instead of failing to write
/// the body into a reset socket, and a keep-alive client's next request does not land on
/// the dying socket. The body (12 MiB, within a raised limit) is far more than the kernel
/// buffers while nobody reads: answering before reading it fails this every time.
#[tokio::test]
async fn refused_large_posts_do_not_break_the_next_request() {
    let ws = Workspace::new();
    ws.write_config(
        &common::config_text().replace("[server]\n", "[server]\nmax_body_bytes = 16777216\n"),
    );
    let d = ws.start();
    let api = d.api();
    let filler = "x".repeat(12 * 1024 * 1024);
    let big = format!(r#"{{"tool": "x", "arguments": {{"blob": "{filler}"}}}}"#).into_bytes();
    for (token, ct, status) in [
        (Some("not-a-token"), "application/json", 401),
        (Some(ALICE), "application/json", 403),
        (Some(BOT), "text/plain", 415),
    ] {
        for _ in 0..5 {
            let r = api
                .post_raw(token, "/v1/approvals", Some(ct), big.clone())
                .await;
            r.expect_error(status);
            assert_eq!(r.headers["connection"], "close", "HTTP {status}");
            // The same client, straight away.
            let ok = api.get(Some(ALICE), "/v1/approvals").await;
            assert_eq!(ok.status, 200);
        }
    }
}
