//! Durability for sled: its flush, then an fsync of the log and of every new blob file.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Makes everything written so far durable. Runs on a blocking thread during group commit.
#[derive(Clone)]
pub struct SledSyncer {
    pub(super) db: sled::Db,
    pub(super) log_file: Arc<File>,
    pub(super) blob_dir: PathBuf,
    pub(super) synced_blobs: Arc<Mutex<HashSet<OsString>>>,
    /// The blob directory's mtime at the last full scan, kept only once it is older than
    /// any clock tick: adding a blob changes it, so an unchanged old mtime (one `stat`)
    /// spares the directory listing. (File times come from the kernel's coarse clock, so a
    /// blob made in the same tick as a scan would leave a recent mtime unchanged.)
    pub(super) blob_dir_mtime: Arc<Mutex<Option<std::time::SystemTime>>>,
}

impl SledSyncer {
    pub fn sync(&self) -> io::Result<()> {
        self.db.flush().map_err(sled_io)?;
        self.log_file.sync_all()?;
        self.sync_new_blobs()
    }

    pub(super) fn sync_new_blobs(&self) -> io::Result<()> {
        let mtime = fs::metadata(&self.blob_dir)?.modified()?;
        let mut last = self
            .blob_dir_mtime
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *last == Some(mtime) {
            return Ok(());
        }
        let mut seen = self.synced_blobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut any = false;
        for entry in fs::read_dir(&self.blob_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if seen.contains(&name) {
                continue;
            }
            File::open(entry.path())?.sync_all()?;
            seen.insert(name);
            any = true;
        }
        if any {
            File::open(&self.blob_dir)?.sync_all()?;
        }
        let settled = std::time::SystemTime::now()
            .duration_since(mtime)
            .is_ok_and(|age| age > std::time::Duration::from_millis(100));
        *last = settled.then_some(mtime);
        Ok(())
    }
}

pub(super) fn sled_io(e: sled::Error) -> io::Error {
    match e {
        sled::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}
