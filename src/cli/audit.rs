//! `gatehouse audit export | verify`.

use super::remote::{Remote, error_message};
use super::{CommonArgs, Failure};
use crate::audit::{ChainCheck, Trailer, trailer_line, verify_export};
use crate::domain::{AuditRecord, GENESIS_HASH};
use crate::store::Store;
use clap::Subcommand;
use reqwest::Method;
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Action {
    /// Write the audit log as JSON lines (ending with an end-of-export line).
    Export {
        #[command(flatten)]
        local: CommonArgs,
        /// A running daemon instead of a data directory.
        #[arg(long, conflicts_with = "data")]
        connect: Option<String>,
        #[arg(long, default_value = "GATEHOUSE_TOKEN")]
        token_env: String,
    },
    /// Check the hash chain of a data directory or an export; name the first bad record.
    Verify {
        #[command(flatten)]
        local: CommonArgs,
        /// An export written by `audit export`.
        #[arg(long, conflicts_with = "data")]
        file: Option<PathBuf>,
    },
}

const PAGE: usize = 1000;

fn open_store(local: &CommonArgs) -> Result<Store, Failure> {
    let dir = super::data_dir(local.data.as_ref())?;
    Store::open(&dir).map_err(|e| Failure::runtime(e.to_string()))
}

pub async fn run(action: Action) -> Result<(), Failure> {
    match action {
        Action::Export {
            local,
            connect,
            token_env,
        } => export(local, connect, token_env).await,
        Action::Verify { local, file } => verify(local, file).await,
    }
}

async fn export(
    local: CommonArgs,
    connect: Option<String>,
    token_env: String,
) -> Result<(), Failure> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut last: Option<AuditRecord> = None;
    let mut count = 0u64;
    let write = |r: &AuditRecord, out: &mut dyn Write| -> Result<(), Failure> {
        let line = serde_json::to_string(r).map_err(|e| Failure::runtime(e.to_string()))?;
        writeln!(out, "{line}").map_err(|e| Failure::runtime(format!("writing the export: {e}")))
    };
    match connect {
        Some(url) => {
            let remote = Remote::new(&url, &token_env)?;
            let mut after = 0u64;
            loop {
                let (code, v) = remote
                    .call(
                        Method::GET,
                        &format!("/v1/audit?after={after}&limit={PAGE}"),
                        None,
                    )
                    .await?;
                if code != 200 {
                    return Err(Failure::runtime(format!(
                        "{} (HTTP {code})",
                        error_message(&v)
                    )));
                }
                let records: Vec<AuditRecord> = serde_json::from_value(v["records"].clone())
                    .map_err(|e| Failure::runtime(format!("unexpected answer: {e}")))?;
                for r in &records {
                    write(r, &mut out)?;
                    after = r.seq;
                    count += 1;
                }
                last = records.last().cloned().or(last);
                if v["next"].is_null() {
                    break;
                }
            }
        }
        None => {
            // Read the store only: no runner, so nothing (an overdue expiry, say) is written.
            let store = open_store(&local)?;
            let mut after = 0u64;
            loop {
                let records = store
                    .audit_after(after, PAGE)
                    .map_err(|e| Failure::runtime(e.to_string()))?;
                for r in &records {
                    write(r, &mut out)?;
                    after = r.seq;
                    count += 1;
                }
                let done = records.len() < PAGE;
                last = records.last().cloned().or(last);
                if done {
                    break;
                }
            }
        }
    }
    let t = Trailer {
        records: count,
        last_seq: last.as_ref().map(|r| r.seq).unwrap_or(0),
        last_hash: last.map(|r| r.hash).unwrap_or_else(|| GENESIS_HASH.into()),
    };
    writeln!(out, "{}", trailer_line(&t))
        .and_then(|_| out.flush())
        .map_err(|e| Failure::runtime(format!("writing the export: {e}")))
}

async fn verify(local: CommonArgs, file: Option<PathBuf>) -> Result<(), Failure> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
            let n = verify_export(&text)
                .map_err(|e| Failure::runtime(format!("{}: {e}", path.display())))?;
            println!("{}: ok, {n} records, the chain is intact", path.display());
            Ok(())
        }
        None => {
            let store = open_store(&local)?;
            let mut check = ChainCheck::default();
            let mut after = 0u64;
            let result = loop {
                let records = match store.audit_after(after, PAGE) {
                    Ok(r) => r,
                    Err(e) => break Err(Failure::runtime(e.to_string())),
                };
                let mut bad = None;
                for r in &records {
                    if let Err(e) = check.push(r, "in the store") {
                        bad = Some(e);
                        break;
                    }
                    after = r.seq;
                }
                if let Some(e) = bad {
                    break Err(Failure::runtime(e));
                }
                if records.len() < PAGE {
                    break Ok(());
                }
            };
            drop(store);
            result?;
            println!("ok, {} records, the chain is intact", check.count);
            Ok(())
        }
    }
}
