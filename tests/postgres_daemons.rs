//! Several `gatehouse serve` processes on one PostgreSQL server (DESIGN §12): real daemons,
//! a real throwaway cluster (see `common::postgres`), real HTTP.

mod common;

use common::postgres::{Postgres, URL_ENV};
use common::sse::SseStream;
use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Daemons sharing one database: each has its own workspace (config, data dir), the same
/// config text.
struct Cluster {
    pg: Postgres,
    config: String,
    _workspaces: Vec<Workspace>,
}

impl Cluster {
    fn new(extra: &str) -> Cluster {
        Cluster {
            pg: Postgres::start(),
            config: format!(
                "{}\n{extra}\n[store]\nkind = \"postgres\"\nurl_env = \"{URL_ENV}\"\n",
                config_text()
            ),
            _workspaces: Vec::new(),
        }
    }

    /// `gatehouse audit export --config …` read straight from the database (no daemon asked),
    /// then `audit verify` on the export: the number of records it verified.
    fn export_and_verify(&self) -> usize {
        let ws = Workspace::new();
        ws.write_config(&self.config);
        let mut c = command();
        c.env(URL_ENV, &self.pg.url)
            .args(["audit", "export", "--config"])
            .arg(ws.config());
        let export = run(c);
        assert_eq!(export.code, Some(0), "{export:?}");
        let file = ws.dir.path().join("export.jsonl");
        std::fs::write(&file, &export.stdout).expect("write the export");
        let mut c = command();
        c.args(["audit", "verify", "--file"]).arg(&file);
        let verified = run(c);
        assert_eq!(verified.code, Some(0), "{verified:?}");
        assert!(
            verified.stdout.contains("the chain is intact"),
            "{verified:?}"
        );
        export.stdout.lines().count() - 1
    }

    fn daemon(&mut self) -> Daemon {
        let ws = Workspace::new();
        ws.write_config(&self.config);
        let d = Daemon::start_with_env(&ws.config(), &ws.data(), &[(URL_ENV, &self.pg.url)]);
        self._workspaces.push(ws);
        d
    }
}

/// Wait (bounded) until `check` holds; polling the daemons' HTTP API is the only way to see
/// their state from outside.
async fn until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status_of(api: &Api, id: &str) -> String {
    api.approval(id).await["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The next event about approval `id` on `sse`, skipping others.
async fn event_about(sse: &mut SseStream, id: &str) -> common::sse::Sse {
    loop {
        let e = sse.expect().await;
        if e.data.to_string().contains(id) {
            return e;
        }
    }
}

fn transfer(n: usize) -> Value {
    json!({"tool": "transfer", "arguments": {"n": n}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_on_one_daemon_is_seen_on_another_and_sse_resumes_anywhere() {
    let mut c = Cluster::new("");
    let a = c.daemon();
    let b = c.daemon();
    let (api_a, api_b) = (a.api(), b.api());
    let mut sse_b = SseStream::connect(&api_b, None).await;

    let id = api_a.submit_pending(BOT, "transfer", json!({"n": 1})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // B lists it and streams it.
    until(
        "B lists the submission made on A",
        Duration::from_secs(10),
        || {
            let api_b = api_b.clone();
            let id = id.clone();
            async move {
                api_b
                    .list_all("pending")
                    .await
                    .iter()
                    .any(|x| x["id"] == json!(id))
            }
        },
    )
    .await;
    let created = event_about(&mut sse_b, &id).await;
    assert_eq!(created.event, "approval.created", "{created:?}");

    // A long poll on B ends when a reviewer decides on A.
    let waiting = {
        let api_b = api_b.clone();
        let id = id.clone();
        tokio::spawn(async move {
            api_b
                .get(Some(ALICE), &format!("/v1/approvals/{id}?wait=30"))
                .await
        })
    };
    let r = api_a.decide(ALICE, &id, "approve", Some("fine")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let polled = waiting.await.expect("the long poll");
    assert_eq!(polled.status, 200, "{polled:?}");
    assert_eq!(polled.body["status"], "approved", "{polled:?}");
    let decided = event_about(&mut sse_b, &id).await;
    assert_eq!(decided.event, "approval.decided", "{decided:?}");
    assert!(decided.id > created.id);

    // One order: A, resumed from the id B gave, replays what B streamed, with B's ids.
    let mut sse_a = SseStream::connect(&api_a, Some(created.id)).await;
    let replayed = sse_a.expect().await;
    assert_eq!(
        (replayed.id, replayed.event.as_str()),
        (decided.id, "approval.decided")
    );
    assert_eq!(replayed.data, decided.data);

    // Both daemons hand out the same audit log, one chain.
    let (log_a, log_b) = (api_a.audit_all().await, api_b.audit_all().await);
    assert_eq!(log_a, log_b);
    assert_chain(&log_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reviewers_racing_on_two_daemons_one_wins_one_gets_409() {
    let mut c = Cluster::new("");
    let a = c.daemon();
    let b = c.daemon();
    let (api_a, api_b) = (a.api(), b.api());
    let mut ids = Vec::new();
    for n in 0..20 {
        let on = if n % 2 == 0 { &api_a } else { &api_b };
        let id = on.submit_pending(BOT, "transfer", json!({"n": n})).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (ra, rb) = tokio::join!(
            api_a.decide(ALICE, &id, "approve", None),
            api_b.decide(BOB, &id, "deny", None)
        );
        let mut statuses = [ra.status, rb.status];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "round {n}: {ra:?} {rb:?}");
        let (winner, loser, verdict) = if ra.status == 200 {
            (&ra, &rb, "approved")
        } else {
            (&rb, &ra, "denied")
        };
        assert_eq!(winner.body["status"], verdict, "{winner:?}");
        assert_eq!(loser.expect_error(409), "already_decided");
        // Whoever asks, the decision is the winner's.
        for (name, api) in [("A", &api_a), ("B", &api_b)] {
            let seen = status_of(api, &id).await;
            if seen != verdict {
                let log = api.audit_all().await;
                panic!(
                    "round {n}: {name} says {seen}, the winner {verdict}; {ra:?} {rb:?}; {:#?}",
                    log.iter()
                        .filter(|r| r["approval_id"] == json!(id))
                        .collect::<Vec<_>>()
                );
            }
        }
        ids.push(id);
    }
    let log = api_b.audit_all().await;
    assert_chain(&log);
    for id in &ids {
        assert_eq!(records_of(&log, "approval.decided", id).len(), 1, "{id}");
    }
    let exported = tokio::task::block_in_place(|| c.export_and_verify());
    assert_eq!(exported, log.len());
}

const TIERS: &str = "[[escalation]]\nqueue = \"primary\"\nreviewers = [\"alice\"]\nafter = \"1s\"\n\n[[escalation]]\nqueue = \"backup\"\nreviewers = [\"bob\"]\nafter = \"1s\"\n";

async fn wait_expired(api: &Api, id: &str) {
    until("the approval expires", Duration::from_secs(20), || async {
        status_of(api, id).await == "expired"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_escalation_and_expiry_fires_once_even_after_kill_9_of_the_submitting_daemon() {
    let mut c = Cluster::new(TIERS);
    let mut a = c.daemon();
    let b = c.daemon();
    let d3 = c.daemon();
    let (api_a, api_b, api_c) = (a.api(), b.api(), d3.api());

    // Three daemons up: each deadline is tried by all of them and lands once.
    let all_up = api_a
        .submit_pending(BOT, "drop_table", json!({"t": "users"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_expired(&api_c, &all_up).await;

    // The daemon that took the submission dies at once: the others fire its deadlines.
    let orphan = api_a
        .submit_pending(BOT, "drop_table", json!({"t": "orders"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    a.kill();
    wait_expired(&api_b, &orphan).await;

    let log = api_c.audit_all().await;
    assert_chain(&log);
    for id in [&all_up, &orphan] {
        let kinds: Vec<&str> = log
            .iter()
            .filter(|r| r["approval_id"] == json!(id))
            .map(|r| r["kind"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            kinds,
            ["approval.created", "approval.escalated", "approval.expired"],
            "{id}"
        );
    }
    assert_eq!(api_b.audit_all().await, log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_daemon_under_load_loses_nothing_acknowledged() {
    let mut c = Cluster::new("");
    let mut a = c.daemon();
    let b = c.daemon();
    // What each client was told: submissions (201) and decisions (200).
    let acked: Arc<Mutex<BTreeMap<String, &'static str>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for k in 0..8 {
        let api = if k % 2 == 0 { a.api() } else { b.api() };
        let acked = acked.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let body = json!({"tool": "transfer", "arguments": {"client": k, "n": n}});
                let r = api.request(reqwest::Method::POST, Some(BOT), "/v1/approvals");
                let Ok(r) = api.try_send(r.json(&body)).await else {
                    return; // its daemon is gone
                };
                if r.status != 201 {
                    continue;
                }
                let id = r.id();
                acked.lock().unwrap().insert(id.clone(), "pending");
                if n % 2 == 0 {
                    let path = format!("/v1/approvals/{id}/decision");
                    let d = api.request(reqwest::Method::POST, Some(ALICE), &path);
                    let Ok(d) = api.try_send(d.json(&json!({"decision": "deny"}))).await else {
                        return;
                    };
                    if d.status == 200 {
                        acked.lock().unwrap().insert(id, "denied");
                    }
                }
            }
        }));
    }
    let counted = acked.clone();
    until("load is under way", Duration::from_secs(30), || {
        let n = counted.lock().unwrap().len();
        async move { n >= 150 }
    })
    .await;
    a.kill();
    let counted = acked.clone();
    let at_kill = counted.lock().unwrap().len();
    until(
        "B keeps serving after A died",
        Duration::from_secs(30),
        || {
            let n = counted.lock().unwrap().len();
            async move { n >= at_kill + 50 }
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in clients {
        t.await.expect("a client");
    }
    let api_b = b.api();
    let stored: BTreeMap<String, String> = api_b
        .list_all("all")
        .await
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap_or_default().to_string(),
                x["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let acked = acked.lock().unwrap().clone();
    for (id, status) in &acked {
        let found = stored.get(id).map(String::as_str);
        assert!(found.is_some(), "acknowledged {id} was lost");
        if *status == "denied" {
            assert_eq!(found, Some("denied"), "{id}");
        }
    }
    let log = api_b.audit_all().await;
    assert_chain(&log);
    let decided: BTreeSet<&str> = log
        .iter()
        .filter(|r| r["kind"] == "approval.decided")
        .filter_map(|r| r["approval_id"].as_str())
        .collect();
    let denied = acked.values().filter(|s| **s == "denied").count();
    assert!(decided.len() >= denied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_per_hour_is_counted_across_daemons() {
    let extra = r#"
[[policies]]
name = "transfers"
tools = ["transfer"]
[[policies.rules]]
action = "approve"
max_per_hour = 2
"#;
    let mut c = Cluster::new(extra);
    let a = c.daemon();
    let b = c.daemon();
    let (api_a, api_b) = (a.api(), b.api());

    // Each submission is sent the moment the one before was answered, on the other daemon:
    // a daemon must count approvals the other one made a moment ago (it reads them before
    // evaluating a rule with `max_per_hour`, whether or not a NOTIFY or a poll came first).
    let first = api_a.submit(BOT, &transfer(1)).await;
    assert_eq!(first.body["status"], "approved", "{first:?}");
    let second = api_b.submit(BOT, &transfer(2)).await;
    assert_eq!(second.body["status"], "approved", "{second:?}");
    // The hour's two are used up, one on each daemon: the next ones ask a reviewer, on
    // either daemon.
    for (n, api) in [(3, &api_a), (4, &api_b), (5, &api_a)] {
        let r = api.submit(BOT, &transfer(n)).await;
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.body["status"], "pending", "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_answers_503_loses_nothing_and_recovers() {
    let mut c = Cluster::new("");
    let a = c.daemon();
    let b = c.daemon();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for k in 0..4 {
        let api = if k % 2 == 0 { a.api() } else { b.api() };
        let (acked, refused, stop) = (acked.clone(), refused.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let body = json!({"tool": "transfer", "arguments": {"client": k, "n": n}});
                let r = api.request(reqwest::Method::POST, Some(BOT), "/v1/approvals");
                let r = api
                    .try_send(r.json(&body))
                    .await
                    .expect("the daemon answers");
                match r.status {
                    201 => {
                        acked.lock().unwrap().insert(r.id());
                    }
                    503 => {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        // Backoff of a client told the service is unavailable.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    s => panic!("unexpected {s}: {r:?}"),
                }
            }
        }));
    }
    let count = |s: &Arc<Mutex<BTreeSet<String>>>| s.lock().unwrap().len();
    until("load is under way", Duration::from_secs(30), || {
        let n = count(&acked);
        async move { n >= 50 }
    })
    .await;
    c.pg.stop_server();
    let down = Instant::now();
    until("clients are told 503", Duration::from_secs(10), || {
        let n = refused.load(std::sync::atomic::Ordering::Relaxed);
        async move { n >= 4 }
    })
    .await;
    let answered_in = down.elapsed();
    c.pg.start_server();
    let before = count(&acked);
    until(
        "both daemons acknowledge again",
        Duration::from_secs(30),
        || {
            let n = count(&acked);
            async move { n >= before + 40 }
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in clients {
        t.await.expect("a client");
    }
    assert!(answered_in < Duration::from_secs(10), "{answered_in:?}");
    for d in [&a, &b] {
        let r = d.api().submit(BOT, &transfer(0)).await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    let stored: BTreeSet<String> = b
        .api()
        .list_all("all")
        .await
        .iter()
        .filter_map(|x| x["id"].as_str().map(String::from))
        .collect();
    for id in acked.lock().unwrap().iter() {
        assert!(stored.contains(id), "acknowledged {id} was lost");
    }
    let log = a.api().audit_all().await;
    assert_chain(&log);
    assert_eq!(b.api().audit_all().await, log);
}

/// An agent with one gated tool (a refund that appends its arguments to `log`), on a
/// scripted model server.
fn agent_config(model: &common::model_server::ModelServer, log: &std::path::Path) -> String {
    let cmd = format!(
        "[{}]",
        [
            "/bin/sh",
            "-c",
            r#"cat >> "$1"; echo >> "$1"; printf 'refund issued'"#,
            "sh",
            log.to_str().unwrap_or_default(),
        ]
        .iter()
        .map(|a| toml_str(a))
        .collect::<Vec<_>>()
        .join(", ")
    );
    format!(
        r#"
[models.fake]
kind = "openai"
base_url = {base}
model = "test-model"
api_key_env = "PATH"
timeout = "10s"

[[agents]]
name = "Support"
instructions = "Help."
model = "fake"
tools = ["issue_refund"]
max_turns = 4

[[tools]]
name = "issue_refund"
description = "Issue a refund."
parameters = {{ type = "object", properties = {{ order_id = {{ type = "string" }}, amount = {{ type = "number" }} }}, required = ["order_id", "amount"] }}
kind = "command"
command = {cmd}
needs_approval = "refunds"
timeout = "20s"
"#,
        base = toml_str(&model.base_url()),
    )
}

async fn run_of(api: &Api, id: &str) -> Value {
    let r = api.get(Some(ALICE), &format!("/v1/runs/{id}")).await;
    assert_eq!(r.status, 200, "get run: {r:?}");
    r.body
}

/// A refund agent whose model asks for one refund of `order` and then answers; the refund
/// tool appends to `refunds.log` in the returned directory.
fn refund_world(
    order: &str,
    amount: u32,
) -> (
    common::model_server::ModelServer,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    use common::model_server::{ModelServer, Reply, call};
    let model = ModelServer::scripted(vec![
        Reply::tools(
            Some("Refunding the duplicate charge."),
            &[call(
                "call_1",
                "issue_refund",
                json!({"order_id": order, "amount": amount}),
            )],
        ),
        Reply::text(&format!("Refunded ${amount}.")),
    ]);
    let tools = tempfile::tempdir().expect("a temp dir");
    let log = tools.path().join("refunds.log");
    (model, tools, log)
}

/// Start a run on `api` and wait until it waits for approval: (run id, approval id).
async fn run_waiting_for_approval(api: &Api, input: &str) -> (String, String) {
    let r = api
        .post(
            Some(BOT),
            "/v1/runs",
            &json!({"agent": "Support", "input": input}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let run_id = r.body["run_id"].as_str().unwrap_or_default().to_string();
    until(
        "the run waits for approval",
        Duration::from_secs(20),
        || {
            let (api, run_id) = (api.clone(), run_id.clone());
            async move { run_of(&api, &run_id).await["status"] == "pending_approval" }
        },
    )
    .await;
    let approval = run_of(api, &run_id).await["pending"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (run_id, approval)
}

/// Wait until the run is completed as `api` sees it.
async fn completed_on(api: &Api, run_id: &str, what: &str) {
    until(what, Duration::from_secs(30), || {
        let (api, run_id) = (api.clone(), run_id.to_string());
        async move { run_of(&api, &run_id).await["status"] == "completed" }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_started_on_one_daemon_resumes_on_another_after_kill_9() {
    let (model, _tools, log) = refund_world("A1", 120);
    let mut c = Cluster::new(&agent_config(&model, &log));
    let mut a = c.daemon();
    let b = c.daemon();
    let (api_a, api_b) = (a.api(), b.api());
    let (run_id, approval) = run_waiting_for_approval(&api_a, "charged twice for A1").await;
    a.kill();

    // Decided on B while nobody drives the run: B takes it over once A's lease lapses.
    let r = api_b.decide(ALICE, &approval, "approve", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    completed_on(&api_b, &run_id, "B finishes the run").await;
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran.lines().count(), 1, "the refund ran once: {ran:?}");
    assert_eq!(model.count(), 2);
    assert_chain(&api_b.audit_all().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_stalls_past_its_lease_never_drives_the_run_taken_from_it() {
    let (model, _tools, log) = refund_world("S1", 80);
    let mut c = Cluster::new(&agent_config(&model, &log));
    let a = c.daemon();
    let b = c.daemon();
    let (api_a, api_b) = (a.api(), b.api());
    let (run_id, approval) = run_waiting_for_approval(&api_a, "charged twice for S1").await;

    // A stalls (SIGSTOP) while it holds the run's lease; B takes the run over once the lease
    // lapses, and finishes it after the decision.
    let stopped = unsafe { libc::kill(a.pid as libc::pid_t, libc::SIGSTOP) };
    assert_eq!(stopped, 0, "SIGSTOP");
    let r = api_b.decide(ALICE, &approval, "approve", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    completed_on(&api_b, &run_id, "B finishes the run").await;

    // A wakes up believing it still drives a run whose approval was just decided: its
    // writes are fenced off, and it never runs the tool a second time.
    let resumed = unsafe { libc::kill(a.pid as libc::pid_t, libc::SIGCONT) };
    assert_eq!(resumed, 0, "SIGCONT");
    until(
        "A has caught up with B's records",
        Duration::from_secs(20),
        || {
            let (api_a, api_b) = (api_a.clone(), api_b.clone());
            async move { api_a.audit_all().await == api_b.audit_all().await }
        },
    )
    .await;
    // Whatever A was about to do with the run went through a commit by now (the catch-up
    // came in one); one more round of A's writes settles it.
    let probe = api_a
        .submit_pending(BOT, "transfer", json!({"n": "after"}))
        .await;
    assert!(probe["id"].is_string(), "{probe:?}");
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran.lines().count(), 1, "the refund ran once: {ran:?}");
    assert_eq!(model.count(), 2, "the model was asked once per turn, by B");
    let run = run_of(&api_a, &run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_chain(&api_b.audit_all().await);
    drop(a);
}
