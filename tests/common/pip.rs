//! Python packages for the tests, installed once with `pip install --target` into
//! `target/pip/NAME-VERSION/` (a file lock keeps parallel test binaries from installing at
//! once; a marker written after a complete install makes the check reliable). Needs `python3`
//! with pip, and the network the first time.

use super::wait_bounded;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const OPENAI_AGENTS: (&str, &str) = ("openai-agents", "0.24.0");

const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// The directory to put on `PYTHONPATH` for `package==version`, installing it if needed.
pub fn install(package: &str, version: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let root = tmp.parent().unwrap_or(tmp).join("pip");
    fs::create_dir_all(&root).expect("create target/pip");
    let lock = File::create(root.join("install.lock")).expect("create target/pip/install.lock");
    lock.lock().expect("lock target/pip/install.lock");
    let dir = root.join(format!("{package}-{version}"));
    let marker = root.join(format!("installed-{package}-{version}"));
    if marker.exists() && dir.exists() {
        return dir;
    }
    let log_path = root.join("install.log");
    let log = File::create(&log_path).expect("create target/pip/install.log");
    let mut child = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&dir)
        .arg(format!("{package}=={version}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 -m pip: {e}"));
    let status = wait_bounded(&mut child, INSTALL_TIMEOUT);
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("pip install {package}=={version} failed ({s}):\n{output}"),
        None => panic!("pip install {package}=={version} took over {INSTALL_TIMEOUT:?}:\n{output}"),
    }
    fs::write(&marker, "").expect("write the install marker");
    dir
}
