//! Durability and data-directory safety (DESIGN §3) with the real binary: SIGKILL under load
//! loses nothing acknowledged, one process per data directory, and corrupt or foreign data
//! directories are refused with a clear message, never a panic or a silent reset.

#[path = "../common/mod.rs"]
mod common;
mod damaged;

use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TASKS: usize = 32;

const FIRST: usize = 300;

const DECIDED: usize = 100;

/// Phase-1 approvals that phase 3 tries to decide while the daemon is killed.
const RACED: std::ops::Range<usize> = 100..200;

/// Phase-1 approvals nobody decides: they must come back pending.
const UNTOUCHED: std::ops::Range<usize> = 200..300;

/// Phase 3 kills the daemon once this many of its requests were acknowledged.
const KILL_AFTER_ACKS: usize = 150;

fn submission(n: usize) -> Value {
    json!({
        "tool": "transfer",
        "arguments": {"n": n, "note": format!("payment {n}"), "amount": n * 10 + 1},
        "reasoning": format!("request {n}"),
        "idempotency_key": format!("k-{n}"),
    })
}

/// A decision the test will make on approval number `n`.
fn decision_for(n: usize) -> (&'static str, &'static str, &'static str, String) {
    // (token, reviewer name, verdict, reason)
    let (token, name) = if n.is_multiple_of(3) {
        (ALICE, "alice")
    } else {
        (BOB, "bob")
    };
    let verdict = if n.is_multiple_of(2) {
        "approve"
    } else {
        "deny"
    };
    (token, name, verdict, format!("reason for {n}"))
}

fn status_of(verdict: &str) -> &'static str {
    if verdict == "approve" {
        "approved"
    } else {
        "denied"
    }
}

#[derive(Default)]
struct Ledger {
    /// n → acknowledged approval (the response body).
    submitted: BTreeMap<usize, Value>,
    /// Submissions sent without an answer (in flight when the daemon died).
    unanswered_submissions: Vec<usize>,
    /// n → the decision response that was acknowledged.
    decided: BTreeMap<usize, Value>,
    /// Decisions sent without an answer.
    unanswered_decisions: Vec<usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_acknowledged() {
    let ws = Workspace::new();
    let mut d = ws.start();
    let api = d.api();
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    // Phase 1: 300 submissions from 32 concurrent tasks. All must be acknowledged.
    let results: Vec<(usize, Resp)> = futures::stream::iter(0..FIRST)
        .map(|n| {
            let api = api.clone();
            async move { (n, api.submit(BOT, &submission(n)).await) }
        })
        .buffer_unordered(TASKS)
        .collect()
        .await;
    for (n, r) in results {
        assert_eq!(r.status, 201, "submission {n}: {r:?}");
        assert_eq!(r.body["arguments"], submission(n)["arguments"]);
        ledger.lock().unwrap().submitted.insert(n, r.body);
    }
    let id_of = |l: &Ledger, n: usize| l.submitted[&n]["id"].as_str().unwrap().to_string();

    // Phase 2: decide 100 of them concurrently.
    let targets: Vec<(usize, String)> = {
        let l = ledger.lock().unwrap();
        (0..DECIDED).map(|n| (n, id_of(&l, n))).collect()
    };
    let results: Vec<(usize, Resp)> = futures::stream::iter(targets)
        .map(|(n, id)| {
            let api = api.clone();
            async move {
                let (token, _, verdict, reason) = decision_for(n);
                (n, api.decide(token, &id, verdict, Some(&reason)).await)
            }
        })
        .buffer_unordered(TASKS)
        .collect()
        .await;
    for (n, r) in results {
        assert_eq!(r.status, 200, "decision {n}: {r:?}");
        ledger.lock().unwrap().decided.insert(n, r.body);
    }

    // Phase 3: 32 tasks keep submitting new approvals and deciding phase-1 ones; SIGKILL the
    // daemon while they are at it. Only what got an answer counts as acknowledged.
    let acks = Arc::new(AtomicUsize::new(0));
    // Told by the worker whose answer is the 150th acknowledgement of this phase.
    let under_way = Arc::new(tokio::sync::Notify::new());
    let raced: Vec<(usize, String)> = {
        let l = ledger.lock().unwrap();
        RACED.map(|n| (n, id_of(&l, n))).collect()
    };
    let mut workers = Vec::new();
    for t in 0..TASKS {
        let api = api.clone();
        let ledger = ledger.clone();
        let acks = acks.clone();
        let under_way = under_way.clone();
        let ack = move || {
            if acks.fetch_add(1, Ordering::Relaxed) + 1 == KILL_AFTER_ACKS {
                under_way.notify_one();
            }
        };
        let mine: Vec<(usize, String)> = raced
            .iter()
            .filter(|(n, _)| n % TASKS == t)
            .cloned()
            .collect();
        workers.push(tokio::spawn(async move {
            let mut decisions = mine.into_iter();
            for i in 0..200 {
                let n = FIRST + t + TASKS * i;
                match api
                    .try_send(
                        api.request(reqwest::Method::POST, Some(BOT), "/v1/approvals")
                            .json(&submission(n)),
                    )
                    .await
                {
                    Ok(r) => {
                        assert_eq!(r.status, 201, "submission {n}: {r:?}");
                        ledger.lock().unwrap().submitted.insert(n, r.body);
                        ack();
                    }
                    Err(_) => {
                        ledger.lock().unwrap().unanswered_submissions.push(n);
                        return true;
                    }
                }
                if let Some((n, id)) = decisions.next() {
                    let (token, _, verdict, reason) = decision_for(n);
                    let req = api
                        .request(
                            reqwest::Method::POST,
                            Some(token),
                            &format!("/v1/approvals/{id}/decision"),
                        )
                        .json(&json!({"decision": verdict, "reason": reason}));
                    match api.try_send(req).await {
                        Ok(r) => {
                            assert_eq!(r.status, 200, "decision {n}: {r:?}");
                            ledger.lock().unwrap().decided.insert(n, r.body);
                            ack();
                        }
                        Err(_) => {
                            ledger.lock().unwrap().unanswered_decisions.push(n);
                            return true;
                        }
                    }
                }
            }
            false
        }));
    }
    // Kill once the load is well under way (bounded in time either way: a daemon too slow to
    // acknowledge 150 in 10 s is killed anyway, and the checks below still hold).
    let _ = tokio::time::timeout(Duration::from_secs(10), under_way.notified()).await;
    let killed_pid = d.pid;
    d.kill();
    let mut cut_short = 0;
    for w in workers {
        let hit = tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("workers stop once the daemon is gone")
            .expect("worker ran cleanly");
        cut_short += usize::from(hit);
    }
    assert!(
        cut_short > 0,
        "the kill should have caught requests in flight"
    );
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    assert!(
        ledger.submitted.len() > FIRST,
        "phase 3 acknowledged nothing"
    );
    eprintln!(
        "killed with {} submissions and {} decisions acknowledged, {} and {} unanswered",
        ledger.submitted.len(),
        ledger.decided.len(),
        ledger.unanswered_submissions.len(),
        ledger.unanswered_decisions.len()
    );

    // Restart on the same data directory.
    let d = ws.start();
    assert_ne!(d.pid, killed_pid);
    let api = d.api();
    let all = api.list_all("all").await;
    let by_id: HashMap<String, &Value> = all
        .iter()
        .map(|a| (a["id"].as_str().unwrap().to_string(), a))
        .collect();
    assert_eq!(by_id.len(), all.len(), "an approval is listed twice");

    // Every acknowledged approval is there, as it was submitted.
    for (n, acked) in &ledger.submitted {
        let id = acked["id"].as_str().unwrap();
        let now = by_id
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged approval {n} ({id}) is lost"));
        for field in [
            "id",
            "tool",
            "arguments",
            "arguments_sha256",
            "reasoning",
            "requested_by",
            "created_at",
            "queue",
        ] {
            assert_eq!(now[field], acked[field], "approval {n}: {field}");
        }
        assert_eq!(api.approval(id).await["id"], id);
    }
    // Every acknowledged decision stands, exactly as acknowledged.
    for (n, acked) in &ledger.decided {
        let (_, name, verdict, reason) = decision_for(*n);
        let now = by_id[acked["id"].as_str().unwrap()];
        assert_eq!(now["status"], status_of(verdict), "approval {n}");
        assert_eq!(now["decision"]["by"], name, "approval {n}");
        assert_eq!(now["decision"]["reason"], reason.as_str(), "approval {n}");
        assert_eq!(now["decision"], acked["decision"], "approval {n}");
    }
    // A decision in flight at the kill either happened, as sent, or did not happen at all.
    for n in &ledger.unanswered_decisions {
        let (_, name, verdict, _) = decision_for(*n);
        let now = by_id[ledger.submitted[n]["id"].as_str().unwrap()];
        match now["status"].as_str().unwrap() {
            "pending" => assert_eq!(now["decision"], Value::Null),
            s => {
                assert_eq!(s, status_of(verdict), "approval {n}");
                assert_eq!(now["decision"]["by"], name, "approval {n}");
            }
        }
    }
    // Nobody touched these: still pending, with their deadlines.
    let pending = api.list_all("pending").await;
    for n in UNTOUCHED {
        let id = ledger.submitted[&n]["id"].as_str().unwrap();
        let now = by_id[id];
        assert_eq!(now["status"], "pending", "approval {n}");
        assert_eq!(now["expires_at"], ledger.submitted[&n]["expires_at"]);
        assert!(
            pending.iter().any(|p| p["id"] == id),
            "{n} not in the pending list"
        );
    }
    for p in &pending {
        assert_eq!(p["status"], "pending");
    }

    // Idempotency keys survived: retries of acknowledged submissions replay, and a retry of
    // one that never got an answer yields exactly one approval for it, never two.
    for n in UNTOUCHED.step_by(10) {
        let r = api.submit(BOT, &submission(n)).await;
        assert_eq!(r.id(), ledger.submitted[&n]["id"].as_str().unwrap());
        assert_eq!(r.headers["idempotent-replayed"], "true");
    }
    for n in &ledger.unanswered_submissions {
        let r = api.submit(BOT, &submission(*n)).await;
        assert_eq!(r.status, 201, "retry of {n}: {r:?}");
    }
    let all = api.list_all("all").await;
    let mut per_n: HashMap<u64, usize> = HashMap::new();
    for a in &all {
        *per_n
            .entry(a["arguments"]["n"].as_u64().unwrap())
            .or_default() += 1;
    }
    for (n, count) in &per_n {
        assert_eq!(*count, 1, "approval {n} exists {count} times");
    }

    // Pending approvals are decidable after the restart.
    for n in UNTOUCHED.take(10) {
        let id = ledger.submitted[&n]["id"].as_str().unwrap();
        let r = api
            .decide(ALICE, id, "approve", Some("after restart"))
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(api.approval(id).await["status"], "approved");
    }

    // The audit log is one unbroken chain, with one decision record per decided approval.
    let all = api.list_all("all").await;
    let audit = api.audit_all().await;
    assert_chain(&audit);
    let mut decided_records: HashMap<&str, usize> = HashMap::new();
    for r in audit.iter().filter(|r| r["kind"] == "approval.decided") {
        *decided_records
            .entry(r["approval_id"].as_str().unwrap())
            .or_default() += 1;
    }
    for a in &all {
        let id = a["id"].as_str().unwrap();
        let expected = usize::from(a["status"] != "pending");
        assert_eq!(
            decided_records.get(id).copied().unwrap_or(0),
            expected,
            "decided records for {id}"
        );
    }
}

#[tokio::test]
async fn second_process_on_the_same_data_dir_is_refused() {
    let ws = Workspace::new();
    let d = ws.start();
    let api = d.api();
    let a = api
        .submit_pending(BOT, "deploy", json!({"env": "prod"}))
        .await;

    let out = serve_expecting_failure(&ws.config(), &ws.data());
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!("is in use by PID {}", d.pid)),
        "{out:?}"
    );
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    // The first daemon carries on, with its data.
    assert_eq!(api.get(None, "/healthz").await.status, 200);
    assert_eq!(api.approval(a["id"].as_str().unwrap()).await, a);
}

#[test]
fn idempotency_key_survives_a_write_cut_short() {
    // A crash can cut an idempotent submission short after its audit record (the write-ahead
    // record) reached the disk but before the key's own entry did. Simulate exactly that with
    // sled, then check a retry with the same key replays instead of making a duplicate.
    let ws = Workspace::new();
    let mut d = ws.start();
    let body = json!({
        "tool": "transfer",
        "arguments": {"amount": 900},
        "idempotency_key": "cut-short",
    });
    let first = block_on(async { d.api().submit(BOT, &body).await });
    assert_eq!(first.status, 201, "{first:?}");
    assert!(d.stop().success());
    {
        let db = sled::open(ws.data().join("store")).expect("open the store with sled");
        // The store's layout: `i/IDENTITY\0KEY` → approval id.
        let mut key = b"i/billing-bot\0".to_vec();
        key.extend_from_slice(b"cut-short");
        assert!(db.remove(&key).unwrap().is_some(), "the key entry exists");
        db.flush().unwrap();
    }
    let d = ws.start();
    block_on(async {
        let api = d.api();
        let again = api.submit(BOT, &body).await;
        assert_eq!(again.status, 201, "{again:?}");
        assert_eq!(
            again.id(),
            first.id(),
            "a retry after the crash made a duplicate"
        );
        assert_eq!(api.list_all("all").await.len(), 1);
    });
}

#[test]
fn deadlines_are_wall_clock_and_survive_restarts() {
    let ws = Workspace::new();
    let mut d = ws.start();
    let (quick, later, later_expires_at) = block_on(async {
        let api = d.api();
        // Expires while someone long-polls it.
        let r = api
            .submit(
                BOT,
                &json!({"tool": "deploy", "arguments": {"env": "a"}, "timeout": 1}),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        let quick = r.id();
        let r = api
            .submit(
                BOT,
                &json!({"tool": "deploy", "arguments": {"env": "b"}, "timeout": "2s"}),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        let later = r.id();
        let later_expires_at = r.body["expires_at"].clone();
        let started = Instant::now();
        let r = api
            .get(Some(BOT), &format!("/v1/approvals/{quick}?wait=5"))
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(r.body["status"], "expired", "{r:?}");
        assert_eq!(r.body["decision"]["by"], "timeout");
        assert!(
            r.body["decision"]["reason"]
                .as_str()
                .unwrap()
                .starts_with("approval timed out"),
            "{r:?}"
        );
        let late = api.decide(ALICE, &quick, "approve", None).await;
        assert_eq!(late.expect_error(409), "already_decided");
        assert_eq!(late.body["approval"]["status"], "expired");
        (quick, later, later_expires_at)
    });
    // The second one falls due while the daemon is down: it expires at once on restart.
    // Time must really pass here (the deadline is wall-clock and persisted): stay down until
    // just past the instant the API gave for it.
    assert!(d.stop().success());
    std::thread::sleep(waiting::until_past(
        &later_expires_at,
        Duration::from_millis(100),
    ));
    let d = ws.start();
    block_on(async {
        let api = d.api();
        let started = Instant::now();
        let r = api
            .get(Some(ALICE), &format!("/v1/approvals/{later}?wait=2"))
            .await;
        assert_eq!(r.body["status"], "expired", "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(api.approval(&quick).await["status"], "expired");
        let audit = api.audit_all().await;
        assert_eq!(records_of(&audit, "approval.expired", &quick).len(), 1);
        assert_eq!(records_of(&audit, "approval.expired", &later).len(), 1);
        assert_chain(&audit);
    });
}

/// Kill -9 with an approval pending in an escalation chain, stay down past every tier, and
/// the overdue transitions happen at the next start, in order: escalated, then expired.
#[test]
fn overdue_escalations_apply_in_order_after_a_kill() {
    let ws = Workspace::new();
    ws.write_config(&format!(
        "{}\n[[escalation]]\nqueue = \"primary\"\nreviewers = [\"alice\"]\nafter = \"1s\"\n\n[[escalation]]\nqueue = \"backup\"\nreviewers = [\"bob\"]\nafter = \"1s\"\n",
        config_text()
    ));
    let mut d = ws.start();
    let (id, expires_at) = block_on(async {
        let r = d
            .api()
            .submit(
                BOT,
                &json!({"tool": "drop_table", "arguments": {"t": "users"}}),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.body["queue"], "primary");
        assert!(r.body["escalates_at"].is_string(), "{r:?}");
        (r.id(), r.body["expires_at"].clone())
    });
    d.kill();
    // Time must really pass: stay down until just past the end of the last tier (the
    // approval's `expires_at`, which is after its `escalates_at`), both wall-clock instants.
    std::thread::sleep(waiting::until_past(&expires_at, Duration::from_millis(100)));
    let d = ws.start();
    block_on(async {
        let api = d.api();
        // The long poll returns once the approval is no longer pending.
        let r = api
            .get(Some(ALICE), &format!("/v1/approvals/{id}?wait=10"))
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let a = r.body;
        assert_eq!(a["status"], "expired", "{a}");
        assert_eq!(a["decision"]["by"], "timeout");
        assert_eq!(
            (a["queue"].as_str(), a["tier"].as_u64()),
            (Some("backup"), Some(1))
        );
        let audit = api.get(Some(ALICE), "/v1/audit?limit=100").await;
        let kinds: Vec<&str> = audit.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["approval_id"] == json!(id))
            .map(|r| r["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["approval.created", "approval.escalated", "approval.expired"]
        );
    });
}

/// Whether `pid` is still a live process (a zombie nobody reaped counts as gone: it runs no
/// more code).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // The state follows the command name in parentheses: `PID (COMM) S ...`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
    }
}

/// DESIGN §9 "Tools die with gatehouse": after kill -9 of the daemon, a `command` tool of an
/// agent run that was still working never finishes, and neither does anything it started (a
/// background job of the tool's shell), so nothing runs behind the `outcome_unknown` the
/// reviewer is shown.
#[tokio::test]
async fn a_running_command_tool_dies_with_the_daemon() {
    use common::model_server::{ModelServer, Reply, call};
    let ws = Workspace::new();
    let pid_file = ws.dir.path().join("tool.pid");
    let job_pid_file = ws.dir.path().join("job.pid");
    let marker = ws.dir.path().join("tool.finished");
    let model = ModelServer::scripted(vec![
        Reply::tools(
            Some("Issuing the refund."),
            &[call("c1", "long_refund", json!({"order_id": "K-1"}))],
        ),
        Reply::text("Refunded."),
    ]);
    // The shell starts a background job (30 s, then the marker), writes its own pid and the
    // job's, and writes the marker itself after its work (8 s). Once both are killed the marker
    // can never appear; left alone, it appears, failing the test below. Only the shell is
    // gatehouse's child: the job outlives a kill of the shell alone.
    let script = r#"(sleep 30; echo done > "$2") & echo $! > "$3.tmp" && mv "$3.tmp" "$3"; echo $$ > "$1.tmp" && mv "$1.tmp" "$1"; sleep 8; echo done > "$2""#;
    let argv = [
        "/bin/sh",
        "-c",
        script,
        "sh",
        pid_file.to_str().unwrap(),
        marker.to_str().unwrap(),
        job_pid_file.to_str().unwrap(),
    ];
    let argv: Vec<String> = argv.iter().map(|a| toml_str(a)).collect();
    ws.write_config(&format!(
        r#"{common}
[models.fake]
kind = "openai"
base_url = {base}
model = "test-model"
api_key_env = "PATH"

[[agents]]
name = "Support"
instructions = "Refund when asked."
model = "fake"
tools = ["long_refund"]

[[tools]]
name = "long_refund"
description = "A refund that takes a while."
parameters = {{ type = "object", properties = {{ order_id = {{ type = "string" }} }}, required = ["order_id"] }}
kind = "command"
command = [{argv}]
needs_approval = false
timeout = "60s"
"#,
        common = config_text(),
        base = toml_str(&model.base_url()),
        argv = argv.join(", "),
    ));
    let mut d = ws.start();
    let api = d.api();
    let r = api
        .post(
            Some(BOT),
            "/v1/runs",
            &json!({"agent": "Support", "input": "Refund K-1"}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");

    // The tool has started once its pid file is there.
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let pid: i32 = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse()
        {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the tool never started:\n{}",
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Written before the tool's own pid file.
    let job: i32 = std::fs::read_to_string(&job_pid_file)
        .expect("the job's pid file")
        .trim()
        .parse()
        .expect("the job's pid");
    assert!(alive(pid), "the tool (pid {pid}) should be running");
    assert!(alive(job), "the tool's job (pid {job}) should be running");

    d.kill();

    // Long before the tool's own 8 s (and its job's 30 s) are up, both are killed.
    assert!(
        waiting::process_exits_within(pid, Duration::from_secs(15)).await,
        "the tool (pid {pid}) outlived the daemon"
    );
    assert!(
        waiting::process_exits_within(job, Duration::from_secs(15)).await,
        "the tool's background job (pid {job}) outlived the daemon"
    );
    assert!(
        !marker.exists(),
        "the tool finished its work after the daemon died"
    );
}
