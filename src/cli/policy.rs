//! `gatehouse policy replay`: what a policy change would do to the requests already recorded.

use super::audit::LogSource;
use super::{CommonArgs, Failure};
use crate::policy::PolicySet;
use crate::policy::replay::{ReplayConfig, Report, replay};
use clap::Subcommand;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum Action {
    /// Re-decide every recorded request under another config's policies and show what would
    /// change. Changes nothing.
    Replay {
        /// The config whose policies to try (its [[policies]], [[tools]] and [[mcp_servers]]).
        #[arg(long)]
        config: PathBuf,
        /// Read the audit log of a stopped daemon's data directory.
        #[arg(long, env = "GATEHOUSE_DATA", conflicts_with = "connect")]
        data: Option<PathBuf>,
        /// Read the audit log of a running daemon (a reviewer's token).
        #[arg(long)]
        connect: Option<String>,
        /// Environment variable holding the token for --connect.
        #[arg(long, default_value = "GATEHOUSE_TOKEN")]
        token_env: String,
        /// Only requests made in this window before now, e.g. 7d, 12h (default: all).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(action: Action) -> Result<(), Failure> {
    let Action::Replay {
        config,
        data,
        connect,
        token_env,
        since,
        json,
    } = action;
    // Only the policies (and queues, tiers) are used: a candidate written for another machine
    // need not find its token variables or tools' programs here.
    let cfg = crate::preflight::load_portable(&config).map_err(|e| {
        Failure::usage(format!(
            "{} problem(s) in the config:\n{e}",
            e.problems.len()
        ))
    })?;
    let policies = PolicySet::compile(&cfg.policies)
        .map_err(|p| Failure::usage(format!("{}: {p:?}", config.display())))?;
    let rc = ReplayConfig::from_config(&cfg).map_err(|e| Failure::usage(e.to_string()))?;
    let local = CommonArgs { config: None, data };
    let records = LogSource::open(
        connect.as_ref(),
        &local,
        &token_env,
        " (for a running daemon use --connect URL with a reviewer's token)",
    )?
    .all()
    .await?;
    let since_at = match since {
        Some(d) => Some(
            crate::domain::now()
                - chrono::Duration::from_std(d)
                    .map_err(|_| Failure::usage(format!("--since {d:?} is too long")))?,
        ),
        None => None,
    };
    let report = replay(&records, &policies, &rc, since_at);
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::runtime(format!("cannot write the report: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render(&report, &config, since));
    }
    Ok(())
}

fn render(report: &Report, config: &std::path::Path, since: Option<Duration>) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let window = since
        .map(|d| format!(" of the last {}", humantime::format_duration(d)))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "{} request(s){window} replayed under {}; {} would change.",
        report.requests,
        config.display(),
        report.changes.len()
    );
    for (way, n) in &report.counts {
        let _ = writeln!(o, "  {way:<32} {n}");
    }
    if !report.changes.is_empty() {
        let _ = writeln!(o, "\nChanges:");
    }
    for c in &report.changes {
        let args = serde_json::to_string(&c.arguments).unwrap_or_default();
        let rule = match (&c.policy.name, c.policy.rule) {
            (Some(p), Some(r)) => format!("{p} rule {r}"),
            (Some(p), None) => p.clone(),
            (None, _) => c.policy.reason.clone(),
        };
        let _ = writeln!(
            o,
            "  {}  {}  {} {}  by {}: {} → {} ({rule})",
            c.approval_id,
            c.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            crate::text::clip(&c.tool, 40),
            crate::text::clip(&args, 80),
            c.requested_by,
            c.before.as_str(),
            c.after.as_str(),
        );
    }
    o
}
