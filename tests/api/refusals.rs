//! What the API refuses: tokens and roles, malformed bodies, foreign hosts and origins,
//! and refused POSTs that must not break the client's next request.

use super::*;

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
        (json!(["tool", "x"]), "must be a JSON object, not an array"),
        (json!([]), "must be a JSON object, not an array"),
        (json!("x"), "must be a JSON object, not a string"),
        (json!(null), "must be a JSON object, not null"),
    ] {
        let r = api.submit(BOT, &body).await;
        assert_eq!(r.expect_error(422), "invalid_request", "{body}: {r:?}");
        assert!(
            r.message().contains(field),
            "{body}: message {:?} does not name {field:?}",
            r.message()
        );
    }
    // A path through deep nesting is clipped, not thousands of characters long.
    let deep = format!(
        r#"{{"tool": "x", "arguments": {{"a": {}1{}}}}}"#,
        "[".repeat(2000),
        "]".repeat(2000)
    );
    let r = api
        .post_raw(Some(BOT), "/v1/approvals", json_ct, deep.into_bytes())
        .await;
    r.expect_error(422);
    assert!(r.message().starts_with("arguments.a"), "{}", r.message());
    assert!(r.message().len() < 400, "{} bytes", r.message().len());
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
