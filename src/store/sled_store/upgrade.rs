//! Bringing a data directory written by an older build up to this build's schema.
//!
//! - Schema 1 kept the approval index (`p/`, `a/` pointers) in the default tree beside the
//!   audit records; from schema 2 it has a tree of its own. Each pointer is moved: inserted
//!   into the index tree, then removed from the default tree (sled recovers a prefix of its
//!   writes, so a pointer is never lost between the two).
//! - Up to schema 2 a pending approval's entry was the seq of its record alone; from schema 3
//!   it carries the approval's summary, read once here from that record.
//!
//! The result is made durable, and only then is the new version recorded in the metadata,
//! then in the marker. An upgrade cut short is simply run again at the next start: moving or
//! rewriting an entry twice changes nothing.

use super::pending::{SummaryRef, entry};
use super::{INDEX_TREE, META_SCHEMA, P_APPROVAL, P_PENDING, Result, SledStore, StoreError};
use crate::store::SCHEMA_VERSION;

impl SledStore {
    pub(super) fn upgrade(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let (mut moved, mut summarised) = (0usize, 0usize);
        // Each entry is written once, as it ends up: a pending one with its summary.
        let summarised_entry = |k: &[u8], v: &[u8]| -> Result<Vec<u8>> {
            let summary = self.summary_from_record(k, v)?;
            let seq = self.pointer_seq(k, v)?;
            Ok(entry(seq, &SummaryRef::from_summary(&summary)))
        };
        for prefix in [P_PENDING, P_APPROVAL] {
            for item in self.db.scan_prefix([prefix, b'/']) {
                let (k, v) = self.sled(item)?;
                let r = if prefix == P_PENDING && v.len() == 8 {
                    summarised += 1;
                    self.index.insert(&k, summarised_entry(&k, &v)?)
                } else {
                    self.index.insert(&k, v)
                };
                self.sled(r)?;
                let r = self.db.remove(&k);
                self.sled(r)?;
                moved += 1;
            }
        }
        // Schema 2 had the index in its tree already, without the summaries.
        for item in self.index.scan_prefix([P_PENDING, b'/']) {
            let (k, v) = self.sled(item)?;
            if v.len() == 8 {
                let r = self.index.insert(&k, summarised_entry(&k, &v)?);
                self.sled(r)?;
                summarised += 1;
            }
        }
        self.sync_sled()?;
        let r = self
            .db
            .insert(META_SCHEMA, SCHEMA_VERSION.to_string().as_bytes());
        self.sled(r)?;
        self.sync_sled()?;
        tracing::info!(
            dir = %self.dir.display(),
            moved,
            summarised,
            ms = started.elapsed().as_millis() as u64,
            "upgraded the store to schema {SCHEMA_VERSION}: the approval index in the {INDEX_TREE} tree, pending entries with their summaries"
        );
        Ok(())
    }

    fn sync_sled(&self) -> Result<()> {
        self.syncer.sync().map_err(|source| StoreError::Io {
            dir: self.dir.clone(),
            source,
        })
    }
}
