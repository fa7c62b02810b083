//! `gatehouse run` and the CLI's view of runs.

use super::*;

// ---------------------------------------------------------------------------------------
// 11. CLI
// ---------------------------------------------------------------------------------------

fn gatehouse_run(url: &str, agent: &str, input: &str) -> std::process::Command {
    let mut c = command();
    c.args(["run", agent, input, "--wait", "--connect", url])
        .env("GATEHOUSE_TOKEN", BOT);
    c
}

#[test]
fn cli_run_wait_prints_the_output_and_exits_by_outcome() {
    let failing = ModelServer::scripted(vec![Reply::error(401, "bad key", "invalid_api_key")]);
    let extra = format!(
        "[models.broken]\nkind = \"openai\"\nbase_url = {}\nmodel = \"m\"\n\n\
         [[agents]]\nname = \"Broken\"\nmodel = \"broken\"\ntools = []\n",
        toml_str(&failing.base_url())
    );
    let w = world_with(
        ModelServer::scripted(vec![
            // The auto-approved run.
            Reply::tools(
                Some("Small refund."),
                &[call(
                    "c1",
                    "issue_refund",
                    json!({"order_id": "H1", "amount": 10}),
                )],
            ),
            Reply::text("Refunded $10 for H1."),
            // The run that pauses for a reviewer.
            Reply::tools(
                Some("Big refund."),
                &[call(
                    "c2",
                    "issue_refund",
                    json!({"order_id": "H2", "amount": 900}),
                )],
            ),
            Reply::text("Refunded $900 for H2."),
        ]),
        &extra,
    );
    let url = w.daemon.url.clone();

    let done = run(gatehouse_run(&url, "Support", "Refund H1"));
    assert_eq!(done.code, Some(0), "{done:?}");
    assert!(done.stdout.contains("Refunded $10 for H1."), "{done:?}");
    assert!(done.stdout.contains("completed"), "{done:?}");
    assert_eq!(w.refunds().len(), 1);

    let failed = run(gatehouse_run(&url, "Broken", "hello"));
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(
        failed.stderr.contains("failed") && failed.stderr.contains("authentication"),
        "{failed:?}"
    );

    // A run that pauses: `--wait` waits through the approval, and exits 0 once it completes.
    let (mut child, lines) = spawn_lines(
        gatehouse_run(&url, "Support", "Refund H2"),
        &w.path("cli.stderr"),
    );
    let approval = block_on(waiting::approval_with_status(
        &w.api,
        "pending",
        RUN_DEADLINE,
    ));
    assert_eq!(approval["tool"], "issue_refund", "{approval}");
    let approval = approval["id"].as_str().unwrap().to_string();
    let r = block_on(decide(&w.api, &approval, json!({"decision": "approve"})));
    assert_eq!(r.status, 200, "{r:?}");
    let status = wait_bounded(&mut child, PROCESS_TIMEOUT).expect("gatehouse run --wait ended");
    let out = lines.rest();
    let err = std::fs::read_to_string(w.path("cli.stderr")).unwrap_or_default();
    assert!(status.success(), "{status:?}: {out}\nstderr: {err}");
    assert!(out.contains("Refunded $900 for H2."), "{out}");
    assert_eq!(w.refunds().len(), 2);

    // `runs list` shows the three runs; `runs show` one of them as JSON.
    let mut c = command();
    c.args(["runs", "list", "--connect", &url])
        .env("GATEHOUSE_TOKEN", ALICE);
    let list = run(c);
    assert_eq!(list.code, Some(0), "{list:?}");
    let mut statuses: Vec<&str> = list
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["completed", "completed", "failed"], "{list:?}");
    let run_id = out
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id in {out}"))
        .to_string();
    assert!(list.stdout.contains(&run_id), "{list:?}");
    let mut c = command();
    c.args(["runs", "show", &run_id, "--connect", &url])
        .env("GATEHOUSE_TOKEN", ALICE);
    let show = run(c);
    assert_eq!(show.code, Some(0), "{show:?}");
    let shown: Value = serde_json::from_str(&show.stdout).expect("runs show prints JSON");
    assert_eq!(shown["run_id"], run_id.as_str());
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["output"], "Refunded $900 for H2.");
}

/// A child's standard output, line by line, read on a thread of its own.
struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    seen: String,
}

impl Lines {
    /// The next line, or `None` if none comes within `limit`.
    fn next(&mut self, limit: Duration) -> Option<String> {
        let line = self.rx.recv_timeout(limit).ok()?;
        self.seen.push_str(&line);
        self.seen.push('\n');
        Some(line)
    }

    /// Everything the child printed, once it has ended.
    fn rest(mut self) -> String {
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        self.seen
    }
}

/// Spawn `cmd` with its standard error going to the file `stderr`.
fn spawn_lines(mut cmd: std::process::Command, stderr: &Path) -> (std::process::Child, Lines) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).expect("a stderr file"))
        .spawn()
        .expect("spawn gatehouse");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (
        child,
        Lines {
            rx,
            reader: Some(reader),
            seen: String::new(),
        },
    )
}

/// `gatehouse run --wait` should say promptly that the run paused, and on which approval:
/// that is what its user needs in order to get a reviewer to decide.
///
/// To hit the case deterministically, the CLI is held (SIGSTOP) from the moment the model is
/// asked until the run has paused, as a loaded machine or a slow link would; this is how the
/// failure first showed up, unprovoked, when the whole file ran in parallel.
#[test]
fn cli_run_wait_reports_a_pause_promptly() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI32, Ordering};
    let cli_pid = Arc::new(AtomicI32::new(0));
    let pid = cli_pid.clone();
    let mut replies = vec![
        Reply::tools(
            Some("Big refund."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "K1", "amount": 900}),
            )],
        ),
        Reply::text("Refunded $900 for K1."),
    ]
    .into_iter();
    let model = ModelServer::start(move |n, _| {
        let p = pid.load(Ordering::SeqCst);
        if n == 0 && p > 0 {
            // SAFETY: kill(2) with SIGSTOP on the CLI process this test spawned.
            unsafe {
                libc::kill(p, libc::SIGSTOP);
            }
        }
        replies.next().expect("a scripted reply")
    });
    let w = world_with(model, "");
    let (mut child, mut lines) = spawn_lines(
        gatehouse_run(&w.daemon.url, "Support", "Refund K1"),
        &w.path("cli.stderr"),
    );
    cli_pid.store(child.id() as i32, Ordering::SeqCst);
    let run = block_on(async {
        let deadline = Instant::now() + RUN_DEADLINE;
        loop {
            let runs = w.api.get(Some(ALICE), "/v1/runs").await;
            if let Some(r) = runs.body["runs"]
                .as_array()
                .and_then(|rs| rs.iter().find(|r| r["status"] == "pending_approval"))
            {
                return r.clone();
            }
            assert!(Instant::now() < deadline, "the run did not pause");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // SAFETY: kill(2) with SIGCONT on the CLI process this test spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGCONT);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let approval = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(line) = lines.next(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "gatehouse run --wait did not report the pause within 10 s; printed:\n{}\nstderr:\n{}",
                lines.rest(),
                std::fs::read_to_string(w.path("cli.stderr")).unwrap_or_default()
            );
        };
        if let Some(id) = line.trim().strip_prefix("approval ") {
            break id.to_string();
        }
    };
    assert_eq!(run["pending"][0], approval.as_str());
    assert!(lines.seen.contains("pending_approval"), "{}", lines.seen);
    let r = block_on(decide(&w.api, &approval, json!({"decision": "approve"})));
    assert_eq!(r.status, 200, "{r:?}");
    let status = wait_bounded(&mut child, PROCESS_TIMEOUT).expect("gatehouse run --wait ended");
    let out = lines.rest();
    let err = std::fs::read_to_string(w.path("cli.stderr")).unwrap_or_default();
    assert!(status.success(), "{status:?}: {out}\nstderr: {err}");
    assert!(out.contains("Refunded $900 for K1."), "{out}");
}

/// A reviewer may well take longer than 30 s: `gatehouse run --wait` must keep waiting.
///
/// Slow by nature (31 s): it caught `gatehouse run --wait` long-polling with ?wait=30 through
/// an HTTP client whose own timeout is 30 s, which ended the CLI after 30 s of review. Only a
/// review that really lasts past that client timeout shows it.
#[test]
fn cli_run_wait_survives_a_long_review() {
    let mut replies = vec![
        Reply::tools(
            Some("Big refund."),
            &[call(
                "c1",
                "issue_refund",
                json!({"order_id": "L1", "amount": 900}),
            )],
        ),
        Reply::text("Refunded $900 for L1."),
    ]
    .into_iter();
    // The first answer is held until the CLI's first poll is open, so that poll starts while
    // the run is still running.
    let thinking = Gate::new();
    let model = ModelServer::start({
        let thinking = thinking.clone();
        move |n, _| {
            let reply = replies.next().expect("a scripted reply");
            if n == 0 { reply.held(&thinking) } else { reply }
        }
    });
    let w = world_with(model, "");
    let open = block_on(waiting::subscribers(&w.api));
    let (mut child, mut lines) = spawn_lines(
        gatehouse_run(&w.daemon.url, "Support", "Refund L1"),
        &w.path("cli.stderr"),
    );
    w.model.wait_requests(1, RUN_DEADLINE);
    block_on(waiting::wait_subscribers(
        &w.api,
        open + 1,
        "the CLI's long poll",
    ));
    thinking.open();
    let stderr = || std::fs::read_to_string(w.path("cli.stderr")).unwrap_or_default();
    let deadline = Instant::now() + RUN_DEADLINE;
    let approval = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .next(left)
            .unwrap_or_else(|| panic!("no approval line; printed:\n{}", lines.seen));
        if let Some(id) = line.trim().strip_prefix("approval ") {
            break id.to_string();
        }
    };
    // The reviewer takes 31 s: time must really pass, past the CLI's 30 s request timeout.
    // Meanwhile the CLI must not end (its exit would be the bug).
    if let Some(status) = waiting::exits_within(&mut child, Duration::from_secs(31)) {
        panic!(
            "gatehouse run --wait gave up while the run waited for a reviewer ({status}); \
             printed:\n{}\nstderr:\n{}",
            lines.rest(),
            stderr()
        );
    }
    let r = block_on(decide(&w.api, &approval, json!({"decision": "approve"})));
    assert_eq!(r.status, 200, "{r:?}");
    let status = wait_bounded(&mut child, PROCESS_TIMEOUT).expect("gatehouse run --wait ended");
    let out = lines.rest();
    assert!(status.success(), "{status:?}: {out}\nstderr: {}", stderr());
    assert!(out.contains("Refunded $900 for L1."), "{out}");
}
