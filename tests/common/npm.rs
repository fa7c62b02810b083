//! Real MCP servers from npm for the tests: installed once, at a pinned version, into
//! `target/npm/`, and run with `node`. Needs `node` and `npm` on the PATH, and the network the
//! first time.

use super::wait_bounded;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// `@modelcontextprotocol/server-filesystem`, pinned so the tests see the same tools each run.
pub const FILESYSTEM_SERVER: &str = "@modelcontextprotocol/server-filesystem";
pub const FILESYSTEM_SERVER_VERSION: &str = "2026.8.31";

/// How long `npm install` may take (it downloads the package the first time).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// `target/npm/`, next to the target directory's `tmp/` (which cargo names for tests).
fn npm_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("npm")
}

/// The script to run with `node` to start the filesystem server (its allowed directories as
/// arguments), installing the package first if needed.
pub fn filesystem_server() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        install(
            FILESYSTEM_SERVER,
            FILESYSTEM_SERVER_VERSION,
            "dist/index.js",
        )
    })
    .clone()
}

/// Install `package@version` into `target/npm/` unless already there; the path of `script`
/// inside the package. A file lock keeps test binaries running in parallel from installing
/// at the same time; a marker written after a complete install makes the check reliable.
pub fn install(package: &str, version: &str, script: &str) -> PathBuf {
    let dir = npm_dir();
    fs::create_dir_all(&dir).expect("create target/npm");
    let lock = File::create(dir.join("install.lock")).expect("create target/npm/install.lock");
    lock.lock().expect("lock target/npm/install.lock");

    let path = dir.join("node_modules").join(package).join(script);
    let marker = dir.join(format!(
        "installed-{}@{version}",
        package.replace(['/', '@'], "_")
    ));
    if marker.exists() && path.exists() {
        return path;
    }
    let log_path = dir.join("install.log");
    let log = File::create(&log_path).expect("create target/npm/install.log");
    let mut child = Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(&dir)
        .arg(format!("{package}@{version}"))
        .args(["--no-audit", "--no-fund"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run npm (needed for the MCP tests): {e}"));
    let status = wait_bounded(&mut child, INSTALL_TIMEOUT);
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("npm install {package}@{version} failed ({s}):\n{output}"),
        None => panic!("npm install {package}@{version} took over {INSTALL_TIMEOUT:?}:\n{output}"),
    }
    assert!(
        path.exists(),
        "npm installed {package}@{version} but {} is missing",
        path.display()
    );
    fs::write(&marker, "").expect("write the install marker");
    path
}
