//! The store: everything gatehouse persists goes through [`Store`], and only this module knows
//! which database is behind it.
//!
//! Why an enum and not a trait object: the set of stores is closed and known at build time,
//! the hot path (one write per submission) keeps static dispatch, iterators that borrow the
//! store (`audit_rev`, `approvals_after`) need no object-safe contortions, and every store
//! reports the same [`StoreError`].
//!
//! The shape every store follows (what the runner relies on):
//! - writes (`write_approval`, `write_audit`, `write_run`, `revoke_grant`, `remove_grant`) are
//!   applied in the runner's order and return at once; they are **not durable** until a
//!   commit that started after them has finished;
//! - [`Syncer::commit`] starts that commit without blocking the runner task and hands back a
//!   task to await: sled flushes and fsyncs on a blocking thread; a networked store would send
//!   its buffered writes in one transaction there (its own commit instead of flush + fsync);
//! - the audit record of each write is the write-ahead record: it carries everything needed to
//!   redo the write, and [`Store::redo_last`] re-applies the newest one at start;
//! - reads see every write applied before them, committed or not.

mod envelope;
mod lock;
mod perms;
mod postgres;
mod sled_store;

pub use envelope::SCHEMA_VERSION;
pub use perms::umask_for_children;
pub use postgres::Copied;

use crate::config::{StoreConfig, StoreKind};
use crate::domain::{Approval, AuditKind, AuditRecord, Grant, PendingSummary, Run};
use postgres::{PgStore, PgSyncer};
use sled_store::{SledStore, SledSyncer};
use std::io;
use std::path::{Path, PathBuf};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {dir} is in use by PID {pid}")]
    InUse { dir: PathBuf, pid: String },
    #[error("{dir} is not a gatehouse data directory ({why}); refusing to use it")]
    Foreign { dir: PathBuf, why: String },
    #[error(
        "data directory {dir} is corrupt: {what}; refusing to start (restore it from a backup or move it aside)"
    )]
    Corrupt { dir: PathBuf, what: String },
    #[error(
        "data directory {dir} was written by a newer gatehouse (schema {found}, this build reads up to {supported}); refusing to start"
    )]
    NewerSchema {
        dir: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("data directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A write of one approval change, applied atomically.
pub struct ApprovalWrite<'a> {
    pub approval: &'a Approval,
    pub audit: &'a AuditRecord,
    /// `(identity, key)` to remember for idempotent retries.
    pub idempotency: Option<(&'a str, &'a str)>,
    /// A sticky grant the decision made.
    pub grant: Option<&'a Grant>,
}

/// The open store. The runner owns the only instance that writes.
pub struct Store {
    backend: Backend,
}

enum Backend {
    Sled(SledStore),
    Postgres(PgStore),
}

/// Makes everything written so far durable; cheap to clone into the commit task.
#[derive(Clone)]
pub struct Syncer {
    backend: SyncerBackend,
}

#[derive(Clone)]
enum SyncerBackend {
    Sled(SledSyncer),
    Postgres(PgSyncer),
}

/// What a commit did besides making writes durable: empty for sled (the only writer, so
/// everything is as written); for PostgreSQL, what other daemons wrote and how this daemon's
/// writes were sealed.
#[derive(Default)]
pub struct Committed {
    pg: Option<postgres::PgCommitted>,
}

/// A commit's outcome as the runner applies it (see [`Store::settle`]).
#[derive(Default)]
pub struct Settled {
    /// Records other daemons wrote, in order, each with whether to apply it to memory.
    pub foreign: Vec<(AuditRecord, bool)>,
    /// This daemon's records as sealed in the database; `None`: as written.
    pub own: Option<Vec<AuditRecord>>,
    /// Approvals whose write did not apply (another daemon changed them first), as stored,
    /// each with whether to apply it to memory.
    pub dropped: Vec<(Approval, bool)>,
    /// Runs whose daemon stopped renewing their lease, now this daemon's to drive.
    pub taken: Vec<Run>,
    /// Runs another daemon took over from this one (it stalled past their lease): their
    /// writes were dropped, and this daemon must stop driving them.
    pub lost_runs: Vec<Uuid>,
}

impl Syncer {
    /// Start a commit of every write applied so far. The runner task keeps serving meanwhile;
    /// the writes are durable once the returned task yields `Ok`.
    pub fn commit(&self) -> tokio::task::JoinHandle<io::Result<Committed>> {
        match &self.backend {
            SyncerBackend::Sled(s) => {
                let s = s.clone();
                tokio::task::spawn_blocking(move || s.sync().map(|()| Committed::default()))
            }
            SyncerBackend::Postgres(s) => {
                let s = s.clone();
                tokio::spawn(async move { s.commit().await.map(|c| Committed { pg: Some(c) }) })
            }
        }
    }

    /// Whether other daemons may write to the same store, so an idle runner must still look
    /// for their records now and then (a commit with nothing staged only reads them).
    pub fn shared(&self) -> bool {
        matches!(self.backend, SyncerBackend::Postgres(_))
    }

    /// How many commits may run at once. They are released in the order they started.
    pub fn max_in_flight(&self) -> usize {
        match &self.backend {
            // sled's flush and fsync are safe from several threads, and a device serves two
            // syncs better than one after another.
            SyncerBackend::Sled(_) => 2,
            // Each transaction checks that it follows the head row: they go one at a time.
            SyncerBackend::Postgres(_) => 1,
        }
    }
}

/// Forward a call to the store behind [`Store`].
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match &$self.backend {
            Backend::Sled($s) => $e,
            Backend::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// Open (or initialise) the sled data directory. Never resets anything silently.
    pub fn open(dir: &Path) -> Result<Store> {
        Ok(Store {
            backend: Backend::Sled(SledStore::open(dir)?),
        })
    }

    /// Open the sled data directory to read its audit log alone, changing nothing (an older
    /// schema is not upgraded: see [`SledStore::open_audit_log`]).
    pub fn open_audit_log(dir: &Path) -> Result<Store> {
        Ok(Store {
            backend: Backend::Sled(SledStore::open_audit_log(dir)?),
        })
    }

    /// Open the store the config names: sled in `dir`, or the PostgreSQL database whose URL
    /// is in the environment variable `url_env`.
    pub fn open_configured(cfg: &StoreConfig, dir: &Path) -> Result<Store> {
        match cfg.kind {
            StoreKind::Sled => Store::open(dir),
            StoreKind::Postgres => {
                let var = cfg.url_env();
                let label = PathBuf::from(format!("postgres (${var})"));
                let url = std::env::var(var).map_err(|_| StoreError::Io {
                    dir: label.clone(),
                    source: io::Error::other(format!(
                        "[store] kind = \"postgres\" reads the database URL from ${var}, which is not set"
                    )),
                })?;
                let handle = tokio::runtime::Handle::try_current().map_err(|_| StoreError::Io {
                    dir: label.clone(),
                    source: io::Error::other("the PostgreSQL store needs a tokio runtime"),
                })?;
                let pg = tokio::task::block_in_place(|| handle.block_on(PgStore::open(&url, var)))?;
                Ok(Store {
                    backend: Backend::Postgres(pg),
                })
            }
        }
    }

    /// Where the store lives, for messages.
    pub fn dir(&self) -> &Path {
        each!(self, s => s.dir())
    }

    /// Whether other daemons may write to the same store (see [`Syncer::shared`]).
    pub fn shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    pub fn syncer(&self) -> Syncer {
        let backend = match &self.backend {
            Backend::Sled(s) => SyncerBackend::Sled(s.syncer()),
            Backend::Postgres(s) => SyncerBackend::Postgres(s.syncer()),
        };
        Syncer { backend }
    }

    /// Write an audit record and the approval change it describes. Not durable until the
    /// next commit.
    pub fn write_approval(&self, w: ApprovalWrite<'_>) -> Result<()> {
        each!(self, s => s.write_approval(w))
    }

    /// [`Store::write_approval`] with the audit record's JSON already made (see
    /// [`AuditRecord::seal_text`]); a store that keeps records otherwise ignores it.
    pub fn write_approval_text(&self, w: ApprovalWrite<'_>, text: Option<&str>) -> Result<()> {
        match &self.backend {
            Backend::Sled(s) => s.write_approval_text(w, text),
            Backend::Postgres(s) => s.write_approval(w),
        }
    }

    /// Withdraw a grant: its `grant.revoked` record first, then the entry.
    pub fn revoke_grant(&self, record: &AuditRecord, g: &Grant) -> Result<()> {
        each!(self, s => s.revoke_grant(record, g))
    }

    /// Drop a grant whose life is over (see the runner's grant handling for the reasons).
    pub fn remove_grant(&self, g: &Grant) -> Result<()> {
        each!(self, s => s.remove_grant(g))
    }

    pub fn grants(&self) -> Result<Vec<Grant>> {
        each!(self, s => s.grants())
    }

    /// Book a finished commit and say what the runner applies (see [`Settled`]).
    pub fn settle(&self, c: Committed) -> Settled {
        match (&self.backend, c.pg) {
            (Backend::Postgres(s), Some(pg)) => s.settle(pg),
            _ => Settled::default(),
        }
    }

    /// A shared store whose connection was lost: wait for it to answer, then drop every
    /// unacknowledged write; the runner reloads its state next. (sled never loses its store.)
    pub fn reconnect(&self) -> Result<()> {
        match &self.backend {
            Backend::Postgres(s) => s.reconnect(),
            Backend::Sled(_) => Ok(()),
        }
    }

    /// On a shared store: woken when another daemon commits (a hint; poll as well).
    pub fn wake_hint(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        match &self.backend {
            Backend::Postgres(s) => Some(s.wake_hint()),
            Backend::Sled(_) => None,
        }
    }

    /// At a clean stop: give up the runs this daemon drives (a shared store's leases), so
    /// another daemon takes them over at once.
    pub fn release_runs(&self) {
        if let Backend::Postgres(s) = &self.backend {
            s.release_runs();
        }
    }

    /// The runner loaded everything up to the record `seq`: a shared store hands back only
    /// records after it.
    pub fn follow_from(&self, seq: u64) {
        if let Backend::Postgres(s) = &self.backend {
            s.follow_from(seq);
        }
    }

    /// Re-apply the entries derived from the newest audit record and make them durable.
    pub fn redo_last(&self, last: &AuditRecord) -> Result<()> {
        each!(self, s => s.redo_last(last))
    }

    /// Append an audit record that changes no approval (e.g. a refused decision).
    pub fn write_audit(&self, record: &AuditRecord) -> Result<()> {
        each!(self, s => s.write_audit(record))
    }

    /// Write a run's new state with the audit record that describes the step, atomically.
    pub fn write_run(&self, run: &Run, record: &AuditRecord) -> Result<()> {
        each!(self, s => s.write_run(run, record))
    }

    pub fn run(&self, id: Uuid) -> Result<Option<Run>> {
        each!(self, s => s.run(id))
    }

    /// Every run that has not finished, in id (start) order.
    pub fn active_runs(&self) -> Result<Vec<Run>> {
        each!(self, s => s.active_runs())
    }

    /// Runs newest first, before `before` (an id cursor), at most `limit`.
    pub fn runs_before(&self, before: Option<Uuid>, limit: usize) -> Result<Vec<Run>> {
        each!(self, s => s.runs_before(before, limit))
    }

    pub fn approval(&self, id: Uuid) -> Result<Option<Approval>> {
        each!(self, s => s.approval(id))
    }

    /// Every pending approval, verified.
    pub fn pending(&self) -> Result<Vec<Approval>> {
        each!(self, s => s.pending())
    }

    /// What the runner indexes of every pending approval, verified, without building the
    /// approvals where the store can avoid it (sled).
    /// Handed to `each` in id order.
    pub fn pending_summaries(&self, each: &mut dyn FnMut(PendingSummary)) -> Result<()> {
        match &self.backend {
            Backend::Sled(s) => s.pending_summaries(each),
            Backend::Postgres(s) => {
                s.pending()?.iter().map(PendingSummary::of).for_each(each);
                Ok(())
            }
        }
    }

    /// Whether reading an approval back is local and sees this daemon's writes before their
    /// commit (sled). The runner then holds only the newest pending approvals whole. A shared
    /// store's read is a round trip, so there it holds them all.
    pub fn reads_back_locally(&self) -> bool {
        !self.shared()
    }

    /// Approvals no longer pending, in id (creation) order after `after`.
    pub fn approvals_after(
        &self,
        after: Option<Uuid>,
    ) -> Box<dyn Iterator<Item = Result<Approval>> + '_> {
        each!(self, s => Box::new(s.approvals_after(after)))
    }

    pub fn idempotent(&self, identity: &str, k: &str) -> Result<Option<Uuid>> {
        each!(self, s => s.idempotent(identity, k))
    }

    /// Audit records with `seq > after`, at most `limit`.
    pub fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        each!(self, s => s.audit_after(after, limit))
    }

    /// Audit records from the newest backwards.
    pub fn audit_rev(&self) -> Box<dyn Iterator<Item = Result<AuditRecord>> + '_> {
        each!(self, s => Box::new(s.audit_rev()))
    }

    /// The audit records that settled an approval (decided, expired or cancelled), newest
    /// first (a start's look for recent decisions).
    pub fn settled_rev(&self) -> Result<Box<dyn Iterator<Item = Result<AuditRecord>> + '_>> {
        let settled = |k: AuditKind| {
            matches!(
                k,
                AuditKind::ApprovalDecided
                    | AuditKind::ApprovalExpired
                    | AuditKind::ApprovalCancelled
            )
        };
        Ok(match &self.backend {
            Backend::Sled(s) => Box::new(s.settled_rev()?),
            Backend::Postgres(s) => Box::new(
                s.audit_rev()
                    .filter(move |r| r.as_ref().map_or(true, |r| settled(r.kind))),
            ),
        })
    }
}

/// `gatehouse store copy`: everything in the sled data directory `dir` into the empty
/// PostgreSQL database whose URL is in `$url_env`.
pub async fn copy_to_postgres(dir: &Path, url_env: &str) -> Result<Copied> {
    let url = std::env::var(url_env).map_err(|_| StoreError::Io {
        dir: PathBuf::from(format!("postgres (${url_env})")),
        source: io::Error::other(format!("${url_env} (the database URL) is not set")),
    })?;
    // Opening would initialise a new store: a mistyped --data must not copy an empty one.
    if !sled_store::is_data_dir(dir) {
        return Err(StoreError::Foreign {
            dir: dir.to_path_buf(),
            why: "no gatehouse data directory there".into(),
        });
    }
    let from = SledStore::open(dir)?;
    let to = PgStore::open(&url, url_env).await?;
    to.copy_from(&from).await
}
