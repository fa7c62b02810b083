//! The data directory is 0700 and its files 0600, whatever the umask (DESIGN §9 "Files").
//!
//! sled creates files on its own schedule (snapshots, blobs, its conf), so a chmod after open
//! cannot cover them: gatehouse narrows its umask to 077 before it first touches a data
//! directory and keeps it so. Processes gatehouse starts (command tools, MCP servers) get the
//! umask gatehouse was started with back, through [`umask_for_children`]. A chmod pass at
//! open tightens directories written by older versions.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
/// No umask recorded yet (a umask has at most 9 bits).
const UNSET: u32 = u32::MAX;

static ORIGINAL_UMASK: AtomicU32 = AtomicU32::new(UNSET);

/// Narrow the process umask to 077 (once), remembering the one we were started with.
pub fn private_umask() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: umask(2) only swaps the process's file mode mask; it cannot fail.
        let before = unsafe { libc::umask(0o077) };
        ORIGINAL_UMASK.store(before as u32, Ordering::Release);
    });
}

/// The umask a child process should run with: the one gatehouse was started with, when
/// gatehouse narrowed its own.
pub fn umask_for_children() -> Option<libc::mode_t> {
    match ORIGINAL_UMASK.load(Ordering::Acquire) {
        UNSET => None,
        m => Some(m as libc::mode_t),
    }
}

/// chmod the directory to 0700 and everything under it to 0700 (directories) or 0600 (files),
/// without following symbolic links.
pub fn tighten(dir: &Path) -> io::Result<()> {
    set_mode(dir, DIR_MODE)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            tighten(&entry.path())?;
        } else if kind.is_file() {
            set_mode(&entry.path(), FILE_MODE)?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    let now = fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if now != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}
