//! `gatehouse run AGENT "input" [--wait]`, and `gatehouse runs list | show ID | cancel ID`,
//! against a daemon (`--connect URL`) or a data directory directly (`--data DIR`).

use super::approvals::{IN_USE_HINT, Target};
use super::remote::{Remote, error_message};
use super::serve::start_local_hinted;
use super::short_id;
use super::{Failure, os_user};
use crate::domain::{Run, RunStatus, RunSummary, Subject};
use crate::text::{escape, escape_multiline, json_for_terminal};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Args)]
pub struct RunArgs {
    /// The agent (`[[agents]] name`).
    agent: String,
    /// What the agent is asked to do.
    input: String,
    /// Wait until the run finishes, printing each change of status; exit 0 when it
    /// completed, 1 when it failed or was cancelled.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
pub enum RunsAction {
    /// The newest runs.
    List {
        #[command(flatten)]
        target: Target,
        /// At most this many runs, newest first (1 to 1000 against a daemon).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON (`{"runs": [...], "next": ...}`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One run as JSON, with its conversation.
    Show {
        /// The run's id, or the short id the console shows (its last 8 hex digits; any
        /// unambiguous tail of 4 or more).
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Cancel a run; its pending approvals become cancelled.
    Cancel {
        /// The run's id, or the short id the console shows (its last 8 hex digits; any
        /// unambiguous tail of 4 or more).
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

fn remote_failure(status: u16, v: &Value) -> Failure {
    let code = if status == 404 || status == 422 { 2 } else { 1 };
    Failure {
        code,
        message: format!("{} (HTTP {status})", error_message(v)),
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| Failure::runtime(format!("unexpected answer: {e}")))
}

pub async fn run(args: RunArgs) -> Result<(), Failure> {
    match args.target.remote()? {
        Some(r) => {
            let body = json!({"agent": args.agent, "input": args.input});
            let (code, v) = r.call(Method::POST, "/v1/runs", Some(&body)).await?;
            if code != 202 {
                return Err(remote_failure(code, &v));
            }
            let summary: RunSummary = parse(v["run"].clone())?;
            println!(
                "run {} started ({})",
                summary.run_id,
                summary.status.as_str()
            );
            if !args.wait {
                return Ok(());
            }
            let mut last = None;
            let mut seen = summary.status;
            loop {
                // Well inside the client's own 30 s request timeout (cli/remote.rs), so a
                // run that stays paused longer is polled again rather than ending the CLI;
                // `status` is what we last saw, so a change before this request returns at once.
                let path = format!(
                    "/v1/runs/{}?wait=20&status={}",
                    summary.run_id,
                    seen.as_str()
                );
                let (code, v) = r.call(Method::GET, &path, None).await?;
                if code != 200 {
                    return Err(remote_failure(code, &v));
                }
                let run: RunSummary = parse(v)?;
                seen = run.status;
                if let Some(end) = report(&run, &mut last) {
                    return end;
                }
            }
        }
        None => {
            let data = super::existing_data(&args.target.local)?;
            let local = start_local_hinted(&data, IN_USE_HINT)?;
            let who = args.target.reviewer.clone().unwrap_or_else(os_user);
            let mut events = local.runner.subscribe();
            let result = async {
                let summary = local
                    .runner
                    .start_run(&who, &args.agent, &args.input)
                    .await
                    .map_err(|e| Failure::usage(e.to_string()))?;
                println!("run {} started ({})", summary.run_id, summary.status.as_str());
                if !args.wait {
                    return Ok(());
                }
                let mut last = None;
                let mut current = summary;
                loop {
                    if let Some(end) = report(&current, &mut last) {
                        return end;
                    }
                    if current.status == RunStatus::PendingApproval {
                        // This process holds the data directory: no one else can decide.
                        println!(
                            "the run stays paused in {}; decide its approvals from a console on this data directory",
                            super::data_dir(data.data.as_ref())?.display()
                        );
                        return Ok(());
                    }
                    match events.recv().await {
                        Ok(e) => {
                            if let Subject::Run(s) = e.subject
                                && s.run_id == current.run_id
                            {
                                current = *s;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            if let Ok(Some(r)) = local.runner.run(current.run_id).await {
                                current = r.summary();
                            }
                        }
                        Err(_) => return Err(Failure::runtime("the runner stopped")),
                    }
                }
            }
            .await;
            local.stop().await;
            result
        }
    }
}

/// Print a change of status; `Some` when the run has finished, with how to exit.
fn report(run: &RunSummary, last: &mut Option<RunStatus>) -> Option<Result<(), Failure>> {
    if *last != Some(run.status) {
        *last = Some(run.status);
        let waiting = run
            .waiting_on
            .as_deref()
            .map(|w| format!(" — waiting on {}", escape(w).0))
            .unwrap_or_default();
        println!("{}{waiting}", run.status.as_str());
        for id in &run.pending {
            println!("  approval {id}");
        }
    }
    match run.status {
        RunStatus::Completed => {
            println!(
                "{}",
                escape_multiline(run.output.as_deref().unwrap_or("")).0
            );
            // The model finished, but something it was given could not run: not a success.
            if run.problems.is_empty() {
                Some(Ok(()))
            } else {
                Some(Err(Failure::runtime(format!(
                    "run {} completed, but {}",
                    run.run_id,
                    escape(&run.problems.join("; ")).0
                ))))
            }
        }
        RunStatus::Failed => Some(Err(Failure::runtime(format!(
            "run {} failed: {}",
            run.run_id,
            escape(run.error.as_deref().unwrap_or("no reason recorded")).0
        )))),
        RunStatus::Cancelled => Some(Err(Failure::runtime(format!(
            "run {} was cancelled",
            run.run_id
        )))),
        _ => None,
    }
}

pub async fn runs(action: RunsAction) -> Result<(), Failure> {
    let target = match &action {
        RunsAction::List { target, .. }
        | RunsAction::Show { target, .. }
        | RunsAction::Cancel { target, .. } => target.clone(),
    };
    if let Some(r) = target.remote()? {
        return runs_remote(&r, action).await;
    }
    let local = start_local_hinted(&super::existing_data(&target.local)?, IN_USE_HINT)?;
    let who = target.reviewer.clone().unwrap_or_else(os_user);
    let result = async {
        match &action {
            RunsAction::List { limit, json, .. } => {
                let page = local
                    .runner
                    .runs(None, *limit)
                    .await
                    .map_err(|e| Failure::runtime(e.to_string()))?;
                if *json {
                    let v = json!({"runs": page.runs, "next": page.next});
                    println!("{}", json_for_terminal(&v));
                } else {
                    print_runs(&page.runs);
                }
            }
            RunsAction::Show { id: raw, .. } => {
                let id = short_id::run_local(&local.runner, raw).await?;
                let run: Run = local
                    .runner
                    .run(id)
                    .await
                    .map_err(|e| Failure::runtime(e.to_string()))?
                    .ok_or_else(|| Failure::usage(format!("no run {id}")))?;
                println!(
                    "{}",
                    json_for_terminal(&serde_json::to_value(&run).unwrap_or_default())
                );
            }
            RunsAction::Cancel { id: raw, .. } => {
                let id = short_id::run_local(&local.runner, raw).await?;
                let s = local
                    .runner
                    .cancel_run(&who, id)
                    .await
                    .map_err(|e| Failure::runtime(e.to_string()))?;
                print_cancelled(&s);
            }
        }
        Ok(())
    }
    .await;
    local.stop().await;
    result
}

async fn runs_remote(r: &Remote, action: RunsAction) -> Result<(), Failure> {
    let (method, path) = match &action {
        RunsAction::List { limit, .. } => (
            Method::GET,
            format!("/v1/runs?limit={}", limit.clamp(&1, &1000)),
        ),
        RunsAction::Show { id, .. } => (
            Method::GET,
            format!("/v1/runs/{}", short_id::run_remote(r, id).await?),
        ),
        RunsAction::Cancel { id, .. } => (
            Method::POST,
            format!("/v1/runs/{}/cancel", short_id::run_remote(r, id).await?),
        ),
    };
    let body = json!({});
    let body = (method == Method::POST).then_some(&body);
    let (code, v) = r.call(method, &path, body).await?;
    if code != 200 {
        return Err(remote_failure(code, &v));
    }
    match action {
        RunsAction::List { json: true, .. } => println!("{}", json_for_terminal(&v)),
        RunsAction::List { .. } => print_runs(&parse::<Vec<RunSummary>>(v["runs"].clone())?),
        RunsAction::Show { .. } => println!("{}", json_for_terminal(&v)),
        RunsAction::Cancel { .. } => print_cancelled(&parse::<RunSummary>(v)?),
    }
    Ok(())
}

/// One line, as `approvals approve` prints: what happened, to what.
fn print_cancelled(s: &RunSummary) {
    println!(
        "{} {} ({})",
        s.status.as_str(),
        s.run_id,
        escape(&s.agent).0
    );
}

fn print_runs(runs: &[RunSummary]) {
    println!(
        "{:<36}  {:<16}  {:<20}  {:>5}  WAITING ON / OUTPUT",
        "RUN", "STATUS", "AGENT", "TURNS"
    );
    for r in runs {
        let tail = r
            .waiting_on
            .clone()
            .or_else(|| r.error.clone())
            .or_else(|| r.output.clone())
            .unwrap_or_default();
        let tail: String = escape(&tail).0.chars().take(60).collect();
        println!(
            "{:<36}  {:<16}  {:<20}  {:>5}  {tail}",
            r.run_id,
            r.status.as_str(),
            escape(&r.agent).0,
            r.turns
        );
    }
}
