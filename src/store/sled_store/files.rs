//! The data directory's own files: its marker (with the schema version) and sled's database.

use super::{MARKER, Result, SCHEMA_VERSION, StoreError};
use std::fs::{self, File};
use std::io;
use std::path::Path;

pub(super) fn check_marker(dir: &Path, text: &str) -> Result<u32> {
    let mut lines = text.lines();
    if lines.next() != Some("gatehouse data directory") {
        return Err(StoreError::Foreign {
            dir: dir.to_path_buf(),
            why: format!("{MARKER} marker is not gatehouse's"),
        });
    }
    let found: u32 = lines
        .find_map(|l| l.strip_prefix("schema = "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| StoreError::Corrupt {
            dir: dir.to_path_buf(),
            what: format!("{MARKER} marker has no readable schema version"),
        })?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            dir: dir.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

pub(super) fn write_marker(dir: &Path) -> io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{MARKER}.tmp"));
    let mut f = File::create(&tmp)?;
    writeln!(f, "gatehouse data directory\nschema = {SCHEMA_VERSION}")?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(MARKER))?;
    File::open(dir)?.sync_all()
}

/// sled's page cache (its default is 1 GiB). The runner keeps what it serves often in memory
/// (the newest pending approvals, recent decisions), so the cache mostly holds pages read
/// once at start: 32 MiB keeps a start over 200,000 pending approvals near 150 MB resident
/// (64 MiB: 11 MB more, and no faster).
const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;

std::thread_local! {
    /// Set while this thread opens sled: a panic then is caught and reported as an error, so
    /// the panic hook stays quiet about it.
    static OPENING_SLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// sled 0.34 can panic on some corrupt files; a panic here must become an error, not a crash.
pub(super) fn open_sled(path: &Path) -> std::result::Result<sled::Db, String> {
    // One hook for the process, quiet only on a thread that is opening sled. (Swapping the
    // hook around each open raced between threads opening at once: one could restore the
    // other's silent hook for good, and every later panic went unreported.)
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !OPENING_SLED.with(|o| o.get()) {
                prev(info);
            }
        }));
    });
    // sled's own lock on its files outlives a dropped `Db` for a moment (its IO threads let
    // go of them last, and a child forked by another thread shares the open file until its
    // `exec`), so a store closed and opened again in one process can find it still held. The data directory's lock is ours already, so nobody else holds sled's: wait for
    // it a little, then report it.
    let started = std::time::Instant::now();
    let r = loop {
        let path = path.to_path_buf();
        OPENING_SLED.with(|o| o.set(true));
        let r = std::panic::catch_unwind(move || {
            sled::Config::new()
                .path(&path)
                .cache_capacity(SLED_CACHE_BYTES)
                .flush_every_ms(None)
                .mode(sled::Mode::HighThroughput)
                .open()
        });
        OPENING_SLED.with(|o| o.set(false));
        match &r {
            Ok(Err(sled::Error::Io(e)))
                if e.to_string().starts_with("could not acquire lock")
                    && started.elapsed() < std::time::Duration::from_secs(2) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            _ => break r,
        }
    };
    match r {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(format!("sled cannot open it: {e}")),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("sled failed while reading it: {msg}"))
        }
    }
}
