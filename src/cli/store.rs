//! `gatehouse store copy`: move a sled data directory into PostgreSQL.

use super::Failure;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Action {
    /// Copy a stopped daemon's data directory into an empty PostgreSQL database, audit chain
    /// checked and intact. Then set `[store] kind = "postgres"` in the config.
    Copy {
        /// The data directory to copy (no daemon may be using it).
        #[arg(long)]
        data: PathBuf,
        /// Environment variable holding the PostgreSQL URL.
        #[arg(long, default_value = crate::config::DEFAULT_DATABASE_URL_ENV)]
        to_url_env: String,
    },
}

pub async fn run(action: Action) -> Result<(), Failure> {
    match action {
        Action::Copy { data, to_url_env } => {
            let copied = crate::store::copy_to_postgres(&data, &to_url_env)
                .await
                .map_err(|e| Failure::runtime(e.to_string()))?;
            println!(
                "copied {} audit records, {} approvals, {} runs and {} grants from {} into ${to_url_env}",
                copied.records,
                copied.approvals,
                copied.runs,
                copied.grants,
                data.display()
            );
            Ok(())
        }
    }
}
