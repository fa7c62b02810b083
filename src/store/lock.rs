//! One process per data directory: an exclusive lock on `gatehouse.lock`, holding our PID.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The lock files this process holds, so that a lock found held under our own PID can be
/// told apart: ours (a second open in this process, refused) or a dropped one that a child
/// still holds for a moment. A lock belongs to the open file, and a child forked by another
/// thread shares our open files until its `exec` closes them.
static HELD: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// How long a lock under our own PID that this process no longer holds is waited for: a
/// fork's window before `exec` is far shorter.
const FORK_WINDOW: Duration = Duration::from_secs(2);

pub struct DirLock {
    _file: File,
    key: PathBuf,
}

pub enum LockError {
    /// Another process holds it; its PID as written in the file.
    Held(String),
    Io(io::Error),
}

fn held() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

impl DirLock {
    pub fn acquire(path: &Path) -> Result<DirLock, LockError> {
        DirLock::acquire_waiting(path, || {})
    }

    /// [`DirLock::acquire`], calling `waiting` each time it waits out a child's copy.
    fn acquire_waiting(path: &Path, mut waiting: impl FnMut()) -> Result<DirLock, LockError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(LockError::Io)?;
        let key = path.canonicalize().map_err(LockError::Io)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut pid = String::new();
                    file.rewind().map_err(LockError::Io)?;
                    let _ = file.read_to_string(&mut pid);
                    let pid = pid.trim().to_string();
                    let ours = pid == std::process::id().to_string();
                    let still_ours = held().contains(&key);
                    if ours && !still_ours && started.elapsed() < FORK_WINDOW {
                        waiting();
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    return Err(LockError::Held(if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid
                    }));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
            }
        }
        file.set_len(0).map_err(LockError::Io)?;
        file.rewind().map_err(LockError::Io)?;
        write!(file, "{}", std::process::id()).map_err(LockError::Io)?;
        file.flush().map_err(LockError::Io)?;
        held().insert(key.clone());
        Ok(DirLock { _file: file, key })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        held().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_in_this_process_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatehouse.lock");
        let first = DirLock::acquire(&path).ok().unwrap();
        let started = Instant::now();
        match DirLock::acquire(&path) {
            Err(LockError::Held(pid)) => assert_eq!(pid, std::process::id().to_string()),
            _ => panic!("a second lock in one process must be refused"),
        }
        assert!(
            started.elapsed() < FORK_WINDOW,
            "ours is refused without waiting"
        );
        drop(first);
        assert!(DirLock::acquire(&path).is_ok(), "free again once dropped");
    }

    /// The CI failure this fixes: a child forked while the lock was open holds it after our
    /// drop, until its `exec`. A duplicate of the descriptor stands in for the child's copy;
    /// it is let go the first time the second acquire waits, so without the wait this fails.
    #[test]
    fn a_lock_a_child_still_shares_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatehouse.lock");
        let first = DirLock::acquire(&path).ok().unwrap();
        let mut child_copy = Some(first._file.try_clone().unwrap());
        drop(first);
        let mut waits = 0;
        let again = DirLock::acquire_waiting(&path, || {
            waits += 1;
            child_copy = None;
        });
        assert!(
            again.is_ok(),
            "the lock is ours once the child's copy is gone"
        );
        assert_eq!(waits, 1);
    }
}
