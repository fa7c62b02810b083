//! DESIGN §4a: stalled sockets cannot hold the server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
/// The daemon's `header_timeout` and `body_timeout` below.
const TIMEOUT: Duration = Duration::from_secs(1);

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path) -> (Daemon, String) {
    let cfg = dir.join("g.toml");
    std::fs::write(
        &cfg,
        r#"
[server]
header_timeout = "1s"
body_timeout = "1s"

[[identities]]
name = "bot"
roles = ["agent"]
token = "bot-token-1234"
"#,
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(dir.join("data"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 512];
    let start = Instant::now();
    let addr = loop {
        let n = err.read(&mut buf).unwrap();
        assert!(
            n > 0 && start.elapsed() < Duration::from_secs(20),
            "daemon did not start: {seen}"
        );
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(i) = seen.find("listening on http://") {
            let rest = &seen[i + "listening on http://".len()..];
            if let Some(end) = rest.find(|c: char| c.is_whitespace()) {
                break rest[..end].to_string();
            }
        }
    };
    std::thread::spawn(move || while err.read(&mut buf).map(|n| n > 0).unwrap_or(false) {});
    (Daemon(child), addr)
}

fn request(addr: &str, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn stalled_sockets_do_not_delay_others_and_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, addr) = start(dir.path());
    // 300 clients that send half a request header and stall, and 20 that stall mid-body.
    let mut stalled = Vec::new();
    let stalling_from = Instant::now();
    for i in 0..320 {
        let mut s = TcpStream::connect(&addr).unwrap();
        if i < 300 {
            s.write_all(b"POST /v1/approvals HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .unwrap();
        } else {
            s.write_all(
                b"POST /v1/approvals HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer bot-token-1234\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"tool\":",
            )
            .unwrap();
        }
        stalled.push(s);
    }
    let stalled_by = Instant::now();
    // Someone else is served meanwhile.
    let body = r#"{"tool":"t","arguments":{}}"#;
    let resp = request(
        &addr,
        &format!(
            "POST /v1/approvals HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer bot-token-1234\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    // The server cuts every stalled socket off by itself once its 1 s header/body timeout has
    // passed: each read below waits for that close (or 408), bounded by the timeout plus a
    // margin for a loaded machine, counted from when the last socket stalled.
    let deadline = stalled_by + TIMEOUT + Duration::from_secs(4);
    let mut closed = 0;
    for mut s in stalled {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => closed += 1,
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                // a stalled body is answered 408, then the connection closes
                assert!(text.starts_with("HTTP/1.1 408"), "{text}");
                closed += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(e) => panic!(
                "a stalled socket was still held open {:?} after it stalled: {e}",
                stalling_from.elapsed()
            ),
        }
    }
    assert_eq!(closed, 320);
    // Cut off by the timeout, not by anything sooner.
    assert!(
        stalling_from.elapsed() >= TIMEOUT,
        "stalled sockets closed after only {:?}",
        stalling_from.elapsed()
    );
    // Nothing half-sent was stored.
    let list = request(
        &addr,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(list.starts_with("HTTP/1.1 200"), "{list}");
}
