//! `/metrics` (DESIGN §4, §9; issue 11 item 11) against the real daemon: behind a token unless
//! `[server] public_metrics = true`, `queue` labels only from the config, HELP on every
//! family, bad bodies counted, escalations apart from decisions.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;

async fn scrape(api: &Api, token: Option<&str>) -> String {
    let r = api.get(token, "/metrics").await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body.as_str().expect("metrics are text").to_string()
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[tokio::test]
async fn metrics_need_a_token_unless_public() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    assert_eq!(
        api.get(None, "/metrics").await.expect_error(401),
        "unauthorized"
    );
    api.get(Some("not-a-token"), "/metrics")
        .await
        .expect_error(401);
    // Any identity will do, an agent's too.
    for token in [BOT, ALICE, ROOT] {
        scrape(&api, Some(token)).await;
    }
    drop(d);

    ws.write_config(&config_text().replace("[server]\n", "[server]\npublic_metrics = true\n"));
    let d = ws.start();
    let text = scrape(&d.api(), None).await;
    // A public scrape is not a refusal.
    assert!(
        has_line(&text, "gatehouse_refused_total{reason=\"unauthorized\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn queue_labels_come_only_from_the_config() {
    let ws = Workspace::new();
    let legacy = r#"
[[policies]]
name = "legacy"
tools = ["old_tool"]
[[policies.rules]]
action = "ask"
queue = "legacy-queue"
"#;
    ws.write_config(&format!("{}{legacy}", config_text()));
    let mut d = ws.start();
    let api = d.api();
    api.submit_pending(BOT, "old_tool", json!({})).await;
    api.submit_pending(BOT, "old_tool", json!({"n": 2})).await;
    let text = scrape(&api, Some(ALICE)).await;
    assert!(
        has_line(&text, "gatehouse_pending{queue=\"legacy-queue\"} 2"),
        "{text}"
    );
    // A configured queue with nothing pending is shown at 0.
    assert!(
        has_line(&text, "gatehouse_pending{queue=\"primary\"} 0"),
        "{text}"
    );
    assert_eq!(api.get(None, "/healthz").await.status, 200);
    assert!(d.stop().success());

    // The queue is no longer in the config: its approvals count as `other`.
    ws.write_config(&config_text());
    let d = ws.start();
    let text = scrape(&d.api(), Some(ALICE)).await;
    assert!(
        has_line(&text, "gatehouse_pending{queue=\"other\"} 2"),
        "{text}"
    );
    assert!(!text.contains("legacy-queue"), "{text}");
}

#[tokio::test]
async fn every_family_has_help_bad_bodies_count_and_escalations_are_not_decisions() {
    let ws = Workspace::new();
    ws.write_config(&format!(
        "{}\n[[escalation]]\nqueue = \"primary\"\nafter = \"1h\"\n\n[[escalation]]\nqueue = \"backup\"\nafter = \"1h\"\n",
        config_text()
    ));
    let d = ws.start();
    let api = d.api();
    let a = api
        .submit_pending(
            BOT,
            "issue_refund",
            json!({"order_id": "E-1", "amount": 500}),
        )
        .await;
    let id = a["id"].as_str().unwrap();
    let r = api
        .post(
            Some(ROOT),
            &format!("/v1/approvals/{id}/escalate"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["queue"], "backup", "{r:?}");

    // One 400 (malformed) and two 422s (a missing field, a duplicate key).
    let json = Some("application/json");
    for (body, status) in [
        (&br#"{"tool": "x", "#[..], 400),
        (&br#"{"tool": "x"}"#[..], 422),
        (&br#"{"tool": "x", "arguments": {"a": 1, "a": 2}}"#[..], 422),
    ] {
        let r = api
            .post_raw(Some(BOT), "/v1/approvals", json, body.to_vec())
            .await;
        r.expect_error(status);
    }

    let text = scrape(&api, Some(ALICE)).await;
    assert!(
        has_line(&text, "gatehouse_refused_total{reason=\"bad_request\"} 3"),
        "{text}"
    );
    assert!(has_line(&text, "gatehouse_escalations_total 1"), "{text}");
    assert!(!text.contains("outcome=\"escalated\""), "{text}");
    for outcome in ["approved", "denied", "expired"] {
        let line = format!("gatehouse_decisions_total{{outcome=\"{outcome}\"}} 0");
        assert!(has_line(&text, &line), "{line} in {text}");
    }
    assert!(
        has_line(&text, "gatehouse_pending{queue=\"backup\"} 1"),
        "{text}"
    );

    // Every sample belongs to a family with both a HELP and a TYPE line.
    let described = |prefix: &str| -> HashSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_string)
            .collect()
    };
    let (help, kind) = (described("# HELP "), described("# TYPE "));
    assert_eq!(help, kind, "HELP and TYPE differ:\n{text}");
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        // OpenMetrics names a counter's family without its `_total` suffix.
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| help.contains(*f)))
            .unwrap_or(name);
        assert!(help.contains(family), "no HELP for {name}:\n{text}");
    }
}
