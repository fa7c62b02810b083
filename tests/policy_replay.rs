//! `gatehouse policy replay` (DESIGN §13) against a store made by real submissions: a stricter
//! and a looser policy, rate limits replayed in order, `--since`, `--json`, over `--connect` and
//! `--data`, and nothing changed by replaying.

mod common;

use common::*;
use serde_json::{Value, json};

/// The test config with the refund rule's condition (and extra rule fields) replaced.
fn with_refund_rule(when: &str, extra: &str) -> String {
    let text = config_text();
    let old = "when = \"args.amount < 50\"\naction = \"approve\"\n";
    assert!(text.contains(old), "the test config's refund rule moved");
    text.replace(
        old,
        &format!("when = {}\naction = \"approve\"\n{extra}", toml_str(when)),
    )
}

fn replay(args: &[&str], config: &std::path::Path) -> Finished {
    let mut c = command();
    c.args(["policy", "replay", "--config"])
        .arg(config)
        .args(args);
    c.env("GATEHOUSE_TOKEN", ALICE);
    run(c)
}

fn replay_json(args: &[&str], config: &std::path::Path) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = replay(&all, config);
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn changes_by_amount(report: &Value) -> Vec<(f64, String, String)> {
    let mut v: Vec<(f64, String, String)> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["arguments"]["amount"].as_f64().unwrap_or(-1.0),
                c["before"].as_str().unwrap_or_default().to_string(),
                c["after"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

#[tokio::test]
async fn replay_shows_what_a_policy_change_would_do_and_changes_nothing() {
    let ws = Workspace::new();
    let mut d = ws.start();
    let api = d.api();
    // Under the current rule (amount < 50 approves): 30 and 45 pass, 120 and 300 ask.
    for amount in [30, 120, 45, 300] {
        let r = api
            .submit(
                BOT,
                &json!({"tool": "issue_refund", "arguments": {"order_id": format!("O-{amount}"), "amount": amount}}),
            )
            .await;
        assert!(r.status == 200 || r.status == 201, "{r:?}");
    }
    let before_audit = api.get(Some(ALICE), "/v1/audit?limit=1000").await;
    let seq_before = before_audit.body["records"]
        .as_array()
        .expect("records")
        .len();

    let stricter = ws.dir.path().join("stricter.toml");
    std::fs::write(
        &stricter,
        with_refund_rule("args.amount >= 0 && args.amount < 40", ""),
    )
    .unwrap();
    let looser = ws.dir.path().join("looser.toml");
    // Looser, but at most 2 auto-approvals an hour: replayed in order, the third asks again.
    std::fs::write(
        &looser,
        with_refund_rule("args.amount < 500", "max_per_hour = 2\n"),
    )
    .unwrap();

    // Against the running daemon.
    let connect = ["--connect", d.url.as_str()];
    let r = replay_json(&connect, &stricter);
    assert_eq!(r["requests"], 4, "{r}");
    assert_eq!(r["counts"]["auto-approved → ask"], 1, "{r}");
    assert_eq!(r["counts"]["auto-approved → auto-approved"], 1, "{r}");
    assert_eq!(r["counts"]["ask → ask"], 2, "{r}");
    assert_eq!(
        changes_by_amount(&r),
        vec![(45.0, "auto-approved".into(), "ask".into())]
    );

    let r = replay_json(&connect, &looser);
    // In order: 30 (1st), 120 (2nd) auto-approved; 45 and 300 over the limit ask.
    assert_eq!(
        changes_by_amount(&r),
        vec![
            (45.0, "auto-approved".into(), "ask".into()),
            (120.0, "ask".into(), "auto-approved".into())
        ],
        "{r}"
    );

    // The text report says the same in words.
    let out = replay(&connect, &stricter);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.starts_with("4 request(s) replayed under"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("1 would change"), "{}", out.stdout);
    assert!(out.stdout.contains("auto-approved → ask"), "{}", out.stdout);

    // A window that ends before the requests were made holds none of them.
    let r = replay_json(&["--connect", d.url.as_str(), "--since", "1ns"], &stricter);
    assert_eq!(r["requests"], 0, "{r}");

    // Replaying wrote nothing.
    let after_audit = api.get(Some(ALICE), "/v1/audit?limit=1000").await;
    assert_eq!(
        after_audit.body["records"]
            .as_array()
            .expect("records")
            .len(),
        seq_before
    );

    // From the stopped daemon's data directory: the same answer.
    d.stop();
    let data = ws.data();
    let r = replay_json(&["--data", data.to_str().expect("utf-8 path")], &stricter);
    assert_eq!(r["requests"], 4, "{r}");
    assert_eq!(changes_by_amount(&r).len(), 1, "{r}");
}

#[test]
fn replay_refuses_a_bad_config_and_a_live_data_dir() {
    let ws = Workspace::new();
    let bad = ws.dir.path().join("bad.toml");
    std::fs::write(&bad, "[[policies]]\nname = \"p\"\n[[policies.rules]]\nwhen = \"args.amount <\"\naction = \"approve\"\n").unwrap();
    let out = replay(&["--data", ws.data().to_str().expect("utf-8 path")], &bad);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("policies[0].rules[0].when"), "{out:?}");

    let d = ws.start();
    let out = replay(
        &["--data", ws.data().to_str().expect("utf-8 path")],
        &ws.config(),
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("--connect"), "{out:?}");
    drop(d);

    // A candidate written for another machine: its token variable is not set here and its
    // tool's program is not installed. Replay reads only its policies, so it runs.
    let elsewhere = ws.dir.path().join("elsewhere.toml");
    std::fs::write(
        &elsewhere,
        format!(
            r#"{}
[[identities]]
name = "ops-bot"
roles = ["agent"]
token_env = "GATEHOUSE_REPLAY_TEST_UNSET_TOKEN"

[[tools]]
name = "restart"
description = "Restart a service."
parameters = {{ type = "object" }}
kind = "command"
command = ["/nonexistent/restart-service"]
"#,
            config_text()
        ),
    )
    .unwrap();
    let out = replay(
        &["--data", ws.data().to_str().expect("utf-8 path")],
        &elsewhere,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    // `config check` still checks this machine.
    let mut c = command();
    c.args(["config", "check", "--config"]).arg(&elsewhere);
    let out = run(c);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("GATEHOUSE_REPLAY_TEST_UNSET_TOKEN"),
        "{out:?}"
    );
}
