//! Bringing a data directory written by an older build up to this build's schema.
//!
//! Schema 1 kept the approval index (`p/`, `a/` pointers) in the default tree beside the
//! audit records; schema 2 keeps it in a tree of its own. An upgrade moves each pointer
//! (insert into the index tree, then remove from the default tree: sled recovers a prefix of
//! its writes, so a pointer is never lost between the two), makes that durable, and only then
//! records the new version in the metadata, then in the marker. An upgrade cut short is
//! simply run again at the next start: moving a pointer twice changes nothing.

use super::{INDEX_TREE, META_SCHEMA, P_APPROVAL, P_PENDING, Result, SledStore, StoreError};
use crate::store::SCHEMA_VERSION;

impl SledStore {
    pub(super) fn upgrade(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let mut moved = 0usize;
        for prefix in [P_PENDING, P_APPROVAL] {
            for item in self.db.scan_prefix([prefix, b'/']) {
                let (k, v) = self.sled(item)?;
                let r = self.index.insert(&k, v);
                self.sled(r)?;
                let r = self.db.remove(&k);
                self.sled(r)?;
                moved += 1;
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
            ms = started.elapsed().as_millis() as u64,
            "upgraded the store to schema {SCHEMA_VERSION}: the approval index moved to the {INDEX_TREE} tree"
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
