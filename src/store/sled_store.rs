//! The sled store: the embedded default, one data directory per process.
//!
//! Layout of a data directory:
//! - `gatehouse.lock` — held with an exclusive lock while a process uses the directory; holds its PID.
//! - `GATEHOUSE`      — marker with the schema version, written only after the store is initialised.
//! - `store/`         — the sled database: the default tree holds audit records, runs,
//!   grants, idempotency keys and metadata under prefixed keys; the `index` tree holds the
//!   approval index (a pointer from each approval to its newest audit record; a pending
//!   approval's also carries its summary, which is all a start reads of it).
//!
//! Every value is an envelope `[b'G', schema version, crc32 (LE, 4 bytes), JSON body]`.
//! Durability: sled 0.34's `flush()` ends in `sync_file_range`, which neither syncs file
//! metadata nor the device cache, and it writes large values ("blobs") to their own files
//! without any sync; so [`SledSyncer::sync`] follows the flush with an fsync of the log file and
//! of every blob file not yet synced, then the blob directory.

use super::envelope::{self, SCHEMA_VERSION};
use super::{ApprovalWrite, Result, StoreError, lock, perms};
use crate::domain::{Approval, AuditKind, AuditRecord, Grant, Run};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

mod files;
mod keys;
mod pending;
mod sync;
mod upgrade;

use files::{check_marker, open_sled, write_marker};
use keys::{grant_key, idempotency_key, key, show_key};
pub use sync::SledSyncer;

const MARKER: &str = "GATEHOUSE";
const LOCK: &str = "gatehouse.lock";
const SLED_DIR: &str = "store";

const META_SCHEMA: &[u8] = b"m/schema";
/// The tree of the approval index (schema 2 on; before, those keys sat beside the records).
/// A tree of its own because both it and the audit records grow at their ends: in one tree,
/// sled inserted a submission's record and pointer in 12.8–14.7 µs, in two trees in 9.7–11.7
/// µs (`store::sled_store::tests::insert_cost`).
const INDEX_TREE: &str = "index";
const P_APPROVAL: u8 = b'a';
const P_PENDING: u8 = b'p';
const P_AUDIT: u8 = b'l';
const P_IDEMPOTENCY: u8 = b'i';
const P_GRANT: u8 = b'g';
const P_RUN: u8 = b'r';
/// Index of runs not yet finished (completed, failed, cancelled), loaded at start.
const P_ACTIVE_RUN: u8 = b'u';

/// An open sled data directory. The runner owns the only instance that writes.
pub struct SledStore {
    /// Audit records, runs, grants, idempotency keys and the metadata.
    db: sled::Db,
    /// The approval index: a pointer from each approval's id to its newest audit record,
    /// pending (`p/`, with the approval's summary) or settled (`a/`).
    index: sled::Tree,
    dir: PathBuf,
    syncer: SledSyncer,
    _lock: lock::DirLock,
}

impl SledStore {
    /// Open (or initialise) the data directory. Never resets anything silently.
    pub fn open(dir: &Path) -> Result<SledStore> {
        SledStore::open_with(dir, true)
    }

    /// [`SledStore::open`] for reading the audit log alone (`gatehouse audit`): a directory
    /// of an older schema is left as it is (the records are the same in every schema; only
    /// the approval index moved), so reading it does not lock older builds out.
    pub fn open_audit_log(dir: &Path) -> Result<SledStore> {
        SledStore::open_with(dir, false)
    }

    fn open_with(dir: &Path, upgrade: bool) -> Result<SledStore> {
        let io_err = |source| StoreError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        // Before the first file is made: everything in the directory is private from birth.
        perms::private_umask();
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::Foreign {
                dir: dir.to_path_buf(),
                why: "it is a file, not a directory".into(),
            });
        }
        fs::create_dir_all(dir).map_err(io_err)?;
        let lock_path = dir.join(LOCK);
        let lock_was_there = lock_path.exists();
        let lock = lock::DirLock::acquire(&lock_path).map_err(|e| match e {
            lock::LockError::Held(pid) => StoreError::InUse {
                dir: dir.to_path_buf(),
                pid,
            },
            lock::LockError::Io(e) => io_err(e),
        })?;

        // A directory that is not ours is refused as it was found: take our lock file back.
        let foreign = |why: String| {
            if !lock_was_there {
                let _ = fs::remove_file(&lock_path);
            }
            StoreError::Foreign {
                dir: dir.to_path_buf(),
                why,
            }
        };
        let marker = dir.join(MARKER);
        let mut marked = SCHEMA_VERSION;
        let fresh = match fs::read_to_string(&marker) {
            Ok(text) => {
                marked = check_marker(dir, &text).map_err(|e| match e {
                    StoreError::Foreign { why, .. } => foreign(why),
                    other => other,
                })?;
                false
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let others: Vec<String> = fs::read_dir(dir)
                    .map_err(io_err)?
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != LOCK && n != SLED_DIR)
                    .collect();
                if !others.is_empty() {
                    let mut shown = others.clone();
                    shown.sort();
                    shown.truncate(5);
                    return Err(foreign(format!(
                        "no {MARKER} marker, and it holds {}",
                        shown.join(", ")
                    )));
                }
                if dir.join(SLED_DIR).exists() {
                    // The marker is written only after the store's metadata is durable and
                    // before anything is acknowledged, so an initialisation that was cut short
                    // leaves at most that metadata. A store holding more lost its marker some
                    // other way (deleted, not copied): refuse instead of wiping it.
                    let holds_records = {
                        let db =
                            open_sled(&dir.join(SLED_DIR)).map_err(|what| StoreError::Corrupt {
                                dir: dir.to_path_buf(),
                                what: format!("no {MARKER} marker, and {what}"),
                            })?;
                        db.iter()
                            .keys()
                            .any(|k| k.map_or(true, |k| k.as_ref() != META_SCHEMA))
                    };
                    if holds_records {
                        return Err(StoreError::Corrupt {
                            dir: dir.to_path_buf(),
                            what: format!(
                                "the {MARKER} marker is missing but the store holds records; \
                                 if this is a gatehouse data directory, restore the marker"
                            ),
                        });
                    }
                    tracing::warn!(dir = %dir.display(), "finishing an interrupted initialisation");
                    fs::remove_dir_all(dir.join(SLED_DIR)).map_err(io_err)?;
                }
                true
            }
            Err(e) => return Err(io_err(e)),
        };

        let sled_path = dir.join(SLED_DIR);
        if !fresh && !sled_path.join("db").is_file() {
            return Err(StoreError::Corrupt {
                dir: dir.to_path_buf(),
                what: "the store's database file store/db is missing".into(),
            });
        }
        let db = open_sled(&sled_path).map_err(|what| StoreError::Corrupt {
            dir: dir.to_path_buf(),
            what,
        })?;
        let log_file = File::open(sled_path.join("db")).map_err(io_err)?;
        let blob_dir = sled_path.join("blobs");
        fs::create_dir_all(&blob_dir).map_err(io_err)?;
        let syncer = SledSyncer {
            db: db.clone(),
            log_file: Arc::new(log_file),
            blob_dir,
            synced_blobs: Arc::new(Mutex::new(HashSet::new())),
            blob_dir_mtime: Arc::new(Mutex::new(None)),
        };
        let index_tree = |db: &sled::Db| {
            db.open_tree(INDEX_TREE).map_err(|e| StoreError::Corrupt {
                dir: dir.to_path_buf(),
                what: format!("sled cannot open its {INDEX_TREE} tree: {e}"),
            })
        };
        // Schema 1 kept the approval index in the default tree: a store left at it (see
        // `open_audit_log`) reads it there.
        let index = if fresh || upgrade {
            index_tree(&db)?
        } else {
            (*db).clone()
        };
        let mut store = SledStore {
            index,
            db,
            dir: dir.to_path_buf(),
            syncer,
            _lock: lock,
        };

        if fresh {
            store
                .db
                .insert(META_SCHEMA, SCHEMA_VERSION.to_string().as_bytes())
                .map_err(|e| store.corrupt(format!("cannot write metadata: {e}")))?;
            store.syncer.sync().map_err(io_err)?;
            File::open(&sled_path)
                .and_then(|d| d.sync_all())
                .map_err(io_err)?;
            write_marker(dir).map_err(io_err)?;
        } else if upgrade {
            if store.check_meta()? < SCHEMA_VERSION {
                store.upgrade()?;
            }
            // The marker is written last in an upgrade: one cut short after the metadata
            // left the old number there.
            if marked < SCHEMA_VERSION {
                write_marker(dir).map_err(io_err)?;
            }
        } else if store.check_meta()? >= 2 {
            store.index = index_tree(&store.db)?;
        }
        // The blobs that exist at open were synced by whoever wrote them (or are unacknowledged).
        if let Ok(rd) = fs::read_dir(&store.syncer.blob_dir) {
            let mut seen = store
                .syncer
                .synced_blobs
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            seen.extend(rd.filter_map(|e| e.ok()).map(|e| e.file_name()));
        }
        // Only now that the directory is known to be ours: a foreign one is left as found.
        perms::tighten(dir).map_err(io_err)?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn syncer(&self) -> SledSyncer {
        self.syncer.clone()
    }

    fn corrupt(&self, what: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            dir: self.dir.clone(),
            what: what.into(),
        }
    }

    /// The schema version in the store's metadata (refused when newer than this build's).
    fn check_meta(&self) -> Result<u32> {
        let raw = self
            .db
            .get(META_SCHEMA)
            .map_err(|e| self.corrupt(format!("cannot read metadata: {e}")))?
            .ok_or_else(|| {
                self.corrupt(
                    "the store has no metadata (it was replaced, truncated or never finished)",
                )
            })?;
        let found: u32 = std::str::from_utf8(&raw)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.corrupt("unreadable schema version in the store's metadata"))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                dir: self.dir.clone(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(found)
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, key: &[u8], raw: &[u8]) -> Result<T> {
        envelope::decode(raw).map_err(|e| match e {
            envelope::DecodeError::Newer(found) => StoreError::NewerSchema {
                dir: self.dir.clone(),
                found,
                supported: SCHEMA_VERSION,
            },
            envelope::DecodeError::Bad(what) => {
                self.corrupt(format!("record {}: {what}", show_key(key)))
            }
        })
    }

    fn sled<T>(&self, r: sled::Result<T>) -> Result<T> {
        r.map_err(|e| match e {
            sled::Error::Io(source) => StoreError::Io {
                dir: self.dir.clone(),
                source,
            },
            other => self.corrupt(other.to_string()),
        })
    }

    /// Write an audit record and the approval change it describes. Not durable until the next sync.
    ///
    /// The audit record goes first and carries everything needed to redo the rest (the
    /// approval snapshot and the idempotency key), so it is the write-ahead record: sled
    /// recovers a prefix of the log and one thread writes in order, so after a crash only the
    /// newest record's derived entries can be missing, and [`SledStore::redo_last`] restores them.
    /// (sled's `apply_batch` would make this atomic, but it rolls the IO buffer twice per
    /// batch and wakes all of sled's IO threads each time, which cost two thirds of our
    /// throughput.)
    pub fn write_approval(&self, w: ApprovalWrite<'_>) -> Result<()> {
        self.write_approval_text(w, None)
    }

    /// `text`: the audit record's JSON, made with its hash (one serialisation fewer).
    pub fn write_approval_text(&self, w: ApprovalWrite<'_>, text: Option<&str>) -> Result<()> {
        let body = match text {
            Some(t) => envelope::encode_text(t),
            None => envelope::encode(w.audit),
        };
        let r = self
            .db
            .insert(key(P_AUDIT, &w.audit.seq.to_be_bytes()), body);
        self.sled(r)?;
        self.apply_derived(w.audit.seq, w.approval, w.idempotency)?;
        match w.grant {
            Some(g) => self.put_grant(g),
            None => Ok(()),
        }
    }

    fn put_grant(&self, g: &Grant) -> Result<()> {
        let r = self.db.insert(grant_key(g), envelope::encode(g));
        self.sled(r).map(|_| ())
    }

    /// Withdraw a grant: its `grant.revoked` record first, then the entry.
    pub fn revoke_grant(&self, record: &AuditRecord, g: &Grant) -> Result<()> {
        self.write_audit(record)?;
        self.remove_grant(g)
    }

    /// Drop a grant whose life is over (its run ended, its `grant_ttl` passed, or it was
    /// stored without an identity by an older version). The record that ended it (the run's
    /// end, the clock) is the reason; a crash before this is repeated at the next start.
    pub fn remove_grant(&self, g: &Grant) -> Result<()> {
        let r = self.db.remove(grant_key(g));
        self.sled(r).map(|_| ())
    }

    pub fn grants(&self) -> Result<Vec<Grant>> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix([P_GRANT, b'/']) {
            let (k, v) = self.sled(item)?;
            out.push(self.decode(&k, &v)?);
        }
        Ok(out)
    }

    fn apply_derived(
        &self,
        seq: u64,
        approval: &Approval,
        idempotency: Option<(&str, &str)>,
    ) -> Result<()> {
        let id = approval.id;
        let pointer = seq.to_be_bytes();
        if approval.is_pending() {
            let entry = pending::entry(seq, &pending::SummaryRef::of(approval));
            let r = self.index.insert(key(P_PENDING, id.as_bytes()), entry);
            self.sled(r)?;
        } else {
            let r = self
                .index
                .insert(key(P_APPROVAL, id.as_bytes()), pointer.as_slice());
            self.sled(r)?;
            let r = self.index.remove(key(P_PENDING, id.as_bytes()));
            self.sled(r)?;
        }
        if let Some((who, k)) = idempotency {
            let r = self
                .db
                .insert(idempotency_key(who, k), id.as_bytes().as_slice());
            self.sled(r)?;
        }
        Ok(())
    }

    /// Re-apply the entries derived from the newest audit record (see [`SledStore::write_approval`]).
    pub fn redo_last(&self, last: &AuditRecord) -> Result<()> {
        let grant: Option<Grant> = last
            .details
            .get("grant")
            .and_then(|g| serde_json::from_value(g.clone()).ok());
        if let Some(g) = &grant {
            let r = match last.kind {
                AuditKind::GrantRevoked => self.db.remove(grant_key(g)),
                _ => self.db.insert(grant_key(g), envelope::encode(g)),
            };
            self.sled(r)?;
        }
        let Some(approval) = last.approval() else {
            return self.syncer.sync().map_err(|source| StoreError::Io {
                dir: self.dir.clone(),
                source,
            });
        };
        let key = last.details.get("idempotency_key").and_then(|k| k.as_str());
        self.apply_derived(
            last.seq,
            &approval,
            key.map(|k| (approval.requested_by.as_str(), k)),
        )?;
        self.syncer.sync().map_err(|source| StoreError::Io {
            dir: self.dir.clone(),
            source,
        })
    }

    /// Append an audit record that changes no approval (e.g. a refused decision).
    pub fn write_audit(&self, record: &AuditRecord) -> Result<()> {
        let r = self.db.insert(
            key(P_AUDIT, &record.seq.to_be_bytes()),
            envelope::encode(record),
        );
        self.sled(r).map(|_| ())
    }

    /// Write a run's new state with the audit record that describes the step, atomically.
    ///
    /// Unlike approvals (the hot path), runs change at the pace of models and tools, so a
    /// sled batch is cheap here, and it keeps the run and its record from ever disagreeing.
    pub fn write_run(&self, run: &Run, record: &AuditRecord) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(
            key(P_AUDIT, &record.seq.to_be_bytes()),
            envelope::encode(record),
        );
        batch.insert(key(P_RUN, run.id.as_bytes()), envelope::encode(run));
        let active = key(P_ACTIVE_RUN, run.id.as_bytes());
        if run.status.is_finished() {
            batch.remove(active);
        } else {
            batch.insert(active, &[][..]);
        }
        let r = self.db.apply_batch(batch);
        self.sled(r)
    }

    pub fn run(&self, id: Uuid) -> Result<Option<Run>> {
        let k = key(P_RUN, id.as_bytes());
        let r = self.db.get(&k);
        match self.sled(r)? {
            Some(raw) => self.decode(&k, &raw).map(Some),
            None => Ok(None),
        }
    }

    /// Every run that has not finished, in id (start) order.
    pub fn active_runs(&self) -> Result<Vec<Run>> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix([P_ACTIVE_RUN, b'/']) {
            let (k, _) = self.sled(item)?;
            let id = Uuid::from_slice(&k[2..])
                .map_err(|_| self.corrupt(format!("bad run index key {}", show_key(&k))))?;
            let run = self.run(id)?.ok_or_else(|| {
                self.corrupt(format!("run {id} is indexed as active but missing"))
            })?;
            out.push(run);
        }
        Ok(out)
    }

    /// Runs newest first, before `before` (an id cursor), at most `limit`.
    pub fn runs_before(&self, before: Option<Uuid>, limit: usize) -> Result<Vec<Run>> {
        let start = vec![P_RUN, b'/'];
        let end = match before {
            Some(id) => key(P_RUN, id.as_bytes()),
            None => vec![P_RUN, b'/' + 1],
        };
        let mut out = Vec::new();
        for item in self.db.range(start..end).rev().take(limit) {
            let (k, v) = self.sled(item)?;
            out.push(self.decode(&k, &v)?);
        }
        Ok(out)
    }

    pub fn approval(&self, id: Uuid) -> Result<Option<Approval>> {
        for prefix in [P_PENDING, P_APPROVAL] {
            let k = key(prefix, id.as_bytes());
            let r = self.index.get(&k);
            if let Some(raw) = self.sled(r)? {
                return self.approval_at(&k, &raw, id).map(Some);
            }
        }
        Ok(None)
    }

    /// Approvals no longer pending, in id (creation) order after `after`.
    pub fn approvals_after(
        &self,
        after: Option<Uuid>,
    ) -> impl Iterator<Item = Result<Approval>> + '_ {
        let start = match after {
            Some(id) => {
                let mut k = key(P_APPROVAL, id.as_bytes());
                k.push(0); // strictly after
                k
            }
            None => vec![P_APPROVAL, b'/'],
        };
        let end = vec![P_APPROVAL, b'/' + 1];
        self.index.range(start..end).map(move |item| {
            let (k, pointer) = self.sled(item)?;
            let id = Uuid::from_slice(&k[2..])
                .map_err(|_| self.corrupt(format!("bad approval key {}", show_key(&k))))?;
            self.approval_at(&k, &pointer, id)
        })
    }

    pub fn idempotent(&self, identity: &str, k: &str) -> Result<Option<Uuid>> {
        let r = self.db.get(idempotency_key(identity, k));
        match self.sled(r)? {
            Some(raw) => Uuid::from_slice(&raw)
                .map(Some)
                .map_err(|_| self.corrupt("bad idempotency entry")),
            None => Ok(None),
        }
    }

    /// Audit records with `seq > after`, at most `limit`.
    pub fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let start = key(P_AUDIT, &after.saturating_add(1).to_be_bytes());
        let end = vec![P_AUDIT, b'/' + 1];
        let mut out = Vec::new();
        for item in self.db.range(start..end).take(limit) {
            let (k, v) = self.sled(item)?;
            out.push(self.decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Audit records from the newest backwards.
    pub fn audit_rev(&self) -> impl Iterator<Item = Result<AuditRecord>> + '_ {
        self.db.scan_prefix([P_AUDIT, b'/']).rev().map(move |item| {
            let (k, v) = self.sled(item)?;
            self.decode(&k, &v)
        })
    }
}

/// Whether `dir` holds an initialised gatehouse data directory (its marker).
pub fn is_data_dir(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}

#[cfg(test)]
mod tests;
