//! `gatehouse audit export | verify`.

use super::remote::{Remote, error_message};
use super::{CommonArgs, Failure};
use crate::audit::{ChainCheck, Trailer, trailer_line, verify_export};
use crate::domain::{AuditRecord, GENESIS_HASH};
use crate::store::{Store, StoreError};
use clap::Subcommand;
use reqwest::Method;
use std::io::{Read, Write};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Action {
    /// Write the audit log as JSON lines (ending with an end-of-export line).
    Export {
        #[command(flatten)]
        local: CommonArgs,
        /// A running daemon instead of a data directory (default: $GATEHOUSE_URL, unless
        /// --data is given).
        #[arg(long, conflicts_with = "data")]
        connect: Option<String>,
        /// Environment variable holding a reviewer's bearer token.
        #[arg(long, default_value = "GATEHOUSE_TOKEN")]
        token_env: String,
    },
    /// Check the hash chain of a data directory or an export; name the first bad record.
    Verify {
        #[command(flatten)]
        local: CommonArgs,
        /// An export written by `audit export`; `-` reads it from standard input.
        #[arg(long, conflicts_with = "data")]
        file: Option<PathBuf>,
    },
}

const PAGE: usize = 1000;

/// The data directory's store, read directly. `in_use_hint` is added when a running daemon
/// holds it.
fn open_store(local: &CommonArgs, in_use_hint: &str) -> Result<Store, Failure> {
    // A config naming a PostgreSQL store: its log is read from the database (no runner is
    // started, so nothing is written).
    if let Some(path) = &local.config {
        let cfg = super::load_config(Some(path))?;
        if cfg.store.kind == crate::config::StoreKind::Postgres {
            let dir = super::data_dir(local.data.as_ref())?;
            return Store::open_configured(&cfg.store, &dir)
                .map_err(|e| Failure::runtime(e.to_string()));
        }
    }
    let local = super::existing_data(local)?;
    let dir = super::data_dir(local.data.as_ref())?;
    Store::open_audit_log(&dir).map_err(|e| match e {
        StoreError::InUse { .. } => Failure::runtime(format!("{e}{in_use_hint}")),
        e => Failure::runtime(e.to_string()),
    })
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

/// Where an audit log is read from: a running daemon (`--connect`, or `$GATEHOUSE_URL`), or
/// the data directory of a stopped one (read only: no runner, so nothing, an overdue expiry
/// say, is written).
pub(super) enum LogSource {
    Daemon(Remote),
    Directory(Store),
}

impl LogSource {
    /// `in_use_hint` is added when a running daemon holds the directory.
    pub(super) fn open(
        connect: Option<&String>,
        local: &CommonArgs,
        token_env: &str,
        in_use_hint: &str,
    ) -> Result<LogSource, Failure> {
        match super::connect_url(connect, local) {
            Some(url) => Ok(LogSource::Daemon(Remote::new(&url, token_env)?)),
            None => Ok(LogSource::Directory(open_store(local, in_use_hint)?)),
        }
    }

    /// The records after `after`, a page at a time, and whether more follow.
    pub(super) async fn page(&self, after: u64) -> Result<(Vec<AuditRecord>, bool), Failure> {
        match self {
            LogSource::Daemon(remote) => {
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
                let more = !v["next"].is_null() && !records.is_empty();
                Ok((records, more))
            }
            LogSource::Directory(store) => {
                let records = store
                    .audit_after(after, PAGE)
                    .map_err(|e| Failure::runtime(e.to_string()))?;
                let more = records.len() == PAGE;
                Ok((records, more))
            }
        }
    }

    /// The whole log, in order.
    pub(super) async fn all(&self) -> Result<Vec<AuditRecord>, Failure> {
        let mut out: Vec<AuditRecord> = Vec::new();
        loop {
            let after = out.last().map_or(0, |r| r.seq);
            let (page, more) = self.page(after).await?;
            out.extend(page);
            if !more {
                return Ok(out);
            }
        }
    }
}

async fn export(
    local: CommonArgs,
    connect: Option<String>,
    token_env: String,
) -> Result<(), Failure> {
    let source = LogSource::open(
        connect.as_ref(),
        &local,
        &token_env,
        "; export from the running daemon instead: gatehouse audit export --connect URL",
    )?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut last: Option<AuditRecord> = None;
    let mut count = 0u64;
    loop {
        let after = last.as_ref().map_or(0, |r| r.seq);
        let (records, more) = source.page(after).await?;
        for r in &records {
            let line = serde_json::to_string(r).map_err(|e| Failure::runtime(e.to_string()))?;
            writeln!(out, "{line}")
                .map_err(|e| Failure::runtime(format!("writing the export: {e}")))?;
            count += 1;
        }
        last = records.last().cloned().or(last);
        if !more {
            break;
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
            let stdin = path.as_os_str() == "-";
            let name = if stdin {
                "standard input".to_string()
            } else {
                path.display().to_string()
            };
            let text = if stdin {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).map(|_| text)
            } else {
                std::fs::read_to_string(&path)
            }
            .map_err(|e| Failure::usage(format!("cannot read {name}: {e}")))?;
            let n = verify_export(&text).map_err(|e| Failure::runtime(format!("{name}: {e}")))?;
            println!("{name}: ok, {n} records, the chain is intact");
            Ok(())
        }
        None => {
            let store = open_store(
                &local,
                "; verify the running daemon's log through an export: gatehouse audit export \
                 --connect URL | gatehouse audit verify --file -",
            )?;
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
