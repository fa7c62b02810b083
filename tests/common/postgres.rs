//! A throwaway PostgreSQL cluster for tests: `initdb` in a temp dir, `pg_ctl start` on a free
//! loopback port with its unix socket in the same dir, stopped (immediately) on drop.
//!
//! PostgreSQL refuses to run as root, so under root the cluster belongs to `nobody`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tempfile::TempDir;

/// The environment variable tests hand the daemon, as in the README.
pub const URL_ENV: &str = "GATEHOUSE_DATABASE_URL";

pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    pub port: u16,
    pub url: String,
}

/// Where `initdb` and `pg_ctl` are: on PATH, or in Debian's versioned directories.
fn find_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        versions.sort();
        dirs.extend(versions.into_iter().rev().map(|v| v.join("bin")));
    }
    dirs.into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = find_bin().unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or in \
                 /usr/lib/postgresql/*/bin; install them (Debian/Ubuntu: apt-get install -y \
                 postgresql) to run the PostgreSQL store tests"
            )
        });
        let dir = tempfile::tempdir().expect("a temp dir");
        // SAFETY: geteuid has no preconditions.
        let owner = (unsafe { libc::geteuid() } == 0).then_some((65534, 65534));
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let pg = Postgres {
            url: format!("postgres://gatehouse@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            owner,
            port,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data().to_string_lossy(),
                "-U",
                "gatehouse",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        pg.start_server();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, program: &str, args: &[&str]) {
        let mut c = Command::new(self.bin.join(program));
        c.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .env_remove("PGDATA");
        if let Some((uid, gid)) = self.owner {
            c.uid(uid).gid(gid);
        }
        let out = c.output().unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }

    /// `pg_ctl start`, waiting (bounded) until it accepts connections.
    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        );
    }

    /// `pg_ctl stop -m immediate`: like a crash of the database server.
    pub fn stop_server(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut c = Command::new(self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            c.uid(uid).gid(gid);
        }
        let _ = c.status();
    }
}
