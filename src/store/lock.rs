//! One process per data directory: an exclusive lock on `gatehouse.lock`, holding our PID.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

pub struct DirLock {
    _file: File,
}

pub enum LockError {
    /// Another process holds it; its PID as written in the file.
    Held(String),
    Io(io::Error),
}

impl DirLock {
    pub fn acquire(path: &Path) -> Result<DirLock, LockError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(LockError::Io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held(if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid.to_string()
                }));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
        file.set_len(0).map_err(LockError::Io)?;
        file.rewind().map_err(LockError::Io)?;
        write!(file, "{}", std::process::id()).map_err(LockError::Io)?;
        file.flush().map_err(LockError::Io)?;
        Ok(DirLock { _file: file })
    }
}
