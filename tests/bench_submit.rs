//! `gatehouse bench submit` (issue 14) against a real daemon and a real HTTP ceiling on
//! 127.0.0.1: rounds of ceiling and gatehouse in turn, the runner's own figures read from
//! `/metrics`, decisions made during the load, and the summary over rounds. Short and bounded:
//! two rounds of one second each way.

mod common;

use axum::Router;
use axum::routing::post;
use common::*;
use std::time::Duration;

/// The ceiling: a server that only parses the body and answers, as `../shared/bench/ceiling`.
async fn ceiling() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the ceiling");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = Router::new().route(
        "/v1/approvals",
        post(|body: String| async move {
            match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(_) => (axum::http::StatusCode::OK, "{\"ok\":true}"),
                Err(_) => (axum::http::StatusCode::BAD_REQUEST, "{\"ok\":false}"),
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_report_each_share_the_runner_and_the_median() {
    let ws = Workspace::new();
    let d = ws.start();
    let ceiling = ceiling().await;
    let mut cmd = command();
    cmd.args([
        "bench",
        "submit",
        "--connect",
        &d.url,
        "--ceiling",
        &ceiling,
        "--concurrency",
        "4",
        "--duration",
        "1s",
        "--decide-rate",
        "20",
        "--rounds",
        "2",
    ])
    .env("GATEHOUSE_TOKEN", BOT)
    .env("GATEHOUSE_REVIEWER_TOKEN", ALICE);
    let out = tokio::task::spawn_blocking(move || {
        run_within(cmd, Duration::from_secs(60), "bench submit")
    })
    .await
    .expect("the bench ran");
    assert_eq!(
        out.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let lines = |prefix: &str| {
        out.stdout
            .lines()
            .filter(|l| l.starts_with(prefix))
            .collect::<Vec<_>>()
    };
    assert_eq!(lines("round ").len(), 2, "{}", out.stdout);
    for prefix in ["ceiling:", "gatehouse:", "decisions:"] {
        let found = lines(prefix);
        assert_eq!(found.len(), 2, "two {prefix} lines:\n{}", out.stdout);
        assert!(
            found.iter().all(|l| l.contains("errors 0")),
            "{prefix} without errors:\n{}",
            out.stdout
        );
    }
    // The runner's figures come from the daemon's own counters: a busy share and time per
    // submission, and commits that made the submissions durable.
    let runner = lines("runner:");
    assert_eq!(runner.len(), 2, "{}", out.stdout);
    for l in &runner {
        assert!(
            l.contains("% of the run") && l.contains("µs per submission"),
            "{l}"
        );
        let commits: f64 = l
            .split("; ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a commit count in {l:?}"));
        assert!(commits >= 1.0, "{l}");
    }
    assert_eq!(lines("ratio:").len(), 2, "{}", out.stdout);
    let summary = lines("over 2 rounds:");
    assert_eq!(summary.len(), 1, "{}", out.stdout);
    assert!(
        summary[0].contains("median") && summary[0].contains("% of the ceiling"),
        "{}",
        summary[0]
    );
    assert!(summary[0].contains("worst decision p99"), "{}", summary[0]);
}

#[test]
fn rounds_out_of_range_are_refused() {
    for rounds in ["0", "21"] {
        let mut cmd = command();
        cmd.args([
            "bench",
            "submit",
            "--connect",
            "http://127.0.0.1:9",
            "--rounds",
            rounds,
        ])
        .env("GATEHOUSE_TOKEN", BOT);
        let out = run(cmd);
        assert_ne!(out.code, Some(0));
        assert!(
            out.stderr.contains("--rounds must be from 1 to 20"),
            "{}",
            out.stderr
        );
    }
}
