//! Long polls, the event stream and its resumption, the audit log's pages, health and metrics.

use super::*;

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
